//! `GET /metrics`: Prometheus text exposition of what the process recorded through the `metrics` facade, behind
//! an admin token, or on its own address without one (`folio serve --metrics-listen`).
//!
//! | metric | kind | what |
//! | --- | --- | --- |
//! | `folio_queue_depth` | gauge | jobs waiting in the reactor's queues (read at scrape time) |
//! | `folio_jobs_total{outcome}` | counter | jobs settled: `completed`, `failed` |
//! | `folio_group_commit_operations` | histogram | operations in one group commit (`append_batch`) |
//! | `folio_group_commit_seconds` | histogram | time of one group commit |
//! | `folio_fsync_seconds` | histogram | SQLite WAL fsyncs |
//! | `folio_cache_hits_total`, `folio_cache_misses_total` | counter | document reads served from the view's cache, or rehydrated |
//! | `folio_cache_bytes` | gauge | bytes the view's cache holds (read at scrape time) |
//! | `folio_websocket_subscribers{endpoint}` | gauge | open WebSockets (`subscribe`, `sync_live`) |
//! | `folio_websocket_lagged_total`, `folio_websocket_missed_events_total` | counter | subscribers that fell behind, and the events they missed |
//! | `folio_sync_pushes_total`, `folio_sync_pulls_total` | counter | sync requests served |
//! | `folio_sync_pushed_entries_total`, `folio_sync_pulled_entries_total` | counter | entries they moved |
//! | `folio_http_requests_total{status}` | counter | requests answered, by status |
//! | `folio_http_request_seconds` | histogram | their latency |
//! | `folio_errors_total{code}` | counter | error answers by stable code |
//! | `folio_tokens_revoked_websockets_total` | counter | WebSockets closed because their token was revoked or expired |

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::state::AppState;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder: installed on first use (once per process: the facade has one global recorder). Returns
/// its handle, which renders what was recorded.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let seconds = [
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ];
            let sizes = [
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_operations".into()), &sizes))
                .expect("bucket lists are not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed: /metrics shows nothing");
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!("folio_queue_depth", "Jobs waiting in the reactor's queues");
    describe_counter!("folio_jobs_total", "Jobs settled, by outcome");
    describe_histogram!("folio_group_commit_operations", "Operations in one group commit");
    describe_histogram!("folio_group_commit_seconds", "Duration of one group commit");
    describe_histogram!(
        "folio_fsync_seconds",
        "Duration of one fsync of SQLite's write-ahead log"
    );
    describe_counter!("folio_cache_hits_total", "Document reads served from the cache");
    describe_counter!(
        "folio_cache_misses_total",
        "Document reads that rehydrated from the store"
    );
    describe_gauge!("folio_cache_bytes", "Bytes held by the document cache");
    describe_gauge!("folio_websocket_subscribers", "Open WebSocket connections");
    describe_counter!(
        "folio_websocket_lagged_total",
        "Times a WebSocket subscriber fell behind"
    );
    describe_counter!(
        "folio_websocket_missed_events_total",
        "Events lagging subscribers missed"
    );
    describe_counter!("folio_sync_pushes_total", "Sync pushes served");
    describe_counter!("folio_sync_pulls_total", "Sync pulls served");
    describe_counter!("folio_sync_pushed_entries_total", "Entries received in pushes");
    describe_counter!("folio_sync_pulled_entries_total", "Entries sent in pulls");
    describe_counter!("folio_http_requests_total", "HTTP requests answered, by status");
    describe_histogram!("folio_http_request_seconds", "HTTP request latency");
    describe_counter!("folio_errors_total", "Error answers, by code");
    describe_counter!(
        "folio_tokens_revoked_websockets_total",
        "WebSockets closed because their token was revoked or expired"
    );
}

/// The Prometheus text exposition.
pub struct MetricsText(String);

impl IntoResponse for MetricsText {
    fn into_response(self) -> Response {
        (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            self.0,
        )
            .into_response()
    }
}

impl aide::operation::OperationOutput for MetricsText {
    type Inner = String;

    fn operation_response(
        _ctx: &mut aide::generate::GenContext,
        _operation: &mut aide::openapi::Operation,
    ) -> Option<aide::openapi::Response> {
        let media = aide::openapi::MediaType {
            schema: Some(aide::openapi::SchemaObject {
                json_schema: schemars::json_schema!({ "type": "string" }),
                external_docs: None,
                example: None,
            }),
            ..Default::default()
        };
        Some(aide::openapi::Response {
            description: "Prometheus text exposition format 0.0.4".into(),
            content: [("text/plain".to_owned(), media)].into_iter().collect(),
            ..Default::default()
        })
    }

    fn inferred_responses(
        ctx: &mut aide::generate::GenContext,
        operation: &mut aide::openapi::Operation,
    ) -> Vec<(Option<aide::openapi::StatusCode>, aide::openapi::Response)> {
        Self::operation_response(ctx, operation)
            .map(|r| (Some(aide::openapi::StatusCode::Code(200)), r))
            .into_iter()
            .collect()
    }
}

/// Renders the metrics, reading the gauges that are cheaper to read now than to keep up to date.
pub fn render(state: &AppState) -> String {
    let handle = install();
    metrics::gauge!("folio_queue_depth").set(state.reactor.queue_depth() as f64);
    metrics::gauge!("folio_cache_bytes").set(state.reactor.view().cached_bytes() as f64);
    handle.run_upkeep();
    handle.render()
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> MetricsText {
    MetricsText(render(&state))
}
