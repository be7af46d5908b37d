// A user's bindings: one account or pool per provider (Claude's, OpenAI's), as the Users
// page shows them and its forms choose them.
import type { Schemas } from "./api/client";
import { PROVIDER_LABEL, type Provider } from "./setup";

export const PROVIDERS: Provider[] = ["anthropic", "openai"];

/** The tag chosen per provider; "" is none. */
export type Choice = Record<Provider, string>;

/** The providers that have an account or pool to bind to, Claude's first. */
export function providersOf(accounts: Pick<Schemas["Account"], "provider">[], pools: Pick<Schemas["Pool"], "provider">[]): Provider[] {
  return PROVIDERS.filter((p) => accounts.some((a) => a.provider === p) || pools.some((q) => q.provider === p));
}

/** The accounts and pools of one provider. */
export function targetsOf<A extends { provider: Provider }, P extends { provider: Provider }>(
  provider: Provider,
  accounts: A[],
  pools: P[],
): { accounts: A[]; pools: P[] } {
  return { accounts: accounts.filter((a) => a.provider === provider), pools: pools.filter((p) => p.provider === provider) };
}

/** A new user's choice: each provider's first pool, else its first account. */
export function defaultChoice(accounts: Schemas["Account"][], pools: Schemas["Pool"][]): Choice {
  const first = (p: Provider) => {
    const t = targetsOf(p, accounts, pools);
    return t.pools[0]?.tag ?? t.accounts[0]?.tag ?? "";
  };
  return { anthropic: first("anthropic"), openai: first("openai") };
}

/** A user's choice as they are bound now. */
export function choiceOf(user: Pick<Schemas["User"], "bindings">): Choice {
  const of = (p: Provider) => user.bindings.find((b) => b.provider === p)?.credential ?? "";
  return { anthropic: of("anthropic"), openai: of("openai") };
}

/** The tags chosen, Claude's first, for the API's `credentials`. */
export function chosenTags(choice: Choice): string[] {
  return PROVIDERS.map((p) => choice[p]).filter((t) => t !== "");
}

/** Whether two choices bind the same. */
export function sameChoice(a: Choice, b: Choice): boolean {
  return PROVIDERS.every((p) => a[p] === b[p]);
}

/** "Claude: work (account)" for each binding. */
export function bindingLines(user: Pick<Schemas["User"], "bindings">): string[] {
  return user.bindings.map((b) => `${PROVIDER_LABEL[b.provider]}: ${b.credential} (${b.credential_kind})`);
}
