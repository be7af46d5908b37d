// Every page, light and dark, 1280×800 and 390×844, saved under e2e/screenshots/ — each
// checked for its heading, console errors, CSP violations and sideways overflow.
import { sendRequests } from "../scripts/stack.mjs";
import { checkAndShoot, expect, open, signInQuickly, test, useStack, VARIANTS, watchProblems } from "./fixtures";

// Some history, so the charts and tables have something to show.
const stack = useStack({ history: 12 });

const PAGES = [
  { name: "overview", path: "#/", heading: "Overview" },
  { name: "usage", path: "#/usage", heading: "Usage" },
  { name: "accounts", path: "#/accounts", heading: "Accounts" },
  { name: "users", path: "#/users", heading: "Users" },
  { name: "live", path: "#/live", heading: "Live requests" },
  { name: "settings", path: "#/settings", heading: "Settings" },
] as const;

for (const variant of VARIANTS) {
  test.describe(variant.name, () => {
    test.use({ colorScheme: variant.colorScheme, viewport: variant.viewport });

    test("sign-in", async ({ page }) => {
      const problems = await watchProblems(page);
      await open(page, stack());
      await checkAndShoot(page, "signin", variant.name, "Sign in to Carpool", problems);
    });

    for (const { name, path, heading } of PAGES) {
      test(name, async ({ page }) => {
        const problems = await watchProblems(page);
        await signInQuickly(page.request, stack());
        await open(page, stack(), path);
        await expect(page.getByRole("navigation", { name: "Pages" })).toBeVisible();
        if (name === "live") {
          // The feed shows what arrives while it is open.
          await expect(page.getByRole("heading", { level: 1, name: heading })).toBeVisible();
          await page.waitForTimeout(300);
          await sendRequests(stack().url, stack().userToken ?? "", 3);
          await expect(page.getByRole("row").filter({ has: page.getByRole("cell", { name: "me", exact: true }) })).toHaveCount(3);
        }
        await checkAndShoot(page, name, variant.name, heading, problems);
      });
    }
  });
}
