//! `folio/json`: every action and every rejection, given/when/then through the registry.

mod common;

use common::{ModelTest, act};
use serde_json::{Value, json};

fn doc() -> ModelTest {
    ModelTest::json()
}

fn set(path: &str, value: Value) -> (String, Value) {
    act("SET", json!({"path": path, "value": value}))
}

/// A document `{"arr": [1, 2], "obj": {"k": "v"}, "n": 5}`.
fn sample() -> [(String, Value); 3] {
    [
        set("/arr", json!([1, 2])),
        set("/obj", json!({"k": "v"})),
        set("/n", json!(5)),
    ]
}

// ---- initial state ----

#[test]
fn initial_state_is_an_empty_object() {
    assert_eq!(doc().given_no_previous_actions().state(), json!({}));
}

// ---- SET ----

#[test]
fn set_adds_a_member() {
    doc()
        .given_no_previous_actions()
        .when("SET", json!({"path": "/title", "value": "Hello"}))
        .then_state(json!({"title": "Hello"}));
}

#[test]
fn set_replaces_a_member() {
    doc()
        .given(sample())
        .when("SET", json!({"path": "/obj", "value": [true]}))
        .then_state(json!({"arr": [1, 2], "obj": [true], "n": 5}));
}

#[test]
fn set_stores_null() {
    doc()
        .given_no_previous_actions()
        .when("SET", json!({"path": "/x", "value": null}))
        .then_state(json!({"x": null}));
}

#[test]
fn set_creates_missing_parents_as_objects() {
    doc()
        .given_no_previous_actions()
        .when("SET", json!({"path": "/a/b/c", "value": 1}))
        .then_state(json!({"a": {"b": {"c": 1}}}));
    doc()
        .given(sample())
        .when("SET", json!({"path": "/obj/deep/er", "value": 2}))
        .then_state(json!({"arr": [1, 2], "obj": {"k": "v", "deep": {"er": 2}}, "n": 5}));
}

#[test]
fn set_at_the_root_replaces_the_whole_document() {
    doc()
        .given(sample())
        .when("SET", json!({"path": "", "value": {"fresh": true}}))
        .then_state(json!({"fresh": true}));
    doc()
        .given(sample())
        .when("SET", json!({"path": "", "value": 42}))
        .then_state(json!(42));
}

#[test]
fn set_with_dash_appends_to_an_array() {
    doc()
        .given(sample())
        .when("SET", json!({"path": "/arr/-", "value": 3}))
        .then_state(json!({"arr": [1, 2, 3], "obj": {"k": "v"}, "n": 5}));
}

#[test]
fn set_at_the_length_appends_to_an_array() {
    doc()
        .given(sample())
        .when("SET", json!({"path": "/arr/2", "value": 3}))
        .then_state(json!({"arr": [1, 2, 3], "obj": {"k": "v"}, "n": 5}));
    doc()
        .given([set("/arr", json!([]))])
        .when("SET", json!({"path": "/arr/0", "value": "first"}))
        .then_state(json!({"arr": ["first"]}));
}

#[test]
fn set_at_an_index_replaces_the_element() {
    doc()
        .given(sample())
        .when("SET", json!({"path": "/arr/0", "value": "one"}))
        .then_state(json!({"arr": ["one", 2], "obj": {"k": "v"}, "n": 5}));
}

#[test]
fn set_inside_an_array_element() {
    doc()
        .given([set("/people", json!([{"name": "Ada"}]))])
        .when("SET", json!({"path": "/people/0/age", "value": 36}))
        .then_state(json!({"people": [{"name": "Ada", "age": 36}]}));
}

#[test]
fn set_past_the_end_of_an_array_is_out_of_bounds() {
    doc()
        .given(sample())
        .when("SET", json!({"path": "/arr/3", "value": 0}))
        .then_rejected("INDEX_OUT_OF_BOUNDS");
    doc()
        .given(sample())
        .when("SET", json!({"path": "/arr/99/x", "value": 0}))
        .then_rejected("INDEX_OUT_OF_BOUNDS");
}

#[test]
fn set_with_a_key_into_an_array_is_a_type_clash() {
    for path in ["/arr/x", "/arr/01", "/arr/+1", "/arr/-1", "/arr/", "/arr/-/x"] {
        doc()
            .given(sample())
            .when("SET", json!({"path": path, "value": 0}))
            .then_rejected("TYPE_CLASH");
    }
}

#[test]
fn set_through_a_scalar_is_a_type_clash() {
    for path in ["/n/x", "/n/x/y", "/obj/k/z", "/n/0", "/n/-"] {
        doc()
            .given(sample())
            .when("SET", json!({"path": path, "value": 0}))
            .then_rejected("TYPE_CLASH");
    }
    doc()
        .given([set("", json!(7))])
        .when("SET", json!({"path": "/a", "value": 0}))
        .then_rejected("TYPE_CLASH");
}

#[test]
fn set_of_the_empty_key() {
    doc()
        .given_no_previous_actions()
        .when("SET", json!({"path": "/", "value": 1}))
        .then_state(json!({"": 1}));
}

#[test]
fn pointer_escapes_are_decoded() {
    doc()
        .given_no_previous_actions()
        .when("SET", json!({"path": "/a~1b", "value": 1}))
        .then_state(json!({"a/b": 1}));
    doc()
        .given_no_previous_actions()
        .when("SET", json!({"path": "/m~0n", "value": 1}))
        .then_state(json!({"m~n": 1}));
    // `~01` is `~` then `1`, not `/`.
    doc()
        .given_no_previous_actions()
        .when("SET", json!({"path": "/~01", "value": 1}))
        .then_state(json!({"~1": 1}));
    doc()
        .given([set("/a~1b", json!({"c~d": 0}))])
        .when("SET", json!({"path": "/a~1b/c~0d", "value": 2}))
        .then_state(json!({"a/b": {"c~d": 2}}));
}

#[test]
fn bad_pointers_are_refused() {
    for path in ["a/b", "a", "#/a", "/a~2", "/a~", "~1", "/~", "/x/~a"] {
        for (action_type, input) in [
            ("SET", json!({"path": path, "value": 1})),
            ("DELETE", json!({"path": path})),
            ("MERGE", json!({"path": path, "value": {}})),
            ("INSERT", json!({"path": path, "index": 0, "value": 1})),
            ("REMOVE", json!({"path": path, "index": 0})),
        ] {
            doc()
                .given(sample())
                .when(action_type, input)
                .then_rejected("BAD_POINTER");
        }
    }
}

// ---- DELETE ----

#[test]
fn delete_removes_a_member() {
    doc()
        .given(sample())
        .when("DELETE", json!({"path": "/obj/k"}))
        .then_state(json!({"arr": [1, 2], "obj": {}, "n": 5}));
    doc()
        .given(sample())
        .when("DELETE", json!({"path": "/obj"}))
        .then_state(json!({"arr": [1, 2], "n": 5}));
}

#[test]
fn delete_removes_an_array_element_and_shifts_the_rest() {
    doc()
        .given([set("/arr", json!(["a", "b", "c"]))])
        .when("DELETE", json!({"path": "/arr/1"}))
        .then_state(json!({"arr": ["a", "c"]}));
}

#[test]
fn delete_is_idempotent() {
    doc()
        .given([set("/a", json!(1)), act("DELETE", json!({"path": "/a"}))])
        .when("DELETE", json!({"path": "/a"}))
        .then_state(json!({}));
}

#[test]
fn delete_of_a_missing_path_changes_nothing() {
    for path in [
        "/missing",
        "/missing/deeper",
        "/obj/missing",
        "/n/x",     // through a scalar
        "/obj/k/x", // through a string
        "/arr/2",   // past the end
        "/arr/-",
        "/arr/x",
        "/arr/01", // not an index
        "/arr/+0",
    ] {
        doc()
            .given(sample())
            .when("DELETE", json!({"path": path}))
            .then_unchanged();
    }
}

#[test]
fn delete_at_the_root_empties_the_document() {
    doc()
        .given(sample())
        .when("DELETE", json!({"path": ""}))
        .then_state(json!({}));
}

// ---- MERGE ----

#[test]
fn merge_shallow_merges_into_an_object() {
    doc()
        .given([set("/o", json!({"a": 1, "b": {"x": 1}}))])
        .when("MERGE", json!({"path": "/o", "value": {"b": {"y": 2}, "c": 3}}))
        .then_state(json!({"o": {"a": 1, "b": {"y": 2}, "c": 3}}));
}

#[test]
fn merge_at_the_root() {
    doc()
        .given(sample())
        .when("MERGE", json!({"path": "", "value": {"n": 6, "new": null}}))
        .then_state(json!({"arr": [1, 2], "obj": {"k": "v"}, "n": 6, "new": null}));
}

#[test]
fn merge_creates_a_missing_object() {
    doc()
        .given_no_previous_actions()
        .when("MERGE", json!({"path": "/a/b", "value": {"c": 1}}))
        .then_state(json!({"a": {"b": {"c": 1}}}));
}

#[test]
fn merge_into_an_array_element() {
    doc()
        .given([set("/people", json!([{"name": "Ada"}]))])
        .when("MERGE", json!({"path": "/people/0", "value": {"age": 36}}))
        .then_state(json!({"people": [{"name": "Ada", "age": 36}]}));
}

#[test]
fn merge_of_a_value_that_is_not_an_object_is_a_type_clash() {
    for value in [json!([1]), json!("x"), json!(1), json!(null), json!(true)] {
        doc()
            .given(sample())
            .when("MERGE", json!({"path": "/obj", "value": value}))
            .then_rejected("TYPE_CLASH");
        // Refused before anything is created.
        doc()
            .given(sample())
            .when("MERGE", json!({"path": "/new/deep", "value": value}))
            .then_rejected("TYPE_CLASH");
    }
}

#[test]
fn merge_onto_a_scalar_or_an_array_is_a_type_clash() {
    for path in ["/n", "/obj/k", "/arr", "/n/x"] {
        doc()
            .given(sample())
            .when("MERGE", json!({"path": path, "value": {"a": 1}}))
            .then_rejected("TYPE_CLASH");
    }
}

#[test]
fn merge_past_the_end_of_an_array_is_out_of_bounds() {
    doc()
        .given(sample())
        .when("MERGE", json!({"path": "/arr/2", "value": {"a": 1}}))
        .then_rejected("INDEX_OUT_OF_BOUNDS");
}

// ---- INSERT ----

#[test]
fn insert_at_the_start_middle_and_end() {
    for (index, expected) in [(0, json!([0, 1, 2])), (1, json!([1, 0, 2])), (2, json!([1, 2, 0]))] {
        doc()
            .given(sample())
            .when("INSERT", json!({"path": "/arr", "index": index, "value": 0}))
            .then_state(json!({"arr": expected, "obj": {"k": "v"}, "n": 5}));
    }
}

#[test]
fn insert_creates_a_missing_array() {
    doc()
        .given_no_previous_actions()
        .when("INSERT", json!({"path": "/list", "index": 0, "value": "a"}))
        .then_state(json!({"list": ["a"]}));
    doc()
        .given_no_previous_actions()
        .when("INSERT", json!({"path": "/a/b/list", "index": 0, "value": "a"}))
        .then_state(json!({"a": {"b": {"list": ["a"]}}}));
}

#[test]
fn insert_past_the_end_is_out_of_bounds() {
    doc()
        .given(sample())
        .when("INSERT", json!({"path": "/arr", "index": 3, "value": 0}))
        .then_rejected("INDEX_OUT_OF_BOUNDS");
}

#[test]
fn insert_past_the_end_of_a_missing_array_is_out_of_bounds_and_creates_nothing() {
    // then_rejected also checks that the state is unchanged: no empty array (or parent) is left behind.
    doc()
        .given(sample())
        .when("INSERT", json!({"path": "/list", "index": 1, "value": 0}))
        .then_rejected("INDEX_OUT_OF_BOUNDS");
    doc()
        .given(sample())
        .when("INSERT", json!({"path": "/a/b/list", "index": 2, "value": 0}))
        .then_rejected("INDEX_OUT_OF_BOUNDS");
}

#[test]
fn insert_into_something_that_is_not_an_array_is_a_type_clash() {
    for index in [0, 1] {
        for path in ["/obj", "/n", "/obj/k", "/n/x", ""] {
            doc()
                .given(sample())
                .when("INSERT", json!({"path": path, "index": index, "value": 0}))
                .then_rejected("TYPE_CLASH");
        }
    }
}

#[test]
fn insert_into_a_nested_array() {
    doc()
        .given([set("/m", json!([[1], [2]]))])
        .when("INSERT", json!({"path": "/m/1", "index": 0, "value": 0}))
        .then_state(json!({"m": [[1], [0, 2]]}));
}

// ---- REMOVE ----

#[test]
fn remove_takes_out_an_element() {
    doc()
        .given(sample())
        .when("REMOVE", json!({"path": "/arr", "index": 0}))
        .then_state(json!({"arr": [2], "obj": {"k": "v"}, "n": 5}));
    doc()
        .given(sample())
        .when("REMOVE", json!({"path": "/arr", "index": 1}))
        .then_state(json!({"arr": [1], "obj": {"k": "v"}, "n": 5}));
}

#[test]
fn remove_past_the_end_is_out_of_bounds() {
    doc()
        .given(sample())
        .when("REMOVE", json!({"path": "/arr", "index": 2}))
        .then_rejected("INDEX_OUT_OF_BOUNDS");
    doc()
        .given([set("/arr", json!([]))])
        .when("REMOVE", json!({"path": "/arr", "index": 0}))
        .then_rejected("INDEX_OUT_OF_BOUNDS");
}

#[test]
fn remove_at_a_missing_path_is_not_found() {
    for path in ["/missing", "/missing/deeper", "/obj/missing", "/arr/5", "/n/x"] {
        doc()
            .given(sample())
            .when("REMOVE", json!({"path": path, "index": 0}))
            .then_rejected("PATH_NOT_FOUND");
    }
}

#[test]
fn remove_from_something_that_is_not_an_array_is_a_type_clash() {
    for path in ["/obj", "/n", "/obj/k", ""] {
        doc()
            .given(sample())
            .when("REMOVE", json!({"path": path, "index": 0}))
            .then_rejected("TYPE_CLASH");
    }
}

// ---- UNKNOWN_ACTION and INVALID_INPUT ----

#[test]
fn unknown_action_types_are_refused() {
    for action_type in ["set", "ADD_TODO", "PATCH", "", "DELETE_DOCUMENT"] {
        doc()
            .given(sample())
            .when(action_type, json!({"path": "/n", "value": 1}))
            .then_rejected("UNKNOWN_ACTION");
    }
}

#[test]
fn malformed_inputs_are_invalid_input() {
    for (action_type, input) in [
        ("SET", json!({"path": "/a"})),
        ("SET", json!({"value": 1})),
        ("SET", json!({"path": 1, "value": 1})),
        ("SET", json!({"path": "/a", "value": 1, "extra": 0})),
        ("SET", json!(["/a", 1])),
        ("SET", json!(null)),
        ("DELETE", json!({})),
        ("DELETE", json!({"path": "/a", "value": 1})),
        ("DELETE", json!("/a")),
        ("MERGE", json!({"path": "/a"})),
        ("INSERT", json!({"path": "/arr", "value": 1})),
        ("INSERT", json!({"path": "/arr", "index": -1, "value": 1})),
        ("INSERT", json!({"path": "/arr", "index": "0", "value": 1})),
        ("INSERT", json!({"path": "/arr", "index": 0.5, "value": 1})),
        ("REMOVE", json!({"path": "/arr"})),
        ("REMOVE", json!({"path": "/arr", "index": 0, "value": 1})),
    ] {
        doc()
            .given(sample())
            .when(action_type, input)
            .then_rejected("INVALID_INPUT");
    }
}
