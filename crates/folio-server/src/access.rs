//! Per-document access: who may read and write each document, decided from the caller's token (its principal and
//! role) and the document's owner and grants.
//!
//! The owner is recorded in the document's `CREATE_DOCUMENT` and the grants (and owner changes) are `SET_GRANTS`
//! operations in its `document` scope, so they replicate and have a history like everything else. Deciding must be
//! cheap: this module keeps each document's [`AccessRules`] in memory, folded from its `document` scope alone (a few
//! operations, no model, no state), loaded on first use and dropped whenever an operation commits to that scope,
//! here or through another node sharing the store (the reactor's follower announces those): the next check folds it
//! again. Only the `main` branch's `document` scope decides; other branches follow it.
//!
//! The rules, for a token of principal `p` and role `r`:
//! * an admin token reads and writes every document;
//! * a document with neither owner nor grants (made before owners existed) answers every token by its role, as
//!   before: read for all, write for write tokens;
//! * otherwise `p` reads when it is the owner or holds a grant (to `p` or to `*`), and writes when it is the owner
//!   or holds a write grant, and `r` is write: a read token never writes;
//! * the owner (with a write token) and admins manage the grants; only admins change the owner.
//!
//! A document the caller may not read answers as if it did not exist (404), on every path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use serde_json::json;

use folio_core::document::{CREATE_DOCUMENT, SET_GRANTS};
use folio_core::{Access, AccessRules, Action, Branch, DocumentId, Scope, SetGrantsInput, SyncUnit};
use folio_reactor::{Event, Reactor, Received};
use folio_store::OperationStore;

use crate::ApiError;
use crate::auth::{Caller, Role};

/// What a caller may do with a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Decision {
    /// Nothing: the document answers as if it did not exist.
    Hidden,
    /// Read it, not change it.
    Read,
    /// Read and change it.
    Write,
}

/// What the caller may do with a document of `rules` (`None`: it does not exist).
pub fn decide(caller: &Caller, rules: Option<&AccessRules>) -> Decision {
    let Some(rules) = rules else {
        return Decision::Hidden;
    };
    let writer = caller.role >= Role::Write;
    if caller.role == Role::Admin {
        return Decision::Write;
    }
    let access = if rules.is_open() {
        Some(Access::Write)
    } else {
        rules.access_of(&caller.principal)
    };
    match access {
        None => Decision::Hidden,
        Some(Access::Write) if writer => Decision::Write,
        Some(_) => Decision::Read,
    }
}

/// Whether the caller may change the grants of a document of `rules`: an admin, or its owner with a write token.
pub fn manages(caller: &Caller, rules: &AccessRules) -> bool {
    caller.role == Role::Admin || (caller.role >= Role::Write && rules.owner.as_deref() == Some(&caller.principal))
}

/// Why one action may not be written by the caller, as `CODE: sentence` (the shape of a push's `rejected`
/// reasons), or `Ok`. `decision` is [`decide`]'s for the action's document. Called for each action of a submission
/// and of a push, beside any other per-action check.
pub fn check_action(caller: &Caller, rules: &AccessRules, decision: Decision, action: &Action) -> Result<(), Refusal> {
    match decision {
        Decision::Hidden => return Err(Refusal::NotFound),
        Decision::Read => {
            return Err(Refusal::Forbidden(
                "this token may read the document, not change it".into(),
            ));
        }
        Decision::Write => {}
    }
    if action.scope == Scope::Document && action.action_type == SET_GRANTS {
        if !manages(caller, rules) {
            return Err(Refusal::Forbidden(
                "only the document's owner or an admin token changes its grants".into(),
            ));
        }
        let new_owner = action.input.get("owner").filter(|o| !o.is_null());
        if caller.role != Role::Admin && new_owner.is_some_and(|o| o.as_str() != rules.owner.as_deref()) {
            return Err(Refusal::Forbidden(
                "only an admin token changes a document's owner".into(),
            ));
        }
    }
    if action.scope == Scope::Document && action.action_type == CREATE_DOCUMENT && caller.role != Role::Admin {
        let owner = action.input.get("owner").filter(|o| !o.is_null());
        if owner.is_some_and(|o| o.as_str() != Some(caller.principal.as_str())) {
            return Err(Refusal::Forbidden(
                "a document is created owned by the creating principal (or by none)".into(),
            ));
        }
    }
    Ok(())
}

/// Why an action is refused by access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The document is not readable (or does not exist): 404.
    NotFound,
    /// Readable, not writable by this caller, or a grant change it may not make: 403.
    Forbidden(String),
}

impl Refusal {
    /// The HTTP error for document `id`.
    pub fn to_api(&self, id: DocumentId) -> ApiError {
        match self {
            Refusal::NotFound => not_found(id),
            Refusal::Forbidden(why) => ApiError::forbidden(why.clone()).with_details(json!({ "documentId": id })),
        }
    }

    /// The reason of a push's `rejected` entry: `CODE: sentence`.
    pub fn reason(&self, id: DocumentId) -> String {
        match self {
            Refusal::NotFound => format!("DOCUMENT_NOT_FOUND: document {id} not found"),
            Refusal::Forbidden(why) => format!("FORBIDDEN: {why}"),
        }
    }
}

/// 404 `DOCUMENT_NOT_FOUND`, the answer for a document that does not exist or that the caller may not read.
pub fn not_found(id: DocumentId) -> ApiError {
    ApiError::not_found("DOCUMENT_NOT_FOUND", format!("document {id} not found"))
        .with_details(json!({ "documentId": id }))
}

/// Each document's owner and grants, in memory.
#[derive(Default)]
pub struct AccessCache {
    rules: RwLock<HashMap<DocumentId, Arc<AccessRules>>>,
    /// Moves on every invalidation: a fold that started before one is not kept.
    epoch: AtomicU64,
}

impl AccessCache {
    /// The rules of document `id` (`None`: never created on `main`), from memory or folded from its `document`
    /// scope.
    pub async fn rules(
        &self,
        store: &Arc<dyn OperationStore>,
        id: DocumentId,
    ) -> Result<Option<Arc<AccessRules>>, ApiError> {
        if let Some(rules) = self.read().get(&id) {
            return Ok(Some(rules.clone()));
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let unit = SyncUnit::new(id, Scope::Document, Branch::default());
        let mut ops = Vec::new();
        let mut stream = store.read(&unit, 0, None);
        while let Some(op) = stream.next().await {
            ops.push(op.map_err(folio_reactor::ReactorError::from)?);
        }
        if ops.is_empty() {
            return Ok(None);
        }
        let mut rules = AccessRules::default();
        for op in folio_core::merge::effective(&ops) {
            rules.fold(op);
        }
        let rules = Arc::new(rules);
        let mut map = self.rules.write().unwrap_or_else(|e| e.into_inner());
        if self.epoch.load(Ordering::Acquire) == epoch {
            map.insert(id, rules.clone());
        }
        Ok(Some(rules))
    }

    /// What `caller` may do with document `id`, and its rules.
    pub async fn decide(
        &self,
        store: &Arc<dyn OperationStore>,
        caller: &Caller,
        id: DocumentId,
    ) -> Result<(Decision, Option<Arc<AccessRules>>), ApiError> {
        let rules = self.rules(store, id).await?;
        Ok((decide(caller, rules.as_deref()), rules))
    }

    /// Forgets document `id`'s rules (an operation committed to its `document` scope).
    pub fn invalidate(&self, id: DocumentId) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.rules.write().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }

    /// Forgets every document's rules (the commit stream was missed).
    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.rules.write().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<DocumentId, Arc<AccessRules>>> {
        self.rules.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows `reactor`'s commits (its own and, through its follower, other nodes'), forgetting the rules of every
    /// document whose `main` `document` scope changes, until the reactor's bus closes.
    pub fn spawn_follow(self: &Arc<Self>, reactor: &Reactor) {
        let mut events = reactor.subscribe();
        let cache = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(received) = events.next().await {
                let Some(cache) = cache.upgrade() else { return };
                match received {
                    Received::Event(Event::OperationsCommitted { unit, .. })
                        if unit.scope == Scope::Document && unit.branch == Branch::default() =>
                    {
                        cache.invalidate(unit.document_id)
                    }
                    Received::Lagged { .. } => cache.clear(),
                    _ => {}
                }
            }
        });
    }
}

/// The `SET_GRANTS` input that gives a document created without owner (by a replica offline) to `principal`.
pub fn claim(principal: &str) -> SetGrantsInput {
    SetGrantsInput {
        grants: None,
        owner: Some(principal.to_owned()),
    }
}
