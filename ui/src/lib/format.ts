// Numbers, money and times for the reader's locale, through Intl (the browser's own
// formatting library): nothing here builds a number or date string by hand.
// `locale` is undefined in the app (the reader's own) and fixed in tests.

export type Locale = string | undefined;

// Making an Intl formatter costs far more than using one, and a table of hundreds of rows
// (the live feed) formats thousands of values: formatters are made once per locale and
// options, and kept.
const numberFormats = new Map<string, Intl.NumberFormat>();
const dateFormats = new Map<string, Intl.DateTimeFormat>();

function numberFormat(locale: Locale, options: Intl.NumberFormatOptions): Intl.NumberFormat {
  const key = JSON.stringify([locale ?? null, options]);
  let made = numberFormats.get(key);
  if (!made) numberFormats.set(key, (made = new Intl.NumberFormat(locale, options)));
  return made;
}

function dateFormat(locale: Locale, options: Intl.DateTimeFormatOptions): Intl.DateTimeFormat {
  const key = JSON.stringify([locale ?? null, options]);
  let made = dateFormats.get(key);
  if (!made) dateFormats.set(key, (made = new Intl.DateTimeFormat(locale, options)));
  return made;
}

/** Costs are priced in US dollars (the providers' price lists are). */
export function money(usd: number, locale?: Locale): string {
  const small = usd !== 0 && Math.abs(usd) < 0.01;
  return numberFormat(locale, {
    style: "currency",
    currency: "USD",
    minimumFractionDigits: 2,
    maximumFractionDigits: small ? 4 : 2,
  }).format(usd);
}

/** Whole numbers with the locale's grouping: 1,234,567. */
export function count(n: number, locale?: Locale): string {
  return numberFormat(locale, { maximumFractionDigits: 0 }).format(n);
}

/** Token counts in tables and axes: 1.2M, 35K. */
export function compact(n: number, locale?: Locale): string {
  return numberFormat(locale, { notation: "compact", maximumFractionDigits: 1 }).format(n);
}

/** A share from 0 to 1 (a cache hit rate), or a utilization given in percent (0–100). */
export function percent(value: number, { of100 = false } = {}, locale?: Locale): string {
  return numberFormat(locale, { style: "percent", maximumFractionDigits: 0 }).format(
    of100 ? value / 100 : value,
  );
}

/** Milliseconds as a person reads a request's duration: 840 ms, 12.4 s. */
export function millis(ms: number, locale?: Locale): string {
  if (ms < 1000) return numberFormat(locale, { style: "unit", unit: "millisecond", maximumFractionDigits: 0 }).format(ms);
  return numberFormat(locale, { style: "unit", unit: "second", maximumFractionDigits: 1 }).format(ms / 1000);
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
  const format = new Intl.DurationFormat(locale, { style: "short" });
  // DurationFormat leaves out units that are zero, which would leave nothing at all.
  if (total === 0) return `less than ${format.format({ minutes: 1 })}`;
  const parts: Record<string, number> = days > 0 ? { days, hours } : hours > 0 ? { hours, minutes } : { minutes };
  return format.format(parts);
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
  return dateFormat(locale, { dateStyle: "medium", timeStyle: "short" }).format(new Date(at));
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

/** The time of day to the second, for a feed of events: "7:06:53 PM", "19:06:53". */
export function clock(at: string | Date, locale?: Locale): string {
  return dateFormat(locale, { timeStyle: "medium" }).format(new Date(at));
}

/** A size in bytes with a unit a person reads: "512 byte", "64 kB", "67.1 MB" (powers of 1000). */
export function bytes(n: number, locale?: Locale): string {
  const units = ["byte", "kilobyte", "megabyte", "gigabyte", "terabyte"] as const;
  let value = n;
  let unit = 0;
  while (Math.abs(value) >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return numberFormat(locale, { style: "unit", unit: units[unit], maximumFractionDigits: 1 }).format(value);
}

/** A single request's cost, to the hundredth of a cent so a column of them lines up: "$0.0097", "$0.0513". */
export function moneyFine(usd: number, locale?: Locale): string {
  return numberFormat(locale, { style: "currency", currency: "USD", minimumFractionDigits: 4, maximumFractionDigits: 4 }).format(usd);
}
