// "Add an account by logging in with Claude" (issue 11), end to end: the Accounts page
// starts a real login in `carpool serve` (OAuth with PKCE), whose authorize URL points at
// the mock's Claude login page (scripts/stack.mjs); the test plays the person in the
// browser — opens that page, reads the `<code>#<state>` it shows, pastes it — and the
// account appears, Ready, with the email and plan the mock's profile gives. A user bound
// to it then reaches the mock with the access token the login obtained. A wrong code is
// refused with the API's message next to the code field.
import { join } from "node:path";
import type { Page } from "@playwright/test";
import { adminGet, expect, SCREENSHOTS, sendWithSdk, signIn, test, useStack } from "./fixtures";

const stack = useStack();

/** Follows the page's link in the navigation bar. */
async function goTo(page: Page, name: string) {
  await page.getByRole("navigation", { name: "Pages" }).getByRole("link", { name, exact: true }).click();
  await expect(page.getByRole("heading", { level: 1, name })).toBeVisible();
}

/**
 * On the Accounts page: opens "Add an account", its Claude login tab, and starts a login
 * for `tag` relaying to the mock. Returns the authorize link's URL, checked.
 */
async function startLogin(page: Page, tag: string): Promise<URL> {
  await page.getByRole("button", { name: "Add account" }).first().click();
  const adding = page.getByRole("region", { name: "Add an account" });
  await expect(adding).toBeVisible();
  const tab = adding.getByRole("tab", { name: "Log in with Claude" });
  await tab.click();
  await expect(tab).toHaveAttribute("aria-selected", "true");
  const panel = adding.getByRole("tabpanel", { name: "Log in with Claude" });
  await panel.getByLabel("Tag").fill(tag);
  await panel.getByLabel(/Base URL/).fill(stack().upstream);
  await panel.getByRole("button", { name: "Start Claude login" }).click();

  const link = panel.getByRole("link", { name: "Open Claude's login page" });
  await expect(link).toBeVisible();
  await expect(panel.getByText(tag, { exact: true })).toBeVisible();
  const href = await link.getAttribute("href");
  expect(href).toBeTruthy();
  const url = new URL(href ?? "");
  // The mock's login page (oauth.claude.authorize_url), with PKCE (S256) and a state.
  expect(`${url.origin}${url.pathname}`).toBe(`${stack().upstream}/oauth/authorize`);
  const q = url.searchParams;
  expect(q.get("response_type")).toBe("code");
  expect(q.get("code_challenge_method")).toBe("S256");
  // base64url of a SHA-256: 43 characters, no padding.
  expect(q.get("code_challenge")).toMatch(/^[A-Za-z0-9_-]{43}$/);
  expect(q.get("state")).toMatch(/^[A-Za-z0-9_-]{20,}$/);
  expect(q.get("client_id")).toBeTruthy();
  expect(q.get("redirect_uri")).toBe("https://platform.claude.com/oauth/code/callback");
  expect(q.get("scope")?.split(" ")).toEqual(expect.arrayContaining(["user:inference", "user:profile"]));
  return url;
}

test("add an account by logging in with Claude, then relay a user's request through it", async ({ page, context }) => {
  test.setTimeout(60_000);
  const TAG = "claude";
  await test.step("sign in and open Accounts", async () => {
    await signIn(page, stack());
    await goTo(page, "Accounts");
  });

  const authorize = await test.step("start the login: the authorize link is shown", () => startLogin(page, TAG));
  const state = authorize.searchParams.get("state") ?? "";

  let pasted = "";
  await test.step("log in on Claude's page (the mock's), which shows CODE#STATE", async () => {
    const [claude] = await Promise.all([
      context.waitForEvent("page"),
      page.getByRole("link", { name: "Open Claude's login page" }).click(),
    ]);
    await claude.waitForLoadState();
    expect(claude.url()).toBe(authorize.href);
    const shown = (await claude.locator("body").innerText()).trim();
    const [code, shownState] = shown.split("#");
    expect(code).toMatch(/^mock-code-\d+-[0-9a-f]+$/);
    // The page echoes the state of this login's URL: the person pastes code and state.
    expect(shownState).toBe(state);
    pasted = `${code}#${state}`;
    await claude.close();
  });

  await test.step("paste the code: the account appears, Ready, with its email and plan", async () => {
    const code = page.getByLabel("Code from Claude");
    await code.fill(pasted);
    await page.getByRole("button", { name: "Finish login" }).click();
    await expect(page.getByRole("region", { name: "Add an account" })).toBeHidden();
    const card = page.getByRole("article", { name: TAG });
    await expect(card).toBeVisible();
    await expect(card.getByText("login@example.com · max plan")).toBeVisible();
    await expect(card.getByText("Ready", { exact: true })).toBeVisible();
    await page.screenshot({ path: join(SCREENSHOTS, "accounts-login-added-light-wide.png"), fullPage: true });

    // What the engine keeps, not only what the form was answered: after a reload too.
    await page.reload();
    const again = page.getByRole("article", { name: TAG });
    await expect(again.getByText("login@example.com · max plan")).toBeVisible();
    await expect(again.getByText("Ready", { exact: true })).toBeVisible();
    const accounts = await adminGet<{ tag: string; kind: string; email: string | null; plan: string | null }[]>(stack(), "/api/v1/accounts");
    expect(accounts.find((a) => a.tag === TAG)).toMatchObject({ kind: "oauth", email: "login@example.com", plan: "max" });
  });

  let token = "";
  await test.step("add a user bound to the new account", async () => {
    await goTo(page, "Users");
    await page.getByRole("button", { name: "Add user" }).first().click();
    await page.getByLabel("Name", { exact: true }).fill("viaclaude");
    await page.getByLabel("Account or pool").selectOption(TAG);
    await page.getByRole("button", { name: "Create user" }).click();
    const panel = page.getByRole("region", { name: "Token for viaclaude" });
    token = ((await panel.getByText(/^cpk-/).first().textContent()) ?? "").trim();
    expect(token).toMatch(/^cpk-\S{20,}$/);
  });

  await test.step("their request reaches the mock with the access token the login obtained", async () => {
    const issued = stack().oauthIssued();
    expect(issued).toHaveLength(1);
    const before = stack().upstreamRequests();
    const result = await sendWithSdk(stack().url, token, 1);
    expect(result.ok, JSON.stringify(result)).toBe(true);
    expect(stack().upstreamRequests()).toBe(before + 1);
    expect(stack().upstreamAuthorization()).toBe(`Bearer ${issued[0]?.access}`);
  });
});

test("a wrong code is refused with the API's message next to the code field", async ({ page }) => {
  await signIn(page, stack());
  await goTo(page, "Accounts");
  const authorize = await startLogin(page, "typo");
  const state = authorize.searchParams.get("state") ?? "";

  const code = page.getByLabel("Code from Claude");
  await code.fill(`not-a-code-claude-issued#${state}`);
  await page.getByRole("button", { name: "Finish login" }).click();

  // The field's own alert, which the field names as its description.
  const field = page.locator(".field").filter({ has: code });
  const alert = field.getByRole("alert");
  await expect(alert).toContainText("The code was refused");
  await expect(alert).toContainText("Invalid 'code' in request.");
  await expect(code).toHaveAttribute("aria-invalid", "true");
  await expect(code).toHaveAccessibleDescription(/The code was refused/);
  await page.screenshot({ path: join(SCREENSHOTS, "accounts-login-refused-light-wide.png"), fullPage: true });

  // Nothing was added, and the login still waits for the right code.
  await expect(page.getByRole("article", { name: "typo" })).toHaveCount(0);
  const accounts = await adminGet<{ tag: string }[]>(stack(), "/api/v1/accounts");
  expect(accounts.map((a) => a.tag)).not.toContain("typo");
  await expect(page.getByRole("button", { name: "Finish login" })).toBeVisible();
});
