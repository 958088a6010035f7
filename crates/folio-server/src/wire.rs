//! Request and response bodies of the API (camelCase JSON, as `spec/http.md` gives them).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use folio_core::{Branch, DocumentId, Scope};

/// `POST /v1/documents`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateDocument {
    /// The model.
    pub document_type: String,
    /// An id chosen by the client.
    #[serde(default)]
    pub id: Option<DocumentId>,
    /// A name.
    #[serde(default)]
    pub name: Option<String>,
}

/// An action as submitted: `id`, `timestampUtcMs` and `scope` may be omitted (the server fills them).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionInput {
    /// The action's id.
    #[serde(default)]
    pub id: Option<Uuid>,
    /// Its type.
    #[serde(rename = "type")]
    pub action_type: String,
    /// Its input.
    pub input: Value,
    /// Its scope (`global` when omitted).
    #[serde(default)]
    pub scope: Option<Scope>,
    /// When it was made, milliseconds as a decimal string.
    #[serde(default, with = "opt_ms")]
    pub timestamp_utc_ms: Option<u64>,
}

/// `POST /v1/documents/{id}/actions`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubmitActions {
    /// The actions, all or nothing.
    pub actions: Vec<ActionInput>,
    /// The branch (`main`).
    #[serde(default)]
    pub branch: Option<Branch>,
    /// Compare-and-set on the revision of the actions' scope.
    #[serde(default)]
    pub expected_revision: Option<u64>,
    /// Wait for the job (default true).
    #[serde(default)]
    pub wait: Option<bool>,
}

/// `GET /v1/documents` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only this type.
    #[serde(rename = "type")]
    pub document_type: Option<String>,
    /// Page size.
    pub limit: Option<usize>,
    /// The id the previous page ended with.
    pub after: Option<DocumentId>,
}

/// `GET /v1/documents/{id}` query.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetParams {
    /// The branch.
    pub branch: Option<Branch>,
    /// A past global revision.
    pub revision: Option<u64>,
    /// Wait until the global revision is at least this.
    pub min_revision: Option<u64>,
}

/// `GET /v1/documents/{id}/operations` query.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperationsParams {
    /// The scope (`global`).
    pub scope: Option<Scope>,
    /// The branch.
    pub branch: Option<Branch>,
    /// The first index.
    pub from: Option<u64>,
    /// Page size.
    pub limit: Option<usize>,
}

/// A job's status as answered.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    /// The job.
    pub job_id: Uuid,
    /// `queued`, `running`, `completed`, `failed`.
    pub status: &'static str,
    /// The revision after the job, once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}

mod opt_ms {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "folio_core::operation::ms_string")] u64);
        Option::<Wrap>::deserialize(d).map(|o| o.map(|w| w.0))
    }
}
