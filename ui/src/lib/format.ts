// Numbers, money and times for the reader's locale, through Intl (the browser's own
// formatting library): nothing here builds a number or date string by hand.
// `locale` is undefined in the app (the reader's own) and fixed in tests.

export type Locale = string | undefined;

/** Costs are priced in US dollars (the providers' price lists are). */
export function money(usd: number, locale?: Locale): string {
  const small = usd !== 0 && Math.abs(usd) < 0.01;
  return new Intl.NumberFormat(locale, {
    style: "currency",
    currency: "USD",
    minimumFractionDigits: 2,
    maximumFractionDigits: small ? 4 : 2,
  }).format(usd);
}

/** Whole numbers with the locale's grouping: 1,234,567. */
export function count(n: number, locale?: Locale): string {
  return new Intl.NumberFormat(locale, { maximumFractionDigits: 0 }).format(n);
}

/** Token counts in tables and axes: 1.2M, 35K. */
export function compact(n: number, locale?: Locale): string {
  return new Intl.NumberFormat(locale, { notation: "compact", maximumFractionDigits: 1 }).format(n);
}

/** A share from 0 to 1 (a cache hit rate), or a utilization given in percent (0–100). */
export function percent(value: number, { of100 = false } = {}, locale?: Locale): string {
  return new Intl.NumberFormat(locale, { style: "percent", maximumFractionDigits: 0 }).format(
    of100 ? value / 100 : value,
  );
}

/** Milliseconds as a person reads a request's duration: 840 ms, 12.4 s. */
export function millis(ms: number, locale?: Locale): string {
  if (ms < 1000) return new Intl.NumberFormat(locale, { style: "unit", unit: "millisecond", maximumFractionDigits: 0 }).format(ms);
  return new Intl.NumberFormat(locale, { style: "unit", unit: "second", maximumFractionDigits: 1 }).format(ms / 1000);
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/**
 * A span of time to the minute, largest units first: "2 hr, 14 min", "3 days, 4 hr".
 * Two units at most: a countdown to a reset a week away does not need its minutes.
 */
export function span(ms: number, locale?: Locale): string {
  const total = Math.max(0, Math.round(ms / MINUTE)) * MINUTE;
  const days = Math.floor(total / DAY);
  const hours = Math.floor((total % DAY) / HOUR);
  const minutes = Math.floor((total % HOUR) / MINUTE);
  const parts: Record<string, number> = days > 0 ? { days, hours } : hours > 0 ? { hours, minutes } : { minutes };
  return new Intl.DurationFormat(locale, { style: "short" }).format(parts);
}

/** "resets in 2 hr, 14 min", or "resetting now" once the time has come. */
export function resetsIn(at: string | Date, now: Date = new Date(), locale?: Locale): string {
  const ms = new Date(at).getTime() - now.getTime();
  return ms <= 30_000 ? "resetting now" : `resets in ${span(ms, locale)}`;
}

/** "3 minutes ago", "in 2 hours", "yesterday": the nearest unit, through Intl.RelativeTimeFormat. */
export function relative(at: string | Date, now: Date = new Date(), locale?: Locale): string {
  const seconds = (new Date(at).getTime() - now.getTime()) / 1000;
  const format = new Intl.RelativeTimeFormat(locale, { numeric: "auto" });
  const units: [Intl.RelativeTimeFormatUnit, number][] = [
    ["day", 86_400],
    ["hour", 3_600],
    ["minute", 60],
  ];
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size) return format.format(Math.round(seconds / size), unit);
  }
  return format.format(Math.round(seconds), "second");
}

/** A moment as the reader's local date and time. */
export function dateTime(at: string | Date, locale?: Locale): string {
  return new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeStyle: "short" }).format(new Date(at));
}

/** The reader's IANA time zone, for usage reports bucketed by their days. */
export function timeZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone;
}

/** "1 request", "1,234 requests": the count and the word in its plural form (English UI). */
export function requestCount(n: number, locale?: Locale): string {
  const one = new Intl.PluralRules("en").select(n) === "one";
  return `${count(n, locale)} ${one ? "request" : "requests"}`;
}
