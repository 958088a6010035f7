//! Running local jobs: the action-id check that tells a retry from a new action and a reused id from both, and the
//! reducers on the working copy.

use std::collections::HashMap;

use folio_core::{Action, ApplyError, Document, Operation, Scope};

use crate::ReactorError;
use crate::job::{Job, JobKind};
use crate::shared::Shared;
use crate::view::DocKey;

/// Committed operations by scope and action id (the latest occurrence of each).
pub(super) type Known = HashMap<(Scope, uuid::Uuid), Operation>;

/// Looks up the ids of `jobs`' local actions in their units: one query per scope.
pub(super) async fn known_actions(shared: &Shared, key: &DocKey, jobs: &[Job]) -> Result<Known, ReactorError> {
    let mut known = Known::new();
    for scope in [Scope::Global, Scope::Local, Scope::Document] {
        // An id this reactor made for a new action and no job carried before cannot be in the store.
        let ids: Vec<uuid::Uuid> = jobs
            .iter()
            .filter(|j| j.kind == JobKind::Local && j.scope == scope)
            .flat_map(|j| j.actions.iter().map(|a| a.id))
            .filter(|id| !shared.take_minted(id))
            .collect();
        if ids.is_empty() {
            continue;
        }
        for op in shared.store.find_actions(&key.unit(scope), &ids).await? {
            known.insert((scope, op.action.id), op);
        }
    }
    Ok(known)
}

/// What a local job's action ids say about it.
pub(super) enum IdCheck {
    /// None is used yet: run it.
    New,
    /// Every action is committed already with the same content: a retry, answered with these operations.
    Retry(Vec<Operation>),
    /// Its actions wait in this batch for their commit.
    Pending,
}

/// Whether two actions with the same id are the same action: the same type, input and scope. Clocks, authors and
/// causal contexts are the writer's to fill in, so a client's retry may differ there.
fn same_content(a: &Action, b: &Action) -> bool {
    a.action_type == b.action_type && a.input == b.input && a.scope == b.scope
}

/// Action ids are unique in their unit: a job whose actions are all committed with the same content is a retry; an
/// id repeated in the job, used by another action, or committed for only some of the job's actions is refused.
pub(super) fn check_ids(
    job: &Job,
    known: &Known,
    pending: impl Iterator<Item = uuid::Uuid>,
) -> Result<IdCheck, ReactorError> {
    let duplicate = |action_id, reason: &str| ReactorError::DuplicateActionId {
        action_id,
        reason: reason.to_owned(),
    };
    let mut ids = std::collections::HashSet::with_capacity(job.actions.len());
    for action in &job.actions {
        if !ids.insert(action.id) {
            return Err(duplicate(action.id, "is used by two actions of the request"));
        }
    }
    let mut retried = Vec::new();
    for action in &job.actions {
        match known.get(&(job.scope, action.id)) {
            Some(op) if same_content(&op.action, action) => retried.push(op.clone()),
            Some(_) => {
                return Err(duplicate(
                    action.id,
                    "is already used by another action of the document",
                ));
            }
            None => {}
        }
    }
    if retried.is_empty() {
        if pending.into_iter().any(|id| ids.contains(&id)) {
            return Ok(IdCheck::Pending);
        }
        return Ok(IdCheck::New);
    }
    if retried.len() < job.actions.len() {
        let new = job.actions.iter().find(|a| !known.contains_key(&(job.scope, a.id)));
        return Err(duplicate(
            new.map_or(job.actions[0].id, |a| a.id),
            "comes with actions that are committed already: a retry must repeat the request as it was",
        ));
    }
    retried.sort_by_key(|op| op.index);
    Ok(IdCheck::Retry(retried))
}

/// Runs one job's actions on `doc`, returning its operations; on a refusal `doc` may be partly changed.
pub(super) fn run_job(doc: &mut Document, job: &Job, shared: &Shared) -> Result<Vec<Operation>, ReactorError> {
    let scope = job.scope;
    let start = doc.header.revision.get(scope);
    if let Some(expected) = job.expected_revision
        && expected != start
    {
        return Err(ReactorError::RevisionMismatch {
            expected,
            actual: start,
        });
    }
    if scope == Scope::Global && doc.header.deleted {
        return Err(ReactorError::ActionRejected {
            action_index: 0,
            reason: folio_core::Rejection::new("DOCUMENT_DELETED", "the document is deleted"),
        });
    }
    let mut ops = Vec::with_capacity(job.actions.len());
    // Per operation: whether this replica signs its action.
    let mut own = Vec::with_capacity(job.actions.len());
    for (i, action) in job.actions.iter().enumerate() {
        let action = doc.stamp(scope, action.clone(), &shared.config.replica_id, &shared.clock);
        own.push(
            sign_own(&action, doc, scope, shared).map_err(|reason| ReactorError::ActionRejected {
                action_index: i,
                reason,
            })?,
        );
        let op = Operation::new(action, start + i as u64, 0, None, &doc.head(scope));
        match doc.apply(&op, &shared.registry) {
            Ok(()) => ops.push(op),
            Err(e) => return Err(apply_error(e, job, i)),
        }
    }
    // Signed together once the job's actions are made: one signature for up to `BATCH_LEAVES` of them (an
    // operation's hash does not cover the signature, so the operations stay as they were hashed).
    if let Some(key) = &shared.config.replica_key
        && own.contains(&true)
    {
        key.sign_all(
            ops.iter_mut()
                .zip(own)
                .filter_map(|(op, mine)| mine.then_some(&mut op.action)),
        );
    }
    Ok(ops)
}

/// Whether an action this replica authors (stamped with its id, unsigned) is to be signed with its key. An action
/// signed by its author (a client that signs) was left as it came by `stamp`: its clock must then already sort after
/// what the unit holds, since re-stamping it would break its signature.
fn sign_own(
    action: &folio_core::Action,
    doc: &Document,
    scope: folio_core::Scope,
    shared: &Shared,
) -> Result<bool, folio_core::Rejection> {
    if action.is_signed() {
        let latest = doc.seen(scope).0.values().max().copied();
        if latest.is_some_and(|l| action.timestamp() <= l) {
            return Err(folio_core::Rejection::new(
                "CLOCK_BEHIND",
                "a signed action's clock must come after every action the unit holds (it cannot be re-stamped \
                 without breaking its signature): sign it again with a later clock, or push it through sync",
            ));
        }
        return Ok(false);
    }
    Ok(shared
        .config
        .replica_key
        .as_ref()
        .is_some_and(|key| action.replica.as_deref() == Some(key.replica_id())))
}

fn apply_error(e: ApplyError, job: &Job, action_index: usize) -> ReactorError {
    match e {
        ApplyError::NotCreated => ReactorError::DocumentNotFound(job.key.id),
        ApplyError::UnknownDocumentType(t) => ReactorError::UnknownDocumentType(t),
        ApplyError::Rejected(reason) if reason.code == "DOCUMENT_EXISTS" => ReactorError::DocumentExists(job.key.id),
        ApplyError::Rejected(reason) => ReactorError::ActionRejected { action_index, reason },
        ApplyError::ReducerPanicked(message) => {
            ReactorError::ReducerPanicked(format!("action {action_index}: {message}"))
        }
        other => ReactorError::Corrupt(other.to_string()),
    }
}
