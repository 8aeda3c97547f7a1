//! Endpoints for operators and their tools: liveness, readiness and Prometheus metrics.

use super::error::{ApiError, Problem};
use super::AppState;
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
    Ok(Json(Ready { status: "ready".into(), store: "ok".into(), directory: "loaded".into() }))
}

/// Request counts and latency by route and status, resets by outcome, logins by outcome.
#[utoipa::path(
    get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain; version=0.0.4"))
)]
pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render())
}
