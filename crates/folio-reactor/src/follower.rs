//! The follower: on a store that several nodes share (PostgreSQL), shows this node the writes of the others, and
//! puts every commit event of the node's bus in ordinal (commit) order.
//!
//! The store's [`CommitFeed`] wakes it when another node commits (LISTEN/NOTIFY); it also wakes on a timer, because
//! notices can be lost (a dropped connection). Each time it reads the log after its cursor by ordinal
//! ([`CommitFeed::read_since_marked`]); each run of operations committed elsewhere is folded into the
//! [`crate::DocumentView`] (or drops the cached document when it does not follow it) and published as
//! `OperationsCommitted`, so WebSocket subscribers see writes made through any node.
//!
//! * **Complete**: a read by ordinal answers only final ordinals (on PostgreSQL, those below the oldest running
//!   transaction: see the backend), so reading by ordinal from the cursor misses nothing, whether or not a notice
//!   arrived.
//! * **In order per unit, no double publication**: the executor's own commit events do not go to the bus directly:
//!   the bus hands them to the follower (its *sequencer*), which publishes each at its place among the other nodes'
//!   operations. Without that, this node's write that builds on another node's (after a `RevisionMismatch` and a
//!   reload) could reach subscribers before the write it builds on. An own event that directly follows the cursor is
//!   published at once, without reading the store; one of this handle's operations for which no event arrives within
//!   [`OWN_WAIT`] (written through the store, not through the reactor) is published from the log.
//! * **At most one read a [`NOTICE_INTERVAL`] for notices**: while other nodes commit without pause, each of their
//!   commits is a notice; a notice within that interval of the last read is answered by a read at its end, which
//!   takes every commit made meanwhile. Two nodes writing flat out on this machine made the followers' reads a
//!   fifth of the server's time (1,818 reads a 20,000-operation run, against 894 with the interval:
//!   docs/benchmarks.md, "Two nodes: the followers' reads"); the price is at most that interval of delay for another
//!   node's commit under load, none for a notice after a quiet spell.
//! * The price: on a shared store a commit event reaches subscribers just after the job completes rather than just
//!   before.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use folio_core::{DocumentId, Operation, SyncUnit};
use folio_store::{CommitFeed, Committed, FeedEntry, StoreError};

use crate::event::{Event, commit_events};
use crate::shared::Shared;
use crate::view::DocKey;

/// How often the follower reads the log when no notice came.
pub const POLL: Duration = Duration::from_millis(500);
/// The shortest time between two reads of the log on notices (see the module docs).
pub const NOTICE_INTERVAL: Duration = Duration::from_millis(10);
/// How long an own event may wait for the ordinals before it to come as own events too, before the log is read.
pub const GAP_WAIT: Duration = Duration::from_millis(20);
/// How long the follower waits for the executor's event of an operation committed through this node.
pub const OWN_WAIT: Duration = Duration::from_secs(2);
/// Operations read per page.
const PAGE: usize = 512;
/// Own events waiting for their turn before the bus publishes them at once instead.
const SEQUENCER_CAPACITY: usize = 65_536;
/// Document types remembered (for the `documentType` of events), cleared when full.
const TYPE_CACHE: usize = 65_536;

/// The running follower of a reactor; stops it when dropped.
pub(crate) struct Follower {
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
    /// True once the follower knows where it starts: every commit after that point reaches the bus.
    started: watch::Receiver<bool>,
}

impl Follower {
    /// Starts following `feed` for the reactor's `shared` parts. Must run before the executors commit anything.
    pub fn start(shared: Arc<Shared>, feed: Arc<dyn CommitFeed>) -> Option<Self> {
        let own = shared.bus.install_sequencer(SEQUENCER_CAPACITY)?;
        let (stop, stopped) = watch::channel(false);
        let (start, started) = watch::channel(false);
        let task = tokio::spawn(run(shared, feed, own, stopped, start));
        Some(Self {
            stop,
            task: Mutex::new(Some(task)),
            started,
        })
    }

    /// Waits until the follower read where it starts (the store's last ordinal then): commits of other nodes made
    /// after this returns reach this node's subscribers.
    pub async fn started(&self) {
        let mut started = self.started.clone();
        let _ = started.wait_for(|s| *s).await;
    }

    /// Stops the follower (after it published what it holds) and waits for it.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }
}

/// One own commit event waiting for its turn, with the deletion event that followed it, if any.
struct OwnEvent {
    last_ordinal: u64,
    events: Vec<Event>,
}

struct State {
    shared: Arc<Shared>,
    feed: Arc<dyn CommitFeed>,
    /// Own commit events from the executors, through the bus.
    own_rx: mpsc::Receiver<Event>,
    /// Own events not yet published, by first ordinal.
    own: BTreeMap<u64, OwnEvent>,
    /// The first ordinal of the last own event received (a deletion event joins it).
    last_own: Option<(u64, DocumentId)>,
    /// Every ordinal up to this one was published (or committed before the follower started).
    cursor: u64,
    types: HashMap<DocumentId, Arc<str>>,
}

async fn run(
    shared: Arc<Shared>,
    feed: Arc<dyn CommitFeed>,
    own_rx: mpsc::Receiver<Event>,
    mut stopped: watch::Receiver<bool>,
    started: watch::Sender<bool>,
) {
    let mut notices: BoxStream<'static, ()> = feed.notices();
    let cursor = loop {
        match shared.store.max_ordinal().await {
            Ok(max) => break max,
            Err(e) => {
                tracing::warn!("follower: cannot read the last ordinal: {e}; retrying");
                tokio::time::sleep(POLL).await;
            }
        }
    };
    let _ = started.send(true);
    let mut state = State {
        shared,
        feed,
        own_rx,
        own: BTreeMap::new(),
        last_own: None,
        cursor,
        types: HashMap::new(),
    };
    let mut read_log = true;
    // Since when an own event waits for ordinals before it (a gap).
    let mut gap_since: Option<tokio::time::Instant> = None;
    let mut gate = NoticeGate::new(tokio::time::Instant::now());
    loop {
        state.publish_ready_own().await;
        if read_log {
            if let Err(e) = state.catch_up().await {
                tracing::warn!(
                    "follower: reading the log after ordinal {} failed: {e}; retrying",
                    state.cursor
                );
            }
            gate.read(tokio::time::Instant::now());
            read_log = false;
            // An own event still held after the read waits another GAP_WAIT, not no time at all.
            gap_since = None;
        }
        // A gap is usually the other executors' share of the same group commit, whose events follow at once: the
        // log is read only when it lasts (or a notice says another node committed).
        gap_since = match (state.own.is_empty(), gap_since) {
            (true, _) => None,
            (false, None) => Some(tokio::time::Instant::now()),
            (false, since) => since,
        };
        let wake_at = match gap_since {
            Some(since) => since + GAP_WAIT,
            None => tokio::time::Instant::now() + POLL,
        };
        let wake_at = gate.deadline().map_or(wake_at, |due| wake_at.min(due));
        tokio::select! {
            _ = stopped.changed() => break,
            event = state.own_rx.recv() => match event {
                Some(event) => state.receive_own(event).await,
                None => break,
            },
            notice = notices.next() => {
                read_log |= gate.notice(tokio::time::Instant::now());
                if notice.is_none() {
                    // The store's listener is gone; the timer still catches up.
                    notices = futures::stream::pending().boxed();
                }
            }
            _ = tokio::time::sleep_until(wake_at) => read_log = true,
        }
    }
    // Stopping: publish what is held, in order, so no acknowledged write's event is lost.
    while let Ok(event) = state.own_rx.try_recv() {
        state.receive_own(event).await;
    }
    let _ = state.catch_up().await;
    for (_, own) in std::mem::take(&mut state.own) {
        for event in own.events {
            state.shared.bus.publish_now(event);
        }
    }
}

/// When a notice is answered by a read: at once when the last read is [`NOTICE_INTERVAL`] old, else when it will
/// be (one read then takes every commit noticed meanwhile).
struct NoticeGate {
    last_read: tokio::time::Instant,
    /// A notice came since the last read and waits for the interval to pass.
    waiting: bool,
}

impl NoticeGate {
    fn new(now: tokio::time::Instant) -> Self {
        Self {
            last_read: now,
            waiting: false,
        }
    }

    /// A notice came at `now`: whether to read at once (otherwise [`NoticeGate::deadline`] says when).
    fn notice(&mut self, now: tokio::time::Instant) -> bool {
        let due = now >= self.last_read + NOTICE_INTERVAL;
        self.waiting |= !due;
        due
    }

    /// When a waiting notice is due, if one waits.
    fn deadline(&self) -> Option<tokio::time::Instant> {
        self.waiting.then_some(self.last_read + NOTICE_INTERVAL)
    }

    /// The log was read at `now`: it answered every notice before.
    fn read(&mut self, now: tokio::time::Instant) {
        self.last_read = now;
        self.waiting = false;
    }
}

impl State {
    /// Takes an own event from the executor: held for its turn, or published at once when it has no ordinals.
    async fn receive_own(&mut self, event: Event) {
        match &event {
            Event::OperationsCommitted { ordinals, unit, .. } => match (ordinals.first(), ordinals.last()) {
                (Some(&first), Some(&last)) => {
                    self.last_own = Some((first, unit.document_id));
                    self.own.insert(
                        first,
                        OwnEvent {
                            last_ordinal: last,
                            events: vec![event],
                        },
                    );
                }
                _ => self.shared.bus.publish_now(event),
            },
            // The deletion and conflict events of a commit follow its operations.
            Event::DocumentDeleted { document_id }
            | Event::Conflict {
                unit: SyncUnit { document_id, .. },
                ..
            } => {
                let held = self
                    .last_own
                    .filter(|(_, id)| id == document_id)
                    .and_then(|(first, _)| self.own.get_mut(&first));
                match held {
                    Some(own) => own.events.push(event),
                    None => self.shared.bus.publish_now(event),
                }
            }
            _ => self.shared.bus.publish_now(event),
        }
    }

    /// Publishes own events that come next (or that were committed before the follower started).
    async fn publish_ready_own(&mut self) {
        while let Some(entry) = self.own.first_entry() {
            if *entry.key() > self.cursor + 1 {
                return;
            }
            let own = entry.remove();
            self.cursor = self.cursor.max(own.last_ordinal);
            for event in own.events {
                self.shared.bus.publish_now(event);
            }
        }
    }

    /// Reads the log after the cursor and publishes everything in ordinal order.
    async fn catch_up(&mut self) -> Result<(), StoreError> {
        loop {
            self.publish_ready_own().await;
            let page = self.feed.read_since_marked(self.cursor, PAGE).await?;
            let Some(last) = page.last().map(FeedEntry::ordinal) else {
                return Ok(());
            };
            // A run: consecutive operations of one unit, published together.
            let mut run: Vec<Committed> = Vec::new();
            // After one wait for a missing own event timed out, the rest of the page does not wait again.
            let mut waited_out = false;
            for entry in page {
                if entry.ordinal() <= self.cursor {
                    continue; // published with an own event already
                }
                let ordinal = match entry {
                    FeedEntry::Elsewhere(committed) => {
                        if run.last().is_some_and(|prev| prev.unit != committed.unit) {
                            self.flush(&mut run).await;
                        }
                        run.push(committed);
                        continue;
                    }
                    FeedEntry::Own { ordinal } => ordinal,
                };
                self.flush(&mut run).await;
                // Everything before this entry is published: the log was read in ordinal order.
                self.cursor = self.cursor.max(ordinal - 1);
                let held = if waited_out {
                    while let Ok(event) = self.own_rx.try_recv() {
                        self.receive_own(event).await;
                    }
                    self.own.contains_key(&ordinal)
                } else {
                    self.wait_for_own(ordinal).await
                };
                if held {
                    self.publish_ready_own().await;
                } else {
                    waited_out = true;
                    tracing::warn!(
                        "follower: ordinal {ordinal} was committed through this node's store but no reactor event \
                         came for it; publishing it from the log"
                    );
                    // The feed gives own commits as ordinals: the operation is read back, this once.
                    let read = self.shared.store.read_since(ordinal - 1, 1).await?;
                    run.extend(read.into_iter().filter(|c| c.ordinal == ordinal));
                }
            }
            self.flush(&mut run).await;
            self.cursor = self.cursor.max(last);
        }
    }

    /// Waits (at most [`OWN_WAIT`]) until the own event starting at `ordinal` is held; false on timeout.
    async fn wait_for_own(&mut self, ordinal: u64) -> bool {
        let deadline = tokio::time::Instant::now() + OWN_WAIT;
        while !self.own.contains_key(&ordinal) {
            match tokio::time::timeout_at(deadline, self.own_rx.recv()).await {
                Ok(Some(event)) => self.receive_own(event).await,
                Ok(None) | Err(_) => return false,
            }
        }
        true
    }

    /// Folds `run` (operations of one unit committed elsewhere, in order) into the view and publishes it.
    async fn flush(&mut self, run: &mut Vec<Committed>) {
        let Some(first) = run.first() else { return };
        let unit = first.unit.clone();
        let key = DocKey::new(unit.document_id, unit.branch.clone());
        let ordinals: Vec<u64> = run.iter().map(|c| c.ordinal).collect();
        let last = ordinals.last().copied().unwrap_or(self.cursor);
        let operations: Vec<Operation> = run.drain(..).map(|c| c.operation).collect();
        self.shared.view.apply_committed(&key, &operations);
        let document_type = self.document_type(&key).await;
        for event in commit_events(unit, document_type, operations.into(), ordinals.into()) {
            self.shared.bus.publish_now(event);
        }
        self.cursor = self.cursor.max(last);
    }

    async fn document_type(&mut self, key: &DocKey) -> Arc<str> {
        if let Some(t) = self.types.get(&key.id) {
            return t.clone();
        }
        let found = match self.shared.view.cached(key) {
            Some(doc) => Some(doc.header.document_type.clone()),
            None => match self.shared.store.header(key.id, &key.branch).await {
                Ok(header) => header.map(|h| h.document_type),
                Err(e) => {
                    tracing::warn!("follower: cannot read the header of {}: {e}", key.id);
                    None
                }
            },
        };
        let Some(found) = found.filter(|t| !t.is_empty()) else {
            return Arc::from("");
        };
        if self.types.len() >= TYPE_CACHE {
            self.types.clear();
        }
        let found: Arc<str> = found.into();
        self.types.insert(key.id, found.clone());
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A burst of notices is answered by one read at once and one at the interval's end, not one each; a notice
    /// after a quiet spell is read at once.
    #[test]
    fn notices_are_read_at_most_once_an_interval() {
        let start = tokio::time::Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut gate = NoticeGate::new(start);
        let mut reads = Vec::new();
        // Notices every millisecond for 50 ms, the follower reading whenever it is told to or a deadline passes.
        for ms in 10..60 {
            if gate.deadline().is_some_and(|due| due <= at(ms)) {
                gate.read(at(ms));
                reads.push(ms);
            }
            if gate.notice(at(ms)) {
                gate.read(at(ms));
                reads.push(ms);
            }
        }
        assert_eq!(reads, vec![10, 20, 30, 40, 50], "one read an interval");
        assert_eq!(gate.deadline(), Some(at(60)), "the last notices wait for the next read");
        gate.read(at(60));
        assert_eq!(gate.deadline(), None);
        assert!(gate.notice(at(500)), "after a quiet spell a notice is read at once");
        gate.read(at(500));
        assert!(!gate.notice(at(505)));
        assert_eq!(gate.deadline(), Some(at(510)));
    }
}
