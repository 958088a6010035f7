//! `folio export [--out FILE]` and `folio import FILE`: every operation of a store as NDJSON, in commit order, and
//! back into a store of either kind (how a store moves between SQLite and PostgreSQL).
//!
//! A line is `{"ordinal", "unit": {documentId, scope, branch}, "operation": Operation}`. Import appends each
//! unit's operations through `OperationStore::append`, which checks indexes and the hash chain over what the unit
//! already holds; operations already stored (a repeated import, or one resumed after it was stopped) are replays
//! that write nothing, so importing the same file twice is harmless. Keyframes, sync cursors and the replica id are
//! not exported: keyframes are rebuilt by reads, and the importing store keeps its own replica id.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::json;

use folio_core::{Operation, SyncUnit};
use folio_store::StoreError;

use crate::CliError;
use crate::context::{Global, Open};
use crate::output::Out;
use crate::progress::Progress;

/// One line of an export.
#[derive(Debug, Serialize, Deserialize)]
struct Line {
    /// The operation's commit ordinal in the exporting store (informative: the importing store gives its own).
    ordinal: u64,
    /// Its unit.
    unit: SyncUnit,
    /// The operation, as the HTTP API shows it.
    operation: Operation,
}

/// Writes every operation as NDJSON.
#[derive(Debug, Args)]
pub struct Export {
    /// The file to write (standard output when omitted).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Reads an export into the store.
#[derive(Debug, Args)]
pub struct Import {
    /// The NDJSON file (`-`: standard input).
    file: PathBuf,
}

const PAGE: usize = 1024;

impl Export {
    pub async fn run(&self, global: &Global) -> Result<(), CliError> {
        let store = global.open_store(Open::Existing).await?;
        let total = store.max_ordinal().await?;
        let progress = Progress::new("export", Some(total), global.json || self.out.is_none());
        let mut sink: Box<dyn Write> = match &self.out {
            Some(path) => {
                Box::new(std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| {
                    CliError::fail(format!("cannot create {}: {e}", path.display()))
                })?))
            }
            None => Box::new(std::io::BufWriter::new(std::io::stdout())),
        };
        let mut after = 0;
        let mut count = 0u64;
        loop {
            let page = store.read_since(after, PAGE).await?;
            let Some(last) = page.last() else { break };
            let last_ordinal = last.ordinal;
            for committed in page {
                let line = Line {
                    ordinal: committed.ordinal,
                    unit: committed.unit,
                    operation: committed.operation,
                };
                serde_json::to_writer(&mut sink, &line).map_err(CliError::from)?;
                sink.write_all(b"\n").map_err(write_error)?;
                count += 1;
            }
            progress.set(last_ordinal);
            after = last_ordinal;
        }
        sink.flush().map_err(write_error)?;
        progress.finish();
        if let Some(path) = &self.out {
            let mut out = Out::new();
            if global.json {
                out.line(json!({ "exported": count, "file": path }))?;
            } else {
                out.line(format!("exported {count} operations to {}", path.display()))?;
            }
            out.finish()?;
        }
        Ok(())
    }
}

fn write_error(e: std::io::Error) -> CliError {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        CliError::stdout_closed()
    } else {
        CliError::fail(format!("cannot write the export: {e}"))
    }
}

/// Operations of one unit, consecutive in the file.
struct Run {
    unit: SyncUnit,
    operations: Vec<Operation>,
    line: usize,
}

impl Import {
    pub async fn run(&self, global: &Global) -> Result<(), CliError> {
        let reader: Box<dyn BufRead> = if self.file.as_os_str() == "-" {
            Box::new(std::io::BufReader::new(std::io::stdin()))
        } else {
            Box::new(std::io::BufReader::new(std::fs::File::open(&self.file).map_err(
                |e| CliError::fail(format!("cannot open {}: {e}", self.file.display())),
            )?))
        };
        let size = std::fs::metadata(&self.file).map(|m| m.len()).ok();
        let store = global.open_store(Open::Create).await?;
        let progress = Progress::bytes("import", size.unwrap_or(0), global.json || size.is_none());
        let started = Instant::now();
        let (mut appended, mut already) = (0u64, 0u64);
        let mut run: Option<Run> = None;
        let mut read_bytes = 0u64;
        for (n, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| CliError::fail(format!("{}: {e}", self.file.display())))?;
            read_bytes += line.len() as u64 + 1;
            if line.trim().is_empty() {
                continue;
            }
            let parsed: Line = serde_json::from_str(&line).map_err(|e| {
                CliError::fail(format!(
                    "{} line {}: not an exported operation: {e}",
                    self.file.display(),
                    n + 1
                ))
            })?;
            let same_unit = run
                .as_ref()
                .is_some_and(|r| r.unit == parsed.unit && r.operations.len() < PAGE);
            if !same_unit && let Some(done) = run.take() {
                let (a, r) = self.append(store.as_ref(), done).await?;
                appended += a;
                already += r;
                progress.set(read_bytes);
            }
            run.get_or_insert_with(|| Run {
                unit: parsed.unit.clone(),
                operations: Vec::new(),
                line: n + 1,
            })
            .operations
            .push(parsed.operation);
        }
        if let Some(done) = run.take() {
            let (a, r) = self.append(store.as_ref(), done).await?;
            appended += a;
            already += r;
        }
        progress.finish();
        let mut out = Out::new();
        if global.json {
            out.line(json!({
                "appended": appended,
                "alreadyStored": already,
                "seconds": started.elapsed().as_secs_f64(),
            }))?;
        } else {
            out.line(format!(
                "imported {appended} operations ({already} were already stored) in {:.1} s",
                started.elapsed().as_secs_f64()
            ))?;
        }
        out.finish()
    }

    /// Appends a run: what the unit already holds must be the same operations (replayed), the rest follows its
    /// head. Returns (appended, already stored).
    async fn append(&self, store: &dyn folio_store::OperationStore, run: Run) -> Result<(u64, u64), CliError> {
        let Run {
            unit,
            mut operations,
            line,
        } = run;
        let say = |e: String| {
            CliError::fail(format!(
                "{} from line {line} (document {}, scope {:?}, branch {}): {e}",
                self.file.display(),
                unit.document_id,
                unit.scope,
                unit.branch
            ))
        };
        let at = |e: StoreError| say(e.to_string());
        let first = operations[0].index;
        let (revision, _) = store.head(&unit).await.map_err(at)?;
        if first > revision {
            return Err(say(format!(
                "the unit holds {revision} operations and the file goes on at index {first}: operations are missing \
                 (a file cut or reordered?)"
            )));
        }
        let stored = (revision - first).min(operations.len() as u64) as usize;
        let rest = operations.split_off(stored);
        if !operations.is_empty() {
            // Already there: they must be the same operations, which the store checks (a replay writes nothing).
            let replay = store.append(&unit, first, operations).await.map_err(at)?;
            if !replay.replayed {
                return Err(say("operations the unit already held were appended again".into()));
            }
        }
        let fresh = rest.len() as u64;
        if !rest.is_empty() {
            let expected = rest[0].index;
            store.append(&unit, expected, rest).await.map_err(at)?;
        }
        Ok((fresh, stored as u64))
    }
}
