//! The executor: one task per shard of documents. It takes every job that is waiting, runs the reducers on its
//! working copy of each document, and commits all the resulting appends in one `append_batch` (group commit). On
//! `RevisionMismatch` (another process wrote first) it reloads and re-runs the job, a bounded number of times.

mod local;
mod merge;
mod working;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use folio_core::{Document, Operation, Scope, SyncUnit};
use folio_store::{AppendRequest, StoreError};

use crate::ReactorError;
use crate::event::{Event, commit_events};
use crate::job::{Job, JobKind, JobOutcome, JobStatus};
use crate::shared::Shared;
use crate::view::DocKey;

use local::{IdCheck, check_ids, known_actions, run_job};
use merge::merge;
use working::WorkingSet;

pub(crate) struct Executor {
    shared: Arc<Shared>,
    working: WorkingSet,
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
    unit: SyncUnit,
    expected_revision: u64,
    /// The operations of the append, gathered while the group's jobs run; moved once into the shared slice that
    /// the store, the commit's events and the jobs' outcomes all read (no copy of an operation on the way).
    operations: Vec<Operation>,
    jobs: Vec<(Job, std::ops::Range<usize>)>,
    previous_global: u64,
}

impl Executor {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            working: WorkingSet::default(),
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
        let mut requests = Vec::with_capacity(pending.len());
        let mut committing = Vec::with_capacity(pending.len());
        for mut p in pending {
            let ops: Arc<[Operation]> = std::mem::take(&mut p.operations).into();
            requests.push(AppendRequest {
                unit: p.unit.clone(),
                expected_revision: p.expected_revision,
                operations: ops.clone(),
            });
            committing.push((p, ops));
        }
        let operations: usize = requests.iter().map(|r| r.operations.len()).sum();
        let started = std::time::Instant::now();
        let results = self.shared.store.append_batch(requests).await;
        metrics::histogram!("folio_group_commit_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("folio_group_commit_operations").record(operations as f64);
        for ((p, ops), result) in committing.into_iter().zip(results) {
            self.settle(p, ops, result).await;
        }
    }

    /// Runs a document's jobs on its working copy and adds their appends to `pending`.
    async fn prepare_group(&mut self, group: Group, pending: &mut Vec<Pending>) {
        let key = group.key;
        let mut slot = match self.working.load(&key, &self.shared).await {
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
                    .filter(|p| p.unit.scope == job.scope)
                    .flat_map(|p| p.operations.iter().map(|op| op.action.id));
                match check_ids(&job, &known, pending_ids) {
                    Ok(IdCheck::New) => {}
                    Ok(IdCheck::Retry(operations)) => {
                        let outcome = JobOutcome {
                            job_id: job.id,
                            revision: operations.last().map_or(0, |op| op.index + 1),
                            operations: operations.into(),
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
                            operations: Arc::from([]),
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
                    let slot = match by_scope.iter().position(|p| p.unit.scope == job.scope) {
                        Some(i) => i,
                        None => {
                            by_scope.push(Pending {
                                key: key.clone(),
                                unit: key.unit(job.scope),
                                expected_revision: ops.first().map_or(0, |op| op.index),
                                operations: Vec::new(),
                                jobs: Vec::new(),
                                previous_global,
                            });
                            by_scope.len() - 1
                        }
                    };
                    let p = &mut by_scope[slot];
                    let start = p.operations.len();
                    p.operations.extend(ops);
                    let end = p.operations.len();
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
                        .flat_map(|(slot, range)| &by_scope[*slot].operations[range.clone()]);
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

    async fn settle(&mut self, p: Pending, ops: Arc<[Operation]>, result: Result<folio_store::Appended, StoreError>) {
        let shared = self.shared.clone();
        match result {
            Ok(appended) => {
                if let Ok(mut failure) = shared.write_failure.lock()
                    && failure.is_some()
                {
                    *failure = None;
                }
                let mut completions = Vec::with_capacity(p.jobs.len());
                shared.view.apply_committed(&p.key, &ops);
                let rebased = ops.iter().any(|op| op.skip > 0);
                let document_scope = p.unit.scope == Scope::Document;
                let document_type = match self.working.get(&p.key).and_then(|w| w.doc.as_ref()) {
                    Some(doc) => {
                        if p.unit.scope == Scope::Global {
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
                let ordinals = appended.ordinals;
                for (mut job, range) in p.jobs {
                    // A job that made the whole append (an integration, a lone job) shares it; one of several
                    // gets a copy of its own operations.
                    let job_ops: Arc<[Operation]> = if range == (0..ops.len()) {
                        ops.clone()
                    } else {
                        ops[range.clone()].into()
                    };
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
                // Events go out before the jobs complete: whoever sees a completed job and subscribes afterwards
                // does not receive its operations again.
                for event in commit_events(p.unit, document_type.into(), ops, ordinals.into()) {
                    shared.bus.publish(event);
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

fn complete(shared: &Shared, job: Job, outcome: JobOutcome) {
    metrics::counter!("folio_jobs_total", "outcome" => "completed").increment(1);
    shared.jobs.set(
        job.id,
        JobStatus::Completed {
            revision: outcome.revision,
        },
    );
    let _ = job.reply.send(Ok(outcome));
}

fn fail(shared: &Shared, job: Job, error: ReactorError) {
    metrics::counter!("folio_jobs_total", "outcome" => "failed").increment(1);
    shared.bus.publish(Event::JobFailed {
        job_id: job.id,
        document_id: job.key.id,
        code: error.code(),
        message: error.to_string(),
    });
    shared.jobs.set(job.id, JobStatus::Failed { error: error.clone() });
    let _ = job.reply.send(Err(error));
}
