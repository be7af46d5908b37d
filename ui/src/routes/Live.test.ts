import { cleanup, fireEvent, render, screen, within } from "@testing-library/svelte";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import Live from "./Live.svelte";
import type { RequestEvent } from "../lib/live";

/** A stand-in for the browser's EventSource that the test drives. */
class FakeSource {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSED = 2;
  static last: FakeSource | null = null;
  readyState = FakeSource.CONNECTING;
  onopen: (() => void) | null = null;
  onerror: (() => void) | null = null;
  closed = false;
  private listeners = new Map<string, ((m: { data: string }) => void)[]>();
  constructor(readonly url: string) {
    FakeSource.last = this;
  }
  addEventListener(name: string, listener: (m: { data: string }) => void) {
    this.listeners.set(name, [...(this.listeners.get(name) ?? []), listener]);
  }
  close() {
    this.closed = true;
    this.readyState = FakeSource.CLOSED;
  }
  open() {
    this.readyState = FakeSource.OPEN;
    this.onopen?.();
  }
  emit(name: string, data: unknown) {
    for (const listener of this.listeners.get(name) ?? []) listener({ data: JSON.stringify(data) });
  }
}

function event(n: number, over: Partial<RequestEvent> = {}): RequestEvent {
  return {
    at: new Date(1_796_670_413_432 + n * 1000).toISOString(),
    at_ms: 1_796_670_413_432 + n * 1000,
    method: "POST",
    path: "/v1/messages",
    endpoint: "messages",
    user: "me",
    account: "work",
    model: "claude-sonnet-4-5",
    status: 200,
    outcome: "complete",
    error: null,
    streamed: false,
    input_tokens: 1000 + n,
    output_tokens: 200,
    cache_read_tokens: 4000,
    cache_write_tokens: 300,
    cost_micros: 10803,
    cost_usd: 0.010803,
    duration_ms: 12,
    ttfb_ms: 5,
    bytes: 302,
    ...over,
  };
}

/** Lets the batched update (a timer, then an animation frame) happen. */
const settle = () => new Promise((ok) => setTimeout(ok, 400));
const bodyRows = () => within(screen.getByRole("table")).getAllByRole("row").slice(1);

beforeEach(() => {
  vi.stubGlobal("EventSource", FakeSource);
});
afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

describe("Live requests", () => {
  it("waits, then shows requests newest on top, and pauses with a count of what waits", async () => {
    render(Live);
    const source = FakeSource.last!;
    expect(source.url).toBe("/api/v1/requests/live");
    expect(screen.getByRole("heading", { name: "Live requests" })).toBeTruthy();
    expect(screen.getByText("Connecting…")).toBeTruthy();
    expect(screen.getByText(/Waiting for requests/)).toBeTruthy();

    source.open();
    source.emit("request", event(1));
    source.emit("request", event(2, { user: "bob", model: "claude-opus-4-1" }));
    await settle();
    expect(screen.getByText("Live")).toBeTruthy();
    const rows = bodyRows();
    expect(rows).toHaveLength(2);
    expect(within(rows[0]!).getByText("bob")).toBeTruthy();
    for (const name of ["User", "Model", "Status", "Cost"]) expect(screen.getByRole("columnheader", { name })).toBeTruthy();

    await fireEvent.click(screen.getByRole("button", { name: "Pause" }));
    for (let n = 3; n <= 14; n += 1) source.emit("request", event(n));
    await settle();
    expect(bodyRows()).toHaveLength(2);
    expect(screen.getByText("12 new")).toBeTruthy();

    await fireEvent.click(screen.getByRole("button", { name: "Resume" }));
    await settle();
    expect(bodyRows()).toHaveLength(14);
    expect(screen.queryByText("12 new")).toBeNull();
  });

  it("filters by text and by failures, and says what the engine skipped", async () => {
    render(Live);
    const source = FakeSource.last!;
    source.open();
    source.emit("request", event(1));
    source.emit("request", event(2, { user: null, account: null, model: null, status: 403, outcome: "error", error: "bad_token", cost_usd: null }));
    source.emit("request", event(3, { model: "claude-opus-4-1" }));
    source.emit("lagged", { missed: 7 });
    await settle();
    expect(screen.getByText(/skipped 7\s+requests/)).toBeTruthy();

    await fireEvent.input(screen.getByLabelText("Filter"), { target: { value: "opus" } });
    expect(bodyRows()).toHaveLength(1);
    expect(screen.getByText("1 of 3 shown")).toBeTruthy();

    await fireEvent.input(screen.getByLabelText("Filter"), { target: { value: "" } });
    await fireEvent.click(screen.getByLabelText("Failures only"));
    const rows = bodyRows();
    expect(rows).toHaveLength(1);
    expect(within(rows[0]!).getByText("Refused: bad token")).toBeTruthy();
  });

  it("says when it reconnects, and closes the feed when the page is left", async () => {
    const { unmount } = render(Live);
    const source = FakeSource.last!;
    source.open();
    source.onerror?.();
    await settle();
    expect(screen.getByText("Reconnecting…")).toBeTruthy();
    unmount();
    expect(source.closed).toBe(true);
  });
});
