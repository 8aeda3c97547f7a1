//! The native API's JSON bodies that both sides read: the server writes them, the remote backend
//! (the console and CLI working through a server) reads them.

use crate::domain::role::Role;
use crate::domain::user::UserView;
use crate::service::{AuditView, OrgView, ResetResult};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The header with which mfadmin's own console and CLI say, in remote mode, which they are.
pub const CLIENT_HEADER: &str = "x-mfadmin-client";

/// An RFC 7807 problem: what went wrong, for the person who reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI that names the kind of problem, e.g. `urn:mfadmin:problem:not-found`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The kind of problem in words; the same for every problem of this type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What exactly was wrong with this request, and what to do instead.
    pub detail: String,
    /// The path of the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The request id, as in the `x-request-id` header and the server log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl Problem {
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec())
    }
}

/// What follows a correct password, told apart by `status`.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum LoginResponse {
    /// Logged in (the user has no second factor and the org does not require one).
    Done {
        /// The bearer token: send it as `Authorization: Bearer <token>`.
        token: String,
        expires_at: String,
        user: Box<UserView>,
    },
    /// Send a TOTP or recovery code with this challenge to `POST /api/v1/auth/mfa`.
    MfaRequired { challenge: String, expires_at: String },
    /// The org requires MFA and the user has none: enroll with this challenge at
    /// `POST /api/v1/auth/enroll`, then `POST /api/v1/auth/enroll/confirm`.
    EnrollmentRequired { challenge: String, expires_at: String },
}

/// A finished enrollment at login: the session, and the recovery codes (shown only this once).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct EnrolledSession {
    pub token: String,
    pub expires_at: String,
    pub user: UserView,
    pub recovery_codes: Vec<String>,
}

/// Who the caller is.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Me {
    /// `user`, `api_key` or `console`.
    pub kind: String,
    /// The name written into the audit log for this caller.
    pub name: String,
    pub role: Role,
    pub org: Option<String>,
    /// The caller's own user record (not for API keys).
    pub user: Option<UserView>,
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ResetSummary {
    pub reset: usize,
    pub skipped: usize,
    pub denied: usize,
    pub not_found: usize,
    pub failed: usize,
}

/// What a bulk reset did: one result per id, in the order given.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BulkResetResponse {
    pub dry_run: bool,
    pub summary: ResetSummary,
    pub results: Vec<ResetResult>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrgList {
    pub orgs: Vec<OrgView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditList {
    pub events: Vec<AuditView>,
}
