import { describe, expect, it } from "vitest";
import { bytes, clock, compact, count, money, moneyFine, percent, relative, requestCount, resetsIn, span } from "./format";

const now = new Date("2026-12-07T12:00:00Z");

describe("format", () => {
  it("writes money in US dollars for the reader's locale", () => {
    expect(money(1234.5, "en-US")).toBe("$1,234.50");
    expect(money(1234.5, "de-DE")).toBe("1.234,50\u00a0$");
    expect(money(0.0042, "en-US")).toBe("$0.0042");
    expect(money(0, "en-US")).toBe("$0.00");
  });

  it("groups thousands and compacts token counts", () => {
    expect(count(1234567, "en-US")).toBe("1,234,567");
    expect(count(1234567, "fr-FR")).toBe("1\u202f234\u202f567");
    expect(compact(1_250_000, "en-US")).toBe("1.3M");
    expect(percent(0.873, {}, "en-US")).toBe("87%");
    expect(percent(42, { of100: true }, "en-US")).toBe("42%");
  });

  it("counts down to a reset in the two largest units", () => {
    expect(span((2 * 60 + 14) * 60_000, "en")).toBe("2 hr, 14 min");
    expect(span((3 * 24 + 4) * 3_600_000 + 59_000, "en")).toBe("3 days, 4 hr");
    expect(span(20_000, "en")).toBe("less than 1 min");
    expect(span(0, "en")).toBe("less than 1 min");
    expect(resetsIn(new Date(now.getTime() + 45 * 60_000), now, "en")).toBe("resets in 45 min");
    expect(resetsIn(new Date(now.getTime() - 1000), now, "en")).toBe("resetting now");
  });

  it("says how long ago in words", () => {
    expect(relative(new Date(now.getTime() - 3 * 60_000), now, "en")).toBe("3 minutes ago");
    expect(relative(new Date(now.getTime() - 86_400_000), now, "en")).toBe("yesterday");
    expect(relative(now, now, "en")).toBe("now");
  });
});

describe("requestCount", () => {
  it("says request or requests", () => {
    expect(requestCount(1, "en-US")).toBe("1 request");
    expect(requestCount(0, "en-US")).toBe("0 requests");
    expect(requestCount(1234, "en-US")).toBe("1,234 requests");
  });
});

describe("clock, bytes and moneyFine", () => {
  it("writes the time of day to the second, in the reader's way", () => {
    const at = "2026-12-07T19:06:53.432Z";
    expect(clock(at, "en-US")).toMatch(/^\d{1,2}:\d{2}:53\s?[AP]M$/);
    expect(clock(at, "de-DE")).toMatch(/^\d{2}:\d{2}:53$/);
  });

  it("writes sizes with a unit", () => {
    expect(bytes(512, "en-US")).toBe("512 byte");
    expect(bytes(67_108_864, "en-US")).toBe("67.1 MB");
    expect(bytes(2_000, "en-US")).toBe("2 kB");
    expect(bytes(67_108_864, "de-DE")).toBe("67,1 MB");
  });

  it("writes a request's cost to the hundredth of a cent", () => {
    expect(moneyFine(0.0097, "en-US")).toBe("$0.0097");
    expect(moneyFine(0.05, "en-US")).toBe("$0.0500");
    expect(moneyFine(1.23456, "de-DE")).toBe("1,2346\u00a0$");
  });
});
