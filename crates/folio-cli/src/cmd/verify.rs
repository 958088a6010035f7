//! `folio verify`.

use clap::Args;
use serde_json::json;

use crate::CliError;
use crate::context::Global;

/// Checks every hash chain and index sequence.
#[derive(Debug, Args)]
pub struct Verify {}

impl Verify {
    pub async fn run(&self, global: &Global) -> Result<(), CliError> {
        let store = global.open_store().await?;
        let report = folio_store::verify(store.as_ref()).await?;
        if global.json {
            let broken = report.broken.as_ref().map(|b| {
                json!({ "unit": b.unit, "index": b.index, "reason": b.reason })
            });
            println!(
                "{}",
                json!({ "ok": report.is_ok(), "units": report.units, "operations": report.operations, "broken": broken })
            );
        } else if let Some(b) = &report.broken {
            println!(
                "BROKEN: unit {} at index {}: {} ({} units, {} operations checked)",
                b.unit, b.index, b.reason, report.units, report.operations
            );
        } else {
            println!(
                "ok: {} units, {} operations, every index dense and every hash chained",
                report.units, report.operations
            );
        }
        match report.broken {
            Some(b) => Err(CliError::fail(format!("verification failed: unit {} is broken at index {}", b.unit, b.index))),
            None => Ok(()),
        }
    }
}
