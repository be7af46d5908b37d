//! Where log lines go: always stderr (the journal under systemd, the terminal
//! otherwise), and with `carpool serve --log-file PATH` the same lines to a file that is
//! rotated daily, the newest few kept.
//!
//! `--log-file /var/log/carpool/carpool.log` writes `carpool.2026-11-05.log`,
//! `carpool.2026-11-06.log`, … in `/var/log/carpool` (a new file at midnight UTC) and
//! keeps `carpool.log` as a symbolic link to the current one, for `tail -F`. Older files
//! beyond `--log-keep` are deleted as new ones start. The file is written by a
//! background thread (tracing-appender's non-blocking writer): a slow disk never holds
//! up a request; if it cannot keep up at all, lines are dropped rather than waited for.
//! The thread's guard must live as long as the process, or the last lines are lost.
//!
//! `CARPOOL_LOG` (or `RUST_LOG`) sets the filter, default `info` with the file-watching
//! library at `warn`: it reports routine events (a watched directory removed) at info,
//! which is noise for a person reading Carpool's log.

use std::path::{Path, PathBuf};

use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How many daily files `--log-file` keeps by default: a week.
pub const DEFAULT_KEEP: u64 = 7;

/// A log file as `carpool serve --log-file PATH --log-keep N` asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    pub path: PathBuf,
    /// Daily files kept, the current one included (at least 1).
    pub keep: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot write the log file {}: {problem}", path.display())]
pub struct LogFileError {
    path: PathBuf,
    problem: String,
}

impl LogFile {
    /// The directory, file name prefix and suffix `path` stands for:
    /// `/var/log/carpool/carpool.log` → (`/var/log/carpool`, `carpool`, `log`).
    fn parts(&self) -> Result<(PathBuf, String, Option<String>), LogFileError> {
        let error = |problem: &str| LogFileError {
            path: self.path.clone(),
            problem: problem.to_owned(),
        };
        let name = self
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| error("the path must end in a file name"))?;
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let (prefix, suffix) = match Path::new(name).extension().and_then(|e| e.to_str()) {
            Some(ext) => (
                name[..name.len() - ext.len() - 1].to_owned(),
                Some(ext.to_owned()),
            ),
            None => (name.to_owned(), None),
        };
        if prefix.is_empty() {
            return Err(error("the file name needs more than an extension"));
        }
        Ok((dir, prefix, suffix))
    }

    /// The daily-rotated file appender (creates the directory; deletes files of the
    /// same name beyond `keep`).
    pub fn appender(&self) -> Result<RollingFileAppender, LogFileError> {
        let (dir, prefix, suffix) = self.parts()?;
        let error = |problem: String| LogFileError {
            path: self.path.clone(),
            problem,
        };
        std::fs::create_dir_all(&dir).map_err(|e| error(e.to_string()))?;
        let mut builder = RollingFileAppender::builder()
            .rotation(Rotation::DAILY)
            .filename_prefix(prefix)
            .max_log_files(self.keep.max(1));
        if let Some(suffix) = suffix {
            builder = builder.filename_suffix(suffix);
        }
        #[cfg(unix)]
        if let Some(name) = self.path.file_name().and_then(|n| n.to_str()) {
            // A link by the name asked for, to the current file. A regular file by that
            // name (an older Carpool's, or the user's) is left alone: no link then.
            let at = dir.join(name);
            if std::fs::symlink_metadata(&at).map_or(true, |m| m.file_type().is_symlink()) {
                builder = builder.latest_symlink(name);
            }
        }
        builder.build(&dir).map_err(|e| error(e.to_string()))
    }
}

/// The filter from `CARPOOL_LOG` or `RUST_LOG`, else the default.
fn filter() -> EnvFilter {
    std::env::var("CARPOOL_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info,notify=warn"))
}

/// Sets up logging for the process: stderr, and `file` if given. Keep the returned
/// guard until the process ends (it flushes the file's last lines when dropped).
pub fn init(file: Option<&LogFile>) -> Result<Option<WorkerGuard>, LogFileError> {
    let (file_layer, guard) = match file {
        Some(file) => {
            let (writer, guard) = tracing_appender::non_blocking(file.appender()?);
            let layer = tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(false);
            (Some(layer), Some(guard))
        }
        None => (None, None),
    };
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    tracing_subscriber::registry()
        .with(filter())
        .with(stderr)
        .with(file_layer)
        .init();
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn today() -> String {
        // tracing-appender dates its files in UTC.
        jiff::Timestamp::now().strftime("%Y-%m-%d").to_string()
    }

    #[test]
    fn a_path_names_the_directory_the_prefix_and_the_suffix() {
        let parts = |path: &str| {
            LogFile {
                path: path.into(),
                keep: 1,
            }
            .parts()
            .map(|(d, p, s)| (d.to_string_lossy().into_owned(), p, s))
        };
        assert_eq!(
            parts("/var/log/carpool/carpool.log").unwrap(),
            (
                "/var/log/carpool".into(),
                "carpool".into(),
                Some("log".into())
            )
        );
        assert_eq!(parts("relay").unwrap(), (".".into(), "relay".into(), None));
        // A dot file is a name, not an extension.
        assert_eq!(
            parts("/var/log/.carpool").unwrap(),
            ("/var/log".into(), ".carpool".into(), None)
        );
        assert!(parts("/").is_err(), "no file name");
    }

    #[test]
    fn lines_land_in_todays_file_without_colours() {
        let dir = tempfile::tempdir().unwrap();
        let file = LogFile {
            path: dir.path().join("logs/relay.log"),
            keep: 3,
        };
        let (writer, guard) = tracing_appender::non_blocking(file.appender().unwrap());
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(false),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "carpool::request", user = "alice", "POST /v1/messages");
        });
        drop(guard); // flushes
        let logs = dir.path().join("logs");
        let current = format!("relay.{}.log", today());
        let text = std::fs::read_to_string(logs.join(&current)).unwrap();
        assert!(text.contains("carpool::request"), "{text}");
        assert!(
            text.contains("user=\"alice\"") || text.contains("user=alice"),
            "{text}"
        );
        assert!(text.contains("POST /v1/messages"), "{text}");
        assert!(
            !text.contains('\u{1b}'),
            "no ANSI colours in a file: {text:?}"
        );
        #[cfg(unix)]
        assert_eq!(
            std::fs::read_link(logs.join("relay.log")).unwrap(),
            logs.join(&current),
            "relay.log points at today's file"
        );
    }

    #[test]
    fn only_the_newest_files_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        // Five older days, written in order; another program's file alongside.
        for day in 1..=5 {
            std::fs::write(
                dir.path().join(format!("carpool.2020-01-0{day}.log")),
                "old\n",
            )
            .unwrap();
            // Distinct creation times, which is how the oldest are found.
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::fs::write(dir.path().join("other.2020-01-01.log"), "not ours\n").unwrap();
        let file = LogFile {
            path: dir.path().join("carpool.log"),
            keep: 3,
        };
        let appender = file.appender().unwrap();
        drop(appender);
        let mut expected = vec![
            "carpool.2020-01-04.log".to_owned(),
            "carpool.2020-01-05.log".to_owned(),
            format!("carpool.{}.log", today()),
            "other.2020-01-01.log".to_owned(),
        ];
        #[cfg(unix)]
        expected.push("carpool.log".to_owned());
        expected.sort();
        assert_eq!(names(dir.path()), expected);
    }
}
