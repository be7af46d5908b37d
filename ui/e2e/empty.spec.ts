// A fresh install (no accounts, no users): the overview says what to do first.
import { checkAndShoot, expect, open, signIn, signInQuickly, test, useStack, VARIANTS, watchProblems } from "./fixtures";

const stack = useStack({ empty: true });

test("the overview of an empty install says what to do first", async ({ page }) => {
  await signIn(page, stack());
  await expect(page.getByRole("heading", { level: 1, name: "Overview" })).toBeVisible();
  // A fresh config has the `default` account, with no login yet: the overview says that
  // nothing can serve requests and why, and lists the first steps with links to take them.
  await expect(page.getByRole("heading", { name: "No account can serve requests" })).toBeVisible();
  const start = page.getByRole("region", { name: "Get started" });
  await expect(start).toBeVisible();
  await expect(start.getByRole("listitem").first()).toContainText("Add an account");
  await expect(start.getByRole("link", { name: "Add a user" })).toHaveAttribute("href", "#/users");
  await start.getByRole("link", { name: /Accounts|Add an account/ }).click();
  await expect(page).toHaveURL(/#\/accounts/);
  await expect(page.getByRole("heading", { level: 1, name: "Accounts" })).toBeVisible();
});

for (const variant of VARIANTS) {
  test.describe(variant.name, () => {
    test.use({ colorScheme: variant.colorScheme, viewport: variant.viewport });
    test("empty overview screenshot", async ({ page }) => {
      const problems = await watchProblems(page);
      await signInQuickly(page.request, stack());
      await open(page, stack());
      await checkAndShoot(page, "overview-empty", variant.name, "Overview", problems);
    });
  });
}
