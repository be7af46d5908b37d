//! `carpool usage`: the ledger as a table, JSON, CSV or a sing-box ccm usage file.
//!
//! It opens the same SQLite file the server writes (WAL lets both work at once) and asks
//! [`crate::ledger::query`] the same questions the dashboard asks, with the range read by
//! [`crate::ledger::range`]. `--json` prints the [`Report`] as the management API will.
//!
//! Reports are zero-filled: every period of the range has a row. JSON and CSV keep them
//! all (a chart or a spreadsheet wants a continuous series). The table keeps them only
//! where they make the series readable: between the first and the last period with
//! requests, a single empty period as a row of zeros and a run of them as one row
//! (`2026-11-03 – 2026-11-09`); empty periods before the first use and after the last
//! are left out, since the title already gives the range.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use jiff::Zoned;

use crate::config::{self, Config};
use crate::ledger::ccm::CcmUsage;
use crate::ledger::csv::{key_label, to_csv};
use crate::ledger::query::{self, Bucket, Dimension, Filter, Period, Query, Report, Row, Totals};
use crate::ledger::range::{self, Range};
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
    /// Start of the range: now, today, yesterday, this-month, last-month, a date
    /// (2026-11-01), a month (2026-11), a local time (2026-11-01T09:00), an RFC 3339
    /// time, or an age (7d, 12h, 2w). Default: 30 days ago.
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
    let tz = range::time_zone(args.tz.as_deref()).context("--tz")?;
    let now = Zoned::now().with_time_zone(tz.clone());
    let Range { since, until } = Range::parse(args.since.as_deref(), args.until.as_deref(), &now)?;
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
        Format::Json => serde_json::to_string_pretty(&report).expect("JSON") + "\n",
        Format::Csv => to_csv(&report),
        _ => to_table(&report),
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

/// Dollars and cents; a cost too small to show as a cent says so instead of `$0.00`.
fn usd(micros: i64) -> String {
    if micros > 0 && micros < 5_000 {
        return "<$0.01".into();
    }
    let cents = (micros + 5_000).div_euclid(10_000);
    format!("${}.{:02}", thousands(cents / 100), cents % 100)
}

fn thousands(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
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

/// What the table shows of a report's rows: see the module documentation.
enum Line<'a> {
    Row(&'a Row),
    /// Several empty periods in a row.
    Gap {
        first: &'a Period,
        last: &'a Period,
    },
}

fn table_lines(rows: &[Row]) -> Vec<Line<'_>> {
    let (Some(first), Some(last)) = (
        rows.iter().position(|r| !r.is_empty()),
        rows.iter().rposition(|r| !r.is_empty()),
    ) else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    // The empty periods since the last row with requests.
    let mut run: Vec<&Row> = Vec::new();
    for row in &rows[first..=last] {
        if row.is_empty() {
            run.push(row);
            continue;
        }
        match run.as_slice() {
            [] => {}
            [one] => lines.push(Line::Row(one)),
            [a, .., b] => {
                if let (Some(first), Some(last)) = (&a.period, &b.period) {
                    lines.push(Line::Gap { first, last });
                }
            }
        }
        run.clear();
        lines.push(Line::Row(row));
    }
    lines
}

fn to_table(report: &Report) -> String {
    let tz_name = report.time_zone.as_deref().unwrap_or("local time");
    let fmt = |t: &Zoned| t.strftime("%Y-%m-%d %H:%M").to_string();
    let mut out = format!(
        "Usage {} → {} ({tz_name})\n\n",
        fmt(&report.since),
        fmt(&report.until)
    );
    if report.total.requests == 0 {
        out.push_str("No requests in this range.\n");
        return out;
    }
    let mut header: Vec<&str> = Vec::new();
    if let Some(b) = report.bucket {
        header.push(match b {
            Bucket::Hour => "Hour",
            Bucket::Day => "Date",
            Bucket::Month => "Month",
        });
    }
    if let Some(g) = report.group {
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
    let zero = Totals::default();
    for line in table_lines(&report.rows) {
        let (label, key, totals) = match line {
            Line::Row(row) => (
                row.period.as_ref().map(Period::label),
                key_label(row),
                &row.totals,
            ),
            Line::Gap { first, last } => (
                Some(format!("{} – {}", first.label(), last.label())),
                String::new(),
                &zero,
            ),
        };
        let mut cells = Vec::new();
        if let Some(label) = label {
            // Name each period once when it has several groups.
            cells.push(
                if previous_bucket.as_ref() == Some(&label) && report.group.is_some() {
                    String::new()
                } else {
                    label.clone()
                },
            );
            previous_bucket = Some(label);
        }
        if report.group.is_some() {
            cells.push(key);
        }
        cells.extend(numbers(totals));
        lines.push(cells);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A report by day in UTC over November 1st to 9th with requests on the given days.
    fn days_report(used: &[i8]) -> Report {
        let day = |d: i8| -> Zoned {
            jiff::civil::date(2026, 11, d)
                .to_zoned(jiff::tz::TimeZone::UTC)
                .unwrap()
        };
        let rows: Vec<Row> = (1..=9)
            .map(|d| Row {
                period: Some(Period {
                    bucket: Bucket::Day,
                    start: day(d),
                    end: day(d + 1),
                }),
                group: None,
                totals: Totals {
                    requests: i64::from(used.contains(&d)),
                    ..Totals::default()
                },
            })
            .collect();
        let mut total = Totals::default();
        rows.iter().for_each(|r| total.add(&r.totals));
        Report {
            since: day(1),
            until: day(10),
            time_zone: Some("UTC".into()),
            bucket: Some(Bucket::Day),
            group: None,
            top: None,
            rows,
            total,
            source: "rollup",
        }
    }

    /// The first cell of each table line between the rules.
    fn labels(table: &str) -> Vec<String> {
        table
            .lines()
            .skip_while(|l| !l.starts_with('─'))
            .skip(1)
            .take_while(|l| !l.starts_with('─'))
            .map(|l| l.split("  ").next().unwrap().trim().to_owned())
            .collect()
    }

    #[test]
    fn the_table_shows_empty_days_between_uses_and_runs_of_them_as_one_line() {
        let report = days_report(&[2, 4, 8]);
        let table = to_table(&report);
        assert_eq!(
            labels(&table),
            [
                "2026-11-02",
                "2026-11-03",
                "2026-11-04",
                "2026-11-05 – 2026-11-07",
                "2026-11-08"
            ],
            "{table}"
        );
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("2026-11-05 – 2026-11-07") && l.contains("$0.00")),
            "{table}"
        );
        // CSV and JSON keep every day.
        assert_eq!(to_csv(&report).lines().count(), 1 + 9);
        // Nothing at all: said in words.
        let table = to_table(&days_report(&[]));
        assert!(table.ends_with("No requests in this range.\n"), "{table}");
    }

    #[test]
    fn money_and_numbers() {
        assert_eq!(usd(0), "$0.00");
        assert_eq!(usd(4_999), "<$0.01");
        assert_eq!(usd(5_000), "$0.01");
        assert_eq!(usd(1_234_567_890), "$1,234.57");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
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
