import { cleanup, fireEvent, render, screen, waitFor } from "@testing-library/svelte";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Schemas } from "../lib/api/client";

const api = vi.hoisted(async () => {
  const { mockApi } = await import("./mock-api");
  const mock = mockApi();
  globalThis.fetch = mock.fetch as typeof fetch;
  return mock;
});

import LoginFlow from "./LoginFlow.svelte";
import { refusal } from "./mock-api";

const account: Schemas["Account"] = {
  tag: "home",
  provider: "anthropic",
  kind: "oauth",
  base_url: "https://api.anthropic.com",
  secret: { store: "keyring", location: "carpool/home" },
  email: "me@example.com",
  plan: "max",
};

async function type(label: string, value: string) {
  const input = screen.getByLabelText(label) as HTMLInputElement;
  input.value = value;
  await fireEvent.input(input);
}

afterEach(async () => {
  cleanup();
  (await api).reset();
});

describe("LoginFlow", () => {
  it("shows the authorize URL, posts the pasted code, and shows a refusal next to the code", async () => {
    const mock = await api;
    const expires = Math.floor(Date.now() / 1000) + 900;
    mock.on("POST /api/v1/accounts/login", {
      status: 200,
      body: { login_id: "L1", authorize_url: "https://claude.ai/oauth/authorize?state=s1", expires_at: expires, tag: "home" },
    });
    mock.on(
      "POST /api/v1/accounts/login/L1",
      refusal(422, "the pasted code belongs to another login: its state does not match this login's", "login_state_mismatch"),
      { status: 201, body: account },
    );
    const onadded = vi.fn();
    render(LoginFlow, { props: { onadded } });

    await type("Tag", "home");
    await fireEvent.click(screen.getByRole("button", { name: "Start Claude login" }));

    const link = await screen.findByRole("link", { name: /Open Claude's login page/ });
    expect(link.getAttribute("href")).toBe("https://claude.ai/oauth/authorize?state=s1");
    expect(link.getAttribute("target")).toBe("_blank");
    expect(link.getAttribute("rel")).toContain("noopener");
    expect(screen.getByText(/expires in 15 minutes/)).toBeTruthy();
    expect(mock.sent[0]).toMatchObject({
      method: "POST",
      path: "/api/v1/accounts/login",
      body: { tag: "home", base_url: null, provider: "claude" },
    });

    await type("Code from Claude", " wrong#s0 ");
    await fireEvent.click(screen.getByRole("button", { name: "Finish login" }));
    const alert = await screen.findByRole("alert");
    expect(alert.textContent).toContain("belongs to another login");
    const code = screen.getByLabelText("Code from Claude");
    expect(code.getAttribute("aria-invalid")).toBe("true");
    expect(code.getAttribute("aria-describedby")).toContain(alert.id);
    expect(onadded).not.toHaveBeenCalled();

    await type("Code from Claude", "right#s1");
    await fireEvent.click(screen.getByRole("button", { name: "Finish login" }));
    await waitFor(() => expect(onadded).toHaveBeenCalledWith(account));
    expect(mock.sent.at(-1)).toMatchObject({ path: "/api/v1/accounts/login/L1", body: { code: "right#s1" } });
    expect(screen.queryByRole("alert")).toBeNull();
  });

  it("logs in with Codex: provider codex, and the redirect address pasted back", async () => {
    const mock = await api;
    const expires = Math.floor(Date.now() / 1000) + 900;
    const codex: Schemas["Account"] = { ...account, tag: "chatgpt", provider: "openai", plan: "pro" };
    mock.on("POST /api/v1/accounts/login", {
      status: 200,
      body: { login_id: "C1", authorize_url: "https://auth.openai.com/oauth/authorize?state=c1", expires_at: expires, tag: "chatgpt" },
    });
    mock.on("POST /api/v1/accounts/login/C1", { status: 201, body: codex });
    const onadded = vi.fn();
    render(LoginFlow, { props: { onadded, provider: "codex" } });

    await type("Tag", "chatgpt");
    await fireEvent.click(screen.getByRole("button", { name: "Start Codex login" }));
    const link = await screen.findByRole("link", { name: /Open OpenAI's login page/ });
    expect(link.getAttribute("href")).toBe("https://auth.openai.com/oauth/authorize?state=c1");
    expect(mock.sent[0]).toMatchObject({ body: { tag: "chatgpt", provider: "codex" } });
    expect(screen.getByText(/localhost:1455\/auth\/callback/)).toBeTruthy();

    const redirect = "http://localhost:1455/auth/callback?code=abc&state=c1";
    await type("Address from the browser", redirect);
    await fireEvent.click(screen.getByRole("button", { name: "Finish login" }));
    await waitFor(() => expect(onadded).toHaveBeenCalledWith(codex));
    expect(mock.sent.at(-1)).toMatchObject({ path: "/api/v1/accounts/login/C1", body: { code: redirect } });
  });

  it("puts a tag in use next to the tag field", async () => {
    const mock = await api;
    mock.on("POST /api/v1/accounts/login", refusal(422, "tag: the config already has an account or pool `work`; choose another tag"));
    render(LoginFlow, { props: { onadded: vi.fn() } });
    await type("Tag", "work");
    await fireEvent.click(screen.getByRole("button", { name: "Start Claude login" }));
    const alert = await screen.findByRole("alert");
    expect(alert.textContent).toBe("The config already has an account or pool `work`; choose another tag");
    expect(alert.parentElement?.contains(screen.getByLabelText("Tag"))).toBe(true);
    expect(screen.queryByRole("link")).toBeNull();
  });
});
