//! The stored form of a unit's operations: **chunks**. The operations of one append (one unit, one commit) are
//! stored together in one row of the `log` table, up to [`MAX_CHUNK_OPS`] operations a row, as one binary blob:
//!
//! * a format byte: [`FORMAT_RAW`], [`FORMAT_ZSTD`] (the body behind it compressed, with its length first and the
//!   frame's checksum on, so a flipped byte is named as a corrupt chunk), their anchored twins
//!   [`FORMAT_ANCHORED_RAW`] and [`FORMAT_ANCHORED_ZSTD`] (an append of [`ANCHOR_FROM`] operations or more: the
//!   first and last hashes once, after the string table, and no hash per operation: decoding recomputes them), or
//!   `{` ([`FORMAT_JSON_LINES`]: the wire JSON of each operation, one a line, as migration 0008 moved the rows of
//!   the older layout);
//! * the body: a table of the strings the chunk repeats (action types, authors: each stored once), then per
//!   operation a flags byte, the action id (16 bytes), the hash (32 bytes, unless anchored), the action's clock as a varint delta
//!   from the previous operation's, the type and author as indexes into the table, the scope, the causal context
//!   as (author, clock) varints, the error, the signer and signature of a signed action (flag 128), and the input as its exact JSON text (zstd compresses its repetitions).
//!
//! The index is the chunk's first index plus the position. Decoding yields the same `Operation` that was encoded,
//! so it serializes to exactly the JSON it was committed as and its hash chain checks as before (the golden tests in
//! `tests.rs`); whatever does not decode, or decodes to an operation at another place, is `StoreError::Corrupt`
//! naming the unit and index.

use std::collections::{BTreeMap, HashMap};

use integer_encoding::VarInt;
use uuid::Uuid;

use folio_core::{Action, CausalContext, HlcTimestamp, OpHash, Operation, Scope, SyncUnit};

use crate::StoreError;
use crate::sql_common::{decode_operation, decompress_exact};
use folio_core::hash::operation_hash;

/// The most operations one chunk holds: a read decodes at most this many at once.
pub(crate) const MAX_CHUNK_OPS: usize = 1024;
/// A chunk ends with the operation that takes its body past this many bytes.
const MAX_CHUNK_BYTES: usize = 1 << 20;
/// A chunk of at least this many operations ends before an operation of another author.
const AUTHOR_RUN: usize = 32;
/// Bodies up to this size are stored as they are: zstd saves little on them and costs a call.
const COMPRESS_ABOVE: usize = 384;
/// The largest body a chunk may claim (a tampered length must not allocate without bound).
const MAX_BODY: usize = 256 << 20;

/// The body follows as it is.
pub(crate) const FORMAT_RAW: u8 = 1;
/// The body's length (varint), then the body compressed by zstd.
pub(crate) const FORMAT_ZSTD: u8 = 2;
/// As [`FORMAT_RAW`], the body anchored: its operations carry no hash each (see [`ANCHOR_FROM`]).
pub(crate) const FORMAT_ANCHORED_RAW: u8 = 3;
/// As [`FORMAT_ZSTD`], the body anchored.
pub(crate) const FORMAT_ANCHORED_ZSTD: u8 = 4;
/// Wire JSON, one operation a line (rows moved from the older layout).
pub(crate) const FORMAT_JSON_LINES: u8 = b'{';
/// A chunk that starts with at least this many operations to encode is *anchored*: it stores its first
/// operation's hash and its last one's after the string table, and no hash per operation; decoding recomputes each
/// from the one before (the chain the store checked when they were appended) and checks that it ends at the stored
/// last hash. Two hashes a chunk instead of 32 random, incompressible bytes an operation, the largest part of a
/// compressed chunk. Shorter appends keep a hash each: for one operation the anchors would cost more.
const ANCHOR_FROM: usize = 8;

const ERROR: u8 = 1;
const REPLICA: u8 = 2;
const CONTEXT: u8 = 4;
const COUNTER: u8 = 8;
const OP_TIMESTAMP: u8 = 16;
const OP_ID: u8 = 32;
const SKIP: u8 = 64;
/// The action carries signature fields: a byte follows the error (1: a signer, as an index into the table;
/// 2: a signature, as text). Chunks written before signed actions never set it.
const SIGNED: u8 = 128;
const HAS_SIGNER: u8 = 1;
const HAS_SIGNATURE: u8 = 2;

/// One chunk of an append, ready to insert.
#[derive(Debug)]
pub(crate) struct EncodedChunk {
    /// Its first operation's position in the append.
    pub(crate) start: usize,
    /// How many operations it holds.
    pub(crate) count: usize,
    /// The blob.
    pub(crate) data: Vec<u8>,
    /// The author of every action in it, when they share one (a pull leaves a chunk out without decoding it).
    pub(crate) replica: Option<String>,
}

/// An append's operations as chunks, with what the side tables index: each operation's action id, and the
/// skipping operations.
#[derive(Debug, Default)]
pub(crate) struct EncodedAppend {
    pub(crate) chunks: Vec<EncodedChunk>,
    /// `(action id, index)` of every operation.
    pub(crate) ids: Vec<([u8; 16], i64)>,
    /// `(index, skip)` of the operations whose skip is above 0.
    pub(crate) skips: Vec<(i64, i64)>,
}

/// Encodes `ops` (an append's operations, in index order) into chunks.
pub(crate) fn encode_append(ops: &[Operation]) -> Result<EncodedAppend, String> {
    let mut out = EncodedAppend {
        chunks: Vec::with_capacity(ops.len().div_ceil(MAX_CHUNK_OPS)),
        ids: ops
            .iter()
            .map(|op| (*op.action.id.as_bytes(), op.index as i64))
            .collect(),
        skips: ops
            .iter()
            .filter(|op| op.skip > 0)
            .map(|op| (op.index as i64, op.skip as i64))
            .collect(),
    };
    let mut start = 0;
    while start < ops.len() {
        let anchored = ops.len() - start >= ANCHOR_FROM;
        let (data, count) = encode_body(&ops[start..], anchored)?;
        let chunk = &ops[start..start + count];
        let first_author = chunk[0].action.replica.as_deref();
        let replica = first_author
            .filter(|a| chunk.iter().all(|op| op.action.replica.as_deref() == Some(a)))
            .map(str::to_owned);
        out.chunks.push(EncodedChunk {
            start,
            count,
            data: seal(data, anchored)?,
            replica,
        });
        start += count;
    }
    Ok(out)
}

/// The body of the chunk that starts with `ops[0]`, and how many operations it took; `anchored`: with the first and
/// last hashes after the string table and none per operation.
fn encode_body(ops: &[Operation], anchored: bool) -> Result<(Vec<u8>, usize), String> {
    let mut strings = Interner::default();
    let mut ops_part = Vec::with_capacity(ops.len().min(MAX_CHUNK_OPS) * 128);
    let mut prev_ts = 0u64;
    let mut count = 0;
    for (i, op) in ops.iter().take(MAX_CHUNK_OPS).enumerate() {
        let a = &op.action;
        // A long enough chunk ends where the author changes: a rebase's merged runs become chunks of one author
        // each, which a pull leaves out by their `replica` column without decoding them.
        if count >= AUTHOR_RUN && i > 0 && a.replica != ops[i - 1].action.replica {
            break;
        }
        let mut flags = 0u8;
        if op.error.is_some() {
            flags |= ERROR;
        }
        if a.replica.is_some() {
            flags |= REPLICA;
        }
        if !a.context.is_empty() {
            flags |= CONTEXT;
        }
        if a.counter != 0 {
            flags |= COUNTER;
        }
        if op.timestamp_utc_ms != a.timestamp_utc_ms {
            flags |= OP_TIMESTAMP;
        }
        if op.id != a.id {
            flags |= OP_ID;
        }
        if op.skip != 0 {
            flags |= SKIP;
        }
        if a.is_signed() {
            flags |= SIGNED;
        }
        ops_part.push(flags);
        ops_part.extend_from_slice(a.id.as_bytes());
        if flags & OP_ID != 0 {
            ops_part.extend_from_slice(op.id.as_bytes());
        }
        if !anchored {
            ops_part.extend_from_slice(&op.hash.0);
        }
        put(&mut ops_part, (a.timestamp_utc_ms as i64).wrapping_sub(prev_ts as i64));
        prev_ts = a.timestamp_utc_ms;
        if flags & OP_TIMESTAMP != 0 {
            put(&mut ops_part, op.timestamp_utc_ms);
        }
        if flags & SKIP != 0 {
            put(&mut ops_part, op.skip);
        }
        if flags & COUNTER != 0 {
            put(&mut ops_part, a.counter);
        }
        put(&mut ops_part, strings.intern(&a.action_type));
        ops_part.push(match a.scope {
            Scope::Global => 0,
            Scope::Local => 1,
            Scope::Document => 2,
        });
        if let Some(replica) = &a.replica {
            put(&mut ops_part, strings.intern(replica));
        }
        if flags & CONTEXT != 0 {
            put(&mut ops_part, a.context.0.len() as u64);
            for (replica, clock) in &a.context.0 {
                put(&mut ops_part, strings.intern(replica));
                put(&mut ops_part, clock.millis);
                put(&mut ops_part, clock.counter);
            }
        }
        if let Some(error) = &op.error {
            put_bytes(&mut ops_part, error.as_bytes());
        }
        if flags & SIGNED != 0 {
            let which =
                if a.signer.is_some() { HAS_SIGNER } else { 0 } | if a.signature.is_some() { HAS_SIGNATURE } else { 0 };
            ops_part.push(which);
            if let Some(signer) = &a.signer {
                put(&mut ops_part, strings.intern(signer));
            }
            if let Some(signature) = &a.signature {
                put_bytes(&mut ops_part, signature.as_bytes());
            }
        }
        let input = serde_json::to_vec(&a.input).map_err(|e| e.to_string())?;
        put_bytes(&mut ops_part, &input);
        count += 1;
        if ops_part.len() >= MAX_CHUNK_BYTES {
            break;
        }
    }
    let strings = strings.strings;
    let mut body = Vec::with_capacity(ops_part.len() + strings.iter().map(|s| s.len() + 2).sum::<usize>() + 68);
    put(&mut body, strings.len() as u64);
    for s in &strings {
        put_bytes(&mut body, s.as_bytes());
    }
    if anchored && count > 0 {
        body.extend_from_slice(&ops[0].hash.0);
        body.extend_from_slice(&ops[count - 1].hash.0);
    }
    body.extend_from_slice(&ops_part);
    Ok((body, count))
}

/// The strings a chunk repeats (action types, authors), each stored once and named by its position.
#[derive(Default)]
struct Interner<'o> {
    strings: Vec<&'o str>,
    index: HashMap<&'o str, u64>,
}

impl<'o> Interner<'o> {
    fn intern(&mut self, s: &'o str) -> u64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.strings.len() as u64;
        self.strings.push(s);
        self.index.insert(s, i);
        i
    }
}

/// The blob of a body: the format byte, then the body as it is or compressed.
fn seal(body: Vec<u8>, anchored: bool) -> Result<Vec<u8>, String> {
    if body.len() <= COMPRESS_ABOVE {
        let mut data = Vec::with_capacity(body.len() + 1);
        data.push(if anchored { FORMAT_ANCHORED_RAW } else { FORMAT_RAW });
        data.extend_from_slice(&body);
        return Ok(data);
    }
    let frame = crate::sql_common::compress_frame(&body)?;
    let mut data = Vec::with_capacity(frame.len() + 6);
    data.push(if anchored { FORMAT_ANCHORED_ZSTD } else { FORMAT_ZSTD });
    put(&mut data, body.len() as u64);
    data.extend_from_slice(&frame);
    Ok(data)
}

fn put<V: VarInt>(out: &mut Vec<u8>, v: V) {
    let mut buf = [0u8; 10];
    let n = v.encode_var(&mut buf);
    out.extend_from_slice(&buf[..n]);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The operations of the chunk of `unit` whose first index is `first` and that holds `count` operations, in order.
/// Decoding stops at the first operation that does not decode or is not at its place: that one is an error naming
/// its index, after the good ones (so `verify` names the exact place).
pub(crate) fn decode_chunk(
    unit: &SyncUnit,
    first: u64,
    count: usize,
    data: &[u8],
) -> Vec<Result<Operation, StoreError>> {
    let corrupt = |index: u64, reason: String| StoreError::Corrupt {
        unit: unit.to_string(),
        index,
        reason,
    };
    match data.first() {
        Some(&FORMAT_JSON_LINES) => decode_json_lines(unit, first, count, data),
        Some(&format @ (FORMAT_RAW | FORMAT_ANCHORED_RAW)) => {
            decode_body(unit, first, count, &data[1..], format == FORMAT_ANCHORED_RAW)
        }
        Some(&format @ (FORMAT_ZSTD | FORMAT_ANCHORED_ZSTD)) => match decompress(&data[1..]) {
            Ok(body) => decode_body(unit, first, count, &body, format == FORMAT_ANCHORED_ZSTD),
            Err(reason) => vec![Err(corrupt(
                first,
                format!("a compressed chunk of {count} operations: {reason}"),
            ))],
        },
        _ => vec![Err(corrupt(first, "a chunk of an unknown format".to_owned()))],
    }
}

fn decompress(data: &[u8]) -> Result<Vec<u8>, String> {
    let (len, n) = u64::decode_var(data).ok_or("no body length")?;
    let len = usize::try_from(len)
        .ok()
        .filter(|l| *l <= MAX_BODY)
        .ok_or("a body length out of bounds")?;
    decompress_exact(&data[n..], len)
}

fn decode_json_lines(unit: &SyncUnit, first: u64, count: usize, data: &[u8]) -> Vec<Result<Operation, StoreError>> {
    let mut ops = Vec::with_capacity(count);
    let text = match std::str::from_utf8(data) {
        Ok(text) => text,
        Err(e) => {
            ops.push(Err(StoreError::Corrupt {
                unit: unit.to_string(),
                index: first,
                reason: format!("a chunk of JSON that is not UTF-8: {e}"),
            }));
            return ops;
        }
    };
    for (i, line) in text.split('\n').enumerate() {
        let op = decode_operation(unit, first + i as u64, line);
        let failed = op.is_err();
        ops.push(op);
        if failed {
            return ops;
        }
    }
    if ops.len() != count {
        ops.push(Err(StoreError::Corrupt {
            unit: unit.to_string(),
            index: first + ops.len() as u64,
            reason: format!("a chunk of {count} operations split into {}", ops.len()),
        }));
    }
    ops
}

/// A reader over a body; every read fails with a reason when the body ends early.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.data.get(self.at).ok_or("the chunk ends early")?;
        self.at += 1;
        Ok(b)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.data.len())
            .ok_or("the chunk ends early")?;
        let out = &self.data[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn var<V: VarInt>(&mut self) -> Result<V, String> {
        let (v, n) = V::decode_var(&self.data[self.at.min(self.data.len())..]).ok_or("a bad varint")?;
        self.at += n;
        Ok(v)
    }

    fn len_bytes(&mut self) -> Result<&'a [u8], String> {
        let n: u64 = self.var()?;
        self.bytes(usize::try_from(n).map_err(|_| "a length out of bounds")?)
    }

    fn text(&mut self) -> Result<&'a str, String> {
        std::str::from_utf8(self.len_bytes()?).map_err(|e| e.to_string())
    }

    fn uuid(&mut self) -> Result<Uuid, String> {
        let b = self.bytes(16)?;
        Ok(Uuid::from_bytes(b.try_into().map_err(|_| "a short id")?))
    }
}

fn decode_body(
    unit: &SyncUnit,
    first: u64,
    count: usize,
    body: &[u8],
    anchored: bool,
) -> Vec<Result<Operation, StoreError>> {
    let mut ops = Vec::with_capacity(count);
    let mut r = Reader { data: body, at: 0 };
    let corrupt = |index: u64, reason: String| StoreError::Corrupt {
        unit: unit.to_string(),
        index,
        reason,
    };
    let strings = match read_strings(&mut r) {
        Ok(s) => s,
        Err(reason) => {
            ops.push(Err(corrupt(first, format!("the chunk's string table: {reason}"))));
            return ops;
        }
    };
    let anchors = match anchored {
        false => None,
        true => match (r.bytes(32), r.bytes(32)) {
            (Ok(first_hash), Ok(last_hash)) => Some((
                OpHash(first_hash.try_into().unwrap_or_default()),
                OpHash(last_hash.try_into().unwrap_or_default()),
            )),
            _ => {
                ops.push(Err(corrupt(first, "the chunk ends in its anchors".to_owned())));
                return ops;
            }
        },
    };
    let mut prev_ts = 0u64;
    // The hash of the operation decoded last (anchored chunks recompute each from the one before).
    let mut prev_hash = OpHash::ZERO;
    for i in 0..count {
        let index = first + i as u64;
        match decode_one(&mut r, &strings, index, &mut prev_ts, anchors.is_none()) {
            Ok(op) if op.action.scope != unit.scope => {
                ops.push(Err(corrupt(
                    index,
                    format!("an action of scope {} in this unit", op.action.scope),
                )));
                return ops;
            }
            Ok(mut op) => {
                if let Some((first_hash, _)) = anchors {
                    op.hash = if i == 0 {
                        first_hash
                    } else {
                        operation_hash(&prev_hash, &op)
                    };
                }
                prev_hash = op.hash;
                ops.push(Ok(op));
            }
            Err(reason) => {
                ops.push(Err(corrupt(index, reason)));
                return ops;
            }
        }
    }
    if r.at != body.len() {
        ops.push(Err(corrupt(
            first + count as u64,
            format!("{} bytes after the chunk's {count} operations", body.len() - r.at),
        )));
        return ops;
    }
    if let Some((_, last_hash)) = anchors
        && count > 0
        && prev_hash != last_hash
    {
        // Which operation after the first was changed cannot be told: the first stands (its own hash is stored and
        // chained over by verify), the rest of the chunk is refused.
        ops.truncate(1);
        ops.push(Err(corrupt(
            first + 1,
            format!(
                "the chunk's operations {}..{} do not hash to its stored last hash (changed after they were written)",
                first + 1,
                first + count as u64 - 1
            ),
        )));
    }
    ops
}

fn read_strings<'a>(r: &mut Reader<'a>) -> Result<Vec<&'a str>, String> {
    let n: u64 = r.var()?;
    let n = usize::try_from(n)
        .ok()
        .filter(|n| *n <= r.data.len())
        .ok_or("too many strings")?;
    (0..n).map(|_| r.text()).collect()
}

/// One operation; `with_hash`: its hash is stored (not in an anchored chunk, whose caller sets it).
fn decode_one(
    r: &mut Reader<'_>,
    strings: &[&str],
    index: u64,
    prev_ts: &mut u64,
    with_hash: bool,
) -> Result<Operation, String> {
    let string = |i: u64| {
        strings
            .get(usize::try_from(i).unwrap_or(usize::MAX))
            .map(|s| (*s).to_owned())
            .ok_or_else(|| format!("string {i} is not in the chunk's table"))
    };
    let flags = r.byte()?;
    let id = r.uuid()?;
    let op_id = if flags & OP_ID != 0 { r.uuid()? } else { id };
    let hash: [u8; 32] = match with_hash {
        true => r.bytes(32)?.try_into().map_err(|_| "a short hash")?,
        false => [0; 32],
    };
    let delta: i64 = r.var()?;
    let ts = (*prev_ts as i64).wrapping_add(delta) as u64;
    *prev_ts = ts;
    let op_ts = if flags & OP_TIMESTAMP != 0 { r.var()? } else { ts };
    let skip = if flags & SKIP != 0 { r.var()? } else { 0 };
    let counter = if flags & COUNTER != 0 { r.var()? } else { 0 };
    let action_type = string(r.var()?)?;
    let scope = match r.byte()? {
        0 => Scope::Global,
        1 => Scope::Local,
        2 => Scope::Document,
        s => return Err(format!("scope {s}")),
    };
    let replica = if flags & REPLICA != 0 {
        Some(string(r.var()?)?)
    } else {
        None
    };
    let mut context = BTreeMap::new();
    if flags & CONTEXT != 0 {
        let n: u64 = r.var()?;
        for _ in 0..n {
            let author = string(r.var()?)?;
            let millis = r.var()?;
            let counter = r.var()?;
            context.insert(author, HlcTimestamp { millis, counter });
        }
    }
    let error = if flags & ERROR != 0 {
        Some(r.text()?.to_owned())
    } else {
        None
    };
    let (mut signer, mut signature) = (None, None);
    if flags & SIGNED != 0 {
        let which = r.byte()?;
        if which & HAS_SIGNER != 0 {
            signer = Some(string(r.var()?)?);
        }
        if which & HAS_SIGNATURE != 0 {
            signature = Some(r.text()?.to_owned());
        }
    }
    let input = serde_json::from_slice(r.len_bytes()?).map_err(|e| format!("the input: {e}"))?;
    Ok(Operation {
        id: op_id,
        index,
        skip,
        timestamp_utc_ms: op_ts,
        hash: OpHash(hash),
        error,
        action: Action {
            id,
            action_type,
            input,
            scope,
            timestamp_utc_ms: ts,
            counter,
            replica,
            context: CausalContext(context),
            signer,
            signature,
        },
    })
}
