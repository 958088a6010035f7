//! `GET /v1/jobs/{jobId}`.

use axum::Json;
use axum::extract::State;

use folio_reactor::JobStatus;

use crate::ApiError;
use crate::body::JobIdPath;
use crate::state::AppState;
use crate::wire::{JobState, JobView};

/// A job's status.
pub async fn get(State(state): State<AppState>, JobIdPath(job_id): JobIdPath) -> Result<Json<JobView>, ApiError> {
    let status = state.reactor.job_status(job_id)?;
    Ok(Json(job_view(job_id, &status)))
}

/// The wire shape of a status.
pub fn job_view(job_id: uuid::Uuid, status: &JobStatus) -> JobView {
    let (name, revision, error) = match status {
        JobStatus::Queued => (JobState::Queued, None, None),
        JobStatus::Running => (JobState::Running, None, None),
        JobStatus::Completed { revision } => (JobState::Completed, Some(*revision), None),
        JobStatus::Failed { error } => (JobState::Failed, None, Some(ApiError::from(error.clone()).to_wire())),
    };
    JobView {
        job_id,
        status: name,
        revision,
        error,
    }
}
