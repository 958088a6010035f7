//! `folio verify`.

use std::collections::BTreeSet;
use std::sync::Arc;

use clap::Args;
use serde_json::json;

use folio_core::{Branch, DocumentId, ModelRegistry};
use folio_reactor::{DocKey, Reactor, ReactorConfig};

use crate::CliError;
use crate::context::{Global, Open};
use crate::output::Out;

/// Checks every hash chain, index sequence and signature, then replays every document with its model.
#[derive(Debug, Args)]
pub struct Verify {}

/// A document whose history its model cannot fold (an operation it refuses now, or a reducer that panics on it).
struct Unreadable {
    document_id: DocumentId,
    branch: Branch,
    reason: String,
}

impl Verify {
    pub async fn run(&self, global: &Global) -> Result<(), CliError> {
        let store = global.open_store(Open::Existing).await?;
        let checking = crate::progress::Progress::new("checking hash chains", None, global.json);
        let report = folio_store::verify(store.as_ref()).await?;
        checking.finish();
        // The chains hold: replay every document, as a read would, to find the ones no read can fold.
        let mut unreadable = Vec::new();
        if report.is_ok() {
            let docs: BTreeSet<(DocumentId, Branch)> = store
                .units()
                .await?
                .into_iter()
                .map(|u| (u.document_id, u.branch))
                .collect();
            let config = ReactorConfig {
                keyframe_every: 0,
                ..ReactorConfig::default()
            };
            let reactor = Reactor::new(store.clone(), Arc::new(ModelRegistry::with_builtin()), config);
            let replaying = crate::progress::Progress::new("replaying documents", Some(docs.len() as u64), global.json);
            for (document_id, branch) in docs {
                replaying.advance(1);
                if let Err(e) = reactor
                    .view()
                    .hydrate(&DocKey::new(document_id, branch.clone()), None)
                    .await
                {
                    unreadable.push(Unreadable {
                        document_id,
                        branch,
                        reason: format!("{}: {e}", e.code()),
                    });
                }
            }
            reactor.shutdown().await;
        }
        let mut out = Out::new();
        if global.json {
            let broken = report
                .broken
                .as_ref()
                .map(|b| json!({ "unit": b.unit, "index": b.index, "reason": b.reason }));
            let unreadable: Vec<_> = unreadable
                .iter()
                .map(|u| json!({ "documentId": u.document_id, "branch": u.branch, "reason": u.reason }))
                .collect();
            out.line(json!({
                "ok": report.is_ok() && unreadable.is_empty(),
                "units": report.units,
                "operations": report.operations,
                "signed": report.signed,
                "broken": broken,
                "unreadable": unreadable,
            }))?;
        } else if let Some(b) = &report.broken {
            out.line(format_args!(
                "BROKEN: unit {} at index {}: {} ({} units, {} operations checked)",
                b.unit, b.index, b.reason, report.units, report.operations
            ))?;
        } else {
            for u in &unreadable {
                out.line(format_args!(
                    "UNREADABLE: document {} on {}: {}",
                    u.document_id, u.branch, u.reason
                ))?;
            }
            if unreadable.is_empty() {
                out.line(format_args!(
                    "ok: {} units, {} operations, every index dense, every hash chained, every signature valid \
                     ({} signed), every document replayed",
                    report.units, report.operations, report.signed
                ))?;
            }
        }
        out.finish()?;
        if let Some(b) = report.broken {
            return Err(CliError::fail(format!(
                "verification failed: unit {} is broken at index {}",
                b.unit, b.index
            )));
        }
        if let Some(u) = unreadable.first() {
            return Err(CliError::fail(format!(
                "verification failed: {} document(s) cannot be replayed, the first {} ({})",
                unreadable.len(),
                u.document_id,
                u.reason
            )));
        }
        Ok(())
    }
}
