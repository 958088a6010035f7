//! # folio-wasm
//!
//! folio-core for the browser: the [`core::Core`] of a replica (load a document from its logs, apply local actions,
//! integrate other replicas' actions, compress unsent ones) and folio-core's pure functions (canonical JSON, the hash
//! chain, state hashes), exported to JavaScript with wasm-bindgen. The browser client (`clients/js`) keeps the logs
//! in IndexedDB and moves them over HTTP; every fold, hash, order and merge is done here, by folio-core.
//!
//! Everything crosses the boundary as JSON text: operations keep their exact wire bytes (a float read by
//! `JSON.parse` and written back by `JSON.stringify` may change its text and so its hash), and the host stores them
//! as text. Each exported method answers a JSON text: the result, or `{"error": {code, message}}`; the answers of
//! `apply`, `create`, `integrate` and `compress` are followed by the texts of the operations they made, one per line
//! (`with_texts`), rather than carrying them as JSON strings inside the JSON.
//!
//! The crate builds natively too (the wasm-bindgen exports are then plain functions), so the workspace's tests and
//! clippy cover it, and the golden tests fold the same histories natively and in WebAssembly.
#![forbid(unsafe_code)]

pub mod core;

use folio_core::{Branch, DocumentId, Operation};
use serde::Serialize;
use uuid::Uuid;
use wasm_bindgen::prelude::*;

use crate::core::{Appended, Compressed, Core, Failure, Integrated, LoadInput, LocalAction, Outcome, SyncEntry};

/// What the outbox keeps of an own operation besides its texts.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OpOut {
    index: u64,
    skip: u64,
    id: Uuid,
    replica: Option<String>,
    error: Option<String>,
    millis: u64,
    counter: u32,
}

/// [`Appended`] with texts: operations and keyframes keep their exact bytes through the host. The operations' texts
/// (and, for own actions, the entry texts pushed) are not in the answer's JSON (a JSON string in JSON costs an
/// escape here and an unescape in the host per byte): they follow it, one per line (see [`with_texts`]).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AppendedOut {
    document_id: DocumentId,
    branch: Branch,
    scope: folio_core::Scope,
    /// The index of the first operation; the others follow it densely.
    first: u64,
    /// How many operations (texts) follow.
    count: usize,
    /// Own actions (apply, create, compress): what the outbox keeps of each, in order; their entry texts follow
    /// the operation texts. Empty for integrated ones, which never leave.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    operations: Vec<OpOut>,
    keyframe: Option<String>,
    keyframe_revision: Option<u64>,
    /// The operations, written after the JSON.
    #[serde(skip)]
    ops: Vec<Operation>,
    #[serde(skip)]
    own: bool,
}

/// A [`SyncEntry`] by reference: the same text, without copying the action.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntryRef<'a> {
    document_id: DocumentId,
    scope: folio_core::Scope,
    branch: &'a Branch,
    action: &'a folio_core::Action,
}

fn appended_out(a: Appended) -> AppendedOut {
    appended_out_with(a, true)
}

/// [`appended_out`], with what the outbox keeps only when `own` (own actions).
fn appended_out_with(a: Appended, own: bool) -> AppendedOut {
    AppendedOut {
        document_id: a.document_id,
        branch: a.branch,
        scope: a.scope,
        first: a.operations.first().map_or(0, |op| op.index),
        count: a.operations.len(),
        operations: if own {
            a.operations
                .iter()
                .map(|op| OpOut {
                    index: op.index,
                    skip: op.skip,
                    id: op.action.id,
                    replica: op.action.replica.clone(),
                    error: op.error.clone(),
                    millis: op.action.timestamp_utc_ms,
                    counter: op.action.counter,
                })
                .collect()
        } else {
            Vec::new()
        },
        keyframe: a.keyframe.as_ref().and_then(|k| serde_json::to_string(k).ok()),
        keyframe_revision: a.keyframe.as_ref().map(|k| k.revision),
        ops: a.operations,
        own,
    }
}

/// The answer's JSON, then for each appended unit in order its operation texts and (own actions) its entry texts,
/// each on a line of its own (serde_json never writes a raw line break: one inside a string is `\n`). Written
/// straight into one buffer: no text per operation.
fn with_texts<'a>(head: String, appended: impl IntoIterator<Item = &'a AppendedOut>) -> String {
    let appended: Vec<&AppendedOut> = appended.into_iter().collect();
    let ops: usize = appended.iter().map(|a| a.ops.len() * if a.own { 2 } else { 1 }).sum();
    let mut out = head.into_bytes();
    out.reserve(ops * 400);
    for a in appended {
        for op in &a.ops {
            out.push(b'\n');
            // Writing plain structs into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut out, op);
        }
        if a.own {
            for op in &a.ops {
                out.push(b'\n');
                let entry = EntryRef {
                    document_id: a.document_id,
                    scope: a.scope,
                    branch: &a.branch,
                    action: &op.action,
                };
                let _ = serde_json::to_writer(&mut out, &entry);
            }
        }
    }
    // serde_json writes UTF-8 only.
    String::from_utf8(out).unwrap_or_default()
}

/// [`answer`] for a result that carries appended units: their texts after its JSON.
fn answer_texts<T: Serialize>(result: Result<T, Failure>, appended: impl Fn(&T) -> Vec<&AppendedOut>) -> String {
    match result {
        Ok(v) => {
            let head = ok(&v);
            if head.starts_with("{\"error\"") {
                return head;
            }
            with_texts(head, appended(&v))
        }
        Err(f) => fail(&f),
    }
}

fn outcome_appended<T>(o: &Outcome<T>, f: impl Fn(&T) -> &Vec<AppendedOut>) -> Vec<&AppendedOut> {
    match o {
        Outcome::Done(t) => f(t).iter().collect(),
        Outcome::Need { .. } => Vec::new(),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IntegratedOut {
    appended: Vec<AppendedOut>,
    new: usize,
    duplicates: usize,
    rejected: Vec<crate::core::Rejected>,
    /// How many entries were given.
    entries: usize,
    /// A pull answer's `cursor` and `more`, as given (the host needs nothing else of it: it never parses the page).
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    more: Option<bool>,
}

fn integrated_out(i: Integrated, entries: usize, page: Page) -> Outcome<IntegratedOut> {
    Outcome::Done(IntegratedOut {
        appended: i.appended.into_iter().map(|a| appended_out_with(a, false)).collect(),
        new: i.new,
        duplicates: i.duplicates,
        rejected: i.rejected,
        entries,
        cursor: page.cursor,
        more: page.more,
    })
}

/// What a compression answers: the operations that replace the run, whose entry texts replace it in the outbox.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CompressedOut {
    appended: Vec<AppendedOut>,
    saved: usize,
}

fn compressed_out(c: Compressed) -> Outcome<CompressedOut> {
    Outcome::Done(CompressedOut {
        appended: c.appended.into_iter().map(appended_out).collect(),
        saved: c.saved,
    })
}

fn map_outcome<T, U>(o: Outcome<T>, f: impl FnOnce(T) -> Outcome<U>) -> Outcome<U> {
    match o {
        Outcome::Done(t) => f(t),
        Outcome::Need { need } => Outcome::Need { need },
    }
}

fn ok<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| fail(&Failure::from_parts("INTERNAL", e.to_string())))
}

fn fail(f: &Failure) -> String {
    serde_json::json!({ "error": f }).to_string()
}

fn answer<T: Serialize>(result: Result<T, Failure>) -> String {
    match result {
        Ok(v) => ok(&v),
        Err(f) => fail(&f),
    }
}

fn parse<'a, T: serde::Deserialize<'a>>(what: &str, text: &'a str) -> Result<T, Failure> {
    serde_json::from_str(text).map_err(|e| Failure::from_parts("INVALID_REQUEST", format!("{what}: {e}")))
}

fn key(id: &str, branch: &str) -> Result<(DocumentId, Branch), Failure> {
    let id: DocumentId = id
        .parse()
        .map_err(|_| Failure::from_parts("INVALID_REQUEST", format!("{id:?} is not a document id")))?;
    let branch = if branch.is_empty() {
        Branch::default()
    } else {
        Branch::new(branch).map_err(|e| Failure::from_parts("INVALID_REQUEST", e.to_string()))?
    };
    Ok((id, branch))
}

#[cfg(target_arch = "wasm32")]
fn physical_now() -> u64 {
    js_sys::Date::now() as u64
}

#[cfg(not(target_arch = "wasm32"))]
fn physical_now() -> u64 {
    folio_core::clock::system_millis()
}

/// A replica's core, for JavaScript.
#[wasm_bindgen]
pub struct ReplicaCore {
    core: Core,
    /// What [`ReplicaCore::prepare`] read, until [`ReplicaCore::integrate_prepared`] integrates it.
    prepared: Option<Result<Prepared, Failure>>,
}

/// Sync entries read once: the entries, the page they came in, their signatures' checks.
type Prepared = (Vec<SyncEntry>, Page, folio_core::signature::HostChecks);

#[wasm_bindgen]
impl ReplicaCore {
    /// The core of replica `replica`, on the host's clock (`Date.now()`), ids seeded with `seed` (random from the
    /// host: `crypto.getRandomValues`).
    #[wasm_bindgen(constructor)]
    pub fn new(replica: &str, seed_hi: u32, seed_lo: u32) -> ReplicaCore {
        let seed = (u64::from(seed_hi) << 32) | u64::from(seed_lo);
        ReplicaCore {
            core: Core::new(replica, Box::new(physical_now), seed),
            prepared: None,
        }
    }

    /// The replica id.
    pub fn replica(&self) -> String {
        self.core.replica().to_owned()
    }

    /// A new UUID v7.
    #[wasm_bindgen(js_name = newId)]
    pub fn new_id(&mut self) -> String {
        self.core.new_id().to_string()
    }

    /// Takes in a clock seen elsewhere (`millis`, `counter`).
    pub fn observe(&self, millis: f64, counter: u32) {
        self.core.observe(millis as u64, counter);
    }

    /// Whether a document is in memory.
    #[wasm_bindgen(js_name = isLoaded)]
    pub fn is_loaded(&self, id: &str, branch: &str) -> bool {
        key(id, branch).is_ok_and(|(id, branch)| self.core.is_loaded(id, &branch))
    }

    /// Forgets a document.
    pub fn unload(&mut self, id: &str, branch: &str) {
        if let Ok((id, branch)) = key(id, branch) {
            self.core.unload(id, &branch);
        }
    }

    /// Loads a document (`LoadInput` JSON): `{"loaded": true}`, `{"need": [{documentId, before}]}` or an error.
    pub fn load(&mut self, input: &str) -> String {
        answer(parse::<LoadInput>("load input", input).and_then(|input| {
            let id = input.id;
            self.core.load(input).map(|r| match r {
                Ok(()) => serde_json::json!({ "loaded": true }),
                Err(need) => serde_json::json!({ "need": [need], "documentId": id }),
            })
        }))
    }

    /// The document's wire JSON (`{header, state, stateHash}`), `null` when not created.
    pub fn document(&self, id: &str, branch: &str) -> String {
        match key(id, branch).and_then(|(id, branch)| self.core.document_json(id, &branch)) {
            Ok(Some(text)) => text,
            Ok(None) => "null".to_owned(),
            Err(f) => fail(&f),
        }
    }

    /// The document's header, `null` when not created.
    pub fn header(&self, id: &str, branch: &str) -> String {
        match key(id, branch).and_then(|(id, branch)| self.core.header_json(id, &branch)) {
            Ok(Some(text)) => text,
            Ok(None) => "null".to_owned(),
            Err(f) => fail(&f),
        }
    }

    /// A keyframe of the global state at the head (`KeyframeData` JSON text), `null` when not created.
    pub fn keyframe(&self, id: &str, branch: &str) -> String {
        answer(key(id, branch).and_then(|(id, branch)| self.core.keyframe(id, &branch)))
    }

    /// The global revision of a loaded document (0 when not loaded).
    #[wasm_bindgen(js_name = globalRevision)]
    pub fn global_revision(&self, id: &str, branch: &str) -> f64 {
        key(id, branch)
            .ok()
            .and_then(|(id, branch)| self.core.revisions(id, &branch))
            .map_or(0.0, |r| r.global as f64)
    }

    /// Creates a document: the `Appended` of its `CREATE_DOCUMENT`. `id` may be empty (made here);
    /// `initial_state` is JSON text or empty.
    pub fn create(&mut self, document_type: &str, name: &str, id: &str, initial_state: &str) -> String {
        answer_texts(
            (|| {
                let id = if id.is_empty() { None } else { Some(key(id, "")?.0) };
                let initial = if initial_state.is_empty() {
                    None
                } else {
                    Some(parse("initial state", initial_state)?)
                };
                self.core.create(document_type, name, id, initial).map(appended_out)
            })(),
            |a| vec![a],
        )
    }

    /// Applies local actions (`[{type, input, scope?}]`, one scope): the `Appended` or the reducer's error.
    pub fn apply(&mut self, id: &str, branch: &str, actions: &str) -> String {
        answer_texts(
            key(id, branch).and_then(|(id, branch)| {
                let actions: Vec<LocalAction> = parse("actions", actions)?;
                self.core.apply(id, &branch, actions).map(appended_out)
            }),
            |a| vec![a],
        )
    }

    /// Integrates sync entries (`[SyncEntry]` JSON text, or a pull answer `{entries, cursor, more}`): the operations
    /// to store (texts after the JSON: see [`with_texts`]), or `{"need": [{documentId, before}]}`: documents to load
    /// (again, from a keyframe at or below `before`) first.
    pub fn integrate(&mut self, entries: &str) -> String {
        answer_texts(
            parse_entries(entries).and_then(|(entries, page)| {
                let count = entries.len();
                self.core
                    .integrate(entries)
                    .map(|o| map_outcome(o, |i| integrated_out(i, count, page)))
            }),
            |o| outcome_appended(o, |i| &i.appended),
        )
    }

    /// Reads sync entries given as UTF-8 bytes (a pull answer or an entry list, as [`ReplicaCore::integrate`] takes)
    /// once, for [`ReplicaCore::integrate_prepared`]: keeps them, and answers what the host verifies, each distinct
    /// signature check once, in [`signature_checks`]'s format. A text that does not parse is kept as its failure
    /// (answered by `integratePrepared`), with no checks.
    pub fn prepare(&mut self, entries: &[u8]) -> Vec<u8> {
        let parsed = std::str::from_utf8(entries)
            .map_err(|e| Failure::from_parts("INVALID_REQUEST", format!("sync entries are not UTF-8: {e}")))
            .and_then(parse_entries);
        let (out, prepared) = match parsed {
            Ok((entries, page)) => {
                let checks = {
                    let actions: Vec<&folio_core::Action> = entries.iter().map(|e| &e.action).collect();
                    folio_core::signature::HostChecks::new(&actions)
                };
                let out = checks_bytes(checks.checks());
                (out, Ok((entries, page, checks)))
            }
            Err(f) => (Vec::new(), Err(f)),
        };
        self.prepared = Some(prepared);
        out
    }

    /// Integrates the entries [`ReplicaCore::prepare`] read, given the host's verdicts on its checks (one byte per
    /// check: 0 not checked, 1 valid, 2 invalid): as [`ReplicaCore::integrate`] answers, a verdict standing only where it must
    /// be the core's own answer (`folio_core::signature::HostChecks::answers`), other checks verified here. The entries stay
    /// prepared while the answer is `need` (the host loads documents and asks again), and are dropped with any other.
    #[wasm_bindgen(js_name = integratePrepared)]
    pub fn integrate_prepared(&mut self, verdicts: &[u8]) -> String {
        let verdicts: Vec<Option<bool>> = verdicts
            .iter()
            .map(|v| match v {
                1 => Some(true),
                2 => Some(false),
                _ => None,
            })
            .collect();
        let result = match self.prepared.take() {
            None => Err(Failure::from_parts(
                "INVALID_REQUEST",
                "nothing is prepared: call prepare first",
            )),
            Some(Err(f)) => Err(f),
            Some(Ok((entries, page, checks))) => {
                let count = entries.len();
                let answers = checks.answers(&verdicts);
                match self.core.integrate_answered(entries.clone(), answers) {
                    Ok(Outcome::Need { need }) => {
                        self.prepared = Some(Ok((entries, page, checks)));
                        Ok(Outcome::Need { need })
                    }
                    other => other.map(|o| map_outcome(o, |i| integrated_out(i, count, page))),
                }
            }
        };
        answer_texts(result, |o| outcome_appended(o, |i| &i.appended))
    }

    /// Compresses own unsent actions (`["<action id>", …]`) of a document's global log.
    pub fn compress(&mut self, id: &str, branch: &str, ids: &str) -> String {
        answer_texts(
            key(id, branch).and_then(|(id, branch)| {
                let ids: Vec<Uuid> = parse("action ids", ids)?;
                self.core
                    .compress(id, &branch, ids)
                    .map(|o| map_outcome(o, compressed_out))
            }),
            |o| outcome_appended(o, |c| &c.appended),
        )
    }
}

#[derive(serde::Deserialize)]
struct PullAnswer {
    entries: Vec<SyncEntry>,
    #[serde(default)]
    cursor: Option<u64>,
    #[serde(default)]
    more: Option<bool>,
}

/// A pull answer's `cursor` and `more` (none for a bare entry list).
#[derive(Default)]
struct Page {
    cursor: Option<u64>,
    more: Option<bool>,
}

fn parse_entries(text: &str) -> Result<(Vec<SyncEntry>, Page), Failure> {
    if text.trim_start().starts_with('{') {
        let answer = parse::<PullAnswer>("pull answer", text)?;
        Ok((
            answer.entries,
            Page {
                cursor: answer.cursor,
                more: answer.more,
            },
        ))
    } else {
        Ok((parse("sync entries", text)?, Page::default()))
    }
}

/// The units (`{documentId, branch, scope}`) the entries of a pull answer or of an entry list touch, in order of
/// first appearance: the documents the host must load before integrating.
#[wasm_bindgen(js_name = entryUnits)]
pub fn entry_units(entries: &str) -> String {
    /// An entry's unit; its action is skipped, not decoded (`integrate` decodes and checks it).
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct EntryUnit {
        document_id: DocumentId,
        scope: folio_core::Scope,
        branch: Branch,
        #[serde(rename = "action")]
        _action: serde::de::IgnoredAny,
    }
    #[derive(serde::Deserialize)]
    struct UnitsAnswer {
        entries: Vec<EntryUnit>,
    }
    let parsed = if entries.trim_start().starts_with('{') {
        parse::<UnitsAnswer>("pull answer", entries).map(|a| a.entries)
    } else {
        parse::<Vec<EntryUnit>>("sync entries", entries)
    };
    answer(parsed.map(|entries| {
        let mut seen = std::collections::HashSet::new();
        entries
            .iter()
            .filter(|e| seen.insert((e.document_id, e.branch.clone(), e.scope)))
            .map(|e| serde_json::json!({ "documentId": e.document_id, "branch": e.branch, "scope": e.scope }))
            .collect::<Vec<_>>()
    }))
}

/// Folds whole logs (`LoadInput` JSON) into the document's wire JSON, `null` when not created.
#[wasm_bindgen(js_name = foldLogs)]
pub fn fold_logs(input: &str) -> String {
    match parse::<LoadInput>("logs", input).and_then(core::fold_logs) {
        Ok(Some(text)) => text,
        Ok(None) => "null".to_owned(),
        Err(f) => fail(&f),
    }
}

/// The effective operations of a whole log (`[Operation]`) that carry an error: `[{index, actionId, reason,
/// operation}]`.
#[wasm_bindgen]
pub fn conflicts(ops: &str) -> String {
    answer(parse::<Vec<Operation>>("operations", ops).map(|ops| {
        core::conflicts(&ops)
            .into_iter()
            .map(|op| {
                serde_json::json!({
                    "scope": op.action.scope,
                    "index": op.index,
                    "actionId": op.action.id,
                    "reason": op.error,
                    "operation": op,
                })
            })
            .collect::<Vec<_>>()
    }))
}

/// What the host signs for the entries of `entries` (a JSON array of sync entries, this replica's own actions, each
/// with its `replica`): the actions in groups of up to [`folio_core::signature::BATCH_LEAVES`], each group one
/// signature ([`folio_core::signature::batch_plan`]). For each group in order: little-endian `u32` count of entries,
/// `u32` message length and the message. Empty when the text does not parse.
#[wasm_bindgen(js_name = signingBatch)]
pub fn signing_batch(entries: &str) -> Vec<u8> {
    let Ok(entries) = parse::<Vec<core::SyncEntry>>("sync entries", entries) else {
        return Vec::new();
    };
    let actions: Vec<&folio_core::Action> = entries.iter().map(|e| &e.action).collect();
    let mut out = Vec::new();
    for group in folio_core::signature::batch_plan(&actions) {
        out.extend_from_slice(&(group.len as u32).to_le_bytes());
        out.extend_from_slice(&(group.message().len() as u32).to_le_bytes());
        out.extend_from_slice(group.message());
    }
    out
}

/// The entries of `entries` (as [`signing_batch`] took them) with their actions' `signer` and `signature` set, one
/// entry text a line, given the host's Ed25519 signature (64 bytes each, in order) of every message
/// [`signing_batch`] gave; or a failure (`{"error": …}`).
#[wasm_bindgen(js_name = signedEntries)]
pub fn signed_entries(entries: &str, signer: &str, signatures: &[u8]) -> String {
    let result = (|| {
        let mut entries: Vec<core::SyncEntry> = parse("sync entries", entries)?;
        let plan = {
            let actions: Vec<&folio_core::Action> = entries.iter().map(|e| &e.action).collect();
            folio_core::signature::batch_plan(&actions)
        };
        if signatures.len() != 64 * plan.len() {
            return Err(Failure::from_parts(
                "INVALID_REQUEST",
                format!("{} bytes of signatures for {} messages", signatures.len(), plan.len()),
            ));
        }
        let mut lines = String::new();
        let mut rest = entries.as_mut_slice();
        for (group, signature) in plan.iter().zip(signatures.chunks_exact(64)) {
            let signature: [u8; 64] = signature.try_into().unwrap_or([0; 64]);
            let (these, after) = rest.split_at_mut(group.len);
            for (i, e) in these.iter_mut().enumerate() {
                e.action.signer = Some(signer.to_owned());
                e.action.signature = Some(group.signature_text(&signature, i));
                // The host's own key signed these messages just now: the form is checked (the key derives the
                // replica id, the proof reads), not the curve equation, which would cost ~0.3 ms of WebAssembly per
                // group at every signing. The host checks its key once (identity.ts), and every receiver verifies.
                folio_core::signature::check_form(&e.action)
                    .map_err(|err| Failure::from_parts(err.code(), err.to_string()))?;
                if !lines.is_empty() {
                    lines.push('\n');
                }
                lines.push_str(
                    &serde_json::to_string(e).map_err(|err| Failure::from_parts("INVALID_REQUEST", err.to_string()))?,
                );
            }
            rest = after;
        }
        Ok(lines)
    })();
    result.unwrap_or_else(|f| fail(&f))
}

/// What the host verifies for the signed entries of `entries` (a pull answer or an entry list, as
/// [`ReplicaCore::integrate`] takes), each distinct check once (the actions of a batch signature share one): for
/// each, little-endian `u32` count of entries it decides and their `u32` indexes, the 32-byte key, the 64-byte
/// signature, `u32` message length and the message (`folio_core::signature::host_check`). Empty when nothing is
/// signed or the text does not parse (`integrate` then answers the parse error itself).
#[wasm_bindgen(js_name = signatureChecks)]
pub fn signature_checks(entries: &str) -> Vec<u8> {
    let Ok((entries, _)) = parse_entries(entries) else {
        return Vec::new();
    };
    let actions: Vec<&folio_core::Action> = entries.iter().map(|e| &e.action).collect();
    checks_bytes(folio_core::signature::HostChecks::new(&actions).checks())
}

/// [`signature_checks`]'s format of a list of checks.
fn checks_bytes(checks: &[(folio_core::signature::HostCheck, Vec<u32>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (check, indexes) in checks {
        out.extend_from_slice(&(indexes.len() as u32).to_le_bytes());
        for i in indexes {
            out.extend_from_slice(&i.to_le_bytes());
        }
        out.extend_from_slice(&check.key);
        out.extend_from_slice(&check.signature);
        out.extend_from_slice(&(check.message.len() as u32).to_le_bytes());
        out.extend_from_slice(&check.message);
    }
    out
}

/// The replica id an Ed25519 public key (32 bytes) derives, or "" for a key of another length.
#[wasm_bindgen(js_name = replicaIdOf)]
pub fn replica_id_of(public_key: &[u8]) -> String {
    <[u8; 32]>::try_from(public_key)
        .map(|k| folio_core::signature::replica_id_of(&k))
        .unwrap_or_default()
}

/// Unpadded base64url of bytes (a key or a signature as the wire carries it).
#[wasm_bindgen(js_name = base64url)]
pub fn base64url(bytes: &[u8]) -> String {
    folio_core::signature::encode(bytes)
}

/// The canonical JSON text of a JSON value (sorted keys, no whitespace).
#[wasm_bindgen(js_name = canonicalJson)]
pub fn canonical_json(value: &str) -> String {
    match parse::<serde_json::Value>("value", value) {
        Ok(v) => String::from_utf8(folio_core::hash::canonical_json(&v)).unwrap_or_default(),
        Err(f) => fail(&f),
    }
}

/// blake3 (hex) of the canonical JSON of a value: the state hash of a `folio/json` state.
#[wasm_bindgen(js_name = valueHash)]
pub fn value_hash(value: &str) -> String {
    match parse::<serde_json::Value>("value", value) {
        Ok(v) => folio_core::hash::value_hash(&v).to_hex(),
        Err(f) => fail(&f),
    }
}

/// Checks a chain of operations (`[Operation]`) from index `first_index` over `prev` (hex, empty: zeros): the last
/// hash, or an error.
#[wasm_bindgen(js_name = checkChain)]
pub fn check_chain(prev: &str, first_index: f64, ops: &str) -> String {
    answer((|| {
        let prev = if prev.is_empty() {
            folio_core::OpHash::ZERO
        } else {
            prev.parse()
                .map_err(|e: folio_core::CoreError| Failure::from_parts("INVALID_REQUEST", e.to_string()))?
        };
        let ops: Vec<Operation> = parse("operations", ops)?;
        folio_core::check_chain(&prev, first_index as u64, &ops)
            .map(|h| h.to_hex())
            .map_err(|e| Failure::from_parts("CORRUPT_RECORD", e.to_string()))
    })())
}

/// The answer of an integration or compression, for tests: whether it asks for wider windows.
pub fn needs<T>(outcome: &Outcome<T>) -> bool {
    matches!(outcome, Outcome::Need { .. })
}
