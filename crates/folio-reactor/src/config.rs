//! The reactor's settings.

use std::time::Duration;

/// How a [`crate::Reactor`] runs. `Default` suits a server; tests shrink the bounds.
#[derive(Debug, Clone)]
pub struct ReactorConfig {
    /// Jobs that may wait in the queue, over all executors; a submit beyond it fails with `Overloaded`.
    pub queue_capacity: usize,
    /// Executors: documents are spread over them by id; each runs its documents' jobs one at a time, in order.
    pub executors: usize,
    /// The most jobs one executor takes in per group commit.
    pub max_batch_jobs: usize,
    /// Times a job is re-run on a new head after `RevisionMismatch` from the store, before it fails.
    pub max_retries: u32,
    /// Pause before a retry, times the attempt number (bounded at 50 ms).
    pub retry_backoff: Duration,
    /// Bytes of hydrated documents the view keeps cached (LRU).
    pub cache_bytes: usize,
    /// A keyframe is stored each time a document's global revision crosses a multiple of this (0: never), at the
    /// end of the job that crossed it (a job of many actions can put the keyframe past the multiple).
    /// The default, 250, comes from the keyframe sweep of `folio bench rehydrate --keyframe-every K` (figures in
    /// `docs/benchmarks.md`): a cold load's longest tail stays short at every history length, for one copy of the
    /// state every 250 operations.
    pub keyframe_every: u64,
    /// Events buffered per subscriber before the slowest ones are told they lagged.
    pub event_capacity: usize,
    /// Finished jobs whose status is remembered for `job_status`.
    pub job_history: usize,
    /// Documents each executor keeps in its working set.
    pub working_set: usize,
    /// This replica's id, stamped on the actions it authors.
    pub replica_id: String,
    /// The key that signs the actions this replica authors (when it stamps its own id on them); its id must be
    /// `replica_id`. [`crate::Reactor::open`] sets both from the store; `None` (the default): unsigned actions.
    pub replica_key: Option<folio_core::ReplicaKey>,
    /// How far ahead of this replica's wall clock an action's clock may be; an action further ahead is refused
    /// wherever it arrives (a submit, a sync push, the bucket promoter), because a clock in the future would win
    /// every last-writer-wins edit until real time caught up with it. Offline devices are not affected by their
    /// absence (their actions carry the past clocks of when they were made); a device whose own clock runs fast by
    /// more than this has its pushes refused, with nothing lost, until real time catches up or its clock is fixed.
    /// Default 5 minutes (`folio serve --max-clock-skew`).
    pub max_clock_ahead: Duration,
}

impl Default for ReactorConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 10_000,
            executors: 8,
            max_batch_jobs: 1024,
            max_retries: 16,
            retry_backoff: Duration::from_millis(2),
            cache_bytes: 256 * 1024 * 1024,
            keyframe_every: 250,
            event_capacity: 4096,
            job_history: 100_000,
            working_set: 1024,
            replica_id: uuid::Uuid::now_v7().simple().to_string(),
            replica_key: None,
            max_clock_ahead: Duration::from_secs(5 * 60),
        }
    }
}
