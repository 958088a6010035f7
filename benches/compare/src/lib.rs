//! # folio-bench-compare
//!
//! Runs the same logical workloads on folio and on Automerge, yrs and Loro, through one small trait, [`Engine`]
//! (the shape of redb's `redb-bench`): build the state from a list of updates, save it, load it back fresh, read it
//! all. The `folio-compare` binary measures each phase in a child process so that peak RSS belongs to one
//! measurement only; see `README.md` for the figures and the exact commands.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod automerge_engine;
mod folio_engine;
mod loro_engine;
pub mod workload;
mod yrs_engine;

use std::path::Path;

pub use folio_engine::Folio;
pub use workload::{Sizes, Summary, Update, Workload, WorkloadKind};

/// Errors of a measurement: anything an engine reports, as text.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// The result of a measurement step.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One engine under comparison. An engine is made for one workload kind and one directory, which holds its
/// persisted form.
pub trait Engine {
    /// Applies every update of `workload` in order, one transaction per update.
    fn build(&mut self, workload: &Workload) -> Result<()>;
    /// Writes the persisted form into the directory; returns its size in bytes.
    fn save(&mut self) -> Result<u64>;
    /// Loads the persisted form from the directory into a usable state, replacing anything held.
    fn load(&mut self) -> Result<()>;
    /// Reads the whole state back.
    fn read_all(&self) -> Result<Summary>;
    /// Named sub-timings of the last `load`, in milliseconds (empty unless the engine has parts worth telling).
    fn load_details(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }
}

/// The engines, in table order.
pub const ENGINES: [&str; 5] = ["folio", "folio-replay", "automerge", "yrs", "loro"];

/// A short description of each engine, for the table's legend.
pub fn describe(engine: &str) -> &'static str {
    match engine {
        "folio" => {
            "folio on SQLite (WAL, synchronous=FULL), keyframe_every = 1000; load = open + DocumentView::hydrate"
        }
        "folio-replay" => "folio on SQLite, keyframe_every = 0: no keyframes stored, load replays the whole log",
        "automerge" => "automerge::Automerge, one transaction per update; save() / load()",
        "yrs" => "yrs::Doc, one transaction per update; encode_state_as_update_v1 / apply_update",
        "loro" => "loro::LoroDoc, one commit per update; export(Snapshot) / from_snapshot",
        _ => "",
    }
}

/// The engine `name` for workloads of `kind`, persisting in `dir`.
pub fn engine(name: &str, kind: WorkloadKind, dir: &Path) -> Result<Box<dyn Engine>> {
    if let Some(keyframe_every) = folio_keyframe_every(name) {
        return Ok(Box::new(Folio::new(kind, dir, keyframe_every)?));
    }
    Ok(match name {
        "automerge" => Box::new(automerge_engine::AutomergeEngine::new(kind, dir)),
        "yrs" => Box::new(yrs_engine::YrsEngine::new(kind, dir)),
        "loro" => Box::new(loro_engine::LoroEngine::new(kind, dir)),
        other => return Err(format!("unknown engine {other:?} (known: {})", ENGINES.join(", ")).into()),
    })
}

/// The keyframe interval of a folio engine (`folio`: 1000, `folio-replay`: 0), `None` for the peers.
pub fn folio_keyframe_every(engine: &str) -> Option<u64> {
    match engine {
        "folio" => Some(1000),
        "folio-replay" => Some(0),
        _ => None,
    }
}

/// This process's peak resident set size in bytes (`VmHWM` of `/proc/self/status`), or 0 where there is no
/// `/proc`.
pub fn peak_rss_bytes() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The file a byte-encoded engine saves to.
pub(crate) fn blob_path(dir: &Path) -> std::path::PathBuf {
    dir.join("doc.bin")
}

/// Writes `bytes` as the persisted form in `dir`; returns the size.
pub(crate) fn write_blob(dir: &Path, bytes: &[u8]) -> Result<u64> {
    std::fs::write(blob_path(dir), bytes)?;
    Ok(bytes.len() as u64)
}
