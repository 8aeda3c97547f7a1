//! Logins, the second-factor check they share with validation, sessions and bearer tokens.

use crate::auth::{password, token, totp};
use crate::domain::audit::Outcome;
use crate::domain::mfa::{Lockout, MfaState, MfaStatus};
use crate::domain::user::{self, Status, User, UserView};
use crate::domain::Timestamp;
use crate::error::{Error, Result};
use crate::store::{Change, Session, SessionKind, TokenHash, UserWrite};
use serde::{Deserialize, Serialize};
use super::{Actor, Confirmed, Enrollment, Principal, Service, about, draft, principal_of};

/// A fresh bearer token. The token itself exists only here; the store keeps its hash.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewSession {
    pub token: String,
    pub expires_at: String,
    pub user: UserView,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NewSession({}, <token>)", self.user.username)
    }
}

/// What comes after a correct password.
#[derive(Clone, PartialEq, Eq)]
pub enum LoginStep {
    Done(Box<NewSession>),
    /// A TOTP or recovery code must follow, with this challenge token.
    MfaRequired { challenge: String, expires_at: Timestamp },
    /// The org enforces MFA and the user has none: enroll with this challenge token first.
    EnrollmentRequired { challenge: String, expires_at: Timestamp },
}

impl std::fmt::Debug for LoginStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoginStep::Done(s) => write!(f, "Done({s:?})"),
            LoginStep::MfaRequired { expires_at, .. } => write!(f, "MfaRequired(<challenge>, expires {expires_at})"),
            LoginStep::EnrollmentRequired { expires_at, .. } => write!(f, "EnrollmentRequired(<challenge>, expires {expires_at})"),
        }
    }
}

/// What one code did to a user's second factor (see [`Service::use_second_factor`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FactorCheck {
    /// Accepted and consumed; the user as stored afterwards.
    Accepted { user: Box<User>, kind: CodeKind },
    /// A TOTP code of a time step already used (a replay, or the same code sent twice at once).
    /// It does not count towards the lockout: whoever sent it knew the code.
    Replayed,
    /// Wrong: counted towards the lockout, which now stands at this.
    Wrong { failures: u32, locked_until: Option<Timestamp> },
    /// The factor is locked; no code is checked until then.
    Locked { retry_after_secs: u64 },
    /// The user has no confirmed factor.
    NoFactor,
}

/// Which kind of code passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeKind {
    Totp,
    RecoveryCode,
}

impl CodeKind {
    fn as_str(self) -> &'static str {
        match self {
            CodeKind::Totp => "totp",
            CodeKind::RecoveryCode => "recovery code",
        }
    }
}

/// How a second factor is being used: for the audit event and the factor's last-use record.
pub(super) struct FactorUse<'a> {
    pub actor: &'a Actor,
    /// The audit action (`auth.mfa`, `mfa.validate`).
    pub action: &'static str,
    /// Who the code was checked for (`http`, `tui`, a RADIUS server's name).
    pub client: &'a str,
    pub recovery_codes: bool,
    /// An accepted code completes a login (the user's last login is now).
    pub logs_in: bool,
}

/// What a code decides for one stored user, before anything is written.
enum Decision {
    Accept(User, CodeKind),
    Replayed,
    Wrong(User),
    Locked(u64),
    NoFactor,
}

/// At most this many rounds of re-reading a user whose record changed under a check; each round
/// loses only to a commit that did happen, so more than a few means a user under heavy fire.
const CHECK_ROUNDS: usize = 16;

impl Service {
    /// Decide what `code` does to `user`'s factor: the user after an acceptance (code consumed,
    /// lockout cleared) or after a wrong code (one more failure). Reads nothing, writes nothing.
    fn decide_code(&self, user: &User, code: &str, recovery_codes: bool, now: Timestamp) -> Result<Decision> {
        let MfaState::Enrolled { secret, enrolled_at, last_step } = &user.mfa else {
            return Ok(Decision::NoFactor);
        };
        if user.lockout.is_locked(now) {
            return Ok(Decision::Locked(user.lockout.retry_after(now)));
        }
        let mut next = user.clone();
        let accepted = if totp::looks_like_code(code) {
            let plain = self.sealer.open(&secret.0, user.id.as_bytes())?;
            match totp::check(&plain, code, now.max(0) as u64, self.policy.totp_skew) {
                Some(step) if step > *last_step => {
                    next.mfa = MfaState::Enrolled { secret: secret.clone(), enrolled_at: *enrolled_at, last_step: step };
                    Some(CodeKind::Totp)
                }
                Some(_) => return Ok(Decision::Replayed),
                None => None,
            }
        } else if recovery_codes {
            token::normalize_recovery_code(code).and_then(|c| {
                let h = token::hash(&c);
                let pos = user.recovery_codes.iter().position(|stored| stored == &h)?;
                next.recovery_codes.remove(pos);
                Some(CodeKind::RecoveryCode)
            })
        } else {
            None
        };
        Ok(match accepted {
            Some(kind) => {
                next.lockout = Default::default();
                Decision::Accept(next, kind)
            }
            None => {
                next.lockout = self.policy.lockout.after_failure(&user.lockout, now);
                Decision::Wrong(next)
            }
        })
    }

    /// Check `code` as the second factor of `user`, consuming it, and store what it did: an
    /// accepted code together with `on_accept`'s change (a session, a deleted challenge), a wrong
    /// one as one more failure towards the lockout. A write that meets a concurrent one reads the
    /// user again and decides again, so every wrong code is counted exactly once, and of one code
    /// sent several times at once exactly one is accepted (the others are replays). Every check is
    /// audited as `how.action`. Durable before it returns.
    pub(super) fn use_second_factor(
        &self,
        how: &FactorUse<'_>,
        user: &User,
        code: &str,
        now: Timestamp,
        on_accept: &dyn Fn(&User) -> Change,
    ) -> Result<FactorCheck> {
        let mut user = user.clone();
        // A login's events read as they always have; a validation's name the client it was for.
        let for_client = if how.logs_in { String::new() } else { format!(" for {}", how.client) };
        for _ in 0..CHECK_ROUNDS {
            let mut event = about(draft(how.actor, how.action, now), &user);
            let write = |next: User| UserWrite { expected_version: Some(user.version), user: next };
            let (check, change) = match self.decide_code(&user, code, how.recovery_codes, now)? {
                Decision::Accept(mut next, kind) => {
                    next.mfa_last_used_at = Some(now);
                    if how.logs_in {
                        next.last_login_at = Some(now);
                    }
                    next.mfa_last_client = Some(how.client.to_string());
                    event.detail = Some(format!("accepted a {}{for_client}", kind.as_str()));
                    let mut change = on_accept(&next);
                    change.audit.insert(0, event);
                    change.users.insert(0, write(next.clone()));
                    let after = User { version: user.version + 1, ..next };
                    (FactorCheck::Accepted { user: Box::new(after), kind }, change)
                }
                Decision::Wrong(next) => {
                    let Lockout { failures, locked_until } = next.lockout.clone();
                    event.outcome = Outcome::Failure;
                    event.detail = Some(match locked_until {
                        Some(t) if t > now => format!("wrong code ({failures} in a row){for_client}; locked for {} s", t - now),
                        _ => format!("wrong code ({failures} in a row){for_client}"),
                    });
                    let change = Change { users: vec![write(next)], audit: vec![event], ..Change::default() };
                    (FactorCheck::Wrong { failures, locked_until }, change)
                }
                decision => {
                    let (check, why) = match decision {
                        Decision::Replayed => (FactorCheck::Replayed, "a code already used".to_string()),
                        Decision::Locked(secs) => (FactorCheck::Locked { retry_after_secs: secs }, format!("locked for {secs} s more")),
                        _ => (FactorCheck::NoFactor, "no MFA enrolled".to_string()),
                    };
                    event.outcome = Outcome::Failure;
                    event.detail = Some(format!("{why}{for_client}"));
                    self.commit(Change { audit: vec![event], ..Change::default() })?;
                    return Ok(check);
                }
            };
            match self.commit(change) {
                Ok(()) => return Ok(check),
                Err(Error::WriteConflict) => {
                    user = self.store.get_user(user.id)?.ok_or_else(|| Error::not_found("user"))?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::WriteConflict)
    }

    /// Count one wrong code against `user`'s factor (an enrollment's confirmation), re-reading the
    /// user until the count is stored.
    pub(super) fn record_wrong_code(&self, actor: &Actor, user: &User, action: &str, now: Timestamp) -> Result<()> {
        let mut user = user.clone();
        for _ in 0..CHECK_ROUNDS {
            let mut next = user.clone();
            next.lockout = self.policy.lockout.after_failure(&user.lockout, now);
            let mut event = about(draft(actor, action, now), &user);
            event.outcome = Outcome::Failure;
            event.detail = Some(match next.lockout.locked_until {
                Some(t) if t > now => format!("wrong code ({} in a row); locked for {} s", next.lockout.failures, t - now),
                _ => format!("wrong code ({} in a row)", next.lockout.failures),
            });
            match self.commit(Change {
                users: vec![UserWrite { expected_version: Some(user.version), user: next }],
                audit: vec![event],
                ..Change::default()
            }) {
                Err(Error::WriteConflict) => user = self.store.get_user(user.id)?.ok_or_else(|| Error::not_found("user"))?,
                done => return done,
            }
        }
        Err(Error::WriteConflict)
    }

    /// A new bearer token for `user`, made by a request through `made_by` (its audit source).
    pub(super) fn put_token(&self, user: &User, kind: SessionKind, lifetime: i64, now: Timestamp, made_by: &str, extra: Change) -> Result<(String, Timestamp)> {
        let secret = token::new_token();
        let expires_at = now + lifetime;
        let mut change = extra;
        change.sessions_put.push((token::hash(&secret), Session::new(user.id, kind, now, expires_at, made_by)));
        self.commit(change)?;
        Ok((secret, expires_at))
    }

    pub(super) fn new_session(&self, user: &User, source: &str, now: Timestamp) -> Result<NewSession> {
        let mut logged_in = user.clone();
        logged_in.last_login_at = Some(now);
        let actor = Actor { principal: principal_of(user), source: source.into() };
        let extra = Change {
            users: vec![UserWrite { expected_version: Some(user.version), user: logged_in.clone() }],
            audit: vec![about(draft(&actor, "auth.login", now), user)],
            ..Change::default()
        };
        let (token, expires_at) = self.put_token(user, SessionKind::Session, self.policy.session_secs, now, source, extra)?;
        Ok(NewSession { token, expires_at: user::rfc3339(expires_at), user: self.view(&logged_in, now)? })
    }

    /// First step of a login: the password. Unknown users, wrong passwords and disabled accounts
    /// all get the same answer, after the same time.
    pub fn login_password(&self, username: &str, password_given: &str, source: &str, now: Timestamp) -> Result<LoginStep> {
        let denied = || Error::Unauthenticated("wrong user name or password".into());
        // Where a user name is asked, an email address works too (EntryGuard's users log in with it).
        let name = username.trim();
        let id = match self.store.user_id_by_name(name)? {
            None if name.contains('@') => self.store.user_id_by_email(name)?,
            id => id,
        };
        let user = match id {
            Some(id) => self.store.get_user(id)?,
            None => None,
        };
        let Some(user) = user else {
            password::verify_dummy(password_given);
            return Err(denied());
        };
        let ok = match &user.password_hash {
            Some(phc) => password::verify(password_given, phc),
            None => {
                password::verify_dummy(password_given);
                false
            }
        };
        let actor = Actor { principal: principal_of(&user), source: source.into() };
        if !ok || user.status != Status::Active {
            let mut event = about(draft(&actor, "auth.login", now), &user);
            event.outcome = Outcome::Failure;
            event.detail = Some(if ok { "account disabled".into() } else { "wrong password".into() });
            // Not flushed here (sled flushes within half a second): waiting for it made a known
            // user's failure measurably slower than an unknown one's (issue #20, item 7).
            self.commit_unflushed(Change { audit: vec![event], ..Change::default() })?;
            return Err(denied());
        }
        if user.lockout.is_locked(now) {
            return Err(Error::Locked { retry_after_secs: user.lockout.retry_after(now) });
        }
        let enforced = self.org_enforces(&user.org)?;
        let challenge = |kind: SessionKind| -> Result<LoginStep> {
            let enroll = kind == SessionKind::EnrollChallenge;
            let (challenge, expires_at) = self.put_token(&user, kind, self.policy.challenge_secs, now, source, Change::default())?;
            Ok(if enroll {
                LoginStep::EnrollmentRequired { challenge, expires_at }
            } else {
                LoginStep::MfaRequired { challenge, expires_at }
            })
        };
        match user.mfa_status(enforced, now) {
            MfaStatus::Enrolled | MfaStatus::Locked => challenge(SessionKind::MfaChallenge),
            MfaStatus::MustEnroll => challenge(SessionKind::EnrollChallenge),
            MfaStatus::Pending if enforced => challenge(SessionKind::EnrollChallenge),
            MfaStatus::NotEnrolled | MfaStatus::Pending => Ok(LoginStep::Done(Box::new(self.new_session(&user, source, now)?))),
        }
    }

    pub(super) fn challenge_user(&self, challenge: &str, expected: &SessionKind, now: Timestamp) -> Result<(TokenHash, User)> {
        let hash = token::hash(challenge.trim());
        let session = self.store.get_session(&hash)?.filter(|s| &s.kind == expected && s.expires_at > now);
        let Some(session) = session else {
            return Err(Error::Unauthenticated("the login challenge is unknown or expired; log in again".into()));
        };
        let user = self
            .store
            .get_user(session.user_id)?
            .filter(|u| u.status == Status::Active)
            .ok_or_else(|| Error::Unauthenticated("the account is no longer active".into()))?;
        Ok((hash, user))
    }

    /// Second step of a login: a TOTP or recovery code for the challenge from the first step. The
    /// accepted code, the new session and the spent challenge are one change.
    pub fn login_code(&self, challenge: &str, code: &str, source: &str, now: Timestamp) -> Result<NewSession> {
        let (hash, user) = self.challenge_user(challenge, &SessionKind::MfaChallenge, now)?;
        let actor = Actor { principal: principal_of(&user), source: source.into() };
        let secret = token::new_token();
        let expires_at = now + self.policy.session_secs;
        let how = FactorUse { actor: &actor, action: "auth.mfa", client: source, recovery_codes: true, logs_in: true };
        let session = |next: &User| Change {
            sessions_delete: vec![hash],
            sessions_put: vec![(
                token::hash(&secret),
                Session::new(next.id, SessionKind::Session, now, expires_at, source),
            )],
            audit: vec![about(draft(&actor, "auth.login", now), next)],
            ..Change::default()
        };
        match self.use_second_factor(&how, &user, code, now, &session)? {
            FactorCheck::Accepted { user, .. } => {
                Ok(NewSession { token: secret, expires_at: user::rfc3339(expires_at), user: self.view(&user, now)? })
            }
            FactorCheck::Replayed => {
                Err(Error::Unauthenticated("that code was already used; wait for the next code from the app".into()))
            }
            FactorCheck::Wrong { .. } => Err(Error::Unauthenticated("wrong code".into())),
            FactorCheck::Locked { retry_after_secs } => Err(Error::Locked { retry_after_secs }),
            FactorCheck::NoFactor => Err(Error::Conflict(format!("{} has no MFA enrolled", user.username))),
        }
    }

    /// Enrollment required at login: issue the secret for the challenge's user.
    pub fn login_enroll_begin(&self, challenge: &str, issuer: &str, source: &str, now: Timestamp) -> Result<Enrollment> {
        let (_, user) = self.challenge_user(challenge, &SessionKind::EnrollChallenge, now)?;
        let actor = Actor { principal: principal_of(&user), source: source.into() };
        self.begin_enrollment_for(&actor, user, issuer, now)
    }

    /// Enrollment required at login: confirm with the first code; the login completes.
    pub fn login_enroll_confirm(
        &self,
        challenge: &str,
        code: &str,
        source: &str,
        now: Timestamp,
    ) -> Result<(NewSession, Confirmed)> {
        let (hash, user) = self.challenge_user(challenge, &SessionKind::EnrollChallenge, now)?;
        let actor = Actor { principal: principal_of(&user), source: source.into() };
        let confirmed = self.confirm_enrollment_for(&actor, user.clone(), code, now)?;
        let user = self.store.get_user(user.id)?.ok_or_else(|| Error::not_found("user"))?;
        self.commit(Change { sessions_delete: vec![hash], ..Change::default() })?;
        Ok((self.new_session(&user, source, now)?, confirmed))
    }

    /// The actor a bearer token (session or API key) stands for.
    pub fn authenticate(&self, bearer: &str, source: &str, now: Timestamp) -> Result<Actor> {
        // The session and its user in one read (one round trip to a database).
        let (session, user) = self
            .store
            .session_and_user(&token::hash(bearer.trim()))?
            .ok_or_else(|| Error::Unauthenticated("unknown or revoked token".into()))?;
        if session.expires_at <= now {
            return Err(Error::Unauthenticated("the token has expired; log in again".into()));
        }
        self.note_use(bearer, &session, now)?;
        let source = &self.vouched_source(source, &session);
        let user = user
            .filter(|u| u.status == Status::Active)
            .ok_or_else(|| Error::Unauthenticated("the account behind this token is disabled or gone".into()))?;
        let principal = match session.kind {
            SessionKind::Session => principal_of(&user),
            SessionKind::ApiKey { name, role } => {
                Principal::ApiKey { user_id: user.id, name, org: user.org.clone(), role: role.max(user.role) }
            }
            SessionKind::MfaChallenge | SessionKind::EnrollChallenge => {
                return Err(Error::Unauthenticated("the login is not finished: send the MFA code first".into()));
            }
            SessionKind::ValidateKey { .. } => {
                return Err(Error::Unauthenticated(
                    "this key can only check second factors (/validate/check); use a session or an API key".into(),
                ));
            }
        };
        Ok(Actor { principal, source: source.into() })
    }

    /// Act as a named user without a password: only the console (which holds the key file) may.
    pub fn act_as(&self, actor: &Actor, username: &str, source: &str) -> Result<Actor> {
        if !matches!(actor.principal, Principal::Console { .. }) {
            return Err(Error::Forbidden("only the console operator can act as another user".into()));
        }
        let user = self.visible_user(actor, username)?;
        if user.status != Status::Active {
            return Err(Error::Forbidden(format!("{} is disabled", user.username)));
        }
        Ok(Actor { principal: principal_of(&user), source: source.into() })
    }

    pub fn logout(&self, bearer: &str) -> Result<()> {
        self.commit(Change { sessions_delete: vec![token::hash(bearer.trim())], ..Change::default() })
    }
}
