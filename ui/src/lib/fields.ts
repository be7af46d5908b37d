// Which form field an API refusal is about. The engine starts a 422's message with the
// field's path ("name: …", "tag: …", "credentials[0].reserve_5h: …"), so the form can
// show it next to that field; a message without a known field goes to the form as a whole.
import { ApiError } from "./api/client";

export interface FieldError {
  /** The field the message names, among those the form has; null for the form itself. */
  field: string | null;
  message: string;
}

const LEADING_PATH = /^([A-Za-z_][\w.[\]]*):\s+(.*)$/s;

/** The engine's messages start in lower case, as Rust's do; a sentence on screen does not. */
export function sentence(message: string): string {
  return message.charAt(0).toUpperCase() + message.slice(1);
}

/** Sorts an error from `unwrap` to one of `fields`, keeping the engine's words. */
export function fieldError(error: unknown, fields: readonly string[]): FieldError {
  const raw = error instanceof Error ? error.message : String(error);
  const message = sentence(raw);
  if (!(error instanceof ApiError) || error.status !== 422) return { field: null, message };
  const match = LEADING_PATH.exec(raw);
  if (!match) return { field: null, message };
  const [, path = "", rest = ""] = match;
  const last = (path.split(".").pop() ?? "").replace(/\[\d+\]$/, "");
  if (!fields.includes(last)) return { field: null, message };
  return { field: last, message: sentence(rest) };
}

/** The message for `field`, if `error` is about it. */
export function errorFor(error: FieldError | null, field: string | null): string | null {
  return error && error.field === field ? error.message : null;
}
