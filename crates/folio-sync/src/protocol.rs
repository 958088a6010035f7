//! The sans-I/O core of sync: what replicas send each other, the state a replica keeps per remote, and pure
//! functions from what a replica has to what it sends, and from what it received to what it integrates.
//!
//! A round between a replica and a remote is: **push** (the replica's own replicated actions the remote has not
//! acknowledged, oldest first, in pages) then **pull** (everything the remote committed after the replica's cursor,
//! but the replica's own actions, in the remote's commit order). Both sides integrate by action: a duplicate is
//! dropped, a new action takes its place in the total order (see `folio_core::merge`). Nothing here does I/O: the
//! caller reads the log, calls these functions, and moves the bytes.

use std::collections::{BTreeMap, HashMap};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use folio_core::{Action, Branch, DocumentId, Scope, SyncUnit};
use folio_store::Committed;

/// One action of a sync unit, as it travels between replicas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncEntry {
    /// The document.
    pub document_id: DocumentId,
    /// The scope (`global` or `document`; `local` never leaves its replica).
    pub scope: Scope,
    /// The branch.
    pub branch: Branch,
    /// The action, with its author's clock, replica id and causal context.
    pub action: Action,
}

impl SyncEntry {
    /// The entry's unit.
    pub fn unit(&self) -> SyncUnit {
        SyncUnit::new(self.document_id, self.scope, self.branch.clone())
    }
}

/// `POST /v1/sync/push`: actions of the pushing replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushRequest {
    /// The pushing replica.
    pub replica: String,
    /// Its actions, in its commit order.
    pub entries: Vec<SyncEntry>,
}

/// An action kept in the history but refused by its reducer in its merged position, or one refused for its
/// signature before integration (`BAD_SIGNATURE`, `SIGNATURE_REQUIRED`: stored nowhere).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RejectedAction {
    /// The document.
    pub document_id: DocumentId,
    /// The action.
    pub action_id: Uuid,
    /// The reason (`CODE: sentence`): the reducer's, or the signature check's.
    pub reason: String,
}

/// The answer to a push, once everything in it is durably integrated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushResponse {
    /// Actions the remote did not have.
    pub new: usize,
    /// Actions it had already (a retried push).
    pub duplicates: usize,
    /// Actions refused in their merged position (kept, marked), or for their signature (not kept).
    pub rejected: Vec<RejectedAction>,
}

/// Which documents a round moves: all, or those named, or those of the named types.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    /// Only these documents (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub document_ids: Vec<DocumentId>,
    /// Only documents of these types (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub document_types: Vec<String>,
}

impl Filter {
    /// Whether the filter lets everything through.
    pub fn is_all(&self) -> bool {
        self.document_ids.is_empty() && self.document_types.is_empty()
    }

    /// Whether a document passes, given its type (`None` when unknown: passes only a filter without types).
    pub fn admits(&self, document_id: DocumentId, document_type: Option<&str>) -> bool {
        let by_id = self.document_ids.is_empty() || self.document_ids.contains(&document_id);
        let by_type = self.document_types.is_empty()
            || document_type.is_some_and(|t| self.document_types.iter().any(|wanted| wanted == t));
        by_id && by_type
    }
}

/// `GET /v1/sync/pull`: what the remote committed after a cursor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PullRequest {
    /// The remote's commit ordinal the puller has integrated up to.
    pub after: u64,
    /// At most this many entries.
    pub limit: usize,
    /// Leave out actions of this replica (the puller's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<String>,
    /// Which documents.
    #[serde(default, flatten)]
    pub filter: Filter,
}

/// The answer to a pull.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PullResponse {
    /// Entries in the remote's commit order.
    pub entries: Vec<SyncEntry>,
    /// The ordinal to pull after next time (every ordinal up to it was considered).
    pub cursor: u64,
    /// Whether more is waiting after `cursor`.
    pub more: bool,
}

/// `GET /v1/sync/info`: who the remote is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteInfo {
    /// The remote's replica id: the key under which a replica keeps its cursors for it.
    pub replica: String,
    /// The largest request body it accepts, in bytes (pushes are paged under it).
    pub max_body_bytes: usize,
}

/// What a replica keeps per remote, persisted in its store: how far the remote acknowledged this replica's own
/// actions (a local ordinal) and how far this replica pulled the remote's (a remote ordinal).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerState {
    /// Every own action with a local ordinal up to this is acknowledged by the remote.
    pub pushed: u64,
    /// Every remote commit up to this ordinal is integrated here.
    pub pulled: u64,
}

impl PeerState {
    /// The meta key of `field` for `remote`.
    pub fn key(remote: &str, field: &str) -> String {
        format!("sync/remote/{remote}/{field}")
    }

    /// After the remote acknowledged a push that considered local ordinals up to `upto`.
    pub fn on_push_acknowledged(&mut self, upto: u64) {
        self.pushed = self.pushed.max(upto);
    }

    /// After integrating a pull response.
    pub fn on_pulled(&mut self, response: &PullResponse) {
        self.pulled = self.pulled.max(response.cursor);
    }
}

/// One page of a push: the request and the local ordinal it acknowledges up to once answered.
#[derive(Debug, Clone, PartialEq)]
pub struct PushPage {
    /// What to send.
    pub request: PushRequest,
    /// The last local ordinal the page covers.
    pub upto: u64,
}

/// The entries a replica's committed operations give a remote: replicated scopes only, effective operations only
/// (`effective` says which; a compression leaves its originals out), without the actions of `exclude`, only
/// `own` actions when set, only documents `admit` lets through. Returns the entries with their ordinals. Takes the
/// operations to move their actions into the entries (a pull or an outbox can carry tens of thousands).
pub fn entries_of(
    committed: Vec<Committed>,
    effective: &dyn Fn(&Committed) -> bool,
    exclude: Option<&str>,
    own: Option<&str>,
    admit: &dyn Fn(DocumentId) -> bool,
) -> Vec<(u64, SyncEntry)> {
    committed
        .into_iter()
        .filter(|c| c.unit.scope != Scope::Local)
        .filter(|c| {
            let author = c.operation.action.replica.as_deref();
            exclude.is_none_or(|x| author != Some(x)) && own.is_none_or(|me| author == Some(me))
        })
        .filter(|c| admit(c.unit.document_id) && effective(c))
        .map(|c| {
            (
                c.ordinal,
                SyncEntry {
                    document_id: c.unit.document_id,
                    scope: c.unit.scope,
                    branch: c.unit.branch,
                    action: c.operation.action,
                },
            )
        })
        .collect()
}

/// Cuts a replica's outbox (entries with their local ordinals, in order, considered up to `upto`) into pages of at
/// most `max_entries` entries and about `max_bytes` of JSON. The last page acknowledges up to `upto` (the ordinals
/// after the last entry were considered and had nothing to send).
pub fn pages(
    replica: &str,
    outbox: Vec<(u64, SyncEntry)>,
    upto: u64,
    max_entries: usize,
    max_bytes: usize,
) -> Vec<PushPage> {
    let mut pages = Vec::new();
    let mut entries = Vec::new();
    let mut bytes = 0usize;
    let mut last = 0u64;
    for (ordinal, entry) in outbox {
        let size = json_len(&entry).map_or(256, |n| n + 1);
        if !entries.is_empty() && (entries.len() >= max_entries.max(1) || bytes + size > max_bytes) {
            pages.push(PushPage {
                request: PushRequest {
                    replica: replica.to_owned(),
                    entries: std::mem::take(&mut entries),
                },
                upto: last,
            });
            bytes = 0;
        }
        bytes += size;
        last = ordinal;
        entries.push(entry);
    }
    if !entries.is_empty() || upto > 0 {
        pages.push(PushPage {
            request: PushRequest {
                replica: replica.to_owned(),
                entries,
            },
            upto,
        });
    }
    pages.retain(|p| !p.request.entries.is_empty() || p.upto > 0);
    pages
}

/// The length of `value`'s JSON, counted without keeping the text.
fn json_len(value: &impl serde::Serialize) -> Option<usize> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).ok()?;
    Some(count.0)
}

/// Actions to integrate, one batch per unit, in the order they must be integrated: for each document, its
/// `document` scope first (a document new here must be created before its other units), the others after; within
/// a unit the entries' order is kept (each origin's actions in the origin's order).
pub fn batches(entries: Vec<SyncEntry>) -> Vec<(SyncUnit, Vec<Action>)> {
    let mut by_unit: BTreeMap<(u8, usize, SyncUnit), Vec<Action>> = BTreeMap::new();
    let mut first_seen: HashMap<SyncUnit, usize> = HashMap::new();
    for entry in entries {
        let unit = entry.unit();
        let n = first_seen.len();
        let seen = *first_seen.entry(unit.clone()).or_insert(n);
        let phase = if unit.scope == Scope::Document { 0 } else { 1 };
        by_unit.entry((phase, seen, unit)).or_default().push(entry.action);
    }
    by_unit
        .into_iter()
        .map(|((_, _, unit), actions)| (unit, actions))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use folio_core::{HlcTimestamp, OpHash, Operation};
    use serde_json::json;

    fn committed(ordinal: u64, doc: DocumentId, scope: Scope, replica: &str) -> Committed {
        let mut action = Action::new("SET", json!({}), scope, HlcTimestamp::new(ordinal, 0));
        action.replica = Some(replica.to_owned());
        Committed {
            ordinal,
            unit: SyncUnit::main(doc, scope),
            operation: Operation::new(action, ordinal, 0, None, &OpHash::ZERO),
        }
    }

    #[test]
    fn outbox_is_own_replicated_effective_actions() {
        let doc = DocumentId::new();
        let log = vec![
            committed(1, doc, Scope::Document, "me"),
            committed(2, doc, Scope::Global, "me"),
            committed(3, doc, Scope::Local, "me"),
            committed(4, doc, Scope::Global, "them"),
            committed(5, doc, Scope::Global, "me"),
        ];
        let all = |_: &Committed| true;
        let out = entries_of(log.clone(), &all, None, Some("me"), &|_| true);
        assert_eq!(out.iter().map(|(o, _)| *o).collect::<Vec<_>>(), vec![1, 2, 5]);
        let not_five = |c: &Committed| c.ordinal != 5;
        let out = entries_of(log.clone(), &not_five, Some("me"), None, &|_| true);
        assert_eq!(out.iter().map(|(o, _)| *o).collect::<Vec<_>>(), vec![4]);
        let none = entries_of(log.clone(), &all, None, None, &|d| d != doc);
        assert!(none.is_empty());
    }

    #[test]
    fn pages_respect_counts_and_bytes_and_acknowledge_the_whole_range() {
        let doc = DocumentId::new();
        let log: Vec<Committed> = (1..=10).map(|o| committed(o, doc, Scope::Global, "me")).collect();
        let out = entries_of(log.clone(), &|_| true, None, None, &|_| true);
        let p = pages("me", out.clone(), 12, 4, usize::MAX);
        assert_eq!(
            p.iter().map(|p| p.request.entries.len()).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
        assert_eq!(p.iter().map(|p| p.upto).collect::<Vec<_>>(), vec![4, 8, 12]);
        let one = serde_json::to_vec(&out[0].1).unwrap().len();
        let p = pages("me", out, 10, 100, one * 3 + 3);
        assert_eq!(
            p.iter().map(|p| p.request.entries.len()).collect::<Vec<_>>(),
            vec![3, 3, 3, 1]
        );
        // Nothing to send but a range considered: one empty page that moves the acknowledgement.
        let p = pages("me", Vec::new(), 7, 10, 1000);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].upto, 7);
        assert!(pages("me", Vec::new(), 0, 10, 1000).is_empty());
    }

    #[test]
    fn batches_put_document_scopes_first_and_keep_order() {
        let a = DocumentId::new();
        let b = DocumentId::new();
        let entry = |doc, scope, ms| SyncEntry {
            document_id: doc,
            scope,
            branch: Branch::default(),
            action: Action::new("SET", json!({}), scope, HlcTimestamp::new(ms, 0)),
        };
        let got = batches(vec![
            entry(a, Scope::Global, 3),
            entry(b, Scope::Document, 1),
            entry(a, Scope::Document, 0),
            entry(a, Scope::Global, 2),
        ]);
        let shape: Vec<(DocumentId, Scope, Vec<u64>)> = got
            .iter()
            .map(|(u, acts)| {
                (
                    u.document_id,
                    u.scope,
                    acts.iter().map(|a| a.timestamp_utc_ms).collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                (b, Scope::Document, vec![1]),
                (a, Scope::Document, vec![0]),
                (a, Scope::Global, vec![3, 2]),
            ]
        );
    }

    #[test]
    fn filters_by_id_and_type() {
        let a = DocumentId::new();
        let all = Filter::default();
        assert!(all.is_all() && all.admits(a, None));
        let by_type = Filter {
            document_types: vec!["folio/todo-list".into()],
            ..Filter::default()
        };
        assert!(by_type.admits(a, Some("folio/todo-list")));
        assert!(!by_type.admits(a, Some("folio/json")) && !by_type.admits(a, None));
        let by_id = Filter {
            document_ids: vec![a],
            ..Filter::default()
        };
        assert!(by_id.admits(a, None) && !by_id.admits(DocumentId::new(), None));
    }

    #[test]
    fn peer_state_only_moves_forward() {
        let mut s = PeerState::default();
        s.on_push_acknowledged(5);
        s.on_push_acknowledged(3);
        s.on_pulled(&PullResponse {
            cursor: 9,
            ..PullResponse::default()
        });
        s.on_pulled(&PullResponse::default());
        assert_eq!(s, PeerState { pushed: 5, pulled: 9 });
    }
}
