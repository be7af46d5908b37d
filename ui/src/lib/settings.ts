// The settings page's logic: saving a change and saying what it did, finding the field an
// API refusal names, and the shape of a price entry.
import { api, unwrap, ApiError, type Schemas } from "./api/client";

export type Settings = Schemas["Settings"];
export type SettingsChanged = Schemas["SettingsChanged"];

/** One model's prices as the config writes them: USD per million tokens (web search: per search). */
export interface PriceEntry {
  input: number;
  output: number;
  cache_read: number;
  cache_write_5m: number;
  cache_write_1h: number;
  web_search?: number;
  fast?: Record<string, number>;
  long_context?: Record<string, number>;
  aliases?: string[];
  [other: string]: unknown;
}

/** The five token prices every entry has, with the words the page shows. */
export const RATES = [
  ["input", "Input"],
  ["output", "Output"],
  ["cache_read", "Cache read"],
  ["cache_write_5m", "Cache write (5 min)"],
  ["cache_write_1h", "Cache write (1 h)"],
] as const;

export type RateName = (typeof RATES)[number][0];

/** What a change sends: the schema types headers and prices as bare objects. */
export interface SettingsUpdate {
  listen?: string;
  listen_port?: number;
  timeouts?: Partial<Schemas["Timeouts"]>;
  max_body_bytes?: number;
  /** A value, a list of values, or `null` to remove the header. */
  headers?: Record<string, string | string[] | null>;
  /** An entry, or `null` to remove the model's override. */
  prices?: Record<string, PriceEntry | null>;
}

export function pricesOf(settings: Settings): Record<string, PriceEntry> {
  return settings.prices as unknown as Record<string, PriceEntry>;
}

/**
 * The field an API refusal names, and the rest of its message: the engine writes a wrong
 * field as "timeouts.connect: `banana` is not a duration…".
 */
export function fieldOf(message: string): { field: string | null; problem: string } {
  const found = /^([a-z_]+(?:\.[^\s:]+)?): (.+)$/s.exec(message);
  if (!found) return { field: null, problem: message };
  return { field: found[1]!, problem: found[2]! };
}

/** What a saved change did, in a sentence. */
export function said(changed: Pick<SettingsChanged, "applied" | "needs_restart">): string {
  const list = (fields: string[]) => new Intl.ListFormat(undefined, { type: "conjunction" }).format(fields);
  const parts: string[] = [];
  if (changed.applied.length > 0) parts.push(`Saved and applied now (${list(changed.applied)}).`);
  if (changed.needs_restart.length > 0) {
    parts.push(`Saved; ${list(changed.needs_restart)} ${changed.needs_restart.length === 1 ? "takes" : "take"} effect when Carpool restarts.`);
  }
  return parts.length > 0 ? parts.join(" ") : "Nothing changed: that is how it was.";
}

export type Saved =
  | { ok: true; said: string; changed: SettingsChanged }
  | { ok: false; field: string | null; problem: string; error: ApiError };

/** Sends a change; the answer as a sentence, or the refusal with the field it names. */
export async function saveSettings(update: SettingsUpdate): Promise<Saved> {
  try {
    const changed = await unwrap(api.PATCH("/api/v1/settings", { body: update as Schemas["UpdateSettings"] }));
    return { ok: true, said: said(changed), changed };
  } catch (e) {
    const error = e instanceof ApiError ? e : new ApiError(0, "error", String(e));
    const { field, problem } = error.status === 422 ? fieldOf(error.message) : { field: null, problem: error.message };
    return { ok: false, field, problem, error };
  }
}

/** The dashboard's address after the relay moved to `listen`:`port` (a wildcard keeps this page's host). */
export function movedTo(listen: string, port: number, here: { protocol: string; hostname: string }): string {
  const wildcard = listen === "0.0.0.0" || listen === "::";
  const host = wildcard ? here.hostname : listen.includes(":") ? `[${listen}]` : listen;
  return `${here.protocol}//${host}:${port}/`;
}

/** The changed fields of a form, against what runs now. */
export function changedFields<T extends object>(draft: T, current: T): Partial<T> {
  const out: Partial<T> = {};
  for (const key of Object.keys(draft) as (keyof T)[]) {
    if (draft[key] !== current[key]) out[key] = draft[key];
  }
  return out;
}
