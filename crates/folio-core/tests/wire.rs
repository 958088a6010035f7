//! The JSON wire format of actions, operations and headers, as in `shared/spec/http.md`.

mod common;

use common::{TODO, Writer, fixed_action};
use folio_core::{Action, Branch, DocumentHeader, HlcTimestamp, OpHash, Operation, Scope};
use serde_json::{Value, json};
use uuid::Uuid;

const ID: &str = "0193a5e2-6c00-7000-8000-000000000001";

fn action() -> Action {
    let mut a = Action::new(
        "ADD_TODO",
        json!({"id": "milk", "title": "Buy milk"}),
        Scope::Global,
        HlcTimestamp::new(1_763_769_600_000, 0),
    );
    a.id = Uuid::parse_str(ID).unwrap();
    a
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

fn parse_action(v: Value) -> Result<Action, serde_json::Error> {
    serde_json::from_value(v)
}

fn parse_operation(v: Value) -> Result<Operation, serde_json::Error> {
    serde_json::from_value(v)
}

// ---- Action ----

#[test]
fn action_fields_are_as_specified() {
    let wire = serde_json::to_value(action()).unwrap();
    assert_eq!(
        wire,
        json!({
            "id": ID,
            "type": "ADD_TODO",
            "input": {"id": "milk", "title": "Buy milk"},
            "scope": "global",
            "timestampUtcMs": "1763769600000",
        })
    );
    // counter (0) and replica (None) are omitted.
    assert_eq!(keys(&wire), ["id", "input", "scope", "timestampUtcMs", "type"]);
}

#[test]
fn action_counter_and_replica_appear_when_set() {
    let mut a = action();
    a.counter = 3;
    a.replica = Some("replica-a".into());
    let wire = serde_json::to_value(&a).unwrap();
    assert_eq!(wire["counter"], json!(3));
    assert_eq!(wire["replica"], json!("replica-a"));
    assert_eq!(parse_action(wire).unwrap(), a);
    assert_eq!(a.timestamp(), HlcTimestamp::new(1_763_769_600_000, 3));
}

#[test]
fn scopes_are_lowercase_names() {
    for (scope, name) in [
        (Scope::Global, "global"),
        (Scope::Local, "local"),
        (Scope::Document, "document"),
    ] {
        assert_eq!(serde_json::to_value(scope).unwrap(), json!(name));
        assert_eq!(serde_json::from_value::<Scope>(json!(name)).unwrap(), scope);
        assert_eq!(name.parse::<Scope>().unwrap(), scope);
        assert_eq!(scope.to_string(), name);
        let mut a = action();
        a.scope = scope;
        assert_eq!(serde_json::to_value(&a).unwrap()["scope"], json!(name));
    }
    for bad in ["Global", "GLOBAL", "shared", ""] {
        assert!(serde_json::from_value::<Scope>(json!(bad)).is_err(), "{bad}");
        assert!(bad.parse::<Scope>().is_err(), "{bad}");
    }
}

#[test]
fn action_round_trips() {
    let a = action();
    let text = serde_json::to_string(&a).unwrap();
    assert_eq!(serde_json::from_str::<Action>(&text).unwrap(), a);
}

#[test]
fn the_spec_example_action_parses() {
    let a = parse_action(json!({
        "id": ID, "type": "ADD_TODO", "input": {"id": "milk", "title": "Buy milk"},
        "scope": "global", "timestampUtcMs": "1763769600000"
    }))
    .unwrap();
    assert_eq!(a, action());
    assert_eq!(a.counter, 0);
    assert_eq!(a.replica, None);
}

#[test]
fn action_denies_unknown_fields() {
    let mut wire = serde_json::to_value(action()).unwrap();
    wire["timestamp"] = json!("1763769600000");
    let err = parse_action(wire).unwrap_err().to_string();
    assert!(err.contains("unknown field"), "{err}");
    // Field names are case-sensitive camelCase.
    let mut wire = serde_json::to_value(action()).unwrap();
    let ts = wire.as_object_mut().unwrap().remove("timestampUtcMs").unwrap();
    wire["timestamp_utc_ms"] = ts;
    assert!(parse_action(wire).is_err());
}

#[test]
fn action_requires_type_and_input() {
    for field in ["type", "input"] {
        let mut wire = serde_json::to_value(action()).unwrap();
        wire.as_object_mut().unwrap().remove(field);
        let err = parse_action(wire).unwrap_err().to_string();
        assert!(err.contains(field), "{field}: {err}");
    }
}

#[test]
fn timestamp_accepts_a_decimal_string_or_a_number() {
    let with = |ts: Value| {
        let mut wire = serde_json::to_value(action()).unwrap();
        wire["timestampUtcMs"] = ts;
        parse_action(wire)
    };
    assert_eq!(
        with(json!("1763769600000")).unwrap().timestamp_utc_ms,
        1_763_769_600_000
    );
    assert_eq!(
        with(json!(1_763_769_600_000u64)).unwrap().timestamp_utc_ms,
        1_763_769_600_000
    );
    assert_eq!(with(json!("0")).unwrap().timestamp_utc_ms, 0);
    assert_eq!(with(json!("18446744073709551615")).unwrap().timestamp_utc_ms, u64::MAX);
    // Leading zeros read, and are written back canonically.
    let a = with(json!("0001763769600000")).unwrap();
    assert_eq!(
        serde_json::to_value(&a).unwrap()["timestampUtcMs"],
        json!("1763769600000")
    );

    for bad in [
        json!("12a"),
        json!(""),
        json!(" 1"),
        json!("1 "),
        json!("-1"),
        json!("+1"),
        json!("1.5"),
        json!("1e3"),
        json!("0x10"),
        json!("18446744073709551616"),
        json!("123456789012345678901"),
        json!(-1),
        json!(1.5),
        json!(null),
        json!(true),
        json!(["1"]),
    ] {
        assert!(with(bad.clone()).is_err(), "{bad} accepted");
    }
    let err = with(json!("12a")).unwrap_err().to_string();
    assert!(err.contains("timestampUtcMs"), "{err}");
}

#[test]
fn action_rejects_a_bad_id() {
    let mut wire = serde_json::to_value(action()).unwrap();
    wire["id"] = json!("not-a-uuid");
    assert!(parse_action(wire).is_err());
}

// ---- Operation ----

fn operation() -> Operation {
    Operation::new(action(), 0, 0, None, &OpHash::ZERO)
}

#[test]
fn operation_fields_are_as_specified() {
    let op = operation();
    let wire = serde_json::to_value(&op).unwrap();
    assert_eq!(
        keys(&wire),
        ["action", "error", "hash", "id", "index", "skip", "timestampUtcMs"]
    );
    assert_eq!(wire["id"], json!(ID));
    assert_eq!(wire["index"], json!(0));
    assert_eq!(wire["skip"], json!(0));
    assert_eq!(wire["timestampUtcMs"], json!("1763769600000"));
    assert_eq!(wire["error"], Value::Null, "error is written as null");
    let hash = wire["hash"].as_str().unwrap();
    assert_eq!(hash.len(), 64);
    assert!(hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    assert_eq!(hash, op.hash.to_hex());
    assert_eq!(wire["action"], serde_json::to_value(action()).unwrap());
}

#[test]
fn operation_round_trips_and_keeps_its_hash() {
    let mut w = Writer::created(TODO);
    w.write(
        Scope::Global,
        "ADD_TODO",
        json!({"id": "a", "title": "Ä ✓ 🦀 \"quoted\" \\"}),
    )
    .unwrap();
    let op = Operation::new(
        fixed_action(
            9,
            Scope::Global,
            "UPDATE_TODO",
            json!({"id": "a", "done": true, "n": 0.1}),
        ),
        1,
        0,
        Some("rejected".into()),
        &w.doc.head(Scope::Global),
    );
    for original in w.log.iter().chain([&op]) {
        let text = serde_json::to_string(original).unwrap();
        let back: Operation = serde_json::from_str(&text).unwrap();
        assert_eq!(&back, original);
        assert_eq!(serde_json::to_string(&back).unwrap(), text);
    }
    let mut ops = w.ops(Scope::Global);
    ops.push(op);
    let back: Vec<Operation> = serde_json::from_str(&serde_json::to_string(&ops).unwrap()).unwrap();
    assert_eq!(folio_core::check_chain(&OpHash::ZERO, 0, &back), Ok(ops[1].hash));
}

#[test]
fn operation_error_is_optional_on_input() {
    let mut wire = serde_json::to_value(operation()).unwrap();
    wire.as_object_mut().unwrap().remove("error");
    assert_eq!(parse_operation(wire).unwrap(), operation());
    let mut wire = serde_json::to_value(operation()).unwrap();
    wire["error"] = json!("EMPTY_TITLE: the title is empty");
    assert_eq!(
        parse_operation(wire).unwrap().error.as_deref(),
        Some("EMPTY_TITLE: the title is empty")
    );
}

#[test]
fn operation_denies_unknown_fields_at_every_level() {
    let mut wire = serde_json::to_value(operation()).unwrap();
    wire["revision"] = json!(1);
    assert!(parse_operation(wire).unwrap_err().to_string().contains("unknown field"));
    let mut wire = serde_json::to_value(operation()).unwrap();
    wire["action"]["extra"] = json!(1);
    assert!(parse_operation(wire).unwrap_err().to_string().contains("unknown field"));
}

#[test]
fn operation_timestamp_follows_the_same_rules() {
    let with = |ts: Value| {
        let mut wire = serde_json::to_value(operation()).unwrap();
        wire["timestampUtcMs"] = ts;
        parse_operation(wire)
    };
    assert!(with(json!(1_763_769_600_000u64)).is_ok());
    assert!(with(json!("1763769600000")).is_ok());
    assert!(with(json!("12a")).is_err());
    assert!(with(json!(-5)).is_err());
}

#[test]
fn operation_rejects_malformed_hashes() {
    let good = operation().hash.to_hex();
    for bad in [
        json!(good.to_uppercase()),
        json!(&good[..62]),
        json!(format!("{good}00")),
        json!(format!("{}zz", &good[..62])),
        json!(""),
        json!(42),
        json!(null),
    ] {
        let mut wire = serde_json::to_value(operation()).unwrap();
        wire["hash"] = bad.clone();
        assert!(parse_operation(wire).is_err(), "{bad} accepted");
    }
}

#[test]
fn operation_requires_its_fields() {
    for field in ["id", "index", "skip", "timestampUtcMs", "hash", "action"] {
        let mut wire = serde_json::to_value(operation()).unwrap();
        wire.as_object_mut().unwrap().remove(field);
        assert!(parse_operation(wire).is_err(), "{field} missing but accepted");
    }
}

// ---- Document and header ----

#[test]
fn document_header_fields_are_camel_case() {
    let w = Writer::created(TODO);
    let wire = serde_json::to_value(&w.doc.header).unwrap();
    assert_eq!(
        keys(&wire),
        [
            "branch",
            "createdAtUtcIso",
            "documentType",
            "id",
            "lastModifiedAtUtcIso",
            "name",
            "revision"
        ]
    );
    assert_eq!(wire["branch"], json!("main"));
    assert_eq!(wire["revision"], json!({"global": 0, "local": 0, "document": 1}));
    assert_eq!(wire["createdAtUtcIso"], json!("2025-11-22T00:00:00.001Z"));
    let back: DocumentHeader = serde_json::from_value(wire).unwrap();
    assert_eq!(back, w.doc.header);

    let doc = w.doc.to_json();
    assert_eq!(keys(&doc), ["header", "state", "stateHash"]);
    assert_eq!(keys(&doc["state"]), ["global", "local"]);
}

#[test]
fn branch_names_are_validated_on_input() {
    assert_eq!(
        serde_json::from_value::<Branch>(json!("feature/x-1.2_b"))
            .unwrap()
            .as_str(),
        "feature/x-1.2_b"
    );
    for bad in ["", "has space", "ünï", &"b".repeat(65)] {
        assert!(serde_json::from_value::<Branch>(json!(bad)).is_err(), "{bad:?}");
    }
    assert!(serde_json::from_value::<Branch>(json!("b".repeat(64))).is_ok());
}
