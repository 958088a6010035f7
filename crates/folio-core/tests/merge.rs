//! The merge plan on its own, no I/O: replicas that receive the same actions in any order, in any batches, with
//! duplicates, end with effective histories in the total order and the same todo state.

use proptest::prelude::*;
use serde_json::json;

use folio_core::merge::{MergePlan, effective, plan_merge, tail_covers};
use folio_core::{Action, Document, DocumentId, HlcTimestamp, ModelRegistry, OpHash, Operation, Scope, order_key};

/// A unit's log and a document folded from it, merged the way the executor does.
struct Log {
    ops: Vec<Operation>,
}

impl Log {
    fn new() -> Self {
        Self { ops: Vec::new() }
    }

    fn head_hash(&self) -> OpHash {
        self.ops.last().map_or(OpHash::ZERO, |op| op.hash)
    }

    /// Integrates `incoming` reading the tail back in steps of 3, as the executor reads it back in steps.
    fn integrate(&mut self, incoming: Vec<Action>) {
        let Some(min) = incoming.iter().min_by(|a, b| order_key(a).cmp(&order_key(b))).cloned() else {
            return;
        };
        let head = self.ops.len() as u64;
        let mut step = 3u64;
        let from = loop {
            let from = head.saturating_sub(step);
            if tail_covers(&effective(&self.ops[from as usize..]), from, &min) {
                break from;
            }
            step *= 2;
        };
        let tail_ops = self.ops[from as usize..].to_vec();
        let tail = effective(&tail_ops);
        let (actions, skip) = match plan_merge(&tail, incoming) {
            MergePlan::Nothing => return,
            MergePlan::Append(actions) => (actions, 0),
            MergePlan::Rebase { cut, actions, .. } => (actions, head - cut),
        };
        for (i, action) in actions.into_iter().enumerate() {
            let index = head + i as u64;
            let op = Operation::new(action, index, if i == 0 { skip } else { 0 }, None, &self.head_hash());
            self.ops.push(op);
        }
    }

    fn effective_ids(&self) -> Vec<uuid::Uuid> {
        effective(&self.ops).iter().map(|op| op.action.id).collect()
    }

    /// The todo state folded from the effective history.
    fn state(&self, registry: &ModelRegistry) -> OpHash {
        let mut doc = Document::empty(DocumentId::new(), Default::default());
        let create = Action::new(
            "CREATE_DOCUMENT",
            json!({"documentType": "folio/todo-list"}),
            Scope::Document,
            HlcTimestamp::new(0, 0),
        );
        doc.apply(&Operation::new(create, 0, 0, None, &OpHash::ZERO), registry)
            .unwrap();
        let mask = folio_core::merge::effective_mask(&self.ops);
        for (op, e) in self.ops.iter().zip(mask) {
            // Refusals are kept as no-ops, as the executor marks them.
            let mut probe = doc.clone();
            if probe.fold(op, e, registry).is_ok() {
                doc = probe;
            } else {
                let marked = Operation::new(
                    op.action.clone(),
                    op.index,
                    op.skip,
                    Some("refused".into()),
                    &doc.head(Scope::Global),
                );
                doc.fold(&marked, e, registry).unwrap();
            }
        }
        doc.state_hash()
    }
}

fn actions() -> impl Strategy<Value = Vec<Action>> {
    let one = (0u64..40, 0u32..2, 0usize..3, 0usize..3, any::<bool>()).prop_map(|(ms, counter, replica, item, add)| {
        let (kind, input) = if add {
            ("ADD_TODO", json!({"id": format!("i{item}"), "title": format!("t{ms}")}))
        } else {
            ("DELETE_TODO", json!({"id": format!("i{item}")}))
        };
        let mut a = Action::new(kind, input, Scope::Global, HlcTimestamp::new(ms, counter));
        a.replica = Some(format!("r{replica}"));
        a
    });
    prop::collection::vec(one, 1..30)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_arrival_order_gives_the_sorted_history(
        actions in actions(),
        orders in prop::collection::vec(prop::collection::vec(any::<prop::sample::Index>(), 1..40), 3),
        batch_sizes in prop::collection::vec(1usize..6, 3),
    ) {
        let registry = ModelRegistry::with_builtin();
        let mut sorted = actions.clone();
        sorted.sort_by(|a, b| order_key(a).cmp(&order_key(b)));
        let expected: Vec<uuid::Uuid> = sorted.iter().map(|a| a.id).collect();
        let mut states = Vec::new();
        for (order, batch) in orders.iter().zip(&batch_sizes) {
            // A delivery sequence: picks with repeats (duplicates), then everything once more (so all arrive).
            let mut delivery: Vec<Action> = order.iter().map(|i| actions[i.index(actions.len())].clone()).collect();
            delivery.extend(actions.iter().cloned());
            let mut log = Log::new();
            for chunk in delivery.chunks(*batch) {
                log.integrate(chunk.to_vec());
            }
            prop_assert_eq!(log.effective_ids(), expected.clone());
            folio_core::check_chain(&OpHash::ZERO, 0, &log.ops).unwrap();
            states.push(log.state(&registry));
        }
        prop_assert!(states.windows(2).all(|w| w[0] == w[1]), "states differ: {:?}", states);
    }
}
