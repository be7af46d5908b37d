import { describe, expect, it } from "vitest";
import { LiveFeed, MAX_ROWS, isFailure, matches, outcomeText, type RequestEvent } from "./live";

function event(n: number, over: Partial<RequestEvent> = {}): RequestEvent {
  return {
    at: new Date(1_700_000_000_000 + n).toISOString(),
    at_ms: 1_700_000_000_000 + n,
    method: "POST",
    path: "/v1/messages",
    endpoint: "messages",
    user: "alice",
    account: "work",
    model: "claude-sonnet-4-5",
    status: 200,
    outcome: "complete",
    error: null,
    streamed: false,
    input_tokens: n,
    output_tokens: 1,
    cache_read_tokens: 0,
    cache_write_tokens: 0,
    cost_micros: 10,
    cost_usd: 0.00001,
    duration_ms: 5,
    ttfb_ms: 2,
    bytes: 100,
    ...over,
  };
}

const tokens = (feed: LiveFeed) => feed.rows.map((r) => r.input_tokens);

describe("LiveFeed", () => {
  it("shows nothing until a flush, then the newest on top", () => {
    const feed = new LiveFeed();
    feed.push(event(1));
    feed.push(event(2));
    expect(feed.rows).toEqual([]);
    expect(feed.flush()).toBe(true);
    expect(tokens(feed)).toEqual([2, 1]);
    feed.push(event(3));
    feed.flush();
    expect(tokens(feed)).toEqual([3, 2, 1]);
    expect(feed.flush()).toBe(false);
    expect(feed.received).toBe(3);
  });

  it("gives every row its own key, even for identical events", () => {
    const feed = new LiveFeed();
    feed.push(event(1));
    feed.push(event(1));
    feed.flush();
    expect(new Set(feed.rows.map((r) => r.id)).size).toBe(2);
  });

  it("keeps at most the limit, dropping the oldest, across flushes and within one", () => {
    const feed = new LiveFeed(3);
    for (const n of [1, 2]) feed.push(event(n));
    feed.flush();
    for (const n of [3, 4]) feed.push(event(n));
    feed.flush();
    expect(tokens(feed)).toEqual([4, 3, 2]);
    for (let n = 5; n <= 12; n += 1) feed.push(event(n));
    feed.flush();
    expect(tokens(feed)).toEqual([12, 11, 10]);
    expect(new LiveFeed().limit).toBe(MAX_ROWS);
  });

  it("holds and counts events while paused, and shows them after resume", () => {
    const feed = new LiveFeed();
    feed.push(event(1));
    feed.flush();
    feed.pause();
    for (let n = 2; n <= 13; n += 1) feed.push(event(n));
    expect(feed.flush()).toBe(false);
    expect(tokens(feed)).toEqual([1]);
    expect(feed.held).toBe(12);
    feed.resume();
    expect(feed.held).toBe(0);
    expect(feed.flush()).toBe(true);
    expect(tokens(feed)[0]).toBe(13);
    expect(feed.rows).toHaveLength(13);
  });

  it("counts every event held while paused even when the cap lets the oldest go", () => {
    const feed = new LiveFeed(5);
    feed.pause();
    for (let n = 1; n <= 40; n += 1) feed.push(event(n));
    expect(feed.held).toBe(40);
    feed.resume();
    feed.flush();
    expect(tokens(feed)).toEqual([40, 39, 38, 37, 36]);
  });

  it("adds up what the engine skipped", () => {
    const feed = new LiveFeed();
    feed.lagged(3);
    feed.lagged(120);
    expect(feed.missed).toBe(123);
  });

  it("clears the table and what is held", () => {
    const feed = new LiveFeed();
    feed.push(event(1));
    feed.flush();
    feed.pause();
    feed.push(event(2));
    feed.clear();
    feed.resume();
    expect(feed.flush()).toBe(false);
    expect(feed.rows).toEqual([]);
  });
});

describe("matches", () => {
  const none = { text: "", failuresOnly: false };

  it("passes everything with no filter", () => {
    expect(matches(event(1), none)).toBe(true);
  });

  it("finds each word in user, account, model, status or outcome, ignoring case", () => {
    const e = event(1, { user: "Alice", account: "work", model: "claude-opus-4-1", status: 429, outcome: "error", error: "exhausted" });
    expect(matches(e, { ...none, text: "alice" })).toBe(true);
    expect(matches(e, { ...none, text: "WORK" })).toBe(true);
    expect(matches(e, { ...none, text: "opus" })).toBe(true);
    expect(matches(e, { ...none, text: "429" })).toBe(true);
    expect(matches(e, { ...none, text: "exhausted" })).toBe(true);
    expect(matches(e, { ...none, text: "refused" })).toBe(true);
    expect(matches(e, { ...none, text: "  alice   opus " })).toBe(true);
    expect(matches(e, { ...none, text: "alice sonnet" })).toBe(false);
    expect(matches(e, { ...none, text: "bob" })).toBe(false);
  });

  it("copes with the fields a refused request lacks", () => {
    const refused = event(1, { user: null, account: null, model: null, status: 401, outcome: "error", error: "bad_token" });
    expect(matches(refused, { ...none, text: "bad token" })).toBe(true);
    expect(matches(refused, { ...none, text: "alice" })).toBe(false);
  });

  it("keeps only failures when asked", () => {
    const only = { text: "", failuresOnly: true };
    expect(matches(event(1), only)).toBe(false);
    expect(matches(event(1, { status: 502, outcome: "upstream_error" }), only)).toBe(true);
    expect(matches(event(1, { status: 200, outcome: "upstream_broke" }), only)).toBe(true);
    expect(matches(event(1, { status: 429, outcome: "error", error: "exhausted", user: "bob" }), { text: "alice", failuresOnly: true })).toBe(false);
  });
});

describe("isFailure and outcomeText", () => {
  it("calls an error status or an unfinished answer a failure", () => {
    expect(isFailure(event(1))).toBe(false);
    expect(isFailure(event(1, { status: 404, outcome: "error", error: "not_found" }))).toBe(true);
    expect(isFailure(event(1, { outcome: "client_closed" }))).toBe(true);
  });

  it("says how a request ended in words", () => {
    expect(outcomeText({ outcome: "complete", error: null })).toBe("Complete");
    expect(outcomeText({ outcome: "error", error: "bad_token" })).toBe("Refused: bad token");
    expect(outcomeText({ outcome: "error", error: "something_new" })).toBe("Refused: something new");
    expect(outcomeText({ outcome: "idle_timeout", error: null })).toBe("Went silent");
    expect(outcomeText({ outcome: "brand_new", error: null })).toBe("brand new");
  });
});
