//! The OpenAPI description: served without a token, equal to the checked-in `schemas/openapi.json`, and true to
//! what the server does (every operation that declares a token refuses a request without one, and no other does).
//!
//! Regenerate the copy with `FOLIO_UPDATE_SCHEMAS=1 cargo test -p folio-server --test openapi`.

mod common;

use std::path::PathBuf;

use serde_json::Value;

use common::*;

fn checked_in_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/openapi.json")
}

#[tokio::test]
async fn the_served_description_is_the_checked_in_copy() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let resp = s.client.get(s.url("/v1/openapi.json")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let served = resp.text().await.unwrap();
    assert_eq!(served, folio_server::openapi::openapi_json());
    let path = checked_in_path();
    if std::env::var("FOLIO_UPDATE_SCHEMAS").as_deref() == Ok("1") {
        std::fs::write(&path, &served).unwrap();
    } else {
        let checked_in = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}; run with FOLIO_UPDATE_SCHEMAS=1", path.display()));
        assert!(
            checked_in == served,
            "{} differs from the description the server generates; if the change is intended, regenerate it with \
             FOLIO_UPDATE_SCHEMAS=1 cargo test -p folio-server --test openapi",
            path.display()
        );
    }
    s.stop().await;
}

/// The (method, path, needs a token) of every operation the description lists, with `{…}` parameters filled in.
fn operations(description: &Value) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    for (path, item) in description["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let needs_token = op.get("security").is_some_and(|s| !s.as_array().unwrap().is_empty());
            let path = path
                .replace("{id}", "01a201cb-9612-7523-9148-5eefb40ccf27")
                .replace("{jobId}", "01a201cb-9612-7523-9148-5eefb40ccf27")
                .replace("{name}", "action");
            assert!(!path.contains('{'), "unfilled parameter in {path}");
            out.push((method.to_uppercase(), path, needs_token));
        }
    }
    out
}

#[tokio::test]
async fn the_description_says_which_operations_need_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let description: Value = serde_json::from_str(&folio_server::openapi::openapi_json()).unwrap();
    assert_eq!(description["openapi"], "3.1.0");
    let ops = operations(&description);
    assert_eq!(ops.len(), 25, "{ops:?}");
    for (method, path, needs_token) in ops {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = s.client.request(method.clone(), s.url(&path)).send().await.unwrap();
        let status = resp.status().as_u16();
        if needs_token {
            assert_eq!(status, 401, "{method} {path} without a token");
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"]["code"], "UNAUTHORIZED");
        } else {
            assert_eq!(status, 200, "{method} {path} needs no token");
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn every_documented_status_has_the_error_shape_and_every_operation_its_id() {
    let description: Value = serde_json::from_str(&folio_server::openapi::openapi_json()).unwrap();
    for (path, item) in description["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(op["operationId"].is_string(), "{method} {path}");
            assert!(op["summary"].is_string(), "{method} {path}");
            for (status, response) in op["responses"].as_object().unwrap() {
                assert!(response["description"].is_string(), "{method} {path} {status}");
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
            if op.get("security").is_some() {
                for status in ["400", "401", "500"] {
                    assert!(op["responses"].get(status).is_some(), "{method} {path} lacks {status}");
                }
            }
            if method == "post" || method == "delete" {
                for status in ["403", "429", "503"] {
                    assert!(op["responses"].get(status).is_some(), "{method} {path} lacks {status}");
                }
            }
        }
    }
}

#[tokio::test]
async fn the_index_page_lists_the_endpoints_and_the_schemas_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let resp = s.client.get(s.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = resp.text().await.unwrap();
    let description: Value = serde_json::from_str(&folio_server::openapi::openapi_json()).unwrap();
    for (path, item) in description["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let row = format!(
                "<td><code>{}</code></td><td><code>{path}</code></td>",
                method.to_uppercase()
            );
            assert!(page.contains(&row), "{row} missing from the page");
            assert!(page.contains(op["summary"].as_str().unwrap()));
        }
    }
    assert!(page.contains("href=\"/v1/openapi.json\""));

    // Every JSON Schema of schemas/ is linked from the page and served, byte for byte.
    let dir_path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    let mut served = 0;
    for entry in std::fs::read_dir(&dir_path).unwrap() {
        let file = entry.unwrap().file_name().into_string().unwrap();
        let Some(name) = file.strip_suffix(".schema.json") else {
            continue;
        };
        assert!(
            page.contains(&format!("href=\"/v1/schemas/{name}\"")),
            "{name} not linked"
        );
        let resp = s
            .client
            .get(s.url(&format!("/v1/schemas/{name}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{name}");
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert_eq!(
            resp.text().await.unwrap(),
            std::fs::read_to_string(dir_path.join(&file)).unwrap()
        );
        served += 1;
    }
    assert_eq!(served, folio_server::openapi::JSON_SCHEMAS.len());
    let resp = s.client.get(s.url("/v1/schemas/nope")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "NOT_FOUND");
    s.stop().await;
}

/// The top-level fields of real answers are the ones their schema declares, and the required ones are there (the
/// fuzzer checks whole bodies; this catches a drift in the ordinary test run).
#[tokio::test]
async fn real_answers_have_the_fields_their_schemas_declare() {
    let description: Value = serde_json::from_str(&folio_server::openapi::openapi_json()).unwrap();
    let schemas = &description["components"]["schemas"];
    let agrees = |name: &str, body: &Value| {
        let schema = &schemas[name];
        let declared: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
        let body = body.as_object().unwrap_or_else(|| panic!("{name}: {body}"));
        for key in body.keys() {
            assert!(declared.contains(&key), "{name}: {key} is not declared ({body:?})");
        }
        for required in schema["required"].as_array().into_iter().flatten() {
            assert!(
                body.contains_key(required.as_str().unwrap()),
                "{name}: {required} missing"
            );
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let (status, created) = s
        .post(
            "/v1/documents",
            serde_json::json!({"documentType": "folio/todo-list", "name": "t"}),
        )
        .await;
    assert_eq!(status, 201);
    agrees("DocumentBody", &created);
    agrees("DocumentHeader", &created["header"]);
    let id = created["header"]["id"].as_str().unwrap().to_owned();
    let (status, completed) = s.add(&id, "a").await;
    assert_eq!(status, 200);
    agrees("Completed", &completed);
    agrees("Operation", &completed["operations"][0]);
    agrees("Action", &completed["operations"][0]["action"]);
    let (_, job) = s
        .get(&format!("/v1/jobs/{}", completed["jobId"].as_str().unwrap()))
        .await;
    agrees("JobView", &job);
    let (status, queued) = s
        .post(
            &format!("/v1/documents/{id}/actions"),
            serde_json::json!({"actions": [{"type": "ADD_TODO", "input": {"id": "b", "title": "b"}}], "wait": false}),
        )
        .await;
    assert_eq!(status, 202);
    agrees("Queued", &queued);
    let (_, list) = s.get("/v1/documents?limit=1").await;
    agrees("DocumentList", &list);
    let (_, ops) = s.get(&format!("/v1/documents/{id}/operations?limit=1")).await;
    agrees("OperationPage", &ops);
    let (_, types) = s.get("/v1/document-types").await;
    agrees("DocumentTypes", &types);
    agrees("DocumentType", &types["documentTypes"][0]);
    let (_, health) = s.get("/v1/health").await;
    agrees("Health", &health);
    let (status, info) = s.get("/v1/sync/info").await;
    assert_eq!(status, 200);
    agrees("RemoteInfo", &info);
    let (status, pushed) = s
        .post(
            "/v1/sync/push",
            serde_json::json!({"replica": "replica-b", "entries": []}),
        )
        .await;
    assert_eq!(status, 200, "{pushed}");
    agrees("PushResponse", &pushed);
    let (status, pulled) = s.get("/v1/sync/pull?after=0&limit=2").await;
    assert_eq!(status, 200);
    agrees("PullResponse", &pulled);
    agrees("SyncEntry", &pulled["entries"][0]);
    let (status, conflicts) = s.get(&format!("/v1/documents/{id}/conflicts")).await;
    assert_eq!(status, 200);
    agrees("ConflictList", &conflicts);
    let (status, deleted) = s
        .call(reqwest::Method::DELETE, &format!("/v1/documents/{id}"), None)
        .await;
    assert_eq!(status, 200);
    agrees("Deleted", &deleted);
    let (status, again) = s
        .call(reqwest::Method::DELETE, &format!("/v1/documents/{id}"), None)
        .await;
    assert_eq!(status, 200);
    agrees("Deleted", &again);
    let (status, error) = s.get(&format!("/v1/documents/{id}")).await;
    assert_eq!(status, 404);
    agrees("ErrorBody", &error);
    agrees("ErrorObject", &error["error"]);
    s.stop().await;
}
