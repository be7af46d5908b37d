//! `GET /usage`: totals and zero-filled series over any range, bucketed in any time
//! zone, grouped, with top-N; as JSON ([`Report`], what `carpool usage --json` prints)
//! or as the CSV `carpool usage --csv` prints.
//!
//! The range, the zone and the report are read by the same code as the CLI's
//! ([`crate::ledger::range`], [`crate::ledger::query`], [`crate::ledger::csv`]). The
//! database is read through a read-only connection of its own, opened per report on a
//! blocking thread: SQLite calls block, and the ledger's writer keeps its connection to
//! itself (WAL lets both work at once). Opening costs far less than any report.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use jiff::Zoned;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{Api, ApiError};
use crate::ledger::query::{self, Bucket, Dimension, Filter, Report, ReportError};
use crate::ledger::range::{self, Range};
use crate::ledger::{csv, store};

/// The questions `GET /usage` takes; every one is optional.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageParams {
    /// Start of the range: `now`, `today`, `yesterday`, `this-month`, `last-month`, a
    /// date (`2026-11-01`), a month (`2026-11`), a local time (`2026-11-01T09:00`), an
    /// RFC 3339 time (`2026-11-01T09:00:00Z`) or an age (`30m`, `12h`, `7d`, `2w`), read
    /// in `tz`. Default: 30 days ago, from local midnight.
    pub since: Option<String>,
    /// End of the range (exclusive), in the same forms; a date or a month counts whole
    /// (`until=2026-11-30` includes November 30th). Default: now.
    pub until: Option<String>,
    /// A named range instead of `since`/`until`: `today`, `yesterday`, `this_month`,
    /// `last_month` (the whole day or month, hours still to come included) or an age up
    /// to now (`24h`, `7d`, `30d`).
    pub range: Option<String>,
    /// How long each period of the series is. Default: `day`; `none` gives one row per
    /// group over the whole range.
    #[param(inline)]
    pub bucket: Option<BucketParam>,
    /// Rows per group as well: `user`, `model`, `credential` (the account's tag;
    /// `account` is accepted too), `device` or `session`. Default: not grouped.
    #[param(inline)]
    pub group: Option<GroupParam>,
    /// Keep the N groups that cost the most over the range; the rest are summed per
    /// period into rows marked `other`. Needs `group`.
    #[param(minimum = 0)]
    pub top: Option<usize>,
    /// The time zone of the range and the periods: an IANA name such as
    /// `Europe/Paris`, or `UTC`. Default: the server's.
    pub tz: Option<String>,
    /// Only this user's requests.
    pub user: Option<String>,
    /// Only this model's requests.
    pub model: Option<String>,
    /// Only requests served by this account (its tag); `account` is accepted too.
    #[serde(alias = "account")]
    pub credential: Option<String>,
    /// Only requests from this Claude Code device id.
    pub device: Option<String>,
    /// Only requests from this Claude Code session id.
    pub session: Option<String>,
    /// `json` (the default) or `csv` (a download with the columns `carpool usage --csv`
    /// prints). `Accept: text/csv` asks for CSV too.
    #[param(inline)]
    pub format: Option<FormatParam>,
}

/// `bucket`: a period length, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BucketParam {
    Hour,
    Day,
    Month,
    None,
}

/// `group`: what rows are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupParam {
    User,
    Model,
    #[serde(alias = "account")]
    Credential,
    Device,
    Session,
}

/// `format`: the answer's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FormatParam {
    Json,
    Csv,
}

impl From<GroupParam> for Dimension {
    fn from(g: GroupParam) -> Dimension {
        match g {
            GroupParam::User => Dimension::User,
            GroupParam::Model => Dimension::Model,
            GroupParam::Credential => Dimension::Credential,
            GroupParam::Device => Dimension::Device,
            GroupParam::Session => Dimension::Session,
        }
    }
}

/// Usage over a range: totals and a zero-filled series, bucketed in a time zone,
/// grouped, with top-N; JSON, or CSV with `format=csv`.
#[utoipa::path(get, path = "/usage", tag = "usage", operation_id = "getUsage",
    params(UsageParams),
    responses(
        (status = 200, description = "The report: JSON (`UsageReport`), or with `format=csv` (or `Accept: text/csv`) a CSV download with the columns `carpool usage --csv` prints",
            content((Report = "application/json"), (String = "text/csv"))),
        (status = 401, body = super::ErrorBody),
        (status = 422, description = "A parameter is wrong; the message names it", body = super::ErrorBody),
    ))]
pub async fn get_usage(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    params: Result<Query<UsageParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params?;
    let csv = match params.format {
        Some(FormatParam::Csv) => true,
        Some(FormatParam::Json) => false,
        None => wants_csv(&headers),
    };
    let tz = range::time_zone(params.tz.as_deref())
        .map_err(|e| ApiError::invalid(format!("tz: {e}")))?;
    let q = question(&params, &Zoned::now().with_time_zone(tz))?;
    let database = api.engine.ledger.path().to_owned();
    let report = tokio::task::spawn_blocking(move || {
        let conn = store::open_read_only(&database)
            .map_err(|e| ApiError::unavailable(format!("cannot read usage: {e}")))?;
        query::report(&conn, &q).map_err(|e| match e {
            ReportError::TooManyPeriods { .. } => ApiError::invalid(format!("bucket: {e}")),
            ReportError::Sql(_) => ApiError::internal(format!("cannot read usage: {e}")),
        })
    })
    .await
    .map_err(|e| ApiError::internal(format!("the usage report failed: {e}")))??;
    if !csv {
        return Ok(Json(report).into_response());
    }
    let disposition = format!("attachment; filename=\"{}\"", csv::file_name(&report));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(csv::CONTENT_TYPE),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition)
                    .map_err(|_| ApiError::internal("bad file name"))?,
            ),
        ],
        csv::to_csv(&report),
    )
        .into_response())
}

/// True when `Accept` prefers CSV to JSON (a plain `text/csv`, or listed before JSON).
fn wants_csv(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    for kind in accept.split(',') {
        let kind = kind.split(';').next().unwrap_or_default().trim();
        if kind.eq_ignore_ascii_case("text/csv") {
            return true;
        }
        if kind.eq_ignore_ascii_case("application/json") {
            return false;
        }
    }
    false
}

/// The report's question from the parameters, read at `now` (in the requested zone).
fn question(p: &UsageParams, now: &Zoned) -> Result<query::Query, ApiError> {
    let invalid = |e: range::RangeError| ApiError::invalid(e.to_string());
    let Range { since, until } = match &p.range {
        Some(_) if p.since.is_some() || p.until.is_some() => {
            return Err(ApiError::invalid(
                "range: give either `range` or `since`/`until`, not both",
            ));
        }
        Some(name) => {
            Range::named(name, now).map_err(|e| ApiError::invalid(format!("range: {e}")))?
        }
        None => Range::parse(p.since.as_deref(), p.until.as_deref(), now).map_err(invalid)?,
    };
    if p.top.is_some() && p.group.is_none() {
        return Err(ApiError::invalid(
            "top: keeps the costliest groups, so it needs `group` (e.g. group=user)",
        ));
    }
    Ok(query::Query {
        since_ms: since.as_millisecond(),
        until_ms: until.as_millisecond(),
        tz: now.time_zone().clone(),
        bucket: match p.bucket.unwrap_or(BucketParam::Day) {
            BucketParam::Hour => Some(Bucket::Hour),
            BucketParam::Day => Some(Bucket::Day),
            BucketParam::Month => Some(Bucket::Month),
            BucketParam::None => None,
        },
        group: p.group.map(Dimension::from),
        top: p.top,
        filter: Filter {
            user: p.user.clone(),
            model: p.model.clone(),
            credential: p.credential.clone(),
            device: p.device.clone(),
            session: p.session.clone(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Zoned {
        "2026-11-22T15:30:00+01:00[Europe/Paris]".parse().unwrap()
    }

    fn message(p: UsageParams) -> String {
        question(&p, &now()).unwrap_err().message
    }

    #[test]
    fn the_question_follows_the_parameters_and_defaults() {
        let q = question(&UsageParams::default(), &now()).unwrap();
        assert_eq!(q.bucket, Some(Bucket::Day));
        assert_eq!(q.group, None);
        assert_eq!(q.until_ms, now().timestamp().as_millisecond());
        let q = question(
            &UsageParams {
                range: Some("today".into()),
                bucket: Some(BucketParam::Hour),
                group: Some(GroupParam::Credential),
                top: Some(3),
                ..UsageParams::default()
            },
            &now(),
        )
        .unwrap();
        assert_eq!(q.until_ms - q.since_ms, 24 * 3_600_000);
        assert_eq!(
            (q.bucket, q.group, q.top),
            (Some(Bucket::Hour), Some(Dimension::Credential), Some(3))
        );
        let q = question(
            &UsageParams {
                bucket: Some(BucketParam::None),
                ..UsageParams::default()
            },
            &now(),
        )
        .unwrap();
        assert_eq!(q.bucket, None);
    }

    #[test]
    fn bad_parameters_are_named() {
        assert!(
            message(UsageParams {
                since: Some("soon".into()),
                ..UsageParams::default()
            })
            .starts_with("since `soon` is not a time")
        );
        assert!(
            message(UsageParams {
                range: Some("7d".into()),
                since: Some("today".into()),
                ..UsageParams::default()
            })
            .starts_with("range: ")
        );
        assert!(
            message(UsageParams {
                range: Some("forever".into()),
                ..UsageParams::default()
            })
            .starts_with("range: `forever` is not a named range")
        );
        assert!(
            message(UsageParams {
                top: Some(2),
                ..UsageParams::default()
            })
            .starts_with("top: ")
        );
    }

    #[test]
    fn accept_may_ask_for_csv() {
        let accept = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
            wants_csv(&headers)
        };
        assert!(accept("text/csv"));
        assert!(accept("text/csv;q=0.9, application/json;q=0.5"));
        assert!(!accept("application/json, text/csv"));
        assert!(!accept("*/*"));
        assert!(!wants_csv(&HeaderMap::new()));
    }
}
