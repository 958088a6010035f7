//! Hostile input: at least 40 bad requests, each answered with its named error, and nothing stored changes.

mod common;

use reqwest::Method;
use serde_json::{Value, json};

use common::*;
use folio_server::Role;

struct Case {
    name: &'static str,
    method: Method,
    path: String,
    /// Raw body bytes (sent as application/json).
    body: Option<Vec<u8>>,
    /// The token to send: None for none.
    token: Option<String>,
    status: u16,
    code: &'static str,
}

fn case(
    name: &'static str,
    method: Method,
    path: String,
    body: Option<Vec<u8>>,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        name,
        method,
        path,
        body,
        token: None,
        status,
        code,
    }
}

fn json_body(v: Value) -> Option<Vec<u8>> {
    Some(v.to_string().into_bytes())
}

#[tokio::test]
async fn forty_bad_requests_get_named_errors_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let id = s.create_todo().await;
    for i in 0..3 {
        assert_eq!(s.add(&id, &format!("i{i}")).await.0, 200);
    }
    let (_, before) = s.get(&format!("/v1/documents/{id}")).await;
    let read = s.token(Role::Read);
    let actions = format!("/v1/documents/{id}/actions");
    let add = |input: Value| json_body(json!({"actions": [{"type": "ADD_TODO", "input": input}]}));
    let deep: String = "[".repeat(200) + &"]".repeat(200);
    let huge = vec![b' '; 2 * 1024 * 1024];
    let many: Vec<Value> = (0..10_000)
        .map(|i| json!({"type": "ADD_TODO", "input": {"id": format!("m{i}"), "title": "t"}}))
        .collect();
    let thousand_and_one: Vec<Value> = (0..1001)
        .map(|i| json!({"type": "ADD_TODO", "input": {"id": format!("k{i}"), "title": "t"}}))
        .collect();
    let long_title = "x".repeat(1001);

    let mut cases = vec![
        // Malformed and truncated JSON.
        case(
            "malformed json",
            Method::POST,
            actions.clone(),
            Some(b"{not json".to_vec()),
            400,
            "BAD_REQUEST",
        ),
        case(
            "truncated json",
            Method::POST,
            actions.clone(),
            Some(br#"{"actions": [{"type": "ADD_TODO""#.to_vec()),
            400,
            "BAD_REQUEST",
        ),
        case(
            "empty body",
            Method::POST,
            actions.clone(),
            Some(Vec::new()),
            400,
            "BAD_REQUEST",
        ),
        case(
            "a clock at the end of time (it would drag the server's clock with it)",
            Method::POST,
            actions.clone(),
            json_body(
                json!({"actions": [{"type": "ADD_TODO", "input": {"id": "late", "title": "t"},
                "timestampUtcMs": "18446744073709551615"}]}),
            ),
            400,
            "BAD_REQUEST",
        ),
        case(
            "json null",
            Method::POST,
            actions.clone(),
            Some(b"null".to_vec()),
            400,
            "BAD_REQUEST",
        ),
        case(
            "json array",
            Method::POST,
            actions.clone(),
            Some(b"[]".to_vec()),
            400,
            "BAD_REQUEST",
        ),
        case(
            "trailing garbage",
            Method::POST,
            actions.clone(),
            Some(br#"{"actions": []} xx"#.to_vec()),
            400,
            "BAD_REQUEST",
        ),
        case(
            "invalid utf-8",
            Method::POST,
            actions.clone(),
            Some(b"{\"actions\": [{\"type\": \"\xff\xfe\"}]}".to_vec()),
            400,
            "BAD_REQUEST",
        ),
        case(
            "deep nesting",
            Method::POST,
            actions.clone(),
            Some(deep.clone().into_bytes()),
            400,
            "BAD_REQUEST",
        ),
        case(
            "deep nesting in input",
            Method::POST,
            actions.clone(),
            Some(format!(r#"{{"actions": [{{"type": "ADD_TODO", "input": {deep}}}]}}"#).into_bytes()),
            400,
            "BAD_REQUEST",
        ),
        case(
            "huge body",
            Method::POST,
            actions.clone(),
            Some(huge),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        case(
            "10000 actions",
            Method::POST,
            actions.clone(),
            json_body(json!({"actions": many})),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        case(
            "1001 actions",
            Method::POST,
            actions.clone(),
            json_body(json!({"actions": thousand_and_one})),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        // Wrong types and missing fields.
        case(
            "actions not an array",
            Method::POST,
            actions.clone(),
            json_body(json!({"actions": "ADD_TODO"})),
            400,
            "BAD_REQUEST",
        ),
        case(
            "no actions field",
            Method::POST,
            actions.clone(),
            json_body(json!({})),
            400,
            "BAD_REQUEST",
        ),
        case(
            "empty actions",
            Method::POST,
            actions.clone(),
            json_body(json!({"actions": []})),
            400,
            "BAD_REQUEST",
        ),
        case(
            "action type a number",
            Method::POST,
            actions.clone(),
            json_body(json!({"actions": [{"type": 7, "input": {}}]})),
            400,
            "BAD_REQUEST",
        ),
        case(
            "action without input",
            Method::POST,
            actions.clone(),
            json_body(json!({"actions": [{"type": "ADD_TODO"}]})),
            400,
            "BAD_REQUEST",
        ),
        case(
            "unknown field",
            Method::POST,
            actions.clone(),
            json_body(json!({"actions": [], "bogus": 1})),
            400,
            "BAD_REQUEST",
        ),
        case(
            "unknown scope",
            Method::POST,
            actions.clone(),
            json_body(json!({"actions": [{"type": "ADD_TODO", "input": {}, "scope": "galactic"}]})),
            400,
            "BAD_REQUEST",
        ),
        case(
            "bad timestamp",
            Method::POST,
            actions.clone(),
            json_body(json!({"actions": [{"type": "ADD_TODO", "input": {}, "timestampUtcMs": "12a"}]})),
            400,
            "BAD_REQUEST",
        ),
        case(
            "bad action id",
            Method::POST,
            actions.clone(),
            json_body(json!({"actions": [{"id": "nope", "type": "ADD_TODO", "input": {}}]})),
            400,
            "BAD_REQUEST",
        ),
        case(
            "expectedRevision negative",
            Method::POST,
            actions.clone(),
            json_body(
                json!({"actions": [{"type": "ADD_TODO", "input": {"id": "z", "title": "z"}}], "expectedRevision": -1}),
            ),
            400,
            "BAD_REQUEST",
        ),
        case(
            "wait not a bool",
            Method::POST,
            actions.clone(),
            json_body(json!({"actions": [{"type": "ADD_TODO", "input": {"id": "z", "title": "z"}}], "wait": "yes"})),
            400,
            "BAD_REQUEST",
        ),
        case(
            "bad branch",
            Method::POST,
            actions.clone(),
            json_body(
                json!({"actions": [{"type": "ADD_TODO", "input": {"id": "z", "title": "z"}}], "branch": "no spaces allowed"}),
            ),
            400,
            "BAD_REQUEST",
        ),
        case(
            "mixed scopes",
            Method::POST,
            actions.clone(),
            json_body(json!({"actions": [
            {"type": "ADD_TODO", "input": {"id": "z", "title": "z"}},
            {"type": "SET", "input": {"path": "/a", "value": 1}, "scope": "local"}]})),
            400,
            "BAD_REQUEST",
        ),
        // Bad ids.
        case(
            "bad uuid in path",
            Method::GET,
            "/v1/documents/not-a-uuid".into(),
            None,
            400,
            "BAD_REQUEST",
        ),
        case(
            "bad uuid for actions",
            Method::POST,
            "/v1/documents/1234/actions".into(),
            add(json!({"id": "z", "title": "z"})),
            400,
            "BAD_REQUEST",
        ),
        case(
            "bad job id",
            Method::GET,
            "/v1/jobs/xyz".into(),
            None,
            400,
            "BAD_REQUEST",
        ),
        case(
            "unknown document",
            Method::POST,
            "/v1/documents/0193a5e2-6c00-7000-8000-00000000dead/actions".into(),
            add(json!({"id": "z", "title": "z"})),
            404,
            "DOCUMENT_NOT_FOUND",
        ),
        case(
            "bad create id",
            Method::POST,
            "/v1/documents".into(),
            json_body(json!({"documentType": "folio/todo-list", "id": "x"})),
            400,
            "BAD_REQUEST",
        ),
        case(
            "existing create id",
            Method::POST,
            "/v1/documents".into(),
            json_body(json!({"documentType": "folio/todo-list", "id": id})),
            409,
            "DOCUMENT_EXISTS",
        ),
        // Unknown types and actions, rejected actions.
        case(
            "unknown document type",
            Method::POST,
            "/v1/documents".into(),
            json_body(json!({"documentType": "evil/type"})),
            422,
            "UNKNOWN_DOCUMENT_TYPE",
        ),
        case(
            "document type a number",
            Method::POST,
            "/v1/documents".into(),
            json_body(json!({"documentType": 3})),
            400,
            "BAD_REQUEST",
        ),
        case(
            "unknown action",
            Method::POST,
            actions.clone(),
            json_body(json!({"actions": [{"type": "DROP_TABLE", "input": {}}]})),
            422,
            "ACTION_REJECTED",
        ),
        case(
            "unknown action, not waited for",
            Method::POST,
            actions.clone(),
            json_body(json!({"wait": false, "actions": [{"type": "__not_in_enum__", "input": {}}]})),
            422,
            "ACTION_REJECTED",
        ),
        case(
            "unknown document-scope action, not waited for",
            Method::POST,
            actions.clone(),
            json_body(json!({"wait": false, "actions": [{"type": "DROP_TABLE", "scope": "document", "input": {}}]})),
            422,
            "ACTION_REJECTED",
        ),
        case(
            "input wrong shape",
            Method::POST,
            actions.clone(),
            add(json!({"id": 5, "title": "t"})),
            422,
            "ACTION_REJECTED",
        ),
        case(
            "input an array",
            Method::POST,
            actions.clone(),
            add(json!(["a", "A"])),
            422,
            "ACTION_REJECTED",
        ),
        case(
            "empty title",
            Method::POST,
            actions.clone(),
            add(json!({"id": "z", "title": ""})),
            422,
            "ACTION_REJECTED",
        ),
        case(
            "title too long",
            Method::POST,
            actions.clone(),
            add(json!({"id": "z", "title": long_title})),
            422,
            "ACTION_REJECTED",
        ),
        case(
            "document-scope action forged",
            Method::POST,
            actions.clone(),
            json_body(
                json!({"actions": [{"type": "CREATE_DOCUMENT", "input": {"documentType": "folio/json"}, "scope": "document"}]}),
            ),
            409,
            "DOCUMENT_EXISTS",
        ),
        case(
            "stale expectedRevision",
            Method::POST,
            actions.clone(),
            json_body(
                json!({"actions": [{"type": "ADD_TODO", "input": {"id": "z", "title": "z"}}], "expectedRevision": 0}),
            ),
            409,
            "REVISION_MISMATCH",
        ),
        // Query parameters.
        case(
            "limit not a number",
            Method::GET,
            "/v1/documents?limit=many".into(),
            None,
            400,
            "BAD_REQUEST",
        ),
        case(
            "limit zero",
            Method::GET,
            "/v1/documents?limit=0".into(),
            None,
            400,
            "BAD_REQUEST",
        ),
        case(
            "after not a uuid",
            Method::GET,
            "/v1/documents?after=zzz".into(),
            None,
            400,
            "BAD_REQUEST",
        ),
        case(
            "unknown query parameter",
            Method::GET,
            format!("/v1/documents/{id}?bogus=1"),
            None,
            400,
            "BAD_REQUEST",
        ),
        case(
            "revision not a number",
            Method::GET,
            format!("/v1/documents/{id}?revision=1.5&minRevision=1"),
            None,
            400,
            "BAD_REQUEST",
        ),
        case(
            "scope unknown in history",
            Method::GET,
            format!("/v1/documents/{id}/operations?scope=nope"),
            None,
            400,
            "BAD_REQUEST",
        ),
        // Routes and methods.
        case(
            "unknown route",
            Method::GET,
            "/v2/documents".into(),
            None,
            404,
            "NOT_FOUND",
        ),
        case(
            "wrong method",
            Method::PATCH,
            format!("/v1/documents/{id}"),
            None,
            405,
            "METHOD_NOT_ALLOWED",
        ),
        // Answered in plain text (axum's rejections) before the OpenAPI description promised the error shape here;
        // 400 before the description said what a plain GET gets.
        case(
            "subscribe without a WebSocket handshake",
            Method::GET,
            "/v1/subscribe".into(),
            None,
            426,
            "UPGRADE_REQUIRED",
        ),
        case(
            "document id not UTF-8 once percent-decoded",
            Method::GET,
            "/v1/documents/%FF%FE".into(),
            None,
            400,
            "BAD_REQUEST",
        ),
        case(
            "job id not UTF-8 once percent-decoded",
            Method::GET,
            "/v1/jobs/%C3%28".into(),
            None,
            400,
            "BAD_REQUEST",
        ),
        case(
            "schema name not UTF-8 once percent-decoded",
            Method::GET,
            "/v1/schemas/%FF".into(),
            None,
            400,
            "BAD_REQUEST",
        ),
    ];
    for c in cases.iter_mut() {
        c.token = Some(s.admin.clone());
    }
    // Missing and wrong tokens, and a read token writing.
    cases.push(case(
        "no token",
        Method::POST,
        actions.clone(),
        add(json!({"id": "z", "title": "z"})),
        401,
        "UNAUTHORIZED",
    ));
    let mut wrong = case(
        "wrong token",
        Method::POST,
        actions.clone(),
        add(json!({"id": "z", "title": "z"})),
        401,
        "UNAUTHORIZED",
    );
    wrong.token = Some("folio_0000".into());
    cases.push(wrong);
    let mut read_writes = case(
        "read token writing",
        Method::POST,
        actions.clone(),
        add(json!({"id": "z", "title": "z"})),
        403,
        "FORBIDDEN",
    );
    read_writes.token = Some(read.clone());
    cases.push(read_writes);
    let mut read_deletes = case(
        "read token deleting",
        Method::DELETE,
        format!("/v1/documents/{id}"),
        None,
        403,
        "FORBIDDEN",
    );
    read_deletes.token = Some(read.clone());
    cases.push(read_deletes);
    let mut read_creates = case(
        "read token creating",
        Method::POST,
        "/v1/documents".into(),
        json_body(json!({"documentType": "folio/json"})),
        403,
        "FORBIDDEN",
    );
    read_creates.token = Some(read);
    cases.push(read_creates);

    assert!(cases.len() >= 40, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let mut req = s.client.request(c.method.clone(), s.url(&c.path));
        if let Some(t) = &c.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = &c.body {
            req = req.header("content-type", "application/json").body(b.clone());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let code = body["error"]["code"].as_str().unwrap_or("<no error shape>");
        let message = body["error"]["message"].as_str().unwrap_or("");
        if status != c.status || code != c.code || message.is_empty() {
            failures.push(format!(
                "{}: expected {} {}, got {status} {code} ({text:.200})",
                c.name, c.status, c.code
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // Nothing stored changed.
    let (_, after) = s.get(&format!("/v1/documents/{id}")).await;
    assert_eq!(after["stateHash"], before["stateHash"]);
    assert_eq!(after["header"]["revision"], before["header"]["revision"]);
    let (_, list) = s.get("/v1/documents").await;
    assert_eq!(
        list["documents"].as_array().unwrap().len(),
        1,
        "no document was created"
    );
    s.stop().await;
    let store = folio_store::SqliteStore::open(dir.path().join("folio.db"))
        .await
        .unwrap();
    let report = folio_store::verify(&store).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.operations, 1 + 3);
}

/// The check that refuses unknown action types before queueing knows each scope's own: the document scope's
/// actions, the local scope's `folio/json` actions on a document of any model, the model's in the global scope.
/// (A local `SET` on a todo list was refused as unknown by an earlier version of the check.)
#[tokio::test]
async fn each_scope_accepts_its_own_action_types_before_queueing() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let id = s.create_todo().await;
    let actions = format!("/v1/documents/{id}/actions");
    for (scope, action) in [
        (
            "local",
            json!({"type": "SET", "input": {"path": "/draft", "value": "milk"}}),
        ),
        ("document", json!({"type": "SET_NAME", "input": {"name": "Groceries"}})),
        (
            "global",
            json!({"type": "ADD_TODO", "input": {"id": "a", "title": "A"}}),
        ),
    ] {
        let mut action = action;
        action["scope"] = json!(scope);
        for wait in [true, false] {
            let (status, body) = s
                .post(&actions, json!({"wait": wait, "actions": [action.clone()]}))
                .await;
            assert!(
                status == 200 || status == 202,
                "{scope} {action} (wait {wait}): {status} {body}"
            );
        }
    }
    // And the model's actions are not the local scope's.
    let (status, body) = s
        .post(
            &actions,
            json!({"wait": false, "actions": [{"type": "ADD_TODO", "scope": "local", "input": {"id": "b", "title": "B"}}]}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["details"]["reason"], "UNKNOWN_ACTION", "{body}");
}
