//! `GET /api/v1/backup`: a consistent backup of the store while the server holds it.

use super::error::{ApiError, Problem};
use super::extract::Caller;
use super::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Download a backup of the whole store (format: see `mfadmin restore --help` and docs/reliability.md).
/// Secrets stay sealed: a restore needs the store's key file, which is not in the backup.
#[utoipa::path(
    get, path = "/api/v1/backup", tag = "backup", security(("bearer" = [])),
    responses(
        (status = 200, description = "The backup file, to restore with `mfadmin restore FILE`", body = String, content_type = "application/octet-stream"),
        (status = 403, description = "Only an Owner takes backups, and only of a store that holds no other org", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn download(State(state): State<Arc<AppState>>, caller: Caller) -> Result<Response, ApiError> {
    let actor = caller.actor;
    // Taken whole in memory, so commits are paused only for the copy, never for a slow client.
    let bytes = state.call(move |service, now| crate::backup::take(service, &actor, now).map(|s| s.encode())).await?;
    let headers = [
        (header::CONTENT_TYPE, "application/octet-stream"),
        (header::CONTENT_DISPOSITION, "attachment; filename=\"mfadmin.backup\""),
    ];
    Ok((headers, bytes).into_response())
}
