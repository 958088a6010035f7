//! `Document`: header derivation from the `document` scope, folding operations per scope, local state, state hashes,
//! heads and `header_change`.

mod common;

use common::{JSON, TODO, Writer, fixed_action, rejection_code};
use folio_core::{
    ApplyError, Document, HeaderChange, ModelRegistry, OpHash, Operation, Revisions, Scope, header_change,
    iso_from_millis,
};
use serde_json::json;

fn add(w: &mut Writer, id: &str, title: &str) {
    w.write(Scope::Global, "ADD_TODO", json!({"id": id, "title": title}))
        .expect("ADD_TODO");
}

// ---- CREATE_DOCUMENT ----

#[test]
fn create_document_derives_the_header() {
    let mut w = Writer::new();
    assert!(!w.doc.is_created());
    assert_eq!(w.doc.global_json(), json!(null));
    assert_eq!(w.doc.state_hash(), OpHash::ZERO);

    let op = w
        .write(
            Scope::Document,
            "CREATE_DOCUMENT",
            json!({"documentType": TODO, "name": "Groceries"}),
        )
        .unwrap();
    let h = &w.doc.header;
    assert!(w.doc.is_created());
    assert_eq!(h.document_type, TODO);
    assert_eq!(h.name, "Groceries");
    assert_eq!(h.created_at_utc_iso, iso_from_millis(op.timestamp_utc_ms));
    assert_eq!(h.last_modified_at_utc_iso, h.created_at_utc_iso);
    assert_eq!(h.created_at_utc_iso, "2025-11-22T00:00:00.001Z");
    assert_eq!(
        h.revision,
        Revisions {
            global: 0,
            local: 0,
            document: 1
        }
    );
    assert!(!h.deleted);
    assert_eq!(w.doc.model().unwrap().document_type(), TODO);
    assert_eq!(w.doc.global_json(), json!({"items": {}}));
}

#[test]
fn create_document_name_defaults_to_empty() {
    let mut w = Writer::new();
    w.write(Scope::Document, "CREATE_DOCUMENT", json!({"documentType": JSON}))
        .unwrap();
    assert_eq!(w.doc.header.name, "");
    assert_eq!(w.doc.global_json(), json!({}));
}

#[test]
fn create_document_with_an_initial_state() {
    let mut w = Writer::new();
    let initial = json!({"items": {"a": {"title": "A", "done": true}}});
    w.write(
        Scope::Document,
        "CREATE_DOCUMENT",
        json!({"documentType": TODO, "name": "n", "initialState": initial}),
    )
    .unwrap();
    assert_eq!(w.doc.global_json(), initial);
    add(&mut w, "b", "B");
    assert_eq!(w.doc.global_json()["items"]["b"]["title"], "B");
}

#[test]
fn create_document_refuses_an_initial_state_of_another_shape() {
    let mut w = Writer::new();
    let err = w
        .write(
            Scope::Document,
            "CREATE_DOCUMENT",
            json!({"documentType": TODO, "initialState": {"items": 3}}),
        )
        .unwrap_err();
    assert_eq!(rejection_code(&err), "INVALID_STATE");
    assert!(!w.doc.is_created());
}

#[test]
fn create_document_of_an_unknown_type() {
    let mut w = Writer::new();
    let err = w
        .write(Scope::Document, "CREATE_DOCUMENT", json!({"documentType": "acme/nope"}))
        .unwrap_err();
    assert_eq!(err, ApplyError::UnknownDocumentType("acme/nope".into()));
    assert!(!w.doc.is_created());
    assert_eq!(w.doc.header.revision.document, 0);
}

#[test]
fn create_document_with_malformed_input() {
    for input in [
        json!({}),
        json!({"documentType": 1}),
        json!({"documentType": TODO, "name": 1}),
        json!({"documentType": TODO, "colour": "red"}),
        json!([TODO, "name"]),
        json!(null),
    ] {
        let mut w = Writer::new();
        let err = w.write(Scope::Document, "CREATE_DOCUMENT", input.clone()).unwrap_err();
        assert_eq!(rejection_code(&err), "INVALID_INPUT", "{input}");
        assert!(!w.doc.is_created());
    }
}

#[test]
fn create_document_twice_is_refused() {
    let mut w = Writer::created(TODO);
    let err = w
        .write(Scope::Document, "CREATE_DOCUMENT", json!({"documentType": JSON}))
        .unwrap_err();
    assert_eq!(rejection_code(&err), "DOCUMENT_EXISTS");
    assert_eq!(w.doc.header.document_type, TODO);
    assert_eq!(w.doc.header.revision.document, 1);
}

#[test]
fn nothing_applies_before_create_document() {
    for (scope, action_type, input) in [
        (Scope::Document, "SET_NAME", json!({"name": "x"})),
        (Scope::Document, "DELETE_DOCUMENT", json!({})),
        (Scope::Global, "ADD_TODO", json!({"id": "a", "title": "A"})),
        (Scope::Local, "SET", json!({"path": "/a", "value": 1})),
    ] {
        let mut w = Writer::new();
        let err = w.write(scope, action_type, input).unwrap_err();
        assert_eq!(err, ApplyError::NotCreated, "{action_type}");
        assert_eq!(w.doc.header.revision, Revisions::default());
    }
}

// ---- SET_NAME, DELETE_DOCUMENT ----

#[test]
fn set_name_renames() {
    let mut w = Writer::created(TODO);
    w.write(Scope::Document, "SET_NAME", json!({"name": "Renamed"}))
        .unwrap();
    assert_eq!(w.doc.header.name, "Renamed");
    assert_eq!(w.doc.header.revision.document, 2);
}

#[test]
fn set_name_with_malformed_input() {
    for input in [
        json!({}),
        json!({"name": 5}),
        json!({"name": "a", "b": 1}),
        json!("name"),
    ] {
        let mut w = Writer::created(TODO);
        let err = w.write(Scope::Document, "SET_NAME", input.clone()).unwrap_err();
        assert_eq!(rejection_code(&err), "INVALID_INPUT", "{input}");
        assert_eq!(w.doc.header.name, "test");
    }
}

#[test]
fn unknown_document_actions_are_refused() {
    let mut w = Writer::created(TODO);
    let err = w
        .write(Scope::Document, "ADD_TODO", json!({"id": "a", "title": "A"}))
        .unwrap_err();
    assert_eq!(rejection_code(&err), "UNKNOWN_ACTION");
}

#[test]
fn delete_document_marks_the_header_deleted() {
    let mut w = Writer::created(TODO);
    add(&mut w, "a", "A");
    assert!(
        w.doc.to_json()["header"].get("deleted").is_none(),
        "omitted while false"
    );

    w.write(Scope::Document, "DELETE_DOCUMENT", json!({})).unwrap();
    assert!(w.doc.header.deleted);
    assert_eq!(w.doc.to_json()["header"]["deleted"], json!(true));
    // The state is kept: deletion is an operation, not an erasure.
    assert_eq!(w.doc.global_json()["items"]["a"]["title"], "A");
    // Deleting again is harmless.
    w.write(Scope::Document, "DELETE_DOCUMENT", json!({})).unwrap();
    assert!(w.doc.header.deleted);
}

#[test]
fn folding_global_operations_does_not_depend_on_the_deletion() {
    // The reactor refuses new actions on a deleted document where they are submitted; folding a history must not
    // read another unit's state, or replicas that learnt of the deletion at different times would diverge.
    let mut w = Writer::created(TODO);
    add(&mut w, "a", "A");
    w.write(Scope::Document, "DELETE_DOCUMENT", json!({})).unwrap();
    w.write(Scope::Global, "ADD_TODO", json!({"id": "b", "title": "B"}))
        .unwrap();
    assert_eq!(w.doc.global_json()["items"]["b"]["title"], "B");
    assert_eq!(w.doc.header.revision.global, 2);
}

#[test]
fn a_deleted_document_still_takes_header_and_local_changes() {
    let mut w = Writer::created(TODO);
    w.write(Scope::Document, "DELETE_DOCUMENT", json!({})).unwrap();
    w.write(Scope::Document, "SET_NAME", json!({"name": "gone"})).unwrap();
    w.write(Scope::Local, "SET", json!({"path": "/seen", "value": true}))
        .unwrap();
    assert_eq!(w.doc.header.name, "gone");
    assert_eq!(w.doc.local, json!({"seen": true}));
}

// ---- ordering ----

#[test]
fn an_out_of_order_index_is_refused() {
    let mut w = Writer::created(TODO);
    add(&mut w, "a", "A");

    // Ahead of the scope's revision.
    let mut ahead = w.next_op(Scope::Global, "ADD_TODO", json!({"id": "b", "title": "B"}));
    ahead = Operation::new(ahead.action, 5, 0, None, &w.doc.head(Scope::Global));
    let err = w.doc.apply(&ahead, &w.registry).unwrap_err();
    assert_eq!(
        err,
        ApplyError::OutOfOrder {
            scope: Scope::Global,
            expected: 1,
            found: 5
        }
    );

    // An operation already applied.
    let again = w.ops(Scope::Global)[0].clone();
    let err = w.doc.apply(&again, &w.registry).unwrap_err();
    assert_eq!(
        err,
        ApplyError::OutOfOrder {
            scope: Scope::Global,
            expected: 1,
            found: 0
        }
    );

    // The document scope has its own sequence: index 0 there is taken by CREATE_DOCUMENT.
    let rename = w.next_op(Scope::Document, "SET_NAME", json!({"name": "x"}));
    let rename = Operation::new(rename.action, 0, 0, None, &OpHash::ZERO);
    assert!(matches!(
        w.doc.apply(&rename, &w.registry),
        Err(ApplyError::OutOfOrder {
            scope: Scope::Document,
            expected: 1,
            found: 0
        })
    ));
    assert_eq!(w.doc.global_json()["items"].as_object().unwrap().len(), 1);
}

#[test]
fn an_operation_with_a_skip_needs_a_replay() {
    let mut w = Writer::created(TODO);
    let op = w.next_op(Scope::Global, "ADD_TODO", json!({"id": "a", "title": "A"}));
    let op = Operation::new(op.action, 0, 1, None, &OpHash::ZERO);
    assert_eq!(
        w.doc.apply(&op, &w.registry).unwrap_err(),
        ApplyError::NeedsReplay { index: 0, skip: 1 }
    );
}

#[test]
fn a_rejected_operation_in_the_log_advances_the_revision_only() {
    let mut w = Writer::created(TODO);
    add(&mut w, "a", "A");
    let hash_before = w.doc.state_hash();
    let op = w.next_op(Scope::Global, "ADD_TODO", json!({"id": "", "title": ""}));
    let op = Operation::new(
        op.action,
        1,
        0,
        Some("EMPTY_ID: the item id is empty".into()),
        &w.doc.head(Scope::Global),
    );
    w.doc.apply(&op, &w.registry).unwrap();
    assert_eq!(w.doc.header.revision.global, 2);
    assert_eq!(w.doc.head(Scope::Global), op.hash);
    assert_eq!(w.doc.state_hash(), hash_before);
}

#[test]
fn a_refused_operation_changes_nothing() {
    let mut w = Writer::created(JSON);
    w.write(Scope::Global, "SET", json!({"path": "/a", "value": 1}))
        .unwrap();
    let (head, revision, hash) = (w.doc.head(Scope::Global), w.doc.header.revision, w.doc.state_hash());
    let err = w
        .write(
            Scope::Global,
            "INSERT",
            json!({"path": "/list", "index": 3, "value": 0}),
        )
        .unwrap_err();
    assert_eq!(rejection_code(&err), "INDEX_OUT_OF_BOUNDS");
    assert_eq!(w.doc.head(Scope::Global), head);
    assert_eq!(w.doc.header.revision, revision);
    assert_eq!(w.doc.state_hash(), hash);
    assert_eq!(w.doc.global_json(), json!({"a": 1}));
}

#[test]
fn last_modified_follows_the_latest_operation_and_never_goes_back() {
    let mut w = Writer::created(TODO);
    add(&mut w, "a", "A");
    let latest = w.log.last().unwrap().timestamp_utc_ms;
    assert_eq!(w.doc.header.last_modified_at_utc_iso, iso_from_millis(latest));
    assert_ne!(w.doc.header.last_modified_at_utc_iso, w.doc.header.created_at_utc_iso);

    // An operation stamped earlier (another replica's clock) does not move it back.
    let mut action = fixed_action(0, Scope::Global, "ADD_TODO", json!({"id": "b", "title": "B"}));
    action.timestamp_utc_ms = 1_000;
    let op = Operation::new(action, 1, 0, None, &w.doc.head(Scope::Global));
    w.doc.apply(&op, &w.registry).unwrap();
    assert_eq!(w.doc.header.last_modified_at_utc_iso, iso_from_millis(latest));
}

// ---- scopes, heads, hashes ----

#[test]
fn local_scope_uses_json_semantics_whatever_the_model() {
    let mut w = Writer::created(TODO);
    w.write(Scope::Local, "SET", json!({"path": "/draft/title", "value": "half"}))
        .unwrap();
    w.write(
        Scope::Local,
        "MERGE",
        json!({"path": "/prefs", "value": {"sort": "title"}}),
    )
    .unwrap();
    w.write(
        Scope::Local,
        "INSERT",
        json!({"path": "/recent", "index": 0, "value": "a"}),
    )
    .unwrap();
    w.write(
        Scope::Local,
        "INSERT",
        json!({"path": "/recent", "index": 1, "value": "b"}),
    )
    .unwrap();
    w.write(Scope::Local, "REMOVE", json!({"path": "/recent", "index": 0}))
        .unwrap();
    w.write(Scope::Local, "DELETE", json!({"path": "/draft"})).unwrap();
    assert_eq!(w.doc.local, json!({"prefs": {"sort": "title"}, "recent": ["b"]}));
    assert_eq!(w.doc.header.revision.local, 6);
    assert_eq!(w.doc.global_json(), json!({"items": {}}), "global untouched");

    for (action_type, input, code) in [
        ("ADD_TODO", json!({"id": "a", "title": "A"}), "UNKNOWN_ACTION"),
        ("SET", json!({"path": "no-slash", "value": 1}), "BAD_POINTER"),
        ("MERGE", json!({"path": "/recent", "value": {}}), "TYPE_CLASH"),
        ("REMOVE", json!({"path": "/nothing", "index": 0}), "PATH_NOT_FOUND"),
        (
            "INSERT",
            json!({"path": "/recent", "index": 9, "value": 0}),
            "INDEX_OUT_OF_BOUNDS",
        ),
        ("SET", json!({"path": "/x"}), "INVALID_INPUT"),
    ] {
        let err = w.write(Scope::Local, action_type, input).unwrap_err();
        assert_eq!(rejection_code(&err), code, "{action_type}");
    }
    assert_eq!(w.doc.header.revision.local, 6);
    assert_eq!(w.doc.local, json!({"prefs": {"sort": "title"}, "recent": ["b"]}));
}

#[test]
fn json_actions_in_the_global_scope_of_a_todo_list_are_unknown() {
    let mut w = Writer::created(TODO);
    let err = w
        .write(Scope::Global, "SET", json!({"path": "/a", "value": 1}))
        .unwrap_err();
    assert_eq!(rejection_code(&err), "UNKNOWN_ACTION");
}

#[test]
fn state_hash_covers_the_global_state_and_not_the_local_one() {
    let mut a = Writer::created(TODO);
    let mut b = Writer::created(TODO);
    add(&mut a, "x", "X");
    add(&mut b, "x", "X");
    assert_eq!(a.doc.state_hash(), b.doc.state_hash());

    a.write(Scope::Local, "SET", json!({"path": "/mine", "value": 1}))
        .unwrap();
    assert_ne!(a.doc.local, b.doc.local);
    assert_eq!(a.doc.state_hash(), b.doc.state_hash(), "local state is left out");

    // A header change (another name) is not part of the state hash either.
    b.write(Scope::Document, "SET_NAME", json!({"name": "other"})).unwrap();
    assert_eq!(a.doc.state_hash(), b.doc.state_hash());

    add(&mut b, "y", "Y");
    assert_ne!(a.doc.state_hash(), b.doc.state_hash());

    let wire = a.doc.to_json();
    assert_eq!(wire["stateHash"], json!(a.doc.state_hash().to_hex()));
    assert_eq!(wire["state"]["local"], json!({"mine": 1}));
    assert_eq!(wire["state"]["global"], a.doc.global_json());
    assert_eq!(wire["header"]["documentType"], json!(TODO));
    assert_eq!(
        wire["header"]["revision"],
        json!({"global": 1, "local": 1, "document": 1})
    );
}

#[test]
fn heads_track_the_last_operation_of_each_scope() {
    let mut w = Writer::new();
    assert_eq!(w.doc.heads, [OpHash::ZERO; 3]);
    w.write(Scope::Document, "CREATE_DOCUMENT", json!({"documentType": TODO}))
        .unwrap();
    assert_eq!(w.doc.head(Scope::Document), w.last_hash(Scope::Document));
    assert_eq!(w.doc.head(Scope::Global), OpHash::ZERO);
    assert_eq!(w.doc.head(Scope::Local), OpHash::ZERO);

    add(&mut w, "a", "A");
    add(&mut w, "b", "B");
    w.write(Scope::Local, "SET", json!({"path": "/x", "value": 1})).unwrap();
    w.write(Scope::Document, "SET_NAME", json!({"name": "n"})).unwrap();
    for scope in Scope::ALL {
        assert_eq!(w.doc.head(scope), w.last_hash(scope), "{scope}");
        assert_ne!(w.doc.head(scope), OpHash::ZERO, "{scope}");
    }
    // `heads` is indexed global, local, document.
    assert_eq!(
        w.doc.heads,
        [
            w.last_hash(Scope::Global),
            w.last_hash(Scope::Local),
            w.last_hash(Scope::Document)
        ]
    );
    assert_eq!(
        w.doc.header.revision,
        Revisions {
            global: 2,
            local: 1,
            document: 2
        }
    );
    // Each scope's chain is verifiable on its own.
    for scope in Scope::ALL {
        assert_eq!(
            folio_core::check_chain(&OpHash::ZERO, 0, &w.ops(scope)),
            Ok(w.last_hash(scope))
        );
    }
}

#[test]
fn refolding_the_log_reaches_the_same_document() {
    let mut w = Writer::created(TODO);
    add(&mut w, "a", "A");
    w.write(Scope::Local, "SET", json!({"path": "/x", "value": 1})).unwrap();
    w.write(Scope::Global, "UPDATE_TODO", json!({"id": "a", "done": true}))
        .unwrap();
    w.write(Scope::Document, "SET_NAME", json!({"name": "n"})).unwrap();

    let registry = ModelRegistry::with_builtin();
    let mut again = Document::empty(w.doc.header.id, w.doc.header.branch.clone());
    for op in &w.log {
        again.apply(op, &registry).unwrap();
    }
    assert_eq!(again.to_json(), w.doc.to_json());
    assert_eq!(again.heads, w.doc.heads);
}

#[test]
fn a_clone_is_independent() {
    let mut w = Writer::created(TODO);
    add(&mut w, "a", "A");
    let snapshot = w.doc.clone();
    add(&mut w, "b", "B");
    assert_eq!(snapshot.header.revision.global, 1);
    assert_eq!(snapshot.global_json()["items"].as_object().unwrap().len(), 1);
    assert_ne!(snapshot.state_hash(), w.doc.state_hash());
}

#[test]
fn restore_global_continues_from_a_keyframe() {
    let mut w = Writer::created(TODO);
    add(&mut w, "a", "A");
    add(&mut w, "b", "B");
    let model = w.doc.model().unwrap().clone();
    let keyframe = model.state_to_string(&w.doc.state);

    let mut cold = Document::empty(w.doc.header.id, w.doc.header.branch.clone());
    cold.apply(&w.ops(Scope::Document)[0], &w.registry).unwrap();
    cold.restore_global(
        model.state_from_json(&keyframe).unwrap(),
        w.doc.header.revision.global,
        w.doc.head(Scope::Global),
        w.doc.seen(Scope::Global).clone(),
    );
    assert_eq!(cold.state_hash(), w.doc.state_hash());

    let next = w.write(Scope::Global, "DELETE_TODO", json!({"id": "a"})).unwrap();
    cold.apply(&next, &w.registry).unwrap();
    assert_eq!(cold.state_hash(), w.doc.state_hash());
    assert_eq!(cold.head(Scope::Global), w.doc.head(Scope::Global));
}

// ---- header_change ----

#[test]
fn header_change_of_document_operations() {
    let mut w = Writer::new();
    let create = w
        .write(
            Scope::Document,
            "CREATE_DOCUMENT",
            json!({"documentType": TODO, "name": "G"}),
        )
        .unwrap();
    assert_eq!(
        header_change(&create),
        Some(HeaderChange::Created {
            document_type: TODO.into(),
            name: "G".into()
        })
    );
    let rename = w.write(Scope::Document, "SET_NAME", json!({"name": "H"})).unwrap();
    assert_eq!(header_change(&rename), Some(HeaderChange::Renamed("H".into())));
    let delete = w.write(Scope::Document, "DELETE_DOCUMENT", json!({})).unwrap();
    assert_eq!(header_change(&delete), Some(HeaderChange::Deleted));

    let unnamed = w.next_op(Scope::Document, "CREATE_DOCUMENT", json!({"documentType": JSON}));
    assert_eq!(
        header_change(&unnamed),
        Some(HeaderChange::Created {
            document_type: JSON.into(),
            name: String::new()
        })
    );
}

#[test]
fn header_change_ignores_other_operations() {
    let mut w = Writer::created(TODO);
    let global = w
        .write(Scope::Global, "ADD_TODO", json!({"id": "a", "title": "A"}))
        .unwrap();
    assert_eq!(header_change(&global), None);
    let local = w.write(Scope::Local, "SET", json!({"path": "/x", "value": 1})).unwrap();
    assert_eq!(header_change(&local), None);

    // A header action in another scope is not a header change.
    let misplaced = w.next_op(Scope::Global, "SET_NAME", json!({"name": "x"}));
    assert_eq!(header_change(&misplaced), None);

    // A rejected (kept in the history) operation changes nothing.
    let mut rejected = w.next_op(Scope::Document, "SET_NAME", json!({"name": "x"}));
    rejected.error = Some("DOCUMENT_DELETED".into());
    assert_eq!(header_change(&rejected), None);

    let unknown = w.next_op(Scope::Document, "ARCHIVE", json!({}));
    assert_eq!(header_change(&unknown), None);
}

#[test]
fn header_change_agrees_with_apply_on_malformed_inputs() {
    for (action_type, input) in [
        ("CREATE_DOCUMENT", json!({})),
        ("CREATE_DOCUMENT", json!({"documentType": TODO, "name": 7})),
        ("CREATE_DOCUMENT", json!({"documentType": TODO, "extra": true})),
        ("SET_NAME", json!({})),
        ("SET_NAME", json!({"name": null})),
        ("SET_NAME", json!({"name": "x", "extra": true})),
    ] {
        let mut w = if action_type == "SET_NAME" {
            Writer::created(TODO)
        } else {
            Writer::new()
        };
        let op = w.next_op(Scope::Document, action_type, input.clone());
        assert!(w.doc.apply(&op, &w.registry).is_err(), "{action_type} {input}");
        assert_eq!(header_change(&op), None, "{action_type} {input}");
    }
}

// ---- owner and grants ----

#[test]
fn owner_and_grants_are_folded_into_the_header_and_the_access_rules() {
    use folio_core::{Access, AccessRules, Grant};
    let mut w = Writer::new();
    w.write(
        Scope::Document,
        "CREATE_DOCUMENT",
        json!({"documentType": TODO, "name": "G", "owner": "alice"}),
    )
    .unwrap();
    assert_eq!(w.doc.header.owner.as_deref(), Some("alice"));
    assert!(w.doc.header.grants.is_empty());
    w.write(
        Scope::Document,
        "SET_GRANTS",
        json!({"grants": [{"principal": "bob", "access": "read"}, {"principal": "*", "access": "write"}]}),
    )
    .unwrap();
    let grants = vec![
        Grant {
            principal: "bob".into(),
            access: Access::Read,
        },
        Grant {
            principal: "*".into(),
            access: Access::Write,
        },
    ];
    assert_eq!(w.doc.header.grants, grants);
    assert_eq!(
        w.doc.header.owner.as_deref(),
        Some("alice"),
        "an input without owner keeps it"
    );
    // Refused inputs change nothing, in the reducer and in the access fold alike.
    for (input, code) in [
        (
            json!({"grants": [{"principal": "", "access": "read"}]}),
            "INVALID_PRINCIPAL",
        ),
        (
            json!({"grants": [{"principal": "b", "access": "read"}, {"principal": "b", "access": "write"}]}),
            "DUPLICATE_GRANT",
        ),
        (json!({"grants": [], "owner": "*"}), "INVALID_PRINCIPAL"),
        (
            json!({"grants": [{"principal": "b", "access": "own"}]}),
            "INVALID_INPUT",
        ),
        (
            json!({"grants": (0..1001).map(|i| json!({"principal": format!("p{i}"), "access": "read"})).collect::<Vec<_>>()}),
            "TOO_MANY_GRANTS",
        ),
    ] {
        let err = w.write(Scope::Document, "SET_GRANTS", input.clone()).unwrap_err();
        assert_eq!(rejection_code(&err), code, "{input}");
    }
    w.write(Scope::Document, "SET_GRANTS", json!({"grants": [], "owner": "carol"}))
        .unwrap();
    let mut rules = AccessRules::default();
    for op in &w.log {
        rules.fold(op);
    }
    assert_eq!(rules.owner.as_deref(), Some("carol"));
    assert_eq!(rules.grants, w.doc.header.grants);
    assert!(rules.grants.is_empty() && !rules.is_open());
    assert_eq!(rules.access_of("carol"), Some(Access::Write));
    assert_eq!(rules.access_of("alice"), None);
    // The header shows them; a document without owner or grants shows neither (as before).
    let header = serde_json::to_value(&w.doc.header).unwrap();
    assert_eq!(header["owner"], "carol");
    assert!(header.get("grants").is_none());
}

#[test]
fn an_owner_only_set_grants_keeps_the_grants_so_it_commutes_with_grant_changes() {
    use folio_core::{AccessRules, Grant};
    let share = json!({"grants": [{"principal": "carol", "access": "write"}]});
    let claim = json!({"owner": "bob"});
    let mut outcomes = Vec::new();
    for order in [[&share, &claim], [&claim, &share]] {
        let mut w = Writer::new();
        w.write(Scope::Document, "CREATE_DOCUMENT", json!({"documentType": TODO}))
            .unwrap();
        for input in order {
            w.write(Scope::Document, "SET_GRANTS", input.clone()).unwrap();
        }
        let mut rules = AccessRules::default();
        for op in &w.log {
            rules.fold(op);
        }
        assert_eq!(
            (&rules.owner, &rules.grants),
            (&w.doc.header.owner, &w.doc.header.grants)
        );
        outcomes.push((w.doc.header.owner.clone(), w.doc.header.grants.clone()));
    }
    let carol: Vec<Grant> = serde_json::from_value(share["grants"].clone()).unwrap();
    assert_eq!(outcomes[0], (Some("bob".into()), carol), "grants kept, owner set");
    assert_eq!(outcomes[0], outcomes[1], "in either order");
}

#[test]
fn the_highest_grant_wins_and_everyone_counts() {
    use folio_core::{Access, AccessRules, Grant};
    let grant = |p: &str, access| Grant {
        principal: p.into(),
        access,
    };
    let rules = AccessRules {
        owner: None,
        grants: vec![grant("*", Access::Read), grant("bob", Access::Write)],
        deleted: false,
    };
    assert!(!rules.is_open());
    assert_eq!(rules.access_of("bob"), Some(Access::Write));
    assert_eq!(rules.access_of("anyone"), Some(Access::Read));
    assert!(AccessRules::default().is_open());
}
