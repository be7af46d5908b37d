// For component tests: a fetch that answers the management API from a table of routes
// ("POST /api/v1/users"), and records what was sent. Install it before the API client is
// imported (vi.hoisted), since openapi-fetch keeps the fetch it was made with.
export interface Sent {
  method: string;
  path: string;
  body: unknown;
}

type Answer = { status: number; body?: unknown } | ((sent: Sent) => { status: number; body?: unknown });

export function mockApi() {
  const routes = new Map<string, Answer[]>();
  const sent: Sent[] = [];

  async function fetchImpl(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
    const request = input instanceof Request ? input : new Request(input, init);
    const url = new URL(request.url);
    const text = request.method === "GET" || request.method === "DELETE" ? "" : await request.text();
    const one: Sent = { method: request.method, path: decodeURIComponent(url.pathname), body: text ? JSON.parse(text) : undefined };
    sent.push(one);
    const key = `${one.method} ${one.path}`;
    const queue = routes.get(key);
    if (!queue || queue.length === 0) return new Response(JSON.stringify({ error: { code: "not_found", message: `no mock for ${key}` } }), { status: 404 });
    const answer = queue.length > 1 ? queue.shift()! : queue[0]!;
    const { status, body } = typeof answer === "function" ? answer(one) : answer;
    return new Response(status === 204 ? null : JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
  }

  return {
    fetch: fetchImpl,
    sent,
    /** Answers `route` with each of `answers` in turn; the last one repeats. */
    on(route: string, ...answers: Answer[]) {
      routes.set(route, answers);
    },
    reset() {
      routes.clear();
      sent.length = 0;
    },
  };
}

export const refusal = (status: number, message: string, code = "invalid") => ({ status, body: { error: { code, message } } });
