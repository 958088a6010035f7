//! `folio/todo-list`: every action and every rejection, given/when/then through the registry.

mod common;

use common::{ModelTest, act};
use serde_json::json;

fn todo() -> ModelTest {
    ModelTest::todo()
}

fn add(id: &str, title: &str) -> (String, serde_json::Value) {
    act("ADD_TODO", json!({"id": id, "title": title}))
}

fn done(id: &str) -> (String, serde_json::Value) {
    act("UPDATE_TODO", json!({"id": id, "done": true}))
}

fn delete(id: &str) -> (String, serde_json::Value) {
    act("DELETE_TODO", json!({"id": id}))
}

// ---- initial state ----

#[test]
fn initial_state_is_an_empty_list() {
    let given = todo().given_no_previous_actions();
    assert_eq!(given.state(), json!({"items": {}}));
}

// ---- ADD_TODO ----

#[test]
fn add_creates_an_open_item() {
    todo()
        .given_no_previous_actions()
        .when("ADD_TODO", json!({"id": "milk", "title": "Buy milk"}))
        .then_state(json!({"items": {"milk": {"title": "Buy milk", "done": false}}}));
}

#[test]
fn add_keeps_the_title_as_given() {
    todo()
        .given_no_previous_actions()
        .when("ADD_TODO", json!({"id": "x", "title": "  padded  "}))
        .then_state(json!({"items": {"x": {"title": "  padded  ", "done": false}}}));
}

#[test]
fn add_of_an_existing_id_updates_its_title_and_keeps_done() {
    todo()
        .given([add("milk", "Buy milk"), done("milk")])
        .when("ADD_TODO", json!({"id": "milk", "title": "Buy oat milk"}))
        .then_state(json!({"items": {"milk": {"title": "Buy oat milk", "done": true}}}));
}

#[test]
fn add_of_a_deleted_id_recreates_it_and_drops_the_tombstone() {
    todo()
        .given([add("milk", "Buy milk"), done("milk"), delete("milk")])
        .when("ADD_TODO", json!({"id": "milk", "title": "Buy milk again"}))
        .then_state(json!({"items": {"milk": {"title": "Buy milk again", "done": false}}}));
}

#[test]
fn add_leaves_other_items_alone() {
    todo()
        .given([add("a", "A"), add("b", "B"), done("b")])
        .when("ADD_TODO", json!({"id": "c", "title": "C"}))
        .then_state(json!({"items": {
            "a": {"title": "A", "done": false},
            "b": {"title": "B", "done": true},
            "c": {"title": "C", "done": false},
        }}));
}

#[test]
fn add_rejects_an_empty_title() {
    todo()
        .given_no_previous_actions()
        .when("ADD_TODO", json!({"id": "x", "title": ""}))
        .then_rejected("EMPTY_TITLE");
}

#[test]
fn add_rejects_a_whitespace_only_title() {
    for title in [" ", "   ", "\t", "\n \r\n", "\u{3000}\u{a0}"] {
        todo()
            .given([add("x", "keep me")])
            .when("ADD_TODO", json!({"id": "x", "title": title}))
            .then_rejected("EMPTY_TITLE");
    }
}

#[test]
fn add_accepts_a_title_of_exactly_1000_characters() {
    let title = "a".repeat(1000);
    todo()
        .given_no_previous_actions()
        .when("ADD_TODO", json!({"id": "x", "title": title}))
        .then_state(json!({"items": {"x": {"title": title, "done": false}}}));
}

#[test]
fn add_rejects_a_title_of_1001_characters() {
    let rejection = todo()
        .given_no_previous_actions()
        .when("ADD_TODO", json!({"id": "x", "title": "a".repeat(1001)}))
        .then_rejected("TITLE_TOO_LONG");
    assert!(rejection.message.contains("1001"), "{rejection}");
}

#[test]
fn title_length_counts_characters_not_bytes() {
    // 1000 characters of 2, 3 and 4 bytes: 2000 to 4000 bytes, all within the limit.
    for c in ['é', '€', '🦀'] {
        let title: String = std::iter::repeat_n(c, 1000).collect();
        assert!(title.len() > 1000);
        todo()
            .given_no_previous_actions()
            .when("ADD_TODO", json!({"id": "x", "title": title}))
            .then_state(json!({"items": {"x": {"title": title, "done": false}}}));

        let too_long: String = std::iter::repeat_n(c, 1001).collect();
        todo()
            .given_no_previous_actions()
            .when("ADD_TODO", json!({"id": "x", "title": too_long}))
            .then_rejected("TITLE_TOO_LONG");
    }
}

#[test]
fn add_rejects_an_empty_id() {
    todo()
        .given_no_previous_actions()
        .when("ADD_TODO", json!({"id": "", "title": "Buy milk"}))
        .then_rejected("EMPTY_ID");
}

#[test]
fn an_empty_id_is_reported_before_an_empty_title() {
    todo()
        .given_no_previous_actions()
        .when("ADD_TODO", json!({"id": "", "title": ""}))
        .then_rejected("EMPTY_ID");
}

// ---- UPDATE_TODO ----

#[test]
fn update_sets_the_title() {
    todo()
        .given([add("milk", "Buy milk")])
        .when("UPDATE_TODO", json!({"id": "milk", "title": "Buy oat milk"}))
        .then_state(json!({"items": {"milk": {"title": "Buy oat milk", "done": false}}}));
}

#[test]
fn update_sets_done_and_back() {
    todo()
        .given([add("milk", "Buy milk")])
        .when("UPDATE_TODO", json!({"id": "milk", "done": true}))
        .then_state(json!({"items": {"milk": {"title": "Buy milk", "done": true}}}));
    todo()
        .given([add("milk", "Buy milk"), done("milk")])
        .when("UPDATE_TODO", json!({"id": "milk", "done": false}))
        .then_state(json!({"items": {"milk": {"title": "Buy milk", "done": false}}}));
}

#[test]
fn update_sets_title_and_done_together() {
    todo()
        .given([add("milk", "Buy milk")])
        .when("UPDATE_TODO", json!({"id": "milk", "title": "Milk", "done": true}))
        .then_state(json!({"items": {"milk": {"title": "Milk", "done": true}}}));
}

#[test]
fn update_with_nothing_to_change_changes_nothing() {
    todo()
        .given([add("milk", "Buy milk")])
        .when("UPDATE_TODO", json!({"id": "milk"}))
        .then_unchanged();
    todo()
        .given([add("milk", "Buy milk")])
        .when("UPDATE_TODO", json!({"id": "milk", "title": null, "done": null}))
        .then_unchanged();
}

#[test]
fn update_of_a_deleted_item_recreates_it_from_its_tombstone() {
    // Upsert: the tombstone keeps the title, the update sets done.
    todo()
        .given([add("milk", "Buy milk"), delete("milk")])
        .when("UPDATE_TODO", json!({"id": "milk", "done": true}))
        .then_state(json!({"items": {"milk": {"title": "Buy milk", "done": true}}}));
}

#[test]
fn update_of_a_deleted_item_keeps_the_tombstone_done_flag() {
    todo()
        .given([add("milk", "Buy milk"), done("milk"), delete("milk")])
        .when("UPDATE_TODO", json!({"id": "milk", "title": "Buy milk twice"}))
        .then_state(json!({"items": {"milk": {"title": "Buy milk twice", "done": true}}}));
}

#[test]
fn update_of_an_unknown_id_with_a_title_creates_it() {
    todo()
        .given_no_previous_actions()
        .when("UPDATE_TODO", json!({"id": "new", "title": "Fresh", "done": true}))
        .then_state(json!({"items": {"new": {"title": "Fresh", "done": true}}}));
}

#[test]
fn update_of_an_unknown_id_without_a_title_is_not_found() {
    todo()
        .given([add("milk", "Buy milk")])
        .when("UPDATE_TODO", json!({"id": "eggs", "done": true}))
        .then_rejected("TODO_NOT_FOUND");
    todo()
        .given_no_previous_actions()
        .when("UPDATE_TODO", json!({"id": "eggs"}))
        .then_rejected("TODO_NOT_FOUND");
}

#[test]
fn update_rejects_empty_blank_and_long_titles() {
    for (title, code) in [
        (String::new(), "EMPTY_TITLE"),
        (" \t ".to_owned(), "EMPTY_TITLE"),
        ("b".repeat(1001), "TITLE_TOO_LONG"),
        ("ü".repeat(1001), "TITLE_TOO_LONG"),
    ] {
        todo()
            .given([add("milk", "Buy milk")])
            .when("UPDATE_TODO", json!({"id": "milk", "title": title}))
            .then_rejected(code);
        // Checked before the upsert: a bad title does not recreate a deleted item either.
        todo()
            .given([add("milk", "Buy milk"), delete("milk")])
            .when("UPDATE_TODO", json!({"id": "milk", "title": title, "done": true}))
            .then_rejected(code);
    }
}

#[test]
fn update_accepts_1000_multibyte_characters() {
    let title = "ü".repeat(1000);
    todo()
        .given([add("milk", "Buy milk")])
        .when("UPDATE_TODO", json!({"id": "milk", "title": title}))
        .then_state(json!({"items": {"milk": {"title": title, "done": false}}}));
}

#[test]
fn update_rejects_an_empty_id() {
    todo()
        .given([add("milk", "Buy milk")])
        .when("UPDATE_TODO", json!({"id": "", "done": true}))
        .then_rejected("EMPTY_ID");
}

// ---- DELETE_TODO ----

#[test]
fn delete_moves_the_item_to_a_tombstone() {
    todo()
        .given([add("milk", "Buy milk"), add("eggs", "Eggs")])
        .when("DELETE_TODO", json!({"id": "milk"}))
        .then_state(json!({
            "items": {"eggs": {"title": "Eggs", "done": false}},
            "deleted": {"milk": {"title": "Buy milk", "done": false}},
        }));
}

#[test]
fn delete_is_idempotent() {
    todo()
        .given([add("milk", "Buy milk"), delete("milk")])
        .when("DELETE_TODO", json!({"id": "milk"}))
        .then_state(json!({"items": {}, "deleted": {"milk": {"title": "Buy milk", "done": false}}}));
}

#[test]
fn delete_of_an_unknown_id_changes_nothing() {
    todo()
        .given([add("milk", "Buy milk")])
        .when("DELETE_TODO", json!({"id": "eggs"}))
        .then_unchanged();
    todo()
        .given_no_previous_actions()
        .when("DELETE_TODO", json!({"id": "eggs"}))
        .then_state(json!({"items": {}}));
}

#[test]
fn delete_rejects_an_empty_id() {
    todo()
        .given([add("milk", "Buy milk")])
        .when("DELETE_TODO", json!({"id": ""}))
        .then_rejected("EMPTY_ID");
}

#[test]
fn delete_after_readd_tombstones_the_new_version() {
    todo()
        .given([add("milk", "v1"), delete("milk"), add("milk", "v2")])
        .when("DELETE_TODO", json!({"id": "milk"}))
        .then_state(json!({"items": {}, "deleted": {"milk": {"title": "v2", "done": false}}}));
}

// ---- CLEAR_DONE ----

#[test]
fn clear_done_tombstones_done_items_only() {
    todo()
        .given([add("a", "A"), add("b", "B"), add("c", "C"), done("a"), done("c")])
        .when("CLEAR_DONE", json!({}))
        .then_state(json!({
            "items": {"b": {"title": "B", "done": false}},
            "deleted": {"a": {"title": "A", "done": true}, "c": {"title": "C", "done": true}},
        }));
}

#[test]
fn clear_done_with_nothing_done_changes_nothing() {
    todo()
        .given([add("a", "A")])
        .when("CLEAR_DONE", json!({}))
        .then_unchanged();
    todo()
        .given_no_previous_actions()
        .when("CLEAR_DONE", json!({}))
        .then_unchanged();
}

#[test]
fn cleared_items_come_back_on_update() {
    todo()
        .given([add("a", "A"), done("a"), act("CLEAR_DONE", json!({}))])
        .when("UPDATE_TODO", json!({"id": "a", "done": false}))
        .then_state(json!({"items": {"a": {"title": "A", "done": false}}}));
}

// ---- UNKNOWN_ACTION ----

#[test]
fn unknown_action_types_are_refused() {
    for action_type in ["ADD_TODOS", "add_todo", "AddTodo", "", "SET", "CREATE_DOCUMENT"] {
        todo()
            .given([add("a", "A")])
            .when(action_type, json!({"id": "a", "title": "B"}))
            .then_rejected("UNKNOWN_ACTION");
    }
}

// ---- INVALID_INPUT ----

#[test]
fn missing_fields_are_invalid_input() {
    for (action_type, input) in [
        ("ADD_TODO", json!({"id": "a"})),
        ("ADD_TODO", json!({"title": "A"})),
        ("ADD_TODO", json!({})),
        ("UPDATE_TODO", json!({"title": "A"})),
        ("DELETE_TODO", json!({})),
    ] {
        todo()
            .given([add("a", "A")])
            .when(action_type, input)
            .then_rejected("INVALID_INPUT");
    }
}

#[test]
fn mistyped_fields_are_invalid_input() {
    for (action_type, input) in [
        ("ADD_TODO", json!({"id": 1, "title": "A"})),
        ("ADD_TODO", json!({"id": "a", "title": 7})),
        ("ADD_TODO", json!({"id": "a", "title": null})),
        ("ADD_TODO", json!({"id": "a", "title": ["A"]})),
        ("UPDATE_TODO", json!({"id": "a", "done": "yes"})),
        ("UPDATE_TODO", json!({"id": "a", "done": 1})),
        ("UPDATE_TODO", json!({"id": "a", "title": false})),
        ("DELETE_TODO", json!({"id": null})),
    ] {
        todo()
            .given([add("a", "A")])
            .when(action_type, input)
            .then_rejected("INVALID_INPUT");
    }
}

#[test]
fn extra_fields_are_invalid_input() {
    for (action_type, input) in [
        ("ADD_TODO", json!({"id": "a", "title": "A", "priority": 1})),
        ("UPDATE_TODO", json!({"id": "a", "done": true, "Done": true})),
        ("DELETE_TODO", json!({"id": "a", "hard": true})),
        ("CLEAR_DONE", json!({"all": true})),
    ] {
        todo()
            .given([add("a", "A"), done("a")])
            .when(action_type, input)
            .then_rejected("INVALID_INPUT");
    }
}

#[test]
fn inputs_that_are_not_objects_are_invalid_input() {
    for (action_type, input) in [
        ("ADD_TODO", json!(null)),
        ("ADD_TODO", json!("a")),
        // serde's derive would read a struct from an array of its fields in order: not on folio's wire.
        ("ADD_TODO", json!(["a", "A"])),
        ("UPDATE_TODO", json!(["a", "A", true])),
        ("DELETE_TODO", json!(["a"])),
        ("CLEAR_DONE", json!(null)),
        ("CLEAR_DONE", json!([])),
        ("CLEAR_DONE", json!(0)),
    ] {
        todo()
            .given([add("a", "A"), done("a")])
            .when(action_type, input)
            .then_rejected("INVALID_INPUT");
    }
}

#[test]
fn invalid_input_messages_name_the_action() {
    let rejection = todo()
        .given_no_previous_actions()
        .when("ADD_TODO", json!({"id": "a"}))
        .then_rejected("INVALID_INPUT");
    assert!(rejection.message.contains("ADD_TODO"), "{rejection}");
    assert!(rejection.message.contains("title"), "{rejection}");
}
