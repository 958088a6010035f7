//! Jobs: a batch of actions for one document and scope, queued, run by an executor, completed or failed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::oneshot;
use uuid::Uuid;

use folio_core::{Action, Operation, Scope};

use crate::ReactorError;
use crate::view::DocKey;

/// A job's id.
pub type JobId = Uuid;

/// Where a job is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "status")]
pub enum JobStatus {
    /// Waiting in the queue.
    Queued,
    /// Being run by an executor.
    Running,
    /// Committed.
    Completed {
        /// The unit's revision after the job.
        revision: u64,
    },
    /// Failed: nothing was written.
    Failed {
        /// The error.
        #[serde(skip)]
        error: ReactorError,
    },
}

/// A completed job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobOutcome {
    /// The job.
    pub job_id: JobId,
    /// The unit's revision after the job: a consistency token reads can wait for.
    pub revision: u64,
    /// The operations it committed (shared with the commit's events).
    pub operations: Arc<[Operation]>,
    /// Their global ordinals.
    pub ordinals: Vec<u64>,
    /// Times the job was re-run because another writer moved the head first (0: committed at the first try).
    pub retries: u32,
    /// For an integration or a compression ([`crate::Reactor::integrate`], [`crate::Reactor::compress`]): what it
    /// did.
    pub merge: Option<MergeReport>,
}

/// What integrating actions from other replicas (or compressing unsent ones) did to a unit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MergeReport {
    /// Actions that were not in the unit yet.
    pub new: usize,
    /// Actions it already had (dropped).
    pub duplicates: usize,
    /// Whether the history was rebased (a skip over a divergent tail) rather than appended to.
    pub rebased: bool,
    /// Operations appended.
    pub appended: usize,
    /// Actions kept in the history but refused by the reducer in their merged position: `(action id, reason)`.
    pub rejected: Vec<(Uuid, String)>,
}

/// What a job asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobKind {
    /// Actions authored here: stamped, applied on the head, refused as a whole when the reducer refuses one.
    Local,
    /// Actions from other replicas: integrated in the total order (a rebase when they sort inside the history); a
    /// refused one is kept, marked with its reason.
    Integrate,
    /// Actions of this replica never sent anywhere (by id): replaced by their compressed form when they are the end
    /// of the unit's history.
    Compress,
}

/// A submitted job: await it for its outcome.
#[derive(Debug)]
pub struct JobHandle {
    /// The job's id, for [`crate::Reactor::job_status`].
    pub id: JobId,
    pub(crate) done: oneshot::Receiver<Result<JobOutcome, ReactorError>>,
}

impl JobHandle {
    /// Waits for the job to complete or fail.
    pub async fn wait(self) -> Result<JobOutcome, ReactorError> {
        self.done.await.unwrap_or(Err(ReactorError::ShuttingDown))
    }
}

/// A job in an executor's hands.
pub(crate) struct Job {
    pub id: JobId,
    pub key: DocKey,
    pub scope: Scope,
    pub actions: Vec<Action>,
    pub expected_revision: Option<u64>,
    pub attempts: Vec<String>,
    pub reply: oneshot::Sender<Result<JobOutcome, ReactorError>>,
    pub kind: JobKind,
    /// Set by the executor for integrations and compressions.
    pub report: Option<MergeReport>,
}

/// Statuses of queued, running and recently finished jobs. Finished ones are forgotten oldest first beyond the
/// configured history.
pub(crate) struct JobTable {
    inner: Mutex<JobTableInner>,
    history: usize,
}

struct JobTableInner {
    statuses: HashMap<JobId, JobStatus>,
    finished: VecDeque<JobId>,
}

impl JobTable {
    pub fn new(history: usize) -> Self {
        Self {
            inner: Mutex::new(JobTableInner {
                statuses: HashMap::new(),
                finished: VecDeque::new(),
            }),
            history,
        }
    }

    pub fn set(&self, id: JobId, status: JobStatus) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let finished = matches!(status, JobStatus::Completed { .. } | JobStatus::Failed { .. });
        inner.statuses.insert(id, status);
        if finished {
            inner.finished.push_back(id);
            while inner.finished.len() > self.history {
                if let Some(old) = inner.finished.pop_front() {
                    inner.statuses.remove(&old);
                }
            }
        }
    }

    pub fn remove(&self, id: &JobId) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).statuses.remove(id);
    }

    pub fn get(&self, id: &JobId) -> Option<JobStatus> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .statuses
            .get(id)
            .cloned()
    }
}
