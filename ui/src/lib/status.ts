// What an account's state means to a person: a short label, a tone for its badge, and a
// sentence saying why and until when. One place for the overview, the accounts page and
// (next) the tray menu's wording.
import type { Schemas } from "./api/client";
import { span } from "./format";

export type AccountState = Schemas["AccountState"];
export type Tone = "ok" | "warn" | "bad";

export interface StateText {
  label: string;
  tone: Tone;
  /** Why, and until when; empty when there is nothing to add to the label. */
  detail: string;
}

const WINDOW: Record<Schemas["WindowName"], string> = { five_hour: "5-hour", weekly: "weekly" };

function unix(seconds: number): Date {
  return new Date(seconds * 1000);
}

function back(until: number | null | undefined, now: Date): string {
  if (until == null) return "";
  const ms = unix(until).getTime() - now.getTime();
  return ms <= 0 ? "Back any moment." : `Back in ${span(ms)}.`;
}

export function describeState(state: AccountState, now: Date = new Date()): StateText {
  switch (state.state) {
    case "ready":
      return { label: "Ready", tone: "ok", detail: "" };
    case "paused_by_reserve":
      return {
        label: "Paused by reserve",
        tone: "warn",
        detail: `The ${WINDOW[state.window]} window is at ${state.percent} %, the cap your reserve leaves is ${state.cap} %. ${back(state.until, now)}`.trim(),
      };
    case "quota_exhausted":
      return { label: "Quota used up", tone: "warn", detail: `The ${WINDOW[state.window]} window is used up. ${back(state.until, now)}`.trim() };
    case "rate_limited":
      return { label: "Rate-limited", tone: "warn", detail: `The provider refused a request for quota. ${back(state.until, now)}` };
    case "cooling_down":
      return { label: "Cooling down", tone: "warn", detail: `A short pause after a rate limit. ${back(state.until, now)}` };
    case "circuit_open": {
      const wait = unix(state.until).getTime() - now.getTime();
      return {
        label: "Failing",
        tone: "bad",
        detail: `${state.failures} failures in a row (server errors or no connection). ${wait <= 0 ? "The next request tries it again." : `Tried again in ${span(wait)}.`}`,
      };
    }
    case "disabled":
      return { label: "Disabled by the provider", tone: "bad", detail: `“${state.reason}” Log in again, or remove the account.` };
    case "login_expired":
      return { label: "Login expired", tone: "bad", detail: `${state.reason} Log in again to use this account.` };
    case "file_missing":
      return { label: "Not logged in", tone: "bad", detail: `No credentials file at ${state.path} yet: run \`claude\` there and log in.` };
    case "waiting_for_owner":
      return { label: "Needs you", tone: "bad", detail: state.reason };
    case "retrying":
      return { label: "Retrying", tone: "warn", detail: `${state.reason} Carpool tries again by itself.` };
  }
}
