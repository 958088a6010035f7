//! A replica: a reactor on its own store, serving pulls and pushes to others and integrating what it receives. The
//! I/O half of sync, around the pure functions of [`crate::protocol`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use folio_core::{DocumentId, HlcTimestamp, ModelRegistry, Scope, SyncUnit};
use folio_reactor::{JobHandle, Reactor, ReactorConfig, ReactorError};
use folio_store::{Committed, OperationStore, SinceFilter};

use crate::SyncError;
use crate::protocol::{
    Filter, PeerState, PullRequest, PullResponse, PushRequest, PushResponse, RejectedAction, RemoteInfo, SyncEntry,
    batches, entries_of,
};

/// The meta key of the latest clock of an own action ever sent to any remote (`<millis>.<counter>`): only own
/// actions with a later clock may be compressed. A clock, not an ordinal: a rebase re-appends sent actions with new
/// ordinals, but their clocks stay.
pub const SENT_KEY: &str = "sync/sent-clock";

/// The meta key set once this replica compressed its outbox: its logs may then hold actions that must never leave.
pub const COMPRESSED_KEY: &str = "sync/compressed";

/// The meta key listing the remotes (replica ids, comma-separated) this replica syncs with.
pub const REMOTES_KEY: &str = "sync/remotes";

/// Operations read at once while building an outbox or serving a pull.
const READ_PAGE: usize = 10_000;

/// Integration jobs in flight at once.
const JOBS_IN_FLIGHT: usize = 256;

/// A replica of folio documents that syncs: a [`Reactor`] on its store, whose replica id is the store's.
#[derive(Clone)]
pub struct Replica {
    reactor: Reactor,
    require_signatures: bool,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica").field("id", &self.id()).finish()
    }
}

impl Replica {
    /// A replica on `store` (its replica id is the store's, made on first use).
    pub async fn open(
        store: Arc<dyn OperationStore>,
        registry: Arc<ModelRegistry>,
        config: ReactorConfig,
    ) -> Result<Self, SyncError> {
        Ok(Self::from_reactor(Reactor::open(store, registry, config).await?))
    }

    /// A replica around a reactor made with [`Reactor::open`] (so that its replica id is the store's).
    pub fn from_reactor(reactor: Reactor) -> Self {
        Self {
            reactor,
            require_signatures: false,
        }
    }

    /// This replica, refusing unsigned actions from others too (`folio serve --require-signatures`). Signed
    /// actions are verified whatever this says: a bad signature is always refused.
    pub fn requiring_signatures(mut self, require: bool) -> Self {
        self.require_signatures = require;
        self
    }

    /// Whether unsigned actions from others are refused.
    pub fn signatures_required(&self) -> bool {
        self.require_signatures
    }

    /// The one signature check of every action that arrives from another replica (a push received, a pull's
    /// answer) or from a client ([`folio_core::signature::check`] under this replica's policy).
    pub fn check_signature(&self, action: &folio_core::Action) -> Result<(), folio_core::SignatureError> {
        folio_core::signature::check(action, self.require_signatures)
    }

    /// The replica id.
    pub fn id(&self) -> &str {
        self.reactor.replica_id()
    }

    /// The reactor, to act on documents.
    pub fn reactor(&self) -> &Reactor {
        &self.reactor
    }

    fn store(&self) -> &Arc<dyn OperationStore> {
        self.reactor.store()
    }

    /// What this replica tells remotes about itself.
    pub fn info(&self, max_body_bytes: usize) -> RemoteInfo {
        RemoteInfo {
            replica: self.id().to_owned(),
            max_body_bytes,
        }
    }

    /// The persisted state of this replica's sync with `remote` (a remote replica id).
    pub async fn peer(&self, remote: &str) -> Result<PeerState, SyncError> {
        let read = |field: &'static str| async move {
            let value = self.store().get_meta(&PeerState::key(remote, field)).await?;
            Ok::<u64, SyncError>(value.and_then(|v| v.parse().ok()).unwrap_or(0))
        };
        Ok(PeerState {
            pushed: read("pushed").await?,
            pulled: read("pulled").await?,
        })
    }

    /// Persists the state of the sync with `remote`.
    pub async fn save_peer(&self, remote: &str, state: &PeerState) -> Result<(), SyncError> {
        let store = self.store();
        store
            .put_meta(&PeerState::key(remote, "pushed"), &state.pushed.to_string())
            .await?;
        store
            .put_meta(&PeerState::key(remote, "pulled"), &state.pulled.to_string())
            .await?;
        Ok(())
    }

    async fn sent(&self) -> Result<HlcTimestamp, SyncError> {
        let text = self.store().get_meta(SENT_KEY).await?;
        Ok(text
            .and_then(|t| {
                let (ms, counter) = t.split_once('.')?;
                Some(HlcTimestamp::new(ms.parse().ok()?, counter.parse().ok()?))
            })
            .unwrap_or_default())
    }

    /// Records, before they leave, that the own actions among `entries` were sent: they are never compressed
    /// afterwards.
    pub async fn mark_sent(&self, entries: &[SyncEntry]) -> Result<(), SyncError> {
        let latest = entries
            .iter()
            .filter(|e| e.action.replica.as_deref() == Some(self.id()))
            .map(|e| e.action.timestamp())
            .max();
        if let Some(latest) = latest
            && latest > self.sent().await?
        {
            self.store()
                .put_meta(SENT_KEY, &format!("{}.{}", latest.millis, latest.counter))
                .await?;
        }
        Ok(())
    }

    /// The lowest acknowledgement mark of all remotes this replica pushed to (0 when none).
    async fn least_pushed(&self) -> Result<u64, SyncError> {
        let remotes = self.store().get_meta(REMOTES_KEY).await?.unwrap_or_default();
        let mut least: Option<u64> = None;
        for remote in remotes.split(',').filter(|r| !r.is_empty()) {
            let pushed = self.peer(remote).await?.pushed;
            least = Some(least.map_or(pushed, |l| l.min(pushed)));
        }
        Ok(least.unwrap_or(0))
    }

    /// Remembers `remote` among the remotes this replica syncs with.
    pub async fn remember_remote(&self, remote: &str) -> Result<(), SyncError> {
        let remotes = self.store().get_meta(REMOTES_KEY).await?.unwrap_or_default();
        if !remotes.split(',').any(|r| r == remote) {
            let joined = if remotes.is_empty() {
                remote.to_owned()
            } else {
                format!("{remotes},{remote}")
            };
            self.store().put_meta(REMOTES_KEY, &joined).await?;
        }
        Ok(())
    }

    /// Every own effective operation committed after `after`, in ordinal order, read in pages (for outboxes: they
    /// are bounded by what was not acknowledged), and the last ordinal considered.
    async fn own_since(&self, after: u64) -> Result<(Vec<Committed>, u64), SyncError> {
        self.authored_since(self.id(), after).await
    }

    /// [`Replica::own_since`] for the actions of `author`.
    async fn authored_since(&self, author: &str, after: u64) -> Result<(Vec<Committed>, u64), SyncError> {
        let filter = SinceFilter {
            effective: true,
            exclude_replica: None,
            only_replica: Some(author),
        };
        let mut all = Vec::new();
        let mut cursor = after;
        loop {
            let page = self.store().read_since_filtered(cursor, READ_PAGE, &filter).await?;
            cursor = page.cursor;
            all.extend(page.committed);
            if page.scanned < READ_PAGE {
                break;
            }
        }
        Ok((all, cursor))
    }

    /// The document types of `documents` (from the header index), for filters by type.
    async fn types_of(&self, committed: &[Committed]) -> Result<HashMap<DocumentId, Option<String>>, SyncError> {
        let mut types = HashMap::new();
        for c in committed {
            if let std::collections::hash_map::Entry::Vacant(slot) = types.entry(c.unit.document_id) {
                let header = self.store().header(c.unit.document_id, &c.unit.branch).await?;
                slot.insert(header.map(|h| h.document_type));
            }
        }
        Ok(types)
    }

    async fn admitted(&self, committed: &[Committed], filter: &Filter) -> Result<HashMap<DocumentId, bool>, SyncError> {
        if filter.is_all() {
            return Ok(HashMap::new());
        }
        let types = self.types_of(committed).await?;
        Ok(types
            .into_iter()
            .map(|(id, t)| (id, filter.admits(id, t.as_deref())))
            .collect())
    }

    /// The own replicated actions after local ordinal `after` that `filter` lets through, with their ordinals, and
    /// the last ordinal considered.
    pub async fn outbox(&self, after: u64, filter: &Filter) -> Result<(Vec<(u64, SyncEntry)>, u64), SyncError> {
        let (committed, upto) = self.own_since(after).await?;
        let admitted = self.admitted(&committed, filter).await?;
        let admit = |d: DocumentId| admitted.get(&d).copied().unwrap_or(filter.is_all());
        Ok((entries_of(committed, &|_| true, None, Some(self.id()), &admit), upto))
    }

    /// The random replica id this store had before it had a key, if it had one
    /// ([`folio_store::FORMER_REPLICA_ID_KEY`]): its actions made then carry that id, unsigned.
    pub async fn former_id(&self) -> Result<Option<String>, SyncError> {
        Ok(self.store().get_meta(folio_store::FORMER_REPLICA_ID_KEY).await?)
    }

    /// The actions made under the former replica id after local ordinal `after` that `filter` lets through: a round
    /// pushes them as that replica (unsigned) before its own, so an upgrade leaves nothing unsent.
    pub async fn former_outbox(
        &self,
        former: &str,
        after: u64,
        filter: &Filter,
    ) -> Result<(Vec<(u64, SyncEntry)>, u64), SyncError> {
        let (committed, upto) = self.authored_since(former, after).await?;
        let admitted = self.admitted(&committed, filter).await?;
        let admit = |d: DocumentId| admitted.get(&d).copied().unwrap_or(filter.is_all());
        Ok((entries_of(committed, &|_| true, None, Some(former), &admit), upto))
    }

    /// Compresses this replica's own actions that were never sent (after [`SENT_KEY`]), unit by unit, where the
    /// model knows how and they are the end of the unit's history. Returns the number of operations saved.
    pub async fn compress_outbox(&self) -> Result<usize, SyncError> {
        let sent = self.sent().await?;
        // Unsent actions were committed after the last acknowledgement of every remote; reading from the start
        // would be exact but long, so read what no remote acknowledged (the smallest pushed mark).
        let (committed, _) = self.own_since(self.least_pushed().await?).await?;
        let mut runs: BTreeMap<SyncUnit, Vec<folio_core::Action>> = BTreeMap::new();
        for c in &committed {
            // `own_since` gave only own effective operations.
            if c.unit.scope == Scope::Global && c.operation.action.timestamp() > sent && c.operation.error.is_none() {
                runs.entry(c.unit.clone()).or_default().push(c.operation.action.clone());
            }
        }
        let mut saved = 0;
        for (unit, actions) in runs {
            if actions.len() < 2 {
                continue;
            }
            let before = actions.len();
            let handle = self.reactor.compress(unit.document_id, unit.branch.clone(), actions)?;
            // Mark first: from now on the outbox and pulls must leave the compressed originals out.
            self.store().put_meta(COMPRESSED_KEY, "1").await?;
            let outcome = handle.wait().await?;
            if let Some(report) = outcome.merge
                && report.rebased
            {
                saved += before.saturating_sub(report.appended);
            }
        }
        Ok(saved)
    }

    /// Answers a pull: entries committed here after `request.after`, effective ones only, without the puller's
    /// own, in commit order.
    pub async fn serve_pull(&self, request: &PullRequest) -> Result<PullResponse, SyncError> {
        let limit = request.limit.clamp(1, READ_PAGE);
        // The store leaves out what is not effective and the puller's own actions, mostly without decoding them.
        let filter = SinceFilter {
            effective: true,
            exclude_replica: request.exclude.as_deref(),
            only_replica: None,
        };
        let page = self.store().read_since_filtered(request.after, limit, &filter).await?;
        let (committed, cursor) = (page.committed, page.cursor);
        let more = page.scanned == limit && cursor < self.store().max_ordinal().await?;
        let admitted = self.admitted(&committed, &request.filter).await?;
        let admit = |d: DocumentId| admitted.get(&d).copied().unwrap_or(request.filter.is_all());
        let entries: Vec<SyncEntry> = entries_of(committed, &|_| true, request.exclude.as_deref(), None, &admit)
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        // Own actions that leave are sent: never compressed afterwards.
        self.mark_sent(&entries).await?;
        Ok(PullResponse { entries, cursor, more })
    }

    /// Integrates entries from other replicas (a push received, or a pull's answer): unit by unit, documents
    /// created first, durably before it returns.
    ///
    /// Each action's signature is checked first ([`Replica::check_signature`]): one refused is listed in
    /// `rejected` with its code (`BAD_SIGNATURE`, `SIGNATURE_REQUIRED`), stored nowhere, and the others go on.
    pub async fn integrate(&self, entries: Vec<SyncEntry>) -> Result<PushResponse, SyncError> {
        let mut response = PushResponse::default();
        let mut checked = Vec::with_capacity(entries.len());
        // Verification is CPU work (~40 µs an action): off the async workers, on every core for a large batch.
        let require = self.require_signatures;
        let (entries, answers) = tokio::task::spawn_blocking(move || {
            let actions: Vec<&folio_core::Action> = entries.iter().map(|e| &e.action).collect();
            let answers = folio_core::signature::check_all(&actions, require);
            (entries, answers)
        })
        .await
        .map_err(|e| match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Cancelled: only when the runtime shuts down.
            Err(_) => SyncError::Reactor(ReactorError::ShuttingDown),
        })?;
        for (entry, answer) in entries.into_iter().zip(answers) {
            match answer {
                Ok(()) => checked.push(entry),
                Err(e) => response.rejected.push(RejectedAction {
                    document_id: entry.document_id,
                    action_id: entry.action.id,
                    reason: format!("{}: {e}", e.code()),
                }),
            }
        }
        let entries = checked;
        let (documents, others): (Vec<_>, Vec<_>) = batches(entries)
            .into_iter()
            .partition(|(u, _)| u.scope == Scope::Document);
        for phase in [documents, others] {
            let mut phase = phase.into_iter().peekable();
            while phase.peek().is_some() {
                let mut handles: Vec<(DocumentId, JobHandle)> = Vec::with_capacity(JOBS_IN_FLIGHT);
                for (unit, actions) in phase.by_ref().take(JOBS_IN_FLIGHT) {
                    let handle = self.submit_integration(&unit, actions).await?;
                    handles.push((unit.document_id, handle));
                }
                for (document_id, handle) in handles {
                    let outcome = handle.wait().await?;
                    if let Some(report) = outcome.merge {
                        response.new += report.new;
                        response.duplicates += report.duplicates;
                        response
                            .rejected
                            .extend(report.rejected.into_iter().map(|(action_id, reason)| RejectedAction {
                                document_id,
                                action_id,
                                reason,
                            }));
                    }
                }
            }
        }
        Ok(response)
    }

    async fn submit_integration(
        &self,
        unit: &SyncUnit,
        mut actions: Vec<folio_core::Action>,
    ) -> Result<JobHandle, SyncError> {
        if unit.scope == Scope::Local {
            return Err(SyncError::Protocol(format!("{unit}: the local scope is never synced")));
        }
        if let Some(a) = actions.iter().find(|a| a.scope != unit.scope) {
            return Err(SyncError::Protocol(format!(
                "action {} is not of the scope of {unit}",
                a.id
            )));
        }
        let mut pause = Duration::from_millis(1);
        loop {
            match self
                .reactor
                .try_integrate(unit.document_id, unit.branch.clone(), actions)
            {
                Ok(handle) => return Ok(handle),
                // The queue is full: the actions come back, to be tried again after a pause.
                Err((ReactorError::Overloaded, Some(back))) => {
                    actions = back;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
}

/// The other side of a sync round: a `folio serve` over HTTP ([`crate::HttpRemote`]) or, in tests and embedded
/// use, another replica in the same process.
#[async_trait]
pub trait Remote: Send + Sync {
    /// Who the remote is.
    async fn info(&self) -> Result<RemoteInfo, SyncError>;
    /// Sends own actions; the answer means they are durably integrated there.
    async fn push(&self, request: &PushRequest) -> Result<PushResponse, SyncError>;
    /// Asks for what the remote committed after a cursor.
    async fn pull(&self, request: &PullRequest) -> Result<PullResponse, SyncError>;
    /// Live delivery: what the remote commits after `after` (but `exclude`'s actions), as it commits it, each item
    /// shaped like a pull's answer. `None` when the remote has no live channel (the caller polls).
    async fn live(
        &self,
        after: u64,
        exclude: &str,
        filter: &Filter,
    ) -> Result<Option<futures::stream::BoxStream<'static, Result<PullResponse, SyncError>>>, SyncError> {
        let _ = (after, exclude, filter);
        Ok(None)
    }
}

/// A replica in the same process is a remote (tests, and apps that keep two stores).
#[async_trait]
impl Remote for Replica {
    async fn info(&self) -> Result<RemoteInfo, SyncError> {
        Ok(self.info(usize::MAX))
    }

    async fn push(&self, request: &PushRequest) -> Result<PushResponse, SyncError> {
        if request
            .entries
            .iter()
            .any(|e| e.action.replica.as_deref() != Some(&request.replica))
        {
            return Err(SyncError::Protocol(
                "a push carries only the pushing replica's actions".into(),
            ));
        }
        self.integrate(request.entries.clone()).await
    }

    async fn pull(&self, request: &PullRequest) -> Result<PullResponse, SyncError> {
        self.serve_pull(request).await
    }
}
