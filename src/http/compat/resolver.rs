//! Resolver's user API (seeds 002 and 003): `PUT /user/users/mfa/reset {"ids": [...]}` resets all
//! the ids or none, `PUT /user/org/mfa {"isMfaEnforced": bool}` sets the caller's org, and
//! `GET /user/users` lists the org's users as Resolver's User Management shows them and
//! `GET /user/users/me` says who the caller is. Ids are the users' numbers (the documents' `1`)
//! or their UUIDs.

use super::{Failure, Vendor, authenticate, reason, vendor_json};
use crate::domain::user::UserView;
use crate::http::AppState;
use crate::http::extract::ClientAddr;
use crate::http::native::MAX_BULK_IDS;
use crate::service::{Actor, AllOrNothingReport, ResetOutcome};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

const VENDOR: Vendor = Vendor::Resolver;

/// The documents' sentence for org enforcement.
pub const ONLY_ADMINS_ENFORCE: &str = "Only Administrators can enforce multi-factor authentication (MFA) on their Org.";

pub fn routes(bulk_body_limit: usize) -> OpenApiRouter<Arc<AppState>> {
    let bulk = OpenApiRouter::new().routes(routes!(reset_users)).layer(DefaultBodyLimit::max(bulk_body_limit));
    OpenApiRouter::new().routes(routes!(set_org_mfa)).routes(routes!(list_users)).routes(routes!(me)).merge(bulk)
}

/// The most ids one `GET /user/users?ids=` names.
const MAX_LISTED_IDS: usize = 1_000;

/// A user as Resolver's User Management lists one: name, email, last login, access, admin.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResolverUser {
    /// The user's number: the id `PUT /user/users/mfa/reset` takes.
    #[schema(example = 1)]
    pub id: u64,
    /// The display name's first word.
    #[schema(example = "Valentina")]
    pub first_name: String,
    /// The rest of the display name (empty for a one-word name).
    #[schema(example = "Rodriguez")]
    pub last_name: String,
    #[schema(example = "valentina.rodriguez@email.com")]
    pub email: String,
    /// RFC 3339; null: never.
    #[schema(example = "2026-11-22T18:31:00Z")]
    pub last_login: Option<String>,
    /// Enable User Access: false for a disabled user.
    pub enabled: bool,
    /// Admin: an Owner or Admin of the org.
    pub admin: bool,
}

impl ResolverUser {
    fn of(u: &UserView) -> ResolverUser {
        let name = u.display_name.trim();
        let (first, last) = name.split_once(' ').map_or((name, ""), |(f, l)| (f, l.trim()));
        ResolverUser {
            id: u.number,
            first_name: first.to_string(),
            last_name: last.to_string(),
            email: u.email.clone(),
            last_login: u.last_login_at.clone(),
            enabled: u.status == crate::domain::user::Status::Active,
            admin: matches!(u.role, crate::domain::role::Role::Owner | crate::domain::role::Role::Admin),
        }
    }
}

/// The ids of `?ids=1,2&ids=3` (numbers or UUIDs), or `None` for every user; anything else is refused.
fn listed_ids(query: Option<&str>) -> Result<Option<Vec<String>>, String> {
    let mut ids: Option<Vec<String>> = None;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if key != "ids" {
            return Err(format!("Unknown query parameter {key:?}; this endpoint takes only ids"));
        }
        for id in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
            let target = target_of(&Value::String(id.to_string()))
                .ok_or_else(|| format!("Not a user id: {id}. Ids are user numbers such as 1, or UUIDs"))?;
            ids.get_or_insert_with(Vec::new).push(target);
        }
    }
    match ids {
        Some(ids) if ids.len() > MAX_LISTED_IDS => Err(format!("ids names {} users; name at most {MAX_LISTED_IDS}", ids.len())),
        ids => Ok(ids),
    }
}

/// Retrieve a set of users by id: the org's users (the caller alone, for a Member), or those of
/// `ids` among them; an id that names no user of the org is left out.
#[utoipa::path(
    get, path = "/user/users", tag = "Resolver", security(("bearer" = [])), operation_id = "resolverListUsers",
    params(("ids" = Option<String>, Query, description = "User numbers or UUIDs, comma-separated (or the parameter repeated); at most 1,000. Without it, every user of your org", example = "1,2")),
    responses(
        (status = 200, description = "The users, by number", body = Vec<ResolverUser>,
            example = json!([{"id": 1, "firstName": "Valentina", "lastName": "Rodriguez", "email": "valentina.rodriguez@email.com", "lastLogin": null, "enabled": true, "admin": false}])),
        (status = 400, description = "An id is neither a number nor a UUID, too many ids, or another parameter", body = ResolverError),
        (status = 401, description = "No token, or an unknown, expired or revoked one", body = ResolverError),
        (status = 429, description = "Too many failed authentications from this address; see Retry-After", body = ResolverError),
        (status = 500, description = "The server failed", body = ResolverError),
    )
)]
pub async fn list_users(
    State(state): State<Arc<AppState>>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let actor = match authenticate(&state, &headers, &client, VENDOR).await {
        Ok(actor) => actor,
        Err(e) => return failure(e.into()),
    };
    let ids = match listed_ids(query.as_deref()) {
        Ok(ids) => ids,
        Err(why) => return error(StatusCode::BAD_REQUEST, why, None),
    };
    let listed = state
        .call(move |service, now| match ids {
            None => Ok(service.list_users(&actor, &crate::service::UserQuery { sort: crate::service::SortField::Number, ..Default::default() }, now)?.users),
            Some(ids) => {
                let mut users = Vec::new();
                for id in ids {
                    match service.get_user(&actor, &id, now) {
                        Ok(detail) => users.push(detail.user),
                        Err(crate::error::Error::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(users)
            }
        })
        .await;
    match listed {
        Ok(users) => vendor_json(StatusCode::OK, &users.iter().map(ResolverUser::of).collect::<Vec<_>>()),
        Err(e) => failure(e.into()),
    }
}

/// The users to reset.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolverResetRequest {
    /// User ids: numbers (the `number` of each user) or UUID strings; 1 to 10,000.
    #[schema(value_type = Vec<Object>, example = json!([1]))]
    pub ids: Vec<Value>,
}

/// Every id was reset, or had nothing to reset.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ResolverResetResponse {
    /// The ids whose MFA was reset, as given.
    #[schema(value_type = Vec<Object>, example = json!([1]))]
    pub reset: Vec<Value>,
    /// The ids that had no MFA to reset, or were listed twice, as given.
    #[schema(value_type = Vec<Object>, example = json!([]))]
    pub skipped: Vec<Value>,
}

/// Every error. `ids` names the ids that stopped a bulk reset (404: unknown, 403: not allowed).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ResolverError {
    #[schema(example = 404)]
    pub status: u16,
    #[schema(example = "Not Found")]
    pub error: String,
    #[schema(example = "No user with id 7 in your org; no MFA was reset")]
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Value>>, example = json!([7]))]
    pub ids: Option<Vec<Value>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolverOrgMfaRequest {
    /// Require MFA of every user of the caller's org (true) or not (false).
    #[serde(rename = "isMfaEnforced")]
    pub is_mfa_enforced: bool,
}

/// The caller's org after the change.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ResolverOrg {
    pub name: String,
    #[serde(rename = "isMfaEnforced")]
    pub is_mfa_enforced: bool,
}

fn error(status: StatusCode, message: impl Into<String>, ids: Option<Vec<Value>>) -> Response {
    vendor_json(status, &body(status, message.into(), ids))
}

fn body(status: StatusCode, message: String, ids: Option<Vec<Value>>) -> ResolverError {
    ResolverError { status: status.as_u16(), error: status.canonical_reason().unwrap_or("Error").into(), message, ids }
}

fn failure(f: Failure) -> Response {
    let status = if f.status.is_server_error() { StatusCode::INTERNAL_SERVER_ERROR } else { f.status };
    let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
        "The server could not complete this request; its log has the details".to_string()
    } else {
        f.detail.clone()
    };
    f.answer(status, &body(status, message, None))
}

/// Read a JSON body whatever its content type (Swagger and scripts differ); unknown fields and
/// oversize bodies are errors, with their status and what was wrong.
fn read_json<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, (StatusCode, String)> {
    let body = body.map_err(|r| (r.status(), format!("The request body could not be read: {r}")))?;
    serde_json::from_slice(&body)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("The request body does not fit this endpoint: {e}")))
}

/// An id as the service resolves it: `#<number>` (never a user name) or a UUID.
fn target_of(id: &Value) -> Option<String> {
    match id {
        Value::Number(n) => n.as_u64().map(|n| format!("#{n}")),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse::<u64>().ok().map(|n| format!("#{n}"))
        }
        Value::String(s) => Uuid::parse_str(s.trim()).ok().map(|u| u.to_string()),
        _ => None,
    }
}

fn list(ids: &[Value]) -> String {
    ids.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string)).collect::<Vec<_>>().join(", ")
}

/// Reset user MFA, for every id or for none: when any id is unknown in your org (404) or may not
/// be reset by you (403), nothing is reset and the answer names those ids.
#[utoipa::path(
    put, path = "/user/users/mfa/reset", tag = "Resolver", security(("bearer" = [])),
    params(("X-Reset-Reason" = Option<String>, Header, description = "Reason for the audit log (default \"Resolver-compatible API\")")),
    request_body(content = ResolverResetRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Every id was reset (or had no MFA to reset), in one transaction", body = ResolverResetResponse),
        (status = 400, description = "The body is not `{\"ids\": [...]}` with 1 to 10,000 numbers or UUIDs, or X-Reset-Reason is not valid", body = ResolverError),
        (status = 401, description = "No token, or an unknown, expired or revoked one", body = ResolverError),
        (status = 403, description = "You may not reset some of these users (named in `ids`); nothing was reset", body = ResolverError),
        (status = 404, description = "Some ids name no user in your org (named in `ids`); nothing was reset", body = ResolverError),
        (status = 413, description = "The body is over 1 MiB", body = ResolverError),
        (status = 429, description = "Too many failed authentications from this address; see Retry-After", body = ResolverError),
        (status = 500, description = "The server failed; nothing was reset", body = ResolverError),
    )
)]
pub async fn reset_users(
    State(state): State<Arc<AppState>>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let actor = match authenticate(&state, &headers, &client, VENDOR).await {
        Ok(actor) => actor,
        Err(e) => return failure(e.into()),
    };
    let request: ResolverResetRequest = match read_json(body) {
        Ok(r) => r,
        Err((status, why)) => return error(status, why, None),
    };
    if request.ids.is_empty() || request.ids.len() > MAX_BULK_IDS {
        let n = request.ids.len();
        return error(StatusCode::BAD_REQUEST, format!("ids holds {n} ids; send 1 to {MAX_BULK_IDS}"), None);
    }
    let mut targets = Vec::with_capacity(request.ids.len());
    let mut bad = Vec::new();
    for id in &request.ids {
        match target_of(id) {
            Some(t) => targets.push(t),
            None => bad.push(id.clone()),
        }
    }
    if !bad.is_empty() {
        let message = format!("Not a user id: {}. Ids are user numbers such as 1, or UUIDs", list(&bad));
        return error(StatusCode::BAD_REQUEST, message, Some(bad));
    }
    let why = reason(&headers, VENDOR);
    let floor = VENDOR.floor(state.settings.compat.role_table);
    let reset = move |service: &crate::service::Service, now| {
        service.reset_mfa_all_or_nothing_floored(&actor, &targets, Some(&why), floor.as_ref(), now)
    };
    let report =
        match state.call(reset).await
        {
            Ok(report) => report,
            Err(e) => return failure(e.into()),
        };
    answer(&state, &request.ids, report)
}

fn answer(state: &AppState, ids: &[Value], report: AllOrNothingReport) -> Response {
    let with = |outcome: ResetOutcome| -> Vec<Value> {
        ids.iter().zip(&report.results).filter(|(_, r)| r.outcome == outcome).map(|(id, _)| id.clone()).collect()
    };
    let unknown = with(ResetOutcome::NotFound);
    if !unknown.is_empty() {
        let message = format!("No user with id {} in your org; no MFA was reset", list(&unknown));
        return error(StatusCode::NOT_FOUND, message, Some(unknown));
    }
    let denied = with(ResetOutcome::Denied);
    if !denied.is_empty() {
        let mut reasons: Vec<&str> = report
            .results
            .iter()
            .filter_map(|r| r.detail.as_deref().filter(|_| r.outcome == ResetOutcome::Denied))
            .collect();
        reasons.sort_unstable();
        reasons.dedup();
        let message =
            format!("You may not reset the MFA of id {} ({}); no MFA was reset", list(&denied), reasons.join("; "));
        return error(StatusCode::FORBIDDEN, message, Some(denied));
    }
    let reset = with(ResetOutcome::Reset);
    state.metrics.record_resets(&crate::service::ResetReport { dry_run: false, results: report.results.clone() });
    vendor_json(StatusCode::OK, &ResolverResetResponse { reset, skipped: with(ResetOutcome::Skipped) })
}

/// Update MFA for the current org: require it of every user, or stop requiring it (Owners and Admins).
#[utoipa::path(
    put, path = "/user/org/mfa", tag = "Resolver", security(("bearer" = [])),
    request_body(content = ResolverOrgMfaRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The org with its new setting", body = ResolverOrg),
        (status = 400, description = "The body is not `{\"isMfaEnforced\": true|false}`", body = ResolverError),
        (status = 401, description = "No token, or an unknown, expired or revoked one", body = ResolverError),
        (status = 403, description = "Only Administrators can enforce multi-factor authentication (MFA) on their Org.", body = ResolverError),
        (status = 429, description = "Too many failed authentications from this address; see Retry-After", body = ResolverError),
        (status = 500, description = "The server failed", body = ResolverError),
    )
)]
pub async fn set_org_mfa(
    State(state): State<Arc<AppState>>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let actor = match authenticate(&state, &headers, &client, VENDOR).await {
        Ok(actor) => actor,
        Err(e) => return failure(e.into()),
    };
    let request: ResolverOrgMfaRequest = match read_json(body) {
        Ok(r) => r,
        Err((status, why)) => return error(status, why, None),
    };
    let on = request.is_mfa_enforced;
    match state.call(move |service, now| service.set_mfa_enforced(&actor, None, on, now)).await {
        Ok(org) => vendor_json(StatusCode::OK, &ResolverOrg { name: org.name, is_mfa_enforced: org.mfa_enforced }),
        Err(e) if e.status() == StatusCode::FORBIDDEN => error(StatusCode::FORBIDDEN, ONLY_ADMINS_ENFORCE, None),
        Err(e) => failure(e.into()),
    }
}

/// Who am I: the caller's user record, with its `number` (for an API key, its creator's).
#[utoipa::path(
    get, path = "/user/users/me", tag = "Resolver", security(("bearer" = [])), operation_id = "resolverMe",
    responses(
        (status = 200, description = "The caller (for an API key, the user who created it)", body = UserView),
        (status = 401, description = "No token, or an unknown, expired or revoked one", body = ResolverError),
        (status = 404, description = "The token's user is gone", body = ResolverError),
        (status = 429, description = "Too many failed authentications from this address; see Retry-After", body = ResolverError),
        (status = 500, description = "The server failed", body = ResolverError),
    )
)]
pub async fn me(State(state): State<Arc<AppState>>, ClientAddr(client): ClientAddr, headers: HeaderMap) -> Response {
    let actor: Actor = match authenticate(&state, &headers, &client, VENDOR).await {
        Ok(actor) => actor,
        Err(e) => return failure(e.into()),
    };
    match state.call(move |service, now| service.whoami(&actor, now)).await {
        Ok(user) => vendor_json(StatusCode::OK, &user),
        Err(e) => failure(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_are_numbers_or_uuids_and_never_user_names() {
        let uuid = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        assert_eq!(target_of(&json!(1)), Some("#1".into()));
        assert_eq!(target_of(&json!("42")), Some("#42".into()));
        assert_eq!(target_of(&json!(uuid)), Some(uuid.into()));
        for bad in [json!(-1), json!(1.5), json!("alice"), json!(""), json!(null), json!([1])] {
            assert_eq!(target_of(&bad), None, "{bad}");
        }
        assert_eq!(list(&[json!(1), json!(uuid)]), format!("1, {uuid}"));
    }
}
