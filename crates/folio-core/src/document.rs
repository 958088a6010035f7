//! Documents: the header derived from the `document` scope, and a hydrated document folded from its operations.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::causal::CausalContext;
use crate::hash::OpHash;
use crate::ids::{Branch, DocumentId, Scope};
use crate::model::{ErasedModel, ModelRegistry, ModelState, Rejection};
use crate::models::json::apply_json_action;
use crate::operation::{Action, Operation};

/// `document` scope: creates the document. Always index 0 of the document scope.
pub const CREATE_DOCUMENT: &str = "CREATE_DOCUMENT";
/// `document` scope: renames the document.
pub const SET_NAME: &str = "SET_NAME";
/// `document` scope: marks the document deleted (an operation, not an erasure).
pub const DELETE_DOCUMENT: &str = "DELETE_DOCUMENT";
/// `document` scope: replaces the document's grants (and, when the input names one, its owner). See [`SetGrantsInput`].
pub const SET_GRANTS: &str = "SET_GRANTS";
/// Any scope: changes nothing. What remains of a run of unsent actions compressed to nothing (it carries the
/// rebase's skip).
pub const NOOP: &str = "NOOP";

/// Input of [`CREATE_DOCUMENT`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateDocumentInput {
    /// The model.
    pub document_type: String,
    /// The display name.
    #[serde(default)]
    pub name: String,
    /// A global state to start from instead of the model's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_state: Option<Value>,
    /// The principal that owns the document (the creator's). Absent on documents made before owners existed, and
    /// on documents a replica created offline (the server it pushes to records the pusher as owner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// The most grants one document holds.
pub const MAX_GRANTS: usize = 1000;
/// The longest principal name, in characters.
pub const MAX_PRINCIPAL_CHARS: usize = 200;
/// The principal of a grant to everyone who holds a token.
pub const EVERYONE: &str = "*";

/// What a grant allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Read the document, its history, its events; pull it.
    Read,
    /// Also change it (a read-role token still never writes).
    Write,
}

/// A grant: `principal` (or `*`, everyone holding a token) may `access` the document.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// A principal's name (1 to 200 characters, no ASCII control character), or `*` for everyone holding a token.
    #[schemars(length(min = 1, max = 200), regex(pattern = r"^[^\x00-\x1f\x7f]+$"))]
    pub principal: String,
    /// `read` or `write`.
    pub access: Access,
}

/// Input of [`SET_GRANTS`]: the grants that replace the document's, and optionally a new owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetGrantsInput {
    /// The grants, replacing all earlier ones (at most [`MAX_GRANTS`], one per principal). Absent: the grants stay
    /// (an owner change only, such as the owner a server records for a document a replica created offline, which
    /// then commutes with the replica's own grant changes whatever their clocks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grants: Option<Vec<Grant>>,
    /// A new owner (absent: the owner stays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// Why a principal name or a set of grants is refused: a stable code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantsError {
    /// `INVALID_PRINCIPAL`, `TOO_MANY_GRANTS` or `DUPLICATE_GRANT`.
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
}

impl From<GrantsError> for Rejection {
    fn from(e: GrantsError) -> Self {
        Rejection::new(e.code, e.message)
    }
}

/// Checks a principal name: 1 to [`MAX_PRINCIPAL_CHARS`] characters, no ASCII control character, not `*` unless
/// `everyone` allows it (a grant's principal may be `*`, an owner may not).
pub fn check_principal(name: &str, everyone: bool) -> Result<(), GrantsError> {
    let invalid = |why: &str| GrantsError {
        code: "INVALID_PRINCIPAL",
        message: format!("principal {:?}: {why}", name.chars().take(64).collect::<String>()),
    };
    if name.is_empty() {
        return Err(invalid("a principal has at least 1 character"));
    }
    if name.chars().count() > MAX_PRINCIPAL_CHARS {
        return Err(invalid(&format!(
            "a principal has at most {MAX_PRINCIPAL_CHARS} characters"
        )));
    }
    if name.chars().any(|c| c.is_ascii_control()) {
        return Err(invalid("a principal has no ASCII control characters"));
    }
    if name == EVERYONE && !everyone {
        return Err(invalid("`*` means everyone and cannot own a document"));
    }
    Ok(())
}

/// Checks the input of [`SET_GRANTS`]: at most [`MAX_GRANTS`] grants, each principal valid and named once, the
/// owner (when given) a valid principal other than `*`.
pub fn check_grants(input: &SetGrantsInput) -> Result<(), GrantsError> {
    let grants = input.grants.as_deref().unwrap_or_default();
    if grants.len() > MAX_GRANTS {
        return Err(GrantsError {
            code: "TOO_MANY_GRANTS",
            message: format!("{} grants; a document holds at most {MAX_GRANTS}", grants.len()),
        });
    }
    let mut seen = std::collections::HashSet::with_capacity(grants.len());
    for grant in grants {
        check_principal(&grant.principal, true)?;
        if !seen.insert(grant.principal.as_str()) {
            return Err(GrantsError {
                code: "DUPLICATE_GRANT",
                message: format!(
                    "principal {:?} is granted twice; give each principal one grant",
                    grant.principal.chars().take(64).collect::<String>()
                ),
            });
        }
    }
    if let Some(owner) = &input.owner {
        check_principal(owner, false)?;
    }
    Ok(())
}

/// Input of [`SET_NAME`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetNameInput {
    /// The new name.
    pub name: String,
}

/// The number of operations in each scope of a document (the next index of each).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Revisions {
    /// Operations in the `global` scope.
    pub global: u64,
    /// Operations in the `local` scope.
    pub local: u64,
    /// Operations in the `document` scope.
    pub document: u64,
}

impl Revisions {
    /// The revision of `scope`.
    pub fn get(&self, scope: Scope) -> u64 {
        match scope {
            Scope::Global => self.global,
            Scope::Local => self.local,
            Scope::Document => self.document,
        }
    }

    /// Sets the revision of `scope`.
    pub fn set(&mut self, scope: Scope, revision: u64) {
        match scope {
            Scope::Global => self.global = revision,
            Scope::Local => self.local = revision,
            Scope::Document => self.document = revision,
        }
    }
}

/// What identifies and describes a document. Derived from its `document` scope operations, never rewritten.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DocumentHeader {
    /// The document's id.
    pub id: DocumentId,
    /// Its model.
    pub document_type: String,
    /// Its display name.
    pub name: String,
    /// When it was created (RFC 3339, UTC, on the wire).
    pub created_at_utc_iso: UtcIso,
    /// When its latest operation was made (RFC 3339, UTC, on the wire).
    pub last_modified_at_utc_iso: UtcIso,
    /// The branch this header describes.
    pub branch: Branch,
    /// Operations per scope.
    pub revision: Revisions,
    /// Whether a `DELETE_DOCUMENT` was applied.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// The principal that owns the document; absent on documents made before owners existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Who else may read or write it (`SET_GRANTS`); absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<Grant>,
}

/// A time kept as milliseconds since the epoch and written as RFC 3339 UTC with millisecond precision
/// (`2026-11-22T03:06:02.180Z`). Folding an operation only compares numbers; the text is made when it is shown.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UtcIso(pub u64);

impl UtcIso {
    /// The RFC 3339 text.
    pub fn to_iso(self) -> String {
        iso_from_millis(self.0)
    }
}

impl std::fmt::Display for UtcIso {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_iso())
    }
}

impl std::fmt::Debug for UtcIso {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.to_iso())
    }
}

impl PartialEq<str> for UtcIso {
    fn eq(&self, other: &str) -> bool {
        self.to_iso() == other
    }
}

impl PartialEq<&str> for UtcIso {
    fn eq(&self, other: &&str) -> bool {
        self.to_iso() == *other
    }
}

impl PartialEq<String> for UtcIso {
    fn eq(&self, other: &String) -> bool {
        self.to_iso() == *other
    }
}

impl Serialize for UtcIso {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_iso())
    }
}

impl<'de> Deserialize<'de> for UtcIso {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let t = time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
            .map_err(|e| serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time: {e}")))?;
        let ms = t.unix_timestamp_nanos() / 1_000_000;
        u64::try_from(ms)
            .map(UtcIso)
            .map_err(|_| serde::de::Error::custom(format!("{text:?} is before 1970")))
    }
}

impl JsonSchema for UtcIso {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "UtcIso".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "format": "date-time" })
    }

    fn inline_schema() -> bool {
        true
    }
}

/// Formats milliseconds since the epoch as RFC 3339 UTC with millisecond precision.
pub fn iso_from_millis(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.format(&format).unwrap_or_default()
}

/// Why an operation cannot be folded into a document.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The operation's index is not the next in its scope.
    #[error("operation index {found} in scope {scope} does not follow revision {expected}")]
    OutOfOrder {
        /// The scope.
        scope: Scope,
        /// The revision the document is at.
        expected: u64,
        /// The index of the operation.
        found: u64,
    },
    /// The first document-scope operation is not `CREATE_DOCUMENT`, or the document is not created yet.
    #[error("document is not created: the first document operation must be CREATE_DOCUMENT")]
    NotCreated,
    /// The document's type has no model here.
    #[error("no model for document type {0:?}")]
    UnknownDocumentType(String),
    /// The operation carries a `skip`; folding it needs the history before it (see the view's replay).
    #[error("operation {index} skips {skip} operations and needs a replay from an earlier state")]
    NeedsReplay {
        /// Index of the operation.
        index: u64,
        /// Its skip.
        skip: u64,
    },
    /// The reducer refused the action.
    #[error("action rejected: {0}")]
    Rejected(#[from] Rejection),
    /// The reducer panicked (a bug in the model): the action is not applied, and the state it was applied to may be
    /// half changed, so the caller discards it.
    #[error("the reducer panicked: {0}")]
    ReducerPanicked(String),
}

/// The message of a caught panic.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// A document hydrated from its log: header, global state (typed, erased), local state (JSON).
pub struct Document {
    /// The header.
    pub header: DocumentHeader,
    /// The global state, owned by `model`.
    pub state: ModelState,
    /// The local state: a JSON object changed by the `folio/json` actions (`SET`, `MERGE`, …) in the local scope.
    pub local: Value,
    /// The hash of the last operation applied in each scope (global, local, document), which the next operation
    /// of that scope chains over.
    pub heads: [OpHash; 3],
    /// Per scope (global, local, document): the latest clock of each replica's actions folded in, the causal context
    /// of the next action authored here.
    pub seen: [CausalContext; 3],
    model: Option<Arc<dyn ErasedModel>>,
    /// The wire JSON, made on first use and dropped by every change (readers of a cached document share it).
    rendered: std::sync::OnceLock<Rendered>,
}

/// A document's wire JSON and the hash of its global state, made together (the hash is over the same bytes).
#[derive(Clone)]
struct Rendered {
    json: Arc<str>,
    state_hash: OpHash,
}

impl std::fmt::Debug for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Document")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl Clone for Document {
    fn clone(&self) -> Self {
        Self {
            header: self.header.clone(),
            state: match &self.model {
                Some(m) => m.clone_state(&self.state),
                None => Box::new(()),
            },
            local: self.local.clone(),
            heads: self.heads,
            seen: self.seen.clone(),
            model: self.model.clone(),
            rendered: self.rendered.clone(),
        }
    }
}

impl Document {
    /// A document not yet created: apply its `CREATE_DOCUMENT` operation first.
    pub fn empty(id: DocumentId, branch: Branch) -> Self {
        Self {
            header: DocumentHeader {
                id,
                document_type: String::new(),
                name: String::new(),
                created_at_utc_iso: UtcIso::default(),
                last_modified_at_utc_iso: UtcIso::default(),
                branch,
                revision: Revisions::default(),
                deleted: false,
                owner: None,
                grants: Vec::new(),
            },
            state: Box::new(()),
            local: Value::Object(Default::default()),
            heads: [OpHash::ZERO; 3],
            seen: Default::default(),
            model: None,
            rendered: std::sync::OnceLock::new(),
        }
    }

    /// The document's model, once created.
    pub fn model(&self) -> Option<&Arc<dyn ErasedModel>> {
        self.model.as_ref()
    }

    /// Whether the reducers of `scope` know actions of `action_type`: the document scope's own ([`CREATE_DOCUMENT`],
    /// [`SET_NAME`], [`DELETE_DOCUMENT`], [`SET_GRANTS`]), the local scope's `folio/json` actions, the model's in the
    /// global scope, and [`NOOP`] in every scope. What a submit can refuse before queueing a job that could only
    /// fail; true for any type before the document is created (its model is not known yet).
    pub fn knows_action(&self, scope: Scope, action_type: &str) -> bool {
        let Some(model) = &self.model else { return true };
        action_type == NOOP
            || match scope {
                Scope::Document => [CREATE_DOCUMENT, SET_NAME, DELETE_DOCUMENT, SET_GRANTS].contains(&action_type),
                Scope::Local => crate::models::json::JSON_ACTION_TYPES.contains(&action_type),
                Scope::Global => model.action_types().contains(&action_type),
            }
    }

    /// Whether `CREATE_DOCUMENT` has been applied.
    pub fn is_created(&self) -> bool {
        self.model.is_some()
    }

    /// Replaces the global state by a keyframe's: the state at global revision `revision`, whose last operation
    /// has hash `last_hash`.
    pub fn restore_global(&mut self, state: ModelState, revision: u64, last_hash: OpHash, seen: CausalContext) {
        self.touch();
        self.state = state;
        self.header.revision.global = revision;
        self.heads[scope_slot(Scope::Global)] = last_hash;
        self.seen[scope_slot(Scope::Global)] = seen;
    }

    /// The hash the next operation of `scope` chains over.
    pub fn head(&self, scope: Scope) -> OpHash {
        self.heads[scope_slot(scope)]
    }

    /// What this replica has seen in `scope`: the causal context of its next action there.
    pub fn seen(&self, scope: Scope) -> &CausalContext {
        &self.seen[scope_slot(scope)]
    }

    /// Rewinds `scope` for a rebase: its state becomes `base` (the state of the common prefix, from a document
    /// hydrated at that prefix) while its revision, head and seen clocks stay at the log's head, where the merged
    /// operations are appended. For the `document` scope `base` is a document hydrated at the prefix; the header
    /// fields it carries are taken.
    pub fn rewind(&mut self, scope: Scope, base: Document) {
        self.touch();
        match scope {
            Scope::Global => self.state = base.state,
            Scope::Local => self.local = base.local,
            Scope::Document => {
                let revision = self.header.revision;
                let modified = self.header.last_modified_at_utc_iso;
                self.header = base.header;
                self.header.revision = revision;
                self.header.last_modified_at_utc_iso = modified;
                self.model = base.model;
                self.state = base.state;
            }
        }
    }

    /// Folds one operation of a log whose skips the caller has resolved: `effective` says whether it is in the
    /// effective history (see [`crate::merge`]). An effective operation is applied as [`Document::apply`] does (a
    /// skip is allowed: the caller has already rewound the state to the common prefix); one that a later skip cuts
    /// only advances the revision and head. Both are recorded in the seen clocks.
    pub fn fold(&mut self, op: &Operation, effective: bool, registry: &ModelRegistry) -> Result<(), ApplyError> {
        self.touch();
        let scope = op.action.scope;
        let expected = self.header.revision.get(scope);
        if op.index != expected {
            return Err(ApplyError::OutOfOrder {
                scope,
                expected,
                found: op.index,
            });
        }
        if effective && op.error.is_none() {
            self.apply_action(&op.action, registry)?;
        }
        self.advance(op, effective);
        Ok(())
    }

    fn advance(&mut self, op: &Operation, effective: bool) {
        let scope = op.action.scope;
        self.header.revision.set(scope, op.index + 1);
        self.heads[scope_slot(scope)] = op.hash;
        self.seen[scope_slot(scope)].observe_action(&op.action);
        let modified = UtcIso(op.timestamp_utc_ms);
        if effective && modified > self.header.last_modified_at_utc_iso {
            self.header.last_modified_at_utc_iso = modified;
        }
    }

    /// Folds one operation in: checks its index, then applies it to its scope. Operations marked with an `error`
    /// (rejected during a merge) advance the revision and change nothing else.
    ///
    /// On an error the revision and heads are unchanged. The state is unchanged too with the built-in models and
    /// the document scope, whose refusals are all-or-nothing; a third-party reducer may fail after a partial change
    /// (see [`crate::DocumentModel`]), so a caller that keeps the document after an error should apply to a clone.
    pub fn apply(&mut self, op: &Operation, registry: &ModelRegistry) -> Result<(), ApplyError> {
        if op.skip > 0 {
            let expected = self.header.revision.get(op.action.scope);
            if op.index != expected {
                return Err(ApplyError::OutOfOrder {
                    scope: op.action.scope,
                    expected,
                    found: op.index,
                });
            }
            return Err(ApplyError::NeedsReplay {
                index: op.index,
                skip: op.skip,
            });
        }
        self.fold(op, true, registry)
    }

    /// Applies an action's effect without touching revisions (used by [`Document::apply`] and by writers that
    /// check an action before committing it).
    pub fn apply_action(&mut self, action: &Action, registry: &ModelRegistry) -> Result<(), ApplyError> {
        self.touch();
        if action.action_type == NOOP {
            return if self.model.is_some() {
                Ok(())
            } else {
                Err(ApplyError::NotCreated)
            };
        }
        match action.scope {
            Scope::Document => self.apply_document_action(action, registry),
            Scope::Global => {
                // A deleted document refuses new actions where they are submitted (the reactor), not here: folding
                // must not depend on another unit's state, or replicas that learnt of the deletion at different
                // times would fold the same global history differently.
                let model = self.model.as_ref().ok_or(ApplyError::NotCreated)?;
                let state = &mut self.state;
                // A reducer is the application's code: its panic fails this action (the caller discards the state it
                // may have half changed), never the thread that folds it.
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.reduce_action(state, action))) {
                    Ok(result) => Ok(result?),
                    Err(payload) => Err(ApplyError::ReducerPanicked(panic_message(payload.as_ref()))),
                }
            }
            Scope::Local => {
                if self.model.is_none() {
                    return Err(ApplyError::NotCreated);
                }
                apply_json_action(&mut self.local, &action.action_type, &action.input)?;
                Ok(())
            }
        }
    }

    fn apply_document_action(&mut self, action: &Action, registry: &ModelRegistry) -> Result<(), ApplyError> {
        let input = &action.input;
        match action.action_type.as_str() {
            CREATE_DOCUMENT => {
                if self.model.is_some() {
                    return Err(Rejection::new("DOCUMENT_EXISTS", "the document is already created").into());
                }
                let create: CreateDocumentInput = read_input(input)
                    .map_err(|e| Rejection::new("INVALID_INPUT", format!("CREATE_DOCUMENT input: {e}")))?;
                if let Some(owner) = &create.owner {
                    check_principal(owner, false).map_err(Rejection::from)?;
                }
                let model = registry
                    .get(&create.document_type)
                    .ok_or_else(|| ApplyError::UnknownDocumentType(create.document_type.clone()))?
                    .clone();
                self.state = match &create.initial_state {
                    Some(initial) => {
                        let depth = crate::depth::json_depth(initial);
                        if depth > crate::depth::MAX_DEPTH {
                            return Err(crate::depth::too_deep(depth).into());
                        }
                        model.state_from_json(&initial.to_string())?
                    }
                    None => model.initial_state(),
                };
                self.header.document_type = create.document_type;
                self.header.name = create.name;
                self.header.created_at_utc_iso = UtcIso(action.timestamp_utc_ms);
                self.header.owner = create.owner;
                self.model = Some(model);
                Ok(())
            }
            _ if self.model.is_none() => Err(ApplyError::NotCreated),
            SET_NAME => {
                let SetNameInput { name } =
                    read_input(input).map_err(|e| Rejection::new("INVALID_INPUT", format!("SET_NAME input: {e}")))?;
                self.header.name = name;
                Ok(())
            }
            DELETE_DOCUMENT => {
                self.header.deleted = true;
                Ok(())
            }
            SET_GRANTS => {
                let set: SetGrantsInput =
                    read_input(input).map_err(|e| Rejection::new("INVALID_INPUT", format!("SET_GRANTS input: {e}")))?;
                check_grants(&set).map_err(Rejection::from)?;
                if let Some(grants) = set.grants {
                    self.header.grants = grants;
                }
                if set.owner.is_some() {
                    self.header.owner = set.owner;
                }
                Ok(())
            }
            other => {
                Err(Rejection::new("UNKNOWN_ACTION", format!("the document scope has no action {other:?}")).into())
            }
        }
    }

    /// Makes a local action of `scope` this replica's (`me`) before it is applied: its author when it has none, the
    /// causal context of what the unit has integrated, and a clock after everything in the unit (a client's clock
    /// that lags is advanced, from `clock`), so the effective history stays sorted by the total order.
    ///
    /// A signed action is left as it is (changing it would break its signature).
    pub fn stamp(&self, scope: Scope, mut action: Action, me: &str, clock: &crate::clock::HybridClock) -> Action {
        let seen = self.seen(scope);
        if action.is_signed() {
            if let Some(latest) = seen.0.values().max().copied() {
                clock.observe(latest);
            }
            clock.observe(action.timestamp());
            return action;
        }
        if let Some(latest) = seen.0.values().max().copied() {
            clock.observe(latest);
            if action.timestamp() <= latest {
                let now = clock.now();
                action.timestamp_utc_ms = now.millis;
                action.counter = now.counter;
            }
        }
        let author = action.replica.get_or_insert_with(|| me.to_owned()).clone();
        if action.context.is_empty() {
            action.context = seen.without(&author);
        }
        action
    }

    /// blake3 of the global state: equal on every replica for equal histories (local state is left out: it is
    /// per replica by definition).
    pub fn state_hash(&self) -> OpHash {
        self.rendered().state_hash
    }

    /// Drops what was derived from the document (its rendered JSON). `apply` and `restore_global` call it; code that
    /// changes the public fields directly must call it too.
    pub fn touch(&mut self) {
        if self.rendered.get().is_some() {
            self.rendered = std::sync::OnceLock::new();
        }
    }

    fn rendered(&self) -> &Rendered {
        self.rendered.get_or_init(|| {
            let (global, state_hash) = match &self.model {
                Some(m) => {
                    let text = m.state_to_string(&self.state);
                    // Equal to `state_hash` of the typed state: blake3 over the same serialization.
                    let hash = crate::hash::bytes_hash(text.as_bytes());
                    (text, hash)
                }
                None => ("null".to_owned(), OpHash::ZERO),
            };
            let header = serde_json::to_string(&self.header).unwrap_or_else(|_| "null".to_owned());
            let local = self.local.to_string();
            let mut json = String::with_capacity(header.len() + global.len() + local.len() + 128);
            json.push_str("{\"header\":");
            json.push_str(&header);
            json.push_str(",\"state\":{\"global\":");
            json.push_str(&global);
            json.push_str(",\"local\":");
            json.push_str(&local);
            json.push_str("},\"stateHash\":\"");
            json.push_str(&state_hash.to_hex());
            json.push_str("\"}");
            Rendered {
                json: json.into(),
                state_hash,
            }
        })
    }

    /// The document in the wire shape as JSON text, made once per revision and shared by every reader.
    pub fn to_json_string(&self) -> Arc<str> {
        self.rendered().json.clone()
    }

    /// The global state as JSON.
    pub fn global_json(&self) -> Value {
        match &self.model {
            Some(m) => m.state_to_json(&self.state),
            None => Value::Null,
        }
    }

    /// The approximate size of the document in memory, for byte-bounded caches.
    pub fn approximate_size(&self) -> usize {
        let global = self.model.as_ref().map_or(0, |m| m.state_size(&self.state));
        global + self.local.to_string().len() + 256
    }

    /// The document in the wire shape: `{ header, state: { global, local }, stateHash }`.
    pub fn to_json(&self) -> Value {
        json!({
            "header": self.header,
            "state": { "global": self.global_json(), "local": self.local },
            "stateHash": self.state_hash(),
        })
    }
}

/// Reads a `document` scope input, which is always a JSON object (serde's derive alone would also take an array of
/// the fields in order).
fn read_input<'a, T: Deserialize<'a>>(input: &'a Value) -> Result<T, serde_json::Error> {
    if !input.is_object() {
        return Err(serde::de::Error::invalid_type(unexpected(input), &"an object"));
    }
    T::deserialize(input)
}

fn unexpected(v: &Value) -> serde::de::Unexpected<'_> {
    use serde::de::Unexpected;
    match v {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(_) => Unexpected::Other("a number"),
        Value::String(s) => Unexpected::Str(s),
        Value::Array(_) => Unexpected::Seq,
        Value::Object(_) => Unexpected::Map,
    }
}

fn scope_slot(scope: Scope) -> usize {
    match scope {
        Scope::Global => 0,
        Scope::Local => 1,
        Scope::Document => 2,
    }
}

/// Who may read and write a document: its owner and grants, folded from its `document` scope alone (no model, no
/// state), as servers keep it in memory for their access checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessRules {
    /// The owner; `None` for documents made before owners existed.
    pub owner: Option<String>,
    /// The grants.
    pub grants: Vec<Grant>,
    /// Whether a `DELETE_DOCUMENT` was applied.
    pub deleted: bool,
}

impl AccessRules {
    /// Folds one operation of the document's effective `document` scope history, as [`Document::apply`] would
    /// (an operation kept with a refusal, or one whose input it would refuse, changes nothing).
    pub fn fold(&mut self, op: &Operation) {
        if op.action.scope != Scope::Document || op.error.is_some() {
            return;
        }
        let input = &op.action.input;
        match op.action.action_type.as_str() {
            CREATE_DOCUMENT => {
                if let Ok(create) = read_input::<CreateDocumentInput>(input)
                    && create
                        .owner
                        .as_deref()
                        .is_none_or(|o| check_principal(o, false).is_ok())
                {
                    self.owner = create.owner;
                }
            }
            SET_GRANTS => {
                if let Ok(set) = read_input::<SetGrantsInput>(input)
                    && check_grants(&set).is_ok()
                {
                    if let Some(grants) = set.grants {
                        self.grants = grants;
                    }
                    if set.owner.is_some() {
                        self.owner = set.owner;
                    }
                }
            }
            DELETE_DOCUMENT => self.deleted = true,
            _ => {}
        }
    }

    /// Whether the document is open as before owners existed: no owner and no grants.
    pub fn is_open(&self) -> bool {
        self.owner.is_none() && self.grants.is_empty()
    }

    /// The most `principal` may do by owner and grants (an owner writes), `None` when nothing; before roles.
    pub fn access_of(&self, principal: &str) -> Option<Access> {
        if self.owner.as_deref() == Some(principal) {
            return Some(Access::Write);
        }
        self.grants
            .iter()
            .filter(|g| g.principal == principal || g.principal == EVERYONE)
            .map(|g| g.access)
            .max()
    }
}

/// What a `document` scope operation changes in the header index that stores keep for listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderChange {
    /// `CREATE_DOCUMENT`: the document exists, with this type and name.
    Created {
        /// The model.
        document_type: String,
        /// The name.
        name: String,
    },
    /// `SET_NAME`.
    Renamed(String),
    /// `DELETE_DOCUMENT`.
    Deleted,
}

/// The change `op` makes to its document's header, if it is a valid, non-rejected `document` scope operation.
///
/// Inputs are read exactly as [`Document::apply`] reads them, so an input it refuses (a missing, mistyped or unknown
/// field) changes no header index either.
pub fn header_change(op: &Operation) -> Option<HeaderChange> {
    if op.action.scope != Scope::Document || op.error.is_some() {
        return None;
    }
    let input = &op.action.input;
    match op.action.action_type.as_str() {
        CREATE_DOCUMENT => {
            let create: CreateDocumentInput = read_input(input).ok()?;
            Some(HeaderChange::Created {
                document_type: create.document_type,
                name: create.name,
            })
        }
        SET_NAME => read_input(input)
            .ok()
            .map(|SetNameInput { name }| HeaderChange::Renamed(name)),
        DELETE_DOCUMENT => Some(HeaderChange::Deleted),
        _ => None,
    }
}
