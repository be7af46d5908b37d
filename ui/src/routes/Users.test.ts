import { cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/svelte";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Schemas } from "../lib/api/client";

const api = vi.hoisted(async () => {
  const { mockApi } = await import("../components/mock-api");
  const mock = mockApi();
  globalThis.fetch = mock.fetch as typeof fetch;
  return mock;
});

import Users from "./Users.svelte";
import { refusal } from "../components/mock-api";

const work: Schemas["Account"] = {
  tag: "work",
  provider: "anthropic",
  kind: "oauth",
  base_url: "https://api.anthropic.com",
  secret: { store: "credentials_file", location: "/home/me/.claude/.credentials.json" },
};
const me: Schemas["User"] = {
  name: "me",
  credential: "work",
  credential_kind: "account",
  bindings: [{ provider: "anthropic", credential: "work", credential_kind: "account" }],
  token_storage: "hashed",
  this_month: { requests: 1234, cost_usd: 5.5 },
};
const token = "cpk-secret-token-1";
const setup: Schemas["ClientSetup"] = {
  base_url: "http://carpool.lan:7676",
  env: [
    { name: "ANTHROPIC_BASE_URL", value: "http://carpool.lan:7676" },
    { name: "ANTHROPIC_AUTH_TOKEN", value: token },
  ],
  shell: `export ANTHROPIC_BASE_URL=http://carpool.lan:7676\nexport ANTHROPIC_AUTH_TOKEN=${token}\n`,
  claude_code_settings: `{"env":{"ANTHROPIC_AUTH_TOKEN":"${token}"}}`,
  python: `client = anthropic.Anthropic(api_key="${token}")\n`,
  typescript: `new Anthropic({ apiKey: "${token}" })\n`,
  openai_base_url: "http://carpool.lan:7676/v1",
  codex_config: `model_provider = "carpool"\n\n[model_providers.carpool]\nbase_url = "http://carpool.lan:7676/v1"\n`,
  codex_shell: `export CARPOOL_TOKEN=${token}\n`,
  openai_env: [
    { name: "OPENAI_BASE_URL", value: "http://carpool.lan:7676/v1" },
    { name: "OPENAI_API_KEY", value: token },
  ],
  openai_python: `client = OpenAI(api_key="${token}")\n`,
  openai_typescript: `new OpenAI({ apiKey: "${token}" })\n`,
};
const alice = (name = "alice"): Schemas["User"] => ({
  name,
  credential: "work",
  credential_kind: "account",
  bindings: [{ provider: "anthropic", credential: "work", credential_kind: "account" }],
  token_storage: "hashed", this_month: null });

async function type(label: string, value: string) {
  const input = screen.getByLabelText(label) as HTMLInputElement;
  input.value = value;
  await fireEvent.input(input);
}

beforeEach(async () => {
  const mock = await api;
  mock.on("GET /api/v1/users", { status: 200, body: [me] });
  mock.on("GET /api/v1/accounts", { status: 200, body: [work] });
  mock.on("GET /api/v1/pools", { status: 200, body: [] });
});

afterEach(async () => {
  cleanup();
  (await api).reset();
  vi.unstubAllGlobals();
  localStorage.clear();
  sessionStorage.clear();
});

async function addAlice() {
  render(Users);
  await fireEvent.click(await screen.findByRole("button", { name: "Add user" }));
  await type("Name", "alice");
  expect((screen.getByLabelText("Account or pool") as HTMLSelectElement).value).toBe("work");
  await fireEvent.click(screen.getByRole("button", { name: "Create user" }));
  return screen.findByRole("heading", { name: /Token for alice/ });
}

describe("Users", () => {
  it("lists users with this month's use", async () => {
    render(Users);
    const row = (await screen.findByRole("rowheader", { name: "me" })).closest("tr")!;
    expect(row.textContent).toContain("$5.50");
    expect(row.textContent).toContain("1,234");
    expect(within(row).getByRole("button", { name: "Rotate token for me" })).toBeTruthy();
    expect(within(row).getByRole("button", { name: "Revoke me" })).toBeTruthy();
  });

  it("shows a new token once, copies a setup, and forgets it when dismissed", async () => {
    const mock = await api;
    mock.on("POST /api/v1/users", { status: 201, body: { user: alice(), token, setup } });
    const writeText = vi.fn().mockResolvedValue(undefined);
    vi.stubGlobal("navigator", { ...navigator, clipboard: { writeText } });

    await addAlice();
    expect(mock.sent.at(-1)).toMatchObject({ method: "POST", path: "/api/v1/users", body: { name: "alice", credentials: ["work"] } });
    expect(screen.getByText(/Shown only this once/)).toBeTruthy();
    expect(screen.getByText(token)).toBeTruthy();
    for (const label of [
      "Claude Code setup",
      "Claude Code settings",
      "Claude environment lines",
      "Anthropic Python SDK",
      "Anthropic TypeScript SDK",
      "Codex setup",
      "Codex token line",
      "OpenAI environment lines",
      "OpenAI Python SDK",
      "OpenAI TypeScript SDK",
      "token",
    ]) {
      expect(screen.getByRole("button", { name: `Copy ${label}` })).toBeTruthy();
    }

    await fireEvent.click(screen.getByRole("button", { name: "Copy Claude Code setup" }));
    expect(writeText).toHaveBeenCalledWith(setup.shell);
    const said = await screen.findByText("Copied");
    expect(said.getAttribute("aria-live")).toBe("polite");

    // The new user is in the table; the token is nowhere but the panel.
    expect(screen.getByRole("rowheader", { name: "alice" })).toBeTruthy();
    expect(JSON.stringify({ ...localStorage })).not.toContain(token);
    expect(JSON.stringify({ ...sessionStorage })).not.toContain(token);

    await fireEvent.click(screen.getByRole("button", { name: /Done/ }));
    expect(screen.queryByRole("heading", { name: /Token for/ })).toBeNull();
    expect(document.body.textContent).not.toContain(token);
  });

  it("selects the setup and says which keys to press where the clipboard is missing", async () => {
    const mock = await api;
    mock.on("POST /api/v1/users", { status: 201, body: { user: alice(), token, setup } });
    vi.stubGlobal("navigator", { ...navigator, clipboard: undefined, platform: "Linux x86_64" });

    await addAlice();
    await fireEvent.click(screen.getByRole("button", { name: "Copy Anthropic Python SDK" }));
    expect(await screen.findByText("Selected: press Ctrl+C to copy")).toBeTruthy();
    expect(window.getSelection()?.toString()).toBe(setup.python);
  });

  it("shows the API's refusal next to the field it is about", async () => {
    const mock = await api;
    mock.on(
      "POST /api/v1/users",
      refusal(422, "name: the config already has a user `me`; choose another name"),
      refusal(422, "credential: the config has no account or pool `gone` (accounts: work)"),
    );
    render(Users);
    await fireEvent.click(await screen.findByRole("button", { name: "Add user" }));
    await type("Name", "me");
    await fireEvent.click(screen.getByRole("button", { name: "Create user" }));

    const nameError = await screen.findByRole("alert");
    expect(nameError.textContent).toBe("The config already has a user `me`; choose another name");
    const name = screen.getByLabelText("Name");
    expect(name.getAttribute("aria-invalid")).toBe("true");
    expect(name.getAttribute("aria-describedby")).toContain(nameError.id);
    expect(screen.queryByRole("heading", { name: /Token for/ })).toBeNull();

    await fireEvent.click(screen.getByRole("button", { name: "Create user" }));
    await waitFor(() => expect(screen.getByRole("alert").textContent).toContain("no account or pool `gone`"));
    const select = screen.getByLabelText("Account or pool");
    expect(select.getAttribute("aria-invalid")).toBe("true");
    expect(select.getAttribute("aria-describedby")).toBe(screen.getByRole("alert").id);
    expect(name.getAttribute("aria-invalid")).toBeNull();
  });

  it("rotates after confirming and shows the new token once", async () => {
    const mock = await api;
    mock.on("POST /api/v1/users/me/rotate", { status: 200, body: { user: me, token, setup } });
    render(Users);
    await fireEvent.click(await screen.findByRole("button", { name: "Rotate token for me" }));
    const dialog = screen.getByRole("dialog");
    expect(mock.sent.some((s) => s.path.endsWith("/rotate"))).toBe(false);
    await fireEvent.click(within(dialog).getByRole("button", { name: "Rotate" }));
    expect(await screen.findByRole("heading", { name: "Token for me" })).toBeTruthy();
    await waitFor(() => expect(screen.queryByRole("dialog")).toBeNull());
    expect(screen.getByText(/old token is refused/)).toBeTruthy();
  });

  it("revokes after confirming, and keeps a refusal in the dialog", async () => {
    const mock = await api;
    mock.on("DELETE /api/v1/users/me", refusal(409, "the config file changed on disk; reload and try again", "conflict"), { status: 204 });
    render(Users);
    await fireEvent.click(await screen.findByRole("button", { name: "Revoke me" }));
    const dialog = screen.getByRole("dialog");
    await fireEvent.click(within(dialog).getByRole("button", { name: "Revoke" }));
    expect((await within(dialog).findByRole("alert")).textContent).toContain("changed on disk");
    expect(screen.getByRole("rowheader", { name: "me" })).toBeTruthy();

    await fireEvent.click(within(dialog).getByRole("button", { name: "Revoke" }));
    await waitFor(() => expect(screen.queryByRole("rowheader", { name: "me" })).toBeNull());
    await waitFor(() => expect(screen.queryByRole("dialog")).toBeNull());
  });

  it("tells an empty install what to do first", async () => {
    const mock = await api;
    mock.on("GET /api/v1/users", { status: 200, body: [] });
    render(Users);
    expect(await screen.findByText(/No users yet/)).toBeTruthy();
    expect(screen.getAllByRole("button", { name: "Add user" })).toHaveLength(1);
    cleanup();

    mock.on("GET /api/v1/accounts", { status: 200, body: [] });
    render(Users);
    expect((await screen.findByRole("link", { name: "Add an account first" })).getAttribute("href")).toBe("#/accounts");
    expect(screen.queryByRole("button", { name: "Add user" })).toBeNull();
  });

  describe("with a Claude and a Codex account", () => {
    const codex: Schemas["Account"] = {
      tag: "codex",
      provider: "openai",
      kind: "oauth",
      base_url: "https://chatgpt.com/backend-api/codex",
      secret: { store: "credentials_file", location: "/home/me/.codex/auth.json" },
      email: "me@example.com",
      plan: "pro",
    };
    const both: Schemas["User"] = {
      ...me,
      bindings: [
        { provider: "anthropic", credential: "work", credential_kind: "account" },
        { provider: "openai", credential: "codex", credential_kind: "account" },
      ],
    };

    beforeEach(async () => {
      const mock = await api;
      mock.on("GET /api/v1/users", { status: 200, body: [both] });
      mock.on("GET /api/v1/accounts", { status: 200, body: [work, codex] });
    });

    it("shows each user's bindings", async () => {
      render(Users);
      const row = (await screen.findByRole("rowheader", { name: "me" })).closest("tr")!;
      expect(row.textContent).toContain("Claude: work (account)");
      expect(row.textContent).toContain("OpenAI: codex (account)");
    });

    it("binds a new user to OpenAI only and shows the Codex setup first", async () => {
      const mock = await api;
      const gptOnly: Schemas["User"] = {
        ...alice("dana"),
        credential: "codex",
        bindings: [{ provider: "openai", credential: "codex", credential_kind: "account" }],
      };
      mock.on("POST /api/v1/users", { status: 201, body: { user: gptOnly, token, setup } });
      const writeText = vi.fn().mockResolvedValue(undefined);
      vi.stubGlobal("navigator", { ...navigator, clipboard: { writeText } });
      render(Users);
      await fireEvent.click(await screen.findByRole("button", { name: "Add user" }));
      await type("Name", "dana");
      const claude = screen.getByLabelText("Claude account or pool") as HTMLSelectElement;
      const openai = screen.getByLabelText("OpenAI account or pool") as HTMLSelectElement;
      expect([claude.value, openai.value]).toEqual(["work", "codex"]);
      // Codex accounts are not offered for Claude.
      expect([...claude.options].map((o) => o.value)).toEqual(["", "work"]);

      // Neither is refused before asking the engine.
      claude.value = "";
      await fireEvent.change(claude);
      openai.value = "";
      await fireEvent.change(openai);
      await fireEvent.click(screen.getByRole("button", { name: "Create user" }));
      expect((await screen.findByRole("alert")).textContent).toContain("at least one");
      expect(mock.sent.some((s) => s.method === "POST")).toBe(false);

      openai.value = "codex";
      await fireEvent.change(openai);
      await fireEvent.click(screen.getByRole("button", { name: "Create user" }));
      await screen.findByRole("heading", { name: /Token for dana/ });
      expect(mock.sent.at(-1)).toMatchObject({ body: { name: "dana", credentials: ["codex"] } });
      const groups = screen.getAllByRole("heading", { level: 3 }).map((h) => h.textContent);
      expect(groups).toEqual(["Codex and the OpenAI SDKs", "Claude Code and the Anthropic SDKs"]);
      expect(screen.getByText(/dana is not bound to a Claude account or pool yet/)).toBeTruthy();
      await fireEvent.click(screen.getByRole("button", { name: "Copy Codex setup" }));
      expect(writeText).toHaveBeenCalledWith(setup.codex_config);
    });

    it("rebinds a user to OpenAI only", async () => {
      const mock = await api;
      const gptOnly: Schemas["User"] = {
        ...both,
        credential: "codex",
        bindings: [{ provider: "openai", credential: "codex", credential_kind: "account" }],
      };
      mock.on("PATCH /api/v1/users/me", { status: 200, body: gptOnly });
      render(Users);
      await fireEvent.click(await screen.findByRole("button", { name: "Edit me" }));
      const claude = screen.getByLabelText("Send Claude requests to") as HTMLSelectElement;
      expect(claude.value).toBe("work");
      claude.value = "";
      await fireEvent.change(claude);
      await fireEvent.click(screen.getByRole("button", { name: "Save" }));
      await waitFor(() => expect(mock.sent.at(-1)).toMatchObject({ method: "PATCH", body: { credentials: ["codex"] } }));
      const row = (await screen.findByRole("rowheader", { name: "me" })).closest("tr")!;
      await waitFor(() => expect(row.textContent).not.toContain("Claude:"));
    });
  });
});
