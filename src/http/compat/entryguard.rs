//! EntryGuard's `POST /api/v1/users/{id}/reset-mfa` (seed 001): no body; 200 `{"message"}`, errors
//! as `{"timestamp","status","error","message","path"}`.

use super::{Failure, Vendor, authenticate, reason, reset_one, vendor_json};
use crate::domain::role::Role;
use crate::domain::user::rfc3339;
use crate::http::AppState;
use crate::http::extract::{ClientAddr, parse_uuid};
use crate::service::{Actor, ResetOutcome};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const VENDOR: Vendor = Vendor::EntryGuard;

// The document's sentences.
pub const RESET_DONE: &str = "MFA reset successfully";
pub const NOT_ENABLED: &str = "MFA is not enabled for this user";
pub const UNAUTHORIZED: &str = "Missing or invalid authentication token";
pub const FORBIDDEN: &str = "User does not have ORG_ADMIN role";
pub const RATE_LIMITED: &str = "Rate limit exceeded";
pub const SERVER_ERROR: &str = "Server error occurred";

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(reset_mfa))
}

/// A successful reset.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EntryGuardMessage {
    #[schema(example = "MFA reset successfully")]
    pub message: String,
}

/// Every error.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EntryGuardError {
    /// RFC 3339, UTC, whole seconds.
    #[schema(example = "2026-02-18T10:30:00Z")]
    pub timestamp: String,
    #[schema(example = 404)]
    pub status: u16,
    /// The status's reason phrase.
    #[schema(example = "Not Found")]
    pub error: String,
    #[schema(example = "User not found with id: 770e8400-e29b-41d4-a716-446655440004")]
    pub message: String,
    #[schema(example = "/api/v1/users/770e8400-e29b-41d4-a716-446655440004/reset-mfa")]
    pub path: String,
}

/// Builds the error bodies of one request.
struct Errors<'a> {
    state: &'a AppState,
    path: String,
}

impl Errors<'_> {
    fn body(&self, status: StatusCode, message: impl Into<String>) -> EntryGuardError {
        EntryGuardError {
            timestamp: rfc3339(self.state.now()),
            status: status.as_u16(),
            error: status.canonical_reason().unwrap_or("Error").to_string(),
            message: message.into(),
            path: self.path.clone(),
        }
    }

    fn error(&self, status: StatusCode, message: impl Into<String>) -> Response {
        vendor_json(status, &self.body(status, message))
    }

    fn failure(&self, f: Failure) -> Response {
        let (status, message) = match f.status {
            StatusCode::UNAUTHORIZED => (f.status, UNAUTHORIZED.to_string()),
            StatusCode::TOO_MANY_REQUESTS => (f.status, RATE_LIMITED.to_string()),
            s if s.is_server_error() => (StatusCode::INTERNAL_SERVER_ERROR, SERVER_ERROR.to_string()),
            s => (s, f.detail.clone()),
        };
        f.answer(status, &self.body(status, message))
    }
}

/// The sentence for a denied reset: the document's for a caller without an admin role; for an
/// Owner or Admin (who is an org admin), the reason our role table gives.
fn forbidden(actor: &Actor, why: &str) -> String {
    if matches!(actor.role(), Role::Owner | Role::Admin) { why.to_string() } else { FORBIDDEN.to_string() }
}

/// Reset User MFA: removes the user's second factor, recovery codes and sessions.
#[utoipa::path(
    post, path = "/api/v1/users/{id}/reset-mfa", tag = "EntryGuard", security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "The unique identifier of the user whose MFA should be reset"),
        ("X-Reset-Reason" = Option<String>, Header, description = "Reason for the audit log (default \"EntryGuard-compatible API\")"),
    ),
    responses(
        (status = 200, description = "MFA reset", body = EntryGuardMessage),
        (status = 400, description = "MFA is not enabled for this user (or the X-Reset-Reason header is not valid)", body = EntryGuardError),
        (status = 401, description = "Missing or invalid authentication token", body = EntryGuardError),
        (status = 403, description = "User does not have ORG_ADMIN role (an Owner or Admin), or the role table refuses (an Admin resetting an Owner)", body = EntryGuardError),
        (status = 404, description = "User with the specified ID does not exist in this organization", body = EntryGuardError),
        (status = 429, description = "Rate limit exceeded (failed authentications from this address); see Retry-After", body = EntryGuardError),
        (status = 500, description = "Server error occurred", body = EntryGuardError),
    )
)]
pub async fn reset_mfa(
    State(state): State<Arc<AppState>>,
    ClientAddr(client): ClientAddr,
    uri: Uri,
    headers: HeaderMap,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Response {
    let errors = Errors { state: &state, path: uri.path().to_string() };
    let actor = match authenticate(&state, &headers, &client, VENDOR).await {
        Ok(actor) => actor,
        Err(e) => return errors.failure(e.into()),
    };
    let given = match id {
        Ok(Path(id)) => id,
        Err(e) => return errors.error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let not_found = || errors.error(StatusCode::NOT_FOUND, format!("User not found with id: {given}"));
    let Ok(id) = parse_uuid(&given) else {
        return not_found();
    };
    let result = match reset_one(&state, VENDOR, actor.clone(), id.to_string(), reason(&headers, VENDOR)).await {
        Ok(result) => result,
        Err(e) => return errors.failure(e.into()),
    };
    let detail = result.detail.as_deref().unwrap_or_default();
    match result.outcome {
        ResetOutcome::Reset => vendor_json(StatusCode::OK, &EntryGuardMessage { message: RESET_DONE.into() }),
        ResetOutcome::Skipped => errors.error(StatusCode::BAD_REQUEST, NOT_ENABLED),
        ResetOutcome::Denied => errors.error(StatusCode::FORBIDDEN, forbidden(&actor, detail)),
        ResetOutcome::NotFound => not_found(),
        ResetOutcome::Failed | ResetOutcome::Unknown => {
            tracing::warn!(detail, "entryguard reset failed");
            errors.error(StatusCode::INTERNAL_SERVER_ERROR, SERVER_ERROR)
        }
    }
}
