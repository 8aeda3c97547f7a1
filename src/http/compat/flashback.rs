//! Flashback's `POST /mfa/reset` (seed 000): no body resets the caller's own MFA,
//! `{"resetUserId": "..."}` another user's; answers `{"success", "message" | "error"}`.

use super::{Failure, Vendor, authenticate, reason, reset_one, vendor_json};
use crate::domain::role::Role;
use crate::http::AppState;
use crate::http::extract::{ClientAddr, parse_uuid};
use crate::service::{Actor, ResetOutcome};
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const VENDOR: Vendor = Vendor::Flashback;

// The document's sentences.
pub const RESET_DONE: &str = "MFA reset successfully";
pub const FORBIDDEN: &str =
    "Insufficient permissions. OWNER or ADMINISTRATOR role required to reset another user's MFA.";
pub const NOT_FOUND: &str = "User not found";
pub const FAILED: &str = "Failed to reset MFA";

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(reset))
}

/// The optional body: whose MFA to reset.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlashbackResetRequest {
    /// Optional user ID to reset MFA for. If not provided, resets the authenticated user's MFA.
    #[serde(rename = "resetUserId")]
    #[schema(example = "67e55044-10b1-426f-9247-bb680e5fe0c8")]
    pub reset_user_id: Option<String>,
}

/// A successful reset.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FlashbackSuccess {
    /// Indicates if the request was successful.
    pub success: bool,
    /// Success message confirming the reset.
    #[schema(example = "MFA reset successfully")]
    pub message: String,
}

/// Any failure.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FlashbackError {
    /// Indicates if the request was successful.
    pub success: bool,
    /// Error message describing the issue.
    #[schema(example = "User not found")]
    pub error: String,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    vendor_json(status, &FlashbackError { success: false, error: message.into() })
}

fn failure(f: Failure) -> Response {
    let body = |message: String| FlashbackError { success: false, error: message };
    match f.status {
        s if s.is_server_error() => f.answer(StatusCode::INTERNAL_SERVER_ERROR, &body(FAILED.into())),
        StatusCode::NOT_FOUND => f.answer(StatusCode::NOT_FOUND, &body(NOT_FOUND.into())),
        StatusCode::UNAUTHORIZED => f.answer(f.status, &body(format!("Unauthorized: {}", f.detail))),
        status => f.answer(status, &body(f.detail.clone())),
    }
}

/// The user named by the body, or `None` for the caller. Anything unclear is refused rather than
/// taken to mean the caller: a misspelt field must never reset the wrong user.
fn target_of(body: &[u8]) -> Result<Option<String>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "The request body must be JSON text".to_string())?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    let unclear = |e: &dyn std::fmt::Display| {
        format!("The request body must be empty or {{\"resetUserId\": \"<user id>\"}}: {e}")
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| unclear(&e))?;
    match value {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Object(_) => {
            let request = FlashbackResetRequest::deserialize(value).map_err(|e| unclear(&e))?;
            Ok(request.reset_user_id)
        }
        _ => Err(unclear(&"it is not a JSON object")),
    }
}

/// The sentence for a denied reset: the document's, unless the caller is an Owner or Admin (who
/// hold the role it names) or acted on itself; then the reason our role table gives.
fn forbidden(actor: &Actor, own: bool, why: &str) -> String {
    if !own && !matches!(actor.role(), Role::Owner | Role::Admin) {
        return FORBIDDEN.to_string();
    }
    let mut why = why.to_string();
    if let Some(first) = why.get(..1) {
        why.replace_range(..1, &first.to_uppercase());
    }
    format!("Insufficient permissions. {}.", why.trim_end_matches('.'))
}

/// Reset MFA Configuration: your own, or (an Owner or Admin) another user's in your org.
#[utoipa::path(
    post, path = "/mfa/reset", tag = "Flashback", security(("bearer" = [])),
    params(("X-Reset-Reason" = Option<String>, Header, description = "Reason for the audit log (default \"Flashback-compatible API\")")),
    request_body(content = Option<FlashbackResetRequest>, content_type = "application/json",
        description = "Optional: no body, `{}` or `null` resets the caller's own MFA"),
    responses(
        (status = 200, description = "MFA reset completed successfully (also when the user had no MFA to reset: the message says so)", body = FlashbackSuccess),
        (status = 400, description = "The body is neither empty nor `{\"resetUserId\": \"...\"}`, or the X-Reset-Reason header is not valid", body = FlashbackError),
        (status = 401, description = "No token, or an unknown, expired or revoked one", body = FlashbackError),
        (status = 403, description = "Insufficient permissions to reset another user's MFA", body = FlashbackError),
        (status = 404, description = "User not found", body = FlashbackError),
        (status = 413, description = "The body is larger than 64 KiB", body = FlashbackError),
        (status = 429, description = "Too many failed authentications from this address; see Retry-After", body = FlashbackError),
        (status = 500, description = "Internal server error", body = FlashbackError),
    )
)]
pub async fn reset(
    State(state): State<Arc<AppState>>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let actor = match authenticate(&state, &headers, &client, VENDOR).await {
        Ok(actor) => actor,
        Err(e) => return failure(e.into()),
    };
    let body = match body {
        Ok(body) => body,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(StatusCode::PAYLOAD_TOO_LARGE, "The request body is larger than 64 KiB");
        }
        Err(r) => return error(StatusCode::BAD_REQUEST, format!("The request body could not be read: {r}")),
    };
    let named = match target_of(&body) {
        Ok(named) => named,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    let own = match &named {
        None => true,
        Some(id) => parse_uuid(id).is_ok_and(|id| actor.user_id() == Some(id)),
    };
    let target = match (named, actor.user_id()) {
        (Some(id), _) => match parse_uuid(&id) {
            Ok(id) => id.to_string(),
            Err(_) => return error(StatusCode::NOT_FOUND, NOT_FOUND),
        },
        (None, Some(me)) => me.to_string(),
        (None, None) => {
            return error(
                StatusCode::FORBIDDEN,
                "Insufficient permissions. An API key has no MFA of its own: name the user with resetUserId.",
            );
        }
    };
    let result = match reset_one(&state, VENDOR, actor.clone(), target, reason(&headers, VENDOR)).await {
        Ok(result) => result,
        Err(e) => return failure(e.into()),
    };
    let detail = result.detail.as_deref().unwrap_or_default();
    match result.outcome {
        ResetOutcome::Reset => {
            vendor_json(StatusCode::OK, &FlashbackSuccess { success: true, message: RESET_DONE.into() })
        }
        ResetOutcome::Skipped => vendor_json(
            StatusCode::OK,
            &FlashbackSuccess {
                success: true,
                message: "MFA is not set up for this user; there was nothing to reset".into(),
            },
        ),
        ResetOutcome::Denied => error(StatusCode::FORBIDDEN, forbidden(&actor, own, detail)),
        ResetOutcome::NotFound => error(StatusCode::NOT_FOUND, NOT_FOUND),
        ResetOutcome::Failed | ResetOutcome::Unknown => {
            tracing::warn!(detail, "flashback reset failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, FAILED)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_names_the_target_or_nobody_and_nothing_unclear_means_the_caller() {
        for empty in ["", "  \n", "{}", "null", "{\"resetUserId\": null}"] {
            assert_eq!(target_of(empty.as_bytes()), Ok(None), "{empty:?}");
        }
        assert_eq!(target_of(br#"{"resetUserId": "u-1"}"#), Ok(Some("u-1".into())));
        for unclear in [r#"{"resetUserID": "u-1"}"#, "resetUserId=u-1", r#"["u-1"]"#, r#"{"resetUserId": 7}"#, "{"] {
            assert!(target_of(unclear.as_bytes()).is_err(), "{unclear:?}");
        }
    }
}
