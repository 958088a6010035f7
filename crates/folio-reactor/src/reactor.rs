//! The `Reactor` handle: submit actions, read documents, subscribe to events.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use folio_core::document::{CREATE_DOCUMENT, CreateDocumentInput, DELETE_DOCUMENT, SET_NAME};
use folio_core::{Action, Branch, Document, DocumentHeader, DocumentId, HybridClock, ModelRegistry, Scope};
use folio_store::{ListQuery, OperationStore};

use crate::ReactorError;
use crate::config::ReactorConfig;
use crate::event::{EventBus, Subscription};
use crate::executor::Executor;
use crate::follower::Follower;
use crate::job::{Job, JobHandle, JobId, JobKind, JobOutcome, JobStatus, JobTable};
use crate::shared::Shared;
use crate::view::{DocKey, DocumentView};

struct Inner {
    shared: Arc<Shared>,
    /// One bounded queue per executor; `None` once shutdown began.
    queues: RwLock<Option<Vec<mpsc::Sender<Job>>>>,
    executors: Mutex<Vec<JoinHandle<()>>>,
    accepting: AtomicBool,
    /// On a store shared with other nodes: shows their writes to this node's view and subscribers.
    follower: Option<Follower>,
}

/// The engine: actions in, documents out. Cheap to clone, `Send + Sync`; works over any [`OperationStore`].
///
/// Must be created inside a tokio runtime (it spawns its executors).
#[derive(Clone)]
pub struct Reactor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("replica_id", &self.inner.shared.config.replica_id)
            .finish_non_exhaustive()
    }
}

/// A request to change a document: actions of one scope, optionally compare-and-set on that scope's revision.
#[derive(Debug, Clone)]
pub struct Submit {
    /// The document.
    pub document_id: DocumentId,
    /// The branch (`main` by default).
    pub branch: Branch,
    /// The actions, all of one scope. Missing timestamps and replica ids are filled in by the reactor.
    pub actions: Vec<Action>,
    /// When set, the job fails with `RevisionMismatch` unless the scope is at this revision when it runs.
    pub expected_revision: Option<u64>,
}

impl Submit {
    /// Actions for `document_id` on `main`.
    pub fn new(document_id: DocumentId, actions: Vec<Action>) -> Self {
        Self::on(document_id, Branch::default(), actions)
    }

    /// Actions for `document_id` on `branch`.
    pub fn on(document_id: DocumentId, branch: Branch, actions: Vec<Action>) -> Self {
        Self {
            document_id,
            branch,
            actions,
            expected_revision: None,
        }
    }
}

impl Reactor {
    /// A reactor over `store`, running the models of `registry`.
    pub fn new(store: Arc<dyn OperationStore>, registry: Arc<ModelRegistry>, config: ReactorConfig) -> Self {
        let executors = config.executors.max(1);
        let per_queue = (config.queue_capacity / executors).max(1);
        let shared = Arc::new(Shared {
            view: DocumentView::new(
                store.clone(),
                registry.clone(),
                config.cache_bytes,
                config.keyframe_every,
            ),
            bus: EventBus::new(config.event_capacity),
            jobs: JobTable::new(config.job_history),
            store,
            registry,
            config,
            clock: HybridClock::new(),
            write_failure: Mutex::new(None),
            minted: Mutex::new(Default::default()),
        });
        let follower = shared
            .store
            .commit_feed()
            .and_then(|feed| Follower::start(shared.clone(), feed));
        let mut queues = Vec::with_capacity(executors);
        let mut handles = Vec::with_capacity(executors);
        for _ in 0..executors {
            let (tx, rx) = mpsc::channel(per_queue);
            queues.push(tx);
            handles.push(tokio::spawn(Executor::new(shared.clone()).run(rx)));
        }
        Self {
            inner: Arc::new(Inner {
                shared,
                queues: RwLock::new(Some(queues)),
                executors: Mutex::new(handles),
                accepting: AtomicBool::new(true),
                follower,
            }),
        }
    }

    /// A reactor with folio's built-in models and default settings.
    pub fn with_defaults(store: Arc<dyn OperationStore>) -> Self {
        Self::new(store, Arc::new(ModelRegistry::with_builtin()), ReactorConfig::default())
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn OperationStore> {
        &self.inner.shared.store
    }

    /// The models.
    pub fn registry(&self) -> &Arc<ModelRegistry> {
        &self.inner.shared.registry
    }

    /// The read model.
    pub fn view(&self) -> &DocumentView {
        &self.inner.shared.view
    }

    /// The settings.
    pub fn config(&self) -> &ReactorConfig {
        &self.inner.shared.config
    }

    /// The latest action clock (milliseconds) this replica accepts now: its wall clock plus
    /// [`ReactorConfig::max_clock_ahead`]. Every door actions come in by checks it.
    pub fn clock_horizon(&self) -> u64 {
        let ahead = u64::try_from(self.inner.shared.config.max_clock_ahead.as_millis()).unwrap_or(u64::MAX);
        folio_core::clock::system_millis().saturating_add(ahead)
    }

    /// This replica's id (stamped on the actions it authors).
    pub fn replica_id(&self) -> &str {
        &self.inner.shared.config.replica_id
    }

    /// A reactor whose replica id and key are the store's own (kept in the store, the same for every process on
    /// it), so that it signs the actions it authors: the constructor to use for a replica that syncs.
    pub async fn open(
        store: Arc<dyn OperationStore>,
        registry: Arc<ModelRegistry>,
        mut config: ReactorConfig,
    ) -> Result<Self, ReactorError> {
        config.replica_id = store.replica_id().await?;
        config.replica_key = Some(store.replica_key().await?);
        let reactor = Self::new(store, registry, config);
        // On a shared store: other nodes' commits reach this node's subscribers from when this returns.
        if let Some(follower) = &reactor.inner.follower {
            follower.started().await;
        }
        Ok(reactor)
    }

    /// A new action of this replica, stamped by its clock.
    pub fn action(&self, action_type: impl Into<String>, input: Value, scope: Scope) -> Action {
        let mut action = Action::new(action_type, input, scope, self.inner.shared.clock.now());
        action.replica = Some(self.inner.shared.config.replica_id.clone());
        self.inner.shared.mint(action.id);
        action
    }

    /// Jobs waiting in the executors' queues now (the `folio_queue_depth` metric).
    pub fn queue_depth(&self) -> usize {
        let queues = self.inner.queues.read().unwrap_or_else(|e| e.into_inner());
        queues
            .as_ref()
            .map_or(0, |qs| qs.iter().map(|q| q.max_capacity() - q.capacity()).sum())
    }

    /// Queues a job. Fails at once with `Overloaded` when the queue is full, `ShuttingDown` after shutdown began,
    /// `InvalidRequest` for an empty job or actions of several scopes.
    pub fn submit(&self, submit: Submit) -> Result<JobHandle, ReactorError> {
        self.submit_kind(submit, JobKind::Local)
    }

    /// Integrates actions made by other replicas into one unit of a document (`scope` of the actions, all the
    /// same): actions it already has are dropped, the others take their place in the total order, by a rebase when
    /// they sort inside the history. An action the reducer refuses in its merged position is kept, marked with the
    /// reason (see [`crate::Event::Conflict`]); the job does not fail for it. The `document` scope must be
    /// integrated before the others of a document new to this replica.
    pub fn integrate(
        &self,
        document_id: DocumentId,
        branch: Branch,
        actions: Vec<Action>,
    ) -> Result<JobHandle, ReactorError> {
        self.submit_kind(Submit::on(document_id, branch, actions), JobKind::Integrate)
    }

    /// [`Reactor::integrate`], handing the actions back when the queue is full (`Overloaded`), so that a caller
    /// that waits and tries again needs no copy of them (an integration can carry tens of thousands).
    pub fn try_integrate(
        &self,
        document_id: DocumentId,
        branch: Branch,
        actions: Vec<Action>,
    ) -> Result<JobHandle, (ReactorError, Option<Vec<Action>>)> {
        self.submit_kind_returning(Submit::on(document_id, branch, actions), JobKind::Integrate)
    }

    /// Replaces this replica's actions `actions` (by id), which must never have been sent to another replica, by
    /// the model's compressed form, when they are the end of the unit's effective history (otherwise nothing
    /// changes). The outcome's `merge` report says how many operations were appended.
    pub fn compress(
        &self,
        document_id: DocumentId,
        branch: Branch,
        actions: Vec<Action>,
    ) -> Result<JobHandle, ReactorError> {
        self.submit_kind(Submit::on(document_id, branch, actions), JobKind::Compress)
    }

    fn submit_kind(&self, submit: Submit, kind: JobKind) -> Result<JobHandle, ReactorError> {
        self.submit_kind_returning(submit, kind).map_err(|(e, _)| e)
    }

    /// [`Reactor::submit_kind`]; a job the full queue refused gives its actions back with `Overloaded`.
    fn submit_kind_returning(
        &self,
        submit: Submit,
        kind: JobKind,
    ) -> Result<JobHandle, (ReactorError, Option<Vec<Action>>)> {
        let Submit {
            document_id,
            branch,
            actions,
            expected_revision,
        } = submit;
        let scope = self.check_actions(&actions).map_err(|e| (e, None))?;
        for action in &actions {
            self.inner.shared.clock.observe(action.timestamp());
        }
        let key = DocKey::new(document_id, branch);
        let (reply, done) = oneshot::channel();
        let id = uuid::Uuid::now_v7();
        let job = Job {
            id,
            key,
            scope,
            actions,
            expected_revision,
            attempts: Vec::new(),
            reply,
            kind,
            report: None,
        };
        self.enqueue(job)?;
        Ok(JobHandle { id, done })
    }

    /// The scope of a job's `actions`, or why they cannot make one: none, several scopes, or a clock far ahead.
    fn check_actions(&self, actions: &[Action]) -> Result<Scope, ReactorError> {
        let Some(first) = actions.first() else {
            return Err(ReactorError::InvalidRequest("a job needs at least one action".into()));
        };
        let scope = first.scope;
        if actions.iter().any(|a| a.scope != scope) {
            return Err(ReactorError::InvalidRequest(
                "all actions of one request must be of the same scope".into(),
            ));
        }
        // A clock far ahead would drag this replica's clock (and every later action) with it.
        let horizon = self.clock_horizon();
        if let Some(a) = actions.iter().find(|a| a.timestamp_utc_ms > horizon) {
            return Err(ReactorError::InvalidRequest(format!(
                "action {}: its clock ({} ms) is more than {} s ahead of this replica's",
                a.id,
                a.timestamp_utc_ms,
                self.inner.shared.config.max_clock_ahead.as_secs()
            )));
        }
        Ok(scope)
    }

    /// Queues `job` on its executor; a full queue hands its actions back with `Overloaded`.
    fn enqueue(&self, job: Job) -> Result<(), (ReactorError, Option<Vec<Action>>)> {
        if !self.inner.accepting.load(Ordering::Acquire) {
            return Err((ReactorError::ShuttingDown, None));
        }
        let queues = self.inner.queues.read().unwrap_or_else(|e| e.into_inner());
        let Some(queues) = queues.as_ref() else {
            return Err((ReactorError::ShuttingDown, None));
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        job.key.id.hash(&mut hasher);
        let queue = &queues[(hasher.finish() % queues.len() as u64) as usize];
        let id = job.id;
        self.inner.shared.jobs.set(id, JobStatus::Queued);
        queue.try_send(job).map_err(|e| {
            self.inner.shared.jobs.remove(&id);
            match e {
                mpsc::error::TrySendError::Full(job) => (ReactorError::Overloaded, Some(job.actions)),
                mpsc::error::TrySendError::Closed(_) => (ReactorError::ShuttingDown, None),
            }
        })
    }

    /// Submits actions and waits for the job.
    pub async fn apply(&self, submit: Submit) -> Result<JobOutcome, ReactorError> {
        self.submit(submit)?.wait().await
    }

    /// Creates a document of `document_type` (with `id`, or a new one) and waits for it.
    pub async fn create_document(
        &self,
        document_type: &str,
        name: &str,
        id: Option<DocumentId>,
    ) -> Result<Arc<Document>, ReactorError> {
        self.create_document_owned(document_type, name, id, None).await
    }

    /// [`Reactor::create_document`], recording `owner` (a principal) as the document's owner.
    pub async fn create_document_owned(
        &self,
        document_type: &str,
        name: &str,
        id: Option<DocumentId>,
        owner: Option<&str>,
    ) -> Result<Arc<Document>, ReactorError> {
        if self.registry().get(document_type).is_none() {
            return Err(ReactorError::UnknownDocumentType(document_type.to_owned()));
        }
        let id = id.unwrap_or_default();
        let input = CreateDocumentInput {
            document_type: document_type.to_owned(),
            name: name.to_owned(),
            initial_state: None,
            owner: owner.map(str::to_owned),
        };
        let action = self.action(
            CREATE_DOCUMENT,
            serde_json::to_value(input).unwrap_or(Value::Null),
            Scope::Document,
        );
        self.apply(Submit::new(id, vec![action])).await?;
        self.get(id, &Branch::default())
            .await?
            .ok_or(ReactorError::DocumentNotFound(id))
    }

    /// Renames a document.
    pub async fn set_name(&self, id: DocumentId, name: &str) -> Result<JobOutcome, ReactorError> {
        let action = self.action(SET_NAME, serde_json::json!({ "name": name }), Scope::Document);
        self.apply(Submit::new(id, vec![action])).await
    }

    /// Marks a document deleted (an operation; its history stays).
    pub async fn delete_document(&self, id: DocumentId) -> Result<JobOutcome, ReactorError> {
        let action = self.action(DELETE_DOCUMENT, serde_json::json!({}), Scope::Document);
        self.apply(Submit::new(id, vec![action])).await
    }

    /// The status of a job.
    pub fn job_status(&self, id: JobId) -> Result<JobStatus, ReactorError> {
        self.inner.shared.jobs.get(&id).ok_or(ReactorError::JobNotFound(id))
    }

    /// The document at its head; `None` when it was never created.
    pub async fn get(&self, id: DocumentId, branch: &Branch) -> Result<Option<Arc<Document>>, ReactorError> {
        self.inner.shared.view.get(&DocKey::new(id, branch.clone())).await
    }

    /// The document as it was at global revision `revision`.
    pub async fn get_at(
        &self,
        id: DocumentId,
        branch: &Branch,
        revision: u64,
    ) -> Result<Option<Document>, ReactorError> {
        self.inner
            .shared
            .view
            .get_at(&DocKey::new(id, branch.clone()), revision)
            .await
    }

    /// The document once its global revision reaches `min_revision` (a job's consistency token), waiting up to
    /// `timeout`.
    pub async fn get_min(
        &self,
        id: DocumentId,
        branch: &Branch,
        min_revision: u64,
        timeout: Duration,
    ) -> Result<Arc<Document>, ReactorError> {
        self.inner
            .shared
            .view
            .wait_for(&DocKey::new(id, branch.clone()), min_revision, timeout)
            .await
    }

    /// Headers of documents, by type, paged by id.
    pub async fn list(&self, query: &ListQuery) -> Result<Vec<DocumentHeader>, ReactorError> {
        Ok(self.inner.shared.store.list_headers(query).await?)
    }

    /// Events from now on.
    pub fn subscribe(&self) -> Subscription {
        self.inner.shared.bus.subscribe()
    }

    /// Whether this reactor can serve: it accepts jobs, its store answers a read within `timeout`, its last
    /// commit did not fail (a store that refuses writes, say for a full disk, is not ready until one succeeds), and
    /// on a store shared with other nodes its follower knows where it starts (their commits from then on reach this
    /// node's subscribers). `Err` says why not.
    pub async fn ready(&self, timeout: std::time::Duration) -> Result<(), String> {
        if !self.inner.accepting.load(Ordering::Acquire) {
            return Err("the reactor is shutting down".into());
        }
        if let Some(follower) = &self.inner.follower
            && tokio::time::timeout(timeout, follower.started()).await.is_err()
        {
            return Err("the follower of the other nodes' commits has not started".into());
        }
        match tokio::time::timeout(timeout, self.inner.shared.store.max_ordinal()).await {
            Err(_) => return Err(format!("the store did not answer within {} ms", timeout.as_millis())),
            Ok(Err(e)) => return Err(format!("the store does not answer: {e}")),
            Ok(Ok(_)) => {}
        }
        let failure = self
            .inner
            .shared
            .write_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match failure {
            Some(reason) => Err(format!("the store refused the last commit: {reason}")),
            None => Ok(()),
        }
    }

    /// Stops taking jobs, lets the executors finish every queued job (completed or visibly failed), and waits
    /// for them. Everything acknowledged is in the store when this returns.
    pub async fn shutdown(&self) {
        self.inner.accepting.store(false, Ordering::Release);
        let queues = self.inner.queues.write().unwrap_or_else(|e| e.into_inner()).take();
        drop(queues);
        let handles: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.inner.executors.lock().unwrap_or_else(|e| e.into_inner()));
        for handle in handles {
            let _ = handle.await;
        }
        if let Some(follower) = &self.inner.follower {
            follower.stop().await;
        }
        self.inner.shared.view.flush().await;
    }
}
