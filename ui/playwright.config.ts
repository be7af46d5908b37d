// End-to-end tests: real Chromium (the system's, never a downloaded one) against a real
// `carpool serve` on a mock upstream, which each spec file starts for itself
// (e2e/fixtures.ts). `npm run e2e`; scripts/test.sh runs it with CARPOOL_BIN and
// CARPOOL_TEST_PYTHON set. Screenshots of every page go to e2e/screenshots/.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defineConfig } from "@playwright/test";

/** Debian's `chromium`; elsewhere (macOS) point CARPOOL_CHROMIUM at a Chrome or Chromium. */
export const chromiumPath = process.env.CARPOOL_CHROMIUM ?? "/usr/bin/chromium";

// Chromium writes into ~/.cache and ~/.config whatever its profile directory: give it a
// HOME of its own. Set once in the runner process; the worker inherits it.
process.env.CARPOOL_E2E_HOME ??= mkdtempSync(join(tmpdir(), "carpool-e2e-home-"));

export default defineConfig({
  testDir: "e2e",
  globalSetup: "./e2e/global-setup.ts",
  globalTeardown: "./e2e/global-teardown.ts",
  outputDir: "test-results",
  // Two cores: one browser, one carpool, one mock at a time keeps timings steady.
  workers: 1,
  fullyParallel: false,
  retries: 0,
  forbidOnly: true,
  // `list` ends with Playwright's "N passed (Xs)" line, the last line scripts/test.sh prints.
  reporter: [["list"]],
  timeout: 30_000,
  globalTimeout: 240_000,
  expect: { timeout: 5_000 },
  use: {
    browserName: "chromium",
    viewport: { width: 1280, height: 800 },
    locale: "en-US",
    timezoneId: "UTC",
    actionTimeout: 5_000,
    navigationTimeout: 10_000,
    screenshot: "only-on-failure",
    trace: "off",
    launchOptions: {
      executablePath: chromiumPath,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
      ],
      env: { ...process.env, HOME: process.env.CARPOOL_E2E_HOME },
    },
  },
});
