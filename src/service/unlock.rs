//! Unlocking a factor that wrong codes locked, without resetting it: the secret and the recovery
//! codes stay, only the count of wrong codes and the lockout go.

use crate::domain::audit::Outcome;
use crate::domain::policy;
use crate::domain::user::UserView;
use crate::domain::Timestamp;
use crate::error::{Error, Result};
use crate::store::{Change, UserWrite};
use super::{Actor, Service, about, check_optional_reason, draft};

impl Service {
    /// Lift the lockout of `reference`'s factor at once, instead of waiting for it to end or
    /// resetting the factor. Authorized as a reset of that user; refused with a conflict when the
    /// factor is not locked. One `mfa.unlock` event records it, or the refusal. A reason is kept
    /// when given but not required even where resets require one: nothing is taken away.
    pub fn unlock_mfa(&self, actor: &Actor, reference: &str, reason: Option<&str>, now: Timestamp) -> Result<UserView> {
        let reason = check_optional_reason(reason)?;
        // A user changed between reading and writing (a login counted a code): read again.
        for _ in 0..5 {
            let user = self.visible_user(actor, reference)?;
            let mut event = about(draft(actor, "mfa.unlock", now), &user);
            event.reason = reason.clone();
            if let Err(policy::Denied(why)) = policy::may_unlock(actor.role(), user.role, actor.user_id() == Some(user.id)) {
                event.outcome = Outcome::Denied;
                event.detail = Some(why.clone());
                self.commit(Change { audit: vec![event], ..Change::default() })?;
                return Err(Error::Forbidden(why));
            }
            let Some(until) = user.lockout.locked_until.filter(|_| user.lockout.is_locked(now)) else {
                return Err(Error::Conflict(format!(
                    "the MFA of {} is not locked ({} wrong codes in a row): there is nothing to unlock",
                    user.username, user.lockout.failures
                )));
            };
            event.detail = Some(format!(
                "was locked until {} after {} wrong codes in a row",
                crate::domain::user::rfc3339(until),
                user.lockout.failures
            ));
            let mut next = user.clone();
            next.lockout = Default::default();
            let change = Change {
                users: vec![UserWrite { expected_version: Some(user.version), user: next.clone() }],
                audit: vec![event],
                ..Change::default()
            };
            match self.commit(change) {
                Ok(()) => return self.view(&next, now),
                Err(Error::WriteConflict) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict(format!("the user {reference:?} kept changing; try again")))
    }
}
