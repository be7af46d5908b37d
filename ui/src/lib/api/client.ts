// The typed client of Carpool's management API. `schema.d.ts` is generated from
// ui/openapi.json (`npm run gen`), which a Rust test keeps equal to the document the
// engine serves: a field renamed in Rust fails `npm run check` here.
import createClient, { type Client, type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];
export type ApiClient = Client<paths>;

/** An API answer that is not a success, with the message the engine wrote for people. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** Seconds until trying again may succeed (`retry-after`, on a sign-in lockout). */
    readonly retryAfter: number | null = null,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/** What the client sends besides the cookie: the session's CSRF token, or a bearer secret. */
export interface Credentials {
  csrf: string | null;
  /** The desktop shell's secret (issue: the tray app); the browser uses the cookie. */
  bearer: string | null;
}

export const credentials: Credentials = { csrf: null, bearer: null };

/** Called when an answer says the session is gone (401), so the app can show sign-in. */
let onUnauthorized: () => void = () => {};
export function whenUnauthorized(handler: () => void): void {
  onUnauthorized = handler;
}

const auth: Middleware = {
  onRequest({ request }) {
    if (credentials.bearer) {
      request.headers.set("authorization", `Bearer ${credentials.bearer}`);
    } else if (credentials.csrf && UNSAFE.has(request.method)) {
      request.headers.set("x-csrf-token", credentials.csrf);
    }
    return request;
  },
  onResponse({ response, request }) {
    if (response.status === 401 && !request.url.endsWith("/api/v1/session")) onUnauthorized();
    return response;
  },
};

export function makeClient(baseUrl: string, fetchImpl?: typeof fetch): ApiClient {
  const client = createClient<paths>({
    baseUrl,
    credentials: "same-origin",
    ...(fetchImpl ? { fetch: fetchImpl } : {}),
  });
  client.use(auth);
  return client;
}

/** The dashboard is served by the engine it manages: the API is on the same origin. */
export const api: ApiClient = makeClient(typeof location === "undefined" ? "http://localhost" : location.origin);

interface Answer<T> {
  data?: T;
  error?: unknown;
  response: Response;
}

/** The answer's data, or an [`ApiError`] with the engine's message. */
export async function unwrap<T>(call: Promise<Answer<T>>): Promise<T> {
  let answer: Answer<T>;
  try {
    answer = await call;
  } catch (cause) {
    if (cause instanceof SyntaxError) {
      throw new ApiError(0, "unreadable", `Carpool's answer could not be read (${cause.message}). Is something else answering at this address?`);
    }
    throw new ApiError(0, "unreachable", `Carpool did not answer (${String(cause)}). Is it still running?`);
  }
  const { data, error, response } = answer;
  if (response.ok) return data as T;
  throw toApiError(response, error);
}

export function toApiError(response: Response, body: unknown): ApiError {
  const retry = Number.parseInt(response.headers.get("retry-after") ?? "", 10);
  const retryAfter = Number.isFinite(retry) && retry >= 0 ? retry : null;
  const detail = (body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  if (detail && typeof detail.message === "string") {
    return new ApiError(response.status, typeof detail.code === "string" ? detail.code : "error", detail.message, retryAfter);
  }
  return new ApiError(response.status, "http", `Carpool answered ${response.status} ${response.statusText}`.trim(), retryAfter);
}
