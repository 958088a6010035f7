//! The shapes of `folio bench … --json` (schema: `schemas/bench-report.schema.json`).
#![allow(dead_code)]

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The version of the report format; bumped when a field changes meaning.
pub const REPORT_VERSION: u32 = 1;

/// What `folio bench … --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BenchReport {
    /// The report format's version.
    pub version: u32,
    /// `rehydrate` or `append`.
    pub benchmark: String,
    /// folio's version.
    pub folio_version: String,
    /// When it ran (RFC 3339).
    pub started_at: String,
    /// The machine: `cores`, `os`.
    pub machine: Machine,
    /// The parameters the run was given.
    pub parameters: serde_json::Map<String, serde_json::Value>,
    /// One entry per measured case.
    pub results: Vec<CaseResult>,
}

/// Where it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Machine {
    /// Logical cores.
    pub cores: usize,
    /// The operating system and architecture.
    pub os: String,
}

impl Machine {
    /// This machine.
    pub fn here() -> Self {
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        }
    }
}

/// One measured case (e.g. `cold keyframed` at 100,000 operations).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaseResult {
    /// A stable name (`cold-keyframed`, `full-replay`, `warm`, `raw-sqlx`, `folio`, …).
    pub case: String,
    /// The history length or operation count the case ran on.
    pub ops: u64,
    /// Time per run, in nanoseconds.
    pub time: Stats,
    /// Operations per second, when it applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops_per_sec: Option<f64>,
    /// This case's median time over the baseline's median measured in the same run (below 1 is faster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_to_baseline: Option<f64>,
    /// Commit latency of single jobs, nanoseconds (append).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p50_ns: Option<u64>,
    /// 99th percentile commit latency, nanoseconds (append).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p99_ns: Option<u64>,
    /// Peak resident memory of the process during this case, bytes (when the OS tells).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_bytes: Option<u64>,
    /// The size of the final state as JSON, bytes (rehydrate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_bytes: Option<u64>,
    /// Bytes on disk per operation of the store this case ran on (SQLite: the database and its WAL after a
    /// checkpoint, indexes and keyframes included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_op: Option<f64>,
}

/// Median, minimum and maximum of several rounds, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Stats {
    /// Median.
    pub median_ns: u64,
    /// Fastest round.
    pub min_ns: u64,
    /// Slowest round.
    pub max_ns: u64,
    /// Rounds measured.
    pub rounds: u32,
}

impl Stats {
    /// Stats of `samples` (not empty).
    pub fn of(samples: &[Duration]) -> Self {
        let mut ns: Vec<u64> = samples.iter().map(|d| d.as_nanos() as u64).collect();
        ns.sort_unstable();
        let n = ns.len().max(1);
        let median = if ns.is_empty() {
            0
        } else if n % 2 == 1 {
            ns[n / 2]
        } else {
            (ns[n / 2 - 1] + ns[n / 2]) / 2
        };
        Self {
            median_ns: median,
            min_ns: ns.first().copied().unwrap_or(0),
            max_ns: ns.last().copied().unwrap_or(0),
            rounds: ns.len() as u32,
        }
    }
}
