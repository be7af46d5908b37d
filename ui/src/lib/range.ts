// The usage page's view: which range, bucket, grouping, metric and chart, kept in the
// URL's query (`#/usage?range=7d&group=user`) so a view can be bookmarked and reloaded,
// and turned into `GET /api/v1/usage`'s parameters. The dates are the API's to read
// (in the reader's time zone): nothing here computes an instant.

export const PRESETS = ["today", "yesterday", "7d", "30d", "this_month", "last_month", "custom"] as const;
export type Preset = (typeof PRESETS)[number];

export const PRESET_LABELS: Record<Preset, string> = {
  today: "Today",
  yesterday: "Yesterday",
  "7d": "Last 7 days",
  "30d": "Last 30 days",
  this_month: "This month",
  last_month: "Last month",
  custom: "Custom range",
};

export const BUCKETS = ["hour", "day", "month"] as const;
export type BucketChoice = (typeof BUCKETS)[number];

/** `none` is not grouped; `credential` is the account (the API's name for it). */
export const GROUPS = ["none", "user", "model", "credential", "device", "session"] as const;
export type GroupChoice = (typeof GROUPS)[number];
export const GROUP_LABELS: Record<GroupChoice, string> = {
  none: "Nothing",
  user: "User",
  model: "Model",
  credential: "Account",
  device: "Device",
  session: "Session",
};

export const METRICS = ["cost", "tokens", "requests"] as const;
export type Metric = (typeof METRICS)[number];
export const METRIC_LABELS: Record<Metric, string> = { cost: "Cost", tokens: "Tokens", requests: "Requests" };

export const CHARTS = ["bar", "area"] as const;
export type ChartKind = (typeof CHARTS)[number];

/** How many groups the chart and table keep; the rest are summed as "other". */
export const TOP = 8;

export interface UsageView {
  range: Preset;
  /** A custom range's first and last day (`YYYY-MM-DD`, both included). */
  since: string;
  until: string;
  bucket: BucketChoice;
  group: GroupChoice;
  metric: Metric;
  chart: ChartKind;
}

const DAY_MS = 86_400_000;
const ISO_DATE = /^\d{4}-\d{2}-\d{2}$/;

/** Days from `since` to `until`, both included; NaN unless both are dates. */
export function daysIn(since: string, until: string): number {
  if (!ISO_DATE.test(since) || !ISO_DATE.test(until)) return Number.NaN;
  return Math.round((Date.parse(until) - Date.parse(since)) / DAY_MS) + 1;
}

/** The bucket a range reads best in: hours for a day, months past 90 days, else days. */
export function defaultBucket(range: Preset, since = "", until = ""): BucketChoice {
  if (range === "today" || range === "yesterday") return "hour";
  if (range === "custom") {
    const days = daysIn(since, until);
    if (days === 1) return "hour";
    if (days > 90) return "month";
  }
  return "day";
}

/**
 * Hours only over a month at most: a chart of a year in hours would be 8,760 bars, too
 * many to read or to draw quickly. Every preset fits; a longer custom range does not.
 */
export const MAX_HOURLY_DAYS = 31;

/** Whether `bucket` suits the view's range. */
export function bucketFits(view: Pick<UsageView, "range" | "since" | "until">, bucket: BucketChoice): boolean {
  if (bucket !== "hour" || view.range !== "custom") return true;
  const days = daysIn(view.since, view.until);
  return !(days > MAX_HOURLY_DAYS);
}

export const DEFAULT_VIEW: UsageView = {
  range: "7d",
  since: "",
  until: "",
  bucket: "day",
  group: "user",
  metric: "cost",
  chart: "bar",
};

function oneOf<T extends string>(choices: readonly T[], value: string | null): T | undefined {
  return choices.find((c) => c === value);
}

/** The view a query string describes; what it leaves out or gets wrong takes the defaults. */
export function parseView(query: string): UsageView {
  const q = new URLSearchParams(query);
  const range = oneOf(PRESETS, q.get("range")) ?? DEFAULT_VIEW.range;
  const since = range === "custom" ? (q.get("since") ?? "") : "";
  const until = range === "custom" ? (q.get("until") ?? "") : "";
  const asked = oneOf(BUCKETS, q.get("bucket"));
  return {
    range,
    since,
    until,
    bucket: asked && bucketFits({ range, since, until }, asked) ? asked : defaultBucket(range, since, until),
    // `account` is what people call it; the API accepts both.
    group: oneOf(GROUPS, q.get("group") === "account" ? "credential" : q.get("group")) ?? DEFAULT_VIEW.group,
    metric: oneOf(METRICS, q.get("metric")) ?? DEFAULT_VIEW.metric,
    chart: oneOf(CHARTS, q.get("chart")) ?? DEFAULT_VIEW.chart,
  };
}

/** The query string of a view, in a fixed order (what `parseView` reads back). */
export function serializeView(view: UsageView): string {
  const q = new URLSearchParams({ range: view.range });
  if (view.range === "custom") {
    q.set("since", view.since);
    q.set("until", view.until);
  }
  q.set("bucket", view.bucket);
  q.set("group", view.group);
  q.set("metric", view.metric);
  q.set("chart", view.chart);
  return q.toString();
}

/** The view after picking another range: its bucket follows unless it still fits. */
export function withRange(view: UsageView, range: Preset, since = view.since, until = view.until): UsageView {
  const next = { ...view, range, since: range === "custom" ? since : "", until: range === "custom" ? until : "" };
  return { ...next, bucket: defaultBucket(range, next.since, next.until) };
}

/** Why a custom range cannot be asked for yet; null when it can (the API has the last word). */
export function customRangeProblem(view: UsageView): string | null {
  if (view.range !== "custom") return null;
  if (!view.since || !view.until) return "Pick the first and the last day of the range.";
  if (!ISO_DATE.test(view.since) || !ISO_DATE.test(view.until)) return "Dates are written YYYY-MM-DD.";
  // ISO dates compare as text.
  if (view.until < view.since) return "The last day is before the first.";
  return null;
}

/** `GET /api/v1/usage`'s query for a view, in a time zone. */
export interface UsageQuery {
  range?: string;
  since?: string;
  until?: string;
  bucket: BucketChoice;
  group?: Exclude<GroupChoice, "none">;
  top?: number;
  tz: string;
}

export function apiQuery(view: UsageView, tz: string): UsageQuery {
  const query: UsageQuery =
    view.range === "custom"
      ? { since: view.since, until: view.until, bucket: view.bucket, tz }
      : { range: view.range, bucket: view.bucket, tz };
  if (view.group !== "none") {
    query.group = view.group;
    query.top = TOP;
  }
  return query;
}

/** The CSV download of the same report: a plain link (a GET rides on the session cookie). */
export function csvHref(view: UsageView, tz: string): string {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(apiQuery(view, tz))) {
    if (value !== undefined) q.set(key, String(value));
  }
  q.set("format", "csv");
  return `/api/v1/usage?${q.toString()}`;
}
