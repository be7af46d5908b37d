// Carpool's health in one word and a tone, for the top bar's dot.
import type { Schemas } from "./api/client";
import type { Tone } from "./status";

export interface Health {
  tone: Tone;
  /** For screen readers and the tooltip: "Carpool is healthy: both accounts ready". */
  label: string;
}

export function health(status: Pick<Schemas["Status"], "accounts">): Health {
  const total = status.accounts.length;
  const ready = status.accounts.filter((a) => a.state.state === "ready").length;
  if (total === 0) return { tone: "bad", label: "Carpool has no accounts yet: add one on the Accounts page" };
  if (ready === total) {
    return { tone: "ok", label: total === 1 ? "Carpool is healthy: its account is ready" : `Carpool is healthy: all ${total} accounts ready` };
  }
  if (ready === 0) return { tone: "bad", label: `No account is ready (${total} not ready): see the overview` };
  return { tone: "warn", label: `${ready} of ${total} accounts ready: see the overview` };
}
