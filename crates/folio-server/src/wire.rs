//! Request and response bodies of the API (camelCase JSON, as `spec/http.md` gives them). Each derives
//! `JsonSchema`: the OpenAPI description (`openapi.rs`) is generated from these types and the handlers that use them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use folio_core::{Branch, DocumentHeader, DocumentId, OpHash, Operation, Revisions, Scope};

/// `POST /v1/documents`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(example = serde_json::json!({ "documentType": "folio/todo-list", "name": "Groceries" }))]
pub struct CreateDocument {
    /// The model: one of `GET /v1/document-types` (`folio/todo-list`, `folio/json` are built in).
    pub document_type: String,
    /// An id chosen by the client (a new UUID v7 when omitted).
    #[serde(default)]
    pub id: Option<DocumentId>,
    /// A name, at most 1,000 characters (empty when omitted).
    #[serde(default)]
    #[schemars(length(max = 1000))]
    pub name: Option<String>,
}

/// An action as submitted: `id`, `timestampUtcMs` and `scope` may be omitted (the server fills them).
#[derive(Debug, Deserialize, JsonSchema)]
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
    /// When it was made, milliseconds since the epoch as a decimal string (an integer is accepted too).
    #[serde(default, deserialize_with = "opt_ms::deserialize")]
    #[schemars(with = "Option<MsString>")]
    pub timestamp_utc_ms: Option<u64>,
    /// The logical part of its clock (0 when omitted): for an action signed by its author.
    #[serde(default)]
    pub counter: Option<u32>,
    /// The replica that authored it, for an action signed by its author (who must then sign it): the server's own
    /// when omitted, and the server signs it.
    #[serde(default)]
    pub replica: Option<String>,
    /// The author's causal context, for an action signed by its author (empty when omitted).
    #[serde(default)]
    pub context: Option<folio_core::CausalContext>,
    /// The author's public key (see `Action`); with `signature`, the action is taken exactly as given and its
    /// signature checked: 422 `BAD_SIGNATURE` when it does not verify.
    #[serde(default)]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{43}$"))]
    pub signer: Option<String>,
    /// The author's signature over the action's canonical content, alone or as one of a batch (see `Action`).
    #[serde(default)]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{86,774}$"))]
    pub signature: Option<String>,
}

/// `POST /v1/documents/{id}/actions`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(example = serde_json::json!({
    "actions": [{ "type": "ADD_TODO", "input": { "id": "milk", "title": "Buy milk" } }]
}))]
pub struct SubmitActions {
    /// The actions, all or nothing: at least one, at most the server's limit (1,000 by default), one scope.
    #[schemars(length(min = 1))]
    pub actions: Vec<ActionInput>,
    /// The branch (`main`).
    #[serde(default)]
    pub branch: Option<Branch>,
    /// Compare-and-set on the revision of the actions' scope: 409 `REVISION_MISMATCH` when it moved on.
    #[serde(default)]
    #[schemars(range(max = u64::MAX))]
    pub expected_revision: Option<u64>,
    /// Wait for the job (default true): 200 with the operations; false: 202 with the job's id.
    #[serde(default)]
    pub wait: Option<bool>,
}

/// `GET /v1/documents` query.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only this type.
    #[serde(rename = "type")]
    pub document_type: Option<String>,
    /// Page size: 1 to 1,000 (default 100).
    #[schemars(range(min = 1, max = u64::MAX))]
    pub limit: Option<usize>,
    /// The id the previous page ended with (its `next`).
    pub after: Option<DocumentId>,
}

/// `GET /v1/documents/{id}` query.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetParams {
    /// The branch.
    pub branch: Option<Branch>,
    /// A past global revision: the document as it was then (408 `REVISION_NOT_REACHED` when past its head). With
    /// `minRevision`, read once that is reached.
    #[schemars(range(max = u64::MAX))]
    pub revision: Option<u64>,
    /// Wait (up to 10 s) until the global revision is at least this; 408 `REVISION_NOT_REACHED` otherwise.
    #[schemars(range(max = u64::MAX))]
    pub min_revision: Option<u64>,
}

/// `GET /v1/documents/{id}/operations` query.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperationsParams {
    /// The scope (`global`).
    pub scope: Option<Scope>,
    /// The branch.
    pub branch: Option<Branch>,
    /// The first index (0; the previous page's `next`).
    #[schemars(range(max = u64::MAX))]
    pub from: Option<u64>,
    /// Page size: 1 to 1,000 (default 100).
    #[schemars(range(min = 1, max = u64::MAX))]
    pub limit: Option<usize>,
}

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting in the queue.
    Queued,
    /// Being run by an executor.
    Running,
    /// Committed.
    Completed,
    /// Refused or failed; nothing was stored.
    Failed,
}

/// `GET /v1/jobs/{jobId}`: a job's status.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    /// The job.
    pub job_id: Uuid,
    /// Where it is.
    pub status: JobState,
    /// The revision after the job, once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorObject>,
}

/// The body of every error: `{ "error": { "code", "message", "details" } }`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorObject,
}

/// An error: a stable code, a human sentence and facts.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ErrorObject {
    /// The stable code (`BAD_REQUEST`, `DOCUMENT_NOT_FOUND`, `REVISION_MISMATCH`, …).
    #[schemars(regex(pattern = r"^[A-Z][A-Z_]*$"))]
    pub code: String,
    /// A human sentence.
    pub message: String,
    /// Facts about the error (`actionIndex`, `expected`, `actual`, …); an empty object when there are none.
    pub details: Map<String, Value>,
}

/// A document: its header, its state and the hash of its global state. (The server writes it from
/// `folio_core::Document::to_json_string`; this type gives its shape.)
#[derive(Debug, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code, reason = "a shape for the description; the body is written by folio-core")]
pub struct DocumentBody {
    /// The header.
    pub header: DocumentHeader,
    /// The state.
    pub state: DocumentState,
    /// blake3 of the canonical JSON of the global state, hex.
    pub state_hash: OpHash,
}

/// A document's state in its two stateful scopes.
#[derive(Debug, JsonSchema)]
#[allow(dead_code, reason = "a shape for the description; the body is written by folio-core")]
pub struct DocumentState {
    /// The shared state, in the shape the document's model defines.
    pub global: Value,
    /// This replica's local state (a JSON object).
    pub local: Value,
}

/// `GET /v1/documents`: a page of headers.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DocumentList {
    /// The headers, by id.
    pub documents: Vec<DocumentHeader>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<DocumentId>,
}

/// `GET /v1/documents/{id}/operations`: a page of a sync unit's history.
#[derive(Debug, Serialize, JsonSchema)]
pub struct OperationPage {
    /// The operations, by index.
    pub operations: Vec<Operation>,
    /// Pass as `from` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

/// `POST /v1/documents/{id}/actions` with `wait` (the default): the job completed.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Completed<'a> {
    /// The job.
    pub job_id: Uuid,
    /// Always `completed`.
    pub status: JobState,
    /// The revision of the actions' scope after the job.
    pub revision: u64,
    /// The operations stored.
    pub operations: &'a [Operation],
}

/// `POST /v1/documents/{id}/actions` with `wait: false`: the job is queued.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Queued {
    /// The job, to poll at `/v1/jobs/{jobId}`.
    pub job_id: Uuid,
    /// Always `queued`.
    pub status: JobState,
}

/// `DELETE /v1/documents/{id}`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deleted {
    /// The document.
    pub document_id: DocumentId,
    /// Always true.
    pub deleted: bool,
    /// The job that deleted it; absent when it was already deleted (nothing was written).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<Uuid>,
    /// The document's revisions, when it was already deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<Revisions>,
}

/// `GET /v1/health`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
    /// The server's version.
    pub version: &'static str,
}

/// `GET /v1/ready`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Ready {
    /// Always `ready` (a server that is not answers 503 `NOT_READY` with the reason).
    pub status: &'static str,
}

/// `GET /v1/document-types`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DocumentTypes {
    /// The registered models.
    pub document_types: Vec<DocumentType>,
}

/// A registered model.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DocumentType {
    /// Its name (`folio/todo-list`).
    pub document_type: String,
    /// The action types its reducer takes.
    pub actions: Vec<String>,
}

/// Milliseconds since the epoch: a decimal string (as written) or a non-negative integer.
struct MsString;

impl JsonSchema for MsString {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "MsString".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "anyOf": [
                { "type": "string", "pattern": at_most(u64::MAX) },
                { "type": "integer", "minimum": 0, "maximum": u64::MAX }
            ]
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

/// A regular expression for the decimal strings of at most `n`'s digits (leading zeros allowed) whose value is at
/// most `n`: what the server's parsers take for a `u64` or `u32` written as a string.
pub(crate) fn at_most(n: u64) -> String {
    let digits = n.to_string();
    let k = digits.len();
    let mut alternatives = Vec::new();
    if k > 1 {
        alternatives.push(format!("[0-9]{{1,{}}}", k - 1));
    }
    for (i, d) in digits.bytes().enumerate() {
        let d = d - b'0';
        if d > 0 {
            let rest = k - i - 1;
            let below = if d == 1 {
                "0".to_owned()
            } else {
                format!("[0-{}]", d - 1)
            };
            let tail = match rest {
                0 => String::new(),
                1 => "[0-9]".to_owned(),
                r => format!("[0-9]{{{r}}}"),
            };
            alternatives.push(format!("{}{below}{tail}", &digits[..i]));
        }
    }
    alternatives.push(digits);
    format!("^(?:{})$", alternatives.join("|"))
}

mod opt_ms {
    use std::fmt;

    use serde::de::{self, Deserializer, Visitor};

    /// Milliseconds: a decimal string (as `folio_core::operation::ms_string` reads it), a non-negative integer, or
    /// a whole float (JSON Schema's integers include `5.0`).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        d.deserialize_option(Opt)
    }

    struct Opt;
    struct Ms;

    impl<'de> Visitor<'de> for Opt {
        type Value = Option<u64>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("milliseconds since the epoch as a decimal string, or null")
        }

        fn visit_none<E: de::Error>(self) -> Result<Option<u64>, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Option<u64>, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<u64>, D::Error> {
            d.deserialize_any(Ms).map(Some)
        }
    }

    impl<'de> Visitor<'de> for Ms {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("milliseconds since the epoch as a decimal string")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
            if v.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&v) {
                Ok(v as u64)
            } else {
                Err(E::custom(format!("timestampUtcMs must be whole milliseconds, got {v}")))
            }
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<u64, E> {
            folio_core::operation::ms_string::deserialize(de::value::StrDeserializer::<E>::new(s))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::at_most;

    /// The pattern matches exactly the strings the server parses: checked against `str::parse` on boundaries.
    #[test]
    fn at_most_matches_what_parses() {
        for n in [0u64, 1, 9, 10, 42, 100, 4_294_967_295, u64::MAX] {
            let pattern = at_most(n);
            let k = n.to_string().len();
            let re = |s: &str| matches(&pattern, s);
            let mut samples: Vec<String> = vec![n.to_string(), "0".repeat(k), format!("0{}", "9".repeat(k - 1))];
            if n < u64::MAX {
                samples.push((n + 1).to_string());
            }
            if n > 0 {
                samples.push((n - 1).to_string());
                samples.push(format!("{:0k$}", n / 2));
            }
            samples.push("9".repeat(k));
            samples.push("1".repeat(k + 1));
            samples.push(String::new());
            for s in samples {
                let parses = !s.is_empty() && s.len() <= k && s.parse::<u128>().is_ok_and(|v| v <= u128::from(n));
                assert_eq!(re(&s), parses, "{pattern} on {s:?}");
            }
        }
    }

    /// A tiny matcher for the patterns `at_most` writes: alternatives of literal digits, `[a-b]`, `[0-9]{m}` and
    /// `[0-9]{1,m}` (no regex crate in the tree).
    fn matches(pattern: &str, s: &str) -> bool {
        let body = pattern.strip_prefix("^(?:").and_then(|p| p.strip_suffix(")$")).unwrap();
        body.split('|').any(|alt| matches_alt(alt.as_bytes(), s.as_bytes()))
    }

    fn matches_alt(alt: &[u8], s: &[u8]) -> bool {
        if alt.is_empty() {
            return s.is_empty();
        }
        if alt[0] == b'[' {
            let close = alt.iter().position(|&b| b == b']').unwrap();
            let (lo, hi) = (alt[1], alt[3]);
            let class = |b: u8| (lo..=hi).contains(&b);
            let rest = &alt[close + 1..];
            if rest.first() == Some(&b'{') {
                let end = rest.iter().position(|&b| b == b'}').unwrap();
                let spec = std::str::from_utf8(&rest[1..end]).unwrap();
                let (min, max) = match spec.split_once(',') {
                    Some((a, b)) => (a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()),
                    None => (spec.parse().unwrap(), spec.parse().unwrap()),
                };
                let after = &rest[end + 1..];
                return (min..=max)
                    .any(|n| n <= s.len() && s[..n].iter().all(|&b| class(b)) && matches_alt(after, &s[n..]));
            }
            return !s.is_empty() && class(s[0]) && matches_alt(rest, &s[1..]);
        }
        !s.is_empty() && s[0] == alt[0] && matches_alt(&alt[1..], &s[1..])
    }
}
