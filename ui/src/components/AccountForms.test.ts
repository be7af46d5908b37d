import { cleanup, fireEvent, render, screen, waitFor } from "@testing-library/svelte";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Schemas } from "../lib/api/client";

const api = vi.hoisted(async () => {
  const { mockApi } = await import("./mock-api");
  const mock = mockApi();
  globalThis.fetch = mock.fetch as typeof fetch;
  return mock;
});

import AccountCard from "./AccountCard.svelte";
import AccountForm from "./AccountForm.svelte";
import PoolEditor from "./PoolEditor.svelte";
import { refusal } from "./mock-api";

const now = new Date("2026-12-07T12:00:00Z");
const secs = (minutes: number) => Math.floor(now.getTime() / 1000) + minutes * 60;
const window = (percent: number | null, reserve: number | null): Schemas["WindowStatus"] => ({
  percent,
  resets_at: percent === null ? null : secs(134),
  reserve,
  cap: 100 - (reserve ?? 0),
});
const work: Schemas["Account"] = {
  tag: "work",
  provider: "anthropic",
  kind: "oauth",
  base_url: "https://api.anthropic.com",
  proxy: "http://me:***@proxy.lan:3128",
  reserve_5h: 20,
  reserve_weekly: null,
  secret: { store: "keyring", location: "carpool/work" },
  plan: "max",
  status: {
    tag: "work",
    kind: "oauth",
    state: { state: "paused_by_reserve", window: "five_hour", percent: 81, cap: 80, until: secs(134) },
    five_hour: window(81, 20),
    weekly: window(18, null),
    plan_weight: 5,
    active_sessions: 1,
    last_hour: { requests: 12, tokens: 69400 },
  },
};
const key: Schemas["Account"] = { tag: "key", provider: "anthropic", kind: "api_key", base_url: "https://api.anthropic.com", secret: { store: "data_dir", location: "/d/k" } };

async function type(label: string, value: string) {
  const input = screen.getByLabelText(label) as HTMLInputElement;
  input.value = value;
  await fireEvent.input(input);
}

afterEach(async () => {
  cleanup();
  (await api).reset();
});

describe("AccountForm (API key)", () => {
  it("adds an OpenAI key when OpenAI is chosen", async () => {
    const mock = await api;
    mock.on("POST /api/v1/accounts", { status: 201, body: { ...key, provider: "openai" } });
    const onadded = vi.fn();
    render(AccountForm, { props: { source: "api_key", onadded } });
    const select = screen.getByLabelText("Provider") as HTMLSelectElement;
    select.value = "openai";
    await fireEvent.change(select);
    await type("Tag", "gpt");
    await type("OpenAI API key", "sk-proj-123");
    await fireEvent.click(screen.getByRole("button", { name: "Add API key" }));
    await waitFor(() => expect(onadded).toHaveBeenCalled());
    expect(mock.sent[0]?.body).toEqual({ tag: "gpt", api_key: "sk-proj-123", base_url: null, provider: "openai" });
  });

  it("sends the key once, clears it, and shows a refusal next to the tag", async () => {
    const mock = await api;
    mock.on("POST /api/v1/accounts", refusal(422, "tag: the config already has an account or pool `work`; choose another tag"), {
      status: 201,
      body: key,
    });
    const onadded = vi.fn();
    render(AccountForm, { props: { source: "api_key", onadded } });
    await type("Tag", "work");
    await type("Anthropic API key", "sk-ant-123");
    await fireEvent.click(screen.getByRole("button", { name: "Add API key" }));

    const alert = await screen.findByRole("alert");
    expect(alert.textContent).toBe("The config already has an account or pool `work`; choose another tag");
    expect(alert.parentElement?.contains(screen.getByLabelText("Tag"))).toBe(true);
    expect(mock.sent[0]?.body).toEqual({ tag: "work", api_key: "sk-ant-123", base_url: null, provider: "anthropic" });
    expect((screen.getByLabelText("Anthropic API key") as HTMLInputElement).value).toBe("");
    expect(screen.getByLabelText("Anthropic API key").getAttribute("type")).toBe("password");

    await type("Tag", "key");
    await type("Anthropic API key", "sk-ant-123");
    await fireEvent.click(screen.getByRole("button", { name: "Add API key" }));
    await waitFor(() => expect(onadded).toHaveBeenCalledWith(key));
  });
});

describe("AccountCard", () => {
  it("says why the account waits, and marks the reserve", () => {
    render(AccountCard, { props: { account: work, now, usedBy: ["user me"], onchanged: vi.fn(), onremove: vi.fn() } });
    expect(screen.getByText("Paused by reserve")).toBeTruthy();
    expect(screen.getByText(/5-hour window is at 81 %.*Back in 2 hr, 14 min/)).toBeTruthy();
    expect(screen.getByText("Reserve 20%: users stop at 80%")).toBeTruthy();
    expect(screen.getByText("Claude login")).toBeTruthy();
    expect(screen.getByText("http://me:***@proxy.lan:3128")).toBeTruthy();
  });

  it("names a Codex login's provider, plan and email", () => {
    const codex: Schemas["Account"] = {
      tag: "codex",
      provider: "openai",
      kind: "oauth",
      base_url: "https://chatgpt.com/backend-api/codex",
      secret: { store: "credentials_file", location: "/home/me/.codex/auth.json" },
      email: "me@example.com",
      plan: "pro",
    };
    render(AccountCard, { props: { account: codex, now, usedBy: [], onchanged: vi.fn(), onremove: vi.fn() } });
    const card = screen.getByRole("article", { name: "codex" });
    expect(card.textContent).toContain("OpenAI");
    expect(card.textContent).toContain("Codex auth.json file");
    expect(card.textContent).toContain("me@example.com · pro plan");
    expect(card.textContent).toContain("Codex's auth.json, shared with Codex");
  });

  it("sends only what changed, and shows a refused reserve next to it", async () => {
    const mock = await api;
    const updated = { ...work, reserve_weekly: 10 };
    mock.on("PATCH /api/v1/accounts/work", refusal(422, "credentials[0].reserve_weekly: must be between 1 and 99 (percent kept for the owner)"), {
      status: 200,
      body: updated,
    });
    const onchanged = vi.fn();
    render(AccountCard, { props: { account: work, now, usedBy: [], onchanged, onremove: vi.fn() } });
    await fireEvent.click(screen.getByRole("button", { name: "Reserves, proxy, URL of work" }));
    await type("Weekly reserve (%)", "150");
    await fireEvent.click(screen.getByRole("button", { name: "Save" }));
    const alert = await screen.findByRole("alert");
    expect(alert.textContent).toBe("Must be between 1 and 99 (percent kept for the owner)");
    expect(alert.parentElement?.contains(screen.getByLabelText("Weekly reserve (%)"))).toBe(true);
    // The masked proxy and the untouched fields are not sent back.
    expect(mock.sent[0]?.body).toEqual({ reserve_weekly: 150 });

    await type("Weekly reserve (%)", "10");
    await fireEvent.click(screen.getByRole("button", { name: "Save" }));
    await waitFor(() => expect(onchanged).toHaveBeenCalledWith(updated));
    expect(mock.sent[1]?.body).toEqual({ reserve_weekly: 10 });
  });

  it("takes a reserve of 0 as none", async () => {
    const mock = await api;
    mock.on("PATCH /api/v1/accounts/work", { status: 200, body: { ...work, reserve_5h: null } });
    render(AccountCard, { props: { account: work, now, usedBy: [], onchanged: vi.fn(), onremove: vi.fn() } });
    await fireEvent.click(screen.getByRole("button", { name: "Reserves, proxy, URL of work" }));
    await type("5-hour reserve (%)", "0");
    await fireEvent.click(screen.getByRole("button", { name: "Save" }));
    await waitFor(() => expect(mock.sent[0]?.body).toEqual({ reserve_5h: null }));
  });
});

describe("PoolEditor", () => {
  it("creates a pool with its members in the order chosen", async () => {
    const mock = await api;
    const pool: Schemas["Pool"] = { tag: "team", provider: "anthropic", strategy: "fallback", members: ["key", "work"], poll_interval: "60s", session_ttl: "1h", users: [] };
    mock.on("POST /api/v1/pools", { status: 201, body: pool });
    const onsaved = vi.fn();
    render(PoolEditor, { props: { accounts: [work, key], onsaved, oncancel: vi.fn() } });
    await type("Pool tag", "team");
    await fireEvent.click(screen.getByLabelText(/Fallback/));
    await fireEvent.click(screen.getByRole("checkbox", { name: /work/ }));
    await fireEvent.click(screen.getByRole("checkbox", { name: /key/ }));
    await fireEvent.click(screen.getByRole("button", { name: "Move key up" }));
    await fireEvent.click(screen.getByRole("button", { name: "Create pool" }));
    await waitFor(() => expect(onsaved).toHaveBeenCalledWith(pool));
    expect(mock.sent[0]?.body).toEqual({ tag: "team", strategy: "fallback", members: ["key", "work"] });
  });
});
