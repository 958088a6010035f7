//! Property tests: determinism of folding, wire round trips of operations, and the hybrid logical clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use folio_core::{
    Action, Branch, Document, DocumentId, HlcTimestamp, HybridClock, ModelRegistry, OpHash, Operation, Scope,
    check_chain,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use uuid::Uuid;

// ---- strategies: actions, valid and invalid mixed ----

/// One action as a writer receives it.
#[derive(Debug, Clone)]
struct Act {
    scope: Scope,
    action_type: String,
    input: Value,
}

fn act(scope: Scope, action_type: &str, input: Value) -> Act {
    Act {
        scope,
        action_type: action_type.to_owned(),
        input,
    }
}

fn item_id() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(vec!["a", "b", "c", "d"]).prop_map(str::to_owned),
        1 => Just(String::new()),
        1 => "[a-z]{1,3}",
    ]
}

fn title() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[A-Za-z ]{1,12}",
        2 => "\\PC{1,8}",
        1 => Just(String::new()),
        1 => Just(" \t ".to_owned()),
        1 => Just("é".repeat(1000)),
        1 => Just("x".repeat(1001)),
    ]
}

fn todo_action() -> impl Strategy<Value = Act> {
    prop_oneof![
        5 => (item_id(), title()).prop_map(|(id, t)| act(Scope::Global, "ADD_TODO", json!({"id": id, "title": t}))),
        5 => (item_id(), prop::option::of(title()), prop::option::of(any::<bool>())).prop_map(|(id, t, d)| {
            let mut input = json!({"id": id});
            if let Some(t) = t {
                input["title"] = json!(t);
            }
            if let Some(d) = d {
                input["done"] = json!(d);
            }
            act(Scope::Global, "UPDATE_TODO", input)
        }),
        3 => item_id().prop_map(|id| act(Scope::Global, "DELETE_TODO", json!({"id": id}))),
        1 => Just(act(Scope::Global, "CLEAR_DONE", json!({}))),
        // Invalid ones: unknown types, extra, missing and mistyped fields, arrays.
        1 => Just(act(Scope::Global, "ARCHIVE_TODO", json!({"id": "a"}))),
        1 => Just(act(Scope::Global, "ADD_TODO", json!({"id": "a", "title": "A", "tag": 1}))),
        1 => Just(act(Scope::Global, "ADD_TODO", json!({"id": "a"}))),
        1 => Just(act(Scope::Global, "UPDATE_TODO", json!({"id": "a", "done": "yes"}))),
        1 => Just(act(Scope::Global, "DELETE_TODO", json!(["a"]))),
    ]
}

/// JSON values of a few levels, with floats of every magnitude.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "\\PC{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-c~/]{0,2}", inner), 0..4)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn pointer() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec!["a", "b", "c", "0", "1", "2", "-", "01", "x~1y", "m~0", ""]);
    prop_oneof![
        10 => prop::collection::vec(token, 0..4).prop_map(|ts| ts.iter().map(|t| format!("/{t}")).collect()),
        1 => Just("a/b".to_owned()),
        1 => Just("/a~2".to_owned()),
    ]
}

fn json_action(scope: Scope) -> impl Strategy<Value = Act> {
    let index = 0usize..4;
    prop_oneof![
        5 => (pointer(), json_value()).prop_map(move |(p, v)| act(scope, "SET", json!({"path": p, "value": v}))),
        2 => pointer().prop_map(move |p| act(scope, "DELETE", json!({"path": p}))),
        2 => (pointer(), json_value()).prop_map(move |(p, v)| act(scope, "MERGE", json!({"path": p, "value": v}))),
        2 => (pointer(), index.clone(), json_value())
            .prop_map(move |(p, i, v)| act(scope, "INSERT", json!({"path": p, "index": i, "value": v}))),
        2 => (pointer(), index).prop_map(move |(p, i)| act(scope, "REMOVE", json!({"path": p, "index": i}))),
        1 => Just(act(scope, "PATCH", json!({"path": "/a"}))),
        1 => Just(act(scope, "SET", json!({"path": "/a"}))),
        1 => Just(act(scope, "INSERT", json!({"path": "/a", "index": -1, "value": 0}))),
    ]
}

fn header_action() -> impl Strategy<Value = Act> {
    prop_oneof![
        "[a-z ]{0,8}".prop_map(|n| act(Scope::Document, "SET_NAME", json!({"name": n}))),
        Just(act(Scope::Document, "SET_NAME", json!({"title": "x"}))),
    ]
}

/// A todo list's actions with some local and header ones mixed in.
fn todo_history() -> impl Strategy<Value = Vec<Act>> {
    prop::collection::vec(
        prop_oneof![8 => todo_action(), 1 => json_action(Scope::Local), 1 => header_action()],
        0..40,
    )
}

/// A JSON document's actions with some local and header ones mixed in.
fn json_history() -> impl Strategy<Value = Vec<Act>> {
    prop::collection::vec(
        prop_oneof![8 => json_action(Scope::Global), 2 => json_action(Scope::Local), 1 => header_action()],
        0..40,
    )
}

// ---- the writer: commits what its reducer accepts ----

struct Written {
    doc: Document,
    ops: Vec<Operation>,
}

/// Commits `acts` to a new document of `document_type` the way the executor does: each action on the current
/// state; a rejected one is dropped (nothing is written for it); an accepted one becomes the next operation of its
/// scope, chained over that scope's head. Checks on the way that a rejection leaves the document unchanged.
fn write(document_type: &str, acts: &[Act]) -> Written {
    let registry = ModelRegistry::with_builtin();
    let clock = HybridClock::with_physical(Box::new(|| 1_763_769_600_000));
    let mut doc = Document::empty(DocumentId(Uuid::from_u128(7)), Branch::default());
    let mut ops = Vec::new();
    let create = act(
        Scope::Document,
        "CREATE_DOCUMENT",
        json!({"documentType": document_type}),
    );
    for (n, a) in std::iter::once(&create).chain(acts).enumerate() {
        let mut action = Action::new(a.action_type.clone(), a.input.clone(), a.scope, clock.now());
        action.id = Uuid::from_u128(1000 + n as u128);
        let op = Operation::new(action, doc.header.revision.get(a.scope), 0, None, &doc.head(a.scope));
        let before = (doc.to_json(), doc.heads);
        match doc.apply(&op, &registry) {
            Ok(()) => ops.push(op),
            Err(_) => assert_eq!(
                (doc.to_json(), doc.heads),
                before,
                "rejected {} {} changed the document",
                a.action_type,
                a.input
            ),
        }
    }
    Written { doc, ops }
}

fn fold(ops: &[Operation]) -> Document {
    let registry = ModelRegistry::with_builtin();
    let mut doc = Document::empty(DocumentId(Uuid::from_u128(7)), Branch::default());
    for op in ops {
        doc.apply(op, &registry)
            .unwrap_or_else(|e| panic!("committed operation {} refused on refold: {e}", op.index));
    }
    doc
}

fn of_scope(ops: &[Operation], scope: Scope) -> Vec<Operation> {
    ops.iter().filter(|op| op.action.scope == scope).cloned().collect()
}

fn check_determinism(written: &Written) -> Result<(), TestCaseError> {
    let one = fold(&written.ops);
    let two = fold(&written.ops);
    prop_assert_eq!(one.state_hash(), two.state_hash());
    prop_assert_eq!(one.global_json(), two.global_json());
    prop_assert_eq!(one.to_json(), two.to_json());
    prop_assert_eq!(one.heads, two.heads);
    // And both equal the writer's own document: rejected actions left no trace in it.
    prop_assert_eq!(one.state_hash(), written.doc.state_hash());
    prop_assert_eq!(one.to_json(), written.doc.to_json());
    // The state hash is the hash of the global state's JSON, which reloads (keyframes) to the same hash.
    let model = one.model().unwrap();
    let reloaded = model.state_from_json(&model.state_to_string(&one.state)).unwrap();
    prop_assert_eq!(model.state_hash(&reloaded), one.state_hash());
    Ok(())
}

fn check_round_trip(written: &Written) -> Result<(), TestCaseError> {
    let text: Vec<String> = written
        .ops
        .iter()
        .map(|op| serde_json::to_string(op).unwrap())
        .collect();
    let back: Vec<Operation> = text.iter().map(|t| serde_json::from_str(t).unwrap()).collect();
    for (original, back) in written.ops.iter().zip(&back) {
        prop_assert_eq!(
            folio_core::operation_hash(&OpHash::ZERO, back),
            folio_core::operation_hash(&OpHash::ZERO, original)
        );
        prop_assert_eq!(back.hash, original.hash);
    }
    // Through a `Value` too (how stores and the server often hold them).
    let via_value: Vec<Operation> = written
        .ops
        .iter()
        .map(|op| serde_json::from_value(serde_json::to_value(op).unwrap()).unwrap())
        .collect();
    for scope in Scope::ALL {
        let original = of_scope(&written.ops, scope);
        let head = original.last().map_or(OpHash::ZERO, |op| op.hash);
        prop_assert_eq!(check_chain(&OpHash::ZERO, 0, &original), Ok(head));
        prop_assert_eq!(check_chain(&OpHash::ZERO, 0, &of_scope(&back, scope)), Ok(head));
        prop_assert_eq!(check_chain(&OpHash::ZERO, 0, &of_scope(&via_value, scope)), Ok(head));
    }
    prop_assert_eq!(fold(&back).state_hash(), written.doc.state_hash());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn todo_histories_fold_deterministically(acts in todo_history()) {
        let written = write("folio/todo-list", &acts);
        check_determinism(&written)?;
    }

    #[test]
    fn json_histories_fold_deterministically(acts in json_history()) {
        let written = write("folio/json", &acts);
        check_determinism(&written)?;
    }

    #[test]
    fn todo_operations_survive_the_wire(acts in todo_history()) {
        let written = write("folio/todo-list", &acts);
        check_round_trip(&written)?;
    }

    #[test]
    fn json_operations_survive_the_wire(acts in json_history()) {
        let written = write("folio/json", &acts);
        check_round_trip(&written)?;
    }

    #[test]
    fn json_values_survive_the_wire(value in json_value()) {
        // Floats included: what is hashed must read back as the same value from its stored text.
        let text = serde_json::to_string(&value).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(serde_json::to_string(&back).unwrap(), text);
        prop_assert_eq!(folio_core::hash::value_hash(&back), folio_core::hash::value_hash(&value));
    }
}

// ---- the hybrid logical clock ----

#[derive(Debug, Clone)]
enum ClockStep {
    Now,
    Observe(HlcTimestamp),
    /// The wall clock moves by this many milliseconds (backwards too: NTP steps).
    Wall(i64),
}

fn clock_step() -> impl Strategy<Value = ClockStep> {
    prop_oneof![
        6 => Just(ClockStep::Now),
        3 => (1_763_769_590_000u64..1_763_769_610_000, prop_oneof![0u32..4, Just(u32::MAX - 1), Just(u32::MAX)])
            .prop_map(|(ms, c)| ClockStep::Observe(HlcTimestamp::new(ms, c))),
        2 => (-5_000i64..5_000).prop_map(ClockStep::Wall),
    ]
}

proptest! {
    #[test]
    fn clock_timestamps_increase_and_pass_every_observed_one(
        start in 1_763_769_595_000u64..1_763_769_605_000,
        steps in prop::collection::vec(clock_step(), 1..80),
    ) {
        let wall = Arc::new(AtomicU64::new(start));
        let w = wall.clone();
        let clock = HybridClock::with_physical(Box::new(move || w.load(Ordering::SeqCst)));
        let mut highest: Option<HlcTimestamp> = None;
        let mut last_issued: Option<HlcTimestamp> = None;
        for step in steps {
            match step {
                ClockStep::Now => {
                    let t = clock.now();
                    if let Some(h) = highest {
                        prop_assert!(t > h, "{t:?} not after {h:?}");
                    }
                    if let Some(l) = last_issued {
                        prop_assert!(t > l, "{t:?} not after the previous {l:?}");
                    }
                    prop_assert!(t.millis >= wall.load(Ordering::SeqCst), "{t:?} behind the wall clock");
                    prop_assert_eq!(clock.last(), t);
                    last_issued = Some(t);
                    highest = Some(t);
                }
                ClockStep::Observe(t) => {
                    clock.observe(t);
                    highest = Some(highest.map_or(t, |h| h.max(t)));
                    prop_assert!(clock.last() >= t);
                }
                ClockStep::Wall(delta) => {
                    let now = wall.load(Ordering::SeqCst);
                    wall.store(now.saturating_add_signed(delta), Ordering::SeqCst);
                }
            }
        }
    }
}
