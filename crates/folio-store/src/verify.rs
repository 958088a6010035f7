//! `verify`: checks that every unit's indexes are dense from 0, its hash chain is intact and every signed action's
//! signature verifies.

use futures::StreamExt;

use folio_core::{OpHash, SyncUnit, operation_hash};

use crate::{OperationStore, StoreError};

/// The first broken place found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The unit.
    pub unit: SyncUnit,
    /// The index where it breaks.
    pub index: u64,
    /// What is wrong.
    pub reason: String,
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Units checked.
    pub units: u64,
    /// Operations checked.
    pub operations: u64,
    /// Operations whose action is signed (each signature verified).
    pub signed: u64,
    /// The first broken unit and index, if any.
    pub broken: Option<Broken>,
}

impl VerifyReport {
    /// True when nothing is broken.
    pub fn is_ok(&self) -> bool {
        self.broken.is_none()
    }
}

/// Checks every unit of `store`: dense indexes from 0, each hash chained over its predecessor's, ids equal to their
/// actions' ids, every signed action's signature valid (`BAD_SIGNATURE: …`: rewriting an action and its chain
/// needs its author's key), and the unit's recorded head equal to its last operation. Stops at the first broken
/// unit.
pub async fn verify(store: &dyn OperationStore) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport::default();
    for unit in store.units().await? {
        report.units += 1;
        let mut prev = OpHash::ZERO;
        let mut expected = 0u64;
        let mut ops = store.read(&unit, 0, None);
        let mut broken = None;
        while let Some(op) = ops.next().await {
            let op = match op {
                Ok(op) => op,
                Err(e) => {
                    broken = Some((expected, e.to_string()));
                    break;
                }
            };
            report.operations += 1;
            if op.index != expected {
                broken = Some((expected, format!("expected index {expected}, found {}", op.index)));
                break;
            }
            if op.action.scope != unit.scope {
                broken = Some((
                    op.index,
                    format!("action of scope {} in a {} unit", op.action.scope, unit.scope),
                ));
                break;
            }
            if op.id != op.action.id {
                broken = Some((op.index, "operation id differs from its action id".to_owned()));
                break;
            }
            if operation_hash(&prev, &op) != op.hash {
                broken = Some((op.index, "hash does not chain over its predecessor".to_owned()));
                break;
            }
            match folio_core::signature::verify(&op.action) {
                Ok(signed) => report.signed += u64::from(signed),
                Err(e) => {
                    broken = Some((op.index, format!("{}: {e}", e.code())));
                    break;
                }
            }
            prev = op.hash;
            expected += 1;
        }
        if broken.is_none() {
            let (revision, head) = store.head(&unit).await?;
            if revision != expected || head != prev {
                broken = Some((
                    expected,
                    format!("recorded head is revision {revision}, the log ends at {expected}"),
                ));
            }
        }
        if let Some((index, reason)) = broken {
            report.broken = Some(Broken { unit, index, reason });
            return Ok(report);
        }
    }
    Ok(report)
}
