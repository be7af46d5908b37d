//! `carpool usage`: the ledger as a table, JSON, CSV or a sing-box ccm usage file.
//!
//! It opens the same SQLite file the server writes (WAL lets both work at once) and asks
//! [`crate::ledger::query`] the same questions the dashboard asks.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};
use serde_json::json;

use crate::config::{self, Config};
use crate::ledger::ccm::CcmUsage;
use crate::ledger::query::{self, Bucket, Dimension, Filter, Query, Report, Totals};
use crate::ledger::store;

#[derive(Args, Debug)]
pub struct UsageArgs {
    /// Config file, to find the database. Default: $CARPOOL_CONFIG, else
    /// <OS config dir>/carpool/config.json.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// The usage database itself, instead of the one the config names.
    #[arg(long, value_name = "PATH")]
    database: Option<PathBuf>,
    /// Start of the range: today, yesterday, month (this month), last-month, a date
    /// (2026-11-01), a month (2026-11), an RFC 3339 time, or an age (7d, 12h, 2w).
    /// Default: 30 days ago.
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// End of the range, in the same forms; a date or month counts whole. Default: now.
    #[arg(long, value_name = "WHEN")]
    until: Option<String>,
    /// Rows per time bucket and/or per group: one or two of hour, day, month, user,
    /// model, credential, device, session (e.g. `--by day,user`). Default: day.
    #[arg(long, value_name = "KEY", value_delimiter = ',', num_args = 1..)]
    by: Vec<By>,
    /// Time zone of dates and buckets (IANA name such as Europe/Paris). Default: this
    /// machine's.
    #[arg(long, value_name = "ZONE")]
    tz: Option<String>,
    /// Only the N groups that cost the most; the rest are summed as "(other)".
    #[arg(long, value_name = "N")]
    top: Option<usize>,
    /// Only this user's requests.
    #[arg(long)]
    user: Option<String>,
    /// Only this model's requests.
    #[arg(long)]
    model: Option<String>,
    /// Only requests served by this credential (tag).
    #[arg(long)]
    credential: Option<String>,
    /// Only requests from this device id.
    #[arg(long)]
    device: Option<String>,
    /// Only requests from this session id.
    #[arg(long)]
    session: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, conflicts_with_all = ["csv", "format"])]
    json: bool,
    /// Print CSV instead of a table.
    #[arg(long, conflicts_with = "format")]
    csv: bool,
    /// Output format; `ccm` prints sing-box ccm's `usages_path` file for the range.
    #[arg(long, value_enum)]
    format: Option<Format>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum By {
    Hour,
    Day,
    Month,
    User,
    Model,
    Credential,
    Device,
    Session,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
    Csv,
    Ccm,
}

pub fn run(args: UsageArgs) -> anyhow::Result<()> {
    let out = render(&args)?;
    print!("{out}");
    Ok(())
}

/// The whole output, as text (tests call this).
pub fn render(args: &UsageArgs) -> anyhow::Result<String> {
    let format = match (args.json, args.csv, args.format) {
        (true, _, _) => Format::Json,
        (_, true, _) => Format::Csv,
        (_, _, Some(f)) => f,
        _ => Format::Table,
    };
    let tz = match &args.tz {
        Some(name) => TimeZone::get(name).with_context(|| {
            format!("--tz {name}: not a time zone name such as Europe/Paris or UTC")
        })?,
        None => TimeZone::system(),
    };
    let now = Zoned::now().with_time_zone(tz.clone());
    let since = match &args.since {
        Some(w) => parse_when(w, &now, End::Start).with_context(|| format!("--since {w}"))?,
        None => now.start_of_day()?.checked_sub(29.days())?.timestamp(),
    };
    let until = match &args.until {
        Some(w) => parse_when(w, &now, End::Finish).with_context(|| format!("--until {w}"))?,
        None => now.timestamp(),
    };
    if until <= since {
        bail!("the range is empty: --until ({until}) is not after --since ({since})");
    }
    let (bucket, group) = split_by(&args.by)?;
    let database = database_path(args)?;
    let conn = store::open_existing(&database)?;

    if format == Format::Ccm {
        let mut usage = CcmUsage::new();
        store::for_each_request(&conn, since.as_millisecond(), until.as_millisecond(), |r| {
            usage.add(&r)
        })?;
        return Ok(usage.to_json(&tz) + "\n");
    }

    let q = Query {
        since_ms: since.as_millisecond(),
        until_ms: until.as_millisecond(),
        tz: tz.clone(),
        bucket,
        group,
        top: args.top,
        filter: Filter {
            user: args.user.clone(),
            model: args.model.clone(),
            credential: args.credential.clone(),
            device: args.device.clone(),
            session: args.session.clone(),
        },
    };
    let report = query::report(&conn, &q)?;
    Ok(match format {
        Format::Json => to_json(&q, &report, since, until),
        Format::Csv => to_csv(&q, &report),
        _ => to_table(&q, &report, since, until),
    })
}

fn database_path(args: &UsageArgs) -> anyhow::Result<PathBuf> {
    if let Some(p) = &args.database {
        return Ok(p.clone());
    }
    let path = match &args.config {
        Some(p) => p.clone(),
        None => config::default_config_path()
            .context("cannot find the OS config directory; pass --config or --database")?,
    };
    if path.exists() {
        return Ok(Config::load(&path)?.usage.database);
    }
    if args.config.is_some() {
        bail!("no config at {}", path.display());
    }
    config::default_data_dir()
        .map(|d| d.join("usage.db"))
        .context("cannot find the OS data directory; pass --database")
}

fn split_by(by: &[By]) -> anyhow::Result<(Option<Bucket>, Option<Dimension>)> {
    let mut bucket = None;
    let mut group = None;
    for b in by {
        let (is_time, slot) = match b {
            By::Hour => (true, Some(Bucket::Hour)),
            By::Day => (true, Some(Bucket::Day)),
            By::Month => (true, Some(Bucket::Month)),
            _ => (false, None),
        };
        if is_time {
            if bucket.replace(slot.expect("time key")).is_some() {
                bail!("--by takes at most one of hour, day, month");
            }
        } else {
            let dimension = match b {
                By::User => Dimension::User,
                By::Model => Dimension::Model,
                By::Credential => Dimension::Credential,
                By::Device => Dimension::Device,
                _ => Dimension::Session,
            };
            if group.replace(dimension).is_some() {
                bail!("--by takes at most one of user, model, credential, device, session");
            }
        }
    }
    if by.is_empty() {
        bucket = Some(Bucket::Day);
    }
    Ok((bucket, group))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Start,
    /// A date or month names the whole of it: its end.
    Finish,
}

fn parse_when(text: &str, now: &Zoned, end: End) -> anyhow::Result<Timestamp> {
    let text = text.trim();
    let tz = now.time_zone().clone();
    let day = |z: Zoned| -> anyhow::Result<Timestamp> {
        Ok(match end {
            End::Start => z.start_of_day()?.timestamp(),
            End::Finish => z.tomorrow()?.start_of_day()?.timestamp(),
        })
    };
    let month = |z: Zoned| -> anyhow::Result<Timestamp> {
        let first = z.first_of_month()?.start_of_day()?;
        Ok(match end {
            End::Start => first.timestamp(),
            End::Finish => first.checked_add(1.month())?.timestamp(),
        })
    };
    match text {
        "now" => return Ok(now.timestamp()),
        "today" => return day(now.clone()),
        "yesterday" => return day(now.yesterday()?),
        "month" | "this-month" => return month(now.clone()),
        "last-month" => return month(now.first_of_month()?.yesterday()?),
        _ => {}
    }
    if let Some(age) = parse_age(text) {
        return Ok(now
            .timestamp()
            .checked_sub(jiff::SignedDuration::from_secs(age))?);
    }
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    if let Ok(d) = text.parse::<jiff::civil::Date>() {
        return day(d.to_zoned(tz)?);
    }
    if let Ok(d) = format!("{text}-01").parse::<jiff::civil::Date>() {
        return month(d.to_zoned(tz)?);
    }
    bail!(
        "not a time: use today, yesterday, month, last-month, 2026-11-01, 2026-11, 2026-11-01T09:00:00Z or an age such as 7d"
    )
}

/// `7d`, `12h`, `2w`, `30m` → seconds.
fn parse_age(text: &str) -> Option<i64> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = number.parse().ok()?;
    let unit_secs = match unit {
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    n.checked_mul(unit_secs)
}

fn bucket_label(bucket: Option<Bucket>, start: Option<Timestamp>, tz: &TimeZone) -> String {
    let (Some(bucket), Some(start)) = (bucket, start) else {
        return String::new();
    };
    let z = start.to_zoned(tz.clone());
    match bucket {
        Bucket::Hour => z.strftime("%Y-%m-%d %H:00").to_string(),
        Bucket::Day => z.strftime("%Y-%m-%d").to_string(),
        Bucket::Month => z.strftime("%Y-%m").to_string(),
    }
}

fn key_label(q: &Query, row: &query::Row) -> String {
    if row.other {
        return "(other)".into();
    }
    match row.key.as_deref() {
        Some("") => match q.group {
            Some(Dimension::User) => "(anonymous)".into(),
            _ => "(none)".into(),
        },
        Some(k) => k.to_owned(),
        None => String::new(),
    }
}

/// Dollars and cents; a cost too small to show as a cent says so instead of `$0.00`.
fn usd(micros: i64) -> String {
    if micros > 0 && micros < 5_000 {
        return "<$0.01".into();
    }
    let cents = (micros + 5_000).div_euclid(10_000);
    format!("${}.{:02}", thousands(cents / 100), cents % 100)
}

fn usd_exact(micros: i64) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

fn thousands(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn group_title(g: Dimension) -> &'static str {
    match g {
        Dimension::User => "User",
        Dimension::Model => "Model",
        Dimension::Credential => "Credential",
        Dimension::Device => "Device",
        Dimension::Session => "Session",
    }
}

fn to_table(q: &Query, report: &Report, since: Timestamp, until: Timestamp) -> String {
    let tz_name = q.tz.iana_name().unwrap_or("local time").to_owned();
    let fmt = |t: Timestamp| {
        t.to_zoned(q.tz.clone())
            .strftime("%Y-%m-%d %H:%M")
            .to_string()
    };
    let mut out = format!("Usage {} → {} ({tz_name})\n\n", fmt(since), fmt(until));
    if report.rows.is_empty() {
        out.push_str("No requests in this range.\n");
        return out;
    }
    let mut header: Vec<&str> = Vec::new();
    if let Some(b) = q.bucket {
        header.push(match b {
            Bucket::Hour => "Hour",
            Bucket::Day => "Date",
            Bucket::Month => "Month",
        });
    }
    if let Some(g) = q.group {
        header.push(group_title(g));
    }
    let label_columns = header.len();
    header.extend([
        "Requests",
        "Errors",
        "Input",
        "Output",
        "Cache write",
        "Cache read",
        "Total tokens",
        "Cost (USD)",
    ]);
    let numbers = |t: &Totals| {
        vec![
            thousands(t.requests),
            thousands(t.errors),
            thousands(t.input_tokens),
            thousands(t.output_tokens),
            thousands(t.cache_write_tokens()),
            thousands(t.cache_read_tokens),
            thousands(t.total_tokens()),
            format!(
                "{}{}",
                usd(t.cost_micros),
                if t.unpriced > 0 { "*" } else { "" }
            ),
        ]
    };
    let mut lines: Vec<Vec<String>> = Vec::new();
    let mut previous_bucket = None;
    for row in &report.rows {
        let mut line = Vec::new();
        if q.bucket.is_some() {
            // Name each bucket once when it has several groups.
            let label = bucket_label(q.bucket, row.bucket, &q.tz);
            line.push(
                if previous_bucket.as_ref() == Some(&label) && q.group.is_some() {
                    String::new()
                } else {
                    label.clone()
                },
            );
            previous_bucket = Some(label);
        }
        if q.group.is_some() {
            line.push(key_label(q, row));
        }
        line.extend(numbers(&row.totals));
        lines.push(line);
    }
    let mut total = vec!["Total".to_string()];
    total.resize(label_columns.max(1), String::new());
    if label_columns == 0 {
        // No label column: the total row is the only row that needs a name.
        header.insert(0, "");
        for line in &mut lines {
            line.insert(0, String::new());
        }
    }
    total.extend(numbers(&report.total));

    let columns = header.len();
    let mut widths = vec![0; columns];
    for line in std::iter::once(&header.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .chain(lines.iter())
        .chain(std::iter::once(&total))
    {
        for (i, cell) in line.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let label_columns = label_columns.max(1);
    let render = |cells: &[String], out: &mut String| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            let pad = widths[i] - cell.chars().count();
            if i < label_columns {
                text.push_str(cell);
                text.push_str(&" ".repeat(pad));
            } else {
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    render(
        &header.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        &mut out,
    );
    let rule: usize = widths.iter().sum::<usize>() + 2 * (columns - 1);
    out.push_str(&"─".repeat(rule));
    out.push('\n');
    for line in &lines {
        render(line, &mut out);
    }
    out.push_str(&"─".repeat(rule));
    out.push('\n');
    render(&total, &mut out);
    if report.total.unpriced > 0 {
        let _ = writeln!(
            out,
            "\n* {} request(s) used a model with no known price; their cost is not included. `--by model` shows which; add prices under `prices` in the config.",
            thousands(report.total.unpriced)
        );
    }
    out
}

fn totals_json(t: &Totals) -> serde_json::Value {
    json!({
        "requests": t.requests,
        "errors": t.errors,
        "incomplete": t.incomplete,
        "input_tokens": t.input_tokens,
        "output_tokens": t.output_tokens,
        "cache_read_tokens": t.cache_read_tokens,
        "cache_write_5m_tokens": t.cache_write_5m_tokens,
        "cache_write_1h_tokens": t.cache_write_1h_tokens,
        "total_tokens": t.total_tokens(),
        "web_search_requests": t.web_search_requests,
        "web_fetch_requests": t.web_fetch_requests,
        "cost_micros": t.cost_micros,
        "cost_usd": usd_exact(t.cost_micros).parse::<f64>().unwrap_or(0.0),
        "unpriced_requests": t.unpriced,
        "mean_duration_ms": if t.requests > 0 { t.duration_ms / t.requests } else { 0 },
        "mean_ttfb_ms": t.mean_ttfb_ms(),
    })
}

fn to_json(q: &Query, report: &Report, since: Timestamp, until: Timestamp) -> String {
    let rows: Vec<serde_json::Value> = report
        .rows
        .iter()
        .map(|row| {
            let mut v = totals_json(&row.totals);
            let obj = v.as_object_mut().expect("object");
            if q.bucket.is_some() {
                obj.insert(
                    "bucket".into(),
                    json!(bucket_label(q.bucket, row.bucket, &q.tz)),
                );
                obj.insert(
                    "bucket_start".into(),
                    json!(row.bucket.map(|b| b.to_zoned(q.tz.clone()).to_string())),
                );
            }
            if let Some(g) = q.group {
                obj.insert(g.column().into(), json!(row.key));
                obj.insert("other".into(), json!(row.other));
            }
            v
        })
        .collect();
    let value = json!({
        "since": since.to_zoned(q.tz.clone()).to_string(),
        "until": until.to_zoned(q.tz.clone()).to_string(),
        "time_zone": q.tz.iana_name(),
        "bucket": q.bucket.map(|b| format!("{b:?}").to_lowercase()),
        "group": q.group.map(Dimension::column),
        "rows": rows,
        "total": totals_json(&report.total),
    });
    serde_json::to_string_pretty(&value).expect("JSON") + "\n"
}

fn to_csv(q: &Query, report: &Report) -> String {
    let mut out = String::new();
    let mut header = Vec::new();
    if q.bucket.is_some() {
        header.push("bucket".to_string());
    }
    if let Some(g) = q.group {
        header.push(g.column().to_string());
    }
    header.extend(
        [
            "requests",
            "errors",
            "incomplete",
            "input_tokens",
            "output_tokens",
            "cache_write_5m_tokens",
            "cache_write_1h_tokens",
            "cache_read_tokens",
            "web_search_requests",
            "cost_usd",
            "unpriced_requests",
        ]
        .map(String::from),
    );
    out.push_str(&header.join(","));
    out.push('\n');
    for row in &report.rows {
        let t = &row.totals;
        let mut cells = Vec::new();
        if q.bucket.is_some() {
            cells.push(bucket_label(q.bucket, row.bucket, &q.tz));
        }
        if q.group.is_some() {
            cells.push(csv_cell(&key_label(q, row)));
        }
        cells.extend(
            [
                t.requests,
                t.errors,
                t.incomplete,
                t.input_tokens,
                t.output_tokens,
                t.cache_write_5m_tokens,
                t.cache_write_1h_tokens,
                t.cache_read_tokens,
                t.web_search_requests,
            ]
            .map(|n| n.to_string()),
        );
        cells.push(usd_exact(t.cost_micros));
        cells.push(t.unpriced.to_string());
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// Quotes a CSV cell when it needs it (RFC 4180).
fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Zoned {
        "2026-11-22T15:30:00+01:00[Europe/Paris]".parse().unwrap()
    }

    fn when(text: &str, end: End) -> String {
        parse_when(text, &now(), end)
            .unwrap()
            .to_zoned(now().time_zone().clone())
            .strftime("%Y-%m-%d %H:%M")
            .to_string()
    }

    #[test]
    fn times_people_type() {
        assert_eq!(when("today", End::Start), "2026-11-22 00:00");
        assert_eq!(when("today", End::Finish), "2026-11-23 00:00");
        assert_eq!(when("yesterday", End::Start), "2026-11-21 00:00");
        assert_eq!(when("month", End::Start), "2026-11-01 00:00");
        assert_eq!(when("last-month", End::Start), "2026-10-01 00:00");
        assert_eq!(when("last-month", End::Finish), "2026-11-01 00:00");
        assert_eq!(when("2026-11-05", End::Finish), "2026-11-06 00:00");
        assert_eq!(when("2026-02", End::Finish), "2026-03-01 00:00");
        assert_eq!(when("7d", End::Start), "2026-11-15 15:30");
        assert_eq!(when("12h", End::Start), "2026-11-22 03:30");
        assert_eq!(when("2026-11-01T09:00:00Z", End::Start), "2026-11-01 10:00");
        assert!(parse_when("last tuesday", &now(), End::Start).is_err());
        assert!(parse_when("7y", &now(), End::Start).is_err());
    }

    #[test]
    fn money_and_numbers() {
        assert_eq!(usd(0), "$0.00");
        assert_eq!(usd(4_999), "<$0.01");
        assert_eq!(usd(5_000), "$0.01");
        assert_eq!(usd(1_234_567_890), "$1,234.57");
        assert_eq!(usd_exact(46_350), "0.046350");
        assert_eq!(usd_exact(12_000_001), "12.000001");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn by_takes_one_bucket_and_one_group() {
        assert_eq!(split_by(&[]).unwrap(), (Some(Bucket::Day), None));
        assert_eq!(
            split_by(&[By::Month, By::Model]).unwrap(),
            (Some(Bucket::Month), Some(Dimension::Model))
        );
        assert_eq!(
            split_by(&[By::User]).unwrap(),
            (None, Some(Dimension::User))
        );
        assert!(split_by(&[By::Day, By::Hour]).is_err());
        assert!(split_by(&[By::User, By::Model]).is_err());
    }
}
