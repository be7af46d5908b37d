// What every spec shares: a Carpool of its own per spec file (a mock upstream and a real
// `carpool serve`, from scripts/stack.mjs), the dashboard's address, the Python SDK as the
// client, sign-in, and a watch on console errors and Content-Security-Policy violations.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { test as base, expect, type APIRequestContext, type Page } from "@playwright/test";
import AxeBuilder from "@axe-core/playwright";
import { sendRequests, startCarpool, startMockUpstream } from "../scripts/stack.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
const UI = resolve(HERE, "..");
const ROOT = resolve(UI, "..");

/**
 * Where the dashboard under test comes from — the one switch:
 * - `engine` (the default): the engine's own `/`, as people open it; the UI is the one
 *   built into $CARPOOL_BIN.
 * - `vite`: `vite preview` of ui/dist (run `npm run build` first) in front of the
 *   stack's carpool, through the `/api` proxy of vite.config.ts: for trying a UI change
 *   without rebuilding the engine. CARPOOL_E2E_UI=vite.
 */
const SERVED_BY: "engine" | "vite" = process.env.CARPOOL_E2E_UI === "vite" ? "vite" : "engine";

/** The Python with the official Anthropic SDK (scripts/test.sh sets CARPOOL_TEST_PYTHON). */
export function python(): string {
  if (process.env.CARPOOL_TEST_PYTHON) return process.env.CARPOOL_TEST_PYTHON;
  const venv = join(ROOT, ".test-deps/venv/bin/python");
  return existsSync(venv) ? venv : "python3";
}

export interface Stack {
  /** The carpool's own address (relay and API), no trailing slash. */
  url: string;
  /** The dashboard's address, ending in `/`. */
  ui: string;
  adminSecret: string;
  /** The token of the user `me` (null on an empty install). */
  userToken: string | null;
  /** How many requests reached the mock upstream. */
  upstreamRequests: () => number;
  /** The mock upstream's address (also Claude's login, token and profile endpoints). */
  upstream: string;
  /** The credential header of the last request relayed to the mock: `Bearer …` or `x-api-key …`. */
  upstreamAuthorization: () => string | null;
  /** The tokens the mock's OAuth side issued (logins and refreshes), in order. */
  oauthIssued: () => { access: string; refresh: string }[];
  /** carpool serve's output so far, for failure messages. */
  log: () => string;
}

export interface StackOptions {
  /** A fresh install: no accounts, no users. */
  empty?: boolean;
  /** Requests `me` sends (with plain fetch, alternating models and streaming) before the tests. */
  history?: number;
}

/**
 * Starts a mock upstream and a carpool before this file's first test and stops them after
 * its last; call at the top of a spec file. Returns a getter for the running stack.
 */
export function useStack(options: StackOptions = {}): () => Stack {
  let stack: Stack | undefined;
  const stops: (() => Promise<unknown>)[] = [];
  base.beforeAll(async () => {
    base.setTimeout(60_000);
    const upstream = await startMockUpstream();
    stops.push(upstream.close);
    const carpool = await startCarpool({ upstream: upstream.url, empty: options.empty ?? false });
    stops.push(carpool.stop);
    if (options.history && carpool.userToken) await sendRequests(carpool.url, carpool.userToken, options.history);
    const ui = SERVED_BY === "engine" ? `${carpool.url}/` : await vitePreview(carpool.url, stops);
    stack = {
      url: carpool.url,
      ui,
      adminSecret: carpool.adminSecret,
      userToken: carpool.userToken,
      upstreamRequests: upstream.requests,
      upstream: upstream.url,
      upstreamAuthorization: upstream.lastAuthorization,
      oauthIssued: upstream.issued,
      log: carpool.log,
    };
  });
  base.afterAll(async () => {
    for (const stop of stops.reverse()) await stop();
    stops.length = 0;
    stack = undefined;
  });
  return () => {
    if (!stack) throw new Error("the stack is not running (useStack() must be called at the top of the spec file)");
    return stack;
  };
}

async function vitePreview(carpoolUrl: string, stops: (() => Promise<unknown>)[]): Promise<string> {
  if (!existsSync(join(UI, "dist/index.html"))) throw new Error("CARPOOL_E2E_UI=vite needs ui/dist: run `npm run build` first");
  const { preview } = await import("vite");
  const server = await preview({
    root: UI,
    logLevel: "warn",
    preview: {
      host: "127.0.0.1",
      port: 0,
      strictPort: false,
      // As vite.config.ts's dev proxy: the API refuses writes from a foreign Origin.
      proxy: {
        "/api": {
          target: carpoolUrl,
          changeOrigin: true,
          configure: (proxy) => proxy.on("proxyReq", (request) => request.setHeader("origin", carpoolUrl)),
        },
      },
    },
  });
  stops.push(() => server.close());
  const url = server.resolvedUrls?.local[0];
  if (!url) throw new Error("vite preview did not say where it listens");
  return url;
}

/** What send.py printed: the requests sent and the usage their answers reported. */
export interface SdkSummary {
  sent: number;
  streamed: number;
  /** Requests per model. */
  models: Record<string, number>;
  input_tokens: number;
  output_tokens: number;
  cache_read_input_tokens: number;
  cache_creation_input_tokens: number;
  ids: string[];
}

export type SdkResult = { ok: true; summary: SdkSummary } | { ok: false; status: number | null; error: string; sent: number };

/**
 * Sends `n` requests through the relay with the official Anthropic Python SDK
 * (e2e/send.py): every other one streamed unless `stream` says otherwise, the models
 * taken in turn. (Each call starts Python and imports the SDK, a second or two.)
 */
export function sendWithSdk(
  baseUrl: string,
  token: string,
  n: number,
  { models = [], stream }: { models?: string[]; stream?: "every" | "none" | "all" } = {},
): Promise<SdkResult> {
  const args = [join(HERE, "send.py"), baseUrl, token, String(n)];
  for (const model of models) args.push("--model", model);
  if (stream) args.push("--stream", stream);
  return new Promise((ok, fail) => {
    const child = spawn(python(), args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, PYTHONWARNINGS: "ignore" } });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    child.on("error", fail);
    child.on("close", (code) => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(out.trim().split("\n").pop() ?? "");
      } catch {
        fail(new Error(`send.py exited ${code} without a JSON summary:\n${out}\n${err}`));
        return;
      }
      if (code === 0) ok({ ok: true, summary: parsed as SdkSummary });
      else if (code === 1) ok({ ok: false, ...(parsed as { status: number | null; error: string; sent: number }) });
      else fail(new Error(`send.py exited ${code}:\n${out}\n${err}`));
    });
  });
}

/** Calls the management API with the admin secret as a bearer, as a script would. */
export async function adminGet<T>(stack: Stack, path: string): Promise<T> {
  const response = await fetch(`${stack.url}${path}`, { headers: { authorization: `Bearer ${stack.adminSecret}` } });
  if (!response.ok) throw new Error(`GET ${path} answered ${response.status}: ${await response.text()}`);
  return (await response.json()) as T;
}

/** Signs in through the sign-in page, as a person does. */
export async function signIn(page: Page, stack: Stack): Promise<void> {
  await open(page, stack);
  await page.getByLabel("Admin secret").fill(stack.adminSecret);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("navigation", { name: "Pages" })).toBeVisible();
}

/** Signs in with one API call (the session cookie lands in the page's context). */
export async function signInQuickly(request: APIRequestContext, stack: Stack): Promise<void> {
  const response = await request.post(`${stack.ui}api/v1/session`, {
    data: { secret: stack.adminSecret },
    headers: { origin: new URL(stack.ui).origin },
  });
  expect(response.status(), await response.text()).toBe(200);
}

/**
 * Opens `path` (a hash route such as `#/usage`) on the dashboard. Served by the engine, the
 * page must come with its strict Content-Security-Policy, so that "no CSP violation" below
 * means something.
 */
export async function open(page: Page, stack: Stack, path = ""): Promise<void> {
  const response = await page.goto(`${stack.ui}${path}`);
  expect(response?.status()).toBe(200);
  if (SERVED_BY === "engine") {
    const csp = response?.headers()["content-security-policy"] ?? "";
    expect(csp, "the dashboard's Content-Security-Policy").toContain("script-src 'self'");
    expect(csp).not.toContain("unsafe-inline");
  }
}

/** Console errors, uncaught exceptions and CSP violations seen by `page` since it was watched. */
export async function watchProblems(page: Page): Promise<() => string[]> {
  const problems: string[] = [];
  page.on("pageerror", (error) => problems.push(`uncaught: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    const text = message.text();
    // A signed-out page asks GET /api/v1/session and gets the expected 401.
    const where = message.location().url;
    if (text.includes("status of 401") && where.endsWith("/api/v1/session")) return;
    problems.push(`console: ${text}${where ? ` (${where})` : ""}`);
  });
  // Chromium logs CSP violations to the console too; this also names the directive.
  await page.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (event) => {
      console.error(`CSP violation: ${event.violatedDirective} blocked ${event.blockedURI || "inline"} (${event.sourceFile}:${event.lineNumber})`);
    });
  });
  return () => [...problems];
}

export const test = base;
export { expect };

/** The four looks every page is shot in: light and dark, a laptop and a phone. */
export const VARIANTS = [
  { name: "light-wide", colorScheme: "light", viewport: { width: 1280, height: 800 } },
  { name: "dark-wide", colorScheme: "dark", viewport: { width: 1280, height: 800 } },
  { name: "light-narrow", colorScheme: "light", viewport: { width: 390, height: 844 } },
  { name: "dark-narrow", colorScheme: "dark", viewport: { width: 390, height: 844 } },
  // The narrowest phone the dashboard is made for: the same checks (nothing wider than
  // the screen but inside a table's scrolling region), one scheme.
  { name: "light-360", colorScheme: "light", viewport: { width: 360, height: 740 } },
] as const;

export const SCREENSHOTS = join(HERE, "screenshots");

/**
 * Waits until `page` shows its heading and has loaded, checks that nothing but a
 * `.table-wrap` is wider than the viewport, that no console error or CSP violation was
 * seen, and saves e2e/screenshots/<name>-<variant>.png (the whole page).
 */
export async function checkAndShoot(page: Page, name: string, variant: string, heading: string | RegExp, problems: () => string[]) {
  await expect(page.getByRole("heading", { level: 1, name: heading })).toBeVisible();
  // Loading states are aria-busy; charts draw after their data arrives.
  await expect(page.locator("[aria-busy='true']")).toHaveCount(0, { timeout: 10_000 });
  await page.evaluate(() => document.fonts.ready.then(() => undefined));
  if ((await page.locator("canvas").count()) > 0) await page.waitForTimeout(1_000);
  const overflow = await page.evaluate(() => {
    const width = window.innerWidth;
    const scrolling = document.scrollingElement ?? document.documentElement;
    if (scrolling.scrollWidth <= width) return null;
    // Name what reaches the far edge: often an absolutely placed element whose containing
    // block is outside the .table-wrap it sits in, so the wrap cannot clip it.
    const describe = (el: Element) => {
      const label = el.id ? `#${el.id}` : el.getAttribute("class") ? `.${el.getAttribute("class")?.trim().split(/\s+/).join(".")}` : "";
      return `<${el.tagName.toLowerCase()}${label}>`;
    };
    const culprits = [...document.querySelectorAll("body *")]
      .filter((el) => Math.abs(el.getBoundingClientRect().right - scrolling.scrollWidth) <= 1)
      .slice(-3)
      .map((el) => {
        const path = [];
        for (let up: Element | null = el; up && up !== document.body && path.length < 4; up = up.parentElement) path.unshift(describe(up));
        return `${path.join(" > ")} "${(el.textContent ?? "").trim().slice(0, 40)}" (position: ${getComputedStyle(el).position})`;
      });
    return `page is ${scrolling.scrollWidth}px wide in a ${width}px viewport: ${culprits.join("; ")}`;
  });
  await page.screenshot({ path: join(SCREENSHOTS, `${name}-${variant}.png`), fullPage: true });
  expect(overflow, "horizontal overflow").toBeNull();
  expect(problems(), "console errors / CSP violations").toEqual([]);
  expect(await accessibilityProblems(page), "axe-core: WCAG 2.1 A/AA violations").toEqual([]);
}

/**
 * What axe-core finds against WCAG 2.1 A and AA on the page as it is now — contrast in
 * this colour scheme, names of controls, labels, landmarks — one line per element.
 */
export async function accessibilityProblems(page: Page): Promise<string[]> {
  const { violations } = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]).analyze();
  return violations.flatMap((v) => v.nodes.map((n) => `${v.id} (${v.impact}): ${n.target.join(" ")} — ${n.failureSummary?.split("\n").slice(1).join(" ").trim() ?? v.help}`));
}
