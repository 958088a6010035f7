//! `GET /v1/subscribe`: live events over WebSocket.
//!
//! The client sends `{ "subscribe": { "documentIds"?: [...], "documentTypes"?: [...] } }` (again, to change the
//! filter) and receives `{ "event": "subscribed" }`, then `operations`, `deleted` and `lagged` events. Each
//! connection reads the reactor's bus through its own bounded subscription: a client that does not read stalls only
//! itself, loses the oldest events, and is told so with `lagged` (it re-reads over HTTP). A send that cannot make
//! progress for 30 s closes the connection.

use std::collections::HashSet;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use folio_core::DocumentId;
use folio_core::document::DELETE_DOCUMENT;
use folio_reactor::{Event, Received};

use crate::ApiError;
use crate::auth::{Caller, Tokens};
use crate::state::AppState;

const SEND_TIMEOUT: Duration = Duration::from_secs(30);
const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Filter {
    #[serde(default)]
    document_ids: Option<HashSet<DocumentId>>,
    #[serde(default)]
    document_types: Option<HashSet<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientMessage {
    subscribe: Filter,
}

impl Filter {
    fn matches(&self, id: &DocumentId, document_type: &str) -> bool {
        self.document_ids.as_ref().is_none_or(|ids| ids.contains(id))
            && self
                .document_types
                .as_ref()
                .is_none_or(|types| types.contains(document_type))
    }
}

/// Upgrades to a WebSocket; a request that is not a WebSocket handshake gets the JSON error shape.
pub async fn subscribe(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
) -> Response {
    match ws {
        Ok(ws) => ws.max_message_size(64 * 1024).on_upgrade(move |socket| async move {
            let _open = Open::count("subscribe");
            run(socket, state, caller).await
        }),
        Err(rejection) => not_a_handshake(rejection),
    }
}

/// The answer to a request to a WebSocket endpoint that is not a WebSocket handshake, in the JSON error shape:
/// 426 `UPGRADE_REQUIRED` with `Upgrade: websocket` when it asks for no upgrade (a plain GET) or the connection
/// cannot be upgraded, and with `Sec-WebSocket-Version: 13` for another protocol version (RFC 6455 4.4); 400
/// `BAD_REQUEST` for a handshake without its key; 405 `METHOD_NOT_ALLOWED` for another method.
pub fn not_a_handshake(rejection: WebSocketUpgradeRejection) -> Response {
    use WebSocketUpgradeRejection as R;
    let message = format!("a WebSocket handshake is expected: {}", rejection.body_text());
    let (error, extra) = match rejection {
        R::InvalidConnectionHeader(_) | R::InvalidUpgradeHeader(_) | R::ConnectionNotUpgradable(_) => (
            ApiError::new(StatusCode::UPGRADE_REQUIRED, "UPGRADE_REQUIRED", message),
            [(header::UPGRADE, "websocket"), (header::CONNECTION, "Upgrade")].as_slice(),
        ),
        R::InvalidWebSocketVersionHeader(_) => (
            ApiError::new(StatusCode::UPGRADE_REQUIRED, "UPGRADE_REQUIRED", message),
            [(header::SEC_WEBSOCKET_VERSION, "13")].as_slice(),
        ),
        R::MethodNotGet(_) | R::MethodNotConnect(_) => (
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", message),
            [].as_slice(),
        ),
        _ => (ApiError::bad_request(message), [].as_slice()),
    };
    let mut response = error.into_response();
    for (name, value) in extra {
        response
            .headers_mut()
            .insert(name.clone(), HeaderValue::from_static(value));
    }
    response
}

/// Counts an open WebSocket in `folio_websocket_subscribers` while it lives.
pub(crate) struct Open(&'static str);

impl Open {
    pub(crate) fn count(endpoint: &'static str) -> Self {
        metrics::gauge!("folio_websocket_subscribers", "endpoint" => endpoint).increment(1.0);
        Self(endpoint)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::gauge!("folio_websocket_subscribers", "endpoint" => self.0).decrement(1.0);
    }
}

/// Resolves once the token of id `id` no longer works (revoked, by this server or by `folio token revoke` on its
/// data directory, or expired): the WebSocket it opened is then dropped, which closes the connection. Checked on
/// every change the token watch announces (every quarter second at most).
pub(crate) async fn until_revoked(tokens: &Tokens, id: &str) {
    let mut changes = tokens.changes();
    loop {
        if !tokens.still_valid(id) {
            metrics::counter!("folio_tokens_revoked_websockets_total").increment(1);
            tracing::info!(token = id, "closing a WebSocket: its token was revoked or expired");
            return;
        }
        if changes.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

async fn send(socket: &mut WebSocket, value: Value) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(value.to_string().into()))).await,
        Ok(Ok(()))
    )
}

fn parse(text: &str) -> Result<Filter, String> {
    serde_json::from_str::<ClientMessage>(text)
        .map(|m| m.subscribe)
        .map_err(|e| format!("expected {{\"subscribe\": {{\"documentIds\"?, \"documentTypes\"?}}}}: {e}"))
}

/// Closes `socket` with 1008 (policy violation): its token stopped working.
pub(crate) async fn close_revoked(mut socket: WebSocket) {
    let frame = axum::extract::ws::CloseFrame {
        code: axum::extract::ws::close_code::POLICY,
        reason: "token revoked or expired".into(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.send(Message::Close(Some(frame)))).await;
}

/// Whether `caller` may read the document `received` is about (`true` for what is about no document), decided when
/// the event is sent: once a grant is lost, that document's events stop.
async fn readable(state: &AppState, caller: &Caller, received: &Received) -> bool {
    let id = match received {
        Received::Event(Event::OperationsCommitted { unit, .. }) | Received::Event(Event::Conflict { unit, .. }) => {
            unit.document_id
        }
        _ => return true,
    };
    match state.access.decide(state.reactor.store(), caller, id).await {
        Ok((decision, _)) => decision != crate::access::Decision::Hidden,
        Err(e) => {
            tracing::warn!("subscription access check failed: {}", e.message);
            false
        }
    }
}

async fn run(mut socket: WebSocket, state: AppState, caller: Caller) {
    // Subscribe before answering, so nothing committed after `subscribed` is missed.
    let mut events = state.reactor.subscribe();
    let tokens = state.tokens.clone();
    let revoked = until_revoked(&tokens, &caller.id);
    tokio::pin!(revoked);
    let mut filter = match tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, socket.recv()).await {
        Ok(Some(Ok(Message::Text(text)))) => match parse(&text) {
            Ok(f) => f,
            Err(e) => {
                send(
                    &mut socket,
                    json!({ "event": "error", "code": "BAD_REQUEST", "message": e }),
                )
                .await;
                return;
            }
        },
        _ => return,
    };
    if !send(&mut socket, json!({ "event": "subscribed" })).await {
        return;
    }
    loop {
        tokio::select! {
            () = &mut revoked => return close_revoked(socket).await,
            received = events.next() => {
                let Some(received) = received else { return };
                if !readable(&state, &caller, &received).await {
                    continue;
                }
                for message in messages(received, &filter) {
                    if !send(&mut socket, message).await {
                        return;
                    }
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => match parse(&text) {
                    Ok(f) => {
                        filter = f;
                        if !send(&mut socket, json!({ "event": "subscribed" })).await {
                            return;
                        }
                    }
                    Err(e) => {
                        if !send(&mut socket, json!({ "event": "error", "code": "BAD_REQUEST", "message": e })).await {
                            return;
                        }
                    }
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    }
}

fn messages(received: Received, filter: &Filter) -> Vec<Value> {
    match received {
        Received::Lagged { missed } => {
            metrics::counter!("folio_websocket_lagged_total").increment(1);
            metrics::counter!("folio_websocket_missed_events_total").increment(missed);
            vec![json!({ "event": "lagged", "missed": missed })]
        }
        Received::Event(Event::OperationsCommitted {
            unit,
            document_type,
            operations,
            ..
        }) => {
            if !filter.matches(&unit.document_id, &document_type) {
                return Vec::new();
            }
            let mut out = vec![json!({
                "event": "operations",
                "documentId": unit.document_id,
                "scope": unit.scope,
                "branch": unit.branch,
                "operations": &*operations,
            })];
            if operations
                .iter()
                .any(|op| op.action.action_type == DELETE_DOCUMENT && op.error.is_none())
            {
                out.push(json!({ "event": "deleted", "documentId": unit.document_id }));
            }
            out
        }
        Received::Event(Event::Conflict {
            unit,
            index,
            action_id,
            reason,
        }) => {
            if filter
                .document_ids
                .as_ref()
                .is_some_and(|ids| !ids.contains(&unit.document_id))
            {
                return Vec::new();
            }
            vec![json!({
                "event": "conflict",
                "documentId": unit.document_id,
                "scope": unit.scope,
                "branch": unit.branch,
                "index": index,
                "actionId": action_id,
                "reason": reason,
            })]
        }
        Received::Event(_) => Vec::new(),
    }
}
