//! Integrations and compressions: reading the tail of a unit's log back to the common prefix, planning with
//! `folio_core::merge`, rewinding the working copy for a rebase, and folding the merged actions.

use futures::TryStreamExt;

use folio_core::merge::{MergePlan, effective, fold_merged, plan_merge, tail_covers};
use folio_core::{Action, ApplyError, Document, Operation, Scope, order_key};

use crate::ReactorError;
use crate::job::{Job, JobKind, MergeReport};
use crate::shared::Shared;

/// The most operations of a unit's tail read at once while looking for the common prefix of a merge.
const TAIL_STEP: u64 = 256;

/// Plans and applies an integration or a compression on `doc` (the working copy at the unit's committed head):
/// returns the operations to append (none when there is nothing to do) and the report.
pub(super) async fn merge(
    shared: &Shared,
    key: &crate::view::DocKey,
    doc: &mut Document,
    job: &Job,
) -> Result<(Vec<Operation>, MergeReport), ReactorError> {
    let scope = job.scope;
    if scope == Scope::Local {
        return Err(ReactorError::InvalidRequest("the local scope is never merged".into()));
    }
    let unit = key.unit(scope);
    let head = doc.header.revision.get(scope);
    let Some(min_incoming) = job.actions.iter().min_by(|a, b| order_key(a).cmp(&order_key(b))) else {
        return Ok((Vec::new(), MergeReport::default()));
    };
    // Read back from the head until the tail's effective operations start before every incoming action.
    // Each step reads only the operations before those already read.
    let mut step = TAIL_STEP.min(head.max(1));
    let mut tail_ops: Vec<Operation> = Vec::new();
    let mut read_from = head;
    loop {
        let from = head.saturating_sub(step);
        let mut ops: Vec<Operation> = shared.store.read(&unit, from, Some(read_from)).try_collect().await?;
        if ops.len() as u64 != read_from - from {
            return Err(ReactorError::Corrupt(format!(
                "{unit}: read {} operations of {}",
                ops.len(),
                read_from - from
            )));
        }
        ops.append(&mut tail_ops);
        tail_ops = ops;
        read_from = from;
        if tail_covers(&effective(&tail_ops), from, min_incoming) {
            break;
        }
        step = step.saturating_mul(4);
    }
    let tail = effective(&tail_ops);
    let mut report = MergeReport::default();
    let plan = match job.kind {
        JobKind::Compress => plan_compress(shared, key, doc, &tail, job).await?,
        _ => {
            let plan = plan_merge(&tail, job.actions.clone());
            let new = match &plan {
                MergePlan::Nothing => 0,
                MergePlan::Append(actions) => actions.len(),
                MergePlan::Rebase { actions, .. } => {
                    let cut = tail.partition_point(|op| op.index < plan_cut(&plan));
                    actions.len() - (tail.len() - cut)
                }
            };
            report.new = new;
            report.duplicates = job.actions.len() - new;
            plan
        }
    };
    let (actions, skip) = match plan {
        MergePlan::Nothing => return Ok((Vec::new(), report)),
        MergePlan::Append(actions) => (actions, 0),
        MergePlan::Rebase {
            base_revision,
            cut,
            actions,
        } => {
            let (global, document) = match scope {
                Scope::Global => (Some(base_revision), None),
                _ => (None, Some(base_revision)),
            };
            let base = shared
                .view
                .hydrate_at(key, global, document)
                .await?
                .unwrap_or_else(|| Document::empty(key.id, key.branch.clone()));
            doc.rewind(scope, base);
            report.rebased = true;
            (actions, head - cut)
        }
    };
    // An action id belongs to the first action in the total order that carries it: the ids the effective history
    // holds before the merged run (with other content: exact duplicates were dropped by the plan).
    let taken = taken_ids(shared, &unit, head - skip, head, &actions).await?;
    let folded = fold_merged(doc, scope, skip, actions, taken, &shared.registry, |a| {
        shared.clock.observe(a.timestamp())
    })
    .map_err(|(index, e)| match e {
        ApplyError::NotCreated => ReactorError::DocumentNotFound(key.id),
        ApplyError::ReducerPanicked(message) => ReactorError::ReducerPanicked(format!("{unit} at {index}: {message}")),
        e => ReactorError::Corrupt(format!("{unit} at {index}: {e}")),
    })?;
    report.rejected = folded.rejected;
    let ops = folded.operations;
    report.appended = ops.len();
    Ok((ops, report))
}

/// The ids of `actions` that effective operations below index `before` carry already (`head`: the unit's revision).
async fn taken_ids(
    shared: &Shared,
    unit: &folio_core::SyncUnit,
    before: u64,
    head: u64,
    actions: &[Action],
) -> Result<std::collections::HashSet<uuid::Uuid>, ReactorError> {
    let ids: Vec<uuid::Uuid> = actions.iter().map(|a| a.id).collect();
    // Only ids and indexes: the divergent tail's own operations (at or past `before`) are not even looked at.
    let found = shared.store.find_action_indexes(unit, &ids, before).await?;
    if found.is_empty() {
        return Ok(Default::default());
    }
    let cuts = folio_core::merge::Cuts::from_skips(shared.store.skips(unit, 0, Some(head)).await?);
    Ok(found
        .into_iter()
        .filter(|&(_, index)| cuts.is_effective(index))
        .map(|(id, _)| id)
        .collect())
}

fn plan_cut(plan: &MergePlan) -> u64 {
    match plan {
        MergePlan::Rebase { cut, .. } => *cut,
        _ => u64::MAX,
    }
}

/// A compression's plan: when the actions named by the job are exactly the end of the effective history, the state
/// before them and the model's compressed form of them (a `NOOP` carries the skip when nothing remains).
async fn plan_compress(
    shared: &Shared,
    key: &crate::view::DocKey,
    doc: &Document,
    tail: &[&Operation],
    job: &Job,
) -> Result<MergePlan, ReactorError> {
    let ids: std::collections::HashSet<uuid::Uuid> = job.actions.iter().map(|a| a.id).collect();
    let start = tail.len().saturating_sub(ids.len());
    let run = &tail[start..];
    if run.len() != ids.len() || run.iter().any(|op| !ids.contains(&op.action.id) || op.error.is_some()) {
        return Ok(MergePlan::Nothing);
    }
    let Some(first) = run.first() else {
        return Ok(MergePlan::Nothing);
    };
    // The tail covers the run's actions, so when the run is all of it, it reaches the start of the log.
    let base_revision = if start == 0 { 0 } else { tail[start - 1].index + 1 };
    let Some(model) = doc.model().cloned() else {
        return Ok(MergePlan::Nothing);
    };
    if job.scope != Scope::Global {
        return Ok(MergePlan::Nothing);
    }
    let base = shared.view.hydrate_at(key, Some(base_revision), None).await?;
    let Some(base) = base else {
        return Ok(MergePlan::Nothing);
    };
    let actions: Vec<Action> = run.iter().map(|op| op.action.clone()).collect();
    // The model's code: a panic leaves the actions as they are.
    let compressed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.compress(&base.state, &actions)));
    let Ok(Some(mut compressed)) = compressed else {
        return Ok(MergePlan::Nothing);
    };
    if compressed.len() >= actions.len() {
        return Ok(MergePlan::Nothing);
    }
    if compressed.is_empty() {
        let last = actions
            .last()
            .cloned()
            .ok_or(ReactorError::Corrupt("empty run".into()))?;
        let mut noop = last;
        noop.action_type = folio_core::document::NOOP.to_owned();
        noop.input = serde_json::json!({});
        compressed.push(noop);
    }
    // The model made its actions from the signed originals (clones with another type or input): each is signed
    // again, as the new action of this replica it is.
    for a in &mut compressed {
        a.signer = None;
        a.signature = None;
    }
    if let Some(key) = &shared.config.replica_key {
        key.sign_all(
            compressed
                .iter_mut()
                .filter(|a| a.replica.as_deref() == Some(key.replica_id())),
        );
    }
    Ok(MergePlan::Rebase {
        base_revision,
        cut: first.index,
        actions: compressed,
    })
}
