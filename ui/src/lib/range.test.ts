import { describe, expect, it } from "vitest";
import {
  DEFAULT_VIEW,
  apiQuery,
  bucketFits,
  csvHref,
  customRangeProblem,
  daysIn,
  defaultBucket,
  parseView,
  serializeView,
  withRange,
  type UsageView,
} from "./range";

const custom = (since: string, until: string): UsageView => ({ ...DEFAULT_VIEW, ...withRange(DEFAULT_VIEW, "custom", since, until) });

describe("buckets", () => {
  it("are hours for a day, days for weeks and a month, months past 90 days", () => {
    expect(defaultBucket("today")).toBe("hour");
    expect(defaultBucket("yesterday")).toBe("hour");
    expect(defaultBucket("7d")).toBe("day");
    expect(defaultBucket("30d")).toBe("day");
    expect(defaultBucket("this_month")).toBe("day");
    expect(defaultBucket("last_month")).toBe("day");
    expect(defaultBucket("custom", "2026-11-05", "2026-11-05")).toBe("hour");
    expect(defaultBucket("custom", "2026-09-01", "2026-11-29")).toBe("day");
    expect(defaultBucket("custom", "2026-01-01", "2026-11-30")).toBe("month");
    expect(defaultBucket("custom", "", "")).toBe("day");
  });

  it("count the days of a custom range with both ends, across a clock change", () => {
    expect(daysIn("2026-10-20", "2026-10-30")).toBe(11);
    expect(daysIn("2026-03-01", "2026-05-30")).toBe(91);
    expect(daysIn("2026-03-01", "")).toBeNaN();
  });

  it("follow a new range", () => {
    const view = { ...DEFAULT_VIEW, bucket: "month" as const };
    expect(withRange(view, "today").bucket).toBe("hour");
    expect(withRange(view, "30d")).toMatchObject({ range: "30d", bucket: "day", since: "", until: "" });
  });
});

describe("hourly buckets", () => {
  it("fit every preset and a custom range of up to 31 days, not longer", () => {
    for (const range of ["today", "yesterday", "7d", "30d", "this_month", "last_month"] as const) {
      expect(bucketFits({ range, since: "", until: "" }, "hour")).toBe(true);
    }
    expect(bucketFits(custom("2026-11-01", "2026-12-01"), "hour")).toBe(true);
    expect(bucketFits(custom("2026-11-01", "2026-12-02"), "hour")).toBe(false);
    expect(bucketFits(custom("2025-01-01", "2026-12-02"), "day")).toBe(true);
  });

  it("asked for in the URL over a longer range give way to the range's own bucket", () => {
    expect(parseView("range=custom&since=2026-01-01&until=2026-11-30&bucket=hour").bucket).toBe("month");
    expect(parseView("range=custom&since=2026-11-01&until=2026-11-07&bucket=hour").bucket).toBe("hour");
  });
});

describe("the URL's query", () => {
  it("round-trips a view", () => {
    const views: UsageView[] = [
      DEFAULT_VIEW,
      { range: "custom", since: "2026-11-01", until: "2026-11-30", bucket: "day", group: "model", metric: "tokens", chart: "area" },
      { ...DEFAULT_VIEW, range: "today", bucket: "hour", group: "none", metric: "requests" },
    ];
    for (const view of views) expect(parseView(serializeView(view))).toEqual(view);
    expect(serializeView(DEFAULT_VIEW)).toBe("range=7d&bucket=day&group=user&metric=cost&chart=bar");
  });

  it("fills what is missing or wrong with the defaults", () => {
    expect(parseView("")).toEqual(DEFAULT_VIEW);
    expect(parseView("range=forever&group=planet&metric=joy&chart=pie&bucket=week")).toEqual(DEFAULT_VIEW);
    // A range without a bucket gets the range's own.
    expect(parseView("range=today").bucket).toBe("hour");
    // Dates only belong to a custom range.
    expect(parseView("range=7d&since=2026-11-01")).toMatchObject({ since: "", until: "" });
    expect(parseView("group=account").group).toBe("credential");
  });
});

describe("a custom range", () => {
  it("needs both days, written as dates, the last not before the first", () => {
    expect(customRangeProblem(DEFAULT_VIEW)).toBeNull();
    expect(customRangeProblem(custom("", "2026-11-02"))).toMatch(/first and the last day/);
    expect(customRangeProblem(custom("2026-11-01", "next week"))).toMatch(/YYYY-MM-DD/);
    expect(customRangeProblem(custom("2026-11-02", "2026-11-01"))).toMatch(/before the first/);
    expect(customRangeProblem(custom("2026-11-01", "2026-11-01"))).toBeNull();
  });
});

describe("the API's parameters", () => {
  it("name a preset, or a custom range's days, in the reader's zone", () => {
    expect(apiQuery(DEFAULT_VIEW, "Europe/Paris")).toEqual({ range: "7d", bucket: "day", group: "user", top: 8, tz: "Europe/Paris" });
    expect(apiQuery({ ...custom("2026-11-01", "2026-11-30"), group: "none" }, "UTC")).toEqual({
      since: "2026-11-01",
      until: "2026-11-30",
      bucket: "day",
      tz: "UTC",
    });
  });

  it("make the CSV link of the same report", () => {
    expect(csvHref({ ...DEFAULT_VIEW, group: "credential" }, "Asia/Kathmandu")).toBe(
      "/api/v1/usage?range=7d&bucket=day&tz=Asia%2FKathmandu&group=credential&top=8&format=csv",
    );
  });
});
