// The main journey of issue 11: sign in, add a friend and copy their Claude Code setup,
// send requests as them with the official Python SDK, watch them arrive live, find them
// in the usage chart, table and CSV with the right totals, revoke them and see their next
// request refused.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Page } from "@playwright/test";
import { adminGet, expect, SCREENSHOTS, sendWithSdk, signIn, test, useStack, type SdkSummary, type Stack } from "./fixtures";

const stack = useStack();
const FRIEND = "friend";

interface Figures {
  requests: number;
  errors: number;
  input_tokens: number;
  output_tokens: number;
  cache_read_tokens: number;
  cache_write_5m_tokens: number;
  total_tokens: number;
  cost_usd: number;
}

/** Sums SDK summaries' usage: what the mock upstream answered. */
function mockTotals(...runs: SdkSummary[]) {
  const sum = (key: keyof SdkSummary) => runs.reduce((n, run) => n + (run[key] as number), 0);
  return {
    requests: sum("sent"),
    input_tokens: sum("input_tokens"),
    output_tokens: sum("output_tokens"),
    cache_read_tokens: sum("cache_read_input_tokens"),
    cache_write_tokens: sum("cache_creation_input_tokens"),
  };
}

/** Follows the page's link in the navigation bar. */
async function goTo(page: Page, name: string) {
  await page.getByRole("navigation", { name: "Pages" }).getByRole("link", { name, exact: true }).click();
}

async function usageOf(stack: Stack, user: string): Promise<Figures> {
  const report = await adminGet<{ rows: (Figures & { user: string | null })[]; total: Figures }>(
    stack,
    `/api/v1/usage?range=today&bucket=none&group=user&tz=UTC`,
  );
  const row = report.rows.find((r) => r.user === user);
  if (!row) throw new Error(`no usage row for ${user}: ${JSON.stringify(report.rows)}`);
  return row;
}

test("add a friend, copy their setup, see their requests live and in usage, revoke them", async ({ page, context }) => {
  test.setTimeout(90_000);
  const { url, ui } = stack();
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: new URL(ui).origin });

  await test.step("sign in", () => signIn(page, stack()));

  let token = "";
  await test.step("add a user and copy their Claude Code setup", async () => {
    await goTo(page, "Users");
    await expect(page.getByRole("heading", { level: 1, name: "Users" })).toBeVisible();
    await page.getByRole("button", { name: "Add user" }).first().click();
    await page.getByLabel("Name", { exact: true }).fill(FRIEND);
    await page.getByLabel("Account or pool").selectOption("work");
    await page.getByRole("button", { name: "Create user" }).click();

    const panel = page.getByRole("region", { name: `Token for ${FRIEND}` });
    await expect(panel.getByRole("heading", { name: `Token for ${FRIEND}` })).toBeVisible();
    token = ((await panel.getByText(/^cpk-/).first().textContent()) ?? "").trim();
    expect(token).toMatch(/^cpk-\S{20,}$/);

    // The token, shown once, as the person sees it (saved next to the page screenshots).
    await page.screenshot({ path: join(SCREENSHOTS, "users-token-light-wide.png"), fullPage: true });
    await panel.getByRole("button", { name: "Copy Claude Code setup" }).click();
    await expect(panel.getByText("Copied")).toBeVisible();
    const clipboard = await page.evaluate(() => navigator.clipboard.readText());
    expect(clipboard).toContain(token);
    expect(clipboard).toContain(url);
    expect(clipboard).toContain("ANTHROPIC_BASE_URL");

    // Codex's provider block, at the OpenAI endpoints; its token goes in CARPOOL_TOKEN.
    await panel.getByRole("button", { name: "Copy Codex setup" }).click();
    await expect.poll(() => page.evaluate(() => navigator.clipboard.readText())).toContain(`base_url = "${url}/v1"`);
    const codex = await page.evaluate(() => navigator.clipboard.readText());
    expect(codex).toContain('model_provider = "carpool"');
    expect(codex).toContain('wire_api = "responses"');
    await panel.getByRole("button", { name: "Copy Codex token line" }).click();
    await expect.poll(() => page.evaluate(() => navigator.clipboard.readText())).toBe(`export CARPOOL_TOKEN=${token}\n`);

    await panel.getByRole("button", { name: /^Done/ }).click();
    await expect(page.getByRole("heading", { name: `Token for ${FRIEND}` })).toHaveCount(0);
    await expect(page.getByText(token)).toHaveCount(0);
    await expect(page.getByRole("row").filter({ hasText: FRIEND })).toBeVisible();
  });

  let sent: SdkSummary[] = [];
  await test.step("send requests with the Python SDK and watch them arrive live", async () => {
    await goTo(page, "Live");
    await expect(page.getByRole("heading", { level: 1, name: "Live requests" })).toBeVisible();
    const rows = page.getByRole("row").filter({ hasText: FRIEND });
    await expect(rows).toHaveCount(0);

    // Six requests in one run of the SDK (starting Python is the slow part): two models,
    // every other one streamed.
    const run = await sendWithSdk(url, token, 6, { models: ["claude-sonnet-4-6", "claude-sonnet-4-6", "claude-opus-4-6"] });
    if (!run.ok) throw new Error(`the SDK was refused: ${run.error}`);
    sent = [run.summary];
    expect(run.summary.streamed).toBe(3);
    expect(run.summary.models).toEqual({ "claude-sonnet-4-6": 4, "claude-opus-4-6": 2 });
    // The rows appear while the page stays open, without a reload.
    await expect(rows).toHaveCount(6);
    await expect(rows.filter({ hasText: "claude-sonnet-4-6" })).toHaveCount(4);
    await expect(rows.filter({ hasText: "claude-opus-4-6" })).toHaveCount(2);
    for (const row of await rows.all()) await expect(row).toContainText("200");
  });

  await test.step("the usage page: group by user, the table's totals, the chart, the CSV", async () => {
    // What the engine recorded is what the mock answered.
    const expected = mockTotals(...sent);
    const recorded = await usageOf(stack(), FRIEND);
    expect({
      requests: recorded.requests,
      input_tokens: recorded.input_tokens,
      output_tokens: recorded.output_tokens,
      cache_read_tokens: recorded.cache_read_tokens,
      cache_write_tokens: recorded.cache_write_5m_tokens,
    }).toEqual(expected);
    expect(recorded.errors).toBe(0);
    expect(recorded.cost_usd).toBeGreaterThan(0);

    await goTo(page, "Usage");
    await expect(page.getByRole("heading", { level: 1, name: "Usage" })).toBeVisible();
    await page.getByLabel("Group by").selectOption({ label: "User" });
    const row = page.getByRole("row").filter({ has: page.getByRole("cell", { name: FRIEND, exact: true }) });
    await expect(row).toHaveCount(1);
    const money = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD", minimumFractionDigits: 2, maximumFractionDigits: recorded.cost_usd < 0.01 ? 4 : 2 });
    await expect(row).toContainText(money.format(recorded.cost_usd));
    const count = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
    for (const figure of [recorded.requests, recorded.input_tokens, recorded.output_tokens, recorded.cache_read_tokens]) {
      await expect(row.getByRole("cell", { name: count.format(figure), exact: true }).first()).toBeVisible();
    }

    // The chart drew something: a canvas with painted pixels.
    const canvas = page.locator("canvas").first();
    await expect(canvas).toBeVisible();
    await expect
      .poll(() =>
        canvas.evaluate((el: HTMLCanvasElement) => {
          const data = el.getContext("2d")?.getImageData(0, 0, el.width, el.height).data ?? new Uint8ClampedArray();
          let painted = 0;
          for (let i = 3; i < data.length; i += 4) if ((data[i] ?? 0) > 0) painted += 1;
          return painted;
        }),
      )
      .toBeGreaterThan(500);

    const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("link", { name: "Download CSV" }).click()]);
    expect(download.suggestedFilename()).toMatch(/\.csv$/);
    const csv = await readFile(await download.path(), "utf8");
    const lines = csv.trim().split(/\r?\n/);
    expect(lines.length).toBeGreaterThan(1);
    const header = (lines[0] ?? "").split(",");
    const friendRows = lines.slice(1).filter((line) => line.split(",").includes(FRIEND));
    expect(friendRows.length, csv).toBeGreaterThan(0);
    const requestsColumn = header.indexOf("requests");
    expect(requestsColumn, `no requests column in ${header.join(",")}`).toBeGreaterThanOrEqual(0);
    const csvRequests = friendRows.reduce((n, line) => n + Number(line.split(",")[requestsColumn]), 0);
    expect(csvRequests).toBe(recorded.requests);
  });

  await test.step("revoke the user: their next request is refused", async () => {
    await goTo(page, "Users");
    await page.getByRole("button", { name: `Revoke ${FRIEND}` }).click();
    const dialog = page.getByRole("dialog");
    await expect(dialog).toBeVisible();
    await dialog.getByRole("button", { name: "Revoke", exact: true }).click();
    await expect(dialog).toHaveCount(0);
    await expect(page.getByRole("row").filter({ hasText: FRIEND })).toHaveCount(0);

    // The friend's token is refused; the user `me` still gets through.
    const [refused, me] = await Promise.all([sendWithSdk(url, token, 1), sendWithSdk(url, stack().userToken ?? "", 1)]);
    expect(refused.ok).toBe(false);
    if (!refused.ok) {
      expect([401, 403]).toContain(refused.status);
      expect(refused.error).toContain("not known to this Carpool");
    }
    expect(me.ok).toBe(true);
  });
});
