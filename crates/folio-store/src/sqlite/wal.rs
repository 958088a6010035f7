//! The write-ahead log: the sync thread that fsyncs it before any commit is acknowledged ([`Durability`], what reads
//! wait for), and the checkpoints the writer runs between its transactions so that it starts over instead of
//! growing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use sqlx::sqlite::SqliteConnection;
use tokio::sync::oneshot;

use crate::StoreError;

/// Bytes of operations committed since the last complete checkpoint past which the writer checkpoints (the WAL
/// then holds ~10–40 times that: every commit writes whole pages).
pub(super) const CHECKPOINT_AFTER_BYTES: u64 = 1024 * 1024;
/// The WAL file is truncated back to this size when it restarts after growing past it (a burst of reads that held
/// checkpoints back).
pub(super) const WAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

/// Checkpoints the WAL into the database file on the writer's own connection, between two of its transactions.
///
/// A checkpoint copies the WAL's pages into the database file; the next write transaction then starts the WAL
/// over from its beginning, but only when every frame was copied. A checkpoint on another connection never gets
/// there under a steady load (the writer appends frames while it copies), so the WAL would grow for as long as the
/// load lasts (`scripts/load/run` prints the WAL's size after its writes; docs/benchmarks.md has the figures), each
/// write extending the file (the kernel zeroes every new block). Here no frame is added while it runs; only a reader
/// still on an older snapshot can hold it back, and then it is tried again after half the interval.
pub(super) async fn checkpoint(conn: &mut SqliteConnection, written: &mut u64) {
    match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(&mut *conn)
        .await
    {
        Ok((_, log, copied)) if log == copied => *written = 0,
        Ok((_, log, copied)) => {
            tracing::debug!("WAL checkpoint copied {copied} of {log} frames (a reader holds the rest)");
            *written = CHECKPOINT_AFTER_BYTES / 2;
        }
        Err(e) => {
            tracing::debug!("WAL checkpoint failed (it is retried): {e}");
            *written = CHECKPOINT_AFTER_BYTES / 2;
        }
    }
}

/// The write-ahead log of the database at `path`.
pub(super) fn wal_path(path: &Path) -> PathBuf {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

/// An acknowledgement waiting for the WAL to reach the disk: called with the fsync's failure, if it failed.
pub(super) type Ack = Box<dyn FnOnce(Option<&str>) + Send>;

/// The acknowledgements of one of the writer's wake-ups, and its generation.
pub(super) type SyncGroup = (u64, Vec<Ack>);

/// The writer's side of the WAL sync thread.
pub(super) struct WalSync {
    pub(super) groups: std::sync::mpsc::Sender<SyncGroup>,
    pub(super) durability: Arc<Durability>,
}

impl WalSync {
    /// Begins a wake-up's group: its generation is counted before any of its statements.
    pub(super) fn begin(&self) -> SyncGroup {
        (self.durability.begun.fetch_add(1, Ordering::SeqCst) + 1, Vec::new())
    }

    /// Hands the group, its statements done, to the sync thread.
    pub(super) fn finish(&self, group: SyncGroup) {
        if let Err(std::sync::mpsc::SendError((_, acks))) = self.groups.send(group) {
            for ack in acks {
                ack(Some("the WAL sync thread stopped"));
            }
        }
    }
}

/// How far the writer's transactions are on disk when a sync thread fsyncs them. Each wake-up of the writer is a
/// generation, counted before its first statement; the sync thread publishes the last generation it fsynced. A
/// read waits, after it ran, until every generation begun by then is synced: whatever it saw was committed by one
/// of them, so nothing a caller reads can vanish in a power loss (an ordinal handed to a pulling replica is never
/// reused). Reads wait only while a commit is between its `COMMIT` and its fsync.
#[derive(Default)]
pub(super) struct Durability {
    /// Generations begun.
    begun: AtomicU64,
    /// The last generation fsynced (`u64::MAX` once the sync thread stopped).
    synced: tokio::sync::watch::Sender<u64>,
    /// Why an fsync failed: every later read and write fails.
    failed: OnceLock<String>,
}

impl Durability {
    /// Waits until everything committed before now is on disk.
    pub(super) async fn settle(&self) -> Result<(), StoreError> {
        let wanted = self.begun.load(Ordering::SeqCst);
        if *self.synced.borrow() < wanted {
            let _ = self.synced.subscribe().wait_for(|synced| *synced >= wanted).await;
        }
        match self.failed.get() {
            Some(reason) => Err(StoreError::Unsynced(reason.clone())),
            None => Ok(()),
        }
    }
}

/// The WAL sync thread: fsyncs the WAL once for every group that waits when it wakes (all of their commits were
/// written before they were queued), publishes the generation, then acknowledges. After a failed fsync nothing
/// more is acknowledged: what the disk holds is unknown until a restart recovers the log.
pub(super) fn sync_loop(
    mut fsync: impl FnMut() -> std::io::Result<()>,
    groups: std::sync::mpsc::Receiver<SyncGroup>,
    durability: &Durability,
) {
    while let Ok(first) = groups.recv() {
        let mut generation = first.0;
        let mut acks = first.1;
        for (g, more) in groups.try_iter() {
            generation = generation.max(g);
            acks.extend(more);
        }
        let started = std::time::Instant::now();
        if durability.failed.get().is_none()
            && let Err(e) =
                fsync().inspect(|()| metrics::histogram!("folio_fsync_seconds").record(started.elapsed().as_secs_f64()))
        {
            tracing::error!("fsync of the SQLite write-ahead log failed: {e}; every later write on this store fails");
            let _ = durability.failed.set(e.to_string());
        }
        durability
            .synced
            .send_modify(|synced| *synced = (*synced).max(generation));
        let failed = durability.failed.get().map(String::as_str);
        for ack in acks {
            ack(failed);
        }
    }
    // The writer is gone: nothing more will be committed, and no read may wait for it.
    durability.synced.send_replace(u64::MAX);
}

/// Sends `value` to `reply`: at once, or, when the store defers its fsyncs, once the WAL holding the commit is on
/// disk (the acknowledgement joins `pending`). `unsynced` turns the value into what to send instead when that fsync
/// failed.
pub(super) fn acknowledge<T: Send + 'static>(
    pending: Option<&mut Vec<Ack>>,
    reply: oneshot::Sender<T>,
    value: T,
    unsynced: fn(T, &str) -> T,
) {
    match pending {
        None => {
            let _ = reply.send(value);
        }
        Some(pending) => pending.push(Box::new(move |failed| {
            let _ = reply.send(match failed {
                None => value,
                Some(reason) => unsynced(value, reason),
            });
        })),
    }
}

/// A successful result that the disk did not confirm becomes [`StoreError::Unsynced`].
pub(super) fn unsynced<T>(result: Result<T, StoreError>, reason: &str) -> Result<T, StoreError> {
    result.and_then(|_| Err(StoreError::Unsynced(reason.to_owned())))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    /// A sync thread whose fsync answers from `outcomes` (then succeeds) and counts its calls.
    struct SyncThread {
        sync: WalSync,
        fsyncs: Arc<Mutex<usize>>,
        thread: std::thread::JoinHandle<()>,
    }

    impl SyncThread {
        fn start(outcomes: Vec<std::io::Result<()>>) -> Self {
            let fsyncs = Arc::new(Mutex::new(0));
            let durability = Arc::new(Durability::default());
            let (counted, synced) = (fsyncs.clone(), durability.clone());
            let mut outcomes = outcomes.into_iter();
            let (groups, rx) = std::sync::mpsc::channel::<SyncGroup>();
            let thread = std::thread::spawn(move || {
                let fsync = move || {
                    *counted.lock().unwrap() += 1;
                    outcomes.next().unwrap_or(Ok(()))
                };
                sync_loop(fsync, rx, &synced)
            });
            Self {
                sync: WalSync { groups, durability },
                fsyncs,
                thread,
            }
        }

        /// Sends one writer wake-up's result, as the writer does, and returns what its caller receives.
        fn commit(&self, value: Result<u32, StoreError>) -> oneshot::Receiver<Result<u32, StoreError>> {
            let mut group = self.sync.begin();
            let (reply, received) = oneshot::channel();
            acknowledge(Some(&mut group.1), reply, value, unsynced);
            self.sync.finish(group);
            received
        }

        fn fsyncs(&self) -> usize {
            *self.fsyncs.lock().unwrap()
        }

        fn stop(self) -> Arc<Durability> {
            let WalSync { groups, durability } = self.sync;
            drop(groups);
            self.thread.join().unwrap();
            durability
        }
    }

    #[test]
    fn commits_queued_together_are_acknowledged_after_one_fsync() {
        let durability = Durability::default();
        let fsyncs = Mutex::new(0);
        let (groups, rx) = std::sync::mpsc::channel::<SyncGroup>();
        let mut waiting = Vec::new();
        for n in 0..3u32 {
            let (reply, mut received) = oneshot::channel();
            let mut pending = Vec::new();
            acknowledge(Some(&mut pending), reply, Ok(n), unsynced);
            groups.send((u64::from(n) + 1, pending)).unwrap();
            assert!(
                received.try_recv().is_err(),
                "commit {n} was acknowledged before any fsync"
            );
            waiting.push(received);
        }
        drop(groups);
        // The three were queued before the sync thread woke: one fsync covers them.
        let fsync = || {
            *fsyncs.lock().unwrap() += 1;
            Ok(())
        };
        sync_loop(fsync, rx, &durability);
        assert_eq!(*fsyncs.lock().unwrap(), 1);
        let delivered: Vec<u32> = waiting
            .into_iter()
            .map(|mut r| r.try_recv().expect("acknowledged after the fsync").expect("a success"))
            .collect();
        assert_eq!(delivered, [0, 1, 2]);
    }

    #[test]
    fn without_deferred_sync_the_caller_hears_at_once() {
        let (reply, mut received) = oneshot::channel();
        acknowledge(None, reply, Ok::<_, StoreError>(7), unsynced);
        assert_eq!(received.try_recv().unwrap().unwrap(), 7);
    }

    #[test]
    fn a_failed_fsync_fails_its_commits_every_later_one_and_reads() {
        let sync = SyncThread::start(vec![Err(std::io::Error::other("EIO on the log"))]);
        for n in 0..3u32 {
            let result = sync.commit(Ok(n)).blocking_recv().expect("every caller hears back");
            assert!(
                matches!(&result, Err(StoreError::Unsynced(reason)) if reason.contains("EIO on the log")),
                "commit {n}: {result:?}"
            );
        }
        // Errors that were no success stay what they were.
        let result = sync.commit(Err(StoreError::Closed)).blocking_recv().unwrap();
        assert!(matches!(result, Err(StoreError::Closed)), "{result:?}");
        assert_eq!(sync.fsyncs(), 1, "no fsync after the failed one");
        let durability = sync.stop();
        let read = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(durability.settle());
        assert!(matches!(read, Err(StoreError::Unsynced(_))), "{read:?}");
    }

    #[test]
    fn every_commit_is_synced_before_it_is_acknowledged() {
        let sync = SyncThread::start(Vec::new());
        for n in 0..5u32 {
            assert_eq!(sync.commit(Ok(n)).blocking_recv().unwrap().unwrap(), n);
            assert_eq!(
                sync.fsyncs(),
                n as usize + 1,
                "commit {n} was answered before its fsync"
            );
            assert_eq!(*sync.sync.durability.synced.borrow(), u64::from(n) + 1);
        }
        sync.stop();
    }

    #[tokio::test]
    async fn a_read_waits_for_the_fsync_of_every_commit_begun_before_it_ended() {
        let durability = Arc::new(Durability::default());
        // Nothing committed: a read goes through.
        durability.settle().await.unwrap();
        // A commit (generation 1) between its COMMIT and its fsync: a read waits for it.
        durability.begun.fetch_add(1, Ordering::SeqCst);
        let waiting = tokio::spawn({
            let durability = durability.clone();
            async move { durability.settle().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "the read returned before the commit it may have seen was synced"
        );
        durability.synced.send_replace(1);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("released by the fsync")
            .unwrap()
            .unwrap();
    }
}
