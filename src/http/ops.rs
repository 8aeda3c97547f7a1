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

/// Request counts and latency by route and status, resets by outcome, logins by outcome, users by
/// MFA state, active sessions, the build and the process. Unless `[server] metrics_public`, for the
/// token of an Owner, Admin or Auditor, or an API key.
#[utoipa::path(
    get, path = "/metrics", tag = "ops",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "OpenMetrics text format (which Prometheus reads)", body = String, content_type = "application/openmetrics-text; version=1.0.0"),
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
    // The store's figures are counted off the async threads, at each scrape.
    let (users, sessions) = state.call(|service, now| Ok((service.users_by_mfa_state(now)?, service.active_session_count(now)?))).await?;
    state.metrics.set_store_figures(&users, sessions);
    Ok(([(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)], state.metrics.render(state.backups.figures())))
}
