//! The bucket layout: where each kind of object lives, how its key is made, and what it holds.
//!
//! ```text
//! prefix/users/<replica>/<millis>-<counter>-<replica>-<seq>.json   a batch of one replica's own actions (only it writes here)
//! prefix/shared/<millis>-<counter>-<promoter>-<seq>.json           a batch the promoter validated (only it writes here)
//! prefix/rejections/<replica>/<millis>-…-<promoter>-<seq>.json     what the promoter refused of <replica>'s, and why
//! prefix/snapshots/<blake3 of the content>.json                    a document as of a roll-up (immutable, cacheable)
//! prefix/snapshot-index/<shared cursor file name>                  the snapshots taken at that cursor, one per document
//! ```
//!
//! Keys sort by hybrid logical clock and are unique to their writer (its replica id and its own sequence number are
//! in the key), so no two writers ever race on a key and nothing relies on conditional creates. A writer's keys
//! only grow: its clock part never goes back (see [`next_key`]), so readers list with start-after their cursor.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use folio_core::{Branch, DocumentId, HlcTimestamp, Revisions};
use folio_sync::SyncEntry;
use folio_sync::protocol::RejectedAction;

/// The folder of every user area.
pub const USERS: &str = "users";
/// The promoter's validated batches.
pub const SHARED: &str = "shared";
/// The promoter's refusals, one folder per author.
pub const REJECTIONS: &str = "rejections";
/// Immutable document snapshots named by their content hash.
pub const SNAPSHOTS: &str = "snapshots";
/// One object per roll-up, naming the snapshots taken at a shared cursor.
pub const SNAPSHOT_INDEX: &str = "snapshot-index";

/// The user area of `replica`.
pub fn user_area(replica: &str) -> String {
    format!("{USERS}/{replica}")
}

/// Where the promoter tells `replica` what it refused.
pub fn rejection_area(replica: &str) -> String {
    format!("{REJECTIONS}/{replica}")
}

/// Whether `id` may name a writer in a key (so keys stay one path segment and sort as made).
pub fn valid_writer(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        && !id.starts_with('.')
}

/// The next key of a writer in `area`: the clock is the later of `clock` (the latest action in the object) and the
/// writer's previous key's, so the writer's keys sort in the order it wrote them; `seq` makes it unique.
pub fn next_key(area: &str, clock: HlcTimestamp, previous: Option<HlcTimestamp>, writer: &str, seq: u64) -> String {
    let clock = previous.map_or(clock, |p| p.max(clock));
    format!(
        "{area}/{:013}-{:010}-{writer}-{seq:010}.json",
        clock.millis, clock.counter
    )
}

/// The clock part of a key made by [`next_key`].
pub fn clock_of_key(key: &str) -> Option<HlcTimestamp> {
    let name = key.rsplit('/').next()?;
    let mut parts = name.splitn(3, '-');
    let millis = parts.next()?.parse().ok()?;
    let counter = parts.next()?.parse().ok()?;
    Some(HlcTimestamp::new(millis, counter))
}

/// A batch of actions: the content of a user-area or shared object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Batch {
    /// The writer (a replica in its own area, the promoter in the shared area).
    pub writer: String,
    /// The actions, in the writer's commit order.
    pub entries: Vec<SyncEntry>,
}

/// What the promoter refused of one author's batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rejections {
    /// The promoter's replica id.
    pub promoter: String,
    /// The user-area objects these come from.
    pub sources: Vec<String>,
    /// The refused actions and why (`FORGED`, `MALFORMED`, or the reducer's `CODE: sentence`).
    pub rejected: Vec<Rejection>,
}

/// One refused action (or a whole unreadable object, with no action id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rejection {
    /// The user-area object it came in.
    pub source: String,
    /// The document, when known.
    pub document_id: Option<DocumentId>,
    /// The action, when known.
    pub action_id: Option<Uuid>,
    /// Why.
    pub reason: String,
    /// Whether the action still reached the shared area, kept and marked rejected in its merged position (every
    /// replica then marks it the same way), rather than being refused entirely.
    pub kept_marked: bool,
}

impl Rejection {
    /// As a sync conflict, when it names an action.
    pub fn as_conflict(&self) -> Option<RejectedAction> {
        Some(RejectedAction {
            document_id: self.document_id?,
            action_id: self.action_id?,
            reason: format!("refused by the promoter: {}", self.reason),
        })
    }
}

/// A document as of a roll-up: its state for readers, and its effective history for replicas that bootstrap from it
/// (so they hold the same log, and the same state hash, as replicas that replayed every batch). The shared cursor
/// it covers is in the [`SnapshotIndex`], not here: an unchanged document keeps its content, so its hash and key,
/// and is not written again by later roll-ups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// The document.
    pub document_id: DocumentId,
    /// Its type.
    pub document_type: String,
    /// The main branch's revisions at the snapshot.
    pub revision: Revisions,
    /// The clock of the latest action it includes (`millis.counter`).
    pub last_update: String,
    /// The state hash of the main branch.
    pub state_hash: String,
    /// The main branch's global state.
    pub state: serde_json::Value,
    /// The effective actions of every unit of the document, in the promoter's commit order.
    pub entries: Vec<SyncEntry>,
}

/// The snapshots a roll-up wrote: document → snapshot key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotIndex {
    /// The last shared-area key every snapshot listed covers.
    pub shared_cursor: String,
    /// Per document, the key of its snapshot.
    pub documents: BTreeMap<DocumentId, String>,
}

/// The branch snapshots describe.
pub fn main_branch() -> Branch {
    Branch::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_clock_then_writer_order() {
        let a = next_key("shared", HlcTimestamp::new(5, 2), None, "p", 1);
        let b = next_key("shared", HlcTimestamp::new(5, 10), None, "p", 2);
        let c = next_key("shared", HlcTimestamp::new(4, 0), clock_of_key(&b), "p", 3);
        assert!(a < b && b < c, "{a} {b} {c}");
        assert_eq!(clock_of_key(&c), Some(HlcTimestamp::new(5, 10)));
        assert_eq!(clock_of_key(&a), Some(HlcTimestamp::new(5, 2)));
    }

    #[test]
    fn writer_ids() {
        assert!(valid_writer("r_01J.x"));
        assert!(!valid_writer("a/b"));
        assert!(!valid_writer(""));
        assert!(!valid_writer("a-b"));
    }
}
