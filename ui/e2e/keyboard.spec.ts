// The dashboard without a mouse: signing in with the keyboard alone, and on every page
// each control (link, button, field, scrolling table) is reached by Tab, in order, with a
// visible focus ring.
import type { Page } from "@playwright/test";
import { expect, open, signInQuickly, test, useStack } from "./fixtures";

const stack = useStack({ history: 4 });

test("signing in with the keyboard alone", async ({ page }) => {
  await open(page, stack());
  // The field has the focus (once the page knows no one is signed in): type, then Enter.
  await expect(page.getByLabel("Admin secret")).toBeFocused();
  await page.keyboard.type(stack().adminSecret);
  await page.keyboard.press("Enter");
  await expect(page.getByRole("navigation", { name: "Pages" })).toBeVisible();
  // The first Tab reaches the skip link, which moves the focus to the page.
  await page.keyboard.press("Tab");
  await expect(page.locator(":focus")).toHaveText(/skip/i);
});

/** Each focusable control on the page, in document order, as a short description. */
async function focusables(page: Page): Promise<string[]> {
  return page.evaluate(() =>
    [...document.querySelectorAll<HTMLElement>("a[href], button, input, select, textarea, [tabindex]")]
      .filter((el) => el.tabIndex >= 0 && !(el as HTMLButtonElement).disabled && el.getClientRects().length > 0)
      .filter((el) => getComputedStyle(el).visibility !== "hidden")
      .map((el) => `${el.tagName.toLowerCase()} "${(el.getAttribute("aria-label") ?? el.textContent ?? "").trim().slice(0, 30)}"`),
  );
}

/** Presses Tab until the focus comes round, noting each element and whether it shows a focus ring. */
async function tabThrough(page: Page, limit: number): Promise<{ reached: string[]; unringed: string[] }> {
  const reached: string[] = [];
  const unringed: string[] = [];
  for (let i = 0; i < limit; i += 1) {
    await page.keyboard.press("Tab");
    const now = await page.evaluate(() => {
      const el = document.activeElement as HTMLElement | null;
      if (!el || el === document.body) return null;
      const style = getComputedStyle(el);
      const ring = (style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0) || style.boxShadow !== "none";
      return { what: `${el.tagName.toLowerCase()} "${(el.getAttribute("aria-label") ?? el.textContent ?? "").trim().slice(0, 30)}"`, ring };
    });
    if (now === null) break;
    if (reached.length > 0 && now.what === reached[0]) break;
    reached.push(now.what);
    if (!now.ring) unringed.push(now.what);
  }
  return { reached, unringed };
}

for (const [name, path] of [
  ["overview", "#/"],
  ["usage", "#/usage"],
  ["accounts", "#/accounts"],
  ["users", "#/users"],
  ["live", "#/live"],
  ["settings", "#/settings"],
] as const) {
  test(`every control of ${name} is reached by Tab, with a visible focus ring`, async ({ page }) => {
    await signInQuickly(page.request, stack());
    await open(page, stack(), path);
    await expect(page.getByRole("navigation", { name: "Pages" })).toBeVisible();
    await expect(page.locator("[aria-busy='true']")).toHaveCount(0, { timeout: 10_000 });
    const expected = await focusables(page);
    expect(expected.length).toBeGreaterThan(6);
    const { reached, unringed } = await tabThrough(page, expected.length + 5);
    expect(reached).toEqual(expected);
    expect(unringed, "focused without a visible focus ring").toEqual([]);
  });
}
