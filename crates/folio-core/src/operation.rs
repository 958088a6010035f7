//! Actions (what a caller asks for) and operations (an action as committed to a sync unit's log).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::causal::CausalContext;
use crate::clock::HlcTimestamp;
use crate::hash::OpHash;
use crate::ids::Scope;

/// One single-argument call on a document model: `{ id, type, input, scope, timestampUtcMs }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Action {
    /// Unique id of the action, chosen by its author.
    pub id: Uuid,
    /// The action's type, one of the model's action types (`ADD_TODO`).
    #[serde(rename = "type")]
    pub action_type: String,
    /// The single argument.
    pub input: Value,
    /// The scope the action applies to.
    pub scope: Scope,
    /// Physical part of the author's hybrid logical clock, milliseconds since the epoch, as a decimal string.
    #[serde(with = "ms_string")]
    #[schemars(with = "String", regex(pattern = r"^[0-9]{1,20}$"))]
    pub timestamp_utc_ms: u64,
    /// Logical part of the author's hybrid logical clock; omitted when zero.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub counter: u32,
    /// The replica that authored the action; omitted for actions made before it was known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    /// The author's causal context: for each other replica, the latest clock of its actions in this unit the
    /// author had integrated when it acted. Omitted when empty.
    #[serde(default, skip_serializing_if = "CausalContext::is_empty")]
    pub context: CausalContext,
    /// The author's Ed25519 public key, 32 bytes in unpadded base64url; omitted on unsigned actions. The `replica`
    /// of a signed action must be the id this key derives ([`crate::signature::replica_id_of`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{43}$"))]
    pub signer: Option<String>,
    /// The author's Ed25519 signature over the action's canonical content ([`crate::signature::signing_bytes`]:
    /// every field above, not the signature fields, not its position in a log), 64 bytes in unpadded base64url;
    /// or, for an action signed with others in one batch, the 64 bytes of the batch's signature followed by the
    /// action's place in it (leaf count and index, two bytes each, little-endian, then the sibling hashes up to the
    /// root, 32 bytes each: [`crate::signature::batch_plan`]). Present exactly when `signer` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{86,774}$"))]
    pub signature: Option<String>,
}

impl Action {
    /// A new action of `action_type` with `input` in `scope`, stamped at `timestamp`.
    pub fn new(action_type: impl Into<String>, input: Value, scope: Scope, timestamp: HlcTimestamp) -> Self {
        Self {
            id: Uuid::now_v7(),
            action_type: action_type.into(),
            input,
            scope,
            timestamp_utc_ms: timestamp.millis,
            counter: timestamp.counter,
            replica: None,
            context: CausalContext::default(),
            signer: None,
            signature: None,
        }
    }

    /// Whether the action carries a signature (valid or not: see [`crate::signature::verify`]).
    pub fn is_signed(&self) -> bool {
        self.signer.is_some() || self.signature.is_some()
    }

    /// The action's hybrid logical clock timestamp.
    pub fn timestamp(&self) -> HlcTimestamp {
        HlcTimestamp::new(self.timestamp_utc_ms, self.counter)
    }
}

/// An action as committed: its index in its sync unit, skip, hash and the action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Operation {
    /// The operation's id: the id of its action.
    pub id: Uuid,
    /// Position in the sync unit's log, dense from 0 (the revision this operation creates is `index + 1`).
    pub index: u64,
    /// How many preceding operations this one supersedes (used by merges); 0 for an ordinary append.
    pub skip: u64,
    /// When the action was made (the action's timestamp), milliseconds since the epoch as a decimal string.
    #[serde(with = "ms_string")]
    #[schemars(with = "String", regex(pattern = r"^[0-9]{1,20}$"))]
    pub timestamp_utc_ms: u64,
    /// blake3 over the previous operation's hash and this operation's canonical encoding, hex.
    pub hash: OpHash,
    /// Set when the action was kept in the history but rejected by its reducer (during a merge): the reason.
    pub error: Option<String>,
    /// The action.
    pub action: Action,
}

impl Operation {
    /// The operation committing `action` at `index` after an operation whose hash is `prev`.
    pub fn new(action: Action, index: u64, skip: u64, error: Option<String>, prev: &OpHash) -> Self {
        let mut op = Operation {
            id: action.id,
            index,
            skip,
            timestamp_utc_ms: action.timestamp_utc_ms,
            hash: OpHash::ZERO,
            error,
            action,
        };
        op.hash = crate::hash::operation_hash(prev, &op);
        op
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Serde for `u64` milliseconds carried as a decimal string (the Powerhouse wire format); numbers are accepted on input.
pub mod ms_string {
    use std::fmt;

    use serde::{Deserializer, Serializer, de};

    /// Writes `ms` as a decimal string.
    pub fn serialize<S: Serializer>(ms: &u64, s: S) -> Result<S::Ok, S::Error> {
        // itoa, not `collect_str`: serde_json writes a collected string through `fmt` and its escaping, byte by byte.
        s.serialize_str(itoa::Buffer::new().format(*ms))
    }

    /// Reads a decimal string (or a non-negative integer).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        d.deserialize_any(MsVisitor)
    }

    struct MsVisitor;

    impl de::Visitor<'_> for MsVisitor {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("milliseconds since the epoch as a decimal string")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<u64, E> {
            if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(E::custom(format!(
                    "timestampUtcMs must be a decimal string of milliseconds, got {s:?}"
                )));
            }
            s.parse()
                .map_err(|_| E::custom(format!("timestampUtcMs out of range: {s:?}")))
        }
    }
}
