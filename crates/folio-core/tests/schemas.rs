//! The JSON Schemas in `schemas/` are generated from the Rust types; this test fails when they differ.
//!
//! Regenerate them with `FOLIO_UPDATE_SCHEMAS=1 cargo test -p folio-core --test schemas`.

use std::path::PathBuf;

use folio_core::{Action, Branch, DocumentHeader, DocumentId, HlcTimestamp, OpHash, Operation, Revisions, Scope};
use schemars::{JsonSchema, schema_for};
use serde::Serialize;
use serde_json::{Value, json};

fn schemas_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}

fn render<T: JsonSchema>() -> String {
    let schema = schema_for!(T);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    text.push('\n');
    text
}

fn check(file: &str, generated: String) {
    let path = schemas_dir().join(file);
    if std::env::var("FOLIO_UPDATE_SCHEMAS").as_deref() == Ok("1") {
        std::fs::create_dir_all(schemas_dir()).expect("create schemas/");
        std::fs::write(&path, &generated).expect("write schema");
        return;
    }
    let checked_in = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}; run with FOLIO_UPDATE_SCHEMAS=1", path.display()));
    assert!(
        checked_in == generated,
        "{} differs from the schema generated from the Rust types; if the change is intended, regenerate with \
         FOLIO_UPDATE_SCHEMAS=1 cargo test -p folio-core --test schemas\n--- generated ---\n{generated}",
        path.display()
    );
}

#[test]
fn action_schema_is_up_to_date() {
    check("action.schema.json", render::<Action>());
}

#[test]
fn operation_schema_is_up_to_date() {
    check("operation.schema.json", render::<Operation>());
}

#[test]
fn document_header_schema_is_up_to_date() {
    check("document-header.schema.json", render::<DocumentHeader>());
}

/// The property names a schema declares, and those it requires.
fn declared<T: JsonSchema>() -> (Vec<String>, Vec<String>) {
    let schema = serde_json::to_value(schema_for!(T)).unwrap();
    let mut props: Vec<String> = schema["properties"].as_object().unwrap().keys().cloned().collect();
    props.sort();
    let required = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    (props, required)
}

/// The schema names exactly the fields serde writes when every optional one is set, and requires only fields that
/// serde always writes.
fn agrees<T: JsonSchema + Serialize>(full: &T, minimal: &T) {
    let keys = |v: &T| {
        let mut k: Vec<String> = serde_json::to_value(v)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        k.sort();
        k
    };
    let (props, required) = declared::<T>();
    assert_eq!(props, keys(full));
    let minimal_keys = keys(minimal);
    for field in required {
        assert!(
            minimal_keys.contains(&field),
            "{field} is required but not always written"
        );
    }
}

fn action(counter: u32, replica: Option<&str>) -> Action {
    let mut a = Action::new(
        "ADD_TODO",
        json!({"id": "a", "title": "A"}),
        Scope::Global,
        HlcTimestamp::new(1, counter),
    );
    a.replica = replica.map(str::to_owned);
    if let Some(r) = replica {
        a.context.observe(&format!("other-than-{r}"), HlcTimestamp::new(1, 0));
        // Every optional field present: signed (which sets `replica` to the key's id).
        folio_core::ReplicaKey::from_seed(&[1; 32]).sign(&mut a);
    }
    a
}

#[test]
fn schemas_name_the_serialized_fields() {
    agrees(&action(1, Some("r")), &action(0, None));
    agrees(
        &Operation::new(action(1, Some("r")), 0, 0, Some("E".into()), &OpHash::ZERO),
        &Operation::new(action(0, None), 0, 0, None, &OpHash::ZERO),
    );
    let header = |deleted| DocumentHeader {
        id: DocumentId::new(),
        document_type: "folio/json".into(),
        name: String::new(),
        created_at_utc_iso: folio_core::UtcIso(0),
        last_modified_at_utc_iso: folio_core::UtcIso(0),
        branch: Branch::default(),
        revision: Revisions::default(),
        deleted,
        owner: Some("alice".into()),
        grants: vec![folio_core::Grant {
            principal: "*".into(),
            access: folio_core::Access::Read,
        }],
    };
    agrees(&header(true), &header(false));
}

#[test]
fn wire_values_match_the_schema_patterns() {
    let op = Operation::new(action(0, None), 0, 0, None, &OpHash::ZERO);
    let wire = serde_json::to_value(&op).unwrap();
    let schema = serde_json::to_value(schema_for!(Operation)).unwrap();
    let is_digits = |v: &Value| {
        v.as_str()
            .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
    };
    assert!(is_digits(&wire["timestampUtcMs"]));
    assert_eq!(schema["properties"]["timestampUtcMs"]["type"], "string");
    assert_eq!(schema["properties"]["timestampUtcMs"]["pattern"], "^[0-9]{1,20}$");
    assert_eq!(schema["$defs"]["OpHash"]["pattern"], "^[0-9a-f]{64}$");
    // The signature fields' patterns hold for a signed action.
    let signed = serde_json::to_value(action(0, Some("r"))).unwrap();
    let action_schema = serde_json::to_value(schema_for!(Action)).unwrap();
    // An action signed in a batch carries the batch's signature and its place in the tree: longer, same alphabet.
    let key = folio_core::ReplicaKey::from_seed(&[1; 32]);
    let mut batch: Vec<Action> = (0..3).map(|i| action(i, None)).collect();
    key.sign_all(batch.iter_mut());
    let batched = serde_json::to_value(&batch[2]).unwrap();
    for (field, value, lengths) in [
        ("signer", &signed, "{43}"),
        ("signature", &signed, "{86,774}"),
        ("signature", &batched, "{86,774}"),
    ] {
        let text = value[field].as_str().unwrap();
        let (low, high) = match lengths {
            "{43}" => (43, 43),
            _ => (86, 774),
        };
        assert!((low..=high).contains(&text.len()), "{field}: {}", text.len());
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{field}"
        );
        assert_eq!(
            action_schema["properties"][field]["pattern"],
            format!("^[A-Za-z0-9_-]{lengths}$"),
            "{field}"
        );
    }
    assert_eq!(signed["signature"].as_str().unwrap().len(), 86);
    // Three leaves: leaf 2 goes up alone once, then has one sibling: 64 + 4 + 32 bytes.
    assert_eq!(batched["signature"].as_str().unwrap().len(), 134);
    assert_eq!(schema["$defs"]["Scope"]["enum"], json!(["global", "local", "document"]));
    for scope in Scope::ALL {
        assert!(
            schema["$defs"]["Scope"]["enum"]
                .as_array()
                .unwrap()
                .contains(&json!(scope.as_str()))
        );
    }
}
