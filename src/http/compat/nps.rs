//! Netwrix Privilege Secure (seed 004): `PUT /api/v1/ManagedAccount/ResetMFA/{id}` answers 200 with
//! no body, or an RFC 7807 ProblemDetails with the document's titles; the sign-in of its PowerShell
//! example (`/signinBody`, then `/signin2fa` — and the example's `/sigin2fa`) hands out the token.

use super::{Failure, Vendor, authenticate, reason, reset_one};
use crate::http::AppState;
use crate::http::error::{PROBLEM_JSON, Problem};
use crate::http::extract::{ClientAddr, bearer_token, parse_uuid};
use crate::http::ratelimit::AuthLimits;
use crate::domain::role::Role;
use crate::service::{LoginStep, ResetOutcome};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const VENDOR: Vendor = Vendor::Nps;

// The document's titles.
pub const ERROR_RESETTING: &str = "Error resetting MFA";
pub const NOT_ADMINISTRATOR: &str = "User is not an Administrator";
pub const USER_NOT_FOUND: &str = "User not found";
/// Our title for an Administrator refused by the role table (an Admin resetting an Owner).
pub const ROLE_TOO_LOW: &str = "Role does not allow resetting this user";

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(reset_mfa))
        .routes(routes!(sign_in))
        .routes(routes!(sign_in_2fa))
        .routes(routes!(sign_in_2fa_as_in_the_example))
}

/// The first sign-in step.
#[derive(Deserialize, ToSchema)]
pub struct NpsSignIn {
    #[serde(rename = "Login", alias = "login")]
    #[schema(example = "User")]
    pub login: String,
    #[serde(rename = "Password", alias = "password")]
    #[schema(example = "Password")]
    pub password: String,
}

/// The `type` ASP.NET Core gives each status's ProblemDetails.
fn type_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "https://tools.ietf.org/html/rfc7231#section-6.5.1",
        401 => "https://tools.ietf.org/html/rfc7235#section-3.1",
        403 => "https://tools.ietf.org/html/rfc7231#section-6.5.3",
        404 => "https://tools.ietf.org/html/rfc7231#section-6.5.4",
        413 => "https://tools.ietf.org/html/rfc7231#section-6.5.11",
        429 => "https://tools.ietf.org/html/rfc6585#section-4",
        _ => "https://tools.ietf.org/html/rfc7231#section-6.6.1",
    }
}

/// A ProblemDetails; the request middleware fills in `instance` (the path) and `request_id`.
fn problem(status: StatusCode, title: &str, detail: impl Into<String>) -> Response {
    let problem = Problem {
        kind: type_of(status).into(),
        title: title.into(),
        status: status.as_u16(),
        detail: detail.into(),
        instance: None,
        request_id: None,
    };
    let mut response = (status, [(header::CONTENT_TYPE, PROBLEM_JSON)], problem.body()).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response.extensions_mut().insert(problem);
    response
}

fn failure(f: Failure) -> Response {
    let (status, title) = match f.status {
        StatusCode::BAD_REQUEST => (f.status, ERROR_RESETTING),
        StatusCode::FORBIDDEN => (f.status, NOT_ADMINISTRATOR),
        StatusCode::NOT_FOUND => (f.status, USER_NOT_FOUND),
        s if s.is_server_error() => {
            (StatusCode::INTERNAL_SERVER_ERROR, "An error occurred while processing your request.")
        }
        s => (s, s.canonical_reason().unwrap_or("Error")),
    };
    let detail = if status.is_server_error() {
        "the server could not complete this request; its log has the details under this request's id".to_string()
    } else {
        f.detail.clone()
    };
    let mut response = problem(status, title, detail);
    if let Some(secs) = f.retry_after() {
        response.headers_mut().insert(header::RETRY_AFTER, secs.clone());
    }
    response
}

/// Reset MFA for an NPS User: removes the user's second factor, recovery codes and sessions.
#[utoipa::path(
    put, path = "/api/v1/ManagedAccount/ResetMFA/{id}", tag = "Netwrix Privilege Secure",
    operation_id = "ResetMfaAsync",
    security(("nps_api_key" = []), ("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "NPS User to reset"),
        ("X-Reset-Reason" = Option<String>, Header, description = "Reason for the audit log (default \"Netwrix Privilege Secure-compatible API\")"),
    ),
    responses(
        (status = 200, description = "Success (no body)"),
        (status = 400, description = "Error resetting MFA (e.g. the user has no MFA to reset)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No API key or token, or an unknown, expired or revoked one", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "User is not an Administrator (an Owner or Admin); an Administrator the role table refuses (an Admin resetting an Owner) gets the title: Role does not allow resetting this user", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "User not found", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed authentications from this address; see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The server failed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn reset_mfa(
    State(state): State<Arc<AppState>>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    Path(given): Path<String>,
) -> Response {
    let actor = match authenticate(&state, &headers, &client, VENDOR).await {
        Ok(actor) => actor,
        Err(e) => return failure(e.into()),
    };
    let not_found = || problem(StatusCode::NOT_FOUND, USER_NOT_FOUND, format!("no user with id {given:?} in your org"));
    let Ok(id) = parse_uuid(&given) else {
        return not_found();
    };
    // The document's title is for a caller who is no Administrator; an Admin refused an Owner is one.
    let administrator = matches!(actor.role(), Role::Owner | Role::Admin);
    let result = match reset_one(&state, VENDOR, actor, id.to_string(), reason(&headers, VENDOR)).await {
        Ok(result) => result,
        Err(e) => return failure(e.into()),
    };
    let detail = result.detail.unwrap_or_default();
    match result.outcome {
        ResetOutcome::Reset => StatusCode::OK.into_response(),
        ResetOutcome::Skipped => problem(
            StatusCode::BAD_REQUEST,
            ERROR_RESETTING,
            "MFA is not set up for this user; there is nothing to reset",
        ),
        ResetOutcome::Denied if administrator => problem(StatusCode::FORBIDDEN, ROLE_TOO_LOW, detail),
        ResetOutcome::Denied => problem(StatusCode::FORBIDDEN, NOT_ADMINISTRATOR, detail),
        ResetOutcome::NotFound => not_found(),
        ResetOutcome::Failed | ResetOutcome::Unknown => {
            tracing::warn!(detail, "nps reset failed");
            problem(
                StatusCode::BAD_REQUEST,
                ERROR_RESETTING,
                "the reset could not be completed; nothing changed, try again",
            )
        }
    }
}

/// The token, as a JSON string: `Invoke-RestMethod` hands it back as a plain string.
fn token_answer(token: String) -> Response {
    Json(token).into_response()
}

fn unreadable(r: &BytesRejection) -> Response {
    let status = if r.status() == StatusCode::PAYLOAD_TOO_LARGE { r.status() } else { StatusCode::BAD_REQUEST };
    problem(
        status,
        status.canonical_reason().unwrap_or("Bad Request"),
        format!("the request body could not be read: {r}"),
    )
}

/// Sign in, step one: user name and password. Answers the token to send to `/signin2fa` with the
/// MFA code (for a user without MFA, already the session token).
#[utoipa::path(
    post, path = "/signinBody", tag = "Netwrix Privilege Secure",
    request_body(content = NpsSignIn, content_type = "application/json",
        description = "JSON, sent as application/json or as a form (PowerShell's Invoke-RestMethod does); not text/plain"),
    responses(
        (status = 200, description = "The token for the second step, as a JSON string", body = String),
        (status = 400, description = "The body is not `{\"Login\": ..., \"Password\": ...}`, or the Login is longer than 64 bytes", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is sent as text/plain or multipart (what web pages can post unasked)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Wrong user name or password", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The account must enroll MFA first (with mfadmin's own login)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts, or the factor is locked; see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The server failed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn sign_in(
    State(state): State<Arc<AppState>>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // PowerShell posts JSON as a form or as JSON; text/plain and multipart are what a web page can
    // post to another site without asking first (no CORS preflight), so they are refused.
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if !matches!(essence.as_str(), "" | "application/json" | "application/x-www-form-urlencoded") {
        return problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported Media Type",
            format!("send the body as Content-Type: application/json, not {content_type:?}"),
        );
    }
    let body = match body {
        Ok(body) => body,
        Err(r) => return unreadable(&r),
    };
    let request: NpsSignIn = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let detail =
                format!("the body must be JSON such as {{\"Login\": \"User\", \"Password\": \"Password\"}}: {e}");
            return problem(StatusCode::BAD_REQUEST, "Bad Request", detail);
        }
    };
    let login = request.login.trim().to_string();
    if let Err(e) = AuthLimits::check_name(&login) {
        return problem(StatusCode::BAD_REQUEST, "Bad Request", e.problem().detail);
    }
    if let Err(e) = state.limits.admit(&client, Some(&login)).await {
        state.metrics.record_login("password", "rate_limited");
        return failure(e.into());
    }
    let name = login.clone();
    let step =
        state.call_hashing(move |service, now| service.login_password(&name, &request.password, VENDOR.source(), now)).await;
    match step {
        Ok(LoginStep::Done(session)) => {
            state.metrics.record_login("password", "success");
            token_answer(session.token)
        }
        Ok(LoginStep::MfaRequired { challenge, expires_at }) => {
            state.metrics.record_login("password", "mfa_required");
            state.limits.remember_challenge(&challenge, &login, expires_at, state.now());
            token_answer(challenge)
        }
        Ok(LoginStep::EnrollmentRequired { .. }) => {
            state.metrics.record_login("password", "enrollment_required");
            problem(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "this account must enroll MFA first: log in with mfadmin (POST /api/v1/auth/login, then /api/v1/auth/enroll)",
            )
        }
        Err(e) => {
            let wrong = e.status() == StatusCode::UNAUTHORIZED;
            state.metrics.record_login("password", if wrong { "failure" } else { "error" });
            if wrong {
                state.limits.failed(&client, Some(&login), "password");
            }
            failure(e.into())
        }
    }
}

/// The MFA code of the second step: plain text, a JSON string, or `{"code": "..."}`.
fn code_of(body: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the MFA code must be text".to_string())?.trim();
    let code = if text.starts_with('"') {
        serde_json::from_str::<String>(text).map_err(|e| format!("the MFA code is not a valid JSON string: {e}"))?
    } else if text.starts_with('{') {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("the body is not valid JSON: {e}"))?;
        match value.get("code").or_else(|| value.get("Code")) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => return Err("send the MFA code as text, as a JSON string, or as {\"code\": \"123456\"}".into()),
        }
    } else {
        text.to_string()
    };
    let code = code.trim().to_string();
    if code.is_empty() {
        return Err("send the MFA code (from the authenticator app) as the body".into());
    }
    Ok(code)
}

async fn second_step(
    state: Arc<AppState>,
    client: String,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let token = match bearer_token(&headers) {
        Ok(token) => token,
        Err(e) => return failure(e.into()),
    };
    let body = match body {
        Ok(body) => body,
        Err(r) => return unreadable(&r),
    };
    let code = match code_of(&body) {
        Ok(code) => code,
        Err(why) => return problem(StatusCode::BAD_REQUEST, "Bad Request", why),
    };
    let account = state.limits.account_of(&token, state.now());
    if let Err(e) = state.limits.admit(&client, account.as_deref()).await {
        state.metrics.record_login("mfa", "rate_limited");
        return failure(e.into());
    }
    let challenge = token.clone();
    match state.call(move |service, now| service.login_code(&challenge, &code, VENDOR.source(), now)).await {
        Ok(session) => {
            state.limits.forget_challenge(&token);
            state.metrics.record_login("mfa", "success");
            token_answer(session.token)
        }
        Err(e) if e.status() == StatusCode::UNAUTHORIZED && account.is_none() => {
            // A user without MFA got the session token from the first step: it passes unchanged.
            let given = token.clone();
            match state.call(move |service, now| service.authenticate(&given, VENDOR.source(), now)).await {
                Ok(_) => token_answer(token),
                Err(_) => {
                    state.metrics.record_login("mfa", "failure");
                    state.limits.failed(&client, None, "mfa");
                    failure(e.into())
                }
            }
        }
        Err(e) => {
            let wrong = e.status() == StatusCode::UNAUTHORIZED;
            state.metrics.record_login("mfa", if wrong { "failure" } else { "error" });
            if wrong {
                state.limits.failed(&client, account.as_deref(), "mfa");
            }
            failure(e.into())
        }
    }
}

/// Sign in, step two: the token from `/signinBody` as `Authorization: Bearer`, the MFA code as the
/// body. Answers the session token for `Authorization: Bearer <token>`.
#[utoipa::path(
    post, path = "/signin2fa", tag = "Netwrix Privilege Secure", security(("bearer" = [])),
    request_body(content = String, content_type = "text/plain",
        description = "The MFA code (or a recovery code): plain text, a JSON string, or `{\"code\": \"123456\"}`"),
    responses(
        (status = 200, description = "The session token, as a JSON string", body = String, content_type = "application/json"),
        (status = 400, description = "No code in the body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Wrong or reused code, or an unknown or expired sign-in token", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts, or the factor is locked after wrong codes; see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The server failed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn sign_in_2fa(
    State(state): State<Arc<AppState>>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    second_step(state, client, headers, body).await
}

/// `/signin2fa` as the document's PowerShell example spells it.
#[utoipa::path(
    post, path = "/sigin2fa", tag = "Netwrix Privilege Secure", security(("bearer" = [])),
    request_body(content = String, content_type = "text/plain",
        description = "The MFA code (or a recovery code): plain text, a JSON string, or `{\"code\": \"123456\"}`"),
    responses(
        (status = 200, description = "The session token, as a JSON string", body = String, content_type = "application/json"),
        (status = 400, description = "No code in the body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Wrong or reused code, or an unknown or expired sign-in token", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts, or the factor is locked after wrong codes; see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The server failed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn sign_in_2fa_as_in_the_example(
    State(state): State<Arc<AppState>>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    second_step(state, client, headers, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_comes_as_text_a_json_string_or_an_object() {
        for body in ["123456", " 123456\r\n", "\"123456\"", r#"{"code": "123456"}"#, r#"{"Code": 123456}"#] {
            assert_eq!(code_of(body.as_bytes()).as_deref(), Ok("123456"), "{body:?}");
        }
        for bad in ["", "\"\"", "{}", r#"{"code": null}"#, "\"12"] {
            assert!(code_of(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }
}
