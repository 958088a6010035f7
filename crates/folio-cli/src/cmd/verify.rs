//! `folio verify`.

use clap::Args;
use serde_json::json;

use crate::CliError;
use crate::context::{Global, Open};
use crate::output::Out;

/// Checks every hash chain and index sequence.
#[derive(Debug, Args)]
pub struct Verify {}

impl Verify {
    pub async fn run(&self, global: &Global) -> Result<(), CliError> {
        let store = global.open_store(Open::Existing).await?;
        let report = folio_store::verify(store.as_ref()).await?;
        let mut out = Out::new();
        if global.json {
            let broken = report
                .broken
                .as_ref()
                .map(|b| json!({ "unit": b.unit, "index": b.index, "reason": b.reason }));
            out.line(json!({
                "ok": report.is_ok(),
                "units": report.units,
                "operations": report.operations,
                "broken": broken,
            }))?;
        } else if let Some(b) = &report.broken {
            out.line(format_args!(
                "BROKEN: unit {} at index {}: {} ({} units, {} operations checked)",
                b.unit, b.index, b.reason, report.units, report.operations
            ))?;
        } else {
            out.line(format_args!(
                "ok: {} units, {} operations, every index dense and every hash chained",
                report.units, report.operations
            ))?;
        }
        out.finish()?;
        match report.broken {
            Some(b) => Err(CliError::fail(format!(
                "verification failed: unit {} is broken at index {}",
                b.unit, b.index
            ))),
            None => Ok(()),
        }
    }
}
