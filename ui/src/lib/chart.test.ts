import { describe, expect, it } from "vitest";
import { OTHER, PALETTE_SIZE, colourSlots, groupLabel, metricText, metricTick, periodLabel, shapeSeries, type UsageRow } from "./chart";

function row(bucket: string, fields: Partial<UsageRow>): UsageRow {
  return {
    bucket,
    requests: 0,
    errors: 0,
    incomplete: 0,
    input_tokens: 0,
    output_tokens: 0,
    cache_read_tokens: 0,
    cache_write_5m_tokens: 0,
    cache_write_1h_tokens: 0,
    total_tokens: 0,
    web_search_requests: 0,
    web_fetch_requests: 0,
    cost_micros: 0,
    cost_usd: 0,
    unpriced_requests: 0,
    mean_duration_ms: null,
    mean_ttfb_ms: null,
    cache_hit_rate: null,
    ...fields,
  } as UsageRow;
}

// As the API answers group=user&top=2: every period, zero rows without a group, the kept
// groups by cost, then other.
const rows: UsageRow[] = [
  row("2026-11-20", { user: null }),
  row("2026-11-21", { user: "bob", cost_usd: 1, total_tokens: 100, requests: 1 }),
  row("2026-11-21", { user: "alice", cost_usd: 0.5, total_tokens: 900, requests: 3 }),
  row("2026-11-21", { user: null, other: true, cost_usd: 0.25, total_tokens: 10, requests: 1 }),
  row("2026-11-22", { user: "alice", cost_usd: 2, total_tokens: 1000, requests: 4 }),
];

describe("shapeSeries", () => {
  it("makes a zero-filled series per group, the largest first and Other last", () => {
    const shaped = shapeSeries(rows, "user", "cost");
    expect(shaped.periods).toEqual(["2026-11-20", "2026-11-21", "2026-11-22"]);
    expect(shaped.series).toEqual([
      { key: "alice", label: "alice", values: [0, 0.5, 2], other: false },
      { key: "bob", label: "bob", values: [0, 1, 0], other: false },
      { key: OTHER, label: "Other", values: [0, 0.25, 0], other: true },
    ]);
  });

  it("follows the metric", () => {
    const tokens = shapeSeries(rows, "user", "tokens").series.map((s) => [s.key, s.values]);
    expect(tokens).toEqual([
      ["alice", [0, 900, 1000]],
      ["bob", [0, 100, 0]],
      [OTHER, [0, 10, 0]],
    ]);
    const requests = shapeSeries(rows, "user", "requests").series.map((s) => s.values);
    expect(requests).toEqual([
      [0, 3, 4],
      [0, 1, 0],
      [0, 1, 0],
    ]);
  });

  it("makes one series when not grouped, and names groups without a value", () => {
    const plain = [row("2026-11-21", { cost_usd: 1 }), row("2026-11-22", { cost_usd: 3 })];
    expect(shapeSeries(plain, null, "cost").series).toEqual([{ key: "", label: "All requests", values: [1, 3], other: false }]);
    const anonymous = shapeSeries([row("2026-11-21", { user: "", requests: 2 })], "user", "requests");
    expect(anonymous.series[0]).toMatchObject({ key: "", label: "(anonymous)", values: [2] });
    expect(groupLabel("", "device")).toBe("(none sent)");
    expect(shapeSeries([row("2026-11-21", { user: null })], "user", "cost").series).toEqual([]);
  });
});

describe("colourSlots", () => {
  it("gives a name the same slot whatever else is shown, and no two names one slot", () => {
    const names = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"];
    const slots = colourSlots([...names, OTHER]);
    expect(new Set(names.map((n) => slots.get(n))).size).toBe(PALETTE_SIZE);
    expect(slots.get(OTHER)).toBe(-1);
    expect(colourSlots(["alice"]).get("alice")).toBe(colourSlots(["alice", "zed"]).get("alice"));
    expect(colourSlots([...names].reverse())).toEqual(colourSlots(names));
  });
});

describe("figures", () => {
  it("read as money, counts and short ticks", () => {
    expect(metricText(1234.5, "cost", "en-US")).toBe("$1,234.50");
    expect(metricText(1234567, "tokens", "en-US")).toBe("1,234,567");
    expect(metricTick(1500, "cost", "en-US")).toBe("$1.5K");
    expect(metricTick(0.5, "cost", "en-US")).toBe("$0.50");
    expect(metricTick(35_000, "tokens", "en-US")).toBe("35K");
  });

  it("name periods briefly", () => {
    expect(periodLabel("2026-11-05", "day", "en-US")).toBe("Nov 5");
    expect(periodLabel("2026-11", "month", "en-US")).toBe("Nov 2026");
    expect(periodLabel("2026-11-05 14:00", "hour", "en-US")).toBe("14:00");
    expect(periodLabel("2026-10-25 02:00 +01:00", "hour", "en-US")).toBe("02:00 +01:00");
  });
});
