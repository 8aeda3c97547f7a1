//! The native JSON API under `/api/v1`: each handler reads the request, calls the service once,
//! and writes its answer. Who may do what is decided by the service, not here.

use super::error::ApiError;
use crate::api::{AuditList, BulkResetResponse, EnrolledSession, LoginResponse, Me, OrgList, Problem, ResetSummary};
use super::extract::{parse_uuid, ApiJson, ApiPath, ApiQuery, Caller, ClientAddr, CsvBody, Source, UserId};
use super::AppState;
use super::ratelimit::AuthLimits;
use crate::domain::mfa::MfaStatus;
use crate::domain::role::Role;
use crate::domain::user::{self, Status, UserView};
use crate::error::Error;
use crate::service::{
    ApiKeyView, AuditFormat, AuditQuery, Confirmed, Enrollment, ImportOptions, ImportReport, LoginStep,
    NewSession, NewUser, OrgView, Principal, ResetOutcome, ResetReport, ResetResult, SortField, UserDetail, UserPage,
    StoreCheck, UserQuery, VerifyReport, parse_unused_for,
};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 500;
pub const MAX_BULK_IDS: usize = 10_000;
const DEFAULT_AUDIT: usize = 100;
const MAX_AUDIT: usize = 1000;

type S = State<Arc<AppState>>;

// ------------------------------------------------------------------ login

/// The first step of a login.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The user name, or the user's email address.
    #[schema(example = "alice")]
    pub username: String,
    #[schema(format = Password)]
    pub password: String,
}

/// The second step of a login.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaRequest {
    pub challenge: String,
    /// A six-digit TOTP code, or one of the recovery codes.
    #[schema(example = "123456")]
    pub code: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollBeginRequest {
    pub challenge: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollConfirmRequest {
    pub challenge: String,
    /// The first six-digit code the authenticator app shows.
    #[schema(example = "123456")]
    pub code: String,
}

// The answers that carry a token, a challenge or recovery codes never show them in `Debug`.
impl std::fmt::Debug for LoginResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoginResponse::Done { user, expires_at, .. } => write!(f, "Done({}, <token>, expires {expires_at})", user.username),
            LoginResponse::MfaRequired { expires_at, .. } => write!(f, "MfaRequired(<challenge>, expires {expires_at})"),
            LoginResponse::EnrollmentRequired { expires_at, .. } => write!(f, "EnrollmentRequired(<challenge>, expires {expires_at})"),
        }
    }
}

impl std::fmt::Debug for EnrolledSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EnrolledSession({}, <token>, <{} recovery codes>)", self.user.username, self.recovery_codes.len())
    }
}

impl std::fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NewApiKey({:?}, {}, <key>)", self.name, self.role)
    }
}

fn rfc3339(t: crate::domain::Timestamp) -> String {
    user::rfc3339(t)
}

/// Log in with user name and password.
#[utoipa::path(
    post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in, or the next step of the login", body = LoginResponse),
        (status = 400, description = "The user name is longer than 64 bytes", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Wrong user name or password", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts for this account from this address, or the factor is locked; see Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn login(
    State(state): S,
    ClientAddr(client): ClientAddr,
    Source(source): Source,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let username = req.username.trim().to_string();
    AuthLimits::check_name(&username)?;
    state.limits.admit(&client, Some(&username)).await.inspect_err(|_| state.metrics.record_login("password", "rate_limited"))?;
    let name = username.clone();
    let step = state.call_hashing(move |service, now| service.login_password(&name, &req.password, source, now)).await;
    let step = step.inspect_err(|e| {
        state.metrics.record_login("password", outcome_of(e));
        if e.status() == StatusCode::UNAUTHORIZED {
            state.limits.failed(&client, Some(&username), "password");
        }
    })?;
    let now = state.now();
    Ok(Json(match step {
        LoginStep::Done(s) => {
            state.metrics.record_login("password", "success");
            LoginResponse::Done { token: s.token, expires_at: s.expires_at, user: Box::new(s.user) }
        }
        LoginStep::MfaRequired { challenge, expires_at } => {
            state.metrics.record_login("password", "mfa_required");
            state.limits.remember_challenge(&challenge, &username, expires_at, now);
            LoginResponse::MfaRequired { challenge, expires_at: rfc3339(expires_at) }
        }
        LoginStep::EnrollmentRequired { challenge, expires_at } => {
            state.metrics.record_login("password", "enrollment_required");
            state.limits.remember_challenge(&challenge, &username, expires_at, now);
            LoginResponse::EnrollmentRequired { challenge, expires_at: rfc3339(expires_at) }
        }
    }))
}

fn outcome_of(e: &ApiError) -> &'static str {
    match e.status() {
        StatusCode::UNAUTHORIZED => "failure",
        StatusCode::TOO_MANY_REQUESTS => "locked",
        s if s.is_server_error() => "error",
        _ => "rejected",
    }
}

/// Finish a login with a TOTP or recovery code.
#[utoipa::path(
    post, path = "/api/v1/auth/mfa", tag = "auth",
    request_body = MfaRequest,
    responses(
        (status = 200, description = "Logged in", body = NewSession),
        (status = 401, description = "Wrong or reused code, or an unknown or expired challenge", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts, or the factor is locked after wrong codes; see Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn login_mfa(
    State(state): S,
    ClientAddr(client): ClientAddr,
    Source(source): Source,
    ApiJson(req): ApiJson<MfaRequest>,
) -> Result<Json<NewSession>, ApiError> {
    let account = state.limits.account_of(&req.challenge, state.now());
    state.limits.admit(&client, account.as_deref()).await.inspect_err(|_| state.metrics.record_login("mfa", "rate_limited"))?;
    let challenge = req.challenge.clone();
    let session = state.call(move |service, now| service.login_code(&req.challenge, &req.code, source, now)).await;
    let session = session.inspect_err(|e| {
        state.metrics.record_login("mfa", outcome_of(e));
        if e.status() == StatusCode::UNAUTHORIZED {
            state.limits.failed(&client, account.as_deref(), "mfa");
        }
    })?;
    state.limits.forget_challenge(&challenge);
    state.metrics.record_login("mfa", "success");
    Ok(Json(session))
}

/// Enrollment required at login: get the secret to add to an authenticator app.
#[utoipa::path(
    post, path = "/api/v1/auth/enroll", tag = "auth",
    request_body = EnrollBeginRequest,
    responses(
        (status = 200, description = "The otpauth URI (for a QR code) and the secret", body = Enrollment),
        (status = 401, description = "Unknown or expired challenge", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts; see Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn login_enroll_begin(
    State(state): S,
    ClientAddr(client): ClientAddr,
    Source(source): Source,
    ApiJson(req): ApiJson<EnrollBeginRequest>,
) -> Result<Json<Enrollment>, ApiError> {
    let account = state.limits.account_of(&req.challenge, state.now());
    state.limits.admit(&client, account.as_deref()).await?;
    let issuer = state.settings.issuer.clone();
    let enrollment =
        state.call(move |service, now| service.login_enroll_begin(&req.challenge, &issuer, source, now)).await?;
    Ok(Json(enrollment))
}

/// Enrollment required at login: confirm with the first code; the login completes.
#[utoipa::path(
    post, path = "/api/v1/auth/enroll/confirm", tag = "auth",
    request_body = EnrollConfirmRequest,
    responses(
        (status = 200, description = "Enrolled and logged in; the recovery codes are shown only now", body = EnrolledSession),
        (status = 401, description = "Wrong code, or an unknown or expired challenge", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No enrollment was begun for this challenge", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts, or locked after wrong codes; see Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn login_enroll_confirm(
    State(state): S,
    ClientAddr(client): ClientAddr,
    Source(source): Source,
    ApiJson(req): ApiJson<EnrollConfirmRequest>,
) -> Result<Json<EnrolledSession>, ApiError> {
    let account = state.limits.account_of(&req.challenge, state.now());
    state.limits.admit(&client, account.as_deref()).await.inspect_err(|_| state.metrics.record_login("enroll", "rate_limited"))?;
    let challenge = req.challenge.clone();
    let done = state.call(move |service, now| service.login_enroll_confirm(&req.challenge, &req.code, source, now)).await;
    let (session, confirmed) = done.inspect_err(|e| {
        state.metrics.record_login("enroll", outcome_of(e));
        if e.status() == StatusCode::UNAUTHORIZED {
            state.limits.failed(&client, account.as_deref(), "enroll");
        }
    })?;
    state.limits.forget_challenge(&challenge);
    state.metrics.record_login("enroll", "success");
    Ok(Json(EnrolledSession {
        token: session.token,
        expires_at: session.expires_at,
        user: session.user,
        recovery_codes: confirmed.recovery_codes,
    }))
}

/// End this session (or revoke this API key).
#[utoipa::path(
    post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204, description = "The token no longer works"))
)]
pub async fn logout(State(state): S, caller: Caller) -> Result<StatusCode, ApiError> {
    let token = caller.token;
    if token.is_empty() {
        // A local socket's peer: no session to end.
        return Ok(StatusCode::NO_CONTENT);
    }
    state.call(move |service, _| service.logout(&token)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who am I: the caller's name, role and org.
#[utoipa::path(
    get, path = "/api/v1/me", tag = "me", security(("bearer" = [])),
    responses((status = 200, description = "The caller", body = Me))
)]
pub async fn me(State(state): S, caller: Caller) -> Result<Json<Me>, ApiError> {
    let actor = caller.actor;
    let me = state
        .call(move |service, now| {
            let user = match actor.user_id() {
                Some(id) => Some(service.get_user(&actor, &id.to_string(), now)?.user),
                None => None,
            };
            let kind = match actor.principal {
                Principal::User { .. } => "user",
                Principal::ApiKey { .. } => "api_key",
                Principal::Console { .. } => "console",
                Principal::Validator { .. } => "validator",
            };
            Ok(Me { kind: kind.into(), name: actor.audit_name(), role: actor.role(), org: actor.org().map(str::to_string), user })
        })
        .await?;
    Ok(Json(me))
}

// ------------------------------------------------------------------ users

/// Filters, order and page of the user list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Text to find in user name, display name or email (case-insensitive).
    pub q: Option<String>,
    pub role: Option<Role>,
    /// Org name (the console sees every org; everyone else only their own).
    pub org: Option<String>,
    pub mfa: Option<MfaStatus>,
    pub status: Option<Status>,
    /// Only users whose confirmed factor has passed no check for this long (a factor never used
    /// counts from its enrollment): seconds, or a number of days, weeks or hours (`180d`, `26w`,
    /// `12h`).
    #[param(example = "180d")]
    pub unused_for: Option<String>,
    /// Sort field (default `username`).
    pub sort: Option<SortField>,
    /// Sort descending.
    pub desc: Option<bool>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size: 1 to 500, default 50.
    pub limit: Option<usize>,
}

/// List the users the caller may see: filter, sort, page with `cursor`.
#[utoipa::path(
    get, path = "/api/v1/users", tag = "users", security(("bearer" = [])),
    params(ListParams),
    responses((status = 200, description = "One page of users, and the cursor of the next", body = UserPage))
)]
pub async fn list_users(State(state): S, caller: Caller, ApiQuery(p): ApiQuery<ListParams>) -> Result<PageJson, ApiError> {
    let limit = p.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!("limit={limit}: a page holds 1 to {MAX_PAGE} users")));
    }
    let unused_for = match p.unused_for.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        Some(text) => Some(parse_unused_for(text, true).map_err(|e| ApiError::bad_request(format!("unused_for: {e}")))?),
        None => None,
    };
    let query = UserQuery {
        text: p.q,
        role: p.role,
        org: p.org,
        mfa: p.mfa,
        status: p.status,
        unused_for,
        sort: p.sort.unwrap_or_default(),
        descending: p.desc.unwrap_or(false),
        cursor: p.cursor.filter(|c| !c.trim().is_empty()),
        limit: Some(limit),
    };
    let actor = caller.actor;
    // Most pages come from memory at once; a filter not seen lately reads every user, off the
    // async threads.
    if let Some(page) = state.service().list_users_in_memory(&actor, &query, state.now()) {
        return Ok(PageJson(page?));
    }
    Ok(PageJson(state.call(move |service, now| service.list_users(&actor, &query, now)).await?))
}

/// A page of users as JSON, written into a buffer sized for it at once: a page of 50 is about
/// 15 KB, and growing a buffer from axum's 128 bytes would copy it eight times.
pub struct PageJson(UserPage);

impl IntoResponse for PageJson {
    fn into_response(self) -> Response {
        match page_json(&self.0) {
            Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
            Err(e) => ApiError::internal(format!("writing a page of users as JSON: {e}")).into_response(),
        }
    }
}

/// `page` as JSON, byte for byte what serde_json writes for a [`UserPage`] (a test holds it to
/// that), but with the field names written as they are and only the strings that need escaping
/// escaped: a page of 50 has 1,300 names and strings, and the list is the busiest route.
fn page_json(page: &UserPage) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(256 + 400 * page.users.len());
    out.extend_from_slice(b"{\"users\":[");
    for (i, u) in page.users.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"id\":\"");
        out.extend_from_slice(u.id.hyphenated().encode_lower(&mut Uuid::encode_buffer()).as_bytes());
        out.extend_from_slice(b"\",\"number\":");
        out.extend_from_slice(itoa::Buffer::new().format(u.number).as_bytes());
        for (name, value) in [(&b",\"username\":"[..], &u.username), (b",\"email\":", &u.email), (b",\"display_name\":", &u.display_name), (b",\"org\":", &u.org)] {
            out.extend_from_slice(name);
            json_str(&mut out, value)?;
        }
        for (name, value) in [(&b",\"role\":\""[..], u.role.as_str()), (b"\",\"status\":\"", u.status.as_str()), (b"\",\"mfa\":\"", u.mfa.as_str())] {
            out.extend_from_slice(name);
            out.extend_from_slice(value.as_bytes());
        }
        out.extend_from_slice(b"\",\"recovery_codes_left\":");
        out.extend_from_slice(itoa::Buffer::new().format(u.recovery_codes_left).as_bytes());
        out.extend_from_slice(b",\"created_at\":");
        json_str(&mut out, &u.created_at)?;
        for (name, value) in [(&b",\"last_login_at\":"[..], &u.last_login_at), (b",\"mfa_enrolled_at\":", &u.mfa_enrolled_at), (b",\"mfa_last_used_at\":", &u.mfa_last_used_at), (b",\"mfa_last_client\":", &u.mfa_last_client), (b",\"mfa_reset_at\":", &u.mfa_reset_at)] {
            out.extend_from_slice(name);
            json_opt_str(&mut out, value.as_deref())?;
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"next_cursor\":");
    json_opt_str(&mut out, page.next_cursor.as_deref())?;
    out.extend_from_slice(b",\"total\":");
    out.extend_from_slice(itoa::Buffer::new().format(page.total).as_bytes());
    out.push(b'}');
    Ok(out)
}

/// `s` as a JSON string: copied as it is when nothing in it needs escaping, else by serde_json.
fn json_str(out: &mut Vec<u8>, s: &str) -> serde_json::Result<()> {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        serde_json::to_writer(out, s)
    }
}

fn json_opt_str(out: &mut Vec<u8>, s: Option<&str>) -> serde_json::Result<()> {
    match s {
        Some(s) => json_str(out, s),
        None => {
            out.extend_from_slice(b"null");
            Ok(())
        }
    }
}

/// One user.
#[utoipa::path(
    get, path = "/api/v1/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The user", body = UserView),
        (status = 404, description = "No such user in the caller's org", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_user(State(state): S, caller: Caller, UserId(id): UserId) -> Result<Json<UserView>, ApiError> {
    let actor = caller.actor;
    let detail = state.call(move |service, now| service.get_user(&actor, &id.to_string(), now)).await?;
    Ok(Json(detail.user))
}

/// One user with its recent audit events (what the console's detail pane shows).
#[utoipa::path(
    get, path = "/api/v1/users/{id}/detail", tag = "users", security(("bearer" = [])),
    params(("id" = String, Path, description = "The user's id, user name, email or number")),
    responses(
        (status = 200, description = "The user and its ten newest audit events (those the caller may read)", body = UserDetail),
        (status = 404, description = "No such user in the caller's org", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn user_detail(State(state): S, caller: Caller, ApiPath(user): ApiPath) -> Result<Json<UserDetail>, ApiError> {
    let actor = caller.actor;
    Ok(Json(state.call(move |service, now| service.get_user(&actor, &user, now)).await?))
}

/// A user to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserRequest {
    #[schema(example = "bob")]
    pub username: String,
    #[schema(example = "bob@acme.example")]
    pub email: String,
    /// Default: the user name.
    pub display_name: Option<String>,
    /// Default `member`; never a role the caller may not manage.
    pub role: Option<Role>,
    /// The org's name: the caller's own (the console names any).
    #[schema(example = "Acme")]
    pub org: String,
    /// A password, so the user can log in; without one, the user cannot until an admin sets one.
    #[schema(format = Password)]
    pub password: Option<String>,
}

/// Add a user.
#[utoipa::path(
    post, path = "/api/v1/users", tag = "users", security(("bearer" = [])),
    request_body = NewUserRequest,
    responses(
        (status = 201, description = "Created; `Location` names the new user", body = UserView),
        (status = 400, description = "A field is not valid (user name, email, display name) or the password is too weak", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller's role may not create a user of this role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such org for the caller", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The user name or email is taken", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_user(State(state): S, caller: Caller, ApiJson(req): ApiJson<NewUserRequest>) -> Result<Response, ApiError> {
    let new = NewUser {
        display_name: req.display_name.unwrap_or_else(|| req.username.clone()),
        username: req.username,
        email: req.email,
        role: req.role.unwrap_or(Role::Member),
        org: req.org,
        password: req.password,
    };
    let actor = caller.actor;
    let view = state.call(move |service, now| service.add_user(&actor, new, now)).await?;
    let location = format!("/api/v1/users/{}", view.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(view)).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordRequest {
    #[schema(format = Password)]
    pub password: String,
    /// Your current password: needed (only) to change your own.
    #[schema(format = Password)]
    pub current_password: Option<String>,
}

/// Set a user's password (or your own); the user's sessions end.
#[utoipa::path(
    put, path = "/api/v1/users/{id}/password", tag = "users", security(("bearer" = [])),
    params(("id" = String, Path, description = "The user's id, user name, email or number")),
    request_body = PasswordRequest,
    responses(
        (status = 204, description = "Set; the user's sessions were ended"),
        (status = 400, description = "The password is too weak", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller may not set this user's password (its own: without the right current_password)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user in the caller's org", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn set_password(
    State(state): S,
    caller: Caller,
    ApiPath(user): ApiPath,
    ApiJson(req): ApiJson<PasswordRequest>,
) -> Result<StatusCode, ApiError> {
    let actor = caller.actor;
    state.call(move |service, now| service.set_password(&actor, &user, &req.password, req.current_password.as_deref(), now)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportParams {
    /// Check every row against the store and answer what would be imported; write nothing.
    pub check_only: Option<bool>,
    /// Import the valid rows and list the others, instead of importing nothing.
    pub skip_invalid: Option<bool>,
}

/// Import users from CSV: every row or, when any row cannot be imported, none.
#[utoipa::path(
    post, path = "/api/v1/users/import", tag = "users", security(("bearer" = [])),
    params(ImportParams),
    request_body(
        content = String, content_type = "text/csv",
        description = "A header `username,email,display_name,role,org` (other columns are ignored), then a user a line",
    ),
    responses(
        (status = 200, description = "Imported (with `check_only`: would be); rows left out with `skip_invalid`", body = ImportReport),
        (status = 400, description = "Rows that cannot be imported, each named by line and column (nothing was imported), or no usable header", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The store changed during the import; nothing was imported", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The CSV is larger than [server] bulk_body_limit_bytes (1 MiB by default): split it", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as Content-Type: text/csv", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn import_users(
    State(state): S,
    caller: Caller,
    ApiQuery(p): ApiQuery<ImportParams>,
    CsvBody(csv): CsvBody,
) -> Result<Json<ImportReport>, ApiError> {
    let options = ImportOptions { check_only: p.check_only.unwrap_or(false), skip_invalid: p.skip_invalid.unwrap_or(false) };
    let actor = caller.actor;
    Ok(Json(state.call(move |service, now| service.import_csv(&actor, &csv, options, now)).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    /// `active` or `disabled`.
    pub status: Status,
}

/// Disable a user (its sessions end) or enable it again.
#[utoipa::path(
    put, path = "/api/v1/users/{id}/status", tag = "users", security(("bearer" = [])),
    params(("id" = String, Path, description = "The user's id, user name, email or number")),
    request_body = StatusRequest,
    responses(
        (status = 200, description = "The user with its new status", body = UserView),
        (status = 403, description = "The caller may not change this user's status", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user in the caller's org", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn set_status(
    State(state): S,
    caller: Caller,
    ApiPath(user): ApiPath,
    ApiJson(req): ApiJson<StatusRequest>,
) -> Result<Json<UserView>, ApiError> {
    let actor = caller.actor;
    Ok(Json(state.call(move |service, now| service.set_status(&actor, &user, req.status, now)).await?))
}

/// Begin enrolling a second factor for a user (an admin at the user's side with the user's phone).
#[utoipa::path(
    post, path = "/api/v1/users/{id}/mfa/enroll", tag = "mfa", security(("bearer" = [])),
    params(("id" = String, Path, description = "The user's id, user name, email or number")),
    responses(
        (status = 200, description = "The otpauth URI (for a QR code) and the secret", body = Enrollment),
        (status = 403, description = "The caller may not enroll this user", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user in the caller's org", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A factor is already enrolled: reset it first", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn user_enroll_begin(State(state): S, caller: Caller, ApiPath(user): ApiPath) -> Result<Json<Enrollment>, ApiError> {
    let actor = caller.actor;
    let issuer = state.settings.issuer.clone();
    Ok(Json(state.call(move |service, now| service.begin_enrollment(&actor, &user, &issuer, now)).await?))
}

/// Confirm a user's enrollment with the first code; returns the recovery codes, shown only now.
#[utoipa::path(
    post, path = "/api/v1/users/{id}/mfa/confirm", tag = "mfa", security(("bearer" = [])),
    params(("id" = String, Path, description = "The user's id, user name, email or number")),
    request_body = CodeRequest,
    responses(
        (status = 200, description = "Enrolled", body = Confirmed),
        (status = 401, description = "Wrong code", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller may not enroll this user", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user in the caller's org", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No enrollment to confirm", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many wrong codes: confirming is locked for a while; see Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn user_enroll_confirm(
    State(state): S,
    caller: Caller,
    ApiPath(user): ApiPath,
    ApiJson(req): ApiJson<CodeRequest>,
) -> Result<Json<Confirmed>, ApiError> {
    let actor = caller.actor;
    Ok(Json(state.call(move |service, now| service.confirm_enrollment(&actor, &user, &req.code, now)).await?))
}

/// Reset one user's MFA.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// Why; recorded in the audit log (required unless the server's config says otherwise).
    #[schema(example = "lost phone, ticket 4711")]
    pub reason: Option<String>,
    /// Decide and report, change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// The answer to a single reset: 200 only when the reset happened (or would, in a dry run).
fn single_result(state: &AppState, report: ResetReport) -> Result<Json<ResetResult>, ApiError> {
    state.metrics.record_resets(&report);
    let result = report.results.into_iter().next().ok_or_else(|| ApiError::internal("a reset returned no result"))?;
    let detail = result.detail.clone().unwrap_or_default();
    match result.outcome {
        ResetOutcome::Reset => Ok(Json(result)),
        ResetOutcome::Skipped => Err(ApiError::conflict(format!(
            "nothing to reset: {} has no second factor (MFA is {})",
            result.username.as_deref().unwrap_or(&result.target),
            result.mfa_after.map_or("not set up", |m| m.as_str())
        ))),
        ResetOutcome::Denied => Err(ApiError::forbidden(detail)),
        ResetOutcome::NotFound => Err(ApiError::from(Error::not_found(format!("user {:?}", result.target)))),
        ResetOutcome::Failed | ResetOutcome::Unknown => Err(ApiError::conflict(detail)),
    }
}

/// Reset one user's MFA: the factor, its recovery codes and the user's sessions go, in one unit.
#[utoipa::path(
    post, path = "/api/v1/users/{id}/mfa/reset", tag = "mfa", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The user's id")),
    request_body = ResetRequest,
    responses(
        (status = 200, description = "Reset (or, in a dry run, would be)", body = ResetResult),
        (status = 403, description = "The caller's role may not reset this user's role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user in the caller's org", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The user has no MFA to reset, or kept changing", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn reset_user(
    State(state): S,
    caller: Caller,
    UserId(id): UserId,
    ApiJson(req): ApiJson<ResetRequest>,
) -> Result<Json<ResetResult>, ApiError> {
    let actor = caller.actor;
    let report = state
        .call(move |service, now| service.reset_mfa(&actor, &[id.to_string()], req.reason.as_deref(), req.dry_run, now))
        .await?;
    single_result(&state, report)
}

/// Lift the lockout of one user's factor.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnlockRequest {
    /// Why; recorded in the audit log. Optional even where resets need one: an unlock takes nothing away.
    #[schema(example = "locked out on the phone, ticket 4712")]
    pub reason: Option<String>,
}

/// Unlock a factor that wrong codes locked, at once: the factor and its recovery codes stay, the
/// count of wrong codes starts again from zero. Who may reset a user's MFA may unlock it.
#[utoipa::path(
    post, path = "/api/v1/users/{id}/mfa/unlock", tag = "mfa", security(("bearer" = [])),
    params(("id" = String, Path, description = "The user's id, user name, email or number")),
    request_body = UnlockRequest,
    responses(
        (status = 200, description = "Unlocked: the user with its MFA state now", body = UserView),
        (status = 403, description = "The caller's role may not unlock this user's MFA, or it is the caller's own", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user in the caller's org", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The factor is not locked", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn unlock_user(
    State(state): S,
    caller: Caller,
    ApiPath(user): ApiPath,
    ApiJson(req): ApiJson<UnlockRequest>,
) -> Result<Json<UserView>, ApiError> {
    let actor = caller.actor;
    Ok(Json(state.call(move |service, now| service.unlock_mfa(&actor, &user, req.reason.as_deref(), now)).await?))
}

/// Reset the MFA of many users at once.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkResetRequest {
    /// User ids, 1 to 10,000.
    #[schema(value_type = Vec<Uuid>)]
    pub ids: Vec<String>,
    #[schema(example = "lost phones after the office move")]
    pub reason: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
}

/// Reset the MFA of up to 10,000 users: each user is one atomic unit, with its own result.
#[utoipa::path(
    post, path = "/api/v1/mfa/reset", tag = "mfa", security(("bearer" = [])),
    request_body = BulkResetRequest,
    responses(
        (status = 200, description = "One result per id: reset, skipped, denied, not_found or failed", body = BulkResetResponse),
        (status = 413, description = "The body is over 1 MiB", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn bulk_reset(
    State(state): S,
    caller: Caller,
    ApiJson(req): ApiJson<BulkResetRequest>,
) -> Result<Json<BulkResetResponse>, ApiError> {
    if req.ids.is_empty() {
        return Err(ApiError::bad_request("ids is empty: name at least one user id"));
    }
    if req.ids.len() > MAX_BULK_IDS {
        return Err(ApiError::bad_request(format!(
            "{} ids in one call; the most is {MAX_BULK_IDS}: split the list",
            req.ids.len()
        )));
    }
    let mut ids = Vec::with_capacity(req.ids.len());
    for (i, id) in req.ids.iter().enumerate() {
        ids.push(parse_uuid(id).map_err(|e| ApiError::bad_request(format!("ids[{i}]: {e}")))?.to_string());
    }
    let actor = caller.actor;
    let report =
        state.call(move |service, now| service.reset_mfa(&actor, &ids, req.reason.as_deref(), req.dry_run, now)).await?;
    state.metrics.record_resets(&report);
    let summary = ResetSummary {
        reset: report.count(ResetOutcome::Reset),
        skipped: report.count(ResetOutcome::Skipped),
        denied: report.count(ResetOutcome::Denied),
        not_found: report.count(ResetOutcome::NotFound),
        failed: report.count(ResetOutcome::Failed),
    };
    Ok(Json(BulkResetResponse { dry_run: report.dry_run, summary, results: report.results }))
}

// ------------------------------------------------------------------ the caller's own factor

fn own_id(caller: &Caller) -> Result<Uuid, ApiError> {
    caller.actor.user_id().ok_or_else(|| {
        ApiError::forbidden("an API key has no second factor of its own: log in as the user to manage yours")
    })
}

/// Begin enrolling a second factor for yourself.
#[utoipa::path(
    post, path = "/api/v1/me/mfa/enroll", tag = "me", security(("bearer" = [])),
    responses(
        (status = 200, description = "The otpauth URI (for a QR code) and the secret", body = Enrollment),
        (status = 409, description = "A factor is already enrolled: reset it first", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "An API key has no second factor of its own", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn my_enroll_begin(State(state): S, caller: Caller) -> Result<Json<Enrollment>, ApiError> {
    let id = own_id(&caller)?;
    let actor = caller.actor;
    let issuer = state.settings.issuer.clone();
    Ok(Json(state.call(move |service, now| service.begin_enrollment(&actor, &id.to_string(), &issuer, now)).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    #[schema(example = "123456")]
    pub code: String,
}

/// Confirm your enrollment with the first code; returns the recovery codes, shown only now.
#[utoipa::path(
    post, path = "/api/v1/me/mfa/confirm", tag = "me", security(("bearer" = [])),
    request_body = CodeRequest,
    responses(
        (status = 200, description = "Enrolled", body = Confirmed),
        (status = 403, description = "An API key has no second factor of its own", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Wrong code", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No enrollment to confirm", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Locked after wrong codes; see Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn my_enroll_confirm(State(state): S, caller: Caller, ApiJson(req): ApiJson<CodeRequest>) -> Result<Json<Confirmed>, ApiError> {
    let id = own_id(&caller)?;
    let actor = caller.actor;
    Ok(Json(state.call(move |service, now| service.confirm_enrollment(&actor, &id.to_string(), &req.code, now)).await?))
}

/// Reset your own MFA: give your current password as well.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MyResetRequest {
    /// Why; recorded in the audit log (required unless the server's config says otherwise).
    #[schema(example = "new phone")]
    pub reason: Option<String>,
    /// Your current password: a session alone may not drop your second factor.
    #[schema(format = Password)]
    pub current_password: Option<String>,
    /// Decide and report, change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// Reset your own MFA (for example before moving to a new phone), with your current password. Ends your sessions.
#[utoipa::path(
    post, path = "/api/v1/me/mfa/reset", tag = "me", security(("bearer" = [])),
    request_body = MyResetRequest,
    responses(
        (status = 200, description = "Reset", body = ResetResult),
        (status = 403, description = "Auditors cannot reset MFA, not even their own; or current_password is missing or wrong", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No MFA to reset", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn my_reset(State(state): S, caller: Caller, ApiJson(req): ApiJson<MyResetRequest>) -> Result<Json<ResetResult>, ApiError> {
    own_id(&caller)?;
    let actor = caller.actor;
    let report = state
        .call(move |service, now| {
            service.reset_own_mfa(&actor, req.current_password.as_deref(), req.reason.as_deref(), req.dry_run, now)
        })
        .await?;
    single_result(&state, report)
}

// ------------------------------------------------------------------ orgs

/// The orgs the caller can see (its own), with user counts.
#[utoipa::path(
    get, path = "/api/v1/orgs", tag = "orgs", security(("bearer" = [])),
    responses((status = 200, description = "The orgs", body = OrgList))
)]
pub async fn list_orgs(State(state): S, caller: Caller) -> Result<Json<OrgList>, ApiError> {
    let actor = caller.actor;
    Ok(Json(OrgList { orgs: state.call(move |service, now| service.orgs(&actor, now)).await? }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrgRequest {
    #[schema(example = "Globex")]
    pub name: String,
    /// Require MFA of the org's users.
    #[serde(default)]
    pub mfa_enforced: bool,
}

/// Create an org. Only the console operator creates orgs, so over HTTP the answer is 403 saying
/// to run `mfadmin org add` on the server's host; the route is here so that every client hears why.
#[utoipa::path(
    post, path = "/api/v1/orgs", tag = "orgs", security(("bearer" = [])),
    request_body = NewOrgRequest,
    responses(
        (status = 201, description = "Created", body = OrgView),
        (status = 403, description = "Only the console operator creates orgs: run `mfadmin org add` on the server's host", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "An org of that name exists", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_org(State(state): S, caller: Caller, ApiJson(req): ApiJson<NewOrgRequest>) -> Result<Response, ApiError> {
    let actor = caller.actor;
    let org = state.call(move |service, now| service.add_org(&actor, &req.name, req.mfa_enforced, now)).await?;
    Ok((StatusCode::CREATED, Json(org)).into_response())
}

/// One org's settings.
#[utoipa::path(
    get, path = "/api/v1/orgs/{org}", tag = "orgs", security(("bearer" = [])),
    params(("org" = String, Path, description = "The org's name")),
    responses(
        (status = 200, description = "The org", body = OrgView),
        (status = 404, description = "No such org for the caller", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_org(State(state): S, caller: Caller, ApiPath(org): ApiPath) -> Result<Json<OrgView>, ApiError> {
    let actor = caller.actor;
    let key = user::org_key(&org);
    let orgs = state.call(move |service, now| service.orgs(&actor, now)).await?;
    orgs.into_iter()
        .find(|o| user::org_key(&o.name) == key)
        .map(Json)
        .ok_or_else(|| ApiError::from(Error::not_found(format!("org {org:?}"))))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnforceRequest {
    /// Require MFA of the org's users (true) or not (false).
    pub enforced: bool,
}

/// Require MFA of an org's users, or stop requiring it.
#[utoipa::path(
    put, path = "/api/v1/orgs/{org}/mfa", tag = "orgs", security(("bearer" = [])),
    params(("org" = String, Path, description = "The org's name")),
    request_body = EnforceRequest,
    responses(
        (status = 200, description = "The org with its new setting", body = OrgView),
        (status = 403, description = "Only an Owner or Admin changes org settings", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such org for the caller", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn enforce_mfa(
    State(state): S,
    caller: Caller,
    ApiPath(org): ApiPath,
    ApiJson(req): ApiJson<EnforceRequest>,
) -> Result<Json<OrgView>, ApiError> {
    let actor = caller.actor;
    Ok(Json(state.call(move |service, now| service.set_mfa_enforced(&actor, Some(&org), req.enforced, now)).await?))
}

// ------------------------------------------------------------------ audit

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Text to find in actor, action, target, reason or detail.
    pub q: Option<String>,
    /// How many events, newest first: 1 to 1000, default 100.
    pub limit: Option<usize>,
    /// Actions to leave out, separated by commas (e.g. `mfa.validate`, one event per second-factor
    /// check).
    #[param(example = "mfa.validate")]
    pub skip_actions: Option<String>,
}

/// The newest audit events of the caller's org.
#[utoipa::path(
    get, path = "/api/v1/audit", tag = "audit", security(("bearer" = [])),
    params(AuditParams),
    responses(
        (status = 200, description = "Events, newest first", body = AuditList),
        (status = 403, description = "Only Owners, Admins and Auditors read the audit log", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn audit_list(State(state): S, caller: Caller, ApiQuery(p): ApiQuery<AuditParams>) -> Result<Json<AuditList>, ApiError> {
    let limit = p.limit.unwrap_or(DEFAULT_AUDIT);
    if limit == 0 || limit > MAX_AUDIT {
        return Err(ApiError::bad_request(format!("limit={limit}: ask for 1 to {MAX_AUDIT} events")));
    }
    let actor = caller.actor;
    let skip_actions = p.skip_actions.iter().flat_map(|s| s.split(',')).map(str::trim).filter(|a| !a.is_empty()).map(str::to_string).collect();
    let query = AuditQuery { text: p.q, limit: Some(limit), skip_actions };
    Ok(Json(AuditList { events: state.call(move |service, _| service.audit_list(&actor, &query)).await? }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// `jsonl` (one JSON object a line; the default) or `csv` (with a header line).
    pub format: Option<AuditFormat>,
}

/// Bytes sent on in pieces of about this size while an export runs.
const EXPORT_CHUNK: usize = 64 * 1024;

/// What a blocking export writes into: pieces handed to the response as they fill.
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, Error>>,
    buf: Vec<u8>,
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= EXPORT_CHUNK {
            self.flush()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(EXPORT_CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client stopped reading the export"))
    }
}

/// Every audit event the caller may read, oldest first, streamed as it is read (never gathered
/// whole: the log can be long).
#[utoipa::path(
    get, path = "/api/v1/audit/export", tag = "audit", security(("bearer" = [])),
    params(ExportParams),
    responses(
        (status = 200, description = "The events, oldest first", content(
            (String = "application/x-ndjson"),
            (String = "text/csv"),
        )),
        (status = 403, description = "Only Owners, Admins and Auditors read the audit log", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn audit_export(State(state): S, caller: Caller, ApiQuery(p): ApiQuery<ExportParams>) -> Result<Response, ApiError> {
    let format = p.format.unwrap_or_default();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, Error>>(4);
    let service = state.service().clone();
    let actor = caller.actor;
    tokio::task::spawn_blocking(move || {
        let mut out = ChunkWriter { tx: tx.clone(), buf: Vec::with_capacity(EXPORT_CHUNK) };
        let done = service.audit_export_to(&actor, format, &mut out).and_then(|_| {
            std::io::Write::flush(&mut out).map_err(|e| Error::Storage(format!("writing the export: {e}")))
        });
        if let Err(e) = done {
            let _ = tx.blocking_send(Err(e));
        }
    });
    // Nothing is written before the service allows the export, so the first piece says whether
    // this is a 200 (a refusal, or a failure before any event, is a problem as usual).
    let first = match rx.recv().await {
        Some(Err(e)) => return Err(e.into()),
        first => first,
    };
    let pieces = futures_util::stream::unfold((first, rx), |(next, mut rx)| async move {
        let piece = match next {
            Some(piece) => piece,
            None => rx.recv().await?,
        };
        // A failure half-way can only cut the body off; the log says why.
        if let Err(e) = &piece {
            tracing::error!(error = %e, "the audit export failed after it began");
        }
        Some((piece, (None, rx)))
    });
    let (content_type, file) = match format {
        AuditFormat::Jsonl => ("application/x-ndjson", "audit.jsonl"),
        AuditFormat::Csv => ("text/csv; charset=utf-8", "audit.csv"),
    };
    let disposition = format!("attachment; filename=\"{file}\"");
    Ok(([(header::CONTENT_TYPE, content_type.to_string()), (header::CONTENT_DISPOSITION, disposition)], Body::from_stream(pieces))
        .into_response())
}

/// Walk the audit hash chain and name the first broken link.
#[utoipa::path(
    get, path = "/api/v1/audit/verify", tag = "audit", security(("bearer" = [])),
    responses(
        (status = 200, description = "Whether the chain is intact (`ok`), and where it breaks", body = VerifyReport),
        (status = 403, description = "Only Owners, Admins and Auditors read the audit log", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn audit_verify(State(state): S, caller: Caller) -> Result<Json<VerifyReport>, ApiError> {
    let actor = caller.actor;
    Ok(Json(state.call(move |service, _| service.audit_verify(&actor)).await?))
}

/// Check the store: every index entry matches its record, and the audit chain verifies. For the
/// console operator only, that is over the server's local socket (`mfadmin check` on its host).
#[utoipa::path(
    get, path = "/api/v1/check", tag = "audit", security(("bearer" = [])),
    responses(
        (status = 200, description = "What the check found (`problems` empty and `chain.ok`: all well)", body = StoreCheck),
        (status = 403, description = "Only the console operator checks the store", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn store_check(State(state): S, caller: Caller) -> Result<Json<StoreCheck>, ApiError> {
    let actor = caller.actor;
    Ok(Json(state.call(move |service, _| service.check_store(&actor)).await?))
}

// ------------------------------------------------------------------ API keys

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKeyRequest {
    #[schema(example = "ticket-bot")]
    pub name: String,
    /// The role the key acts with; never above the creator's. Default `helpdesk`.
    pub role: Option<Role>,
}

/// A new API key: the key itself is shown only in this answer.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct NewApiKey {
    /// Send as `Authorization: Bearer <key>`.
    pub key: String,
    pub name: String,
    pub role: Role,
    pub expires_at: String,
}

/// Create an API key for scripts (Owners and Admins).
#[utoipa::path(
    post, path = "/api/v1/apikeys", tag = "apikeys", security(("bearer" = [])),
    request_body = NewApiKeyRequest,
    responses(
        (status = 201, description = "Created; the key is shown only now", body = NewApiKey),
        (status = 403, description = "Only a logged-in Owner or Admin creates keys, never above its own role", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_api_key(
    State(state): S,
    caller: Caller,
    ApiJson(req): ApiJson<NewApiKeyRequest>,
) -> Result<Response, ApiError> {
    let actor = caller.actor;
    let role = req.role.unwrap_or(Role::Helpdesk);
    let name = req.name.clone();
    let (key, expires) = state.call(move |service, now| service.create_api_key(&actor, &req.name, role, now)).await?;
    Ok((StatusCode::CREATED, Json(NewApiKey { key, name, role, expires_at: rfc3339(expires) })).into_response())
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyList {
    pub keys: Vec<ApiKeyView>,
}

/// The API keys of the caller's org (never the keys themselves).
#[utoipa::path(
    get, path = "/api/v1/apikeys", tag = "apikeys", security(("bearer" = [])),
    responses(
        (status = 200, description = "The keys", body = ApiKeyList),
        (status = 403, description = "Only Owners and Admins see API keys", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_api_keys(State(state): S, caller: Caller) -> Result<Json<ApiKeyList>, ApiError> {
    let actor = caller.actor;
    Ok(Json(ApiKeyList { keys: state.call(move |service, now| service.list_api_keys(&actor, now)).await? }))
}

/// Revoke an API key.
#[utoipa::path(
    delete, path = "/api/v1/apikeys/{id}", tag = "apikeys", security(("bearer" = [])),
    params(("id" = String, Path, description = "The key's id from the list")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "The caller may not revoke this key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such key", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn revoke_api_key(State(state): S, caller: Caller, ApiPath(id): ApiPath) -> Result<StatusCode, ApiError> {
    let actor = caller.actor;
    state.call(move |service, now| service.revoke_api_key(&actor, &id, now)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_written_exactly_as_serde_json_writes_it() {
        let awkward = ["plain", "say \"hi\"", "back\\slash", "quote \" and back\\slash", "line\nbreak\ttab\r", "\u{1}\u{1f}\u{7f}", "Zoë 漢字 🙂", "", "/slash"];
        let when = [None, Some(0), Some(-1), Some(1_763_836_260), Some(253_402_300_800)];
        let mut users = Vec::new();
        for (i, text) in awkward.iter().enumerate() {
            for (j, at) in when.iter().enumerate() {
                let n = i * when.len() + j;
                users.push(UserView {
                    id: Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef_u128.wrapping_mul(n as u128 + 1)),
                    number: if n == 0 { u64::MAX } else { n as u64 },
                    username: format!("user{n}"),
                    email: format!("user{n}@example.org"),
                    display_name: text.to_string(),
                    org: awkward[(i + j) % awkward.len()].to_string(),
                    role: Role::ALL[n % Role::ALL.len()],
                    status: if n.is_multiple_of(2) { Status::Active } else { Status::Disabled },
                    mfa: MfaStatus::ALL[n % MfaStatus::ALL.len()],
                    recovery_codes_left: n * 1000,
                    created_at: user::rfc3339(at.unwrap_or(7)),
                    last_login_at: at.map(user::rfc3339),
                    mfa_enrolled_at: at.map(|t| format!("{}{text}", user::rfc3339(t))),
                    mfa_last_used_at: at.map(user::rfc3339),
                    mfa_last_client: Some(text.to_string()),
                    mfa_reset_at: when[(j + 1) % when.len()].map(user::rfc3339),
                });
            }
        }
        for (users, next_cursor) in [(users.clone(), Some("p\"cursor".to_string())), (users, None), (Vec::new(), None)] {
            let page = UserPage { total: users.len() * 3, users, next_cursor };
            let ours = page_json(&page).unwrap();
            assert_eq!(String::from_utf8(ours).unwrap(), serde_json::to_string(&page).unwrap());
        }
    }
}
