//! Identifiers: documents, scopes, branches and the sync unit they form.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::CoreError;

/// The id of a document: a UUID (version 7 when folio makes one, so ids sort by creation time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct DocumentId(pub Uuid);

impl DocumentId {
    /// A new, time-ordered id (UUID v7).
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for DocumentId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for DocumentId {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| CoreError::InvalidId(s.to_owned()))
    }
}

/// Which part of a document an operation belongs to; each scope has its own dense index sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The document's shared state: replicated.
    Global,
    /// Per-replica state (preferences, drafts): never leaves the replica.
    Local,
    /// Header changes (creation, name, deletion): replicated.
    Document,
}

impl Scope {
    /// Every scope, in a fixed order.
    pub const ALL: [Scope; 3] = [Scope::Global, Scope::Local, Scope::Document];

    /// The name used on the wire and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Global => "global",
            Scope::Local => "local",
            Scope::Document => "document",
        }
    }

    /// Whether operations of this scope are replicated to remotes.
    pub fn is_replicated(self) -> bool {
        !matches!(self, Scope::Local)
    }
}

/// A plain string `enum` of the scope names (the derive would make a `oneOf` of documented constants, which code
/// generators turn into less useful types).
impl JsonSchema for Scope {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Scope".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Which part of a document an operation belongs to: `global` (the shared state, \
                replicated), `local` (per replica, never leaves it) or `document` (header changes, replicated).",
            "type": "string",
            "enum": Scope::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "global" => Ok(Scope::Global),
            "local" => Ok(Scope::Local),
            "document" => Ok(Scope::Document),
            other => Err(CoreError::InvalidScope(other.to_owned())),
        }
    }
}

/// A named line of history; `main` unless said otherwise.
///
/// A branch name is 1 to 64 characters of ASCII letters, digits, `.`, `_`, `-` and `/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct Branch(#[schemars(regex(pattern = r"^[A-Za-z0-9._/-]{1,64}$"))] String);

impl Branch {
    /// The default branch.
    pub const MAIN: &'static str = "main";

    /// A validated branch name.
    pub fn new(name: impl Into<String>) -> Result<Self, CoreError> {
        let name = name.into();
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'));
        if valid {
            Ok(Self(name))
        } else {
            Err(CoreError::InvalidBranch(name))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Branch {
    fn default() -> Self {
        Self(Self::MAIN.to_owned())
    }
}

impl<'de> Deserialize<'de> for Branch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Branch::new(s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Branch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Branch {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Branch::new(s)
    }
}

/// The key of one operation log: `(document id, scope, branch)`. Each has its own dense index sequence.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncUnit {
    /// The document.
    pub document_id: DocumentId,
    /// The scope within the document.
    pub scope: Scope,
    /// The branch.
    pub branch: Branch,
}

impl SyncUnit {
    /// The unit of `document_id` in `scope` on `branch`.
    pub fn new(document_id: DocumentId, scope: Scope, branch: Branch) -> Self {
        Self {
            document_id,
            scope,
            branch,
        }
    }

    /// The unit of `document_id` in `scope` on `main`.
    pub fn main(document_id: DocumentId, scope: Scope) -> Self {
        Self::new(document_id, scope, Branch::default())
    }
}

impl fmt::Display for SyncUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.document_id, self.scope, self.branch)
    }
}
