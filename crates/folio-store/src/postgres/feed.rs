//! Commit notices: the LISTEN connection that wakes the reactor's follower on other handles' commits, and the
//! reads by ordinal marked with whether this handle committed each (the `origin` column).

use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use sqlx::Row;
use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::watch;

use super::NOTIFY_CHANNEL;
use crate::StoreError;
use crate::sql_common::{decode_operation, to_i64, unit_from_row};
use crate::store::{CommitFeed, Committed};

/// The LISTEN side of [`OperationStore::commit_feed`].
pub(super) struct PgFeed {
    /// The read pool.
    pub(super) pool: PgPool,
    /// The handle whose commits count as its own.
    pub(super) origin: i64,
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

    async fn read_since_marked(&self, after_ordinal: u64, limit: usize) -> Result<Vec<(Committed, bool)>, StoreError> {
        read_committed(&self.pool, after_ordinal, limit, self.origin).await
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

/// Committed operations after `after_ordinal`, with whether `origin` committed each.
pub(super) async fn read_committed(
    pool: &PgPool,
    after_ordinal: u64,
    limit: usize,
    origin: i64,
) -> Result<Vec<(Committed, bool)>, StoreError> {
    let rows = sqlx::query(
        "SELECT o.ordinal, u.document_id, u.scope, u.branch, o.idx, o.operation, o.origin = $3 \
         FROM operations o JOIN units u ON u.unit_id = o.unit_id \
         WHERE o.ordinal > $1 ORDER BY o.ordinal LIMIT $2",
    )
    .bind(to_i64(after_ordinal))
    .bind(limit.min(i64::MAX as usize) as i64)
    .bind(origin)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let unit = unit_from_row(row, 1)?;
            let operation = decode_operation(&unit, row.get::<i64, _>(4) as u64, row.get::<&str, _>(5))?;
            Ok((
                Committed {
                    ordinal: row.get::<i64, _>(0) as u64,
                    unit,
                    operation,
                },
                row.get::<bool, _>(6),
            ))
        })
        .collect()
}
