// Whether this page may use the management API: signed in with the admin secret (a
// session cookie plus its CSRF token), or given a bearer secret by the desktop shell.
import { api, credentials, unwrap, whenUnauthorized } from "./api/client";

export type SessionState = "checking" | "signed-out" | "signed-in";

export const session = $state<{ state: SessionState }>({ state: "checking" });

whenUnauthorized(() => {
  credentials.csrf = null;
  session.state = "signed-out";
});

/** Asks the engine who we are: at start, and after sign-in. */
export async function checkSession(): Promise<void> {
  const { data, response } = await api.GET("/api/v1/session");
  if (response.ok && data) {
    credentials.csrf = data.csrf_token ?? null;
    session.state = "signed-in";
  } else {
    credentials.csrf = null;
    session.state = "signed-out";
  }
}

export async function signIn(secret: string): Promise<void> {
  const signed = await unwrap(api.POST("/api/v1/session", { body: { secret } }));
  credentials.csrf = signed.csrf_token;
  session.state = "signed-in";
}

export async function signOut(): Promise<void> {
  await unwrap(api.DELETE("/api/v1/session"));
  credentials.csrf = null;
  session.state = "signed-out";
}
