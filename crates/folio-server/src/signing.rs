//! Signed actions at the submit door (a push's are checked by [`folio_sync::Replica::integrate`]): one check per
//! action, before the job is queued, so a refused action is stored nowhere.

use axum::http::StatusCode;
use serde_json::json;

use folio_core::{Action, CausalContext};

use crate::ApiError;
use crate::state::AppState;

/// Completes a submitted action with the authorship fields its client gave (an action signed by its author
/// carries them all); those omitted keep what the server stamped.
pub(crate) fn author(
    action: &mut Action,
    counter: Option<u32>,
    replica: Option<String>,
    context: Option<CausalContext>,
    signer: Option<String>,
    signature: Option<String>,
) {
    if let Some(counter) = counter {
        action.counter = counter;
    }
    if let Some(replica) = replica {
        action.replica = Some(replica);
    }
    if let Some(context) = context {
        action.context = context;
    }
    action.signer = signer;
    action.signature = signature;
}

/// Refuses action `index` of a submit when its signature is bad (422 `BAD_SIGNATURE`) or, under
/// `--require-signatures`, when it names another replica without a signature (422 `SIGNATURE_REQUIRED`). An
/// unsigned action of the server's own replica passes: the executor signs it with the server's key.
pub(crate) fn check_submitted(state: &AppState, action: &Action, index: usize) -> Result<(), ApiError> {
    if !action.is_signed() && action.replica.as_deref() == Some(state.replica.id()) {
        return Ok(());
    }
    state.replica.check_signature(action).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            e.code(),
            format!("action {index}: {e}"),
        )
        .with_details(json!({ "actionIndex": index }))
    })
}
