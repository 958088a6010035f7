//! Hashing: the blake3 chain over a sync unit's operations, canonical JSON, and document state hashes.
//!
//! An operation's hash is `blake3(previous hash ‖ canonical encoding)`, where the canonical encoding is the JSON of
//! `{index, skip, timestampUtcMs, error, action}` with the fields in declaration order and every object's keys
//! sorted. The first operation of a unit chains over 32 zero bytes. The same history gives the same hashes on every
//! machine, so a lost, reordered or altered operation breaks the chain.

use std::fmt;
use std::io::Write;
use std::str::FromStr;

use crate::causal::CausalContext;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::operation::{Action, Operation, ms_string};
use crate::{CoreError, Scope};

/// A blake3 hash, written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
#[schemars(transparent)]
pub struct OpHash(#[schemars(with = "String", regex(pattern = r"^[0-9a-f]{64}$"))] pub [u8; 32]);

impl OpHash {
    /// The hash a unit's first operation chains over.
    pub const ZERO: OpHash = OpHash([0; 32]);

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from_digit((b >> 4) as u32, 16).unwrap_or('0'));
            s.push(char::from_digit((b & 15) as u32, 16).unwrap_or('0'));
        }
        s
    }
}

impl fmt::Debug for OpHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OpHash({})", self.to_hex())
    }
}

impl fmt::Display for OpHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl FromStr for OpHash {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return Err(CoreError::InvalidHash(s.to_owned()));
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks(2).enumerate() {
            let hi = hex_digit(pair[0]).ok_or_else(|| CoreError::InvalidHash(s.to_owned()))?;
            let lo = hex_digit(pair[1]).ok_or_else(|| CoreError::InvalidHash(s.to_owned()))?;
            out[i] = (hi << 4) | lo;
        }
        Ok(OpHash(out))
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

impl Serialize for OpHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 64];
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for (i, b) in self.0.iter().enumerate() {
            buf[2 * i] = DIGITS[(b >> 4) as usize];
            buf[2 * i + 1] = DIGITS[(b & 15) as usize];
        }
        // The buffer holds only ASCII hex digits.
        s.serialize_str(std::str::from_utf8(&buf).unwrap_or_default())
    }
}

impl<'de> Deserialize<'de> for OpHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = OpHash;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a blake3 hash as 64 lowercase hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<OpHash, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// Serializes a JSON value with every object's keys sorted, whatever map type serde_json was built with.
pub struct Canonical<'a>(pub &'a Value);

impl Serialize for Canonical<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Canonical(item))?;
                }
                seq.end()
            }
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort_unstable();
                let mut m = s.serialize_map(Some(keys.len()))?;
                for k in keys {
                    m.serialize_entry(k, &Canonical(&map[k]))?;
                }
                m.end()
            }
            other => other.serialize(s),
        }
    }
}

/// The canonical JSON bytes of a value (sorted keys, no whitespace).
pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing JSON of a `Value` into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, &Canonical(value));
    out
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HashedAction<'a> {
    id: &'a uuid::Uuid,
    #[serde(rename = "type")]
    action_type: &'a str,
    input: Canonical<'a>,
    scope: Scope,
    #[serde(with = "ms_string")]
    timestamp_utc_ms: u64,
    counter: u32,
    replica: &'a Option<String>,
    #[serde(skip_serializing_if = "CausalContext::is_empty")]
    context: &'a CausalContext,
}

impl<'a> HashedAction<'a> {
    /// The action's canonical content: what an operation's hash covers of its action, and what its signature signs
    /// ([`crate::signature::signing_bytes`]). Not the signature fields: an action keeps its hash whether or not it
    /// is signed, so a replica may attach its signature when the action leaves (the browser: WebCrypto signs
    /// asynchronously, after the operation was committed).
    pub(crate) fn of(a: &'a Action) -> Self {
        HashedAction {
            id: &a.id,
            action_type: &a.action_type,
            input: Canonical(&a.input),
            scope: a.scope,
            timestamp_utc_ms: a.timestamp_utc_ms,
            counter: a.counter,
            replica: &a.replica,
            context: &a.context,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HashedOperation<'a> {
    index: u64,
    skip: u64,
    #[serde(with = "ms_string")]
    timestamp_utc_ms: u64,
    error: &'a Option<String>,
    action: HashedAction<'a>,
}

fn hashed(op: &Operation) -> HashedOperation<'_> {
    let a: &Action = &op.action;
    HashedOperation {
        index: op.index,
        skip: op.skip,
        timestamp_utc_ms: op.timestamp_utc_ms,
        error: &op.error,
        action: HashedAction::of(a),
    }
}

/// The hash `op` must carry when it follows an operation whose hash is `prev` (its own `hash` field is ignored).
pub fn operation_hash(prev: &OpHash, op: &Operation) -> OpHash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&prev.0);
    let mut w = HashWriter::new(&mut hasher);
    // Serializing these plain structs cannot fail.
    let _ = serde_json::to_writer(&mut w, &hashed(op));
    w.finish();
    OpHash(*hasher.finalize().as_bytes())
}

/// Checks that `ops` continue a chain whose last hash is `prev` at index `first_index`, densely.
///
/// Returns the hash of the last operation, or the position of the first one that does not fit.
pub fn check_chain(prev: &OpHash, first_index: u64, ops: &[Operation]) -> Result<OpHash, ChainError> {
    let mut prev = *prev;
    for (i, op) in ops.iter().enumerate() {
        let expected_index = first_index + i as u64;
        if op.index != expected_index {
            return Err(ChainError::IndexGap {
                expected: expected_index,
                found: op.index,
            });
        }
        if op.id != op.action.id {
            return Err(ChainError::IdMismatch { index: op.index });
        }
        if op.skip > op.index {
            return Err(ChainError::SkipTooLong {
                index: op.index,
                skip: op.skip,
            });
        }
        if operation_hash(&prev, op) != op.hash {
            return Err(ChainError::HashMismatch { index: op.index });
        }
        prev = op.hash;
    }
    Ok(prev)
}

/// Why a sequence of operations does not continue a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// An index is not the next in the dense sequence.
    #[error("expected index {expected}, found {found}")]
    IndexGap {
        /// The index that should have come.
        expected: u64,
        /// The index that came.
        found: u64,
    },
    /// The operation's hash is not blake3 over its predecessor's hash and its own encoding.
    #[error("operation {index} does not carry the hash of its content chained over its predecessor")]
    HashMismatch {
        /// The index of the operation.
        index: u64,
    },
    /// The operation's action is of another scope than the unit it is appended to.
    #[error("operation {index} belongs to another scope than its unit")]
    ScopeMismatch {
        /// The index of the operation.
        index: u64,
    },
    /// The operation's id differs from its action's id.
    #[error("operation {index} has an id different from its action's id")]
    IdMismatch {
        /// The index of the operation.
        index: u64,
    },
    /// The operation skips more operations than precede it.
    #[error("operation {index} skips {skip} operations, more than precede it")]
    SkipTooLong {
        /// The index of the operation.
        index: u64,
        /// Its skip.
        skip: u64,
    },
}

/// Feeds what serde writes to the hasher in blocks: serde writes a few bytes at a time, and each `update` call has
/// a fixed cost (hashing was ~12% of a sync exchange's profile, most of it per-call overhead).
struct HashWriter<'a> {
    hasher: &'a mut blake3::Hasher,
    buf: [u8; HASH_BLOCK],
    len: usize,
}

const HASH_BLOCK: usize = 4096;

impl<'a> HashWriter<'a> {
    fn new(hasher: &'a mut blake3::Hasher) -> Self {
        Self {
            hasher,
            buf: [0; HASH_BLOCK],
            len: 0,
        }
    }

    /// Hashes what is still buffered.
    fn finish(mut self) {
        self.drain();
    }

    fn drain(&mut self) {
        self.hasher.update(&self.buf[..self.len]);
        self.len = 0;
    }
}

impl Write for HashWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.len + bytes.len() > HASH_BLOCK {
            self.drain();
            if bytes.len() >= HASH_BLOCK {
                self.hasher.update(bytes);
                return Ok(bytes.len());
            }
        }
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// blake3 of the JSON serialization of `state`. Deterministic when the state's maps are ordered (`BTreeMap`,
/// `serde_json::Map`): models must not keep `HashMap`s in their state.
pub fn state_hash<T: Serialize + ?Sized>(state: &T) -> OpHash {
    let mut hasher = blake3::Hasher::new();
    let mut w = HashWriter::new(&mut hasher);
    let _ = serde_json::to_writer(&mut w, state);
    w.finish();
    OpHash(*hasher.finalize().as_bytes())
}

/// blake3 of bytes already serialized (a state's JSON text gives the same hash as [`state_hash`] of the state).
pub fn bytes_hash(bytes: &[u8]) -> OpHash {
    OpHash(*blake3::hash(bytes).as_bytes())
}

/// blake3 of the canonical JSON of `value`.
pub fn value_hash(value: &Value) -> OpHash {
    state_hash(&Canonical(value))
}
