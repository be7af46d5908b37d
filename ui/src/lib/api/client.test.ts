import { afterEach, describe, expect, it, vi } from "vitest";
import { ApiError, credentials, makeClient, unwrap, whenUnauthorized } from "./client";

const BASE = "http://carpool.test";

/** A fetch that records each request and answers with `answer(request)`. */
function fakeFetch(answer: (request: Request) => Response | Promise<Response>) {
  const seen: Request[] = [];
  const fetch = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = input instanceof Request ? input : new Request(input, init);
    seen.push(request);
    return answer(request);
  });
  return { fetch: fetch as unknown as typeof globalThis.fetch, seen };
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });
}

const SETTINGS = {
  listen: "127.0.0.1",
  listen_port: 7676,
  timeouts: { connect: "10s", first_byte: "2m", idle: "2m", request: "10m", shutdown_grace: "30s" },
  max_body_bytes: 1024,
  headers: {},
  prices: {},
  database: "/d/usage.db",
  data_dir: "/d",
  config_path: "/c/config.json",
};

afterEach(() => {
  credentials.csrf = null;
  credentials.bearer = null;
  whenUnauthorized(() => {});
});

describe("credentials on requests", () => {
  it("sends the CSRF token on POST, PATCH and DELETE and not on GET", async () => {
    credentials.csrf = "csrf-123";
    const { fetch, seen } = fakeFetch(() => json(200, {}));
    const api = makeClient(BASE, fetch);
    await api.GET("/api/v1/settings");
    await api.PATCH("/api/v1/settings", { body: { max_body_bytes: 10 } });
    await api.POST("/api/v1/users", { body: { name: "bob" } });
    await api.DELETE("/api/v1/users/{name}", { params: { path: { name: "bob" } } });
    expect(seen.map((r) => [r.method, r.headers.get("x-csrf-token")])).toEqual([
      ["GET", null],
      ["PATCH", "csrf-123"],
      ["POST", "csrf-123"],
      ["DELETE", "csrf-123"],
    ]);
    expect(seen.every((r) => r.headers.get("authorization") === null)).toBe(true);
    expect(seen[0]!.url).toBe(`${BASE}/api/v1/settings`);
  });

  it("sends the bearer secret instead, on every method, when the shell gave one", async () => {
    credentials.csrf = "csrf-123";
    credentials.bearer = "cpa-shell";
    const { fetch, seen } = fakeFetch(() => json(200, {}));
    const api = makeClient(BASE, fetch);
    await api.GET("/api/v1/settings");
    await api.PATCH("/api/v1/settings", { body: {} });
    for (const request of seen) {
      expect(request.headers.get("authorization")).toBe("Bearer cpa-shell");
      expect(request.headers.get("x-csrf-token")).toBeNull();
    }
  });

  it("sends nothing extra without a session", async () => {
    const { fetch, seen } = fakeFetch(() => json(200, {}));
    await makeClient(BASE, fetch).PATCH("/api/v1/settings", { body: {} });
    expect(seen[0]!.headers.get("x-csrf-token")).toBeNull();
    expect(seen[0]!.headers.get("authorization")).toBeNull();
  });
});

describe("unwrap", () => {
  it("returns the data of a success", async () => {
    const { fetch } = fakeFetch(() => json(200, SETTINGS));
    const settings = await unwrap(makeClient(BASE, fetch).GET("/api/v1/settings"));
    expect(settings.listen_port).toBe(7676);
  });

  it("throws the engine's message, code and status", async () => {
    const { fetch } = fakeFetch(() =>
      json(422, { error: { code: "invalid", message: "max_body_bytes: must be greater than 0" } }),
    );
    const call = unwrap(makeClient(BASE, fetch).PATCH("/api/v1/settings", { body: { max_body_bytes: 0 } }));
    await expect(call).rejects.toBeInstanceOf(ApiError);
    await expect(call).rejects.toMatchObject({
      status: 422,
      code: "invalid",
      message: "max_body_bytes: must be greater than 0",
      retryAfter: null,
    });
  });

  it("carries retry-after, for the sign-in lockout", async () => {
    const { fetch } = fakeFetch(() =>
      json(429, { error: { code: "too_many_attempts", message: "too many wrong admin secrets" } }, { "retry-after": "287" }),
    );
    await expect(unwrap(makeClient(BASE, fetch).POST("/api/v1/session", { body: { secret: "cpa-x" } }))).rejects.toMatchObject({
      status: 429,
      code: "too_many_attempts",
      retryAfter: 287,
    });
  });

  it("says what happened when a failure is not the engine's JSON", async () => {
    const { fetch } = fakeFetch(
      () => new Response("<html>Bad Gateway</html>", { status: 502, statusText: "Bad Gateway", headers: { "content-type": "text/html" } }),
    );
    const error = await unwrap(makeClient(BASE, fetch).GET("/api/v1/settings")).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ status: 502, code: "http", message: "Carpool answered 502 Bad Gateway" });
  });

  it("says Carpool did not answer when the network fails", async () => {
    const fetch = vi.fn(async () => {
      throw new TypeError("Failed to fetch");
    }) as unknown as typeof globalThis.fetch;
    const error = await unwrap(makeClient(BASE, fetch).GET("/api/v1/settings")).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ status: 0, code: "unreachable" });
    expect((error as ApiError).message).toMatch(/^Carpool did not answer \(TypeError: Failed to fetch\)/);
  });

  it("says the answer could not be read when a success is not JSON", async () => {
    const { fetch } = fakeFetch(() => new Response("<html>hello</html>", { status: 200 }));
    await expect(unwrap(makeClient(BASE, fetch).GET("/api/v1/settings"))).rejects.toMatchObject({ status: 0, code: "unreadable" });
  });
});

describe("a 401 during use", () => {
  it("calls the handler when an answer says the session is gone", async () => {
    const handler = vi.fn();
    whenUnauthorized(handler);
    const { fetch } = fakeFetch(() => json(401, { error: { code: "unauthorized", message: "sign in" } }));
    await expect(unwrap(makeClient(BASE, fetch).GET("/api/v1/settings"))).rejects.toMatchObject({ status: 401 });
    expect(handler).toHaveBeenCalledTimes(1);
  });

  it("does not call it for the sign-in call itself, nor for other failures", async () => {
    const handler = vi.fn();
    whenUnauthorized(handler);
    const wrong = fakeFetch(() => json(401, { error: { code: "unauthorized", message: "wrong admin secret" } }));
    await expect(unwrap(makeClient(BASE, wrong.fetch).POST("/api/v1/session", { body: { secret: "cpa-wrong" } }))).rejects.toMatchObject({
      status: 401,
      message: "wrong admin secret",
    });
    const refused = fakeFetch(() => json(403, { error: { code: "forbidden", message: "csrf" } }));
    await expect(unwrap(makeClient(BASE, refused.fetch).GET("/api/v1/settings"))).rejects.toMatchObject({ status: 403 });
    expect(handler).not.toHaveBeenCalled();
  });
});
