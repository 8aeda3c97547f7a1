//! Enrolling a TOTP factor: begin (a new sealed secret) and confirm (the first code, recovery codes).

use crate::auth::{token, totp};
use crate::domain::mfa::{MfaState, SealedSecret};
use crate::domain::policy;
use crate::domain::user::User;
use crate::domain::Timestamp;
use crate::error::{Error, Result};
use crate::store::{Change, UserWrite};
use serde::{Deserialize, Serialize};
use super::{Actor, Service, about, draft};

/// What a person needs to add the factor to an authenticator app.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Enrollment {
    pub username: String,
    pub otpauth_uri: String,
    pub secret_base32: String,
}

impl std::fmt::Debug for Enrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Enrollment({}, <secret>)", self.username)
    }
}

/// What a confirmed enrollment hands out, once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Confirmed {
    pub recovery_codes: Vec<String>,
}

impl std::fmt::Debug for Confirmed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Confirmed(<{} recovery codes>)", self.recovery_codes.len())
    }
}

impl Service {
    pub(super) fn may_enroll(&self, actor: &Actor, user: &User) -> Result<()> {
        let is_self = actor.user_id() == Some(user.id);
        if is_self {
            return Ok(());
        }
        policy::may_reset(actor.role(), user.role, false)
            .map_err(|policy::Denied(why)| Error::Forbidden(why.replace("reset the MFA of", "enroll MFA for")))
    }

    /// Begin enrollment: issue a new secret (state "pending") and return what the authenticator
    /// app needs. Replaces an unconfirmed secret; refuses while a confirmed factor exists.
    pub fn begin_enrollment(&self, actor: &Actor, reference: &str, issuer: &str, now: Timestamp) -> Result<Enrollment> {
        let user = self.visible_user(actor, reference)?;
        self.may_enroll(actor, &user)?;
        self.begin_enrollment_for(actor, user, issuer, now)
    }

    pub(super) fn begin_enrollment_for(&self, actor: &Actor, user: User, issuer: &str, now: Timestamp) -> Result<Enrollment> {
        if matches!(user.mfa, MfaState::Enrolled { .. }) {
            return Err(Error::Conflict(format!(
                "{} already has MFA enrolled; reset it first to enroll a new device",
                user.username
            )));
        }
        let secret = totp::new_secret();
        let sealed = self.sealer.seal(&secret, user.id.as_bytes());
        let mut next = user.clone();
        next.mfa = MfaState::Pending { secret: SealedSecret(sealed), started_at: now };
        let event = about(draft(actor, "mfa.enroll.begin", now), &user);
        self.commit(Change {
            users: vec![UserWrite { expected_version: Some(user.version), user: next }],
            audit: vec![event],
            ..Change::default()
        })?;
        Ok(Enrollment {
            username: user.username.clone(),
            otpauth_uri: totp::otpauth_uri(&secret, issuer, &user.username),
            secret_base32: totp::base32(&secret),
        })
    }

    /// Confirm a pending enrollment with the first code from the app. Returns the recovery codes,
    /// which are shown this once and stored only as hashes.
    pub fn confirm_enrollment(&self, actor: &Actor, reference: &str, code: &str, now: Timestamp) -> Result<Confirmed> {
        let user = self.visible_user(actor, reference)?;
        self.may_enroll(actor, &user)?;
        self.confirm_enrollment_for(actor, user, code, now)
    }

    pub(super) fn confirm_enrollment_for(&self, actor: &Actor, user: User, code: &str, now: Timestamp) -> Result<Confirmed> {
        let MfaState::Pending { secret, .. } = &user.mfa else {
            return Err(Error::Conflict(match user.mfa {
                MfaState::Enrolled { .. } => format!("{} has already confirmed MFA", user.username),
                _ => format!("{} has no enrollment to confirm: begin one first (mfa enroll)", user.username),
            }));
        };
        if user.lockout.is_locked(now) {
            return Err(Error::Locked { retry_after_secs: user.lockout.retry_after(now) });
        }
        let plain = self.sealer.open(&secret.0, user.id.as_bytes())?;
        let Some(step) = totp::check(&plain, code, now.max(0) as u64, self.policy.totp_skew) else {
            self.record_wrong_code(actor, &user, "mfa.enroll.confirm", now)?;
            return Err(Error::Unauthenticated("that code does not match; check the device's clock and try the next code".into()));
        };
        let codes = token::new_recovery_codes();
        let mut next = user.clone();
        next.mfa = MfaState::Enrolled { secret: secret.clone(), enrolled_at: now, last_step: step };
        next.recovery_codes = codes.iter().map(|c| token::hash(c)).collect();
        next.lockout = Default::default();
        next.mfa_enrolled_at = Some(now);
        let event = about(draft(actor, "mfa.enroll.confirm", now), &user);
        self.commit(Change {
            users: vec![UserWrite { expected_version: Some(user.version), user: next }],
            audit: vec![event],
            ..Change::default()
        })?;
        Ok(Confirmed { recovery_codes: codes })
    }
}
