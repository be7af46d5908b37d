//! A [`Report`] as CSV: what `carpool usage --csv` prints and the management API's
//! `GET /usage?format=csv` downloads, one writer for both. Every row is kept, zero-filled
//! periods included (a spreadsheet wants a continuous series); costs are exact dollars.

use super::query::{Dimension, Report, Row};

/// The MIME type of [`to_csv`]'s text.
pub const CONTENT_TYPE: &str = "text/csv; charset=utf-8";

/// A file name for the report's download: `carpool-usage-2026-11-01-2026-11-30.csv`
/// (the range's first and last day, in its time zone).
pub fn file_name(report: &Report) -> String {
    let first = report.since.date();
    // `until` is exclusive: a range ending at midnight ends the day before.
    let last =
        if report.until.time() == jiff::civil::Time::midnight() && report.until > report.since {
            report
                .until
                .date()
                .yesterday()
                .unwrap_or(report.until.date())
        } else {
            report.until.date()
        };
    if first == last {
        format!("carpool-usage-{first}.csv")
    } else {
        format!("carpool-usage-{first}-{last}.csv")
    }
}

/// The group column's text: `(other)`, `(anonymous)` or `(none)` for requests without
/// one, blank in a period without requests.
pub fn key_label(row: &Row) -> String {
    let Some(group) = &row.group else {
        return String::new();
    };
    if group.other {
        return "(other)".into();
    }
    match group.key.as_deref() {
        Some("") => match group.dimension {
            Dimension::User => "(anonymous)".into(),
            _ => "(none)".into(),
        },
        Some(k) => k.to_owned(),
        None => String::new(),
    }
}

/// Exact dollars for CSV.
fn usd_exact(micros: i64) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// Every row, zero-filled periods included.
pub fn to_csv(report: &Report) -> String {
    let mut out = String::new();
    let mut header = Vec::new();
    if report.bucket.is_some() {
        header.push("bucket".to_string());
    }
    if let Some(g) = report.group {
        header.push(g.column().to_string());
    }
    header.extend(
        [
            "requests",
            "errors",
            "incomplete",
            "input_tokens",
            "output_tokens",
            "reasoning_tokens",
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
        if let Some(period) = &row.period {
            cells.push(csv_cell(&period.label()));
        }
        if row.group.is_some() {
            cells.push(csv_cell(&key_label(row)));
        }
        cells.extend(
            [
                t.requests,
                t.errors,
                t.incomplete,
                t.input_tokens,
                t.output_tokens,
                t.reasoning_tokens,
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
    use crate::ledger::query::{Bucket, GroupKey, Period, Totals};
    use jiff::Zoned;

    fn at(text: &str) -> Zoned {
        text.parse().unwrap()
    }

    fn report(since: &str, until: &str) -> Report {
        Report {
            since: at(since),
            until: at(until),
            time_zone: Some("Europe/Paris".into()),
            bucket: None,
            group: None,
            top: None,
            rows: Vec::new(),
            total: Totals::default(),
            source: "rollup",
        }
    }

    #[test]
    fn money_and_quoting() {
        assert_eq!(usd_exact(46_350), "0.046350");
        assert_eq!(usd_exact(12_000_001), "12.000001");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn rows_with_periods_and_groups_keep_every_column() {
        let mut r = report(
            "2026-11-01T00:00:00+01:00[Europe/Paris]",
            "2026-11-02T00:00:00+01:00[Europe/Paris]",
        );
        r.bucket = Some(Bucket::Day);
        r.group = Some(Dimension::User);
        let period = Period {
            bucket: Bucket::Day,
            start: r.since.clone(),
            end: r.until.clone(),
        };
        let row = |key: Option<&str>, other: bool, cost_micros: i64| Row {
            period: Some(period.clone()),
            group: Some(GroupKey {
                dimension: Dimension::User,
                key: key.map(str::to_owned),
                other,
            }),
            totals: Totals {
                requests: 1,
                cost_micros,
                ..Totals::default()
            },
        };
        r.rows = vec![
            row(Some("a,b"), false, 1_500_000),
            row(Some(""), false, 1),
            row(None, true, 2),
        ];
        assert_eq!(
            to_csv(&r),
            "bucket,user,requests,errors,incomplete,input_tokens,output_tokens,reasoning_tokens,cache_write_5m_tokens,cache_write_1h_tokens,cache_read_tokens,web_search_requests,cost_usd,unpriced_requests\n\
             2026-11-01,\"a,b\",1,0,0,0,0,0,0,0,0,0,1.500000,0\n\
             2026-11-01,(anonymous),1,0,0,0,0,0,0,0,0,0,0.000001,0\n\
             2026-11-01,(other),1,0,0,0,0,0,0,0,0,0,0.000002,0\n"
        );
    }

    #[test]
    fn file_names_name_the_days_of_the_range() {
        let name = |since, until| file_name(&report(since, until));
        assert_eq!(
            name(
                "2026-11-01T00:00:00+01:00[Europe/Paris]",
                "2026-12-01T00:00:00+01:00[Europe/Paris]"
            ),
            "carpool-usage-2026-11-01-2026-11-30.csv"
        );
        assert_eq!(
            name(
                "2026-11-05T00:00:00+01:00[Europe/Paris]",
                "2026-11-05T15:30:00+01:00[Europe/Paris]"
            ),
            "carpool-usage-2026-11-05.csv"
        );
    }
}
