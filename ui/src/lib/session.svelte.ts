// Whether this page may use the management API: signed in with the admin secret (a
// session cookie plus its CSRF token), or given a bearer secret by the desktop shell.
import { ApiError, api, credentials, unwrap, whenUnauthorized, type Schemas } from "./api/client";

export type SessionState = "checking" | "signed-out" | "signed-in";

export const session = $state<{
  state: SessionState;
  /** How this page is authorised, once signed in. */
  via: Schemas["Via"] | null;
  /** When the session ends if unused (Unix seconds); `null` with a bearer secret. */
  expiresAt: number | null;
  /** Why the page is back at sign-in, when it did not sign out by itself. */
  reason: string | null;
}>({ state: "checking", via: null, expiresAt: null, reason: null });

/** What the sign-in page says after an answer said the session is gone. */
export const SESSION_ENDED =
  "Your session ended: it was unused for 12 hours, Carpool restarted, or the admin secret was reset. Sign in again to carry on.";

function signedOut(reason: string | null): void {
  credentials.csrf = null;
  session.state = "signed-out";
  session.via = null;
  session.expiresAt = null;
  session.reason = reason;
}

function signedIn(info: Schemas["AccessInfo"]): void {
  credentials.csrf = info.csrf_token ?? null;
  session.state = "signed-in";
  session.via = info.via;
  session.expiresAt = info.expires_at ?? null;
  session.reason = null;
}

whenUnauthorized(() => {
  if (session.state === "signed-in") signedOut(SESSION_ENDED);
});

/** Asks the engine who we are: at start, and after sign-in. */
export async function checkSession(): Promise<void> {
  try {
    const { data, response } = await api.GET("/api/v1/session");
    if (response.ok && data) signedIn(data);
    else if (session.state === "signed-in") signedOut(SESSION_ENDED);
    else signedOut(session.reason);
  } catch (cause) {
    signedOut(`Carpool did not answer (${String(cause)}). Is it still running?`);
  }
}

export async function signIn(secret: string): Promise<void> {
  const signed = await unwrap(api.POST("/api/v1/session", { body: { secret } }));
  signedIn({ via: "session", csrf_token: signed.csrf_token, expires_at: signed.expires_at });
}

/** Ends the session; one that had already ended counts as signed out too. */
export async function signOut(): Promise<void> {
  try {
    await unwrap(api.DELETE("/api/v1/session"));
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) throw e;
  }
  signedOut(null);
}
