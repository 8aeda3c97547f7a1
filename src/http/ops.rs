//! Endpoints for operators and their tools: liveness, readiness and Prometheus metrics.

use super::error::{ApiError, Problem};
use super::AppState;
use super::extract::Caller;
use crate::domain::role::Role;
use crate::service::Principal;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` when the server answers and its store reads.
    pub status: String,
    pub store: String,
    pub version: String,
}

/// Liveness: the server answers and its store can be read.
#[utoipa::path(
    get, path = "/healthz", tag = "ops",
    responses(
        (status = 200, description = "Alive, and the store reads", body = Health),
        (status = 500, description = "The store cannot be read", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn healthz(State(state): State<Arc<AppState>>) -> Result<Json<Health>, ApiError> {
    state.call(|service, _| service.store().get_meta("key_check").map(|_| ())).await?;
    Ok(Json(Health { status: "ok".into(), store: "ok".into(), version: env!("CARGO_PKG_VERSION").into() }))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Ready {
    /// `ready`: the store reads and the user directory is loaded.
    pub status: String,
    pub store: String,
    pub directory: String,
    /// Scheduled backups (`[backup]`): `off`, `pending` (none taken yet), `ok`, or `failing: …`
    /// when the last one failed. Readiness does not depend on it.
    pub backup: String,
}

/// Readiness: the store is open and the user directory loaded, so listings answer at full speed.
/// A load balancer or an orchestrator sends traffic once this answers 200.
#[utoipa::path(
    get, path = "/readyz", tag = "ops",
    responses(
        (status = 200, description = "Ready: the store reads and the user directory is loaded", body = Ready),
        (status = 503, description = "Not ready yet: the user directory is still being read", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The store cannot be read", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Result<Json<Ready>, ApiError> {
    state.call(|service, _| service.store().get_meta("key_check").map(|_| ())).await?;
    if !state.directory_ready() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "the store is open; the user directory is still being read: ask again shortly",
        ));
    }
    Ok(Json(Ready { status: "ready".into(), store: "ok".into(), directory: "loaded".into(), backup: state.backups.describe() }))
}

/// Request counts and latency by route and status, resets by outcome, logins by outcome. Unless
/// `[server] metrics_public`, for the token of an Owner, Admin or Auditor, or an API key.
#[utoipa::path(
    get, path = "/metrics", tag = "ops",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 403, description = "The token is a Member's or a Helpdesk's session", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn metrics(State(state): State<Arc<AppState>>, mut parts: Parts) -> Result<impl IntoResponse, ApiError> {
    if !state.settings.metrics_public {
        let caller = Caller::from_request_parts(&mut parts, &state).await?;
        let may = matches!(caller.actor.principal, Principal::ApiKey { .. } | Principal::Console { .. })
            || matches!(caller.actor.role(), Role::Owner | Role::Admin | Role::Auditor);
        if !may {
            return Err(ApiError::forbidden(
                "the metrics are for Owners, Admins, Auditors and API keys (or set [server] metrics_public = true)",
            ));
        }
    }
    let text = state.metrics.render() + &state.backups.render_metrics();
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text))
}
