//! `/v1/sync/*`: replicas push their actions, pull what this server committed, and follow it live. The protocol's
//! shapes are folio-sync's; this module only moves them over HTTP and WebSocket.
//!
//! * `GET /v1/sync/info` → `{ replica, maxBodyBytes }`.
//! * `POST /v1/sync/push` `{ replica, entries: [{ documentId, scope, branch, action }] }` → 200
//!   `{ new, duplicates, rejected: [{ documentId, actionId, reason }] }` once every entry is durably integrated.
//! * `GET /v1/sync/pull?after=&limit=&exclude=&documentIds=&types=` → `{ entries, cursor, more }`.
//! * `GET /v1/sync/live?after=&exclude=&documentIds=&types=` (WebSocket) → messages shaped like a pull's answer,
//!   each sent as soon as the server commits (and every second, for commits made by other processes).
//! * `GET /v1/documents/{id}/conflicts` → `{ conflicts: [{ scope, index, actionId, reason, operation }] }`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;

use axum::Json;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use folio_core::document::{CREATE_DOCUMENT, SET_GRANTS};
use folio_core::{AccessRules, Branch, DocumentId, Operation, Scope};
use folio_reactor::{Event, Received};
use folio_sync::protocol::RejectedAction;
use folio_sync::{Filter, PullRequest, PullResponse, PushRequest, PushResponse, RemoteInfo, SyncEntry, SyncError};

use crate::ApiError;
use crate::access::{Decision, Refusal, check_action, decide};
use crate::auth::{Caller, Role};
use crate::body::{IdPath, JsonBody, QueryParams};
use crate::state::AppState;

/// The most entries one push may carry.
pub const MAX_PUSH_ENTRIES: usize = 200_000;
/// The most entries one pull answers with.
pub const MAX_PULL_ENTRIES: usize = 10_000;

const SEND_TIMEOUT: Duration = Duration::from_secs(30);
const LIVE_POLL: Duration = Duration::from_secs(1);

impl From<SyncError> for ApiError {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::Reactor(e) => e.into(),
            SyncError::Store(e) => folio_reactor::ReactorError::from(e).into(),
            SyncError::Protocol(m) => ApiError::bad_request(m),
            other => ApiError::internal(other.to_string()),
        }
    }
}

/// `GET /v1/sync/info`.
pub async fn info(State(state): State<AppState>) -> Json<RemoteInfo> {
    Json(state.replica.info(state.config.sync_body_limit))
}

/// `POST /v1/sync/push`.
pub async fn push(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    JsonBody(request): JsonBody<PushRequest>,
) -> Result<Json<PushResponse>, ApiError> {
    if request.replica.is_empty() || request.replica.chars().count() > 64 {
        return Err(ApiError::bad_request("replica must have 1 to 64 characters"));
    }
    if request.replica == state.replica.id() {
        return Err(ApiError::bad_request("a replica cannot push to itself"));
    }
    if request.entries.len() > MAX_PUSH_ENTRIES {
        return Err(ApiError::bad_request(format!(
            "a push carries at most {MAX_PUSH_ENTRIES} entries, this one {}",
            request.entries.len()
        )));
    }
    // Integrating an action moves this replica's clock past it: a clock far in the future would drag every later
    // action with it.
    let horizon = state.replica.reactor().clock_horizon();
    for (i, entry) in request.entries.iter().enumerate() {
        if entry.scope == Scope::Local {
            return Err(ApiError::bad_request(format!(
                "entry {i}: the local scope is never synced"
            )));
        }
        if entry.action.scope != entry.scope {
            return Err(ApiError::bad_request(format!(
                "entry {i}: the action's scope is not the entry's"
            )));
        }
        if entry.action.timestamp_utc_ms > horizon {
            return Err(ApiError::bad_request(format!(
                "entry {i}: the action's clock is more than {} s ahead of this server's",
                state.replica.reactor().config().max_clock_ahead.as_secs()
            )));
        }
        if entry.action.replica.as_deref() != Some(request.replica.as_str()) {
            return Err(ApiError::bad_request(format!(
                "entry {i}: a push carries only actions of the pushing replica {:?}",
                request.replica
            )));
        }
    }
    let entries = request.entries.len() as u64;
    let screened = screen_push(&state, &caller, request.entries).await?;
    let mut answer = state.replica.integrate(screened.entries).await?;
    answer.new = answer.new.saturating_sub(screened.claims);
    let mut rejected = screened.refused;
    rejected.append(&mut answer.rejected);
    answer.rejected = rejected;
    metrics::counter!("folio_sync_pushes_total").increment(1);
    metrics::counter!("folio_sync_pushed_entries_total").increment(entries);
    Ok(Json(answer))
}

/// A push's entries once access is checked: those to integrate (with the claims of documents created offline),
/// those refused, and how many claims were added.
struct Screened {
    entries: Vec<SyncEntry>,
    refused: Vec<RejectedAction>,
    claims: usize,
}

/// Checks each entry of a push against the caller's access to its document ([`check_action`], beside any other
/// per-action check): an entry the caller may not write is refused and reported (`DOCUMENT_NOT_FOUND` for a
/// document it may not read, or that does not exist and is not created by the push; `FORBIDDEN` for one it may
/// only read, or a grant change it may not make); the rest goes on. A document the push creates without an owner
/// (a replica made it offline) is given to the caller: a `SET_GRANTS` of this server follows its creation, in the
/// same integration.
async fn screen_push(state: &AppState, caller: &Caller, entries: Vec<SyncEntry>) -> Result<Screened, ApiError> {
    let mut screened = Screened {
        entries: Vec::with_capacity(entries.len()),
        refused: Vec::new(),
        claims: 0,
    };
    if caller.role == Role::Admin {
        screened.entries = entries;
        return Ok(screened);
    }
    let mut rules: HashMap<DocumentId, Result<(Decision, AccessRules), Refusal>> = HashMap::new();
    let mut claims = Vec::new();
    let mut creations: HashMap<DocumentId, &SyncEntry> = HashMap::new();
    for e in &entries {
        if e.scope == Scope::Document && e.branch == Branch::default() && e.action.action_type == CREATE_DOCUMENT {
            creations.entry(e.document_id).or_insert(e);
        }
    }
    for entry in &entries {
        let id = entry.document_id;
        if rules.contains_key(&id) {
            continue;
        }
        let (decision, found) = state.access.decide(state.reactor.store(), caller, id).await?;
        let pair = match found {
            Some(found) => Ok((decision, (*found).clone())),
            None => match creations.get(&id) {
                // Created by this push: its creator's, once the create is checked below.
                Some(create) => match create.action.input.get("owner").filter(|o| !o.is_null()) {
                    Some(owner) if owner.as_str() != Some(caller.principal.as_str()) => Err(Refusal::Forbidden(
                        "the push creates the document owned by another principal".into(),
                    )),
                    owner => {
                        if owner.is_none() {
                            claims.push(claim_entry(state, caller, create));
                        }
                        let rules = AccessRules {
                            owner: Some(caller.principal.clone()),
                            ..AccessRules::default()
                        };
                        Ok((decide(caller, Some(&rules)), rules))
                    }
                },
                None => Err(Refusal::NotFound),
            },
        };
        rules.insert(id, pair);
    }
    for entry in entries {
        let checked = match &rules[&entry.document_id] {
            Ok((decision, doc_rules)) => check_action(caller, doc_rules, *decision, &entry.action),
            Err(refusal) => Err(refusal.clone()),
        };
        match checked {
            Ok(()) => screened.entries.push(entry),
            Err(refusal) => screened.refused.push(refused(&entry, &refusal)),
        }
    }
    // A claim integrates with its document's creation, after it in the total order.
    screened.claims = claims.len();
    screened.entries.extend(claims);
    Ok(screened)
}

fn refused(entry: &SyncEntry, refusal: &Refusal) -> RejectedAction {
    RejectedAction {
        document_id: entry.document_id,
        action_id: entry.action.id,
        reason: refusal.reason(entry.document_id),
    }
}

/// This server's `SET_GRANTS` giving the document `create` makes to the caller, clocked just after the creation. It
/// names the owner only (no `grants`), so the grant changes the replica made offline stay in force whichever of the
/// two sorts first (a tie of clocks is broken by replica id).
fn claim_entry(state: &AppState, caller: &Caller, create: &SyncEntry) -> SyncEntry {
    let input = serde_json::to_value(crate::access::claim(&caller.principal)).unwrap_or_default();
    let mut action = state.reactor.action(SET_GRANTS, input, Scope::Document);
    action.timestamp_utc_ms = create.action.timestamp_utc_ms;
    action.counter = create.action.counter.saturating_add(1);
    action.replica = Some(state.replica.id().to_owned());
    // Signed by this server like every action it authors: under `--require-signatures` an unsigned one would be
    // refused by the integration, and the document left without owner (open to every token).
    if let Some(key) = &state.reactor.config().replica_key {
        key.sign(&mut action);
    }
    SyncEntry {
        document_id: create.document_id,
        scope: Scope::Document,
        branch: create.branch.clone(),
        action,
    }
}

/// Leaves out of a pull's answer what `caller` may not read. When the answer carries a `SET_GRANTS` of a document
/// the caller may read, the document's whole effective history comes with it (before its first entry): a grant
/// gained after the puller's cursor passed the document's older operations must still give it the whole document.
/// Entries it already had are duplicates to the puller, which drops them.
async fn visible(
    state: &AppState,
    caller: &Caller,
    request: &PullRequest,
    mut answer: PullResponse,
) -> Result<PullResponse, ApiError> {
    if caller.role == Role::Admin || answer.entries.is_empty() {
        return Ok(answer);
    }
    let mut readable: HashMap<DocumentId, bool> = HashMap::new();
    let mut regranted: HashSet<DocumentId> = HashSet::new();
    for entry in &answer.entries {
        let id = entry.document_id;
        if let std::collections::hash_map::Entry::Vacant(slot) = readable.entry(id) {
            let (decision, _) = state.access.decide(state.reactor.store(), caller, id).await?;
            slot.insert(decision != Decision::Hidden);
        }
        if readable[&id] && entry.scope == Scope::Document && entry.action.action_type == SET_GRANTS {
            regranted.insert(id);
        }
    }
    let mut out = Vec::with_capacity(answer.entries.len());
    let mut sent: HashMap<DocumentId, HashSet<uuid::Uuid>> = HashMap::new();
    for entry in std::mem::take(&mut answer.entries) {
        let id = entry.document_id;
        if !readable[&id] {
            continue;
        }
        if regranted.contains(&id) && !sent.contains_key(&id) {
            let history = history(state, id, &entry.branch, request.exclude.as_deref()).await?;
            let ids = sent.entry(id).or_default();
            for e in history {
                ids.insert(e.action.id);
                out.push(e);
            }
        }
        if sent.get(&id).is_some_and(|ids| ids.contains(&entry.action.id)) {
            continue;
        }
        out.push(entry);
    }
    answer.entries = out;
    Ok(answer)
}

/// The effective history of a document on `branch` as sync entries (`document` scope first), without `exclude`'s
/// actions.
async fn history(
    state: &AppState,
    id: DocumentId,
    branch: &Branch,
    exclude: Option<&str>,
) -> Result<Vec<SyncEntry>, ApiError> {
    let mut out = Vec::new();
    for scope in [Scope::Document, Scope::Global] {
        let unit = folio_core::SyncUnit::new(id, scope, branch.clone());
        let mut ops = Vec::new();
        let mut stream = state.reactor.store().read(&unit, 0, None);
        while let Some(op) = stream.next().await {
            ops.push(op.map_err(folio_reactor::ReactorError::from)?);
        }
        out.extend(
            folio_core::merge::effective(&ops)
                .into_iter()
                .filter(|op| exclude.is_none_or(|x| op.action.replica.as_deref() != Some(x)))
                .map(|op| SyncEntry {
                    document_id: id,
                    scope,
                    branch: branch.clone(),
                    action: op.action.clone(),
                }),
        );
    }
    Ok(out)
}

/// Query of `pull` and `live`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PullParams {
    /// This server's commit ordinal the puller has integrated up to (the last answer's `cursor`; 0 at first).
    #[serde(default)]
    #[schemars(range(max = u64::MAX))]
    after: u64,
    /// At most this many entries (default 1,000, at most 10,000).
    #[schemars(range(min = 1, max = u64::MAX))]
    limit: Option<usize>,
    /// Leave out actions of this replica (the puller's own).
    exclude: Option<String>,
    /// Only these documents: comma-separated ids (UUIDs, hyphenated; empty items are skipped).
    #[schemars(regex(
        pattern = r"^,*([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(,+[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})*,*)?$"
    ))]
    document_ids: Option<String>,
    /// Only documents of these types: comma-separated.
    types: Option<String>,
    /// The token, for WebSocket clients that cannot set a header (read by the auth layer).
    token: Option<String>,
}

impl PullParams {
    fn request(&self) -> Result<PullRequest, ApiError> {
        let document_ids = match &self.document_ids {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| {
                    // The hyphenated form only, as the description's pattern says (`Uuid::parse_str` also takes
                    // the simple, braced and URN forms).
                    (s.len() == 36)
                        .then(|| s.parse::<DocumentId>().ok())
                        .flatten()
                        .ok_or_else(|| ApiError::bad_request(format!("{s:?} is not a document id (a UUID)")))
                })
                .collect::<Result<_, _>>()?,
        };
        let document_types = self
            .types
            .as_deref()
            .map(|t| t.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        let limit = match self.limit {
            Some(0) => return Err(ApiError::bad_request("limit must be at least 1")),
            Some(n) => n.min(MAX_PULL_ENTRIES),
            None => 1000,
        };
        let _ = &self.token;
        Ok(PullRequest {
            after: self.after,
            limit,
            exclude: self.exclude.clone(),
            filter: Filter {
                document_ids,
                document_types,
            },
        })
    }
}

/// `GET /v1/sync/pull`.
pub async fn pull(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    QueryParams(params): QueryParams<PullParams>,
) -> Result<Json<PullResponse>, ApiError> {
    let request = params.request()?;
    let answer = state.replica.serve_pull(&request).await?;
    let answer = visible(&state, &caller, &request, answer).await?;
    metrics::counter!("folio_sync_pulls_total").increment(1);
    metrics::counter!("folio_sync_pulled_entries_total").increment(answer.entries.len() as u64);
    Ok(Json(answer))
}

/// `GET /v1/sync/live` (WebSocket).
pub async fn live(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<crate::auth::Caller>,
    QueryParams(params): QueryParams<PullParams>,
) -> Result<Response, ApiError> {
    // The query first: a bad one is 400 whether or not the request is a handshake.
    let request = params.request()?;
    Ok(match ws {
        Ok(ws) => ws.max_message_size(64 * 1024).on_upgrade(move |socket| async move {
            let _open = crate::ws::Open::count("sync_live");
            run_live(socket, state, request, caller).await
        }),
        Err(rejection) => crate::ws::not_a_handshake(rejection),
    })
}

async fn run_live(mut socket: WebSocket, state: AppState, mut request: PullRequest, caller: Caller) {
    // Subscribe first: whatever commits after the catch-up reads is announced by the bus.
    let mut events = state.reactor.subscribe();
    let tokens = state.tokens.clone();
    let revoked = crate::ws::until_revoked(&tokens, &caller.id);
    tokio::pin!(revoked);
    let mut tick = tokio::time::interval(LIVE_POLL);
    loop {
        // Send everything after the cursor, page by page (also the catch-up on connect).
        loop {
            let answer = match state.replica.serve_pull(&request).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("live sync read failed: {e}");
                    return;
                }
            };
            let answer = match visible(&state, &caller, &request, answer).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("live sync access check failed: {}", e.message);
                    return;
                }
            };
            let moved = answer.cursor > request.after;
            let more = answer.more;
            request.after = answer.cursor;
            if !answer.entries.is_empty() || moved {
                let text = match serde_json::to_string(&answer) {
                    Ok(t) => t,
                    Err(_) => return,
                };
                let sent = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text.into()))).await;
                if !matches!(sent, Ok(Ok(()))) {
                    return;
                }
            }
            if !more {
                break;
            }
        }
        // Wait for a commit (ours, or another process's: the tick), or the client leaving.
        tokio::select! {
            () = &mut revoked => return crate::ws::close_revoked(socket).await,
            event = events.next() => match event {
                None => return,
                Some(Received::Event(Event::OperationsCommitted { .. })) | Some(Received::Lagged { .. }) => {
                    while events.try_next().is_some() {}
                }
                Some(_) => {}
            },
            _ = tick.tick() => {}
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// `GET /v1/documents/{id}/conflicts`: the actions kept in the document's effective history but refused by their
/// reducer in their merged position.
pub async fn conflicts(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    IdPath(id): IdPath,
) -> Result<Json<ConflictList>, ApiError> {
    let branch = Branch::default();
    crate::routes::documents::require_live(&state, &caller, id, &branch).await?;
    let conflicts = state
        .reactor
        .conflicts(id, &branch, MAX_CONFLICTS)
        .await?
        .into_iter()
        .map(|op| Conflict {
            scope: op.action.scope,
            index: op.index,
            action_id: op.action.id,
            reason: op.error.clone().unwrap_or_default(),
            operation: op,
        })
        .collect();
    Ok(Json(ConflictList { conflicts }))
}

/// The most conflicts one answer lists (the first ones, in scope and index order).
const MAX_CONFLICTS: usize = 10_000;

/// The answer of `GET /v1/documents/{id}/conflicts`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ConflictList {
    /// In scope order (document, then global), by index.
    pub conflicts: Vec<Conflict>,
}

/// An action kept in a document's effective history but refused by its reducer in its merged position: its index
/// is occupied and the state did not change.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Conflict {
    /// The scope of its log.
    pub scope: Scope,
    /// Its index in that log.
    pub index: u64,
    /// The action's id.
    pub action_id: uuid::Uuid,
    /// The reducer's reason (`CODE: sentence`).
    pub reason: String,
    /// The operation as stored.
    pub operation: Operation,
}
