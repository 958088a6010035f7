//! The event bus: what was committed, on async-broadcast. Writers never wait for subscribers: a subscriber that
//! falls behind by more than the bus's capacity loses the oldest events and is told how many it missed
//! ([`Received::Lagged`]); it then catches up from the store by ordinal ([`folio_store::OperationStore::read_since`]).

use std::sync::{Arc, OnceLock};

use async_broadcast::{InactiveReceiver, Receiver, RecvError, Sender};
use tokio::sync::mpsc;

use folio_core::{DocumentId, Operation, SyncUnit};

/// Something that happened in the reactor.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// Operations were committed to a unit, in index order.
    OperationsCommitted {
        /// The unit.
        unit: SyncUnit,
        /// The document's type.
        document_type: Arc<str>,
        /// The operations.
        operations: Arc<[Operation]>,
        /// Their global ordinals.
        ordinals: Arc<[u64]>,
    },
    /// A job failed and wrote nothing.
    JobFailed {
        /// The job.
        job_id: uuid::Uuid,
        /// Its document.
        document_id: DocumentId,
        /// Why (the error's code).
        code: &'static str,
        /// Why, as a sentence.
        message: String,
    },
    /// A document was marked deleted.
    DocumentDeleted {
        /// The document.
        document_id: DocumentId,
    },
    /// An action integrated from another replica (or re-applied by a rebase) was refused by the reducer in its
    /// merged position: it is kept in the history, marked with the reason, and changes nothing.
    Conflict {
        /// The unit.
        unit: SyncUnit,
        /// The index of the marked operation.
        index: u64,
        /// The action.
        action_id: uuid::Uuid,
        /// The reducer's reason.
        reason: String,
    },
}

/// The events one commit of `operations` to `unit` produces, in the order subscribers receive them: the operations;
/// then, when a `DELETE_DOCUMENT` is among them (and not kept with a refusal), the document's deletion; then one
/// [`Event::Conflict`] per operation kept with a reducer's refusal (a merge). The executor publishes these for its
/// own commits, the follower for other nodes' commits: the same commits give the same events on every node.
pub fn commit_events(
    unit: SyncUnit,
    document_type: Arc<str>,
    operations: Arc<[Operation]>,
    ordinals: Arc<[u64]>,
) -> Vec<Event> {
    let deleted = unit.scope == folio_core::Scope::Document
        && operations
            .iter()
            .any(|op| op.action.action_type == folio_core::document::DELETE_DOCUMENT && op.error.is_none());
    let conflicts: Vec<Event> = operations
        .iter()
        .filter_map(|op| {
            op.error.as_ref().map(|reason| Event::Conflict {
                unit: unit.clone(),
                index: op.index,
                action_id: op.action.id,
                reason: reason.clone(),
            })
        })
        .collect();
    let document_id = unit.document_id;
    let mut events = Vec::with_capacity(2 + conflicts.len());
    events.push(Event::OperationsCommitted {
        unit,
        document_type,
        operations,
        ordinals,
    });
    if deleted {
        events.push(Event::DocumentDeleted { document_id });
    }
    events.extend(conflicts);
    events
}

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// The next event.
    Event(Event),
    /// The subscriber fell behind and `missed` events were dropped for it: re-read from the store.
    Lagged {
        /// How many events it missed.
        missed: u64,
    },
}

/// The bus. Cheap to clone.
#[derive(Clone)]
pub struct EventBus {
    sender: Sender<Event>,
    /// Keeps the channel open while nobody subscribes, without holding events.
    _keep_open: InactiveReceiver<Event>,
    /// On a store shared by several nodes: where commit events go first, so that the follower publishes them in
    /// ordinal order among the other nodes' (see `follower.rs`).
    sequencer: Arc<OnceLock<mpsc::Sender<Event>>>,
}

impl EventBus {
    /// A bus keeping at most `capacity` events per subscriber.
    pub fn new(capacity: usize) -> Self {
        let (mut sender, receiver) = async_broadcast::broadcast(capacity.max(1));
        sender.set_overflow(true);
        sender.set_await_active(false);
        Self {
            sender,
            _keep_open: receiver.deactivate(),
            sequencer: Arc::new(OnceLock::new()),
        }
    }

    /// Publishes an event; never waits. With a sequencer installed, commit, deletion and conflict events go through
    /// it.
    pub fn publish(&self, event: Event) {
        let event = match (self.sequencer.get(), &event) {
            (
                Some(sequencer),
                Event::OperationsCommitted { .. } | Event::DocumentDeleted { .. } | Event::Conflict { .. },
            ) => {
                match sequencer.try_send(event) {
                    Ok(()) => return,
                    // A stopped or overwhelmed sequencer: publishing at once keeps the event, at the price of its
                    // order among other nodes' events.
                    Err(mpsc::error::TrySendError::Full(event) | mpsc::error::TrySendError::Closed(event)) => event,
                }
            }
            _ => event,
        };
        self.publish_now(event);
    }

    /// Publishes an event to the subscribers at once.
    pub(crate) fn publish_now(&self, event: Event) {
        // With overflow on, a full channel drops its oldest event; an error here only means nobody listens.
        let _ = self.sender.try_broadcast(event);
    }

    /// Routes this bus's commit, deletion and conflict events through the returned receiver from now on (once per
    /// bus).
    pub(crate) fn install_sequencer(&self, capacity: usize) -> Option<mpsc::Receiver<Event>> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.sequencer.set(tx).ok().map(|()| rx)
    }

    /// A new subscription, receiving events published from now on.
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            receiver: self.sender.new_receiver(),
        }
    }
}

/// One subscriber's end of the bus.
pub struct Subscription {
    receiver: Receiver<Event>,
}

impl Subscription {
    /// The next event or lag signal; `None` once the reactor is gone.
    pub async fn next(&mut self) -> Option<Received> {
        match self.receiver.recv_direct().await {
            Ok(event) => Some(Received::Event(event)),
            Err(RecvError::Overflowed(missed)) => Some(Received::Lagged { missed }),
            Err(RecvError::Closed) => None,
        }
    }

    /// The next event if one is ready, without waiting.
    pub fn try_next(&mut self) -> Option<Received> {
        match self.receiver.try_recv() {
            Ok(event) => Some(Received::Event(event)),
            Err(async_broadcast::TryRecvError::Overflowed(missed)) => Some(Received::Lagged { missed }),
            Err(_) => None,
        }
    }
}
