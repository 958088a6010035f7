//! `folio bench`: the rehydration and append benchmark harness.
//!
//! Every run builds its own store (a temporary directory, or `--database-url`), warms up, runs several rounds and
//! reports medians with min and max, beside a raw sqlx baseline measured in the same run. `--json` prints a
//! [`BenchReport`] (schema: `schemas/bench-report.schema.json`), so two runs can be compared with `folio bench
//! compare A.json B.json`.

pub mod append;
pub mod chart;
pub mod compare;
pub mod rehydrate;
pub mod sync;
pub mod target;
pub mod workload;

use std::io::IsTerminal;
use std::time::{Duration, Instant};

mod report_types;

pub use report_types::{BenchReport, CaseResult, Machine, REPORT_VERSION, Stats};

/// Formats nanoseconds for people.
pub fn human_ns(ns: u64) -> String {
    let ns = ns as f64;
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// Formats bytes for people.
pub fn human_bytes(b: u64) -> String {
    let b = b as f64;
    if b < 1024.0 {
        format!("{b:.0} B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else if b < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / 1024.0 / 1024.0)
    } else {
        format!("{:.2} GiB", b / 1024.0 / 1024.0 / 1024.0)
    }
}

/// The process's peak resident memory so far (Linux `VmHWM`), bytes.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU time the process has used so far, user and system (Linux `/proc/self/stat`, in clock ticks of 10 ms):
/// beside a wall time on a shared machine, it shows whether a change did less work or merely waited less.
pub fn cpu_time() -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces, hence the last ')'): utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let ticks: u64 = fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?;
    Some(std::time::Duration::from_millis(ticks * 10))
}

/// Resets the peak resident memory to the current resident memory (Linux `clear_refs` 5), so the next
/// [`peak_rss`] covers only what comes after. Returns false where the OS does not allow it.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Progress on stderr: a bar when stderr is a terminal, otherwise a line every few seconds.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    label: String,
    total: u64,
    done: u64,
    last_line: Instant,
}

impl Progress {
    /// Progress of `label` over `total` steps.
    pub fn new(label: &str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{msg:>28} [{bar:40}] {pos}/{len} ({eta})")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_message(label.to_owned());
            bar
        });
        if bar.is_none() {
            eprintln!("{label}: 0/{total}");
        }
        Self {
            bar,
            label: label.to_owned(),
            total,
            done: 0,
            last_line: Instant::now(),
        }
    }

    /// `n` more steps done.
    pub fn advance(&mut self, n: u64) {
        self.done += n;
        match &self.bar {
            Some(bar) => bar.inc(n),
            None => {
                if self.last_line.elapsed() >= Duration::from_secs(2) {
                    eprintln!("{}: {}/{}", self.label, self.done, self.total);
                    self.last_line = Instant::now();
                }
            }
        }
    }

    /// Done.
    pub fn finish(self) {
        match self.bar {
            Some(bar) => bar.finish_and_clear(),
            None => eprintln!("{}: {}/{} done", self.label, self.done, self.total),
        }
    }
}

/// A one-line note on stderr about what the harness is doing.
pub fn note(text: impl std::fmt::Display) {
    eprintln!("{text}");
}

/// Bytes on disk of the SQLite database at `path`: the file and its WAL after a checkpoint (`None` when it cannot
/// be opened).
pub async fn sqlite_bytes(path: &std::path::Path) -> Option<u64> {
    use sqlx::Connection;
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
    let mut conn = sqlx::SqliteConnection::connect_with(&options).await.ok()?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await
        .ok()?;
    conn.close().await.ok()?;
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    Some(size(path) + size(std::path::Path::new(&wal)))
}

/// A one-connection pool on a new SQLite file at `path` with the raw baselines' settings: WAL and
/// `synchronous = FULL`, as folio's own store runs.
pub(crate) async fn raw_sqlite_pool(path: &std::path::Path) -> Result<sqlx::SqlitePool, sqlx::Error> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full),
        )
        .await
}

/// A row of the report: `time` for `ops` operations beside the raw baseline's median.
pub(crate) fn case(name: &str, ops: u64, time: Stats, raw: &Stats, bytes_per_op: Option<f64>) -> CaseResult {
    let per = |a: &Stats, b: f64| (a.median_ns > 0).then(|| b / a.median_ns as f64);
    CaseResult {
        case: name.into(),
        ops,
        time,
        ops_per_sec: per(&time, ops as f64 * 1e9),
        ratio_to_baseline: per(raw, time.median_ns as f64),
        latency_p50_ns: None,
        latency_p99_ns: None,
        peak_rss_bytes: None,
        state_bytes: None,
        bytes_per_op,
    }
}

/// Every operation of `store`, in ordinal order (read a page at a time).
pub(crate) async fn whole_log(
    store: &dyn folio_store::OperationStore,
) -> Result<Vec<folio_store::Committed>, crate::CliError> {
    let mut log = Vec::new();
    loop {
        let after = log.last().map_or(0, |c: &folio_store::Committed| c.ordinal);
        let page = store.read_since(after, 10_000).await?;
        if page.is_empty() {
            return Ok(log);
        }
        log.extend(page);
    }
}
