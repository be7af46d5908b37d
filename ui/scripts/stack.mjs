// A real Carpool with a mock Anthropic upstream, for the e2e tests and for working on the
// dashboard: `npm run stack` starts one and prints its address, admin secret and a user
// token. Everything lives in a temporary directory and talks only to 127.0.0.1.
//
// The mock answers POST /v1/messages (JSON, or SSE with `"stream": true`) with the usage
// fields and, for OAuth accounts, the unified rate-limit headers Claude sends
// (docs/protocol.md: "anthropic-ratelimit-unified-*": utilization as a fraction 0…1,
// resets as Unix seconds), so the dashboard's gauges have windows to show.
//
// It also plays Claude's OAuth side, as the Rust tests' mock does (tests/common/mock.rs),
// at the paths of `oauth.claude` that startCarpool writes into the config: the login page
// GET /oauth/authorize issues a code for the PKCE challenge and state it is given and
// shows `<code>#<state>`, as Claude's page does; the token endpoint POST /v1/oauth/token
// exchanges such a code (once, with the verifier of its challenge and its state) or a
// refresh token it issued, and refuses anything else as Anthropic does
// (`{"error":"invalid_grant","error_description":…}`); GET /api/oauth/profile tells an
// issued access token's email and plan.
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** The carpool binary: $CARPOOL_BIN, else the debug build of this checkout. */
export function carpoolBin() {
  return process.env.CARPOOL_BIN ?? join(ROOT, "target/debug/carpool");
}

/** What the mock's profile endpoint says of every account that logs in. */
export const MOCK_PROFILE = { email: "login@example.com", organizationType: "claude_max", plan: "max" };

/** The access and refresh tokens of the account `work` that startCarpool writes. */
const WORK_TOKENS = { access: "sk-ant-oat01-mock", refresh: "sk-ant-ort01-mock" };

/**
 * @param {import("node:http").ServerResponse} res
 * @param {number} status
 * @param {unknown} body
 */
function json(res, status, body) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

/**
 * Claude's OAuth side: the login page, the token endpoint, the profile.
 * @returns {{ handle: (req: import("node:http").IncomingMessage, res: import("node:http").ServerResponse, raw: string) => boolean, issued: () => { access: string, refresh: string }[], refreshes: () => number }}
 */
function mockOAuth() {
  /** Codes the login page issued and not exchanged yet: code → its PKCE challenge and state. */
  const codes = /** @type {Map<string, { challenge: string, state: string }>} */ (new Map());
  /** Every pair of tokens issued, in order; the access tokens the profile accepts. */
  const issued = [{ ...WORK_TOKENS }];
  let logins = 0;
  let refreshes = 0;
  let codesIssued = 0;
  /**
   * Anthropic's refusal of a code or refresh token; `true`: answered.
   * @param {import("node:http").ServerResponse} res
   * @param {string} why
   */
  const invalidGrant = (res, why) => {
    json(res, 400, { error: "invalid_grant", error_description: why });
    return true;
  };
  /**
   * A token answer as Anthropic's, remembering the pair.
   * @param {string} access
   * @param {string} refresh
   * @param {string} account the email it names
   */
  const issue = (access, refresh, account) => {
    issued.push({ access, refresh });
    return {
      access_token: access,
      refresh_token: refresh,
      expires_in: 28800,
      token_type: "Bearer",
      scope: "user:inference user:profile",
      account: { uuid: "acc-1", email_address: account },
    };
  };
  return {
    issued: () => issued.slice(1).map((t) => ({ ...t })),
    refreshes: () => refreshes,
    handle(req, res, raw) {
      const url = new URL(req.url ?? "/", "http://mock");
      if (req.method === "GET" && url.pathname === "/oauth/authorize") {
        const challenge = url.searchParams.get("code_challenge");
        const state = url.searchParams.get("state");
        if (!challenge || !state || url.searchParams.get("code_challenge_method") !== "S256") {
          json(res, 400, { error: "invalid_request" });
          return true;
        }
        codesIssued += 1;
        const code = `mock-code-${codesIssued}-${randomBytes(6).toString("hex")}`;
        codes.set(code, { challenge, state });
        res.writeHead(200, { "content-type": "text/plain; charset=utf-8" });
        res.end(`${code}#${state}`);
        return true;
      }
      if (req.method === "POST" && url.pathname === "/v1/oauth/token") {
        let body;
        try {
          body = JSON.parse(raw || "{}");
        } catch {
          json(res, 400, { error: "invalid_request", error_description: "Invalid JSON." });
          return true;
        }
        if (body.grant_type === "authorization_code") {
          const pending = codes.get(String(body.code ?? ""));
          if (!pending) return invalidGrant(res, "Invalid 'code' in request.");
          codes.delete(String(body.code));
          const computed = createHash("sha256").update(String(body.code_verifier ?? "")).digest("base64url");
          if (computed !== pending.challenge) return invalidGrant(res, "Invalid code_verifier.");
          if (body.state !== pending.state) return invalidGrant(res, "Invalid state.");
          logins += 1;
          json(res, 200, issue(`sk-ant-oat01-mock-login-${logins}`, `sk-ant-ort01-mock-login-${logins}`, MOCK_PROFILE.email));
          return true;
        }
        if (body.grant_type === "refresh_token") {
          const known = issued.find((t) => t.refresh === body.refresh_token);
          if (!known) return invalidGrant(res, "Refresh token not found or invalid");
          refreshes += 1;
          json(res, 200, issue(`sk-ant-oat01-mock-refreshed-${refreshes}`, `sk-ant-ort01-mock-rotated-${refreshes}`, MOCK_PROFILE.email));
          return true;
        }
        json(res, 400, { error: "unsupported_grant_type", error_description: "Invalid grant_type." });
        return true;
      }
      if (req.method === "GET" && url.pathname === "/api/oauth/profile") {
        const bearer = req.headers.authorization ?? "";
        if (!issued.some((t) => bearer === `Bearer ${t.access}`)) {
          json(res, 401, {
            type: "error",
            error: { type: "authentication_error", message: "OAuth token has expired. Please obtain a new token or refresh your existing token." },
          });
          return true;
        }
        json(res, 200, {
          account: { uuid: "acc-1", email: MOCK_PROFILE.email, email_address: MOCK_PROFILE.email, has_claude_max: true },
          organization: {
            uuid: "org-1",
            name: "Mock Org",
            organization_type: MOCK_PROFILE.organizationType,
            rate_limit_tier: "default_claude_max_20x",
            billing_type: "stripe",
          },
        });
        return true;
      }
      return false;
    },
  };
}

/**
 * Starts the mock upstream (and Claude's OAuth side) on a free loopback port.
 * @param {{ fiveHour?: number, sevenDay?: number }} [limits] utilization fractions reported
 * @returns {Promise<{ url: string, requests: () => number, lastAuthorization: () => string | null, issued: () => { access: string, refresh: string }[], refreshes: () => number, close: () => Promise<void> }>}
 */
export async function startMockUpstream(limits = {}) {
  let seen = 0;
  /** The credential header of the last POST /v1/messages: `Bearer …` or `x-api-key …`. */
  let lastAuthorization = /** @type {string | null} */ (null);
  const oauth = mockOAuth();
  const server = createServer((req, res) => {
    let raw = "";
    req.on("data", (chunk) => (raw += chunk));
    req.on("end", () => {
      if (oauth.handle(req, res, raw)) return;
      if (req.method !== "POST" || !req.url?.startsWith("/v1/messages")) {
        res.writeHead(404, { "content-type": "application/json" });
        res.end(JSON.stringify({ type: "error", error: { type: "not_found_error", message: "mock: no such path" } }));
        return;
      }
      seen += 1;
      const key = req.headers["x-api-key"];
      lastAuthorization = req.headers.authorization ?? (typeof key === "string" ? `x-api-key ${key}` : null);
      const body = JSON.parse(raw || "{}");
      const model = body.model ?? "claude-sonnet-4-5";
      const input = 1000 + ((seen * 37) % 500);
      const output = 200 + ((seen * 13) % 100);
      const now = Math.floor(Date.now() / 1000);
      const headers = {
        "request-id": `req_mock_${seen}`,
        "anthropic-ratelimit-unified-status": "allowed",
        "anthropic-ratelimit-unified-5h-utilization": String(limits.fiveHour ?? 0.42),
        "anthropic-ratelimit-unified-5h-reset": String(now + 2 * 3600 + 14 * 60),
        "anthropic-ratelimit-unified-7d-utilization": String(limits.sevenDay ?? 0.18),
        "anthropic-ratelimit-unified-7d-reset": String(now + 3 * 86400 + 4 * 3600),
        "anthropic-ratelimit-unified-representative-claim": "five_hour",
      };
      const usage = { input_tokens: input, output_tokens: output, cache_read_input_tokens: 4000, cache_creation_input_tokens: 300 };
      const id = `msg_mock_${seen}`;
      if (body.stream) {
        res.writeHead(200, { ...headers, "content-type": "text/event-stream" });
        const events = [
          ["message_start", { type: "message_start", message: { id, type: "message", role: "assistant", model, content: [], stop_reason: null, usage: { ...usage, output_tokens: 1 } } }],
          ["content_block_start", { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } }],
          ["content_block_delta", { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "Hello from the mock" } }],
          ["content_block_stop", { type: "content_block_stop", index: 0 }],
          ["message_delta", { type: "message_delta", delta: { stop_reason: "end_turn", stop_sequence: null }, usage: { output_tokens: output } }],
          ["message_stop", { type: "message_stop" }],
        ];
        res.end(events.map(([event, data]) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`).join(""));
      } else {
        res.writeHead(200, { ...headers, "content-type": "application/json" });
        res.end(JSON.stringify({ id, type: "message", role: "assistant", model, content: [{ type: "text", text: "Hello from the mock" }], stop_reason: "end_turn", stop_sequence: null, usage }));
      }
    });
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", () => ok(undefined)));
  const { port } = /** @type {import("node:net").AddressInfo} */ (server.address());
  return {
    url: `http://127.0.0.1:${port}`,
    requests: () => seen,
    lastAuthorization: () => lastAuthorization,
    issued: oauth.issued,
    refreshes: oauth.refreshes,
    close: () => new Promise((ok) => server.close(() => ok())),
  };
}

/** A free loopback port (bound and released). */
async function freePort() {
  const probe = createServer();
  await new Promise((ok) => probe.listen(0, "127.0.0.1", () => ok(undefined)));
  const { port } = /** @type {import("node:net").AddressInfo} */ (probe.address());
  await new Promise((ok) => probe.close(ok));
  return port;
}

/**
 * Runs `carpool ARGS` to its end; its stdout, or an error with its stderr.
 * @param {string[]} args
 * @param {NodeJS.ProcessEnv} env
 * @returns {Promise<string>}
 */
function run(args, env) {
  return new Promise((ok, fail) => {
    const child = spawn(carpoolBin(), args, { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    child.on("error", fail);
    child.on("close", (code) => (code === 0 ? ok(out) : fail(new Error(`carpool ${args.join(" ")} exited ${code}: ${err}`))));
  });
}

/**
 * Starts `carpool serve` on a config of its own: an OAuth account `work` and an API-key
 * account `key`, both relaying to the mock, a user `me`, and Claude logins going to the
 * mock's OAuth side.
 * @param {{ upstream: string, empty?: boolean }} options `empty`: no users, as a new install
 */
export async function startCarpool({ upstream, empty = false }) {
  const dir = mkdtempSync(join(tmpdir(), "carpool-stack-"));
  const port = await freePort();
  const meToken = `cpk-${randomBytes(24).toString("hex")}`;
  const hash = `sha256:${createHash("sha256").update(meToken).digest("hex")}`;
  writeFileSync(
    join(dir, "claude.json"),
    JSON.stringify({
      claudeAiOauth: {
        accessToken: WORK_TOKENS.access,
        refreshToken: WORK_TOKENS.refresh,
        expiresAt: Date.now() + 365 * 86400_000,
        scopes: ["user:inference", "user:profile"],
        subscriptionType: "max",
      },
    }),
  );
  const config = {
    listen: "127.0.0.1",
    listen_port: port,
    data_dir: join(dir, "data"),
    credentials: empty
      ? []
      : [
          { tag: "work", credential_path: join(dir, "claude.json"), base_url: upstream, reserve_5h: 20 },
          { tag: "key", type: "api_key", api_key: "sk-ant-api03-mock", base_url: upstream },
        ],
    users: empty ? [] : [{ name: "me", token_hash: hash, credential: "work" }],
    // Claude logins go to the mock; what they obtain goes to files in data_dir, never to
    // the keyring of the machine running the stack.
    oauth: {
      claude: {
        authorize_url: `${upstream}/oauth/authorize`,
        token_url: `${upstream}/v1/oauth/token`,
        profile_url: `${upstream}/api/oauth/profile`,
      },
    },
    secret_store: "file",
  };
  const configPath = join(dir, "config.json");
  writeFileSync(configPath, `// written by ui/scripts/stack.mjs\n${JSON.stringify(config, null, 2)}\n`);
  const env = { ...process.env, HOME: dir, XDG_CONFIG_HOME: join(dir, "xdg"), XDG_DATA_HOME: join(dir, "xdg-data"), NO_COLOR: "1" };
  const reset = await run(["admin", "reset", "--config", configPath], env);
  const adminSecret = reset.match(/cpa-[A-Za-z0-9_-]+/)?.[0];
  if (!adminSecret) throw new Error(`no admin secret in: ${reset}`);
  const child = spawn(carpoolBin(), ["serve", "--config", configPath], { env, stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  child.stdout.on("data", (d) => (log += d));
  child.stderr.on("data", (d) => (log += d));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i += 1) {
    if (child.exitCode !== null) throw new Error(`carpool serve exited ${child.exitCode}:\n${log}`);
    try {
      const r = await fetch(`${url}/api/v1/session`);
      if (r.status === 401) break;
    } catch {
      // not listening yet
    }
    await new Promise((ok) => setTimeout(ok, 50));
  }
  return {
    url,
    dir,
    configPath,
    adminSecret,
    userToken: empty ? null : meToken,
    log: () => log,
    stop: () =>
      new Promise((ok) => {
        if (child.exitCode !== null) return ok(undefined);
        child.on("close", () => ok(undefined));
        child.kill("SIGTERM");
      }),
  };
}

/**
 * Sends `n` requests as `token`, alternating JSON and streaming, with two models.
 * @param {string} url the carpool's address
 * @param {string} token
 * @param {number} n
 */
export async function sendRequests(url, token, n) {
  for (let i = 0; i < n; i += 1) {
    const r = await fetch(`${url}/v1/messages`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": token, "anthropic-version": "2023-06-01" },
      body: JSON.stringify({
        model: i % 3 === 0 ? "claude-opus-4-1" : "claude-sonnet-4-5",
        max_tokens: 64,
        stream: i % 2 === 1,
        messages: [{ role: "user", content: "hello" }],
      }),
    });
    await r.text();
    if (!r.ok) throw new Error(`request ${i} answered ${r.status}`);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const upstream = await startMockUpstream();
  const carpool = await startCarpool({ upstream: upstream.url, empty: process.argv.includes("--empty") });
  if (carpool.userToken) await sendRequests(carpool.url, carpool.userToken, 12);
  console.log(`Carpool:      ${carpool.url}/  (config ${carpool.configPath})`);
  console.log(`Admin secret: ${carpool.adminSecret}`);
  if (carpool.userToken) console.log(`User \`me\`:    ${carpool.userToken}`);
  console.log(`Mock upstream ${upstream.url} (also Claude's login: ${upstream.url}/oauth/authorize). Ctrl-C stops both.`);
  const stop = async () => {
    await carpool.stop();
    await upstream.close();
    process.exit(0);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}
