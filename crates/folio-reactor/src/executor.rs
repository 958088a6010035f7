//! The executor: one task per shard of documents. It takes every job that is waiting, runs the reducers on its
//! working copy of each document, and commits all the resulting appends in one `append_batch` (group commit). On
//! `RevisionMismatch` (another process wrote first) it reloads and re-runs the job, a bounded number of times.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use futures::TryStreamExt;

use folio_core::merge::{MergePlan, effective, plan_merge, tail_covers};
use folio_core::{Action, ApplyError, Document, Operation, Scope, order_key};
use folio_store::{AppendRequest, StoreError};

use crate::ReactorError;
use crate::event::Event;
use crate::job::{Job, JobKind, JobOutcome, JobStatus, MergeReport};
use crate::reactor::Shared;
use crate::view::DocKey;

/// A document's working copy: the committed state plus nothing else between batches.
struct Working {
    doc: Option<Document>,
    tick: u64,
}

pub(crate) struct Executor {
    shared: Arc<Shared>,
    working: HashMap<DocKey, Working>,
    tick: u64,
    retry: VecDeque<Job>,
}

/// Jobs of one document in one batch, and the appends they make.
struct Group {
    key: DocKey,
    jobs: Vec<Job>,
}

/// An append of the batch and the jobs whose operations it carries (each with its range in `operations`).
struct Pending {
    key: DocKey,
    request: AppendRequest,
    jobs: Vec<(Job, std::ops::Range<usize>)>,
    previous_global: u64,
}

impl Executor {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            working: HashMap::new(),
            tick: 0,
            retry: VecDeque::new(),
        }
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        loop {
            let mut batch: Vec<Job> = Vec::new();
            if self.retry.is_empty() {
                match rx.recv().await {
                    Some(job) => batch.push(job),
                    None => break,
                }
            } else {
                let attempt = self.retry.iter().map(|j| j.attempts.len()).max().unwrap_or(1) as u32;
                let pause = (self.shared.config.retry_backoff * attempt).min(Duration::from_millis(50));
                tokio::time::sleep(pause).await;
                batch.extend(self.retry.drain(..));
            }
            while batch.len() < self.shared.config.max_batch_jobs {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.run_batch(batch).await;
        }
        // The channel is closed and drained: finish the retries still owed.
        while !self.retry.is_empty() {
            let batch: Vec<Job> = self.retry.drain(..).collect();
            self.run_batch(batch).await;
        }
    }

    async fn working_doc(&mut self, key: &DocKey) -> Result<&mut Working, ReactorError> {
        self.tick += 1;
        if !self.working.contains_key(key) {
            let doc = self.shared.view.get(key).await?.map(|d| Document::clone(&d));
            if self.working.len() >= self.shared.config.working_set.max(1)
                && let Some(oldest) = self.working.iter().min_by_key(|(_, w)| w.tick).map(|(k, _)| k.clone())
            {
                self.working.remove(&oldest);
            }
            self.working.insert(key.clone(), Working { doc, tick: 0 });
        }
        let w = self
            .working
            .get_mut(key)
            .ok_or(ReactorError::Store("working set".into()))?;
        w.tick = self.tick;
        Ok(w)
    }

    async fn run_batch(&mut self, batch: Vec<Job>) {
        let mut groups: Vec<Group> = Vec::new();
        let mut index: HashMap<DocKey, usize> = HashMap::new();
        for job in batch {
            self.shared.jobs.set(job.id, JobStatus::Running);
            match index.get(&job.key) {
                Some(&i) => groups[i].jobs.push(job),
                None => {
                    index.insert(job.key.clone(), groups.len());
                    groups.push(Group {
                        key: job.key.clone(),
                        jobs: vec![job],
                    });
                }
            }
        }
        let mut pending: Vec<Pending> = Vec::new();
        for group in groups {
            self.prepare_group(group, &mut pending).await;
        }
        if pending.is_empty() {
            return;
        }
        let requests = pending.iter().map(|p| p.request.clone()).collect();
        let results = self.shared.store.append_batch(requests).await;
        for (p, result) in pending.into_iter().zip(results) {
            self.settle(p, result).await;
        }
    }

    /// Runs a document's jobs on its working copy and adds their appends to `pending`.
    async fn prepare_group(&mut self, group: Group, pending: &mut Vec<Pending>) {
        let key = group.key;
        let mut slot = match self.working_doc(&key).await {
            Ok(w) => w.doc.take(),
            Err(e) => {
                for job in group.jobs {
                    fail(&self.shared, job, e.clone());
                }
                return;
            }
        };
        // The committed operations that carry the ids of the group's local actions: how a retried action is told
        // from a new one, and a reused id from both.
        let known = match known_actions(&self.shared, &key, &group.jobs).await {
            Ok(known) => known,
            Err(e) => {
                if let Some(w) = self.working.get_mut(&key) {
                    w.doc = slot;
                }
                for job in group.jobs {
                    fail(&self.shared, job, e.clone());
                }
                return;
            }
        };
        let previous_global = slot.as_ref().map_or(0, |d| d.header.revision.global);
        // Operations accepted so far in this group, in order, as ranges of the pending appends (`by_scope[slot]`):
        // replayed onto a fresh copy after a rejection.
        let mut accepted: Vec<(usize, std::ops::Range<usize>)> = Vec::new();
        let mut by_scope: Vec<Pending> = Vec::new();
        for mut job in group.jobs {
            let doc = slot.get_or_insert_with(|| Document::empty(key.id, key.branch.clone()));
            if job.kind == JobKind::Local {
                let pending_ids = by_scope
                    .iter()
                    .filter(|p| p.request.unit.scope == job.scope)
                    .flat_map(|p| p.request.operations.iter().map(|op| op.action.id));
                match check_ids(&job, &known, pending_ids) {
                    Ok(IdCheck::New) => {}
                    Ok(IdCheck::Retry(operations)) => {
                        let outcome = JobOutcome {
                            job_id: job.id,
                            revision: operations.last().map_or(0, |op| op.index + 1),
                            operations,
                            ordinals: Vec::new(),
                            retries: job.attempts.len() as u32,
                            merge: None,
                        };
                        complete(&self.shared, job, outcome);
                        continue;
                    }
                    // Its actions are in this batch, not yet committed: the next batch answers it as a retry (or
                    // runs it, if that commit fails).
                    Ok(IdCheck::Pending) => {
                        self.retry.push_back(job);
                        continue;
                    }
                    Err(e) => {
                        fail(&self.shared, job, e);
                        continue;
                    }
                }
            }
            let result = match job.kind {
                JobKind::Local => run_job(doc, &job, &self.shared),
                // A merge reads the committed tail of the log: it waits for the next batch when this one already
                // holds uncommitted operations of the document.
                JobKind::Integrate | JobKind::Compress if !by_scope.is_empty() => {
                    self.retry.push_back(job);
                    continue;
                }
                JobKind::Integrate | JobKind::Compress => match merge(&self.shared, &key, doc, &job).await {
                    Ok((ops, report)) if ops.is_empty() => {
                        let outcome = JobOutcome {
                            job_id: job.id,
                            revision: doc.header.revision.get(job.scope),
                            operations: Vec::new(),
                            ordinals: Vec::new(),
                            retries: job.attempts.len() as u32,
                            merge: Some(report),
                        };
                        complete(&self.shared, job, outcome);
                        continue;
                    }
                    Ok((ops, report)) => {
                        job.report = Some(report);
                        Ok(ops)
                    }
                    Err(e) => {
                        // The copy may be half rewound: drop it, the next job reloads.
                        fail(&self.shared, job, e);
                        slot = None;
                        accepted.clear();
                        continue;
                    }
                },
            };
            match result {
                Ok(ops) => {
                    let slot = match by_scope.iter().position(|p| p.request.unit.scope == job.scope) {
                        Some(i) => i,
                        None => {
                            by_scope.push(Pending {
                                key: key.clone(),
                                request: AppendRequest {
                                    unit: key.unit(job.scope),
                                    expected_revision: ops.first().map_or(0, |op| op.index),
                                    operations: Vec::new(),
                                },
                                jobs: Vec::new(),
                                previous_global,
                            });
                            by_scope.len() - 1
                        }
                    };
                    let p = &mut by_scope[slot];
                    let start = p.request.operations.len();
                    p.request.operations.extend(ops);
                    let end = p.request.operations.len();
                    p.jobs.push((job, start..end));
                    accepted.push((slot, start..end));
                }
                Err(e) => {
                    fail(&self.shared, job, e);
                    // The reducer may have changed the copy before refusing: rebuild it from the committed
                    // document and the operations accepted before this job.
                    let mut fresh = match self.shared.view.get(&key).await {
                        Ok(d) => d.map(|d| Document::clone(&d)),
                        Err(_) => None,
                    };
                    let mut rebuilt = true;
                    let replay = accepted
                        .iter()
                        .flat_map(|(slot, range)| &by_scope[*slot].request.operations[range.clone()]);
                    for op in replay {
                        let doc = fresh.get_or_insert_with(|| Document::empty(key.id, key.branch.clone()));
                        if doc.apply(op, &self.shared.registry).is_err() {
                            rebuilt = false;
                            break;
                        }
                    }
                    // A copy that cannot be rebuilt (the view moved under us) is dropped; the commit decides.
                    slot = if rebuilt { fresh } else { None };
                }
            }
        }
        if let Some(w) = self.working.get_mut(&key) {
            w.doc = slot;
        }
        pending.extend(by_scope);
    }

    async fn settle(&mut self, p: Pending, result: Result<folio_store::Appended, StoreError>) {
        let shared = self.shared.clone();
        match result {
            Ok(appended) => {
                if let Ok(mut failure) = shared.write_failure.lock()
                    && failure.is_some()
                {
                    *failure = None;
                }
                let ops = p.request.operations;
                let mut completions = Vec::with_capacity(p.jobs.len());
                shared.view.apply_committed(&p.key, &ops);
                let rebased = ops.iter().any(|op| op.skip > 0);
                let document_scope = p.request.unit.scope == Scope::Document;
                let document_type = match self.working.get(&p.key).and_then(|w| w.doc.as_ref()) {
                    Some(doc) => {
                        if p.request.unit.scope == Scope::Global {
                            if rebased {
                                // Later reads start past the skip: a single pass again.
                                shared.view.keyframe_now(&p.key, doc).await;
                            } else {
                                shared.view.maybe_keyframe(&p.key, doc, p.previous_global).await;
                            }
                        }
                        doc.header.document_type.clone()
                    }
                    None => String::new(),
                };
                // Events go out before the jobs complete: whoever sees a completed job and subscribes afterwards
                // does not receive its operations again.
                let deleted = p.request.unit.scope == Scope::Document
                    && ops
                        .iter()
                        .any(|op| op.action.action_type == folio_core::document::DELETE_DOCUMENT);
                let ordinals = appended.ordinals;
                for (mut job, range) in p.jobs {
                    let job_ops = ops[range.clone()].to_vec();
                    let revision = job_ops.last().map_or(appended.revision, |op| op.index + 1);
                    let outcome = JobOutcome {
                        job_id: job.id,
                        revision,
                        operations: job_ops,
                        ordinals: ordinals.get(range).map(<[u64]>::to_vec).unwrap_or_default(),
                        retries: job.attempts.len() as u32,
                        merge: job.report.take(),
                    };
                    completions.push((job, outcome));
                }
                let conflicts: Vec<Event> = ops
                    .iter()
                    .filter_map(|op| {
                        op.error.as_ref().map(|reason| Event::Conflict {
                            unit: p.request.unit.clone(),
                            index: op.index,
                            action_id: op.action.id,
                            reason: reason.clone(),
                        })
                    })
                    .collect();
                shared.bus.publish(Event::OperationsCommitted {
                    unit: p.request.unit,
                    document_type: document_type.into(),
                    operations: ops.into(),
                    ordinals: ordinals.into(),
                });
                if deleted {
                    shared.bus.publish(Event::DocumentDeleted { document_id: p.key.id });
                }
                for conflict in conflicts {
                    shared.bus.publish(conflict);
                }
                for (job, outcome) in completions {
                    complete(&shared, job, outcome);
                }
                if rebased && document_scope {
                    // A rebase of the document scope may have replayed the creation: reload the copy from the log
                    // rather than trust the rewound one.
                    self.working.remove(&p.key);
                }
            }
            Err(StoreError::RevisionMismatch { expected, actual, .. }) => {
                // Another writer moved the head: reload and re-run every job of this append.
                self.working.remove(&p.key);
                shared.view.invalidate(&p.key);
                for (mut job, _) in p.jobs {
                    job.attempts.push(format!(
                        "attempt {}: expected revision {expected}, store at {actual}",
                        job.attempts.len() + 1
                    ));
                    if job.attempts.len() > shared.config.max_retries as usize {
                        let attempts = std::mem::take(&mut job.attempts);
                        fail(&shared, job, ReactorError::RetriesExhausted { attempts });
                    } else {
                        shared.jobs.set(job.id, JobStatus::Queued);
                        self.retry.push_back(job);
                    }
                }
            }
            Err(e) => {
                self.working.remove(&p.key);
                shared.view.invalidate(&p.key);
                if !matches!(e, StoreError::InvalidOperations { .. }) {
                    *shared.write_failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                }
                let error = ReactorError::from(e);
                for (job, _) in p.jobs {
                    fail(&shared, job, error.clone());
                }
            }
        }
    }
}

/// Committed operations by scope and action id (the latest occurrence of each).
type Known = HashMap<(Scope, uuid::Uuid), Operation>;

/// Looks up the ids of `jobs`' local actions in their units: one query per scope.
async fn known_actions(shared: &Shared, key: &DocKey, jobs: &[Job]) -> Result<Known, ReactorError> {
    let mut known = Known::new();
    for scope in [Scope::Global, Scope::Local, Scope::Document] {
        let ids: Vec<uuid::Uuid> = jobs
            .iter()
            .filter(|j| j.kind == JobKind::Local && j.scope == scope)
            .flat_map(|j| j.actions.iter().map(|a| a.id))
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
enum IdCheck {
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
fn check_ids(job: &Job, known: &Known, pending: impl Iterator<Item = uuid::Uuid>) -> Result<IdCheck, ReactorError> {
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
fn run_job(doc: &mut Document, job: &Job, shared: &Shared) -> Result<Vec<Operation>, ReactorError> {
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
    for (i, action) in job.actions.iter().enumerate() {
        let action = stamp(doc, scope, action.clone(), shared);
        let op = Operation::new(action, start + i as u64, 0, None, &doc.head(scope));
        match doc.apply(&op, &shared.registry) {
            Ok(()) => ops.push(op),
            Err(e) => return Err(apply_error(e, job, i)),
        }
    }
    Ok(ops)
}

/// Makes a local action this replica's: its replica id when it has none, the causal context of what the unit has
/// integrated, and a clock after everything in the unit (a client's clock that lags is advanced), so the effective
/// history stays sorted by the total order.
fn stamp(doc: &Document, scope: Scope, mut action: Action, shared: &Shared) -> Action {
    let me = &shared.config.replica_id;
    let seen = doc.seen(scope);
    if let Some(latest) = seen.0.values().max().copied() {
        shared.clock.observe(latest);
        if action.timestamp() <= latest {
            let now = shared.clock.now();
            action.timestamp_utc_ms = now.millis;
            action.counter = now.counter;
        }
    }
    let author = action.replica.get_or_insert_with(|| me.clone()).clone();
    if action.context.is_empty() {
        action.context = seen.without(&author);
    }
    action
}

/// The most operations of a unit's tail read at once while looking for the common prefix of a merge.
const TAIL_STEP: u64 = 256;

/// Plans and applies an integration or a compression on `doc` (the working copy at the unit's committed head):
/// returns the operations to append (none when there is nothing to do) and the report.
async fn merge(
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
    let mut step = TAIL_STEP.min(head.max(1));
    let tail_ops = loop {
        let from = head.saturating_sub(step);
        let ops: Vec<Operation> = shared.store.read(&unit, from, Some(head)).try_collect().await?;
        if ops.len() as u64 != head - from {
            return Err(ReactorError::Corrupt(format!(
                "{unit}: read {} operations of {}",
                ops.len(),
                head - from
            )));
        }
        let covered = tail_covers(&effective(&ops), from, min_incoming);
        if covered {
            break ops;
        }
        step = step.saturating_mul(4);
    };
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
    // An action id belongs to the first action in the total order that carries it: ids taken before the merged run
    // (with other content: exact duplicates were dropped by the plan) and ids seen earlier in the run mark the later
    // action rejected, kept in the history like any refusal.
    let mut taken = taken_ids(shared, &unit, head - skip, head, &actions).await?;
    let mut ops = Vec::with_capacity(actions.len());
    for (i, action) in actions.into_iter().enumerate() {
        shared.clock.observe(action.timestamp());
        let index = head + i as u64;
        let skip = if i == 0 { skip } else { 0 };
        let op = Operation::new(action, index, skip, None, &doc.head(scope));
        let folded = if taken.insert(op.action.id) {
            doc.fold(&op, true, &shared.registry)
        } else {
            Err(ApplyError::Rejected(folio_core::Rejection::new(
                folio_core::merge::DUPLICATE_ACTION_ID,
                format!(
                    "action id {} is used by an earlier action of the document",
                    op.action.id
                ),
            )))
        };
        let op = match folded {
            Ok(()) => op,
            Err(ApplyError::Rejected(reason)) => {
                // Kept in the history, marked: its index is taken and the state does not change.
                let reason = reason.to_string();
                report.rejected.push((op.action.id, reason.clone()));
                let marked = Operation::new(op.action, index, skip, Some(reason), &doc.head(scope));
                doc.fold(&marked, true, &shared.registry)
                    .map_err(|e| ReactorError::Corrupt(format!("{unit} at {index}: {e}")))?;
                marked
            }
            Err(ApplyError::NotCreated) => return Err(ReactorError::DocumentNotFound(key.id)),
            Err(ApplyError::ReducerPanicked(message)) => {
                return Err(ReactorError::ReducerPanicked(format!("{unit} at {index}: {message}")));
            }
            Err(e) => return Err(ReactorError::Corrupt(format!("{unit} at {index}: {e}"))),
        };
        ops.push(op);
    }
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
    let found: Vec<Operation> = shared
        .store
        .find_actions(unit, &ids)
        .await?
        .into_iter()
        .filter(|op| op.index < before)
        .collect();
    if found.is_empty() {
        return Ok(Default::default());
    }
    let cuts = folio_core::merge::Cuts::from_skips(shared.store.skips(unit, 0, Some(head)).await?);
    Ok(found
        .into_iter()
        .filter(|op| cuts.is_effective(op.index))
        .map(|op| op.action.id)
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
    Ok(MergePlan::Rebase {
        base_revision,
        cut: first.index,
        actions: compressed,
    })
}

fn complete(shared: &Shared, job: Job, outcome: JobOutcome) {
    shared.jobs.set(
        job.id,
        JobStatus::Completed {
            revision: outcome.revision,
        },
    );
    let _ = job.reply.send(Ok(outcome));
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

fn fail(shared: &Shared, job: Job, error: ReactorError) {
    shared.bus.publish(Event::JobFailed {
        job_id: job.id,
        document_id: job.key.id,
        code: error.code(),
        message: error.to_string(),
    });
    shared.jobs.set(job.id, JobStatus::Failed { error: error.clone() });
    let _ = job.reply.send(Err(error));
}
