//! Hashing: the blake3 chain over a sync unit's operations, canonical JSON, and document state hashes.
//!
//! An operation's hash is `blake3(previous hash ‖ canonical encoding)`, where the canonical encoding is the JSON of
//! `{index, skip, timestampUtcMs, error, action}` with the fields in declaration order and every object's keys
//! sorted. The first operation of a unit chains over 32 zero bytes. The same history gives the same hashes on every
//! machine, so a lost, reordered or altered operation breaks the chain.

use std::fmt;
use std::io::Write;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

#[cfg(test)]
use crate::causal::CausalContext;
#[cfg(test)]
use crate::operation::ms_string;
use crate::operation::{Action, Operation};
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
            // serde_json's map is sorted already unless its `preserve_order` feature is on: no list to sort then.
            Value::Object(map) if map.keys().is_sorted() => s.collect_map(map.iter().map(|(k, v)| (k, Canonical(v)))),
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

/// What an operation's hash covers of its action, as serde would write it: the reference [`write_hashed_action`] is
/// tested against (the writer is the one used: it writes the same bytes without serde's per-field machinery).
#[cfg(test)]
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

#[cfg(test)]
impl<'a> HashedAction<'a> {
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

/// What an operation's hash covers, as serde would write it: the reference [`write_hashed_operation`] is tested
/// against.
#[cfg(test)]
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HashedOperation<'a> {
    index: u64,
    skip: u64,
    #[serde(with = "ms_string")]
    timestamp_utc_ms: u64,
    error: &'a Option<String>,
    action: HashedAction<'a>,
}

#[cfg(test)]
pub(crate) fn hashed(op: &Operation) -> HashedOperation<'_> {
    HashedOperation {
        index: op.index,
        skip: op.skip,
        timestamp_utc_ms: op.timestamp_utc_ms,
        error: &op.error,
        action: HashedAction::of(&op.action),
    }
}

/// Writes the action's canonical content: what an operation's hash covers of its action, and what its signature
/// signs ([`crate::signature::signing_bytes`]). Not the signature fields: an action keeps its hash whether or not it
/// is signed, so a replica may attach its signature when the action leaves (the browser: WebCrypto signs
/// asynchronously, after the operation was committed).
///
/// The JSON object `{id, type, input, scope, timestampUtcMs, counter, replica, context}` in that order, `context`
/// left out when empty, the input with its keys sorted, no whitespace: byte for byte what serde_json writes for
/// that struct (tested against it), written by hand because hashing is on every hot path (a replay recomputes an
/// anchored chunk's hashes; serde's per-field calls were half of an operation's hash).
pub(crate) fn write_hashed_action(out: &mut Vec<u8>, a: &Action) {
    out.extend_from_slice(b"{\"id\":\"");
    out.extend_from_slice(
        a.id.hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer())
            .as_bytes(),
    );
    out.extend_from_slice(b"\",\"type\":");
    write_json_str(out, &a.action_type);
    out.extend_from_slice(b",\"input\":");
    // Writing JSON of a `Value` into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &Canonical(&a.input));
    out.extend_from_slice(match a.scope {
        Scope::Global => b",\"scope\":\"global\",\"timestampUtcMs\":\"".as_slice(),
        Scope::Local => b",\"scope\":\"local\",\"timestampUtcMs\":\"",
        Scope::Document => b",\"scope\":\"document\",\"timestampUtcMs\":\"",
    });
    write_int(out, a.timestamp_utc_ms);
    out.extend_from_slice(b"\",\"counter\":");
    write_int(out, a.counter);
    out.extend_from_slice(b",\"replica\":");
    write_json_opt_str(out, a.replica.as_deref());
    if !a.context.is_empty() {
        out.extend_from_slice(b",\"context\":");
        let _ = serde_json::to_writer(&mut *out, &a.context);
    }
    out.push(b'}');
}

/// Writes the canonical content an operation's hash covers: the JSON object `{index, skip, timestampUtcMs, error,
/// action}` (the action as [`write_hashed_action`]), byte for byte what serde_json writes for that struct.
pub(crate) fn write_hashed_operation(out: &mut Vec<u8>, op: &Operation) {
    out.extend_from_slice(b"{\"index\":");
    write_int(out, op.index);
    out.extend_from_slice(b",\"skip\":");
    write_int(out, op.skip);
    out.extend_from_slice(b",\"timestampUtcMs\":\"");
    write_int(out, op.timestamp_utc_ms);
    out.extend_from_slice(b"\",\"error\":");
    write_json_opt_str(out, op.error.as_deref());
    out.extend_from_slice(b",\"action\":");
    write_hashed_action(out, &op.action);
    out.push(b'}');
}

/// An integer as serde_json writes it.
fn write_int(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// A JSON string as serde_json writes it: bytes copied as they are unless one must be escaped (a quote, a
/// backslash, a control character), which only serde_json's own escaping then writes.
fn write_json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        let _ = serde_json::to_writer(&mut *out, s);
    } else {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

fn write_json_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => write_json_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

thread_local! {
    /// The buffer an operation's canonical content is written into before it is hashed (taken, so a call made
    /// while another holds it gets an empty one).
    static CONTENT_BUF: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The largest content buffer a thread keeps between hashes (an operation's content is ~300 bytes; a few carry
/// inputs of megabytes).
const KEPT_CONTENT_BUF: usize = 64 * 1024;

/// Runs `f` with the thread's content buffer, empty; gives it back afterwards.
pub(crate) fn with_content_buf<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    // `try_with`: a hash made while the thread's locals are being destroyed gets a fresh buffer.
    let mut buf = CONTENT_BUF.try_with(std::cell::Cell::take).unwrap_or_default();
    buf.clear();
    let r = f(&mut buf);
    // A large input's buffer is not kept: a thread holds at most this much between hashes.
    if buf.capacity() <= KEPT_CONTENT_BUF {
        let _ = CONTENT_BUF.try_with(|b| b.set(buf));
    }
    r
}

/// The hash `op` must carry when it follows an operation whose hash is `prev` (its own `hash` field is ignored).
pub fn operation_hash(prev: &OpHash, op: &Operation) -> OpHash {
    with_content_buf(|buf| {
        buf.extend_from_slice(&prev.0);
        write_hashed_operation(buf, op);
        OpHash(*blake3::hash(buf).as_bytes())
    })
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
/// a fixed cost (hashing was ~12% of a sync exchange's profile, most of it per-call overhead). The block is the
/// thread's content buffer ([`with_content_buf`]), not an array on the stack: zeroing a fresh 4 KiB array was more
/// instructions than the rest of an operation's hash (callgrind, a full replay's anchored chunks).
struct HashWriter<'a> {
    hasher: &'a mut blake3::Hasher,
    buf: &'a mut Vec<u8>,
}

const HASH_BLOCK: usize = 4096;

impl HashWriter<'_> {
    /// Hashes what is still buffered.
    fn drain(&mut self) {
        self.hasher.update(self.buf);
        self.buf.clear();
    }
}

impl Write for HashWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + bytes.len() > HASH_BLOCK {
            self.drain();
            if bytes.len() >= HASH_BLOCK {
                self.hasher.update(bytes);
                return Ok(bytes.len());
            }
        }
        self.buf.extend_from_slice(bytes);
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
    with_content_buf(|buf| {
        let mut w = HashWriter {
            hasher: &mut hasher,
            buf,
        };
        let _ = serde_json::to_writer(&mut w, state);
        w.drain();
    });
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;
    use crate::clock::HlcTimestamp;

    /// Strings a hand-written writer gets wrong first: quotes, backslashes, control characters, non-ASCII.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9_ -]{0,12}",
            any::<String>(),
            prop::collection::vec(
                prop_oneof![
                    Just('"'),
                    Just('\\'),
                    Just('\n'),
                    Just('\u{1}'),
                    Just('\u{7f}'),
                    Just('é'),
                    Just('✓'),
                    Just('a')
                ],
                0..8
            )
            .prop_map(|c| c.into_iter().collect()),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            text().prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(text(), inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    prop_compose! {
        fn operation()(
            action_type in text(),
            input in value(),
            scope in prop_oneof![Just(Scope::Global), Just(Scope::Local), Just(Scope::Document)],
            millis in any::<u64>(),
            counter in any::<u32>(),
            replica in prop::option::of(text()),
            context in prop::collection::btree_map(text(), (any::<u64>(), any::<u32>()), 0..3),
            index in any::<u64>(),
            skip in any::<u64>(),
            op_ts in any::<u64>(),
            error in prop::option::of(text()),
            id in any::<u128>(),
        ) -> Operation {
            let mut action = Action::new(action_type, input, scope, HlcTimestamp::new(millis, counter));
            action.id = uuid::Uuid::from_u128(id);
            action.replica = replica;
            action.context = CausalContext(
                context.into_iter().map(|(k, (millis, counter))| (k, HlcTimestamp { millis, counter })).collect::<BTreeMap<_, _>>(),
            );
            let mut op = Operation::new(action, 0, 0, error, &OpHash::ZERO);
            op.index = index;
            op.skip = skip;
            op.timestamp_utc_ms = op_ts;
            op
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The hand-written canonical writer writes byte for byte what serde_json writes for the reference structs.
        #[test]
        fn the_writer_writes_what_serde_writes(op in operation()) {
            let mut written = Vec::new();
            write_hashed_operation(&mut written, &op);
            let reference = serde_json::to_vec(&hashed(&op)).unwrap();
            prop_assert_eq!(String::from_utf8_lossy(&written), String::from_utf8_lossy(&reference));
            let mut action = Vec::new();
            write_hashed_action(&mut action, &op.action);
            prop_assert_eq!(action, serde_json::to_vec(&HashedAction::of(&op.action)).unwrap());
        }
    }

    #[test]
    fn canonical_json_sorts_keys_and_nests() {
        let v = json!({"b": [{"z": 1, "a": "\"q\""}], "a": null, "é": 1.5});
        assert_eq!(
            String::from_utf8(canonical_json(&v)).unwrap(),
            r#"{"a":null,"b":[{"a":"\"q\"","z":1}],"é":1.5}"#
        );
    }

    #[test]
    fn a_large_input_hashes_like_serde_and_its_buffer_is_not_kept() {
        let kept = || {
            CONTENT_BUF.with(|b| {
                let v = b.take();
                let cap = v.capacity();
                b.set(v);
                cap
            })
        };
        let big = Action::new(
            "T",
            json!({"text": "x".repeat(200_000)}),
            Scope::Global,
            HlcTimestamp::new(1, 0),
        );
        let op = Operation::new(big, 0, 0, None, &OpHash::ZERO);
        let mut reference = OpHash::ZERO.0.to_vec();
        reference.extend(serde_json::to_vec(&hashed(&op)).unwrap());
        assert_eq!(op.hash.0, *blake3::hash(&reference).as_bytes());
        assert!(
            kept() <= KEPT_CONTENT_BUF,
            "a 200 KB content's buffer was kept ({} bytes)",
            kept()
        );
        let small = Operation::new(
            Action::new("T", json!(1), Scope::Global, HlcTimestamp::new(1, 0)),
            1,
            0,
            None,
            &op.hash,
        );
        let mut reference = op.hash.0.to_vec();
        reference.extend(serde_json::to_vec(&hashed(&small)).unwrap());
        assert_eq!(
            small.hash.0,
            *blake3::hash(&reference).as_bytes(),
            "a small one after it hashes like serde too"
        );
        assert!(kept() > 0, "a small content's buffer is kept for the next hash");
    }

    #[test]
    fn a_hash_made_while_the_threads_locals_are_destroyed_still_hashes() {
        type Out = std::sync::Arc<std::sync::Mutex<Option<OpHash>>>;
        struct HashOnDrop(Operation, Out);
        impl Drop for HashOnDrop {
            fn drop(&mut self) {
                let hash = operation_hash(&OpHash::ZERO, &self.0);
                *self.1.lock().unwrap_or_else(|e| e.into_inner()) = Some(hash);
            }
        }
        thread_local! {
            static GUARD: std::cell::RefCell<Option<HashOnDrop>> = const { std::cell::RefCell::new(None) };
        }
        let op = Operation::new(
            Action::new("T", json!({"a": 1}), Scope::Global, HlcTimestamp::new(1, 0)),
            0,
            0,
            None,
            &OpHash::ZERO,
        );
        let out = Out::default();
        let (o, theirs) = (op.clone(), out.clone());
        std::thread::spawn(move || {
            // The guard's destructor is registered first, the buffer's after it: the buffer goes first at exit.
            GUARD.with(|g| *g.borrow_mut() = Some(HashOnDrop(o.clone(), theirs)));
            let _ = operation_hash(&OpHash::ZERO, &o);
        })
        .join()
        .expect("the thread ends without a panic");
        assert_eq!(*out.lock().unwrap(), Some(op.hash));
    }

    #[test]
    fn a_nested_hash_inside_a_hash_does_not_share_the_buffer() {
        // The buffer is taken while in use: a call inside the closure gets its own (the outer content is intact).
        let outer = with_content_buf(|buf| {
            buf.extend_from_slice(b"outer");
            let inner = with_content_buf(|b| {
                b.extend_from_slice(b"inner");
                b.clone()
            });
            assert_eq!(inner, b"inner");
            buf.clone()
        });
        assert_eq!(outer, b"outer");
    }
}
