// A fresh install (no accounts, no users): the overview says what to do first.
import { checkAndShoot, expect, signIn, signInQuickly, test, useStack, VARIANTS, watchProblems } from "./fixtures";

const stack = useStack({ empty: true });

test("the overview of an empty install says what to do first", async ({ page }) => {
  await signIn(page, stack());
  await expect(page.getByRole("heading", { level: 1, name: "Overview" })).toBeVisible();
  // The first step is an account: the page says so and links to where it is added.
  await expect(page.getByText(/add (an|your first) account/i).first()).toBeVisible();
  const next = page.getByRole("link", { name: /account/i }).filter({ hasNotText: /^Accounts$/ });
  await expect(next.first()).toBeVisible();
  await next.first().click();
  await expect(page).toHaveURL(/#\/accounts/);
  await expect(page.getByRole("heading", { level: 1, name: "Accounts" })).toBeVisible();
});

for (const variant of VARIANTS) {
  test.describe(variant.name, () => {
    test.use({ colorScheme: variant.colorScheme, viewport: variant.viewport });
    test("empty overview screenshot", async ({ page }) => {
      const problems = await watchProblems(page);
      await signInQuickly(page.request, stack());
      await page.goto(stack().ui);
      await checkAndShoot(page, "overview-empty", variant.name, "Overview", problems);
    });
  });
}
