//! Every endpoint of spec/http.md through a real HTTP client against a real server.

mod common;

use reqwest::Method;
use serde_json::json;

use common::*;
use folio_server::Role;

#[tokio::test]
async fn health_needs_no_token_and_everything_else_does() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let resp = s.client.get(s.url("/v1/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert!(body["version"].is_string());
    for (method, path) in [
        (Method::GET, "/v1/document-types"),
        (Method::GET, "/v1/documents"),
        (Method::POST, "/v1/documents"),
        (Method::GET, "/v1/jobs/0193a5e2-6c00-7000-8000-000000000001"),
    ] {
        let resp = s.client.request(method.clone(), s.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{method} {path}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "UNAUTHORIZED");
        let resp = s
            .client
            .request(method.clone(), s.url(path))
            .bearer_auth("folio_wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{method} {path} with a wrong token");
    }
    s.stop().await;
}

#[tokio::test]
async fn document_types_lists_the_models_and_their_actions() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let (status, body) = s.get("/v1/document-types").await;
    assert_eq!(status, 200);
    let types = body["documentTypes"].as_array().unwrap();
    let todo = types.iter().find(|t| t["documentType"] == "folio/todo-list").unwrap();
    assert!(todo["actions"].as_array().unwrap().contains(&json!("ADD_TODO")));
    assert!(types.iter().any(|t| t["documentType"] == "folio/json"));
    s.stop().await;
}

#[tokio::test]
async fn create_get_act_history_delete() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let (status, doc) = s
        .post(
            "/v1/documents",
            json!({"documentType": "folio/todo-list", "name": "Groceries"}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(doc["header"]["documentType"], "folio/todo-list");
    assert_eq!(doc["header"]["name"], "Groceries");
    assert_eq!(doc["header"]["branch"], "main");
    assert_eq!(doc["header"]["revision"]["global"], 0);
    assert_eq!(doc["state"]["global"], json!({"items": {}}));
    assert_eq!(doc["stateHash"].as_str().unwrap().len(), 64);
    let id = doc["header"]["id"].as_str().unwrap().to_owned();

    // Several actions: all applied, revision and operations returned. A client's clock is kept when it is later
    // than everything in the document (an earlier one is advanced: the history stays in the total order).
    let later = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 60_000)
        .to_string();
    let (status, body) = s
        .post(
            &format!("/v1/documents/{id}/actions"),
            json!({"actions": [
                {"type": "ADD_TODO", "input": {"id": "milk", "title": "Buy milk"}},
                {"id": "0193a5e2-6c00-7000-8000-0000000000aa", "type": "UPDATE_TODO", "input": {"id": "milk", "done": true},
                 "scope": "global", "timestampUtcMs": later}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["revision"], 2);
    let ops = body["operations"].as_array().unwrap();
    assert_eq!(ops.len(), 2);
    assert_eq!(ops[1]["action"]["id"], "0193a5e2-6c00-7000-8000-0000000000aa");
    assert_eq!(ops[1]["timestampUtcMs"], later.as_str());
    assert_eq!(ops[1]["index"], 1);
    assert!(ops[0]["hash"].as_str().unwrap().len() == 64);
    let job_id = body["jobId"].as_str().unwrap().to_owned();
    let (status, job) = s.get(&format!("/v1/jobs/{job_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(job, json!({"jobId": job_id, "status": "completed", "revision": 2}));

    let (status, doc) = s.get(&format!("/v1/documents/{id}")).await;
    assert_eq!(status, 200);
    let milk = &doc["state"]["global"]["items"]["milk"];
    assert_eq!((&milk["title"], &milk["done"]), (&json!("Buy milk"), &json!(true)));
    assert!(milk["by"].is_object(), "the item records who built it: {milk}");
    assert_eq!(doc["header"]["revision"]["global"], 2);
    // Time travel.
    let (_, past) = s.get(&format!("/v1/documents/{id}?revision=1")).await;
    assert_eq!(past["state"]["global"]["items"]["milk"]["done"], false);
    // minRevision already reached, and not reached in time.
    let (status, _) = s.get(&format!("/v1/documents/{id}?minRevision=2")).await;
    assert_eq!(status, 200);

    // History, paged.
    let (status, page) = s.get(&format!("/v1/documents/{id}/operations?limit=1")).await;
    assert_eq!(status, 200);
    assert_eq!(page["operations"].as_array().unwrap().len(), 1);
    assert_eq!(page["next"], 1);
    let (_, page) = s.get(&format!("/v1/documents/{id}/operations?from=1&limit=5")).await;
    assert_eq!(page["operations"][0]["index"], 1);
    assert!(page.get("next").is_none());
    let (_, header_ops) = s.get(&format!("/v1/documents/{id}/operations?scope=document")).await;
    assert_eq!(header_ops["operations"][0]["action"]["type"], "CREATE_DOCUMENT");

    // Listing by type, paged.
    let (_, other) = s.post("/v1/documents", json!({"documentType": "folio/json"})).await;
    let (_, third) = s
        .post("/v1/documents", json!({"documentType": "folio/todo-list"}))
        .await;
    let (status, list) = s.get("/v1/documents?type=folio/todo-list").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(!ids.contains(&other["header"]["id"].as_str().unwrap()));
    let (_, first_page) = s.get("/v1/documents?limit=1").await;
    assert_eq!(first_page["documents"].as_array().unwrap().len(), 1);
    let next = first_page["next"].as_str().unwrap();
    let (_, second_page) = s.get(&format!("/v1/documents?limit=5&after={next}")).await;
    assert_eq!(second_page["documents"].as_array().unwrap().len(), 2);
    assert!(second_page.get("next").is_none());
    let _ = third;

    // Delete: an operation; the document is gone from reads, listings and its sub-resources; its history stays
    // (sync pulls carry it).
    let (status, body) = s.call(Method::DELETE, &format!("/v1/documents/{id}"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_error(&s.get(&format!("/v1/documents/{id}")).await, 404, "DOCUMENT_NOT_FOUND");
    let (_, list) = s.get("/v1/documents?type=folio/todo-list").await;
    assert_eq!(list["documents"].as_array().unwrap().len(), 1);
    assert_error(
        &s.get(&format!("/v1/documents/{id}/operations?scope=document")).await,
        404,
        "DOCUMENT_NOT_FOUND",
    );
    let (_, pulled) = s.get(&format!("/v1/sync/pull?documentIds={id}")).await;
    let types: Vec<&str> = pulled["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(types.last(), Some(&"DELETE_DOCUMENT"), "{pulled}");
    let (status, _) = s.call(Method::DELETE, &format!("/v1/documents/{id}"), None).await;
    assert_eq!(status, 200, "deleting twice is fine");
    s.stop().await;
}

#[tokio::test]
async fn errors_of_the_document_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let id = s.create_todo().await;
    let missing = "0193a5e2-6c00-7000-8000-00000000dead";
    assert_error(
        &s.post("/v1/documents", json!({"documentType": "folio/todo-list", "id": id}))
            .await,
        409,
        "DOCUMENT_EXISTS",
    );
    assert_error(
        &s.post("/v1/documents", json!({"documentType": "nope/nope"})).await,
        422,
        "UNKNOWN_DOCUMENT_TYPE",
    );
    assert_error(
        &s.get(&format!("/v1/documents/{missing}")).await,
        404,
        "DOCUMENT_NOT_FOUND",
    );
    assert_error(&s.get("/v1/documents/not-a-uuid").await, 400, "BAD_REQUEST");
    assert_error(&s.add(missing, "x").await, 404, "DOCUMENT_NOT_FOUND");
    assert_error(
        &s.get(&format!("/v1/documents/{missing}/operations")).await,
        404,
        "DOCUMENT_NOT_FOUND",
    );
    assert_error(
        &s.call(Method::DELETE, &format!("/v1/documents/{missing}"), None).await,
        404,
        "DOCUMENT_NOT_FOUND",
    );
    assert_error(
        &s.get("/v1/jobs/0193a5e2-6c00-7000-8000-000000000001").await,
        404,
        "JOB_NOT_FOUND",
    );
    assert_error(
        &s.get(&format!("/v1/documents/{id}?revision=5")).await,
        408,
        "REVISION_NOT_REACHED",
    );

    // A rejected action: 422 with its index and the reducer's reason; nothing stored.
    let got = s
        .post(
            &format!("/v1/documents/{id}/actions"),
            json!({"actions": [
                {"type": "ADD_TODO", "input": {"id": "a", "title": "A"}},
                {"type": "ADD_TODO", "input": {"id": "b", "title": ""}}
            ]}),
        )
        .await;
    assert_error(&got, 422, "ACTION_REJECTED");
    assert_eq!(got.1["error"]["details"]["actionIndex"], 1);
    assert_eq!(got.1["error"]["details"]["reason"], "EMPTY_TITLE");
    let (_, doc) = s.get(&format!("/v1/documents/{id}")).await;
    assert_eq!(doc["header"]["revision"]["global"], 0);

    // Compare-and-set.
    s.add(&id, "a").await;
    let got = s
        .post(
            &format!("/v1/documents/{id}/actions"),
            json!({"expectedRevision": 0, "actions": [{"type": "ADD_TODO", "input": {"id": "b", "title": "B"}}]}),
        )
        .await;
    assert_error(&got, 409, "REVISION_MISMATCH");
    assert_eq!(got.1["error"]["details"], json!({"expected": 0, "actual": 1}));
    let (status, _) = s
        .post(
            &format!("/v1/documents/{id}/actions"),
            json!({"expectedRevision": 1, "actions": [{"type": "ADD_TODO", "input": {"id": "b", "title": "B"}}]}),
        )
        .await;
    assert_eq!(status, 200);

    // Unknown routes and methods answer with the error shape too.
    assert_error(&s.get("/v1/nothing-here").await, 404, "NOT_FOUND");
    assert_error(
        &s.call(Method::PUT, "/v1/documents", None).await,
        405,
        "METHOD_NOT_ALLOWED",
    );
    s.stop().await;
}

#[tokio::test]
async fn wait_false_queues_the_job_and_the_job_endpoint_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let id = s.create_todo().await;
    let (status, body) = s
        .post(
            &format!("/v1/documents/{id}/actions"),
            json!({"wait": false, "actions": [{"type": "ADD_TODO", "input": {"id": "a", "title": "A"}}]}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "queued");
    let job = body["jobId"].as_str().unwrap().to_owned();
    let mut last = serde_json::Value::Null;
    for _ in 0..100 {
        let (_, j) = s.get(&format!("/v1/jobs/{job}")).await;
        last = j;
        if last["status"] == "completed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(last["status"], "completed");
    assert_eq!(last["revision"], 1);
    // A failing job reports its error.
    let (status, body) = s
        .post(
            &format!("/v1/documents/{id}/actions"),
            json!({"wait": false, "actions": [{"type": "ADD_TODO", "input": {"id": "a", "title": ""}}]}),
        )
        .await;
    assert_eq!(status, 202);
    let job = body["jobId"].as_str().unwrap().to_owned();
    let mut last = serde_json::Value::Null;
    for _ in 0..100 {
        let (_, j) = s.get(&format!("/v1/jobs/{job}")).await;
        last = j;
        if last["status"] == "failed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(last["status"], "failed");
    assert_eq!(last["error"]["code"], "ACTION_REJECTED");
    s.stop().await;
}

#[tokio::test]
async fn read_tokens_read_write_tokens_write() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let id = s.create_todo().await;
    // The document is its creator's (the admin's principal): shared with every token, each acts by its role.
    let (status, _) = s
        .call(
            reqwest::Method::PUT,
            &format!("/v1/documents/{id}/grants"),
            Some(json!({"grants": [{"principal": "*", "access": "write"}]})),
        )
        .await;
    assert_eq!(status, 200);
    let read = s.token(Role::Read);
    let write = s.token(Role::Write);
    let resp = s
        .client
        .get(s.url(&format!("/v1/documents/{id}")))
        .bearer_auth(&read)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = s
        .client
        .post(s.url(&format!("/v1/documents/{id}/actions")))
        .bearer_auth(&read)
        .json(&json!({"actions": [{"type": "ADD_TODO", "input": {"id": "a", "title": "A"}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "FORBIDDEN");
    let resp = s
        .client
        .post(s.url(&format!("/v1/documents/{id}/actions")))
        .bearer_auth(&write)
        .json(&json!({"actions": [{"type": "ADD_TODO", "input": {"id": "a", "title": "A"}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Tokens are stored hashed: no secret appears in the tokens file.
    let file = std::fs::read_to_string(dir.path().join("tokens")).unwrap();
    assert!(!file.contains(&read) && !file.contains(&write) && !file.contains(&s.admin));
    s.stop().await;
}

#[tokio::test]
async fn a_full_queue_answers_429_overloaded() {
    let dir = tempfile::tempdir().unwrap();
    let config = folio_reactor::ReactorConfig {
        executors: 1,
        queue_capacity: 1,
        max_batch_jobs: 1,
        ..Default::default()
    };
    let s = start_with(dir.path(), config, |c| c).await;
    let id = s.create_todo().await;
    // Fire many requests at once: the queue of one job must refuse some.
    let mut tasks = Vec::new();
    for i in 0..64 {
        let client = s.client.clone();
        let url = s.url(&format!("/v1/documents/{id}/actions"));
        let token = s.admin.clone();
        tasks.push(tokio::spawn(async move {
            let resp = client
                .post(url)
                .bearer_auth(token)
                .json(&json!({"actions": [{"type": "ADD_TODO", "input": {"id": format!("i{i}"), "title": "t"}}]}))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body: serde_json::Value = resp.json().await.unwrap();
            (status, body)
        }));
    }
    let mut ok = 0;
    let mut overloaded = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            200 => ok += 1,
            429 => {
                assert_eq!(body["error"]["code"], "OVERLOADED");
                overloaded += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(overloaded > 0, "no request was refused");
    let (_, doc) = s.get(&format!("/v1/documents/{id}")).await;
    assert_eq!(doc["header"]["revision"]["global"], ok);
    s.stop().await;
}

#[tokio::test]
async fn data_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let admin = s.admin.clone();
    let id = s.create_todo().await;
    for i in 0..20 {
        assert_eq!(s.add(&id, &format!("i{i}")).await.0, 200);
    }
    let (_, before) = s.get(&format!("/v1/documents/{id}")).await;
    s.stop().await;

    let s = start(dir.path()).await;
    assert_eq!(s.admin, admin, "the admin token is kept");
    let (status, after) = s.get(&format!("/v1/documents/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(after["stateHash"], before["stateHash"]);
    assert_eq!(after["header"]["revision"]["global"], 20);
    let store = folio_store::SqliteStore::open(dir.path().join("folio.db"))
        .await
        .unwrap();
    assert!(folio_store::verify(&store).await.unwrap().is_ok());
    s.stop().await;
}

/// Found by scripts/fuzz (schemathesis, stateful phase): a deleted document with global operations could not be
/// rehydrated from the store (its deletion was folded before its global operations, which it then refused), so every
/// cold read of it was 500 INTERNAL: `?revision=`, `?minRevision=`, a read or a second DELETE after a restart. (The
/// fold no longer judges deletion: the reactor refuses actions on a deleted document where they are submitted.)
#[tokio::test]
async fn a_deleted_document_with_history_reads_back_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let id = s.create_todo().await;
    assert_eq!(s.add(&id, "a").await.0, 200);
    assert_eq!(s.add(&id, "b").await.0, 200);
    let (status, _) = s
        .call(reqwest::Method::DELETE, &format!("/v1/documents/{id}"), None)
        .await;
    assert_eq!(status, 200);
    for query in ["?revision=1", "?revision=2", "?minRevision=1", ""] {
        let got = s.get(&format!("/v1/documents/{id}{query}")).await;
        assert_error(&got, 404, "DOCUMENT_NOT_FOUND");
        assert_eq!(got.1["error"]["details"]["deleted"], true, "{query}: {}", got.1);
    }
    s.stop().await;

    let s = start(dir.path()).await;
    let got = s.get(&format!("/v1/documents/{id}")).await;
    assert_error(&got, 404, "DOCUMENT_NOT_FOUND");
    let (status, again) = s
        .call(reqwest::Method::DELETE, &format!("/v1/documents/{id}"), None)
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["revision"]["global"], 2, "{again}");
    // Its sub-resources answer like the document (its history stays in the store: `folio doc log`, sync pulls).
    let got = s.get(&format!("/v1/documents/{id}/operations")).await;
    assert_error(&got, 404, "DOCUMENT_NOT_FOUND");
    assert_eq!(got.1["error"]["details"]["deleted"], true, "{}", got.1);
    s.stop().await;
}
