//! Users and orgs: the records, their validation, and the JSON view every front end shows.

use super::directory::{Factor, Summary};
use super::mfa::{Lockout, MfaState, MfaStatus};
use super::role::Role;
use super::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Active,
    Disabled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Disabled => "disabled",
        }
    }
}

/// A user as stored. `version` grows with every write, so a change made on a stale copy is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: Uuid,
    /// Short numeric id, unique and never reused, for APIs that address users by number.
    pub number: u64,
    pub username: String,
    pub email: String,
    pub display_name: String,
    /// The org's key (its lower-cased name).
    pub org: String,
    pub role: Role,
    pub status: Status,
    /// argon2id PHC string; `None` until a password is set (imported users).
    pub password_hash: Option<String>,
    pub mfa: MfaState,
    pub lockout: Lockout,
    /// SHA-256 of each unused recovery code.
    pub recovery_codes: Vec<[u8; 32]>,
    pub created_at: Timestamp,
    pub last_login_at: Option<Timestamp>,
    pub mfa_enrolled_at: Option<Timestamp>,
    pub mfa_reset_at: Option<Timestamp>,
    pub version: u64,
}

impl User {
    /// The state people see (see [`Factor::status`]).
    pub fn mfa_status(&self, org_enforces_mfa: bool, now: Timestamp) -> MfaStatus {
        Factor::of(&self.mfa).status(self.lockout.locked_until, org_enforces_mfa, now)
    }

    /// The user after an MFA reset, or `None` when there was no factor to reset.
    pub fn reset_mfa(&self, org_enforces_mfa: bool, now: Timestamp) -> Option<User> {
        if !self.mfa.has_factor() {
            return None;
        }
        self.clone().into_reset_mfa(org_enforces_mfa, now).ok()
    }

    /// [`User::reset_mfa`] that takes the record (and gives it back unchanged, as `Err`, when there
    /// was no factor to reset): what stays is moved rather than copied, and the factor and recovery
    /// codes are let go of here rather than carried along, emptied, with the change.
    pub fn into_reset_mfa(mut self, org_enforces_mfa: bool, now: Timestamp) -> Result<User, User> {
        if !self.mfa.has_factor() {
            return Err(self);
        }
        self.mfa = MfaState::after_reset(org_enforces_mfa);
        self.lockout = Lockout::default();
        self.recovery_codes = Vec::new();
        self.mfa_reset_at = Some(now);
        Ok(self)
    }
}

/// An organisation. Users act inside their own org only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Org {
    /// Lower-cased name; the key.
    pub key: String,
    pub name: String,
    pub mfa_enforced: bool,
    pub created_at: Timestamp,
}

/// The user object served by `--output json` and the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub number: u64,
    pub username: String,
    pub email: String,
    pub display_name: String,
    pub org: String,
    pub role: Role,
    pub status: Status,
    pub mfa: MfaStatus,
    pub recovery_codes_left: usize,
    /// RFC 3339 timestamps.
    pub created_at: String,
    pub last_login_at: Option<String>,
    pub mfa_enrolled_at: Option<String>,
    pub mfa_reset_at: Option<String>,
}

impl UserView {
    pub fn new(user: &User, org_enforces_mfa: bool, now: Timestamp) -> UserView {
        Summary::of(user).view(org_enforces_mfa, now)
    }
}

pub fn rfc3339(ts: Timestamp) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ts.to_string())
}

/// User names: 1–64 characters of letters, digits, `.`, `_`, `-`, `@`, starting with a letter or digit.
pub fn validate_username(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
    if name.is_empty() || name.len() > 64 {
        return Err(format!("user name {name:?} must be 1 to 64 characters long"));
    }
    if !name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()) || !name.chars().all(ok_char) {
        return Err(format!(
            "user name {name:?} may contain only letters, digits, '.', '_', '-', '@' and must start with a letter or digit"
        ));
    }
    Ok(())
}

pub fn validate_email(email: &str) -> Result<(), String> {
    let mut parts = email.split('@');
    let (local, domain) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let valid = parts.next().is_none()
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid { Ok(()) } else { Err(format!("{email:?} is not an email address like name@example.org")) }
}

/// Display and org names: 1–128 printable characters.
pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    if name.trim().is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(format!("{what} {name:?} must be 1 to 128 printable characters"));
    }
    Ok(())
}

pub fn org_key(name: &str) -> String {
    name.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_explains() {
        assert!(validate_username("alice.smith").is_ok());
        assert!(validate_username("-x").unwrap_err().contains("must start"));
        assert!(validate_username("").is_err());
        assert!(validate_email("a@b.org").is_ok());
        for bad in ["ab.org", "a@b", "a@@b.org", "a b@c.org", "@b.org"] {
            assert!(validate_email(bad).is_err(), "{bad}");
        }
        assert!(validate_name("display name", "  ").is_err());
    }
}
