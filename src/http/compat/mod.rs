//! Drop-in routes for four vendors' MFA-reset APIs, so scripts written for them work unchanged.
//!
//! Each vendor has its own small module that reads the vendor's request, calls the one service
//! (which decides who may reset whom, scopes to the org and writes the audit log, with the source
//! `http:<vendor>`) and answers in the vendor's shape, with the sentences of its document
//! (`../shared/seeds/`). [`mount`] adds the enabled vendors to the router and to `/openapi.json`.

pub mod entryguard;
pub mod flashback;
pub mod nps;
pub mod resolver;

use super::AppState;
use super::error::ApiError;
use super::extract::bearer_token;
use crate::config::{CompatConfig, CompatRoles};
use crate::domain::role::Role;
use crate::service::{Actor, ResetFloor, ResetResult};
use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::Arc;
use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::tag::Tag;
use utoipa_axum::router::OpenApiRouter;

/// The header a script may add to give the reason recorded in the audit log.
pub const REASON_HEADER: &str = "x-reset-reason";

/// The longest API key or token looked at.
const MAX_TOKEN_LEN: usize = 256;

/// The four vendors whose reset APIs we answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Flashback,
    EntryGuard,
    Resolver,
    Nps,
}

impl Vendor {
    /// The OpenAPI tag of the vendor's routes.
    pub fn name(self) -> &'static str {
        match self {
            Vendor::Flashback => "Flashback",
            Vendor::EntryGuard => "EntryGuard",
            Vendor::Resolver => "Resolver",
            Vendor::Nps => "Netwrix Privilege Secure",
        }
    }

    /// The audit source of everything done through the vendor's routes.
    pub fn source(self) -> &'static str {
        match self {
            Vendor::Flashback => "http:flashback",
            Vendor::EntryGuard => "http:entryguard",
            Vendor::Resolver => "http:resolver",
            Vendor::Nps => "http:nps",
        }
    }

    /// The reason recorded when the request gives none (the vendors' APIs have no reason field).
    pub fn default_reason(self) -> String {
        format!("{}-compatible API", self.name())
    }

    /// The least role the vendor's document requires to reset another user's MFA, in its words.
    fn requirement(self) -> (Role, &'static str) {
        match self {
            Vendor::Flashback => (Role::Admin, "the OWNER or ADMINISTRATOR role is required to reset another user's MFA"),
            Vendor::EntryGuard => (Role::Admin, "the ORG_ADMIN role (an Owner or Admin) is required to reset another user's MFA"),
            Vendor::Resolver => (Role::Admin, "only Administrators (Owners and Admins) can reset MFA for users on their Org"),
            Vendor::Nps => (Role::Admin, "only an Administrator (an Owner or Admin) can reset another user's MFA"),
        }
    }

    /// The rule over the role table that the vendor's routes keep to under `roles`.
    pub fn floor(self, roles: CompatRoles) -> Option<ResetFloor> {
        match roles {
            CompatRoles::Mfadmin => None,
            CompatRoles::Vendor => {
                let (minimum, rule) = self.requirement();
                Some(ResetFloor { minimum, rule: rule.to_string() })
            }
        }
    }

    fn description(self) -> &'static str {
        match self {
            Vendor::Flashback => "Flashback's `POST /mfa/reset`: the caller's own MFA, or `resetUserId`'s.",
            Vendor::EntryGuard => "EntryGuard's `POST /api/v1/users/{id}/reset-mfa`.",
            Vendor::Resolver => {
                "Resolver's user API: bulk reset by id (all or nothing), org MFA enforcement, who am I. \
                 Ids are the users' numbers (`number`) or UUIDs."
            }
            Vendor::Nps => {
                "Netwrix Privilege Secure: sign in (`/signinBody`, then `/signin2fa` with the code) and reset by \
                 id. `Authorization: <API key>` or `Authorization: Bearer <token>`."
            }
        }
    }
}

/// Marks a response whose error body is the vendor's own, so the request middleware leaves it as
/// it is instead of writing our problem+json.
#[derive(Debug, Clone, Copy)]
pub struct VendorBody;

/// A vendor's JSON answer, kept as it is by the middleware.
pub(crate) fn vendor_json(status: StatusCode, body: &impl Serialize) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut response =
        (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], bytes).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response.extensions_mut().insert(VendorBody);
    response
}

/// A failure from the shared steps (authentication, rate limits, the service), for a vendor module
/// to answer in its own shape: the status, what was wrong, and the Retry-After of a 429.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: StatusCode,
    pub detail: String,
    retry_after: Option<HeaderValue>,
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Failure {
        let (status, detail) = (e.status(), e.problem().detail);
        // Rendering it logs an internal error's cause, which a vendor's generic 500 does not show.
        let rendered = e.into_response();
        Failure { status, detail, retry_after: rendered.headers().get(header::RETRY_AFTER).cloned() }
    }
}

impl Failure {
    /// The vendor's answer with `status` and `body`, plus Retry-After when this was a 429.
    pub fn answer(&self, status: StatusCode, body: &impl Serialize) -> Response {
        let mut response = vendor_json(status, body);
        if let Some(secs) = &self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, secs.clone());
        }
        response
    }

    pub fn retry_after(&self) -> Option<&HeaderValue> {
        self.retry_after.as_ref()
    }
}

/// The reason for the audit log: the `X-Reset-Reason` header, else "<vendor>-compatible API".
pub(crate) fn reason(headers: &HeaderMap, vendor: Vendor) -> String {
    headers
        .get(REASON_HEADER)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| vendor.default_reason())
}

/// The token of `Authorization: Bearer <token>`; for NPS (`raw_key_ok`) also a bare
/// `Authorization: <API key>`.
pub(crate) fn token(headers: &HeaderMap, raw_key_ok: bool) -> Result<String, ApiError> {
    if !raw_key_ok {
        return bearer_token(headers);
    }
    let value = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::trim).unwrap_or("");
    if value.is_empty() {
        return Err(ApiError::unauthenticated(
            "send the header Authorization: <API key>, or Authorization: Bearer <token> with the token from \
             POST /signinBody and /signin2fa",
        ));
    }
    if value.contains(' ') {
        return bearer_token(headers);
    }
    if value.len() > MAX_TOKEN_LEN {
        return Err(ApiError::unauthenticated("unknown or revoked token"));
    }
    Ok(value.to_string())
}

/// The caller of a vendor route, acting through `vendor`'s door. A failed authentication counts
/// against the client's login rate limit, so guessing keys is slowed down (429 past the limit).
pub(crate) async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    client: &str,
    vendor: Vendor,
) -> Result<Actor, ApiError> {
    let attempt = match token(headers, vendor == Vendor::Nps) {
        Ok(token) => state.call(move |service, now| service.authenticate(&token, vendor.source(), now)).await,
        Err(e) => Err(e),
    };
    match attempt {
        Ok(actor) => {
            tracing::Span::current().record("actor", actor.audit_name());
            Ok(actor)
        }
        Err(e) => Err(state.limits.bad_token(client, e)),
    }
}

/// Reset one user's MFA through the service, as the native single reset does, but keeping to the
/// vendor's documented minimum role unless `[compat] role_table = "mfadmin"`; the one result.
pub(crate) async fn reset_one(
    state: &AppState,
    vendor: Vendor,
    actor: Actor,
    target: String,
    reason: String,
) -> Result<ResetResult, ApiError> {
    let floor = vendor.floor(state.settings.compat.role_table);
    let report = state
        .call(move |service, now| service.reset_mfa_floored(&actor, &[target], Some(&reason), floor.as_ref(), now))
        .await?;
    state.metrics.record_resets(&report);
    report.results.into_iter().next().ok_or_else(|| ApiError::internal("a reset returned no result"))
}

/// Add the routes of the vendors `config` enables to `api`, and their operations to `doc`.
pub fn mount(
    api: Router<Arc<AppState>>,
    mut doc: Document,
    config: &CompatConfig,
    bulk_body_limit: usize,
) -> (Router<Arc<AppState>>, Document) {
    let enabled = [
        (config.flashback, Vendor::Flashback),
        (config.entryguard, Vendor::EntryGuard),
        (config.resolver, Vendor::Resolver),
        (config.nps, Vendor::Nps),
    ];
    let mut routes = OpenApiRouter::new();
    for (on, vendor) in enabled {
        if !on {
            continue;
        }
        routes = routes.merge(match vendor {
            Vendor::Flashback => flashback::routes(),
            Vendor::EntryGuard => entryguard::routes(),
            Vendor::Resolver => resolver::routes(bulk_body_limit),
            Vendor::Nps => nps::routes(),
        });
        let tag = Tag::builder().name(vendor.name()).description(Some(vendor.description())).build();
        doc.tags.get_or_insert_with(Vec::new).push(tag);
    }
    if config.nps {
        let scheme = ApiKeyValue::with_description(
            "authorization",
            "Netwrix Privilege Secure: the API key itself as the Authorization header, with no scheme",
        );
        let components = doc.components.get_or_insert_with(Default::default);
        components.security_schemes.insert("nps_api_key".into(), SecurityScheme::ApiKey(ApiKey::Header(scheme)).into());
    }
    let (compat_api, compat_doc) = routes.split_for_parts();
    doc.merge(compat_doc);
    (api.merge(compat_api), doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_comes_from_the_header_or_names_the_vendor() {
        let mut headers = HeaderMap::new();
        assert_eq!(reason(&headers, Vendor::Flashback), "Flashback-compatible API");
        assert_eq!(reason(&headers, Vendor::Nps), "Netwrix Privilege Secure-compatible API");
        headers.insert(REASON_HEADER, HeaderValue::from_static("  "));
        assert_eq!(reason(&headers, Vendor::Resolver), "Resolver-compatible API");
        headers.insert(REASON_HEADER, HeaderValue::from_static("ticket 4711"));
        assert_eq!(reason(&headers, Vendor::EntryGuard), "ticket 4711");
    }

    #[test]
    fn only_nps_takes_a_bare_api_key() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("abc123"));
        assert_eq!(token(&headers, true).unwrap(), "abc123");
        assert_eq!(token(&headers, false).unwrap_err().status(), StatusCode::UNAUTHORIZED);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer abc123"));
        assert_eq!(token(&headers, true).unwrap(), "abc123");
        assert_eq!(token(&headers, false).unwrap(), "abc123");
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc123"));
        assert!(token(&headers, true).is_err());
        let missing = token(&HeaderMap::new(), true).unwrap_err().problem().detail;
        assert!(missing.contains("Authorization: <API key>"), "{missing}");
    }
}
