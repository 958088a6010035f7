//! `GET /v1/jobs/{jobId}`.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::json;

use folio_reactor::JobStatus;

use crate::ApiError;
use crate::state::AppState;
use crate::wire::JobView;

/// A job's status.
pub async fn get(State(state): State<AppState>, Path(job_id): Path<String>) -> Result<Json<JobView>, ApiError> {
    let job_id: uuid::Uuid = job_id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{job_id:?} is not a job id (a UUID)")))?;
    let status = state.reactor.job_status(job_id)?;
    Ok(Json(job_view(job_id, &status)))
}

/// The wire shape of a status.
pub fn job_view(job_id: uuid::Uuid, status: &JobStatus) -> JobView {
    let (name, revision, error) = match status {
        JobStatus::Queued => ("queued", None, None),
        JobStatus::Running => ("running", None, None),
        JobStatus::Completed { revision } => ("completed", Some(*revision), None),
        JobStatus::Failed { error } => {
            let api = ApiError::from(error.clone());
            (
                "failed",
                None,
                Some(json!({ "code": api.code, "message": api.message, "details": api.details })),
            )
        }
    };
    JobView {
        job_id,
        status: name,
        revision,
        error,
    }
}
