//! The OpenAPI description and the server agree, through real HTTP: each request the fuzzer (schemathesis with
//! every check) found allowed by the description and refused by the server is now refused by both or accepted by
//! both; a body that is not `application/json` is 415 on every endpoint that takes one, with nothing stored; a
//! deleted document's sub-resources are 404 like the document; a plain GET on a WebSocket endpoint gets what the
//! description says.

mod common;

use reqwest::Method;
use serde_json::{Value, json};

use common::*;

fn description() -> Value {
    serde_json::from_str(&folio_server::openapi::openapi_json()).unwrap()
}

fn schema<'a>(description: &'a Value, name: &str) -> &'a Value {
    &description["components"]["schemas"][name]
}

/// A request with the admin token and a raw body sent with `content_type` (none when `None`).
async fn send(s: &TestServer, method: Method, path: &str, body: &Value, content_type: Option<&str>) -> (u16, Value) {
    let mut req = s
        .client
        .request(method, s.url(path))
        .bearer_auth(&s.admin)
        .body(body.to_string());
    if let Some(content_type) = content_type {
        req = req.header("content-type", content_type);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn revision(s: &TestServer, id: &str) -> Value {
    let (status, doc) = s.get(&format!("/v1/documents/{id}")).await;
    assert_eq!(status, 200, "{doc}");
    doc["header"]["revision"].clone()
}

async fn document_count(s: &TestServer) -> usize {
    let (_, list) = s.get("/v1/documents?limit=1000").await;
    list["documents"].as_array().unwrap().len()
}

async fn pull_cursor(s: &TestServer) -> Value {
    let (status, pulled) = s.get("/v1/sync/pull?after=0&limit=10000").await;
    assert_eq!(status, 200, "{pulled}");
    pulled["cursor"].clone()
}

/// A body that works on each endpoint that takes one, for document `id`.
fn good_bodies(id: &str) -> Vec<(Method, String, Value)> {
    vec![
        (
            Method::POST,
            "/v1/documents".into(),
            json!({"documentType": "folio/todo-list", "name": "x"}),
        ),
        (
            Method::POST,
            format!("/v1/documents/{id}/actions"),
            json!({"actions": [{"type": "ADD_TODO", "input": {"id": "x", "title": "x"}}]}),
        ),
        (Method::POST, "/v1/tokens".into(), json!({"role": "read"})),
        (
            Method::PUT,
            format!("/v1/documents/{id}/grants"),
            json!({"grants": [{"principal": "*", "access": "read"}]}),
        ),
        (
            Method::POST,
            "/v1/sync/push".into(),
            json!({"replica": "replica-b", "entries": [{
                "documentId": "01a201cb-9612-7523-9148-5eefb40ccf27", "scope": "document", "branch": "main",
                "action": {"id": "01a201cb-9612-7523-9148-5eefb40ccf28", "type": "CREATE_DOCUMENT",
                           "input": {"documentType": "folio/json"}, "scope": "document",
                           "timestampUtcMs": "1000", "replica": "replica-b"}}]}),
        ),
    ]
}

#[tokio::test]
async fn a_body_that_is_not_declared_json_is_415_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let id = s.create_todo().await;
    assert_eq!(s.add(&id, "a").await.0, 200);
    let bodies = good_bodies(&id);

    // Every operation of the description with a body is covered here, and lists 415.
    let description = description();
    let mut with_body = Vec::new();
    for (path, item) in description["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op.get("requestBody").is_some() {
                with_body.push((method.to_uppercase(), path.replace("{id}", &id)));
                assert!(
                    op["responses"]["415"]["description"]
                        .as_str()
                        .is_some_and(|d| d.contains("UNSUPPORTED_MEDIA_TYPE")),
                    "{method} {path} does not list 415"
                );
                let content: Vec<&String> = op["requestBody"]["content"].as_object().unwrap().keys().collect();
                assert_eq!(content, ["application/json"], "{method} {path}");
            }
        }
    }
    let covered: Vec<(String, String)> = bodies.iter().map(|(m, p, _)| (m.to_string(), p.clone())).collect();
    with_body.sort();
    let mut sorted = covered.clone();
    sorted.sort();
    assert_eq!(with_body, sorted, "every endpoint with a body is tried");

    let before = (revision(&s, &id).await, document_count(&s).await, pull_cursor(&s).await);
    for (method, path, body) in &bodies {
        for content_type in [
            Some("text/plain"),
            None,
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("application/jsonp"),
            Some("text/json"),
        ] {
            let got = send(&s, method.clone(), path, body, content_type).await;
            assert_error(&got, 415, "UNSUPPORTED_MEDIA_TYPE");
            assert!(
                got.1["error"]["details"].is_object(),
                "{method} {path} {content_type:?}: {}",
                got.1
            );
        }
    }
    // Nothing was acted on: no revision moved, no document was created, nothing was integrated.
    let after = (revision(&s, &id).await, document_count(&s).await, pull_cursor(&s).await);
    assert_eq!(after, before);

    // Declared JSON is taken, parameters and case aside.
    for (i, content_type) in [
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/json ; charset=UTF-8",
    ]
    .into_iter()
    .enumerate()
    {
        let got = send(
            &s,
            Method::POST,
            &format!("/v1/documents/{id}/actions"),
            &json!({"actions": [{"type": "ADD_TODO", "input": {"id": format!("j{i}"), "title": "j"}}]}),
            Some(content_type),
        )
        .await;
        assert_eq!(got.0, 200, "{content_type}: {}", got.1);
    }
    for (method, path, body) in bodies {
        let got = send(
            &s,
            method.clone(),
            &path,
            &body,
            Some("application/json; charset=utf-8"),
        )
        .await;
        assert!(got.0 == 200 || got.0 == 201, "{method} {path}: {}", got.1);
    }
    // A read token still gets 403 first, and no token 401 (authentication comes before the body).
    let read = s.token(folio_server::Role::Read);
    let resp = s
        .client
        .post(s.url("/v1/documents"))
        .bearer_auth(&read)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    s.stop().await;
    let store = folio_store::SqliteStore::open(dir.path().join("folio.db"))
        .await
        .unwrap();
    assert!(folio_store::verify(&store).await.unwrap().is_ok());
}

#[tokio::test]
async fn what_the_description_allows_the_server_takes_and_what_it_refuses_the_server_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let description = description();
    let id = s.create_todo().await;
    let actions = format!("/v1/documents/{id}/actions");

    // A document type no model has: the description's enum is the registered types; the server refuses another.
    let (_, types) = s.get("/v1/document-types").await;
    let registered: Vec<Value> = types["documentTypes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["documentType"].clone())
        .collect();
    let mut described = schema(&description, "CreateDocument")["properties"]["documentType"]["enum"]
        .as_array()
        .unwrap()
        .clone();
    described.sort_by_key(|v| v.to_string());
    let mut sorted = registered.clone();
    sorted.sort_by_key(|v| v.to_string());
    assert_eq!(described, sorted);
    assert_error(
        &s.post("/v1/documents", json!({"documentType": "evil/type"})).await,
        422,
        "UNKNOWN_DOCUMENT_TYPE",
    );
    for t in &registered {
        assert_eq!(s.post("/v1/documents", json!({"documentType": t})).await.0, 201, "{t}");
    }

    // An empty action type: not in the description's enum of action types, refused by the server.
    let action_types = schema(&description, "ActionInput")["properties"]["type"]["enum"]
        .as_array()
        .unwrap()
        .clone();
    assert!(!action_types.contains(&json!("")));
    for t in types["documentTypes"].as_array().unwrap() {
        for a in t["actions"].as_array().unwrap() {
            assert!(action_types.contains(a), "{a} missing from the enum");
        }
    }
    let got = s.post(&actions, json!({"actions": [{"type": "", "input": {}}]})).await;
    assert_error(&got, 422, "ACTION_REJECTED");

    // Actions of several scopes in one request: the description's `anyOf` allows one scope; the server refuses more.
    let any_of = schema(&description, "SubmitActions")["properties"]["actions"]["anyOf"]
        .as_array()
        .unwrap();
    assert_eq!(any_of.len(), 3);
    let got = s
        .post(
            &actions,
            json!({"actions": [
                {"type": "ADD_TODO", "input": {"id": "m", "title": "m"}},
                {"type": "SET", "input": {"path": "/a", "value": 1}, "scope": "local"}]}),
        )
        .await;
    assert_error(&got, 400, "BAD_REQUEST");

    // `timestampUtcMs` as a number, and integers written as whole floats (JSON Schema's integers include them).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for (i, (timestamp, expected)) in [
        (json!(now), json!(now.to_string())),
        (json!(now as f64), json!(now.to_string())),
        (json!(now.to_string()), json!(now.to_string())),
    ]
    .into_iter()
    .enumerate()
    {
        let (status, body) = s
            .post(
                &actions,
                json!({"actions": [{"type": "ADD_TODO", "input": {"id": format!("t{i}"), "title": "t"},
                       "timestampUtcMs": timestamp}]}),
            )
            .await;
        assert_eq!(status, 200, "{timestamp}: {body}");
        let stored = body["operations"][0]["action"]["timestampUtcMs"].as_str().unwrap();
        assert!(
            stored >= expected.as_str().unwrap(),
            "{timestamp}: kept or advanced, got {stored}"
        );
    }
    let rev = revision(&s, &id).await["global"].as_u64().unwrap();
    let (status, body) = s
        .post(
            &actions,
            json!({"actions": [{"type": "ADD_TODO", "input": {"id": "f", "title": "f"}}],
                   "expectedRevision": rev as f64}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for bad in [
        json!(1.5),
        json!(-1),
        json!(18446744073709551616.0_f64),
        json!("1.0"),
        json!(""),
    ] {
        let got = s
            .post(
                &actions,
                json!({"actions": [{"type": "ADD_TODO", "input": {"id": "g", "title": "g"}, "timestampUtcMs": bad}]}),
            )
            .await;
        assert_error(&got, 400, "BAD_REQUEST");
    }
    // An action's input keeps its numbers as written (only integer fields read whole floats as integers).
    let json_doc = s.post("/v1/documents", json!({"documentType": "folio/json"})).await.1["header"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = s
        .post(
            &format!("/v1/documents/{json_doc}/actions"),
            json!({"actions": [{"type": "SET", "input": {"path": "/x", "value": 2.0}}]}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, doc) = s.get(&format!("/v1/documents/{json_doc}")).await;
    assert!(doc["state"]["global"]["x"].is_f64(), "{doc}");

    // `revision` with `minRevision`: the description lists both without a rule against it; the server reads the
    // document at `revision` once `minRevision` is reached.
    let (status, past) = s.get(&format!("/v1/documents/{id}?revision=1&minRevision=2")).await;
    assert_eq!(status, 200, "{past}");
    assert_eq!(past["header"]["revision"]["global"], 1);
    let got = s.get(&format!("/v1/documents/{id}?revision=999&minRevision=1")).await;
    assert_error(&got, 408, "REVISION_NOT_REACHED");

    // A replica id over 64 characters: the description says 1 to 64 characters, and so does the server (characters,
    // not bytes).
    let replica = &schema(&description, "PushRequest")["properties"]["replica"];
    assert_eq!((&replica["minLength"], &replica["maxLength"]), (&json!(1), &json!(64)));
    let push = |replica: &str| json!({"replica": replica, "entries": []});
    for (replica, status) in [
        ("r".repeat(64), 200),
        ("é".repeat(64), 200),
        ("r".repeat(65), 400),
        (String::new(), 400),
    ] {
        let got = s.post("/v1/sync/push", push(&replica)).await;
        assert_eq!(got.0, status, "{} characters: {}", replica.chars().count(), got.1);
    }

    // A document id that is not a UUID in `documentIds`: the description's pattern takes hyphenated UUIDs between
    // commas; the server refuses anything else, the other spellings of a UUID included.
    let pull = description["paths"]["/v1/sync/pull"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "documentIds")
        .unwrap();
    assert!(pull["schema"]["pattern"].as_str().unwrap().starts_with("^,*("));
    let uuid = "01a201cb-9612-7523-9148-5eefb40ccf27";
    for (ids, status) in [
        (uuid.to_owned(), 200),
        (format!(",{uuid},,{uuid},"), 200),
        (String::new(), 200),
        ("r".to_owned(), 400),
        (uuid.replace('-', ""), 400),
        (format!("{{{uuid}}}"), 400),
        (format!("urn:uuid:{uuid}"), 400),
        (format!("{uuid}{uuid}"), 400),
    ] {
        for path in ["/v1/sync/pull", "/v1/sync/live"] {
            let got = s.get(&format!("{path}?documentIds={ids}")).await;
            // A plain GET on the live endpoint with a good query is 426 (not a handshake).
            let expected = if path == "/v1/sync/live" && status == 200 {
                426
            } else {
                status
            };
            assert_eq!(got.0, expected, "{path} {ids:?}: {}", got.1);
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn a_plain_get_on_a_websocket_endpoint_is_426_as_described() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let description = description();
    for path in ["/v1/subscribe", "/v1/sync/live"] {
        let op = &description["paths"][path]["get"];
        assert!(
            op["responses"]["426"]["description"]
                .as_str()
                .unwrap()
                .contains("plain GET"),
            "{path}"
        );
        assert!(op["responses"]["101"].is_object(), "{path}");

        let resp = s.client.get(s.url(path)).bearer_auth(&s.admin).send().await.unwrap();
        assert_eq!(resp.status(), 426, "{path}");
        assert_eq!(resp.headers()["upgrade"], "websocket");
        assert_eq!(resp.headers()["content-type"], "application/json");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "UPGRADE_REQUIRED", "{body}");

        // A handshake of another protocol version: 426 naming the version this server speaks.
        let resp = s
            .client
            .get(s.url(path))
            .bearer_auth(&s.admin)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-version", "8")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 426, "{path}");
        assert_eq!(resp.headers()["sec-websocket-version"], "13");

        // A handshake without its key is malformed: 400.
        let resp = s
            .client
            .get(s.url(path))
            .bearer_auth(&s.admin)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "BAD_REQUEST", "{body}");

        // No token: 401 before anything else.
        let resp = s.client.get(s.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{path}");
    }
    // A bad query on the live endpoint is 400 whether or not the request is a handshake.
    let got = s.get("/v1/sync/live?limit=0").await;
    assert_error(&got, 400, "BAD_REQUEST");
    s.stop().await;
}

#[tokio::test]
async fn a_deleted_documents_sub_resources_are_404_like_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let id = s.create_todo().await;
    assert_eq!(s.add(&id, "a").await.0, 200);
    for path in ["", "/operations", "/conflicts", "/grants"] {
        assert_eq!(s.get(&format!("/v1/documents/{id}{path}")).await.0, 200, "{path}");
    }
    let (status, _) = s.call(Method::DELETE, &format!("/v1/documents/{id}"), None).await;
    assert_eq!(status, 200);
    for path in [
        "",
        "/operations",
        "/operations?scope=document",
        "/conflicts",
        "/grants",
        "?minRevision=1",
        "?revision=1",
    ] {
        let got = s.get(&format!("/v1/documents/{id}{path}")).await;
        assert_error(&got, 404, "DOCUMENT_NOT_FOUND");
        assert_eq!(got.1["error"]["details"]["deleted"], true, "{path}: {}", got.1);
    }
    let (status, got) = s
        .call(
            Method::PUT,
            &format!("/v1/documents/{id}/grants"),
            Some(json!({"grants": [{"principal": "*", "access": "read"}]})),
        )
        .await;
    assert_error(&(status, got.clone()), 404, "DOCUMENT_NOT_FOUND");
    assert_eq!(got["error"]["details"]["deleted"], true, "{got}");
    for wait in [true, false] {
        let got = s
            .post(
                &format!("/v1/documents/{id}/actions"),
                json!({"actions": [{"type": "ADD_TODO", "input": {"id": "b", "title": "b"}}], "wait": wait}),
            )
            .await;
        assert_error(&got, 404, "DOCUMENT_NOT_FOUND");
        assert_eq!(got.1["error"]["details"]["deleted"], true, "{}", got.1);
    }
    // Deleting again still answers 200 (DELETE is idempotent) and writes nothing.
    let (status, again) = s.call(Method::DELETE, &format!("/v1/documents/{id}"), None).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["revision"]["global"], 1, "{again}");
    s.stop().await;
}
