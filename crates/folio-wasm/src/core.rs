//! The replica core: what a replica does between its storage and the network, with no I/O.
//!
//! The host (the browser client, or a test) keeps the logs; the core keeps the documents it was handed folded at
//! their heads, with a *window* of each global log (its operations from a keyframe, or from the start, to the head)
//! and the whole `document` log. From there it applies local actions, integrates other replicas' actions and
//! compresses unsent ones with the same folio-core functions as the Rust replica (`Document::fold`,
//! `merge::plan_merge`, `tail_covers`, `effective`, `Cuts`, `DocumentModel::compress`), and answers with the
//! operations the host must append. When a window does not reach far enough back (a rebase below it), the answer is
//! [`Need`]: the host loads the document again from an earlier keyframe and asks again; nothing changed.
//!
//! Clocks and ids come from the host: the physical clock is a function given at construction, ids are UUID v7
//! made from that clock and a generator seeded by the host (on wasm32 `SystemTime::now` panics and there is no
//! ambient randomness).

use std::collections::{HashMap, HashSet};

use folio_core::merge::{Cuts, MergePlan, effective, effective_mask, fold_merged, plan_merge, tail_covers};
use folio_core::{
    Action, ApplyError, Branch, CausalContext, Document, DocumentId, HybridClock, ModelRegistry, OpHash, Operation,
    Scope, check_chain, order_key,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// A global revision crossing a multiple of this gets a keyframe (the reactor's default).
pub const KEYFRAME_EVERY: u64 = 250;

/// A failure with a stable code: a reducer's (`EMPTY_TITLE`), or the core's own (`DOCUMENT_NOT_FOUND`,
/// `CORRUPT_RECORD`, `INVALID_REQUEST`, `NOT_LOADED`, …).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// Stable code.
    pub code: String,
    /// Human sentence.
    pub message: String,
    /// For a refused local action: its position in the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_index: Option<usize>,
}

impl Failure {
    /// A failure with `code` and `message`.
    pub fn from_parts(code: &str, message: impl Into<String>) -> Self {
        Self::new(code, message)
    }

    fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
            action_index: None,
        }
    }

    fn corrupt(message: impl Into<String>) -> Self {
        Self::new("CORRUPT_RECORD", message)
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new("INVALID_REQUEST", message)
    }
}

/// The window of a document's global log does not reach far enough back: load it again from a keyframe at or before
/// `before` (none: from the start) and ask again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Need {
    /// The document.
    pub document_id: DocumentId,
    /// The highest keyframe revision that will do.
    pub before: u64,
}

/// The state of a global log at a revision, as the host stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyframeData {
    /// The global revision.
    pub revision: u64,
    /// The model's state as JSON text.
    pub state: String,
    /// The hash of the operation at `revision - 1`.
    pub last_hash: OpHash,
    /// What the unit had integrated (the causal context of the next local action).
    #[serde(default)]
    pub seen: CausalContext,
    /// blake3 of `state`.
    pub state_hash: OpHash,
}

/// What the host hands over to load a document: the whole `document` and `local` logs and the global log from
/// `keyframe` (or from the start) to its head.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadInput {
    /// The document.
    pub id: DocumentId,
    /// Its branch.
    #[serde(default)]
    pub branch: Branch,
    /// The `document` log, from index 0.
    #[serde(default)]
    pub document_ops: Vec<Operation>,
    /// A keyframe of the global log, or none (the global operations start at 0).
    #[serde(default)]
    pub keyframe: Option<KeyframeData>,
    /// The global log from the keyframe's revision to the head.
    #[serde(default)]
    pub global_ops: Vec<Operation>,
    /// The `local` log, from index 0.
    #[serde(default)]
    pub local_ops: Vec<Operation>,
}

/// One action of a sync unit as it travels between replicas (folio-sync's `SyncEntry`, the wire shape of
/// `POST /v1/sync/push` and `GET /v1/sync/pull`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncEntry {
    /// The document.
    pub document_id: DocumentId,
    /// The scope (`global` or `document`).
    pub scope: Scope,
    /// The branch.
    pub branch: Branch,
    /// The action.
    pub action: Action,
}

/// A local action as an app gives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalAction {
    /// The action's type.
    #[serde(rename = "type")]
    pub action_type: String,
    /// Its input.
    #[serde(default)]
    pub input: Value,
    /// Its scope (`global` when omitted).
    #[serde(default)]
    pub scope: Option<Scope>,
}

/// Operations appended to one unit.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Appended {
    /// The document.
    pub document_id: DocumentId,
    /// The branch.
    pub branch: Branch,
    /// The scope.
    pub scope: Scope,
    /// The operations, in index order.
    pub operations: Vec<Operation>,
    /// A keyframe to store with them (the global revision crossed a multiple of [`KEYFRAME_EVERY`], or a rebase).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyframe: Option<KeyframeData>,
}

/// An action kept but refused by its reducer in its merged position.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rejected {
    /// The document.
    pub document_id: DocumentId,
    /// The action.
    pub action_id: Uuid,
    /// `CODE: sentence`.
    pub reason: String,
}

/// What an integration did.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Integrated {
    /// Per unit, the operations to append.
    pub appended: Vec<Appended>,
    /// Actions this replica did not have.
    pub new: usize,
    /// Actions it had.
    pub duplicates: usize,
    /// Actions kept but refused in their merged position.
    pub rejected: Vec<Rejected>,
}

/// The answer of an integration or a compression: done, or the windows to widen first (nothing changed).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase", untagged)]
pub enum Outcome<T> {
    /// Done.
    Done(T),
    /// Load these documents from earlier keyframes and ask again.
    Need {
        /// What to load.
        need: Vec<Need>,
    },
}

/// What a compression did.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Compressed {
    /// The operations to append (empty when nothing was compressed).
    pub appended: Vec<Appended>,
    /// The actions that replace the run in the outbox, in order.
    pub actions: Vec<Action>,
    /// Operations saved.
    pub saved: usize,
}

/// A document in memory: folded at its head, with the logs it may need to rewind.
#[derive(Clone)]
struct DocCore {
    doc: Document,
    document_ops: Vec<Operation>,
    local_ops: Vec<Operation>,
    /// The state the global window starts from (`None`: the window starts at 0).
    base: Option<KeyframeData>,
    global_ops: Vec<Operation>,
}

fn skips_of(ops: &[Operation]) -> Cuts {
    Cuts::from_skips(
        ops.iter()
            .filter(|op| op.skip > 0)
            .map(|op| (op.index, op.skip))
            .collect(),
    )
}

impl DocCore {
    fn start(&self) -> u64 {
        self.base.as_ref().map_or(0, |k| k.revision)
    }

    fn head(&self, scope: Scope) -> u64 {
        self.doc.header.revision.get(scope)
    }

    /// The document with its global scope at `global` and its document scope at `document` (heads when `None`),
    /// as the reactor's `DocumentView::hydrate_at` makes it (without the local scope). `Ok(None)`: not created.
    fn hydrate_at(
        &self,
        registry: &ModelRegistry,
        global: Option<u64>,
        document: Option<u64>,
    ) -> Result<Result<Option<Document>, Need>, Failure> {
        let id = self.doc.header.id;
        let mut doc = Document::empty(id, self.doc.header.branch.clone());
        let document_to = document.map_or(self.document_ops.len(), |d| {
            d.min(self.document_ops.len() as u64) as usize
        });
        let dops = &self.document_ops[..document_to];
        let cuts = skips_of(dops);
        for op in dops {
            doc.fold(op, cuts.is_effective(op.index), registry)
                .map_err(|e| Failure::corrupt(format!("{id}/document at {}: {e}", op.index)))?;
        }
        if !doc.is_created() {
            return Ok(Ok(None));
        }
        let start = self.start();
        let head = start + self.global_ops.len() as u64;
        let target = global.unwrap_or(head).min(head);
        if target < start {
            return Ok(Err(Need {
                document_id: id,
                before: target,
            }));
        }
        let gops = &self.global_ops[..(target - start) as usize];
        let cuts = skips_of(gops);
        if let Some(cut) = cuts.min_cut()
            && cut < start
        {
            return Ok(Err(Need {
                document_id: id,
                before: cut,
            }));
        }
        if let (Some(base), Some(model)) = (&self.base, doc.model().cloned()) {
            let state = model
                .state_from_json(&base.state)
                .map_err(|e| Failure::corrupt(format!("keyframe of {id} at {}: {e}", base.revision)))?;
            doc.restore_global(state, base.revision, base.last_hash, base.seen.clone());
        }
        for op in gops {
            doc.fold(op, cuts.is_effective(op.index), registry)
                .map_err(|e| Failure::corrupt(format!("{id}/global at {}: {e}", op.index)))?;
        }
        Ok(Ok(Some(doc)))
    }

    /// The document at every head, the local scope included.
    fn hydrate_head(&self, registry: &ModelRegistry) -> Result<Result<Document, Need>, Failure> {
        let mut doc = match self.hydrate_at(registry, None, None)? {
            Ok(Some(doc)) => doc,
            Ok(None) => {
                let mut doc = Document::empty(self.doc.header.id, self.doc.header.branch.clone());
                // Not created: its global log is empty (nothing is integrated into an uncreated document).
                let cuts = skips_of(&self.document_ops);
                for op in &self.document_ops {
                    doc.fold(op, cuts.is_effective(op.index), registry)
                        .map_err(|e| Failure::corrupt(format!("document log at {}: {e}", op.index)))?;
                }
                doc
            }
            Err(need) => return Ok(Err(need)),
        };
        if doc.is_created() {
            for op in &self.local_ops {
                doc.fold(op, true, registry)
                    .map_err(|e| Failure::corrupt(format!("local log at {}: {e}", op.index)))?;
            }
        }
        Ok(Ok(doc))
    }

    /// The effective tail of `scope`'s log as far as it is in memory, and where that part starts.
    fn tail(&self, scope: Scope) -> (Vec<&Operation>, u64) {
        match scope {
            Scope::Document => (effective(&self.document_ops), 0),
            _ => (effective(&self.global_ops), self.start()),
        }
    }

    fn keyframe(&self) -> Option<KeyframeData> {
        let model = self.doc.model()?;
        let state = model.state_to_string(&self.doc.state);
        Some(KeyframeData {
            revision: self.doc.header.revision.global,
            last_hash: self.doc.head(Scope::Global),
            state_hash: folio_core::hash::bytes_hash(state.as_bytes()),
            state,
            seen: self.doc.seen(Scope::Global).clone(),
        })
    }

    fn push_ops(&mut self, scope: Scope, ops: &[Operation]) {
        match scope {
            Scope::Global => self.global_ops.extend_from_slice(ops),
            Scope::Document => self.document_ops.extend_from_slice(ops),
            Scope::Local => self.local_ops.extend_from_slice(ops),
        }
    }
}

/// A small generator (splitmix64) seeded by the host, for the random bits of UUIDs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// One replica's core: its id, clock, models and the documents the host loaded.
pub struct Core {
    replica: String,
    registry: ModelRegistry,
    clock: HybridClock,
    rng: Rng,
    docs: HashMap<(DocumentId, Branch), DocCore>,
}

type Key = (DocumentId, Branch);

impl Core {
    /// The core of replica `replica` with folio's built-in models, on the physical clock `physical`, drawing the
    /// random part of ids from a generator seeded with `seed`.
    pub fn new(replica: &str, physical: folio_core::clock::PhysicalClock, seed: u64) -> Self {
        Self {
            replica: replica.to_owned(),
            registry: ModelRegistry::with_builtin(),
            clock: HybridClock::with_physical(physical),
            rng: Rng(seed),
            docs: HashMap::new(),
        }
    }

    /// The replica id.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// A new UUID v7 on this replica's clock.
    pub fn new_id(&mut self) -> Uuid {
        let millis = self.clock.now().millis;
        let a = self.rng.next().to_le_bytes();
        let b = self.rng.next().to_le_bytes();
        let mut random = [0u8; 10];
        random[..8].copy_from_slice(&a);
        random[8..].copy_from_slice(&b[..2]);
        uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
    }

    /// Takes in a clock seen elsewhere (another replica's, or this one's before a restart).
    pub fn observe(&self, millis: u64, counter: u32) {
        self.clock.observe(folio_core::HlcTimestamp::new(millis, counter));
    }

    /// Whether the document is in memory.
    pub fn is_loaded(&self, id: DocumentId, branch: &Branch) -> bool {
        self.docs.contains_key(&(id, branch.clone()))
    }

    /// Forgets a document (after its operations could not be stored: the next use loads it again).
    pub fn unload(&mut self, id: DocumentId, branch: &Branch) {
        self.docs.remove(&(id, branch.clone()));
    }

    /// Loads a document from its logs; checks their hash chains. `Err(Need)` when a skip in the global window cuts
    /// below the keyframe (load again from an earlier one).
    pub fn load(&mut self, input: LoadInput) -> Result<Result<(), Need>, Failure> {
        let id = input.id;
        check_chain(&OpHash::ZERO, 0, &input.document_ops)
            .map_err(|e| Failure::corrupt(format!("{id}/document: {e}")))?;
        check_chain(&OpHash::ZERO, 0, &input.local_ops).map_err(|e| Failure::corrupt(format!("{id}/local: {e}")))?;
        let (prev, start) = input
            .keyframe
            .as_ref()
            .map_or((OpHash::ZERO, 0), |k| (k.last_hash, k.revision));
        check_chain(&prev, start, &input.global_ops).map_err(|e| Failure::corrupt(format!("{id}/global: {e}")))?;
        for (ops, scope) in [
            (&input.document_ops, Scope::Document),
            (&input.global_ops, Scope::Global),
            (&input.local_ops, Scope::Local),
        ] {
            if let Some(op) = ops.iter().find(|op| op.action.scope != scope) {
                return Err(Failure::corrupt(format!(
                    "{id}/{scope} at {}: an action of another scope",
                    op.index
                )));
            }
        }
        let mut core = DocCore {
            doc: Document::empty(id, input.branch.clone()),
            document_ops: input.document_ops,
            local_ops: input.local_ops,
            base: input.keyframe,
            global_ops: input.global_ops,
        };
        match core.hydrate_head(&self.registry)? {
            Ok(doc) => core.doc = doc,
            Err(need) => return Ok(Err(need)),
        }
        self.docs.insert((id, input.branch), core);
        Ok(Ok(()))
    }

    fn get(&self, id: DocumentId, branch: &Branch) -> Result<&DocCore, Failure> {
        self.docs
            .get(&(id, branch.clone()))
            .ok_or_else(|| Failure::new("NOT_LOADED", format!("document {id} is not loaded")))
    }

    /// The document in the wire shape (`{ header, state: { global, local }, stateHash }`) as JSON text; `None`
    /// when it is not created.
    pub fn document_json(&self, id: DocumentId, branch: &Branch) -> Result<Option<String>, Failure> {
        let core = self.get(id, branch)?;
        Ok(core.doc.is_created().then(|| core.doc.to_json_string().to_string()))
    }

    /// The document's header, when created.
    pub fn header_json(&self, id: DocumentId, branch: &Branch) -> Result<Option<String>, Failure> {
        let core = self.get(id, branch)?;
        Ok(core
            .doc
            .is_created()
            .then(|| serde_json::to_string(&core.doc.header).unwrap_or_default()))
    }

    /// The document's revisions, when loaded.
    pub fn revisions(&self, id: DocumentId, branch: &Branch) -> Option<folio_core::Revisions> {
        self.docs.get(&(id, branch.clone())).map(|d| d.doc.header.revision)
    }

    /// A keyframe of the document's global state at its head.
    pub fn keyframe(&self, id: DocumentId, branch: &Branch) -> Result<Option<KeyframeData>, Failure> {
        Ok(self.get(id, branch)?.keyframe())
    }

    /// Creates a document: its `CREATE_DOCUMENT` operation (the document is loaded, at revision 1 of its document
    /// scope). `id` is made here when not given.
    pub fn create(
        &mut self,
        document_type: &str,
        name: &str,
        id: Option<DocumentId>,
        initial_state: Option<Value>,
    ) -> Result<Appended, Failure> {
        if self.registry.get(document_type).is_none() {
            return Err(Failure::new(
                "UNKNOWN_DOCUMENT_TYPE",
                format!("no model for document type {document_type:?}"),
            ));
        }
        let id = id.unwrap_or_else(|| DocumentId(self.new_id()));
        let branch = Branch::default();
        if self
            .docs
            .get(&(id, branch.clone()))
            .is_some_and(|d| d.head(Scope::Document) > 0)
        {
            return Err(Failure::new("DOCUMENT_EXISTS", format!("document {id} exists")));
        }
        let mut input = serde_json::json!({ "documentType": document_type, "name": name });
        if let Some(state) = initial_state {
            input["initialState"] = state;
        }
        self.docs.entry((id, branch.clone())).or_insert_with(|| DocCore {
            doc: Document::empty(id, branch.clone()),
            document_ops: Vec::new(),
            local_ops: Vec::new(),
            base: None,
            global_ops: Vec::new(),
        });
        let action = LocalAction {
            action_type: folio_core::document::CREATE_DOCUMENT.to_owned(),
            input,
            scope: Some(Scope::Document),
        };
        let result = self.apply(id, &branch, vec![action]);
        if result.is_err() {
            self.docs.remove(&(id, branch));
        }
        result
    }

    /// Applies local actions (one scope) all or nothing: stamped by this replica (its id, the causal context of
    /// what the unit integrated, a clock after everything in the unit) as the reactor's executor stamps them.
    pub fn apply(&mut self, id: DocumentId, branch: &Branch, actions: Vec<LocalAction>) -> Result<Appended, Failure> {
        let scope = actions
            .first()
            .map_or(Scope::Global, |a| a.scope.unwrap_or(Scope::Global));
        if actions.is_empty() {
            return Err(Failure::invalid("no action to apply"));
        }
        if actions.iter().any(|a| a.scope.unwrap_or(Scope::Global) != scope) {
            return Err(Failure::invalid("the actions of one apply are of one scope"));
        }
        let ids: Vec<Uuid> = actions.iter().map(|_| self.new_id()).collect();
        let key: Key = (id, branch.clone());
        let core = self
            .docs
            .get(&key)
            .ok_or_else(|| Failure::new("DOCUMENT_NOT_FOUND", format!("document {id} not found")))?;
        if scope != Scope::Document && !core.doc.is_created() {
            return Err(Failure::new("DOCUMENT_NOT_FOUND", format!("document {id} not found")));
        }
        if scope == Scope::Global && core.doc.header.deleted {
            return Err(Failure {
                code: "DOCUMENT_DELETED".into(),
                message: "the document is deleted".into(),
                action_index: Some(0),
            });
        }
        let mut doc = core.doc.clone();
        let previous_global = doc.header.revision.global;
        let start = doc.header.revision.get(scope);
        let mut ops = Vec::with_capacity(actions.len());
        for (i, (local, action_id)) in actions.into_iter().zip(ids).enumerate() {
            let now = self.clock.now();
            let action = Action {
                id: action_id,
                action_type: local.action_type,
                input: local.input,
                scope,
                timestamp_utc_ms: now.millis,
                counter: now.counter,
                replica: None,
                context: CausalContext::default(),
                signer: None,
                signature: None,
            };
            let action = doc.stamp(scope, action, &self.replica, &self.clock);
            let op = Operation::new(action, start + i as u64, 0, None, &doc.head(scope));
            if let Err(e) = doc.apply(&op, &self.registry) {
                return Err(apply_failure(e, i));
            }
            ops.push(op);
        }
        let core = self
            .docs
            .get_mut(&key)
            .ok_or_else(|| Failure::invalid("document vanished"))?;
        core.doc = doc;
        core.push_ops(scope, &ops);
        let keyframe = (scope == Scope::Global
            && core.doc.header.revision.global / KEYFRAME_EVERY != previous_global / KEYFRAME_EVERY)
            .then(|| core.keyframe())
            .flatten();
        Ok(Appended {
            document_id: id,
            branch: branch.clone(),
            scope,
            operations: ops,
            keyframe,
        })
    }

    /// Integrates actions of other replicas (pulled, or pushed to this one), one batch per unit in the order of
    /// folio-sync's `batches` (each document's `document` scope first). Every unit is checked first: when a document
    /// is not loaded or its window is too short, nothing changes and the answer lists what to load. On an error the
    /// documents it touched are unloaded (the host's logs did not change).
    ///
    /// An entry whose signature does not verify ([`folio_core::signature::verify`]) is left out, listed in
    /// `rejected` as `BAD_SIGNATURE: …`, as folio-sync's `Replica::integrate` does.
    pub fn integrate(&mut self, entries: Vec<SyncEntry>) -> Result<Outcome<Integrated>, Failure> {
        self.integrate_checked(entries, &[])
    }

    /// [`Core::integrate`] with the host's verdicts on the entries' signatures (`verdicts[i]` for entry `i`, from
    /// verifying [`folio_core::signature::host_check`]'s parts with its own Ed25519: WebCrypto in a browser), taken
    /// where [`folio_core::signature::verify_all_with`] says they must be `verify`'s answer; every other signed
    /// entry is verified here.
    pub fn integrate_checked(
        &mut self,
        entries: Vec<SyncEntry>,
        verdicts: &[Option<bool>],
    ) -> Result<Outcome<Integrated>, Failure> {
        let answers = {
            let actions: Vec<&folio_core::Action> = entries.iter().map(|e| &e.action).collect();
            folio_core::signature::verify_all_with(&actions, verdicts)
        };
        self.integrate_answered(entries, answers)
    }

    /// [`Core::integrate`] given each entry's signature answer (`answers[i]` for entry `i`, exactly
    /// [`folio_core::signature::verify`]'s: from [`folio_core::signature::HostChecks::answers`]).
    pub fn integrate_answered(
        &mut self,
        entries: Vec<SyncEntry>,
        answers: Vec<Result<bool, folio_core::SignatureError>>,
    ) -> Result<Outcome<Integrated>, Failure> {
        let mut refused = Vec::new();
        let entries: Vec<SyncEntry> = entries
            .into_iter()
            .zip(answers)
            .filter_map(|(e, answer)| match answer {
                Ok(_) => Some(e),
                Err(err) => {
                    refused.push(Rejected {
                        document_id: e.document_id,
                        action_id: e.action.id,
                        reason: format!("{}: {err}", err.code()),
                    });
                    None
                }
            })
            .collect();
        let batches = batches(entries);
        for (key, scope, actions) in &batches {
            if *scope == Scope::Local {
                return Err(Failure::invalid(format!("{}: the local scope is never synced", key.0)));
            }
            if let Some(a) = actions.iter().find(|a| a.scope != *scope) {
                return Err(Failure::invalid(format!(
                    "action {} is not of the scope of its entry",
                    a.id
                )));
            }
        }
        // A document not in memory is loaded whole (a merge looks its ids up in the whole log: see
        // `check_window`), so the host learns what to load from this answer without reading the entries itself.
        let mut need: Vec<Need> = Vec::new();
        for (key, _, _) in &batches {
            if !self.docs.contains_key(key) && !need.iter().any(|x| x.document_id == key.0) {
                need.push(Need {
                    document_id: key.0,
                    before: 0,
                });
            }
        }
        if !need.is_empty() {
            return Ok(Outcome::Need { need });
        }
        for (key, scope, actions) in &batches {
            if let Some(n) = self.check_window(key, *scope, actions)?
                && !need.iter().any(|x| x.document_id == n.document_id)
            {
                need.push(n);
            }
        }
        if !need.is_empty() {
            return Ok(Outcome::Need { need });
        }
        let mut out = Integrated {
            rejected: refused,
            ..Integrated::default()
        };
        let touched: Vec<Key> = batches.iter().map(|(k, _, _)| k.clone()).collect();
        for (key, scope, actions) in batches {
            match self.merge(&key, scope, MergeKind::Integrate(actions)) {
                Ok(Ok((appended, report))) => {
                    out.new += report.new;
                    out.duplicates += report.duplicates;
                    out.rejected.extend(report.rejected);
                    if let Some(appended) = appended {
                        out.appended.push(appended);
                    }
                }
                // Checked above; a window cannot shrink in between.
                Ok(Err(n)) => {
                    for k in &touched {
                        self.docs.remove(k);
                    }
                    return Ok(Outcome::Need { need: vec![n] });
                }
                Err(e) => {
                    for k in &touched {
                        self.docs.remove(k);
                    }
                    return Err(e);
                }
            }
        }
        Ok(Outcome::Done(out))
    }

    /// Compresses this replica's own unsent actions `ids` of a document's global log when they are the end of its
    /// effective history and its model knows how (the reactor's compression).
    pub fn compress(
        &mut self,
        id: DocumentId,
        branch: &Branch,
        ids: Vec<Uuid>,
    ) -> Result<Outcome<Compressed>, Failure> {
        let key = (id, branch.clone());
        self.get(id, branch)?;
        match self.merge(&key, Scope::Global, MergeKind::Compress(ids))? {
            Err(need) => Ok(Outcome::Need { need: vec![need] }),
            Ok((None, _)) => Ok(Outcome::Done(Compressed::default())),
            Ok((Some(appended), report)) => Ok(Outcome::Done(Compressed {
                actions: appended.operations.iter().map(|op| op.action.clone()).collect(),
                saved: report.replaced.saturating_sub(appended.operations.len()),
                appended: vec![appended],
            })),
        }
    }

    /// Whether the window of `key`'s `scope` covers the integration of `actions` (and the rebase it may take).
    fn check_window(&self, key: &Key, scope: Scope, actions: &[Action]) -> Result<Option<Need>, Failure> {
        let core = self.get(key.0, &key.1)?;
        let Some(min) = actions.iter().min_by(|a, b| order_key(a).cmp(&order_key(b))) else {
            return Ok(None);
        };
        let (tail, from) = core.tail(scope);
        if from > 0 {
            // A merge looks up the ids it appends in the whole log (an id reused with other content is refused
            // where it comes second in the total order, as the executor's `taken_ids`): the window must start at 0.
            return Ok(Some(Need {
                document_id: key.0,
                before: 0,
            }));
        }
        if !tail_covers(&tail, from, min) {
            return Ok(Some(Need {
                document_id: key.0,
                before: from.saturating_sub(1),
            }));
        }
        // A window from 0 without a keyframe folds any revision (the merge's rebase will): only a window that starts
        // later must show that its rebase stays inside it.
        if scope == Scope::Global
            && core.base.is_some()
            && let MergePlan::Rebase { base_revision, .. } = plan_merge(&tail, actions.to_vec())
            && let Err(need) = core.hydrate_at(&self.registry, Some(base_revision), None)?
        {
            return Ok(Some(need));
        }
        Ok(None)
    }

    /// The executor's `merge`: plans and folds an integration or a compression on a copy of the document; on
    /// success the copy and the operations replace the document's.
    fn merge(
        &mut self,
        key: &Key,
        scope: Scope,
        kind: MergeKind,
    ) -> Result<Result<(Option<Appended>, Report), Need>, Failure> {
        let registry = &self.registry;
        let core = self
            .docs
            .get(key)
            .ok_or_else(|| Failure::new("NOT_LOADED", format!("document {} is not loaded", key.0)))?;
        let head = core.head(scope);
        let mut report = Report::default();
        if scope == Scope::Global && core.start() > 0 {
            return Ok(Err(Need {
                document_id: key.0,
                before: 0,
            }));
        }
        let plan = {
            let (tail, from) = core.tail(scope);
            match kind {
                MergeKind::Integrate(actions) => {
                    let Some(min) = actions.iter().min_by(|a, b| order_key(a).cmp(&order_key(b))) else {
                        return Ok(Ok((None, report)));
                    };
                    if !tail_covers(&tail, from, min) {
                        return Ok(Err(Need {
                            document_id: key.0,
                            before: from.saturating_sub(1),
                        }));
                    }
                    let incoming = actions.len();
                    let plan = plan_merge(&tail, actions);
                    let new = match &plan {
                        MergePlan::Nothing => 0,
                        MergePlan::Append(a) => a.len(),
                        MergePlan::Rebase { actions: a, cut, .. } => {
                            let kept = tail.partition_point(|op| op.index < *cut);
                            a.len() - (tail.len() - kept)
                        }
                    };
                    report.new = new;
                    report.duplicates = incoming - new;
                    plan
                }
                MergeKind::Compress(ids) => match plan_compress(core, registry, &tail, &ids)? {
                    Ok(plan) => plan,
                    Err(need) => return Ok(Err(need)),
                },
            }
        };
        let mut doc = core.doc.clone();
        let previous_global = doc.header.revision.global;
        let (actions, skip, rebased) = match plan {
            MergePlan::Nothing => return Ok(Ok((None, report))),
            MergePlan::Append(actions) => (actions, 0, false),
            MergePlan::Rebase {
                base_revision,
                cut,
                actions,
            } => {
                let (global, document) = match scope {
                    Scope::Global => (Some(base_revision), None),
                    _ => (None, Some(base_revision)),
                };
                let base = match core.hydrate_at(registry, global, document)? {
                    Ok(base) => base.unwrap_or_else(|| Document::empty(key.0, key.1.clone())),
                    Err(need) => return Ok(Err(need)),
                };
                doc.rewind(scope, base);
                report.replaced = (head - cut) as usize;
                (actions, head - cut, true)
            }
        };
        // The executor's `taken_ids`: an action id belongs to the first action in the total order that carries
        // it; the ids the effective history holds before the merged run (`fold_merged` adds those of the run).
        let taken: HashSet<Uuid> = {
            let wanted: HashSet<Uuid> = actions.iter().map(|a| a.id).collect();
            let before = head - skip;
            let log = match scope {
                Scope::Document => &core.document_ops,
                _ => &core.global_ops,
            };
            log.iter()
                .zip(effective_mask(log))
                .filter(|(op, e)| *e && op.index < before && wanted.contains(&op.action.id))
                .map(|(op, _)| op.action.id)
                .collect()
        };
        let clock = &self.clock;
        let folded = fold_merged(&mut doc, scope, skip, actions, taken, registry, |a| {
            clock.observe(a.timestamp())
        })
        .map_err(|(index, e)| match e {
            ApplyError::NotCreated => Failure::new("DOCUMENT_NOT_FOUND", format!("document {} not found", key.0)),
            ApplyError::ReducerPanicked(message) => {
                Failure::new("REDUCER_PANICKED", format!("{}/{scope} at {index}: {message}", key.0))
            }
            e => Failure::corrupt(format!("{}/{scope} at {index}: {e}", key.0)),
        })?;
        report.rejected = folded
            .rejected
            .into_iter()
            .map(|(action_id, reason)| Rejected {
                document_id: key.0,
                action_id,
                reason,
            })
            .collect();
        let ops = folded.operations;
        let core = self
            .docs
            .get_mut(key)
            .ok_or_else(|| Failure::invalid("document vanished"))?;
        core.doc = doc;
        core.push_ops(scope, &ops);
        if rebased && scope == Scope::Document {
            // A rebase of the document scope may have replayed the creation: fold the logs again rather than trust
            // the rewound copy (as the executor reloads its working copy).
            match core.hydrate_head(registry)? {
                Ok(doc) => core.doc = doc,
                Err(need) => return Ok(Err(need)),
            }
        }
        let keyframe = (scope == Scope::Global
            && (rebased || core.doc.header.revision.global / KEYFRAME_EVERY != previous_global / KEYFRAME_EVERY))
            .then(|| core.keyframe())
            .flatten();
        Ok(Ok((
            Some(Appended {
                document_id: key.0,
                branch: key.1.clone(),
                scope,
                operations: ops,
                keyframe,
            }),
            report,
        )))
    }
}

enum MergeKind {
    Integrate(Vec<Action>),
    Compress(Vec<Uuid>),
}

#[derive(Default)]
struct Report {
    new: usize,
    duplicates: usize,
    replaced: usize,
    rejected: Vec<Rejected>,
}

/// The executor's `plan_compress`, on the window in memory.
fn plan_compress(
    core: &DocCore,
    registry: &ModelRegistry,
    tail: &[&Operation],
    ids: &[Uuid],
) -> Result<Result<MergePlan, Need>, Failure> {
    let ids: HashSet<Uuid> = ids.iter().copied().collect();
    let start = tail.len().saturating_sub(ids.len());
    let run = &tail[start..];
    if run.len() != ids.len() || run.iter().any(|op| !ids.contains(&op.action.id) || op.error.is_some()) {
        return Ok(Ok(MergePlan::Nothing));
    }
    let Some(first) = run.first() else {
        return Ok(Ok(MergePlan::Nothing));
    };
    if start == 0 && core.start() > 0 {
        // The run may reach below the window: the state before it is not in memory.
        return Ok(Err(Need {
            document_id: core.doc.header.id,
            before: core.start().saturating_sub(1),
        }));
    }
    let base_revision = if start == 0 { 0 } else { tail[start - 1].index + 1 };
    let Some(model) = core.doc.model().cloned() else {
        return Ok(Ok(MergePlan::Nothing));
    };
    let base = match core.hydrate_at(registry, Some(base_revision), None)? {
        Ok(Some(base)) => base,
        Ok(None) => return Ok(Ok(MergePlan::Nothing)),
        Err(need) => return Ok(Err(need)),
    };
    let actions: Vec<Action> = run.iter().map(|op| op.action.clone()).collect();
    // The model's code: a panic leaves the actions as they are (where panics unwind: on wasm32 they abort).
    let compressed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.compress(&base.state, &actions)));
    let Ok(Some(mut compressed)) = compressed else {
        return Ok(Ok(MergePlan::Nothing));
    };
    if compressed.len() >= actions.len() {
        return Ok(Ok(MergePlan::Nothing));
    }
    if compressed.is_empty() {
        let Some(mut noop) = actions.last().cloned() else {
            return Ok(Ok(MergePlan::Nothing));
        };
        noop.action_type = folio_core::document::NOOP.to_owned();
        noop.input = serde_json::json!({});
        compressed.push(noop);
    }
    Ok(Ok(MergePlan::Rebase {
        base_revision,
        cut: first.index,
        actions: compressed,
    }))
}

fn apply_failure(e: ApplyError, action_index: usize) -> Failure {
    let (code, message) = match e {
        ApplyError::NotCreated => (
            "DOCUMENT_NOT_FOUND".to_owned(),
            "the document is not created".to_owned(),
        ),
        ApplyError::UnknownDocumentType(t) => ("UNKNOWN_DOCUMENT_TYPE".to_owned(), format!("no model for {t:?}")),
        ApplyError::Rejected(r) => (r.code, r.message),
        ApplyError::ReducerPanicked(m) => ("REDUCER_PANICKED".to_owned(), m),
        other => ("CORRUPT_RECORD".to_owned(), other.to_string()),
    };
    Failure {
        code,
        message,
        action_index: Some(action_index),
    }
}

/// folio-sync's `batches`: one batch per unit, each document's `document` scope first, the others after, in the
/// order units first appear; within a unit the entries' order.
pub fn batches(entries: Vec<SyncEntry>) -> Vec<(Key, Scope, Vec<Action>)> {
    let mut order: Vec<(u8, usize, Key, Scope)> = Vec::new();
    let mut index: HashMap<(Key, Scope), usize> = HashMap::new();
    let mut actions: Vec<Vec<Action>> = Vec::new();
    for entry in entries {
        let key = (entry.document_id, entry.branch);
        let slot = match index.get(&(key.clone(), entry.scope)) {
            Some(&i) => i,
            None => {
                let i = actions.len();
                index.insert((key.clone(), entry.scope), i);
                let phase = if entry.scope == Scope::Document { 0 } else { 1 };
                order.push((phase, i, key, entry.scope));
                actions.push(Vec::new());
                i
            }
        };
        actions[slot].push(entry.action);
    }
    order.sort_by_key(|(phase, i, _, _)| (*phase, *i));
    order
        .into_iter()
        .map(|(_, i, key, scope)| (key, scope, std::mem::take(&mut actions[i])))
        .collect()
}

/// The operations of a log that are effective (not cut by a later skip) and carry an error: the conflicts of
/// `GET /v1/documents/{id}/conflicts`. `ops` is a whole log.
pub fn conflicts(ops: &[Operation]) -> Vec<&Operation> {
    let mask = effective_mask(ops);
    ops.iter()
        .zip(mask)
        .filter(|(op, e)| *e && op.error.is_some())
        .map(|(op, _)| op)
        .collect()
}

/// Folds whole logs into a document (from index 0 of each scope), the way a Rust replica rehydrates it: the
/// document's wire JSON text, or `None` when it is not created.
pub fn fold_logs(input: LoadInput) -> Result<Option<String>, Failure> {
    let mut core = Core::new("fold", Box::new(|| 0), 0);
    let (id, branch) = (input.id, input.branch.clone());
    match core.load(input)? {
        Ok(()) => core.document_json(id, &branch),
        Err(need) => Err(Failure::corrupt(format!(
            "a skip cuts below the keyframe at {}",
            need.before
        ))),
    }
}
