//! Users and orgs: the records, their validation, and the JSON view every front end shows.

use super::mfa::{Factor, Lockout, MfaState, MfaStatus};
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
    /// When the factor last passed a check (a login's second step or a validation), and for which
    /// client (`http`, `tui`, or the validating system's name or address).
    pub mfa_last_used_at: Option<Timestamp>,
    pub mfa_last_client: Option<String>,
    /// Kept just before `version`: the store reads a record's version from its end, past this field.
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
    #[allow(clippy::result_large_err)] // the record itself, moved either way; boxing would copy it
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
    /// When the second factor last passed a check, and for which client.
    pub mfa_last_used_at: Option<String>,
    pub mfa_last_client: Option<String>,
    pub mfa_reset_at: Option<String>,
}

/// `ts` as RFC 3339 in UTC to the second (`2026-11-22T18:31:00Z`). Years 0 to 9999 are written
/// here directly (every listed user has four such times, and a page of them is served thousands of
/// times a second); others by chrono, in its extended form.
pub fn rfc3339(ts: Timestamp) -> String {
    const FIRST: Timestamp = -62_167_219_200; // 0000-01-01T00:00:00Z
    const LAST: Timestamp = 253_402_300_799; // 9999-12-31T23:59:59Z
    if !(FIRST..=LAST).contains(&ts) {
        return chrono::DateTime::from_timestamp(ts, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| ts.to_string());
    }
    let (days, secs) = (ts.div_euclid(86_400), ts.rem_euclid(86_400) as u32);
    let (y, m, d) = civil_from_days(days);
    let mut out = *b"0000-00-00T00:00:00Z";
    let two = |out: &mut [u8; 20], at: usize, v: u32| {
        out[at] = b'0' + (v / 10) as u8;
        out[at + 1] = b'0' + (v % 10) as u8;
    };
    let y = y as u32; // 0..=9999 here
    two(&mut out, 0, y / 100);
    two(&mut out, 2, y % 100);
    two(&mut out, 5, m as u32);
    two(&mut out, 8, d as u32);
    two(&mut out, 11, secs / 3600);
    two(&mut out, 14, secs / 60 % 60);
    two(&mut out, 17, secs % 60);
    // Only ASCII digits and separators were written.
    String::from(std::str::from_utf8(&out).unwrap_or_default())
}

/// The proleptic Gregorian (year, month, day) of a count of days since 1970-01-01
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
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
    fn rfc3339_writes_what_chrono_writes() {
        let chrono_form = |ts: Timestamp| chrono::DateTime::from_timestamp(ts, 0).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let edges = [0, -1, 1, 86_399, 86_400, 951_782_400, 1_750_000_000, -62_167_219_200, 253_402_300_799, -62_167_219_201, 253_402_300_800];
        // Every day boundary and odd second over four centuries either side of 1970, and the edges.
        let sweep = (-146_097 * 4..146_097 * 4).step_by(7).map(|d: i64| d * 86_400 + (d.rem_euclid(86_400) * 7919) % 86_400);
        for ts in edges.into_iter().chain(sweep) {
            assert_eq!(rfc3339(ts), chrono_form(ts), "{ts}");
        }
        assert_eq!(rfc3339(1_763_836_260), "2025-11-22T18:31:00Z");
    }

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
