import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { cleanup, render } from "@testing-library/svelte";
import { Chart } from "chart.js";
import UsageChart from "./UsageChart.svelte";
import { OTHER, shapeSeries, type UsageRow } from "../lib/chart";

// jsdom has no canvas: a 2D context that draws nothing, so Chart.js runs its whole setup.
beforeAll(() => {
  const noop = () => {};
  const context = (canvas: HTMLCanvasElement) =>
    new Proxy(
      {},
      {
        get: (_, name) => (name === "measureText" ? () => ({ width: 10 }) : name === "canvas" ? canvas : noop),
        set: () => true,
      },
    ) as unknown as CanvasRenderingContext2D;
  vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockImplementation(function (this: HTMLCanvasElement) {
    return context(this);
  } as unknown as typeof HTMLCanvasElement.prototype.getContext);
  // jsdom lays nothing out: a responsive chart's observer that never fires.
  globalThis.ResizeObserver ??= class {
    observe = noop;
    unobserve = noop;
    disconnect = noop;
  } as unknown as typeof ResizeObserver;
  // No system colour scheme to follow in jsdom.
  window.matchMedia ??= ((query: string) => ({
    matches: false,
    media: query,
    addEventListener: noop,
    removeEventListener: noop,
  })) as unknown as typeof window.matchMedia;
  // The palette as app.css gives it (jsdom does not inherit custom properties: set on the canvas).
  const sheet = document.createElement("style");
  sheet.textContent = `canvas { --chart-other: #8d96a3; ${[1, 2, 3, 4, 5, 6, 7, 8].map((i) => `--chart-${i}: #00000${i};`).join(" ")} }`;
  document.head.append(sheet);
});
afterEach(cleanup);

const base = { errors: 0, incomplete: 0, input_tokens: 0, output_tokens: 0, cache_read_tokens: 0, cache_write_5m_tokens: 0, cache_write_1h_tokens: 0 };
const figures = { web_search_requests: 0, web_fetch_requests: 0, cost_micros: 0, unpriced_requests: 0, mean_duration_ms: 0, mean_ttfb_ms: null, cache_hit_rate: null };
const row = (bucket: string, user: string | null, cost: number, tokens: number, other = false): UsageRow =>
  ({ ...base, ...figures, bucket, user, other, cost_usd: cost, total_tokens: tokens, requests: 1 }) as UsageRow;
const rows = [row("2026-11-20", null, 0, 0), row("2026-11-21", "alice", 2, 50), row("2026-11-21", null, 0.5, 900, true), row("2026-11-22", "bob", 1, 10)];

/** The chart drawn on the component's canvas, once Chart.js has loaded (lazily). */
async function chartOf(container: HTMLElement, type: string): Promise<Chart> {
  return vi.waitFor(() => {
    const canvas = container.querySelector("canvas");
    const chart = canvas && Chart.getChart(canvas);
    if (!chart || (chart.config as { type?: string }).type !== type) throw new Error(`no ${type} chart on the canvas yet`);
    return chart;
  });
}

describe("UsageChart", () => {
  it("draws one stacked dataset per group, zero-filled, Other last and grey, and follows the metric", async () => {
    const props = { shaped: shapeSeries(rows, "user", "cost"), metric: "cost" as const, bucket: "day" as const, label: "Cost per day by user" };
    const { container, rerender } = render(UsageChart, props);
    const canvas = container.querySelector("canvas")!;
    expect(canvas.getAttribute("aria-label")).toBe("Cost per day by user");
    let chart = await chartOf(container, "bar");
    expect(chart.data.labels).toEqual(["Nov 20", "Nov 21", "Nov 22"]);
    expect(chart.data.datasets.map((d) => [d.label, d.data])).toEqual([
      ["alice", [0, 2, 0]],
      ["bob", [0, 0, 1]],
      ["Other", [0, 0.5, 0]],
    ]);
    expect(chart.data.datasets[2]?.backgroundColor).toBe("#8d96a3");
    expect(String(chart.data.datasets[0]?.backgroundColor)).toMatch(/^#00000[1-8]$/);
    expect((chart.options.scales?.y as { stacked?: boolean } | undefined)?.stacked).toBe(true);

    await rerender({ ...props, shaped: shapeSeries(rows, "user", "tokens"), metric: "tokens", kind: "area" });
    chart = await chartOf(container, "line");
    // Other holds the most tokens, and still comes last.
    expect(chart.data.datasets.map((d) => [d.label, d.data])).toEqual([
      ["alice", [0, 50, 0]],
      ["bob", [0, 0, 10]],
      ["Other", [0, 900, 0]],
    ]);
    expect(shapeSeries(rows, "user", "tokens").series.at(-1)?.key).toBe(OTHER);
  });

  it("destroys its chart when it goes", async () => {
    const { container, unmount } = render(UsageChart, {
      shaped: shapeSeries(rows, "user", "requests"),
      metric: "requests",
      bucket: "day",
      label: "Requests",
    });
    const canvas = container.querySelector("canvas")!;
    await chartOf(container, "bar");
    unmount();
    expect(Chart.getChart(canvas)).toBeUndefined();
  });
});
