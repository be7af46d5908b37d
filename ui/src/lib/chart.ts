// A usage report shaped for a stacked chart: one series per group, one value per period,
// zero where the group had nothing; the groups beyond the top N as "Other", last.
// Pure functions, tested without a canvas; the drawing is Chart.js's (UsageChart.svelte).
import type { Schemas } from "./api/client";
import { compact, count, money } from "./format";
import type { Metric } from "./range";

export type UsageRow = Schemas["UsageRow"];
export type Dimension = Schemas["Dimension"];

export interface Series {
  /** The group's value as the API gave it ("" for none), or OTHER. */
  key: string;
  /** What the legend and the tooltip say. */
  label: string;
  values: number[];
  other: boolean;
}

export interface Shaped {
  /** The periods, oldest first, as the API names them (`2026-11-05`, `2026-11-05 14:00`). */
  periods: string[];
  series: Series[];
}

export const OTHER = "\u0000other";

/** A row's figure for a metric: dollars, tokens or requests. */
export function metricValue(row: Schemas["UsageFigures"], metric: Metric): number {
  switch (metric) {
    case "cost":
      return row.cost_usd;
    case "tokens":
      return row.total_tokens;
    case "requests":
      return row.requests;
  }
}

/** A figure as the reader reads it: $1.23, 12,345 tokens, 42 requests. */
export function metricText(value: number, metric: Metric, locale?: string): string {
  switch (metric) {
    case "cost":
      return money(value, locale);
    case "tokens":
      return count(value, locale);
    case "requests":
      return count(value, locale);
  }
}

/** An axis tick: short ($1.2K, 35K). */
export function metricTick(value: number, metric: Metric, locale?: string): string {
  if (metric === "cost") {
    return Math.abs(value) >= 1000
      ? new Intl.NumberFormat(locale, { style: "currency", currency: "USD", notation: "compact" }).format(value)
      : money(value, locale);
  }
  return compact(value, locale);
}

/** What a group's value is called where it has none. */
export function groupLabel(value: string | null | undefined, group: Dimension | null | undefined, other = false): string {
  if (other) return "Other";
  if (!group) return "All requests";
  if (value === "" || value == null) {
    return group === "user" ? "(anonymous)" : group === "credential" ? "(no account)" : "(none sent)";
  }
  return value;
}

/**
 * Rows (by period, then group) into stacked series. Every period of the report is a
 * column, zero-filled for the groups it lacks; groups come by their total for the
 * metric, largest first, with "Other" last.
 */
export function shapeSeries(rows: UsageRow[], group: Dimension | null | undefined, metric: Metric): Shaped {
  const periods: string[] = [];
  const column = new Map<string, number>();
  for (const row of rows) {
    const period = row.bucket ?? "";
    if (!column.has(period)) {
      column.set(period, periods.length);
      periods.push(period);
    }
  }
  const byKey = new Map<string, Series & { total: number }>();
  for (const row of rows) {
    const value = group ? row[group] : "";
    // A period without requests has one zero row without a group: nothing to add.
    if (group && value == null && !row.other) continue;
    const key = row.other ? OTHER : (value ?? "");
    let series = byKey.get(key);
    if (!series) {
      series = { key, label: groupLabel(value, group, row.other), values: periods.map(() => 0), other: !!row.other, total: 0 };
      byKey.set(key, series);
    }
    const figure = metricValue(row, metric);
    const at = column.get(row.bucket ?? "") ?? 0;
    series.values[at] = (series.values[at] ?? 0) + figure;
    series.total += figure;
  }
  const series = [...byKey.values()]
    .sort((a, b) => Number(a.other) - Number(b.other) || b.total - a.total || a.label.localeCompare(b.label))
    .map(({ key, label, values, other }) => ({ key, label, values, other }));
  return { periods, series };
}

/** How many colours the palette has (`--chart-1` … in app.css). */
export const PALETTE_SIZE = 8;

function hash(text: string): number {
  // FNV-1a: the same name gets the same colour on every page and every load.
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * A palette slot per group name, stable for a name: its hash picks the slot, and a name
 * whose slot is taken (by a name earlier in alphabetical order) takes the next free one,
 * so up to PALETTE_SIZE groups never share a colour. "Other" has no slot (-1).
 */
export function colourSlots(keys: string[]): Map<string, number> {
  const slots = new Map<string, number>();
  const taken = new Set<number>();
  for (const key of [...keys].sort()) {
    if (key === OTHER) {
      slots.set(key, -1);
      continue;
    }
    let slot = hash(key) % PALETTE_SIZE;
    for (let i = 0; i < PALETTE_SIZE && taken.has(slot); i++) slot = (slot + 1) % PALETTE_SIZE;
    taken.add(slot);
    slots.set(key, slot);
  }
  return slots;
}

/** A period's name on the axis: the API's own text, shortened where it is plain. */
export function periodLabel(period: string, bucket: Schemas["Bucket"] | null | undefined, locale?: string): string {
  const [, y = "", m = "", d = "", hm = "", rest = ""] = /^(\d{4})-(\d{2})(?:-(\d{2}))?(?: (\d{2}:\d{2})(.*))?$/.exec(period) ?? [];
  if (!y) return period;
  if (bucket === "day" && d && !hm) {
    // The date as a calendar date (noon UTC, so no zone moves it to another day).
    const date = new Date(Date.UTC(+y, +m - 1, +d, 12));
    return new Intl.DateTimeFormat(locale, { month: "short", day: "numeric", timeZone: "UTC" }).format(date);
  }
  if (bucket === "month" && !d) {
    const date = new Date(Date.UTC(+y, +m - 1, 15));
    return new Intl.DateTimeFormat(locale, { month: "short", year: "numeric", timeZone: "UTC" }).format(date);
  }
  if (bucket === "hour" && hm) return hm + rest;
  return period;
}
