// Sign-in: the admin secret opens the dashboard, a wrong one is refused with a message that
// says what to do, the session survives a reload, and five wrong tries lock the address
// out with a countdown.
import type { Page } from "@playwright/test";
import { expect, open, signIn, test, useStack } from "./fixtures";

const stack = useStack();

async function trySecret(page: Page, secret: string) {
  await page.getByLabel("Admin secret").fill(secret);
  await page.getByRole("button", { name: "Sign in" }).click();
}

/** What the API answers a wrong secret, asked directly (it counts as one wrong try). */
async function apiAnswer(secret: string): Promise<{ status: number; message: string }> {
  const response = await fetch(`${stack().url}/api/v1/session`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ secret }),
  });
  const body = (await response.json()) as { error: { message: string } };
  return { status: response.status, message: body.error.message };
}

test.describe.configure({ mode: "serial" });

test("a wrong secret is refused, and the page says what to do", async ({ page }) => {
  await open(page, stack());
  await expect(page.getByRole("heading", { name: "Sign in to Carpool" })).toBeVisible();
  const wrong = await apiAnswer("cpa-not-the-secret"); // wrong try 1
  expect(wrong.status).toBe(401);
  await trySecret(page, "cpa-not-the-secret"); // wrong try 2
  // The API's refusal, in the page's words: not the secret, and how to make a new one.
  expect(wrong.message).toContain("carpool admin reset");
  await expect(page.getByRole("alert")).toContainText("not the admin secret");
  await expect(page.getByRole("alert")).toContainText("carpool admin reset");
  await expect(page.getByLabel("Admin secret")).toHaveAttribute("aria-invalid", "true");
  await expect(page.getByRole("navigation", { name: "Pages" })).toHaveCount(0);
});

test("the admin secret signs in, and a reload keeps the session", async ({ page }) => {
  await signIn(page, stack());
  await expect(page.getByRole("alert")).toHaveCount(0);
  await page.reload();
  await expect(page.getByRole("navigation", { name: "Pages" })).toBeVisible();
  await expect(page.getByLabel("Admin secret")).toHaveCount(0);
  // Signing out brings the sign-in page back, and a reload does not undo it.
  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page.getByLabel("Admin secret")).toBeVisible();
  await page.reload();
  await expect(page.getByLabel("Admin secret")).toBeVisible();
});

// Last in this file: the lockout refuses every admin call from 127.0.0.1 for minutes.
test("five wrong secrets lock the address out, and the page counts down", async ({ page }) => {
  await open(page, stack());
  // The sign-in above forgot the earlier failures: four wrong tries are refused as wrong,
  // the fifth locks the address out.
  for (const n of [1, 2, 3, 4]) {
    await trySecret(page, `cpa-wrong-${n}`);
    await expect(page.getByRole("alert")).toContainText("not the admin secret");
  }
  await trySecret(page, "cpa-wrong-5");
  const locked = await apiAnswer(stack().adminSecret);
  expect(locked.status).toBe(429);
  expect(locked.message).toMatch(/try again in 30\d s/);
  // The page says so with the time left (the API's retry-after: 300 s), and the button
  // waits until then: even the right secret is refused now.
  await expect(page.getByRole("alert")).toContainText("Too many wrong secrets");
  await expect(page.getByRole("alert")).toContainText(/Try again in 5 min/);
  await expect(page.getByRole("button", { name: "Sign in" })).toBeDisabled();
  await expect(page.getByRole("navigation", { name: "Pages" })).toHaveCount(0);
});
