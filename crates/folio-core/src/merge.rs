//! Merging by rebase: the effective history of a unit's log, and the plan that integrates actions from other
//! replicas into it.
//!
//! A unit's log is append-only. An operation with `skip = s` at index `i` *cuts* the effective history at
//! `i - s`: every earlier effective operation whose index is `>= i - s` stops being effective, and the operation
//! itself follows what remains. So the **effective history** is the log with the cut tails left out. Operation `j`
//! is effective exactly when every later operation's cut is above `j` (a backward scan with the minimum cut).
//!
//! Invariant kept by every writer: the effective history is sorted by [`order_key`]. A local action is stamped
//! after everything in its unit; actions pulled from another replica that sort inside the history are integrated by
//! a **rebase**: keep the common prefix, append the first merged operation with a skip over the divergent tail, then
//! the rest of the merged operations, all in the total order. Every replica that integrated the same actions has
//! the same effective history, hence the same state, whatever order it learnt them in.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use crate::causal::order_key;
use crate::document::{ApplyError, Document};
use crate::ids::Scope;
use crate::model::{ModelRegistry, Rejection};
use crate::operation::{Action, Operation};

/// The code of an action kept in the history but refused because an earlier action in the total order has its id
/// with other content (see [`plan_merge`]).
pub const DUPLICATE_ACTION_ID: &str = "DUPLICATE_ACTION_ID";

/// The index below which `op` cuts the effective history (its own index when it skips nothing).
pub fn cut_of(op: &Operation) -> u64 {
    cut(op.index, op.skip)
}

/// The index below which an operation at `index` skipping `skip` cuts the effective history.
pub fn cut(index: u64, skip: u64) -> u64 {
    index.saturating_sub(skip)
}

/// Which operations of `ops` are effective. `ops` must be consecutive and run to the unit's head (no operation
/// after them), so that every operation able to cut them is among them.
pub fn effective_mask(ops: &[Operation]) -> Vec<bool> {
    let mut min_cut = u64::MAX;
    let mut mask = vec![false; ops.len()];
    for (i, op) in ops.iter().enumerate().rev() {
        mask[i] = op.index < min_cut;
        min_cut = min_cut.min(cut_of(op));
    }
    mask
}

/// The effective operations of `ops` (same conditions as [`effective_mask`]), in order.
pub fn effective(ops: &[Operation]) -> Vec<&Operation> {
    let mask = effective_mask(ops);
    ops.iter().zip(mask).filter(|(_, e)| *e).map(|(op, _)| op).collect()
}

/// The cuts of a log's skipping operations, answering "is operation `j` effective" for a fold that streams the log
/// in index order (built from the `(index, cut)` of every operation with a skip, in any order).
#[derive(Debug, Clone, Default)]
pub struct Cuts {
    /// `(index, minimum cut of the skipping operations at this index or later)`, by index.
    suffix_min: Vec<(u64, u64)>,
}

impl Cuts {
    /// From the `(index, skip)` pairs of the skipping operations, as `OperationStore::skips` lists them.
    pub fn from_skips(skips: Vec<(u64, u64)>) -> Self {
        Self::new(
            skips
                .into_iter()
                .map(|(index, skip)| (index, cut(index, skip)))
                .collect(),
        )
    }

    /// From the `(index, cut)` pairs of the skipping operations.
    pub fn new(mut skips: Vec<(u64, u64)>) -> Self {
        skips.sort_unstable();
        let mut suffix_min = Vec::with_capacity(skips.len());
        let mut min = u64::MAX;
        for &(index, cut) in skips.iter().rev() {
            min = min.min(cut);
            suffix_min.push((index, min));
        }
        suffix_min.reverse();
        Self { suffix_min }
    }

    /// Whether there is no skipping operation.
    pub fn is_empty(&self) -> bool {
        self.suffix_min.is_empty()
    }

    /// The lowest cut of all.
    pub fn min_cut(&self) -> Option<u64> {
        self.suffix_min.first().map(|&(_, c)| c)
    }

    /// Whether the operation at `index` is effective: no later skipping operation cuts at or below it.
    pub fn is_effective(&self, index: u64) -> bool {
        let after = self.suffix_min.partition_point(|&(i, _)| i <= index);
        match self.suffix_min.get(after) {
            Some(&(_, cut)) => index < cut,
            None => true,
        }
    }
}

/// What integrating actions into a unit takes.
#[derive(Debug, Clone, PartialEq)]
pub enum MergePlan {
    /// Every action is already in the effective history.
    Nothing,
    /// The new actions all sort after the history: append them (skip 0), in this order.
    Append(Vec<Action>),
    /// The new actions sort inside the history: rewind to the state at `base_revision` (the log prefix whose
    /// effective history is the common prefix), then append `actions` at the head, the first with a skip back to
    /// `cut` (the index of the first operation of the divergent tail).
    Rebase {
        /// The revision whose state is the common prefix's.
        base_revision: u64,
        /// The index of the first effective operation that is replaced.
        cut: u64,
        /// The operations to append, in the total order: the divergent tail and the new actions merged.
        actions: Vec<Action>,
    },
}

/// Whether `tail` (the effective operations of the log from some index to the head) reaches far enough back to
/// plan the integration of actions whose smallest key is `min_key`'s: its first operation sorts before them, or it
/// starts at the beginning of the log (`from == 0`).
pub fn tail_covers(tail: &[&Operation], from: u64, min_incoming: &Action) -> bool {
    from == 0
        || tail
            .first()
            .is_some_and(|first| order_key(&first.action) < order_key(min_incoming))
}

/// The total order of actions: [`order_key`], then, for two different actions under one key (the same id, clock
/// and author: only a client that reuses an id makes them), their content, so that every replica sorts them alike.
pub fn total_cmp(a: &Action, b: &Action) -> std::cmp::Ordering {
    order_key(a).cmp(&order_key(b)).then_with(|| {
        let content = |x: &Action| {
            (
                x.action_type.clone(),
                x.scope.as_str(),
                crate::hash::canonical_json(&x.input),
            )
        };
        content(a).cmp(&content(b))
    })
}

/// Plans the integration of `incoming` into a unit whose effective history ends with `tail` (which must cover them,
/// see [`tail_covers`]). An action already there (the same id and content, in the tail or twice in `incoming`) is
/// dropped. One that reuses a known id with other content is merged like any new action: the writer keeps the first
/// of the two in the total order and marks the other rejected ([`DUPLICATE_ACTION_ID`]), so every replica keeps the
/// same one.
pub fn plan_merge(tail: &[&Operation], incoming: Vec<Action>) -> MergePlan {
    let known: HashMap<Uuid, Vec<&Action>> = tail.iter().fold(HashMap::new(), |mut m, op| {
        m.entry(op.action.id).or_insert_with(Vec::new).push(&op.action);
        m
    });
    let mut new: Vec<Action> = Vec::with_capacity(incoming.len());
    // Positions in `new` by id: an incoming page of thousands of actions is checked for repeats in linear time.
    let mut taken: HashMap<Uuid, Vec<usize>> = HashMap::with_capacity(incoming.len());
    for a in incoming {
        let is_known = known.get(&a.id).is_some_and(|v| v.contains(&&a));
        let repeated = taken.get(&a.id).is_some_and(|at| at.iter().any(|&i| new[i] == a));
        if !is_known && !repeated {
            taken.entry(a.id).or_default().push(new.len());
            new.push(a);
        }
    }
    if new.is_empty() {
        return MergePlan::Nothing;
    }
    new.sort_by(total_cmp);
    let q = tail.partition_point(|op| total_cmp(&op.action, &new[0]).is_lt());
    if q == tail.len() {
        return MergePlan::Append(new);
    }
    let base_revision = if q == 0 { 0 } else { tail[q - 1].index + 1 };
    let cut = tail[q].index;
    let mut merged: Vec<Action> = tail[q..].iter().map(|op| op.action.clone()).collect();
    merged.extend(new);
    merged.sort_by(total_cmp);
    MergePlan::Rebase {
        base_revision,
        cut,
        actions: merged,
    }
}

/// What [`fold_merged`] made: the operations to append, and the actions among them kept marked rejected, with the
/// reason (`CODE: sentence`).
#[derive(Debug, Default)]
pub struct Folded {
    /// The operations, in order, from the unit's head.
    pub operations: Vec<Operation>,
    /// `(action id, reason)` of each operation appended with an `error`.
    pub rejected: Vec<(Uuid, String)>,
}

/// Folds the actions of a plan (in the total order, see [`plan_merge`]) into `doc` as operations of `scope` from its
/// head, the first with `skip` (the caller has rewound `doc` to the common prefix for a rebase). An action its
/// reducer refuses, or whose id an earlier action carries (`taken`: ids of the effective history before the merged
/// run; then each action folded here), is kept in the history marked rejected: its index is taken, the state does
/// not change, and every replica marks it alike. `observe` sees each action before it is folded (the writer's clock
/// follows it). Any other error stops the fold, with the index it happened at.
pub fn fold_merged(
    doc: &mut Document,
    scope: Scope,
    skip: u64,
    actions: Vec<Action>,
    mut taken: HashSet<Uuid>,
    registry: &ModelRegistry,
    mut observe: impl FnMut(&Action),
) -> Result<Folded, (u64, ApplyError)> {
    let head = doc.header.revision.get(scope);
    let mut folded = Folded {
        operations: Vec::with_capacity(actions.len()),
        rejected: Vec::new(),
    };
    for (i, action) in actions.into_iter().enumerate() {
        observe(&action);
        let index = head + i as u64;
        let skip = if i == 0 { skip } else { 0 };
        let op = Operation::new(action, index, skip, None, &doc.head(scope));
        let result = if taken.insert(op.action.id) {
            doc.fold(&op, true, registry)
        } else {
            Err(ApplyError::Rejected(Rejection::new(
                DUPLICATE_ACTION_ID,
                format!(
                    "action id {} is used by an earlier action of the document",
                    op.action.id
                ),
            )))
        };
        let op = match result {
            Ok(()) => op,
            Err(ApplyError::Rejected(reason)) => {
                let reason = reason.to_string();
                folded.rejected.push((op.action.id, reason.clone()));
                let marked = Operation::new(op.action, index, skip, Some(reason), &doc.head(scope));
                doc.fold(&marked, true, registry).map_err(|e| (index, e))?;
                marked
            }
            Err(e) => return Err((index, e)),
        };
        folded.operations.push(op);
    }
    Ok(folded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::HlcTimestamp;
    use crate::hash::OpHash;
    use crate::ids::Scope;
    use serde_json::json;

    fn action(ms: u64, replica: &str) -> Action {
        let mut a = Action::new("SET", json!({}), Scope::Global, HlcTimestamp::new(ms, 0));
        a.replica = Some(replica.to_owned());
        a
    }

    fn log(actions: &[(Action, u64)]) -> Vec<Operation> {
        let mut prev = OpHash::ZERO;
        actions
            .iter()
            .enumerate()
            .map(|(i, (a, skip))| {
                let op = Operation::new(a.clone(), i as u64, *skip, None, &prev);
                prev = op.hash;
                op
            })
            .collect()
    }

    #[test]
    fn skips_cut_the_effective_history() {
        let a = action(1, "a");
        let b = action(2, "a");
        let c = action(3, "b");
        // a b | c(skip 1: cuts b) b
        let ops = log(&[(a.clone(), 0), (b.clone(), 0), (c.clone(), 1), (b.clone(), 0)]);
        assert_eq!(effective_mask(&ops), vec![true, false, true, true]);
        let cuts = Cuts::new(vec![(2, 1)]);
        assert!(cuts.is_effective(0) && !cuts.is_effective(1) && cuts.is_effective(2) && cuts.is_effective(3));
        // A later skip over the re-appended tail cuts below the earlier one: nested cuts.
        let ops = log(&[(a, 0), (b.clone(), 0), (c, 1), (b.clone(), 0), (b, 3)]);
        assert_eq!(effective_mask(&ops), vec![true, false, false, false, true]);
        let cuts = Cuts::new(vec![(4, 1), (2, 1)]);
        assert_eq!(
            (0..5).map(|i| cuts.is_effective(i)).collect::<Vec<_>>(),
            vec![true, false, false, false, true]
        );
    }

    #[test]
    fn plans_append_rebase_and_nothing() {
        let a = action(1, "a");
        let c = action(3, "a");
        let ops = log(&[(a.clone(), 0), (c.clone(), 0)]);
        let tail: Vec<&Operation> = effective(&ops);
        assert_eq!(plan_merge(&tail, vec![a.clone(), c.clone()]), MergePlan::Nothing);
        let d = action(4, "b");
        assert_eq!(
            plan_merge(&tail, vec![d.clone(), c.clone()]),
            MergePlan::Append(vec![d])
        );
        let b = action(2, "b");
        assert_eq!(
            plan_merge(&tail, vec![b.clone()]),
            MergePlan::Rebase {
                base_revision: 1,
                cut: 1,
                actions: vec![b.clone(), c]
            }
        );
        assert!(tail_covers(&tail, 5, &b));
        assert!(!tail_covers(&tail[1..], 5, &b));
    }
}
