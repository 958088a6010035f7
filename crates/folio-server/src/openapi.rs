//! The OpenAPI 3.1 description of the API, generated from the routes and the handlers' own types, and the pages
//! built on it: `GET /v1/openapi.json`, the index page at `/` and the JSON Schemas under `/v1/schemas/{name}`.
//!
//! Every documented route is declared once, in [`build`], with aide's `api_route`: the path and method that axum
//! routes are the ones the description lists, the parameters and bodies come from the extractors' types
//! (`JsonBody<T>`, `QueryParams<T>`, `IdPath`), the success responses from the handlers' return types, all through
//! the same schemars schemas that `schemas/*.schema.json` are made from. What a type cannot say (the error statuses
//! of each endpoint and their codes, the security) is written beside the route. `schemas/openapi.json` is a copy,
//! checked by `tests/openapi.rs`.

use std::sync::Arc;

use aide::axum::routing::{delete_with, get_with, post_with};
use aide::axum::{ApiRouter, IntoApiResponse};
use aide::generate::GenContext;
use aide::openapi::{ApiKeyLocation, Info, Link, LinkOperation, OpenApi, Operation, ReferenceOr, SecurityScheme, Tag};
use aide::operation::OperationOutput;
use aide::transform::TransformOperation;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::PathRejection;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Json, Router};
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde::Deserialize;

use crate::ApiError;
use crate::routes::{documents, grants, jobs, meta, sync, tokens};
use crate::state::AppState;
use crate::ws;

/// The JSON Schemas of `schemas/`, served under `/v1/schemas/{name}` (name without `.schema.json`).
pub const JSON_SCHEMAS: &[(&str, &str)] = &[
    ("action", include_str!("../../../schemas/action.schema.json")),
    ("operation", include_str!("../../../schemas/operation.schema.json")),
    (
        "document-header",
        include_str!("../../../schemas/document-header.schema.json"),
    ),
    (
        "bench-report",
        include_str!("../../../schemas/bench-report.schema.json"),
    ),
];

/// The description, made once per router.
#[derive(Clone)]
pub struct ApiDocs {
    /// The description.
    api: Arc<OpenApi>,
    /// Its JSON, pretty-printed with a final newline (the text of `schemas/openapi.json`).
    json: Arc<str>,
}

/// The description of the API as JSON text (what `GET /v1/openapi.json` answers and `schemas/openapi.json` holds):
/// that of a server with the built-in models and the default limits.
pub fn openapi_json() -> String {
    let facts = Facts::new(
        &crate::state::ServerConfig::new("."),
        &folio_core::ModelRegistry::with_builtin(),
    );
    build(&facts, |routes| routes).1.json.to_string()
}

/// What the description states that the types alone cannot: the registered models and the server's limits.
pub(crate) struct Facts {
    /// The largest push body.
    sync_body_limit: usize,
    /// The most actions one request may carry.
    max_actions: usize,
    /// The registered document types, in registration order.
    document_types: Vec<String>,
    /// Every action type some scope of some registered model takes, sorted.
    action_types: Vec<String>,
}

impl Facts {
    pub(crate) fn new(config: &crate::state::ServerConfig, registry: &folio_core::ModelRegistry) -> Self {
        use folio_core::document::{CREATE_DOCUMENT, DELETE_DOCUMENT, NOOP, SET_GRANTS, SET_NAME};
        let mut action_types: std::collections::BTreeSet<&str> = registry
            .iter()
            .flat_map(|model| model.action_types().iter().copied())
            .collect();
        // The document scope's actions, the local scope's (folio/json's, on every model) and NOOP.
        action_types.extend([CREATE_DOCUMENT, SET_NAME, DELETE_DOCUMENT, SET_GRANTS, NOOP]);
        action_types.extend(folio_core::models::json::JSON_ACTION_TYPES.iter().copied());
        Self {
            sync_body_limit: config.sync_body_limit,
            max_actions: config.max_actions,
            document_types: registry.iter().map(|m| m.document_type().to_owned()).collect(),
            action_types: action_types.into_iter().map(str::to_owned).collect(),
        }
    }
}

/// The documented routes, with `authenticate` applied to those that need a token, and their description.
pub(crate) fn build(
    facts: &Facts,
    authenticate: impl FnOnce(ApiRouter<AppState>) -> ApiRouter<AppState>,
) -> (Router<AppState>, ApiDocs) {
    let sync_body_limit = facts.sync_body_limit;
    aide::generate::infer_responses(true);
    aide::generate::extract_schemas(true);
    // JSON Schema 2020-12, the dialect of OpenAPI 3.1 (aide's default generator writes draft 7), with shared types
    // under components. After `extract_schemas`, which replaces the generator.
    aide::generate::in_context(|ctx| {
        ctx.schema = SchemaSettings::draft2020_12()
            .with(|s| s.definitions_path = "#/components/schemas/".into())
            .into_generator();
    });

    let public = ApiRouter::new()
        .api_route(
            "/",
            get_with(index, |op| {
                op.id("index")
                    .tag("meta")
                    .summary("This page: the endpoints and links to the description and the JSON Schemas")
            }),
        )
        .api_route(
            "/v1/health",
            get_with(meta::health, |op| {
                op.id("health")
                    .tag("meta")
                    .summary("Liveness and version; needs no token")
            }),
        )
        .api_route(
            "/v1/ready",
            get_with(meta::ready, |op| {
                op.id("ready")
                    .tag("meta")
                    .summary("Readiness: the store answers and takes commits; needs no token")
                    .with(|op| {
                        error::<503>(
                            op,
                            "NOT_READY: the store does not answer, refused its last commit, or the server is stopping",
                        )
                    })
            }),
        )
        .api_route(
            "/v1/openapi.json",
            get_with(openapi, |op| {
                op.id("openapi")
                    .tag("meta")
                    .summary("This description (OpenAPI 3.1); needs no token")
            }),
        )
        .api_route(
            "/v1/schemas/{name}",
            get_with(json_schema, |op| {
                op.id("jsonSchema")
                    .tag("meta")
                    .summary("A JSON Schema of a wire type: action, operation, document-header, bench-report")
                    .with(|op| error::<400>(op, "BAD_REQUEST: a malformed path"))
                    .with(|op| error::<404>(op, "NOT_FOUND: no schema of that name"))
            }),
        );

    let documented = ApiRouter::new()
        .api_route(
            "/v1/document-types",
            get_with(meta::document_types, |op| {
                op.id("listDocumentTypes")
                    .tag("meta")
                    .summary("The registered document models and their action types")
                    .with(read)
            }),
        )
        .api_route(
            "/v1/tokens",
            post_with(tokens::create, |op| {
                op.id("createToken")
                    .tag("meta")
                    .summary("Makes a token of a role and shows its secret once (admin tokens only)")
                    .response_with::<201, axum::Json<tokens::CreatedToken>, _>(|r| {
                        r.description("The token, shown this once (the server keeps its hash)")
                    })
                    .with(write)
                    .with(json_body)
                    .with(|op| error::<403>(op, "FORBIDDEN: only an admin token may make tokens"))
                    .with(|op| error::<409>(op, "LABEL_TAKEN: another token has this label"))
            })
            .get_with(tokens::list, |op| {
                op.id("listTokens")
                    .tag("meta")
                    .summary("Every token: id, label, principal, role, times; never a secret (admin tokens only)")
                    .with(admin)
            }),
        )
        .api_route(
            "/v1/tokens/{id}",
            delete_with(tokens::revoke, |op| {
                op.id("revokeToken")
                    .tag("meta")
                    .summary(
                        "Revokes a token: refused from now on (by every server on this data directory within a \
                         second), its open WebSockets closed (admin tokens only)",
                    )
                    .with(write)
                    .with(|op| error::<403>(op, "FORBIDDEN: only an admin token may revoke tokens, and not itself"))
                    .with(|op| error::<404>(op, "TOKEN_NOT_FOUND: no token has this id"))
            }),
        )
        .api_route(
            "/metrics",
            get_with(crate::metrics::metrics, |op| {
                op.id("metrics")
                    .tag("meta")
                    .summary(
                        "Prometheus metrics: queue depth, jobs, group commits, fsyncs, cache, WebSockets, sync, \
                         errors (admin tokens only; `folio serve --metrics-listen` serves them without a token)",
                    )
                    .with(admin)
            }),
        )
        .api_route(
            "/v1/documents",
            post_with(documents::create, |op| {
                op.id("createDocument")
                    .tag("documents")
                    .summary("Create a document")
                    .with(write)
                    .with(json_body)
                    .with(|op| error::<409>(op, "DOCUMENT_EXISTS: a document with this id exists"))
                    .with(|op| error::<422>(op, "UNKNOWN_DOCUMENT_TYPE: no model of this type is registered"))
            })
            .get_with(documents::list, |op| {
                op.id("listDocuments")
                    .tag("documents")
                    .summary(
                        "List the headers of the documents the token may read, by type, paged by id (deleted \
                         documents are left out; a page may be short when many are not readable: follow `next`)",
                    )
                    .with(read)
            }),
        )
        .api_route(
            "/v1/documents/{id}",
            get_with(documents::get, |op| {
                op.id("getDocument")
                    .tag("documents")
                    .summary("A document, optionally at a past global revision or once it reaches a minimum")
                    .with(read)
                    .with(|op| {
                        error::<404>(
                            op,
                            "DOCUMENT_NOT_FOUND: no such document, or it was deleted (`details.deleted`)",
                        )
                    })
                    .with(|op| {
                        error::<408>(
                            op,
                            "REVISION_NOT_REACHED: `minRevision` was not reached in time (10 s), or `revision` is \
                             past the document's head (`details.wanted`, `reached`)",
                        )
                    })
            })
            .delete_with(documents::delete, |op| {
                op.id("deleteDocument")
                    .tag("documents")
                    .summary("Mark a document deleted (an operation: its history stays readable)")
                    .with(write)
                    .with(|op| error::<404>(op, "DOCUMENT_NOT_FOUND: no such document"))
                    .with(|op| error::<409>(op, "RETRIES_EXHAUSTED: other writers kept moving the head"))
            }),
        )
        .api_route(
            "/v1/documents/{id}/actions",
            post_with(documents::actions, |op| {
                op.id("submitActions")
                    .tag("documents")
                    .summary("Apply actions to a document, all or nothing")
                    .with(write)
                    .with(json_body)
                    .with(|op| {
                        error::<404>(
                            op,
                            "DOCUMENT_NOT_FOUND: no such document, or it was deleted (`details.deleted`)",
                        )
                    })
                    .with(|op| {
                        error::<409>(
                            op,
                            "REVISION_MISMATCH: `expectedRevision` is stale (`details.expected`, `actual`); \
                         DUPLICATE_ACTION_ID: an action's id is committed for another action, or repeated in the \
                         request (`details.actionId`; the same actions again are a retry, answered 200 as the \
                         first time); RETRIES_EXHAUSTED: other writers kept moving the head; nothing was stored",
                        )
                    })
                    .with(|op| {
                        error::<422>(
                            op,
                            "ACTION_REJECTED: the model refused an action (`details.actionIndex`, `reason`, \
                         `reasonMessage`; `CLOCK_BEHIND`: a signed action's clock does not come after the unit's \
                         latest); BAD_SIGNATURE: an action's `signer`/`signature` is malformed, not by the key its \
                         `replica` derives from, or not over its content (`details.actionIndex`); \
                         SIGNATURE_REQUIRED: under `--require-signatures`, an action names another replica and \
                         is not signed; nothing was stored",
                        )
                    })
            }),
        )
        .api_route(
            "/v1/documents/{id}/operations",
            get_with(documents::operations, |op| {
                op.id("listOperations")
                    .tag("documents")
                    .summary("A document's history in one scope and branch, paged by index")
                    .with(read)
                    .with(|op| {
                        error::<404>(
                            op,
                            "DOCUMENT_NOT_FOUND: no such document, or it was deleted (`details.deleted`)",
                        )
                    })
            }),
        )
        .api_route(
            "/v1/documents/{id}/grants",
            get_with(grants::get, |op| {
                op.id("getGrants")
                    .tag("documents")
                    .summary("Who may read or write a document: its owner and grants")
                    .with(read)
                    .with(|op| {
                        error::<404>(
                            op,
                            "DOCUMENT_NOT_FOUND: no such document, or the token's principal may not read it",
                        )
                    })
            })
            .put_with(grants::put, |op| {
                op.id("putGrants")
                    .tag("documents")
                    .summary(
                        "Replace a document's grants (its owner with a write token, or an admin token; only an admin \
                         changes the owner); the change is a SET_GRANTS operation in the document scope",
                    )
                    .with(write)
                    .with(json_body)
                    .with(|op| {
                        error::<400>(
                            op,
                            "INVALID_PRINCIPAL: an empty, over 200-character or control-character principal, or `*` \
                             as owner; TOO_MANY_GRANTS: over 1,000 grants; DUPLICATE_GRANT: a principal granted twice",
                        )
                    })
                    .with(|op| {
                        error::<403>(
                            op,
                            "FORBIDDEN: the token may read the document but not manage its grants, or changes its \
                             owner without being an admin",
                        )
                    })
                    .with(|op| {
                        error::<404>(
                            op,
                            "DOCUMENT_NOT_FOUND: no such document, it was deleted, or the token's principal may not \
                             read it",
                        )
                    })
            }),
        )
        .api_route(
            "/v1/jobs/{jobId}",
            get_with(jobs::get, |op| {
                op.id("getJob")
                    .tag("jobs")
                    .summary("A job's status")
                    .with(read)
                    .with(|op| {
                        error::<404>(
                            op,
                            "JOB_NOT_FOUND: no such job (jobs are kept for a while after they end)",
                        )
                    })
            }),
        )
        .api_route(
            "/v1/subscribe",
            get_with(ws::subscribe, |op| {
                op.id("subscribe")
                    .tag("live")
                    .summary("Live events over WebSocket")
                    .description(
                        "A WebSocket handshake. OpenAPI cannot describe the messages that follow: the client sends \
                     `{\"subscribe\": {\"documentIds\"?: [uuid], \"documentTypes\"?: [string]}}` and receives \
                     `{\"event\": \"subscribed\"}`, then `operations`, `deleted` and `lagged` events (see \
                     docs/http.md). The token may be the `token` query parameter instead of the bearer header.",
                    )
                    .with(websocket)
            }),
        )
        .api_route(
            "/v1/documents/{id}/conflicts",
            get_with(sync::conflicts, |op| {
                op.id("listConflicts")
                    .tag("sync")
                    .summary("Actions kept in the document's history but refused by its reducer after a merge")
                    .with(read)
                    .with(|op| {
                        error::<404>(
                            op,
                            "DOCUMENT_NOT_FOUND: no such document, or it was deleted (`details.deleted`)",
                        )
                    })
            }),
        )
        .api_route(
            "/v1/sync/info",
            get_with(sync::info, |op| {
                op.id("syncInfo")
                    .tag("sync")
                    .summary("This server as a sync remote: its replica id and the largest push body it takes")
                    .with(read)
            }),
        )
        .api_route(
            "/v1/sync/push",
            post_with(sync::push, |op| {
                op.id("syncPush")
                    .tag("sync")
                    .summary("Push a replica's actions; answers once every one is durably integrated")
                    .description(
                        "Entries are the pushing replica's own actions, in its commit order. Actions the server \
                             has are counted as duplicates (a retried push is harmless); actions interleaving with \
                             what it has are merged by rebase; an action its reducer refuses in its merged position \
                             is kept, marked and listed in `rejected`. A signed action whose signature does not \
                             verify is listed in `rejected` as `BAD_SIGNATURE: …` (under `--require-signatures` an \
                             unsigned one as `SIGNATURE_REQUIRED: …`) and stored nowhere; the rest of the push goes \
                             on. The body limit is `maxBodyBytes` of \
                             `/v1/sync/info` (64 MiB by default).",
                    )
                    .with(write)
                    .with(json_body)
                    .with(|op| {
                        error::<404>(
                            op,
                            "DOCUMENT_NOT_FOUND: an entry for a document whose `document` scope (its creation) \
                                 was never pushed",
                        )
                    })
            })
            .layer(DefaultBodyLimit::max(sync_body_limit)),
        )
        .api_route(
            "/v1/sync/pull",
            get_with(sync::pull, |op| {
                op.id("syncPull")
                    .tag("sync")
                    .summary("What this server committed after a cursor, in commit order, paged")
                    .with(read)
            }),
        )
        .api_route(
            "/v1/sync/live",
            get_with(sync::live, |op| {
                op.id("syncLive")
                    .tag("sync")
                    .summary("Live sync over WebSocket: pull answers pushed as the server commits")
                    .description(
                        "A WebSocket handshake with the query of `/v1/sync/pull`. The server sends messages \
                             shaped like a pull's answer (`{entries, cursor, more}`): first the catch-up after \
                             `after`, then each commit as it happens. The token may be the `token` query \
                             parameter instead of the bearer header.",
                    )
                    .with(websocket)
            }),
        );

    let mut api = OpenApi {
        openapi: "3.1.0".into(),
        info: Info {
            title: "folio".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            summary: Some("An event-sourced document engine: documents, their operations, jobs and live events".into()),
            description: Some(
                "folio's HTTP API, version 1 (spec/http.md with the additions of docs/http.md). Bodies are JSON, \
                 camelCase, sent as `Content-Type: application/json` (another type is 415). Every error is `{\"error\": {\"code\", \"message\", \"details\"}}` with a stable code; \
                 each operation lists its statuses and codes. Every endpoint but `/`, `/v1/health`, \
                 `/v1/openapi.json` and `/v1/schemas/{name}` needs `Authorization: Bearer <token>`; `read` \
                 tokens may GET, `write` and `admin` tokens may also POST and DELETE; `/v1/tokens` and `/metrics` \
                 are for `admin` tokens only."
                    .into(),
            ),
            ..Info::default()
        },
        ..OpenApi::default()
    };
    let router = public.merge(authenticate(documented)).finish_api_with(&mut api, |t| {
        t.security_scheme(
            "bearer",
            SecurityScheme::Http {
                scheme: "bearer".into(),
                bearer_format: Some("folio token".into()),
                description: Some(
                    "A token from DIR/admin.token or `folio token create --role read|write|admin`.".into(),
                ),
                extensions: Default::default(),
            },
        )
        .security_scheme(
            "token",
            SecurityScheme::ApiKey {
                location: ApiKeyLocation::Query,
                name: "token".into(),
                description: Some(
                    "The token as a query parameter: for WebSocket clients that cannot set headers.".into(),
                ),
                extensions: Default::default(),
            },
        )
        .tag(tag("meta", "The server itself: health, models, this description"))
        .tag(tag("documents", "Documents and their histories"))
        .tag(tag("jobs", "Jobs: a submitted request's progress"))
        .tag(tag("live", "Live events over WebSocket"))
        .tag(tag(
            "sync",
            "Replicas: push, pull, live sync and the conflicts merges leave",
        ))
    });
    add_links(&mut api);
    state_what_types_cannot(&mut api, facts);
    let mut json = serde_json::to_string_pretty(&api).expect("the description serializes");
    json.push('\n');
    let docs = ApiDocs {
        api: Arc::new(api),
        json: json.into(),
    };
    (router.layer(Extension(docs.clone())), docs)
}

/// OpenAPI links: how a response's values feed other operations (clients and stateful fuzzers follow them).
fn add_links(api: &mut OpenApi) {
    let document_id_from_header = "$response.body#/header/id";
    let links: &[(&str, u16, &str, &str, &str)] = &[
        // (from operation, status, to operation, parameter, value)
        ("createDocument", 201, "getDocument", "id", document_id_from_header),
        ("createDocument", 201, "submitActions", "id", document_id_from_header),
        ("createDocument", 201, "listOperations", "id", document_id_from_header),
        ("createDocument", 201, "deleteDocument", "id", document_id_from_header),
        ("submitActions", 200, "getJob", "jobId", "$response.body#/jobId"),
        ("submitActions", 200, "getDocument", "id", "$request.path.id"),
        ("submitActions", 200, "listOperations", "id", "$request.path.id"),
        ("submitActions", 202, "getJob", "jobId", "$response.body#/jobId"),
        (
            "deleteDocument",
            200,
            "listOperations",
            "id",
            "$response.body#/documentId",
        ),
    ];
    let Some(paths) = api.paths.as_mut() else { return };
    for (_, item) in paths.paths.iter_mut() {
        let ReferenceOr::Item(item) = item else { continue };
        let ops = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for op in ops.into_iter().flatten() {
            let Some(id) = op.operation_id.clone() else { continue };
            let Some(responses) = op.responses.as_mut() else {
                continue;
            };
            for (from, status, to, param, value) in links.iter().filter(|l| l.0 == id) {
                let Some(ReferenceOr::Item(response)) =
                    responses.responses.get_mut(&aide::openapi::StatusCode::Code(*status))
                else {
                    panic!("{from} has no {status} response to link from");
                };
                response.links.insert(
                    (*to).to_owned(),
                    ReferenceOr::Item(Link {
                        description: None,
                        operation: LinkOperation::OperationId((*to).to_owned()),
                        request_body: None,
                        parameters: [((*param).to_owned(), serde_json::Value::from(*value))]
                            .into_iter()
                            .collect(),
                        server: None,
                        extensions: Default::default(),
                    }),
                );
            }
        }
    }
}

/// The schema of component `name`, as a JSON object.
fn component<'a>(api: &'a mut OpenApi, name: &str) -> &'a mut serde_json::Map<String, serde_json::Value> {
    api.components
        .as_mut()
        .and_then(|c| c.schemas.get_mut(name))
        .and_then(|s| s.json_schema.as_object_mut())
        .unwrap_or_else(|| panic!("the description has no schema {name}"))
}

/// Property `property` of component `name`.
fn property<'a>(
    api: &'a mut OpenApi,
    name: &str,
    property: &str,
) -> &'a mut serde_json::Map<String, serde_json::Value> {
    component(api, name)
        .get_mut("properties")
        .and_then(|p| p.get_mut(property))
        .and_then(|p| p.as_object_mut())
        .unwrap_or_else(|| panic!("{name} has no property {property}"))
}

/// What the server refuses that the types alone do not say, stated in their schemas so that the description
/// allows exactly what the server accepts: the registered document types and action types as enums, the limits,
/// the replica id's length, and the fields that must agree (one scope per request, an entry's scope and its
/// action's). What no JSON Schema can say (an entry's action is the pushing replica's; a clock at most `--max-clock-skew` ahead
/// of the server's; what a model refuses in a document's state) is said in the descriptions.
fn state_what_types_cannot(api: &mut OpenApi, facts: &Facts) {
    use serde_json::json;
    property(api, "CreateDocument", "documentType").insert("enum".into(), json!(facts.document_types));

    let action_type = property(api, "ActionInput", "type");
    action_type.insert("enum".into(), json!(facts.action_types));
    action_type.insert(
        "description".into(),
        json!(
            "Its type: one of the model's action types (`GET /v1/document-types`), of the local scope's (those of \
             `folio/json`), or of the document scope's (`SET_NAME`, `DELETE_DOCUMENT`, …). Any other is 422 \
             `ACTION_REJECTED`; so is one the document's model does not take."
        ),
    );
    property(api, "ActionInput", "timestampUtcMs").insert(
        "description".into(),
        json!(
            "When it was made, milliseconds since the epoch as a decimal string (an integer is accepted too); at \
             most the server's `--max-clock-skew` (5 minutes by default) ahead of its clock (400 `BAD_REQUEST` otherwise). \
             Kept when later than every \
             operation of the document, advanced otherwise."
        ),
    );
    // One scope a request: all global (or omitted), all local, or all document.
    let actions = property(api, "SubmitActions", "actions");
    actions.insert("maxItems".into(), json!(facts.max_actions));
    actions.insert(
        "anyOf".into(),
        json!([
            { "items": { "properties": { "scope": { "enum": ["global", null] } } } },
            { "items": { "properties": { "scope": { "const": "local" } }, "required": ["scope"] } },
            { "items": { "properties": { "scope": { "const": "document" } }, "required": ["scope"] } }
        ]),
    );
    actions.insert(
        "description".into(),
        json!(format!(
            "The actions, all or nothing: at least one, at most {} (the server's `--max-actions`; more is 413), all \
             of one scope (an omitted scope is `global`).",
            facts.max_actions
        )),
    );

    let replica = property(api, "PushRequest", "replica");
    replica.insert("minLength".into(), json!(1));
    replica.insert("maxLength".into(), json!(64));
    replica.insert(
        "description".into(),
        json!(
            "The pushing replica's id, 1 to 64 characters (not this server's own). Every entry's action carries it \
             as its `replica`."
        ),
    );
    // What folio-core's types read, which their schemas state loosely: a clock's milliseconds are a u64, its counter
    // a u32, a causal context's replica ids 1 to 64 characters.
    property(api, "Action", "timestampUtcMs").insert("pattern".into(), json!(crate::wire::at_most(u64::MAX)));
    property(api, "Action", "counter").insert("maximum".into(), json!(u32::MAX));
    // A submit's action states its counter too (an action signed by its author): a u32 like the action's.
    property(api, "ActionInput", "counter").insert("maximum".into(), json!(u32::MAX));
    let context = component(api, "CausalContext");
    context.insert("propertyNames".into(), json!({ "minLength": 1, "maxLength": 64 }));
    context.insert(
        "additionalProperties".into(),
        json!({
            "type": "string",
            "pattern": format!(
                "^{}\\.{}$",
                crate::wire::at_most(u64::MAX).trim_start_matches('^').trim_end_matches('$'),
                crate::wire::at_most(u32::MAX.into()).trim_start_matches('^').trim_end_matches('$')
            )
        }),
    );
    property(api, "PushRequest", "entries").insert("maxItems".into(), json!(crate::routes::sync::MAX_PUSH_ENTRIES));
    // An entry is of the global or the document scope (the local scope never leaves its replica), and its action is
    // of the same scope.
    let entry = component(api, "SyncEntry");
    entry.insert(
        "anyOf".into(),
        json!(
            ["global", "document"]
                .iter()
                .map(|scope| json!({
                    "properties": {
                        "scope": { "const": scope },
                        "action": { "properties": { "scope": { "const": scope } } }
                    }
                }))
                .collect::<Vec<_>>()
        ),
    );
}

fn tag(name: &str, description: &str) -> Tag {
    Tag {
        name: name.into(),
        description: Some(description.into()),
        ..Tag::default()
    }
}

/// A response of status `N` with the error shape, described by `codes` (`CODE: when`).
fn error<'t, const N: u16>(op: TransformOperation<'t>, codes: &str) -> TransformOperation<'t> {
    op.response_with::<N, ApiError, _>(|r| r.description(codes))
}

/// What every endpoint that needs a token may answer.
fn read(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.security_requirement("bearer")
        .with(|op| {
            error::<400>(
                op,
                "BAD_REQUEST: a malformed body, query parameter or path (a bad UUID), or a request the server \
                 cannot take (the message says why)",
            )
        })
        .with(|op| error::<401>(op, "UNAUTHORIZED: no token, or an unknown one"))
        .with(|op| {
            error::<500>(
                op,
                "INTERNAL: a bug; REDUCER_PANICKED: a model's reducer panicked on an action or on the stored \
                 history; CORRUPT_HISTORY: a document's stored history cannot be folded (the message names the unit \
                 and index). Nothing stored is affected, and everything else is served",
            )
        })
}

/// A WebSocket handshake: [`read`]'s answers, the token also as a query parameter, and the refused handshakes.
fn websocket(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.security_requirement("token")
        .with(read)
        .with(|op| error::<405>(op, "METHOD_NOT_ALLOWED: a handshake is a GET"))
        .with(|op| {
            error::<426>(
                op,
                "UPGRADE_REQUIRED: not a WebSocket handshake (a plain GET: no `Connection: Upgrade` and \
                 `Upgrade: websocket`; answered with those headers), another `Sec-WebSocket-Version` than 13 \
                 (answered with `Sec-WebSocket-Version: 13`), or a connection that cannot be upgraded",
            )
        })
}

/// What every endpoint with a JSON body may answer, besides [`write`]'s.
fn json_body(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.with(|op| {
        error::<415>(
            op,
            "UNSUPPORTED_MEDIA_TYPE: the body is sent with another `Content-Type` than `application/json` \
             (parameters such as `; charset=utf-8` are fine), or none; nothing was done",
        )
    })
}

/// What every endpoint for admin tokens only answers.
fn admin(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.with(read)
        .with(|op| error::<403>(op, "FORBIDDEN: only an admin token may do this"))
}

/// What every endpoint that changes documents may answer, besides [`read`]'s.
fn write(op: TransformOperation<'_>) -> TransformOperation<'_> {
    op.with(read)
        .with(|op| error::<403>(op, "FORBIDDEN: a read token may not write"))
        .with(|op| {
            error::<413>(
                op,
                "PAYLOAD_TOO_LARGE: a body over the limit (1 MiB by default) or more actions than allowed (1,000)",
            )
        })
        .with(|op| error::<429>(op, "OVERLOADED: the queue is full; retry later"))
        .with(|op| error::<503>(op, "SHUTTING_DOWN: the server is stopping and takes no new jobs"))
}

/// A JSON document served as text: the description (`SCHEMA` false) or a JSON Schema (`SCHEMA` true).
pub struct JsonText<const SCHEMA: bool>(Arc<str>);

/// The text of the description.
pub type OpenApiJson = JsonText<false>;

impl<const SCHEMA: bool> IntoResponse for JsonText<SCHEMA> {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], self.0.to_string()).into_response()
    }
}

impl<const SCHEMA: bool> OperationOutput for JsonText<SCHEMA> {
    type Inner = serde_json::Value;

    fn operation_response(ctx: &mut GenContext, operation: &mut Operation) -> Option<aide::openapi::Response> {
        let mut response = Json::<serde_json::Map<String, serde_json::Value>>::operation_response(ctx, operation)?;
        response.description = if SCHEMA {
            "A JSON Schema (draft 2020-12)"
        } else {
            "An OpenAPI 3.1 document"
        }
        .into();
        Some(response)
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        operation: &mut Operation,
    ) -> Vec<(Option<aide::openapi::StatusCode>, aide::openapi::Response)> {
        Self::operation_response(ctx, operation)
            .map(|r| (Some(aide::openapi::StatusCode::Code(200)), r))
            .into_iter()
            .collect()
    }
}

async fn openapi(Extension(docs): Extension<ApiDocs>) -> OpenApiJson {
    JsonText(docs.json)
}

/// `{name}` of `/v1/schemas/{name}`.
#[derive(Deserialize, JsonSchema)]
struct SchemaName {
    /// The schema's name (another name is 404 `NOT_FOUND`).
    #[schemars(schema_with = "schema_names")]
    name: String,
}

/// The names of [`JSON_SCHEMAS`], as an `enum`.
fn schema_names(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "The schema's name (another name is 404 `NOT_FOUND`).",
        "type": "string",
        "enum": JSON_SCHEMAS.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
    })
}

async fn json_schema(name: Result<axum::extract::Path<SchemaName>, PathRejection>) -> Result<JsonText<true>, ApiError> {
    let axum::extract::Path(SchemaName { name }) =
        name.map_err(|e| ApiError::bad_request(format!("bad path: {}", e.body_text())))?;
    let name = name.strip_suffix(".schema.json").unwrap_or(&name);
    JSON_SCHEMAS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| JsonText(Arc::from(*text)))
        .ok_or_else(|| ApiError::not_found("NOT_FOUND", format!("no JSON Schema named {name:?}")))
}

/// The index page: what the server offers, from the description.
async fn index(Extension(docs): Extension<ApiDocs>) -> impl IntoApiResponse {
    Html(index_html(&docs.api))
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// Renders the index page: every operation (method, path, summary, whether it needs a token) and links.
pub fn index_html(api: &OpenApi) -> String {
    let mut rows = String::new();
    for (path, item) in api.paths.iter().flat_map(|p| p.paths.iter()) {
        let ReferenceOr::Item(item) = item else { continue };
        for (method, op) in item.iter() {
            let auth = match (op.security.is_empty(), method) {
                (true, _) => "no token",
                (false, "get") => "a read token",
                (false, _) => "a write token",
            };
            rows.push_str(&format!(
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>\n",
                method.to_uppercase(),
                escape(path),
                escape(op.summary.as_deref().unwrap_or("")),
                auth
            ));
        }
    }
    let schemas: String = JSON_SCHEMAS
        .iter()
        .map(|(name, _)| format!("<li><a href=\"/v1/schemas/{name}\">{name}</a></li>\n"))
        .collect();
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title} {version}</title>\n\
         <style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;\
         line-height:1.4}}table{{border-collapse:collapse}}td,th{{border-bottom:1px solid #ddd;padding:.3rem .6rem;\
         text-align:left}}code{{font-size:.95em}}</style>\n</head>\n<body>\n<h1>{title} {version}</h1>\n<p>{summary}\
         </p>\n<p>{description}</p>\n<p>The whole description: <a href=\"/v1/openapi.json\">/v1/openapi.json</a> \
         (OpenAPI 3.1; load it in any OpenAPI tool to generate a client or try requests).</p>\n<h2>Endpoints</h2>\n\
         <table>\n<tr><th>method</th><th>path</th><th>does</th><th>needs</th></tr>\n{rows}</table>\n\
         <h2>JSON Schemas</h2>\n<ul>\n{schemas}</ul>\n</body>\n</html>\n",
        title = escape(&api.info.title),
        version = escape(&api.info.version),
        summary = escape(api.info.summary.as_deref().unwrap_or("")),
        description = escape(api.info.description.as_deref().unwrap_or("")),
    )
}
