// The live feed's logic, apart from the page: what is shown, what is held while paused,
// the cap on rows, the filter, and what the engine said was skipped. The page feeds it
// events as the EventSource delivers them and calls `flush()` once per animation frame,
// so a burst of hundreds of events a second is one DOM update a frame, not hundreds.
import type { Schemas } from "./api/client";

export type RequestEvent = Schemas["RequestEvent"];

/** An event with a key of its own (two requests can share every field). */
export interface LiveRow extends RequestEvent {
  id: number;
}

/** Rows kept on screen, newest first; older ones fall off the bottom. */
export const MAX_ROWS = 500;

export class LiveFeed {
  /** What the table shows, newest first, at most `limit`. */
  rows: LiveRow[] = [];
  /** Arrived and not shown yet: since the last flush, or since Pause. Newest last. */
  private incoming: LiveRow[] = [];
  /** Events that arrived while paused (all of them, even those the cap let go). */
  held = 0;
  /** Events the engine skipped because this page fell behind (`lagged` events). */
  missed = 0;
  /** Every request event received since the page opened. */
  received = 0;
  paused = false;
  private next = 0;

  constructor(readonly limit: number = MAX_ROWS) {}

  /** A `request` event arrived. */
  push(event: RequestEvent): void {
    this.received += 1;
    if (this.paused) this.held += 1;
    this.incoming.push({ ...event, id: this.next++ });
    // Nothing older than the newest `limit` could ever be shown: do not keep it, however
    // long the page is paused or hidden (no animation frames in a background tab).
    if (this.incoming.length > this.limit) this.incoming.splice(0, this.incoming.length - this.limit);
  }

  /** A `lagged` event: the engine dropped this many events for this page. */
  lagged(missed: number): void {
    this.missed += missed;
  }

  pause(): void {
    this.paused = true;
  }

  /** Shows what was held at the next flush. */
  resume(): void {
    this.paused = false;
    this.held = 0;
  }

  /** Moves what arrived onto the table, unless paused; `true` when the rows changed. */
  flush(): boolean {
    if (this.paused || this.incoming.length === 0) return false;
    const arrived = this.incoming.reverse();
    this.incoming = [];
    this.rows = arrived.concat(this.rows.slice(0, Math.max(0, this.limit - arrived.length)));
    if (this.rows.length > this.limit) this.rows = this.rows.slice(0, this.limit);
    return true;
  }

  /** Empties the table (and what is held). */
  clear(): void {
    this.rows = [];
    this.incoming = [];
    this.held = 0;
  }
}

/** A request that did not end as a whole answer: an error status, or an outcome other than `complete`. */
export function isFailure(event: RequestEvent): boolean {
  return event.status >= 400 || event.outcome !== "complete";
}

const OUTCOMES: Record<string, string> = {
  complete: "Complete",
  upstream_error: "Upstream error",
  client_closed: "Client hung up",
  upstream_broke: "Upstream broke off",
  request_timeout: "Timed out",
  idle_timeout: "Went silent",
};

const ERRORS: Record<string, string> = {
  bad_token: "bad token",
  not_found: "no such path",
  method_not_allowed: "wrong method",
  too_large: "body too large",
  bad_request: "bad request",
  body_stalled: "body stalled",
  needs_owner: "needs the owner",
  no_credential: "no account",
  exhausted: "accounts used up",
  unreachable: "upstream unreachable",
  timeout: "timed out",
};

/** How a request ended, in words: "Complete", "Refused: bad token". */
export function outcomeText(event: Pick<RequestEvent, "outcome" | "error">): string {
  if (event.outcome === "error") {
    return event.error ? `Refused: ${ERRORS[event.error] ?? event.error.replaceAll("_", " ")}` : "Refused";
  }
  return OUTCOMES[event.outcome] ?? event.outcome.replaceAll("_", " ");
}

export interface LiveFilter {
  /** Words to find, each in the user, account, model, status or outcome. */
  text: string;
  failuresOnly: boolean;
}

/**
 * Whether a row passes the filter. The text is split into words; every word must be found
 * (case-insensitive, anywhere) in one of user, account, model, status, outcome.
 */
export function matches(event: RequestEvent, filter: LiveFilter): boolean {
  if (filter.failuresOnly && !isFailure(event)) return false;
  const words = filter.text.toLowerCase().split(/\s+/).filter(Boolean);
  if (words.length === 0) return true;
  const fields = [
    event.user ?? "",
    event.account ?? "",
    event.model ?? "",
    String(event.status),
    event.outcome,
    event.error ?? "",
    outcomeText(event),
  ].map((f) => f.toLowerCase());
  return words.every((word) => fields.some((field) => field.includes(word)));
}
