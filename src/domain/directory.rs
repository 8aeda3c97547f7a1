//! An in-memory directory of user summaries, in user-name order, for listing and filtering without
//! reading every record from the store. The service keeps it in step with every write.

use super::mfa::{MfaState, MfaStatus};
use super::role::Role;
use super::user::{rfc3339, Status, User, UserView};
use super::Timestamp;
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

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

/// What listing needs of a user: everything a [`UserView`] shows, and no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub id: Uuid,
    pub number: u64,
    pub username: String,
    pub email: String,
    pub display_name: String,
    pub org: String,
    pub role: Role,
    pub status: Status,
    pub factor: Factor,
    pub locked_until: Option<Timestamp>,
    pub recovery_codes_left: usize,
    pub created_at: Timestamp,
    pub last_login_at: Option<Timestamp>,
    pub mfa_enrolled_at: Option<Timestamp>,
    pub mfa_reset_at: Option<Timestamp>,
    /// The stored record's version this summary was taken from.
    pub version: u64,
    /// User name, display name and email, lower-cased, for text filters.
    pub haystack: String,
}

impl Summary {
    pub fn of(user: &User) -> Summary {
        Summary {
            id: user.id,
            number: user.number,
            username: user.username.clone(),
            email: user.email.clone(),
            display_name: user.display_name.clone(),
            org: user.org.clone(),
            role: user.role,
            status: user.status,
            factor: Factor::of(&user.mfa),
            locked_until: user.lockout.locked_until,
            recovery_codes_left: user.recovery_codes.len(),
            created_at: user.created_at,
            last_login_at: user.last_login_at,
            mfa_enrolled_at: user.mfa_enrolled_at,
            mfa_reset_at: user.mfa_reset_at,
            version: user.version,
            haystack: format!("{}\n{}\n{}", user.username, user.display_name, user.email).to_lowercase(),
        }
    }

    pub fn mfa_status(&self, org_enforces_mfa: bool, now: Timestamp) -> MfaStatus {
        self.factor.status(self.locked_until, org_enforces_mfa, now)
    }

    pub fn view(&self, org_enforces_mfa: bool, now: Timestamp) -> UserView {
        UserView {
            id: self.id,
            number: self.number,
            username: self.username.clone(),
            email: self.email.clone(),
            display_name: self.display_name.clone(),
            org: self.org.clone(),
            role: self.role,
            status: self.status,
            mfa: self.mfa_status(org_enforces_mfa, now),
            recovery_codes_left: self.recovery_codes_left,
            created_at: rfc3339(self.created_at),
            last_login_at: self.last_login_at.map(rfc3339),
            mfa_enrolled_at: self.mfa_enrolled_at.map(rfc3339),
            mfa_reset_at: self.mfa_reset_at.map(rfc3339),
        }
    }
}

/// Summaries of every user, ordered by lower-cased user name.
#[derive(Debug, Default)]
pub struct Directory {
    by_name: BTreeMap<(String, Uuid), Summary>,
    name_of: HashMap<Uuid, String>,
}

impl Directory {
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Add or replace a user's summary, unless the directory already holds a newer version
    /// (writes may be noted out of order by concurrent callers).
    pub fn upsert(&mut self, summary: Summary) {
        if let Some(old_name) = self.name_of.get(&summary.id) {
            let old_key = (old_name.clone(), summary.id);
            if self.by_name.get(&old_key).is_some_and(|old| old.version >= summary.version) {
                return;
            }
            self.by_name.remove(&old_key);
        }
        let name = summary.username.to_lowercase();
        self.name_of.insert(summary.id, name.clone());
        self.by_name.insert((name, summary.id), summary);
    }

    /// Every summary, in user-name order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Summary> {
        self.by_name.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::mfa::Lockout;

    fn user(name: &str, version: u64) -> User {
        User {
            id: Uuid::from_u128(name.len() as u128),
            number: 1,
            username: name.into(),
            email: format!("{name}@x.example"),
            display_name: name.to_uppercase(),
            org: "acme".into(),
            role: Role::Member,
            status: Status::Active,
            password_hash: None,
            mfa: MfaState::NotEnrolled,
            lockout: Lockout::default(),
            recovery_codes: vec![],
            created_at: 0,
            last_login_at: None,
            mfa_enrolled_at: None,
            mfa_reset_at: None,
            version,
        }
    }

    #[test]
    fn keeps_name_order_and_refuses_older_versions() {
        let mut d = Directory::default();
        d.upsert(Summary::of(&user("bob", 2)));
        d.upsert(Summary::of(&user("Al", 1)));
        let names: Vec<_> = d.iter().map(|s| s.username.as_str()).collect();
        assert_eq!(names, ["Al", "bob"]);
        let mut renamed = user("bob", 1);
        renamed.username = "zed".into();
        d.upsert(Summary::of(&renamed));
        assert_eq!(d.iter().last().unwrap().username, "bob", "version 1 is older than the held 2");
        renamed.version = 3;
        d.upsert(Summary::of(&renamed));
        assert_eq!(d.iter().last().unwrap().username, "zed");
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn a_view_from_a_summary_equals_a_view_from_the_record() {
        let mut u = user("carol", 4);
        u.mfa = MfaState::NotEnrolled;
        for enforced in [false, true] {
            assert_eq!(Summary::of(&u).view(enforced, 10), UserView::new(&u, enforced, 10));
        }
    }
}
