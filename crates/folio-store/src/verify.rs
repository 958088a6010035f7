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
        let mut pending = Vec::with_capacity(SIGNATURES_AT_ONCE);
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
            prev = op.hash;
            expected += 1;
            pending.push(op);
            if pending.len() == SIGNATURES_AT_ONCE {
                broken = check_signatures(&mut pending, &mut report);
                if broken.is_some() {
                    break;
                }
            }
        }
        // The signatures before the place the chain broke (if it did) are checked too: a bad one there is the first
        // broken place.
        if let Some(bad) = check_signatures(&mut pending, &mut report) {
            broken = Some(bad);
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

/// Operations whose signatures are verified together ([`folio_core::signature::verify_all`]: each key decoded once,
/// the batch split between cores).
const SIGNATURES_AT_ONCE: usize = 512;

/// Verifies the signatures of `pending` (chained operations of one unit, in order) and empties it: the first bad one
/// as a broken place, and the count of signed ones in `report`.
fn check_signatures(pending: &mut Vec<folio_core::Operation>, report: &mut VerifyReport) -> Option<(u64, String)> {
    let actions: Vec<&folio_core::Action> = pending.iter().map(|op| &op.action).collect();
    let answers = folio_core::signature::verify_all(&actions);
    let mut broken = None;
    for (op, answer) in pending.iter().zip(answers) {
        match answer {
            Ok(signed) => report.signed += u64::from(signed),
            Err(e) => {
                broken = Some((op.index, format!("{}: {e}", e.code())));
                break;
            }
        }
    }
    pending.clear();
    broken
}
