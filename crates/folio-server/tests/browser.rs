//! What browsers need beside the API, through real HTTP: CORS for the configured origins only (preflights answered
//! before authentication), and an app's files served at `/` beside the API.

mod common;

use common::*;
use folio_reactor::ReactorConfig;
use reqwest::Method;

const APP: &str = "http://app.example:8000";

#[tokio::test]
async fn cors_answers_the_configured_origins_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_with(dir.path(), ReactorConfig::default(), |mut c| {
        c.cors_origins = vec![APP.to_owned(), "https://other.example/".to_owned()];
        c
    })
    .await;
    let id = s.create_todo().await;
    // A preflight carries no token: it is answered before authentication.
    let preflight = s
        .client
        .request(Method::OPTIONS, s.url(&format!("/v1/documents/{id}/actions")))
        .header("Origin", APP)
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "authorization, content-type")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{preflight:?}");
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], APP);
    let allowed = h["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("content-type"),
        "{allowed}"
    );
    assert!(h["access-control-allow-methods"].to_str().unwrap().contains("POST"));
    // A real request from the page: allowed, and its answer readable by the page.
    for origin in [APP, "https://other.example"] {
        let resp = s
            .client
            .post(s.url(&format!("/v1/documents/{id}/actions")))
            .bearer_auth(&s.admin)
            .header("Origin", origin)
            .json(&serde_json::json!({"actions": [{"type": "ADD_TODO", "input": {"id": origin, "title": "t"}}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["access-control-allow-origin"], origin);
    }
    // Another origin gets no permission (the browser blocks the page from reading the answer).
    let resp = s
        .client
        .get(s.url(&format!("/v1/documents/{id}")))
        .bearer_auth(&s.admin)
        .header("Origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    s.stop().await;

    // None configured: no CORS at all.
    let s = start(dir.path()).await;
    let resp = s
        .client
        .get(s.url("/v1/health"))
        .header("Origin", APP)
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    s.stop().await;
}

#[tokio::test]
async fn static_files_are_served_beside_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let app = tempfile::tempdir().unwrap();
    std::fs::write(app.path().join("index.html"), "<!doctype html><title>app</title>").unwrap();
    std::fs::create_dir(app.path().join("assets")).unwrap();
    std::fs::write(app.path().join("assets/app.js"), "console.log(1)").unwrap();
    let static_dir = app.path().to_owned();
    let s = start_with(dir.path(), ReactorConfig::default(), move |mut c| {
        c.static_dir = Some(static_dir);
        c
    })
    .await;
    let get = |path: &str| {
        let req = s.client.get(s.url(path));
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let kind = resp
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            (status, kind, resp.text().await.unwrap())
        }
    };
    let (status, kind, body) = get("/").await;
    assert_eq!((status, body.as_str()), (200, "<!doctype html><title>app</title>"));
    assert!(kind.starts_with("text/html"), "{kind}");
    let (status, kind, body) = get("/assets/app.js").await;
    assert_eq!((status, body.as_str()), (200, "console.log(1)"));
    assert!(kind.contains("javascript"), "{kind}");
    // The API is the API: its paths are never files, and what is not a file answers the API's JSON 404.
    let (status, _, body) = get("/v1/health").await;
    assert_eq!(status, 200, "{body}");
    for path in [
        "/v1/nothing",
        "/missing.html",
        "/../Cargo.toml",
        "/assets/../../etc/passwd",
    ] {
        let (status, _, body) = get(path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body.contains("NOT_FOUND"), "{path}: {body}");
    }
    s.stop().await;
}

/// The admin role's own power: tokens made over HTTP, shown once, working at once; write and read tokens may not.
#[tokio::test]
async fn admin_tokens_make_tokens_and_others_may_not() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let make = |token: String, role: &'static str| {
        let req = s
            .client
            .post(s.url("/v1/tokens"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "role": role }));
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, made) = make(s.admin.clone(), "write").await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["role"], "write");
    let write = made["token"].as_str().unwrap().to_owned();
    // The new token works at once, with its role: it writes, and may not make tokens.
    let resp = s
        .client
        .post(s.url("/v1/documents"))
        .bearer_auth(&write)
        .json(&serde_json::json!({"documentType": "folio/todo-list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_error(&make(write, "admin").await, 403, "FORBIDDEN");
    assert_error(&make(s.token(folio_server::Role::Read), "read").await, 403, "FORBIDDEN");
    assert_error(&make(s.admin.clone(), "root").await, 400, "BAD_REQUEST");
    let stored = std::fs::read_to_string(dir.path().join("tokens")).unwrap();
    assert!(
        !stored.contains(made["token"].as_str().unwrap()),
        "only the hash is stored"
    );
    s.stop().await;
}
