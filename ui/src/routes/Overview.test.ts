import { cleanup, render, screen, within } from "@testing-library/svelte";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Schemas } from "../lib/api/client";

const api = vi.hoisted(async () => {
  const { mockApi } = await import("../components/mock-api");
  const mock = mockApi();
  globalThis.fetch = mock.fetch as typeof fetch;
  return mock;
});

import Overview from "./Overview.svelte";

const NOW = Math.floor(Date.now() / 1000);
const idle: Schemas["WindowStatus"] = { percent: null, resets_at: null, reserve: null, cap: 100 };

function status(accounts: Schemas["AccountStatus"][]): Schemas["Status"] {
  return { version: "0.1.0", listen: "127.0.0.1:7676", uptime_s: 3720, usage_written: 10, usage_dropped: 0, at: NOW, accounts, pools: [] };
}

const paused: Schemas["AccountStatus"] = {
  tag: "work",
  kind: "oauth",
  state: { state: "paused_by_reserve", window: "five_hour", percent: 85, cap: 80, until: NOW + 3600 },
  five_hour: { percent: 85, resets_at: NOW + 2 * 3600 + 14 * 60 + 30, reserve: 20, cap: 80 },
  weekly: { percent: 18, resets_at: NOW + 3 * 86400, reserve: null, cap: 100 },
  usage_updated_at: NOW - 60,
  plan_weight: 5,
  active_sessions: 0,
  last_hour: { requests: 3, tokens: 1000 },
} as Schemas["AccountStatus"];
const key: Schemas["AccountStatus"] = { ...paused, tag: "key", kind: "api_key", state: { state: "ready" }, five_hour: idle, weekly: idle, usage_updated_at: null };

const zero = {
  requests: 0, errors: 0, incomplete: 0, input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_5m_tokens: 0,
  cache_write_1h_tokens: 0, total_tokens: 0, web_search_requests: 0, web_fetch_requests: 0, cost_micros: 0, cost_usd: 0,
  unpriced_requests: 0, mean_duration_ms: 0, mean_ttfb_ms: null, cache_hit_rate: null,
} as Schemas["UsageFigures"];
const report = (cost: number): Schemas["UsageReport"] => ({
  since: "", until: "", time_zone: "UTC", bucket: null, group: null, top: null, rows: [], total: { ...zero, cost_usd: cost },
});
const failure: Schemas["RecentRequest"] = {
  at: new Date((NOW - 120) * 1000).toISOString(), at_ms: (NOW - 120) * 1000, endpoint: "messages", user: "alice", account: "work",
  model: "claude-sonnet-4-5", status: 429, outcome: "complete", failed: true, input_tokens: 0, output_tokens: 0,
  cache_read_tokens: 0, cache_write_tokens: 0, cost_micros: 0, cost_usd: 0, duration_ms: 10, ttfb_ms: null,
};

async function serve(accounts: Schemas["AccountStatus"][], users: Schemas["User"][]) {
  const mock = await api;
  mock.on("GET /api/v1/status", { status: 200, body: status(accounts) });
  mock.on("GET /api/v1/users", { status: 200, body: users });
  mock.on("GET /api/v1/usage", { status: 200, body: report(12.5) });
  mock.on("GET /api/v1/requests/recent", { status: 200, body: { requests: [failure] } });
}

const me: Schemas["User"] = { name: "me", credential: "work", credential_kind: "account", bindings: [{ provider: "anthropic", credential: "work", credential_kind: "account" }], token_storage: "hashed", this_month: null };

afterEach(async () => {
  cleanup();
  (await api).reset();
});

describe("Overview", () => {
  it("tells a new install what to do first, in order, instead of empty charts", async () => {
    await serve([], []);
    render(Overview);
    const steps = within((await screen.findByRole("heading", { name: "Get started" })).closest("section")!).getAllByRole("listitem");
    expect(steps.map((s) => s.querySelector("strong")?.textContent)).toEqual(["Add an account", "Add a user", "Point Claude Code at Carpool"]);
    expect(screen.getByRole("link", { name: "Add an account" }).getAttribute("href")).toBe("#/accounts");
    expect(screen.getByRole("link", { name: "Add a user" }).getAttribute("href")).toBe("#/users");
    expect(screen.queryByRole("heading", { name: /Cost by day/ })).toBeNull();
    expect(screen.queryByRole("heading", { name: "Recent errors" })).toBeNull();
  });

  it("says first which accounts cannot serve, then gauges with the reserve, costs and recent errors", async () => {
    await serve([key, paused], [me]);
    render(Overview);
    const trouble = await screen.findByRole("heading", { name: "1 of 2 accounts cannot serve requests now" });
    const accounts = screen.getByRole("heading", { name: "Accounts" });
    // The trouble comes before everything else on the page.
    expect(trouble.compareDocumentPosition(accounts) & Node.DOCUMENT_POSITION_FOLLOWING).toBeTruthy();
    expect(trouble.closest("section")!.textContent).toMatch(/work: Paused by reserve The 5-hour window is at 85 %/);
    expect(screen.queryByRole("heading", { name: "Get started" })).toBeNull();

    const card = screen.getByRole("article", { name: "Account work" });
    const meter = within(card).getByRole("meter", { name: "5-hour window" });
    expect(meter.getAttribute("aria-valuenow")).toBe("85");
    expect(meter.getAttribute("aria-valuetext")).toMatch(/^85% used, Carpool stops at 80%, resets in 2 hr, 1[45] min$/);
    expect(within(card).getByText("Reserve 20%: users stop at 80%")).toBeTruthy();
    const apiKey = screen.getByRole("article", { name: "Account key" });
    expect(within(apiKey).queryByRole("meter")).toBeNull();
    expect(within(apiKey).getByText(/no 5-hour or weekly windows/)).toBeTruthy();

    expect(await screen.findAllByText("$12.50")).toHaveLength(2);
    const row = (await screen.findByRole("cell", { name: "alice" })).closest("tr")!;
    expect(within(row).getByText("Rate-limited")).toBeTruthy();
    expect(within(row).getByText("429")).toBeTruthy();
    const asked = (await api).sent.map((s) => s.path);
    expect(asked).toContain("/api/v1/requests/recent");
  });
});
