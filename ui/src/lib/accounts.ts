// Accounts and pools in words: what kind of account, where its secret is kept, what a
// pool's strategy does, and the reserve fields' values.
import type { Schemas } from "./api/client";

type Account = Schemas["Account"];

/** "Claude" or "OpenAI": whose API an account or pool speaks. */
export function providerLabel(provider: Schemas["Provider"]): string {
  return provider === "openai" ? "OpenAI" : "Claude";
}

/**
 * "Claude login", "Claude Code credentials file", "API key"; for OpenAI accounts "Codex
 * login", "Codex auth.json file", "OpenAI API key".
 */
export function accountKind(account: Pick<Account, "kind" | "secret"> & { provider?: Schemas["Provider"] }): string {
  if (account.provider === "openai") {
    if (account.kind === "api_key") return "OpenAI API key";
    return account.secret.store === "credentials_file" ? "Codex auth.json file" : "Codex login";
  }
  if (account.kind === "api_key") return "API key";
  return account.secret.store === "credentials_file" ? "Claude Code credentials file" : "Claude login";
}

const STORE: Record<Schemas["SecretStoreKind"], string> = {
  credentials_file: "Claude Code's credentials file, shared with Claude Code on that machine",
  keyring: "the OS keyring",
  data_dir: "a private file in Carpool's data directory",
  config_file: "the config file, in clear",
};

/** Where the login or key is kept, in words (never the secret). */
export function secretPlace(secret: Schemas["SecretPlace"], provider: Schemas["Provider"] = "anthropic"): string {
  if (provider === "openai" && secret.store === "credentials_file") return "Codex's auth.json, shared with Codex on that machine";
  return STORE[secret.store];
}

export const STRATEGIES: { value: Schemas["Strategy"]; label: string; explain: string }[] = [
  { value: "least_used", label: "Least used", explain: "Each new conversation goes to the account with the most quota left (Max plans weigh more)." },
  { value: "round_robin", label: "Round robin", explain: "New conversations take the accounts in turn." },
  { value: "random", label: "Random", explain: "Each new conversation picks an account at random." },
  { value: "fallback", label: "Fallback", explain: "Always the first account in the order below; the next only when it cannot take requests." },
];

export function strategyLabel(strategy: Schemas["Strategy"]): string {
  return STRATEGIES.find((s) => s.value === strategy)?.label ?? strategy;
}

/**
 * A reserve field's value for the API: empty or 0 is no reserve (null); otherwise the
 * whole percent typed. The engine checks the range and says so (1–99).
 */
export function reserveValue(typed: string | number | null | undefined): number | null {
  if (typed === null || typed === undefined) return null;
  const text = String(typed).trim();
  if (text === "") return null;
  const n = Number(text);
  if (!Number.isFinite(n)) return NaN;
  return n === 0 ? null : Math.round(n);
}

/** An optional text field for the API: empty is null (the default). */
export function optional(typed: string): string | null {
  const text = typed.trim();
  return text === "" ? null : text;
}

/** Moves `list[index]` by `delta` places, as a new array. */
export function move<T>(list: readonly T[], index: number, delta: number): T[] {
  const to = index + delta;
  if (to < 0 || to >= list.length) return [...list];
  const copy = [...list];
  copy.splice(to, 0, ...copy.splice(index, 1));
  return copy;
}
