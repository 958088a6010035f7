//! Commit notices: the LISTEN connection that wakes the reactor's follower on other handles' commits, and the
//! reads by ordinal marked with whether this handle committed each (the `origin` column).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use sqlx::Row;
use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::watch;

use super::NOTIFY_CHANNEL;
use super::writer::HeadCache;
use crate::StoreError;
use crate::sql_common::{decode_operation, to_i64, unit_from_row};
use crate::store::{CommitFeed, Committed, FeedEntry};

/// The LISTEN side of [`OperationStore::commit_feed`].
pub(super) struct PgFeed {
    /// The read pool.
    pub(super) pool: PgPool,
    /// The handle whose commits count as its own.
    pub(super) origin: i64,
    /// The writer's known heads, which reads by ordinal feed.
    pub(super) heads: Arc<HeadCache>,
    /// Counts the notices of other handles (and reconnections); a change is a wake-up.
    pub(super) notices: watch::Receiver<u64>,
}

#[async_trait]
impl CommitFeed for PgFeed {
    fn notices(&self) -> BoxStream<'static, ()> {
        let mut rx = self.notices.clone();
        rx.mark_unchanged();
        stream::unfold(rx, |mut rx| async move { rx.changed().await.ok().map(|()| ((), rx)) }).boxed()
    }

    async fn read_since_marked(&self, after_ordinal: u64, limit: usize) -> Result<Vec<FeedEntry>, StoreError> {
        read_committed(&self.pool, after_ordinal, limit, Some(self.origin), &self.heads).await
    }
}

/// Listens on [`NOTIFY_CHANNEL`] until every receiver of `tx` is gone; counts the notices of other handles. After
/// each (re)connection it counts one more: notices sent while it was not listening are lost, and the reader must
/// catch up.
pub(super) async fn listen(pool: PgPool, origin: i64, tx: watch::Sender<u64>) {
    let own = origin.to_string();
    let wake = |tx: &watch::Sender<u64>| tx.send_modify(|n| *n = n.wrapping_add(1));
    loop {
        let connected = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(NOTIFY_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            _ = tx.closed() => return,
            connected = connected => match connected {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::warn!("LISTEN {NOTIFY_CHANNEL} failed: {e}; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        wake(&tx);
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                received = listener.try_recv() => match received {
                    Ok(Some(notice)) => {
                        if notice.payload() != own {
                            wake(&tx);
                        }
                    }
                    // The connection was lost; the next try_recv reconnects. Notices in between are lost.
                    Ok(None) => wake(&tx),
                    Err(e) => {
                        tracing::warn!("LISTEN {NOTIFY_CHANNEL} failed: {e}; reconnecting");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        break;
                    }
                },
            }
        }
    }
}

/// How long a read by ordinal waits for the transactions that hold back operations already committed (see
/// [`read_committed`]) before it answers with those before them only.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

/// The bound below which every ordinal is final, as SQL: transactions with an id below the snapshot's xmin have
/// finished, and every other one (running, or yet to write) has an id at or above it (migration 0004).
const BELOW: &str = "(pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 20)";

/// Waits a little before reading again (1 ms, doubling to 50 ms); false once [`SETTLE_LIMIT`] has passed.
async fn pause(started: tokio::time::Instant, pause: &mut Duration) -> bool {
    if started.elapsed() >= SETTLE_LIMIT {
        return false;
    }
    tokio::time::sleep(*pause).await;
    *pause = (*pause * 2).min(Duration::from_millis(50));
    true
}

/// The texts of [`read_committed`]'s statement, made once: while waiting for a held-back commit (the probe, and
/// the page only when nothing is held), and once settling has timed out (the page below the bound, held or not).
static PAGE_SQL: std::sync::LazyLock<(String, String)> = std::sync::LazyLock::new(|| {
    let page = |held: &str| {
        format!(
            "SELECT h.held, r.ordinal, r.own, r.document_id, r.scope, r.branch, r.idx, r.operation \
             FROM (SELECT {held} AS held) h LEFT JOIN LATERAL ( \
                 SELECT o.ordinal, (o.origin = $3) IS TRUE AS own, u.document_id, u.scope, u.branch, o.idx, \
                        CASE WHEN (o.origin = $3) IS TRUE THEN NULL ELSE o.operation END AS operation \
                 FROM operations o JOIN units u ON u.unit_id = o.unit_id \
                 WHERE o.ordinal > $1 AND o.ordinal < {BELOW} ORDER BY o.ordinal LIMIT $2 \
             ) r ON NOT h.held ORDER BY r.ordinal"
        )
    };
    let probe = format!(
        "EXISTS (SELECT 1 FROM (SELECT ordinal FROM operations WHERE ordinal > $1 ORDER BY ordinal LIMIT $2) p \
         WHERE p.ordinal >= {BELOW})"
    );
    (page(&probe), page("false"))
});

/// Committed operations after `after_ordinal`, only below the bound of final ordinals (`BELOW`): when a committed
/// operation within the page is above it, held back by an older transaction still running, the read waits for that
/// transaction (up to [`SETTLE_LIMIT`], then it answers the operations before it), so a short page still means
/// there was nothing more to read. Operations `origin` committed (when given) come as their ordinals only: this
/// handle's writer has them. Notes the heads it read for the writer.
///
/// One statement, one round trip: whether the page holds an ordinal at or above the bound, and, when not, the page
/// (both in the statement's one snapshot, so a page read is exactly the first `limit` operations after the cursor).
pub(super) async fn read_committed(
    pool: &PgPool,
    after_ordinal: u64,
    limit: usize,
    origin: Option<i64>,
    heads: &HeadCache,
) -> Result<Vec<FeedEntry>, StoreError> {
    let started = tokio::time::Instant::now();
    let mut wait = Duration::from_millis(1);
    let after = to_i64(after_ordinal);
    let limit = limit.min(i64::MAX as usize) as i64;
    let (waiting, settled) = &*PAGE_SQL;
    let mut sql = waiting;
    let rows = loop {
        let rows = sqlx::query(sql)
            .bind(after)
            .bind(limit)
            .bind(origin)
            .fetch_all(pool)
            .await?;
        let held = rows.first().is_some_and(|row| row.get::<bool, _>(0));
        if !held {
            break rows;
        }
        if !pause(started, &mut wait).await {
            sql = settled;
        }
    };
    rows.iter()
        // An empty page is one row of NULLs.
        .filter(|row| row.get::<Option<i64>, _>(1).is_some())
        .map(|row| {
            let ordinal = row.get::<i64, _>(1) as u64;
            if row.get::<bool, _>(2) {
                return Ok(FeedEntry::Own { ordinal });
            }
            let unit = unit_from_row(row, 3)?;
            let operation = decode_operation(&unit, row.get::<i64, _>(6) as u64, row.get::<&str, _>(7))?;
            heads.note(&unit, operation.index + 1, operation.hash);
            Ok(FeedEntry::Elsewhere(Committed {
                ordinal,
                unit,
                operation,
            }))
        })
        .collect()
}

/// The highest ordinal committed, once every ordinal up to it is final (waiting for older transactions still
/// running, as [`read_committed`] does; after [`SETTLE_LIMIT`], the highest final one).
pub(super) async fn max_ordinal(pool: &PgPool) -> Result<u64, StoreError> {
    let started = tokio::time::Instant::now();
    let mut wait = Duration::from_millis(1);
    let sql = format!("SELECT COALESCE(MAX(ordinal), 0), {BELOW} FROM operations");
    loop {
        let (max, below): (i64, i64) = sqlx::query_as(&sql).fetch_one(pool).await?;
        if max < below {
            return Ok(max as u64);
        }
        if !pause(started, &mut wait).await {
            let max: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(ordinal), 0) FROM operations WHERE ordinal < $1")
                .bind(below)
                .fetch_one(pool)
                .await?;
            return Ok(max as u64);
        }
    }
}
