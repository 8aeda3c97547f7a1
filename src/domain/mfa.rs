//! A user's second factor: its states, the lockout after wrong codes, and what a reset does to it.

use super::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A TOTP secret sealed with the store's key (nonce ‖ ciphertext). Never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret(pub Vec<u8>);

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealedSecret(<sealed>)")
    }
}

/// Where a user's TOTP factor stands, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MfaState {
    /// No second factor; the user logs in with the password alone.
    NotEnrolled,
    /// No second factor, and the org requires one: the next login must enroll first.
    MustEnroll,
    /// Enrollment begun: a secret was issued but no code has confirmed it yet.
    Pending { secret: SealedSecret, started_at: Timestamp },
    /// Active. `last_step` is the TOTP time step of the last accepted code (replays are refused).
    Enrolled { secret: SealedSecret, enrolled_at: Timestamp, last_step: u64 },
}

impl MfaState {
    /// Is there anything a reset would remove?
    pub fn has_factor(&self) -> bool {
        matches!(self, MfaState::Pending { .. } | MfaState::Enrolled { .. })
    }

    /// The state after a reset, for a user whose org does or does not enforce MFA.
    pub fn after_reset(org_enforces_mfa: bool) -> MfaState {
        if org_enforces_mfa { MfaState::MustEnroll } else { MfaState::NotEnrolled }
    }
}

/// The MFA state as shown to people and served in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MfaStatus {
    Enrolled,
    NotEnrolled,
    MustEnroll,
    Pending,
    Locked,
}

impl MfaStatus {
    pub const ALL: [MfaStatus; 5] =
        [MfaStatus::Enrolled, MfaStatus::NotEnrolled, MfaStatus::MustEnroll, MfaStatus::Pending, MfaStatus::Locked];

    pub fn as_str(self) -> &'static str {
        match self {
            MfaStatus::Enrolled => "enrolled",
            MfaStatus::NotEnrolled => "not_enrolled",
            MfaStatus::MustEnroll => "must_enroll",
            MfaStatus::Pending => "pending",
            MfaStatus::Locked => "locked",
        }
    }
}

impl fmt::Display for MfaStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for MfaStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().replace(['-', ' '], "_");
        MfaStatus::ALL.into_iter().find(|m| m.as_str().eq_ignore_ascii_case(&wanted)).ok_or_else(|| {
            format!("unknown MFA state {s:?}: expected one of enrolled, not_enrolled, must_enroll, pending, locked")
        })
    }
}

/// Consecutive wrong codes and, once past the threshold, until when the factor refuses all codes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lockout {
    pub failures: u32,
    pub locked_until: Option<Timestamp>,
}

impl Lockout {
    pub fn is_locked(&self, now: Timestamp) -> bool {
        self.locked_until.is_some_and(|t| t > now)
    }

    pub fn retry_after(&self, now: Timestamp) -> u64 {
        self.locked_until.map_or(0, |t| (t - now).max(0) as u64)
    }
}

/// How wrong codes lock a factor: after `threshold` failures in a row, for `base_secs`, doubling
/// with each further failure up to `max_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockoutPolicy {
    pub threshold: u32,
    pub base_secs: u64,
    pub max_secs: u64,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        LockoutPolicy { threshold: 5, base_secs: 30, max_secs: 3600 }
    }
}

impl LockoutPolicy {
    /// The lockout after one more wrong code at `now`.
    pub fn after_failure(&self, current: &Lockout, now: Timestamp) -> Lockout {
        let failures = current.failures.saturating_add(1);
        let locked_until = if failures >= self.threshold.max(1) {
            let doublings = (failures - self.threshold.max(1)).min(32);
            let delay = self.base_secs.saturating_mul(1u64 << doublings).min(self.max_secs);
            Some(now + delay as i64)
        } else {
            current.locked_until
        };
        Lockout { failures, locked_until }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockout_grows_and_is_capped() {
        let policy = LockoutPolicy { threshold: 3, base_secs: 30, max_secs: 100 };
        let mut l = Lockout::default();
        let now = 1_000;
        for _ in 0..2 {
            l = policy.after_failure(&l, now);
            assert!(!l.is_locked(now));
        }
        l = policy.after_failure(&l, now);
        assert_eq!(l.locked_until, Some(now + 30));
        l = policy.after_failure(&l, now);
        assert_eq!(l.locked_until, Some(now + 60));
        l = policy.after_failure(&l, now);
        assert_eq!(l.locked_until, Some(now + 100), "capped at max_secs");
        assert!(l.is_locked(now + 99));
        assert!(!l.is_locked(now + 100));
    }

    #[test]
    fn status_parses_loosely() {
        assert_eq!("must-enroll".parse::<MfaStatus>().unwrap(), MfaStatus::MustEnroll);
        assert!("bogus".parse::<MfaStatus>().is_err());
    }
}

/// Which factor a user has, without the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    None,
    Pending,
    Enrolled,
}

impl Factor {
    pub fn of(state: &MfaState) -> Factor {
        match state {
            MfaState::NotEnrolled | MfaState::MustEnroll => Factor::None,
            MfaState::Pending { .. } => Factor::Pending,
            MfaState::Enrolled { .. } => Factor::Enrolled,
        }
    }

    /// The state people see. Without a factor, the org's current enforcement decides between
    /// "not enrolled" and "must enroll"; locked wins over enrolled while a lockout runs.
    pub fn status(self, locked_until: Option<Timestamp>, org_enforces_mfa: bool, now: Timestamp) -> MfaStatus {
        match self {
            Factor::None if org_enforces_mfa => MfaStatus::MustEnroll,
            Factor::None => MfaStatus::NotEnrolled,
            Factor::Pending => MfaStatus::Pending,
            Factor::Enrolled if locked_until.is_some_and(|t| t > now) => MfaStatus::Locked,
            Factor::Enrolled => MfaStatus::Enrolled,
        }
    }
}
