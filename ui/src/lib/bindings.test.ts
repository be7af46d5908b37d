import { describe, expect, it } from "vitest";
import type { Schemas } from "./api/client";
import { bindingLines, choiceOf, chosenTags, defaultChoice, providersOf, sameChoice, targetsOf } from "./bindings";

const account = (tag: string, provider: Schemas["Provider"]) =>
  ({ tag, provider, kind: "oauth", base_url: "x", secret: { store: "keyring", location: "x" } }) as Schemas["Account"];
const pool = (tag: string, provider: Schemas["Provider"]) =>
  ({ tag, provider, strategy: "least_used", members: [], poll_interval: "1m", session_ttl: "1h", users: [] }) as Schemas["Pool"];

describe("bindings", () => {
  const accounts = [account("max", "anthropic"), account("codex", "openai"), account("gpt", "openai")];
  const pools = [pool("chatgpt", "openai")];

  it("lists the providers that have targets, Claude's first", () => {
    expect(providersOf(accounts, pools)).toEqual(["anthropic", "openai"]);
    expect(providersOf([account("k", "openai")], [])).toEqual(["openai"]);
    expect(providersOf([], [])).toEqual([]);
    expect(targetsOf("openai", accounts, pools).accounts.map((a) => a.tag)).toEqual(["codex", "gpt"]);
  });

  it("chooses each provider's first pool, else first account, for a new user", () => {
    expect(defaultChoice(accounts, pools)).toEqual({ anthropic: "max", openai: "chatgpt" });
    expect(defaultChoice([account("max", "anthropic")], [])).toEqual({ anthropic: "max", openai: "" });
  });

  it("reads and writes a user's bindings", () => {
    const user = {
      bindings: [{ provider: "openai", credential: "chatgpt", credential_kind: "pool" }] as Schemas["Binding"][],
    };
    expect(choiceOf(user)).toEqual({ anthropic: "", openai: "chatgpt" });
    expect(chosenTags({ anthropic: "max", openai: "chatgpt" })).toEqual(["max", "chatgpt"]);
    expect(chosenTags({ anthropic: "", openai: "" })).toEqual([]);
    expect(sameChoice(choiceOf(user), { anthropic: "", openai: "chatgpt" })).toBe(true);
    expect(sameChoice(choiceOf(user), { anthropic: "max", openai: "chatgpt" })).toBe(false);
    expect(bindingLines(user)).toEqual(["OpenAI: chatgpt (pool)"]);
  });
});
