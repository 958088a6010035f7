//! The OpenAPI description: served without a token, equal to the checked-in `schemas/openapi.json`, and true to
//! what the server does (every operation that declares a token refuses a request without one, and no other does).
//!
//! Regenerate the copy with `FOLIO_UPDATE_SCHEMAS=1 cargo test -p folio-server --test openapi`.

mod common;

use std::path::PathBuf;

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
