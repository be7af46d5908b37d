import { describe, expect, it } from "vitest";
import { accountKind, move, optional, providerLabel, reserveValue, secretPlace, strategyLabel } from "./accounts";

describe("accounts in words", () => {
  it("names the kind from the kind and where the secret is", () => {
    expect(accountKind({ kind: "api_key", secret: { store: "keyring", location: "x" } })).toBe("API key");
    expect(accountKind({ kind: "oauth", secret: { store: "credentials_file", location: "/h/.claude/.credentials.json" } })).toBe(
      "Claude Code credentials file",
    );
    expect(accountKind({ kind: "oauth", secret: { store: "keyring", location: "carpool/work" } })).toBe("Claude login");
    expect(secretPlace({ store: "config_file", location: "/c.json" })).toContain("in clear");
    // OpenAI accounts: Codex logins and OpenAI keys.
    const codexFile = { store: "credentials_file", location: "/h/.codex/auth.json" } as const;
    expect(accountKind({ provider: "openai", kind: "oauth", secret: codexFile })).toBe("Codex auth.json file");
    expect(accountKind({ provider: "openai", kind: "oauth", secret: { store: "keyring", location: "x" } })).toBe("Codex login");
    expect(accountKind({ provider: "openai", kind: "api_key", secret: { store: "keyring", location: "x" } })).toBe("OpenAI API key");
    expect(accountKind({ provider: "anthropic", kind: "api_key", secret: { store: "keyring", location: "x" } })).toBe("API key");
    expect(secretPlace(codexFile, "openai")).toContain("Codex's auth.json");
    expect(secretPlace(codexFile)).toContain("Claude Code");
    expect(providerLabel("openai")).toBe("OpenAI");
    expect(providerLabel("anthropic")).toBe("Claude");
    expect(strategyLabel("least_used")).toBe("Least used");
  });

  it("reads reserve fields: empty and 0 are none", () => {
    expect(reserveValue("")).toBeNull();
    expect(reserveValue("0")).toBeNull();
    expect(reserveValue(0)).toBeNull();
    expect(reserveValue(null)).toBeNull();
    expect(reserveValue("20")).toBe(20);
    expect(reserveValue(150)).toBe(150);
    expect(reserveValue("abc")).toBeNaN();
    expect(optional("  ")).toBeNull();
    expect(optional(" http://p:1 ")).toBe("http://p:1");
  });

  it("moves a member up and down within bounds", () => {
    expect(move(["a", "b", "c"], 2, -1)).toEqual(["a", "c", "b"]);
    expect(move(["a", "b", "c"], 0, 1)).toEqual(["b", "a", "c"]);
    expect(move(["a", "b"], 0, -1)).toEqual(["a", "b"]);
  });
});
