//! Keeping a replica synced live: rounds, then live delivery downstream and debounced pushes upstream, with
//! backoff while the remote is unreachable and an observable status.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use folio_core::Scope;
use folio_reactor::{Event, Received};

use crate::SyncError;
use crate::replica::{Remote, Replica};
use crate::round::{RoundOptions, RoundReport, sync_round};

/// Where a replica's sync with a remote is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "status", content = "reason")]
pub enum SyncStatus {
    /// Not synced yet.
    Starting,
    /// Everything made here is acknowledged by the remote, and everything it announced is integrated.
    Synced,
    /// Own changes wait to be pushed.
    Pending,
    /// The remote cannot be reached; retrying with backoff.
    Offline(String),
    /// The remote refused (a bad token, a protocol error); retrying slowly.
    Error(String),
}

impl SyncStatus {
    /// The status's name: `synced`, `pending`, `offline`, `error` (or `starting`).
    pub fn name(&self) -> &'static str {
        match self {
            SyncStatus::Starting => "starting",
            SyncStatus::Synced => "synced",
            SyncStatus::Pending => "pending",
            SyncStatus::Offline(_) => "offline",
            SyncStatus::Error(_) => "error",
        }
    }
}

/// How [`Syncer`] runs.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Each round's options.
    pub round: RoundOptions,
    /// Local changes are pushed this long after the last one (upstream debounce).
    pub push_debounce: Duration,
    /// A round runs at least this often, live channel or not.
    pub poll_interval: Duration,
    /// The longest wait between attempts while offline.
    pub max_backoff: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            round: RoundOptions::default(),
            push_debounce: Duration::from_millis(200),
            poll_interval: Duration::from_secs(30),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// What a [`Syncer`] reports as it goes.
#[derive(Debug, Clone)]
pub enum SyncEvent {
    /// A round finished.
    Round(RoundReport),
    /// Live entries were integrated: how many, and how many were new.
    Live {
        /// Entries received.
        received: usize,
        /// New to this replica.
        new: usize,
    },
    /// The status changed.
    Status(SyncStatus),
}

/// A task keeping a replica synced with one remote until stopped.
pub struct Syncer {
    status: watch::Receiver<SyncStatus>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Syncer {
    /// Starts syncing `replica` with `remote`; `on_event` hears of rounds, live deliveries and status changes.
    pub fn spawn(
        replica: Replica,
        remote: Arc<dyn Remote>,
        options: WatchOptions,
        on_event: Arc<dyn Fn(SyncEvent) + Send + Sync>,
    ) -> Self {
        let (status_tx, status) = watch::channel(SyncStatus::Starting);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(replica, remote, options, on_event, status_tx, stop_rx));
        Self { status, stop, task }
    }

    /// The status, observable.
    pub fn status(&self) -> watch::Receiver<SyncStatus> {
        self.status.clone()
    }

    /// Stops after the step under way (a round or a live batch is never cut in the middle of a write).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn set(status: &watch::Sender<SyncStatus>, on_event: &(dyn Fn(SyncEvent) + Send + Sync), next: SyncStatus) {
    if *status.borrow() != next {
        let _ = status.send(next.clone());
        on_event(SyncEvent::Status(next));
    }
}

async fn run(
    replica: Replica,
    remote: Arc<dyn Remote>,
    options: WatchOptions,
    on_event: Arc<dyn Fn(SyncEvent) + Send + Sync>,
    status: watch::Sender<SyncStatus>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    let mut local = replica.reactor().subscribe();
    loop {
        if *stop.borrow() {
            return;
        }
        match sync_round(&replica, remote.as_ref(), &options.round).await {
            Ok(report) => {
                backoff = Duration::from_millis(200);
                on_event(SyncEvent::Round(report));
                set(&status, on_event.as_ref(), SyncStatus::Synced);
            }
            Err(e) => {
                let next = if e.is_transient() {
                    SyncStatus::Offline(e.to_string())
                } else {
                    SyncStatus::Error(e.to_string())
                };
                set(&status, on_event.as_ref(), next);
                let wait = if e.is_transient() { backoff } else { options.max_backoff };
                backoff = (backoff * 2).min(options.max_backoff);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    _ = stop.changed() => return,
                }
            }
        }
        // Live phase: until a local change is due for a push, the poll interval passes, or the channel drops.
        // A live channel that cannot be opened is retried soon (after the backoff), not at the next poll.
        let (mut live, wait) = match live_channel(&replica, remote.as_ref(), &options).await {
            Ok(live) => (live, options.poll_interval),
            Err(e) => {
                set(&status, on_event.as_ref(), SyncStatus::Offline(e.to_string()));
                let wait = backoff;
                backoff = (backoff * 2).min(options.max_backoff);
                (None, wait)
            }
        };
        let poll = tokio::time::sleep(wait);
        tokio::pin!(poll);
        let mut push_due: Option<tokio::time::Instant> = None;
        loop {
            let debounce = async {
                match push_due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let next_live = async {
                match live.as_mut() {
                    Some(stream) => stream.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.changed() => return,
                _ = &mut poll => break,
                _ = debounce => break,
                event = local.next() => {
                    if event.as_ref().is_some_and(|e| is_own_change(&replica, e)) {
                        set(&status, on_event.as_ref(), SyncStatus::Pending);
                        push_due = Some(tokio::time::Instant::now() + options.push_debounce);
                    }
                }
                message = next_live => match message {
                    Some(Ok(answer)) => {
                        if let Err(e) = integrate_live(&replica, remote.as_ref(), answer, on_event.as_ref()).await {
                            set(&status, on_event.as_ref(), SyncStatus::Error(e.to_string()));
                            break;
                        }
                    }
                    Some(Err(e)) => {
                        set(&status, on_event.as_ref(), SyncStatus::Offline(e.to_string()));
                        break;
                    }
                    None => {
                        set(&status, on_event.as_ref(), SyncStatus::Offline("the live channel closed".into()));
                        break;
                    }
                },
            }
        }
    }
}

/// Whether a local event is a change made here that the remote does not have yet.
fn is_own_change(replica: &Replica, event: &Received) -> bool {
    match event {
        Received::Event(Event::OperationsCommitted { unit, operations, .. }) => {
            unit.scope != Scope::Local
                && operations
                    .iter()
                    .any(|op| op.action.replica.as_deref() == Some(replica.id()))
        }
        Received::Lagged { .. } => true,
        _ => false,
    }
}

async fn live_channel(
    replica: &Replica,
    remote: &dyn Remote,
    options: &WatchOptions,
) -> Result<Option<futures::stream::BoxStream<'static, Result<crate::PullResponse, SyncError>>>, SyncError> {
    let info = remote.info().await?;
    let peer = replica.peer(&info.replica).await?;
    remote.live(peer.pulled, replica.id(), &options.round.filter).await
}

/// Integrates one live delivery and moves the pull cursor past it.
async fn integrate_live(
    replica: &Replica,
    remote: &dyn Remote,
    answer: crate::PullResponse,
    on_event: &(dyn Fn(SyncEvent) + Send + Sync),
) -> Result<(), SyncError> {
    let info = remote.info().await?;
    let mut peer = replica.peer(&info.replica).await?;
    let received = answer.entries.len();
    let cursor = answer.cursor;
    let integrated = replica.integrate(answer.entries).await?;
    peer.pulled = peer.pulled.max(cursor);
    replica.save_peer(&info.replica, &peer).await?;
    on_event(SyncEvent::Live {
        received,
        new: integrated.new,
    });
    Ok(())
}
