//! The SQLite file: schema, migrations, and writing a batch of records.
//!
//! Two tables hold the same requests at two grains:
//!
//! - `requests`: one row per request, every field of [`UsageRecord`]. The source of
//!   truth, and what per-session reports and exports read.
//! - `usage_hourly`: sums per (UTC hour, user, model, credential, device), updated in the
//!   same transaction as the rows it sums. Reports over days and months read this, so
//!   they cost what the number of hours × active combinations costs, not the number of
//!   requests: a 30-day report is a few tens of thousands of rollup rows whether the
//!   history holds ten thousand requests or ten million.
//! - `usage_hourly_by`: the same sums per (hour, one dimension's value), for each of
//!   user, model, credential and device, plus one all-requests row per hour. The reports
//!   people ask most (by day, by user, by model) read only the rows of that one
//!   dimension: a 30-day by-user series reads 720 × users rows. Hours line up with local days
//!   and months in every time zone whose offset is a whole number of hours;
//!   [`super::query`] reads `requests` for the rest (and for sessions, which would make
//!   the rollup as large as the table itself).
//!
//! The database runs in WAL mode: the server's writer and any number of readers
//! (`carpool usage`, the dashboard) work at once, and a process killed mid-write leaves
//! the last committed transaction intact. `synchronous = NORMAL` skips the fsync on each
//! commit (WAL keeps that safe against a crashed process; only an OS crash or power loss
//! may lose the last commits).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, ToSql, TransactionBehavior, params};

use super::query::Totals;
use super::record::UsageRecord;

/// Schema versions, in order; `PRAGMA user_version` is the number applied. Never edit a
/// released entry: add a new one. The SQL is spelled out in full (the two rollups share
/// their counter columns) so each version reads as the schema it creates.
const MIGRATIONS: &[&str] = &[
    // 1: every request, and the two hourly rollups of model calls.
    "CREATE TABLE requests (
        id                    INTEGER PRIMARY KEY,
        at_ms                 INTEGER NOT NULL,
        user                  TEXT    NOT NULL,
        credential            TEXT    NOT NULL,
        endpoint              TEXT    NOT NULL,
        model                 TEXT    NOT NULL,
        device                TEXT    NOT NULL,
        session               TEXT    NOT NULL,
        status                INTEGER NOT NULL,
        outcome               TEXT    NOT NULL,
        input_tokens          INTEGER NOT NULL,
        output_tokens         INTEGER NOT NULL,
        cache_read_tokens     INTEGER NOT NULL,
        cache_write_5m_tokens INTEGER NOT NULL,
        cache_write_1h_tokens INTEGER NOT NULL,
        web_search_requests   INTEGER NOT NULL,
        web_fetch_requests    INTEGER NOT NULL,
        speed                 TEXT    NOT NULL,
        context_window        INTEGER NOT NULL,
        cost_micros           INTEGER,            -- NULL: no known price for the model
        duration_ms           INTEGER NOT NULL,
        ttfb_ms               INTEGER,            -- NULL: no byte was sent
        messages              INTEGER NOT NULL,
        week_reset            INTEGER             -- unified 7d reset, Unix seconds
    );
    CREATE INDEX requests_at ON requests (at_ms);
    CREATE INDEX requests_session ON requests (session, at_ms);

    CREATE TABLE usage_hourly (
        hour                  INTEGER NOT NULL,   -- Unix seconds of the UTC hour's start
        user                  TEXT    NOT NULL,
        model                 TEXT    NOT NULL,
        credential            TEXT    NOT NULL,
        device                TEXT    NOT NULL,
        requests              INTEGER NOT NULL,
        errors                INTEGER NOT NULL,   -- status >= 400
        incomplete            INTEGER NOT NULL,   -- status < 400 but the response was cut
        input_tokens          INTEGER NOT NULL,
        output_tokens         INTEGER NOT NULL,
        cache_read_tokens     INTEGER NOT NULL,
        cache_write_5m_tokens INTEGER NOT NULL,
        cache_write_1h_tokens INTEGER NOT NULL,
        web_search_requests   INTEGER NOT NULL,
        web_fetch_requests    INTEGER NOT NULL,
        cost_micros           INTEGER NOT NULL,   -- sum of the known costs
        unpriced              INTEGER NOT NULL,   -- requests with tokens but no known price
        duration_ms           INTEGER NOT NULL,   -- sum
        ttfb_ms               INTEGER NOT NULL,   -- sum over the requests that had one
        ttfb_count            INTEGER NOT NULL,
        PRIMARY KEY (hour, user, model, credential, device)
    ) WITHOUT ROWID;

    CREATE TABLE usage_hourly_by (
        dimension             TEXT    NOT NULL,   -- '' (all requests), user, model, credential, device
        hour                  INTEGER NOT NULL,
        key                   TEXT    NOT NULL,   -- the dimension's value ('' for all requests)
        requests              INTEGER NOT NULL,
        errors                INTEGER NOT NULL,
        incomplete            INTEGER NOT NULL,
        input_tokens          INTEGER NOT NULL,
        output_tokens         INTEGER NOT NULL,
        cache_read_tokens     INTEGER NOT NULL,
        cache_write_5m_tokens INTEGER NOT NULL,
        cache_write_1h_tokens INTEGER NOT NULL,
        web_search_requests   INTEGER NOT NULL,
        web_fetch_requests    INTEGER NOT NULL,
        cost_micros           INTEGER NOT NULL,
        unpriced              INTEGER NOT NULL,
        duration_ms           INTEGER NOT NULL,
        ttfb_ms               INTEGER NOT NULL,
        ttfb_count            INTEGER NOT NULL,
        PRIMARY KEY (dimension, hour, key)
    ) WITHOUT ROWID;",
    // 2: OpenAI's reasoning tokens (part of the output, counted for reports).
    "ALTER TABLE requests ADD COLUMN reasoning_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage_hourly ADD COLUMN reasoning_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage_hourly_by ADD COLUMN reasoning_tokens INTEGER NOT NULL DEFAULT 0;",
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the usage database {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "the usage database {} was written by a newer Carpool (schema {found}; this one knows up to {known}). Upgrade Carpool, or point `database` in the config at another file.",
        path.display()
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: usize,
    },
    #[error("no usage database at {} yet: it is created when `carpool serve` starts", path.display())]
    Missing { path: PathBuf },
    #[error("usage database {}: {source}", path.display())]
    Sql {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

/// Opens (creating if needed) the database for writing and brings the schema up to date.
///
/// A new database is created readable by its owner only (0600, in a 0700 directory if
/// Carpool makes it): it names users, devices and sessions. SQLite gives its `-wal` and
/// `-shm` files the database file's permissions.
pub fn open(path: &Path) -> Result<Connection, StoreError> {
    let io_error = |e: std::io::Error| StoreError::Open {
        path: path.to_owned(),
        source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::fsutil::create_private_dir(dir).map_err(io_error)?;
    }
    crate::fsutil::create_private_file(path).map_err(io_error)?;
    let conn = Connection::open(path).map_err(|source| StoreError::Open {
        path: path.to_owned(),
        source,
    })?;
    prepare(conn, path)
}

/// Opens an existing database (for reports); never creates one.
pub fn open_existing(path: &Path) -> Result<Connection, StoreError> {
    if !path.exists() {
        return Err(StoreError::Missing {
            path: path.to_owned(),
        });
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|source| StoreError::Open {
        path: path.to_owned(),
        source,
    })?;
    prepare(conn, path)
}

/// Opens the database a running Carpool writes, for reading only: the management API's
/// reports. The writer made and migrated it; this connection can change nothing (a
/// bug in a report cannot damage the ledger) and, with WAL, never blocks the writer.
pub fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    if !path.exists() {
        return Err(StoreError::Missing {
            path: path.to_owned(),
        });
    }
    let sql = |source| StoreError::Sql {
        path: path.to_owned(),
        source,
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|source| StoreError::Open {
        path: path.to_owned(),
        source,
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(sql)?;
    let found = schema_version(&conn).map_err(sql)?;
    if usize::try_from(found).map_or(true, |v| v > SCHEMA_VERSION) {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    Ok(conn)
}

fn prepare(mut conn: Connection, path: &Path) -> Result<Connection, StoreError> {
    let sql = |source| StoreError::Sql {
        path: path.to_owned(),
        source,
    };
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(sql)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sql)?;
    migrate(&mut conn, path)?;
    Ok(conn)
}

/// Applies the migrations this database lacks, each in its own transaction. `BEGIN
/// IMMEDIATE` takes the write lock before reading the version, so two processes starting
/// at once do not both migrate.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let sql = |source| StoreError::Sql {
        path: path.to_owned(),
        source,
    };
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let version: i64 = tx
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(sql)?;
        let applied = usize::try_from(version).unwrap_or(usize::MAX);
        if applied > MIGRATIONS.len() {
            return Err(StoreError::TooNew {
                path: path.to_owned(),
                found: version,
                known: MIGRATIONS.len(),
            });
        }
        let Some(step) = MIGRATIONS.get(applied) else {
            return Ok(());
        };
        tx.execute_batch(step).map_err(sql)?;
        tx.pragma_update(None, "user_version", applied as i64 + 1)
            .map_err(sql)?;
        tx.commit().map_err(sql)?;
        tracing::info!(path = %path.display(), version = applied + 1, "usage database migrated");
    }
}

/// The schema version of an open database.
pub fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

const INSERT_REQUEST: &str = "INSERT INTO requests (
    at_ms, user, credential, endpoint, model, device, session, status, outcome,
    input_tokens, output_tokens, cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens,
    web_search_requests, web_fetch_requests, speed, context_window, cost_micros,
    duration_ms, ttfb_ms, messages, week_reset, reasoning_tokens
) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)";

/// The counters of both rollups, added to on conflict.
macro_rules! add_sums {
    () => {
        " DO UPDATE SET
    requests = requests + excluded.requests,
    errors = errors + excluded.errors,
    incomplete = incomplete + excluded.incomplete,
    input_tokens = input_tokens + excluded.input_tokens,
    output_tokens = output_tokens + excluded.output_tokens,
    cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens,
    cache_write_5m_tokens = cache_write_5m_tokens + excluded.cache_write_5m_tokens,
    cache_write_1h_tokens = cache_write_1h_tokens + excluded.cache_write_1h_tokens,
    web_search_requests = web_search_requests + excluded.web_search_requests,
    web_fetch_requests = web_fetch_requests + excluded.web_fetch_requests,
    cost_micros = cost_micros + excluded.cost_micros,
    unpriced = unpriced + excluded.unpriced,
    duration_ms = duration_ms + excluded.duration_ms,
    ttfb_ms = ttfb_ms + excluded.ttfb_ms,
    ttfb_count = ttfb_count + excluded.ttfb_count,
    reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens"
    };
}

const UPSERT_HOURLY: &str = concat!(
    "INSERT INTO usage_hourly (
    hour, user, model, credential, device, requests, errors, incomplete,
    input_tokens, output_tokens, cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens,
    web_search_requests, web_fetch_requests, cost_micros, unpriced, duration_ms, ttfb_ms, ttfb_count,
    reasoning_tokens
) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)
",
    "ON CONFLICT (hour, user, model, credential, device)",
    add_sums!()
);

const UPSERT_HOURLY_BY: &str = concat!(
    "INSERT INTO usage_hourly_by (
    dimension, hour, key, requests, errors, incomplete,
    input_tokens, output_tokens, cache_read_tokens, cache_write_5m_tokens, cache_write_1h_tokens,
    web_search_requests, web_fetch_requests, cost_micros, unpriced, duration_ms, ttfb_ms, ttfb_count,
    reasoning_tokens
) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)
ON CONFLICT (dimension, hour, key)",
    add_sums!()
);

/// Reports count model calls only: `count_tokens` and model-list requests are kept in
/// `requests` (an audit of everything that passed authentication) but cost nothing and
/// would only inflate the request counts people compare with their client's own. Model
/// calls are Anthropic's `messages` and OpenAI's `responses`, `responses_compact` and
/// `chat_completions` (the relay's endpoint names, `Endpoint::name`).
pub const REPORTED_ENDPOINTS: &[&str] = &[
    "messages",
    "responses",
    "responses_compact",
    "chat_completions",
];

/// Whether requests to `endpoint` count in reports (see [`REPORTED_ENDPOINTS`]).
pub fn is_reported(endpoint: &str) -> bool {
    REPORTED_ENDPOINTS.contains(&endpoint)
}

/// Writes `records` and their rollup in one transaction: all of them or none.
pub fn insert_batch(conn: &mut Connection, records: &[UsageRecord]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut rollup: BTreeMap<(i64, &str, &str, &str, &str), Totals> = BTreeMap::new();
    {
        let mut insert = tx.prepare_cached(INSERT_REQUEST)?;
        for r in records {
            let t = &r.tokens;
            insert.execute(params![
                r.at_ms,
                r.user,
                r.credential,
                r.endpoint,
                r.model,
                r.device,
                r.session,
                r.status,
                r.outcome,
                t.input as i64,
                t.output as i64,
                t.cache_read as i64,
                t.cache_write_5m as i64,
                t.cache_write_1h as i64,
                t.web_search_requests as i64,
                t.web_fetch_requests as i64,
                r.speed,
                r.context_window,
                r.cost_micros,
                r.duration_ms,
                r.ttfb_ms,
                r.messages,
                r.week_reset,
                t.reasoning as i64,
            ])?;
            if !is_reported(&r.endpoint) {
                continue;
            }
            let hour = r.at_ms.div_euclid(3_600_000) * 3600;
            rollup
                .entry((hour, &r.user, &r.model, &r.credential, &r.device))
                .or_default()
                .add_record(r);
        }
    }
    let mut by: BTreeMap<(&str, i64, &str), Totals> = BTreeMap::new();
    for (&(hour, user, model, credential, device), s) in &rollup {
        for (dimension, key) in [
            ("", ""),
            ("user", user),
            ("model", model),
            ("credential", credential),
            ("device", device),
        ] {
            by.entry((dimension, hour, key)).or_default().add(s);
        }
    }
    {
        let mut upsert = tx.prepare_cached(UPSERT_HOURLY_BY)?;
        for ((dimension, hour, key), sums) in by {
            execute_with_sums(&mut upsert, &[&dimension, &hour, &key], &sums)?;
        }
        let mut upsert = tx.prepare_cached(UPSERT_HOURLY)?;
        for ((hour, user, model, credential, device), sums) in rollup {
            let key: [&dyn ToSql; 5] = [&hour, &user, &model, &credential, &device];
            execute_with_sums(&mut upsert, &key, &sums)?;
        }
    }
    tx.commit()
}

/// Runs a rollup upsert: the key columns, then the counters in [`Totals::columns`] order.
fn execute_with_sums(
    statement: &mut rusqlite::CachedStatement<'_>,
    key: &[&dyn ToSql],
    sums: &Totals,
) -> rusqlite::Result<()> {
    let counters = sums.columns();
    let mut values: Vec<&dyn ToSql> = key.to_vec();
    values.extend(counters.iter().map(|c| c as &dyn ToSql));
    statement.execute(values.as_slice()).map(drop)
}

/// Reads every request row (oldest first) in `[since_ms, until_ms)`, for exports.
pub fn for_each_request(
    conn: &Connection,
    since_ms: i64,
    until_ms: i64,
    mut each: impl FnMut(UsageRecord),
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare(
        "SELECT at_ms, user, credential, endpoint, model, device, session, status, outcome,
                input_tokens, output_tokens, cache_read_tokens, cache_write_5m_tokens,
                cache_write_1h_tokens, web_search_requests, web_fetch_requests, speed,
                context_window, cost_micros, duration_ms, ttfb_ms, messages, week_reset,
                reasoning_tokens
         FROM requests WHERE at_ms >= ?1 AND at_ms < ?2 ORDER BY at_ms, id",
    )?;
    let mut rows = stmt.query(params![since_ms, until_ms])?;
    while let Some(row) = rows.next()? {
        let n = |i: usize| -> rusqlite::Result<u64> { Ok(row.get::<_, i64>(i)?.max(0) as u64) };
        each(UsageRecord {
            at_ms: row.get(0)?,
            user: row.get(1)?,
            credential: row.get(2)?,
            endpoint: row.get(3)?,
            model: row.get(4)?,
            device: row.get(5)?,
            session: row.get(6)?,
            status: row.get(7)?,
            outcome: row.get(8)?,
            tokens: super::Tokens {
                input: n(9)?,
                output: n(10)?,
                cache_read: n(11)?,
                cache_write_5m: n(12)?,
                cache_write_1h: n(13)?,
                web_search_requests: n(14)?,
                web_fetch_requests: n(15)?,
                reasoning: n(23)?,
            },
            speed: row.get(16)?,
            context_window: row.get(17)?,
            cost_micros: row.get(18)?,
            duration_ms: row.get(19)?,
            ttfb_ms: row.get(20)?,
            messages: row.get(21)?,
            week_reset: row.get(22)?,
            service_tier: String::new(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Tokens;

    #[cfg(unix)]
    #[test]
    fn a_new_database_and_its_wal_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("made-here");
        let path = data.join("usage.db");
        let conn = open(&path).unwrap();
        conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&data.join("usage.db-wal")), 0o600);
        assert_eq!(mode(&data), 0o700);
    }

    #[test]
    fn a_read_only_connection_reads_what_the_writer_wrote_and_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        assert!(matches!(
            open_read_only(&path),
            Err(StoreError::Missing { .. })
        ));
        let mut writer = open(&path).unwrap();
        insert_batch(&mut writer, &[record(1_000, "alice", Some(5))]).unwrap();
        let reader = open_read_only(&path).unwrap();
        let count: i64 = reader
            .query_row("SELECT COUNT(*) FROM requests", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 1);
        let error = reader.execute("DELETE FROM requests", []).unwrap_err();
        assert!(error.to_string().contains("readonly"), "{error}");
        // The writer goes on while the reader is open (WAL).
        insert_batch(&mut writer, &[record(2_000, "bob", Some(5))]).unwrap();
    }

    fn record(at_ms: i64, user: &str, cost: Option<i64>) -> UsageRecord {
        UsageRecord {
            at_ms,
            user: user.into(),
            credential: "main".into(),
            endpoint: "messages".into(),
            model: "claude-sonnet-4-5".into(),
            device: "dev".into(),
            session: "s".into(),
            status: 200,
            outcome: "complete".into(),
            tokens: Tokens {
                input: 10,
                output: 20,
                cache_read: 30,
                cache_write_5m: 40,
                cache_write_1h: 50,
                web_search_requests: 1,
                web_fetch_requests: 2,
                reasoning: 6,
            },
            speed: String::new(),
            context_window: 200_000,
            cost_micros: cost,
            duration_ms: 100,
            ttfb_ms: Some(10),
            messages: 3,
            week_reset: Some(1_800_000_000),
            service_tier: String::new(),
        }
    }

    #[test]
    fn a_version_1_database_gains_reasoning_tokens_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        {
            // A database as Carpool wrote it before schema 2.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO requests (at_ms, user, credential, endpoint, model, device, session,
                    status, outcome, input_tokens, output_tokens, cache_read_tokens,
                    cache_write_5m_tokens, cache_write_1h_tokens, web_search_requests,
                    web_fetch_requests, speed, context_window, cost_micros, duration_ms, ttfb_ms,
                    messages, week_reset)
                 VALUES (5, 'old', 'main', 'messages', 'm', '', '', 200, 'complete', 1, 2, 0, 0, 0,
                    0, 0, '', 200000, 7, 10, NULL, 1, NULL)",
                [],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO usage_hourly_by (dimension, hour, key, requests, errors, incomplete,
                    input_tokens, output_tokens, cache_read_tokens, cache_write_5m_tokens,
                    cache_write_1h_tokens, web_search_requests, web_fetch_requests, cost_micros,
                    unpriced, duration_ms, ttfb_ms, ttfb_count)
                 VALUES ('', 0, '', 1, 0, 0, 1, 2, 0, 0, 0, 0, 0, 7, 0, 10, 0, 0)",
                [],
            )
            .unwrap();
        }
        let mut conn = open(&path).unwrap();
        assert_eq!(schema_version(&conn).unwrap(), 2);
        let mut rows = Vec::new();
        for_each_request(&conn, 0, 10, |r| rows.push(r)).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].user, "old");
        assert_eq!(rows[0].tokens.reasoning, 0);
        // New rows carry their reasoning tokens into the row and both rollups, adding to
        // the old rollup row.
        let mut new = record(1_000, "alice", Some(5));
        new.at_ms = 6;
        insert_batch(&mut conn, &[new]).unwrap();
        let mut rows = Vec::new();
        for_each_request(&conn, 6, 7, |r| rows.push(r)).unwrap();
        assert_eq!(rows[0].tokens.reasoning, 6);
        let sums: (i64, i64) = conn
            .query_row(
                "SELECT requests, reasoning_tokens FROM usage_hourly_by WHERE dimension = '' AND hour = 0",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(sums, (2, 6));
        let hourly: i64 = conn
            .query_row("SELECT reasoning_tokens FROM usage_hourly", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(hourly, 6);
    }

    #[test]
    fn migrates_an_empty_database_and_reopens_without_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/usage.db");
        let conn = open(&path).unwrap();
        assert_eq!(schema_version(&conn).unwrap(), SCHEMA_VERSION as i64);
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(tables, ["requests", "usage_hourly", "usage_hourly_by"]);
        drop(conn);
        let again = open(&path).unwrap();
        assert_eq!(schema_version(&again).unwrap(), SCHEMA_VERSION as i64);
    }

    #[test]
    fn refuses_a_database_from_a_newer_carpool() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        let conn = open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let error = open(&path).unwrap_err().to_string();
        assert!(error.contains("newer Carpool (schema 99"), "{error}");
    }

    #[test]
    fn open_existing_does_not_create() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        let error = open_existing(&path).unwrap_err().to_string();
        assert!(error.contains("no usage database"), "{error}");
        assert!(!path.exists());
    }

    #[test]
    fn a_batch_writes_rows_and_sums_them_per_hour() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open(&dir.path().join("usage.db")).unwrap();
        let hour = 1_700_000_000_000 / 3_600_000 * 3_600_000;
        let mut failed = record(hour + 5, "alice", None);
        failed.status = 429;
        failed.tokens = Tokens::default();
        failed.ttfb_ms = None;
        let batch = vec![
            record(hour, "alice", Some(1000)),
            record(hour + 3_599_999, "alice", None),
            failed,
            record(hour + 3_600_000, "alice", Some(7)),
            record(hour, "bob", Some(5)),
        ];
        insert_batch(&mut conn, &batch).unwrap();
        // A second batch adds to the same rollup row.
        insert_batch(&mut conn, &[record(hour + 1, "alice", Some(1))]).unwrap();

        let count: i64 = conn
            .query_row("SELECT count(*) FROM requests", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 6);
        let row: (i64, i64, i64, i64, i64, i64, i64, i64) = conn
            .query_row(
                "SELECT requests, errors, input_tokens, cost_micros, unpriced, duration_ms, ttfb_ms, ttfb_count
                 FROM usage_hourly WHERE hour = ?1 AND user = 'alice'",
                [hour / 1000],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?)),
            )
            .unwrap();
        // 4 requests: 3 with 10 input tokens each, the 429 with none; costs 1000 + 1,
        // one unpriced; 4 × 100 ms; ttfb 10 ms on the three that had one.
        assert_eq!(row, (4, 1, 30, 1001, 1, 400, 30, 3));
        let hours: i64 = conn
            .query_row("SELECT count(*) FROM usage_hourly", [], |r| r.get(0))
            .unwrap();
        assert_eq!(hours, 3);
        // Per dimension: the all-requests row of that hour sums alice's 4 and bob's 1.
        let all: (i64, i64) = conn
            .query_row(
                "SELECT requests, cost_micros FROM usage_hourly_by WHERE dimension = '' AND hour = ?1",
                [hour / 1000],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(all, (5, 1006));
        let users: i64 = conn
            .query_row(
                "SELECT count(*) FROM usage_hourly_by WHERE dimension = 'user' AND hour = ?1",
                [hour / 1000],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(users, 2);

        let mut read = Vec::new();
        for_each_request(&conn, hour, hour + 1, |r| read.push(r)).unwrap();
        assert_eq!(
            read,
            vec![
                record(hour, "alice", Some(1000)),
                record(hour, "bob", Some(5))
            ]
        );
    }
}
