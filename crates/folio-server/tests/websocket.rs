//! `/v1/subscribe` through a real WebSocket client.

mod common;

use futures::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use common::*;

async fn connect(s: &TestServer, token: &str) -> Ws {
    let url = format!("{}/v1/subscribe?token={token}", s.base.replace("http://", "ws://"));
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

async fn subscribe(ws: &mut Ws, filter: Value) {
    ws.send(Message::Text(json!({ "subscribe": filter }).to_string().into()))
        .await
        .unwrap();
    assert_eq!(next_json(ws).await, json!({"event": "subscribed"}));
}

#[tokio::test]
async fn subscribers_receive_operations_in_commit_order_filtered() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let watched = s.create_todo().await;
    let other = s.create_todo().await;
    let mut by_id = connect(&s, &s.admin).await;
    subscribe(&mut by_id, json!({"documentIds": [watched]})).await;
    let mut by_type = connect(&s, &s.admin).await;
    subscribe(&mut by_type, json!({"documentTypes": ["folio/json"]})).await;
    let mut all = connect(&s, &s.admin).await;
    subscribe(&mut all, json!({})).await;

    for i in 0..20 {
        assert_eq!(s.add(&watched, &format!("w{i}")).await.0, 200);
        assert_eq!(s.add(&other, &format!("o{i}")).await.0, 200);
    }
    let mut expected_index = 0;
    while expected_index < 20 {
        let e = next_json(&mut by_id).await;
        assert_eq!(e["event"], "operations", "{e}");
        assert_eq!(e["documentId"], watched.as_str());
        assert_eq!(e["scope"], "global");
        assert_eq!(e["branch"], "main");
        for op in e["operations"].as_array().unwrap() {
            assert_eq!(op["index"], expected_index, "in commit order without gaps");
            assert_eq!(op["action"]["input"]["id"], format!("w{expected_index}"));
            expected_index += 1;
        }
    }
    let mut seen_other = 0;
    let mut seen_watched = 0;
    while seen_other + seen_watched < 40 {
        let e = next_json(&mut all).await;
        let n = e["operations"].as_array().unwrap().len();
        if e["documentId"] == watched.as_str() {
            seen_watched += n;
        } else {
            seen_other += n;
        }
    }
    assert_eq!((seen_watched, seen_other), (20, 20));

    // The json-type subscriber saw none of that; it sees a json document's writes and its deletion.
    let (_, doc) = s.post("/v1/documents", json!({"documentType": "folio/json"})).await;
    let json_id = doc["header"]["id"].as_str().unwrap().to_owned();
    let e = next_json(&mut by_type).await;
    assert_eq!(e["documentId"], json_id.as_str());
    assert_eq!(e["scope"], "document");
    s.call(reqwest::Method::DELETE, &format!("/v1/documents/{json_id}"), None)
        .await;
    let e = next_json(&mut by_type).await;
    assert_eq!(e["operations"][0]["action"]["type"], "DELETE_DOCUMENT");
    assert_eq!(
        next_json(&mut by_type).await,
        json!({"event": "deleted", "documentId": json_id})
    );
    s.stop().await;
}

#[tokio::test]
async fn a_client_that_does_not_read_is_told_it_lagged_and_writers_are_not_slowed() {
    let dir = tempfile::tempdir().unwrap();
    let config = folio_reactor::ReactorConfig {
        event_capacity: 8,
        ..Default::default()
    };
    let s = start_with(dir.path(), config, |c| c).await;
    let (_, doc) = s.post("/v1/documents", json!({"documentType": "folio/json"})).await;
    let id = doc["header"]["id"].as_str().unwrap().to_owned();
    let mut ws = connect(&s, &s.admin).await;
    subscribe(&mut ws, json!({"documentIds": [id]})).await;
    // Big operations (64 x 400 KB, more than loopback socket buffers hold) while the client reads nothing.
    let payload = "x".repeat(400 * 1024);
    const WRITES: u64 = 64;
    for i in 0..WRITES {
        let (status, _) = s
            .post(
                &format!("/v1/documents/{id}/actions"),
                json!({"actions": [{"type": "SET", "input": {"path": "/big", "value": format!("{i}{payload}")}}]}),
            )
            .await;
        assert_eq!(status, 200, "write {i} was held up");
    }
    // Now read: somewhere a lag signal must appear, and the client re-reads over HTTP.
    let mut lagged = false;
    let mut last_index = None;
    for _ in 0..WRITES {
        let e = next_json(&mut ws).await;
        if e["event"] == "lagged" {
            lagged = true;
            break;
        }
        last_index = e["operations"]
            .as_array()
            .unwrap()
            .last()
            .map(|op| op["index"].as_u64().unwrap());
    }
    assert!(lagged, "no lag signal (last index seen {last_index:?})");
    let (_, doc) = s.get(&format!("/v1/documents/{id}")).await;
    assert_eq!(doc["header"]["revision"]["global"], WRITES);
    s.stop().await;
}

#[tokio::test]
async fn subscribing_needs_a_token_and_a_well_formed_message() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let url = format!("{}/v1/subscribe", s.base.replace("http://", "ws://"));
    let err = tokio_tungstenite::connect_async(url.clone()).await.unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
    let err = tokio_tungstenite::connect_async(format!("{url}?token=folio_nope"))
        .await
        .unwrap_err();
    assert!(matches!(err, tokio_tungstenite::tungstenite::Error::Http(ref r) if r.status() == 401));
    // A read token may subscribe.
    let read = s.token(folio_server::Role::Read);
    let mut ws = connect(&s, &read).await;
    ws.send(Message::Text("{\"subscribe\": 5}".into())).await.unwrap();
    let e = next_json(&mut ws).await;
    assert_eq!(e["event"], "error");
    assert_eq!(e["code"], "BAD_REQUEST");
    s.stop().await;
}
