//! [`Ledger`]: the request path's handle on the usage database.
//!
//! [`Ledger::record`] never waits: it puts the record on a bounded queue and returns. One
//! thread owns the database connection, takes whatever has queued up (up to
//! `batch_max` records, gathered for at most a tenth of a second) and writes it in one
//! transaction, so a busy server writes in large batches and an idle one writes each
//! record within a tenth of a second. While it gathers, the thread sleeps rather than
//! waiting on the queue, so a record that arrives then costs a push, not a thread
//! wake-up (which cost more CPU than writing the row). A full queue
//! means the disk is not keeping up: the record is counted as dropped and logged, and the
//! client is not slowed. [`Ledger::close`] writes everything queued before it returns.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::UsageRecord;
use super::store::{self, StoreError};
use crate::tasks::lock;

/// How a [`Ledger`] queues and batches.
#[derive(Clone)]
pub struct LedgerOptions {
    /// Records that may wait for the disk before new ones are dropped.
    pub queue: usize,
    /// Most records written in one transaction.
    pub batch_max: usize,
    /// Called with every record after its batch was written (or given up on): the
    /// sing-box-style usage files.
    pub sinks: Vec<Sink>,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        LedgerOptions {
            queue: 10_000,
            batch_max: 1_000,
            sinks: Vec::new(),
        }
    }
}

/// Something that wants every record, e.g. a usage file.
pub type Sink = Arc<dyn Fn(&UsageRecord) + Send + Sync>;

enum Message {
    Record(Box<UsageRecord>),
    /// Answered once everything queued before it is written.
    Flush(std::sync::mpsc::Sender<()>),
    /// Write what is queued, then stop.
    Close,
}

#[derive(Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
    /// Unix ms of the last "dropped" warning, to log at most one every 10 s.
    last_drop_warning: AtomicI64,
}

pub struct Ledger {
    path: PathBuf,
    queue: SyncSender<Message>,
    counters: Arc<Counters>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// The writer thread, woken early for a flush or close.
    thread: std::thread::Thread,
}

impl Ledger {
    /// Opens (or creates) the database, migrates it, and starts the writer thread.
    pub fn open(path: &Path, options: LedgerOptions) -> Result<Ledger, StoreError> {
        let conn = store::open(path)?;
        let (queue, receiver) = std::sync::mpsc::sync_channel(options.queue.max(1));
        let counters = Arc::new(Counters::default());
        let writer = Writer {
            conn,
            path: path.to_owned(),
            receiver,
            counters: counters.clone(),
            batch_max: options.batch_max.max(1),
            sinks: options.sinks,
        };
        let handle = std::thread::Builder::new()
            .name("carpool-ledger".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Open {
                path: path.to_owned(),
                source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
            })?;
        Ok(Ledger {
            path: path.to_owned(),
            queue,
            counters,
            thread: handle.thread().clone(),
            writer: Mutex::new(Some(handle)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues `record` for writing; never blocks.
    pub fn record(&self, record: UsageRecord) {
        match self.queue.try_send(Message::Record(Box::new(record))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped("the usage queue is full: the disk is not keeping up")
            }
            Err(TrySendError::Disconnected(_)) => self.dropped("the usage ledger is closed"),
        }
    }

    fn dropped(&self, why: &str) {
        let total = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let now = now_ms();
        let last = self.counters.last_drop_warning.load(Ordering::Relaxed);
        if (last == 0 || now - last >= 10_000)
            && self
                .counters
                .last_drop_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(dropped_total = total, "usage record dropped: {why}");
        }
    }

    /// Records written to the database so far.
    pub fn written(&self) -> u64 {
        self.counters.written.load(Ordering::Relaxed)
    }

    /// Records dropped because the queue was full or the ledger closed.
    pub fn dropped_count(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Blocks until every record queued before this call is written. For tests and
    /// tools; the request path never calls it.
    pub fn flush(&self) {
        let (done, wait) = std::sync::mpsc::channel();
        if self.queue.send(Message::Flush(done)).is_ok() {
            self.thread.unpark();
            let _ = wait.recv();
        }
    }

    /// Writes everything queued, then stops the writer. Later records are dropped.
    /// Blocking; idempotent.
    pub fn close(&self) {
        let Some(handle) = lock(&self.writer).take() else {
            return;
        };
        let _ = self.queue.send(Message::Close);
        self.thread.unpark();
        let _ = handle.join();
        tracing::debug!(path = %self.path.display(), written = self.written(), dropped = self.dropped_count(), "usage ledger closed");
    }

    /// [`Ledger::flush`] from async code.
    pub async fn flush_async(self: &Arc<Self>) {
        let ledger = self.clone();
        let _ = tokio::task::spawn_blocking(move || ledger.flush()).await;
    }

    /// [`Ledger::close`] from async code.
    pub async fn close_async(self: &Arc<Self>) {
        let ledger = self.clone();
        let _ = tokio::task::spawn_blocking(move || ledger.close()).await;
    }
}

struct Writer {
    conn: Connection,
    path: PathBuf,
    receiver: Receiver<Message>,
    counters: Arc<Counters>,
    batch_max: usize,
    sinks: Vec<Sink>,
}

/// How long the writer gathers records after the first before writing them. Under load
/// this turns many small transactions into one, and sums many requests into each rollup
/// row once; a crash loses at most this much more.
const GATHER: Duration = Duration::from_millis(100);

/// A batch that cannot be written is retried this often, this many times, then given up
/// (counted as dropped); meanwhile new records queue up, and drop once the queue is full.
const RETRY_EVERY: Duration = Duration::from_secs(1);
const RETRIES: u32 = 30;

impl Writer {
    fn run(mut self) {
        let mut batch: Vec<UsageRecord> = Vec::with_capacity(self.batch_max);
        let mut flushes = Vec::new();
        let mut closing = false;
        let mut gone = false;
        while !closing && !gone {
            // Wait for the first message, then gather what arrives within GATHER of it
            // (or until a flush or close asks for the write now, or the batch is full).
            let Ok(first) = self.receiver.recv() else {
                break; // every Ledger handle is gone
            };
            let until = Instant::now() + GATHER;
            let mut next = Some(first);
            loop {
                while let Some(message) = next.take() {
                    match message {
                        Message::Record(r) => batch.push(*r),
                        Message::Flush(done) => flushes.push(done),
                        Message::Close => closing = true,
                    }
                    if batch.len() >= self.batch_max || closing || !flushes.is_empty() {
                        break;
                    }
                    match self.receiver.try_recv() {
                        Ok(message) => next = Some(message),
                        Err(TryRecvError::Empty) => {}
                        Err(TryRecvError::Disconnected) => gone = true,
                    }
                }
                let now = Instant::now();
                if batch.len() >= self.batch_max
                    || closing
                    || gone
                    || !flushes.is_empty()
                    || now >= until
                {
                    break;
                }
                // Sleep, not `recv_timeout`: a receiver blocked on the queue is woken by
                // every record. Flush and close unpark the thread; records just queue.
                std::thread::park_timeout(until - now);
                match self.receiver.try_recv() {
                    Ok(message) => next = Some(message),
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => gone = true,
                }
            }
            self.write(&mut batch, closing);
            for done in flushes.drain(..) {
                let _ = done.send(());
            }
        }
        // Anything still queued after Close came from requests that ended later.
        while let Ok(message) = self.receiver.try_recv() {
            if let Message::Record(_) = message {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn write(&mut self, batch: &mut Vec<UsageRecord>, closing: bool) {
        if batch.is_empty() {
            return;
        }
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            match store::insert_batch(&mut self.conn, batch) {
                Ok(()) => {
                    self.counters
                        .written
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    tracing::trace!(
                        records = batch.len(),
                        ms = started.elapsed().as_millis() as u64,
                        "usage batch written"
                    );
                    break;
                }
                Err(e) => {
                    attempt += 1;
                    let give_up = attempt > if closing { 3 } else { RETRIES };
                    tracing::warn!(path = %self.path.display(), records = batch.len(), attempt, "cannot write usage records: {e}{}", if give_up { "; giving up on them" } else { "; retrying" });
                    if give_up {
                        self.counters
                            .dropped
                            .fetch_add(batch.len() as u64, Ordering::Relaxed);
                        break;
                    }
                    std::thread::sleep(RETRY_EVERY);
                }
            }
        }
        for sink in &self.sinks {
            for r in batch.iter() {
                sink(r);
            }
        }
        batch.clear();
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Tokens;

    fn record(i: u64) -> UsageRecord {
        UsageRecord {
            at_ms: 1_700_000_000_000 + i as i64,
            user: "alice".into(),
            credential: "main".into(),
            endpoint: "messages".into(),
            model: "claude-sonnet-4-6".into(),
            status: 200,
            outcome: "complete".into(),
            tokens: Tokens {
                input: i,
                output: 1,
                ..Tokens::default()
            },
            cost_micros: Some(1),
            ..UsageRecord::default()
        }
    }

    fn rows(path: &Path) -> (i64, i64) {
        let conn = store::open_existing(path).unwrap();
        conn.query_row(
            "SELECT count(*), COALESCE(SUM(input_tokens), 0) FROM requests",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    }

    #[test]
    fn a_burst_of_ten_thousand_records_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        let seen = Arc::new(AtomicU64::new(0));
        let counter = seen.clone();
        let options = LedgerOptions {
            sinks: vec![Arc::new(move |_: &UsageRecord| {
                counter.fetch_add(1, Ordering::Relaxed);
            })],
            ..LedgerOptions::default()
        };
        let ledger = Ledger::open(&path, options).unwrap();
        for i in 0..10_000 {
            ledger.record(record(i));
        }
        ledger.close();
        assert_eq!(ledger.dropped_count(), 0);
        assert_eq!(ledger.written(), 10_000);
        // Sum of 0..10000 input tokens: each record arrived exactly once.
        assert_eq!(rows(&path), (10_000, 49_995_000));
        assert_eq!(seen.load(Ordering::Relaxed), 10_000);
        // After close, records are counted as dropped, not lost silently.
        ledger.record(record(1));
        assert_eq!(ledger.dropped_count(), 1);
    }

    /// While another process holds the write lock, the queue fills and further records
    /// are dropped at once instead of blocking the caller; once the lock is released the
    /// queued ones are written.
    #[test]
    fn a_full_queue_drops_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        let ledger = Ledger::open(
            &path,
            LedgerOptions {
                queue: 8,
                batch_max: 4,
                ..LedgerOptions::default()
            },
        )
        .unwrap();
        let blocker = store::open(&path).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        // The writer takes the first record and waits on the lock; 8 more fit the queue.
        ledger.record(record(0));
        std::thread::sleep(Duration::from_millis(200));
        for i in 1..=100 {
            ledger.record(record(i));
        }
        // All 100 calls returned while the lock is still held: nothing blocked.
        let dropped = ledger.dropped_count();
        assert!(
            (100 - 8 - 4..=100 - 8).contains(&dropped),
            "dropped {dropped}"
        );
        blocker.execute_batch("COMMIT").unwrap();
        ledger.flush();
        assert_eq!(ledger.written() + ledger.dropped_count(), 101);
        assert_eq!(rows(&path).0 as u64, ledger.written());
        ledger.close();
    }

    /// Without a flush or close, what was recorded is written once the gather window
    /// ends: the writer, asleep rather than waiting on the queue, still wakes for it.
    #[test]
    fn records_are_written_without_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        let ledger = Ledger::open(&path, LedgerOptions::default()).unwrap();
        for round in 1..=2u64 {
            for i in 0..10 {
                ledger.record(record(i));
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while ledger.written() < 10 * round && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            assert_eq!(ledger.written(), 10 * round, "round {round}");
        }
        assert_eq!(rows(&path).0, 20);
        ledger.close();
    }

    #[test]
    fn close_writes_what_was_queued_while_the_disk_was_busy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        let ledger = Ledger::open(&path, LedgerOptions::default()).unwrap();
        let blocker = store::open(&path).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        for i in 0..500 {
            ledger.record(record(i));
        }
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            blocker.execute_batch("COMMIT").unwrap();
        });
        ledger.close();
        release.join().unwrap();
        assert_eq!((ledger.written(), ledger.dropped_count()), (500, 0));
        assert_eq!(rows(&path).0, 500);
    }
}
