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

/** Sorts an error from `unwrap` to one of `fields`, keeping the engine's words. */
export function fieldError(error: unknown, fields: readonly string[]): FieldError {
  const message = error instanceof Error ? error.message : String(error);
  if (!(error instanceof ApiError) || error.status !== 422) return { field: null, message };
  const match = LEADING_PATH.exec(message);
  if (!match) return { field: null, message };
  const [, path = "", rest = ""] = match;
  const last = (path.split(".").pop() ?? "").replace(/\[\d+\]$/, "");
  if (!fields.includes(last)) return { field: null, message };
  return { field: last, message: rest.charAt(0).toUpperCase() + rest.slice(1) };
}

/** The message for `field`, if `error` is about it. */
export function errorFor(error: FieldError | null, field: string | null): string | null {
  return error && error.field === field ? error.message : null;
}
