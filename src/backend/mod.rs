//! The one interface the console and the command line call, whether the store is in this process
//! ([`local::Local`]) or behind a running `mfadmin serve` ([`remote::Remote`]). Nothing above it
//! knows which of the two it has; authorization stays in the service either way.

pub mod local;
pub mod on_demand;
pub mod remote;

use crate::domain::role::Role;
use crate::domain::user::{Status, UserView};
use crate::error::Result;
use crate::service::{
    Actor, ApiKeyView, AuditFormat, AuditQuery, AuditView, Confirmed, Enrollment, ImportOptions, ImportProgress, ImportReport, NewUser, OrgView,
    ResetOutcome, ResetReport, StoreCheck, UserDetail, UserPage, UserQuery, VerifyReport,
};

/// Users fetched per request when a whole list is loaded page by page (the server's most is 500).
pub const PAGE: usize = 500;
/// Targets sent per request in a bulk reset, so progress shows and a lost answer loses little.
pub const RESET_BATCH: usize = 200;

/// Who is acting: the name, role and org to show, and what proves it to the backend.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The name written into audit events for this admin.
    pub name: String,
    pub role: Role,
    /// The org acted in; `None` for the console operator, who sees every org.
    pub org: Option<String>,
    proof: Proof,
}

#[derive(Clone, PartialEq, Eq)]
enum Proof {
    /// In-process: the actor itself, and the session token of a password login (ended at logout).
    Actor { actor: Actor, token: Option<String> },
    /// A bearer token for a server.
    Token(String),
    /// The OS user at the other end of a server's local socket, whom the server knows by its
    /// credentials (no token).
    Peer,
}

impl Credential {
    /// Act as `actor` on an in-process store (the console operator, `--demo`, tests).
    pub fn acting(actor: Actor) -> Credential {
        Credential::of_actor(actor, None)
    }

    fn of_actor(actor: Actor, token: Option<String>) -> Credential {
        Credential {
            name: actor.audit_name(),
            role: actor.role(),
            org: actor.org().map(str::to_string),
            proof: Proof::Actor { actor, token },
        }
    }

    /// The bearer token behind this credential, if it has one (to keep it in a token file).
    pub fn token(&self) -> Option<&str> {
        match &self.proof {
            Proof::Actor { token, .. } => token.as_deref(),
            Proof::Token(t) => Some(t),
            Proof::Peer => None,
        }
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({} ({}), <proof>)", self.name, self.role)
    }
}

/// What follows a correct password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    Done(Credential),
    /// A TOTP or recovery code must follow, with this challenge.
    MfaRequired { challenge: String },
    /// The org requires MFA and the user has none: enroll with this challenge first.
    EnrollmentRequired { challenge: String },
}

/// Every operation the console and the CLI need, in-process or over HTTP. Blocking: call it off
/// any async runtime's threads (the console runs it on tokio's blocking pool).
pub trait Backend: Send + Sync {
    /// What the console shows beside its title for a backend elsewhere (`remote: <url>`).
    fn badge(&self) -> Option<String>;

    fn login_password(&self, username: &str, password: &str) -> Result<Login>;
    fn login_code(&self, challenge: &str, code: &str) -> Result<Credential>;
    fn login_enroll_begin(&self, challenge: &str) -> Result<Enrollment>;
    /// Confirm the enrollment begun at login; the login completes, with the recovery codes.
    fn login_enroll_confirm(&self, challenge: &str, code: &str) -> Result<(Credential, Confirmed)>;
    /// A credential for a bearer token kept from an earlier login (CLI token file).
    fn resume(&self, token: &str) -> Result<Credential>;
    /// End the session behind `who` (nothing to end for an in-process actor without a token).
    fn logout(&self, who: &Credential) -> Result<()>;

    /// One page of users: at most `query.limit`, after `query.cursor`.
    fn list_users(&self, who: &Credential, query: &UserQuery) -> Result<UserPage>;
    /// Every user `who` may see, in batches, the first page of them in user-name order at once
    /// (see [`crate::service::Service::stream_users`]); `emit(users, read, of)` returns false to
    /// stop. `None` from a backend that pages instead, with [`Backend::list_users`].
    fn stream_users(&self, _who: &Credential, _emit: &mut dyn FnMut(Vec<UserView>, usize, usize) -> bool) -> Option<Result<()>> {
        None
    }
    /// A user (by id, user name, email or number) with its recent audit events.
    fn user_detail(&self, who: &Credential, user: &str) -> Result<UserDetail>;
    fn set_status(&self, who: &Credential, user: &str, status: Status) -> Result<UserView>;
    fn add_user(&self, who: &Credential, new: NewUser) -> Result<UserView>;
    /// Set a user's password; the user's sessions end.
    fn set_password(&self, who: &Credential, user: &str, password: &str) -> Result<()>;
    /// Import users from CSV text (header `username,email,display_name,role,org`): all or none,
    /// unless `options.skip_invalid`; nothing at all with `options.check_only`.
    fn import_users(&self, who: &Credential, csv: &[u8], options: ImportOptions) -> Result<ImportReport>;
    /// [`Backend::import_users`], reporting how far it is on the way where the backend can see it
    /// (in process; a server does not say until it answers).
    fn import_users_with_progress(
        &self,
        who: &Credential,
        csv: &[u8],
        options: ImportOptions,
        _progress: &mut dyn FnMut(ImportProgress),
    ) -> Result<ImportReport> {
        self.import_users(who, csv, options)
    }

    /// Reset the MFA of every target, reporting `progress(done, total)` on the way. One result per
    /// target, in order; a result the backend cannot confirm is `unknown`, never guessed.
    fn reset_mfa(
        &self,
        who: &Credential,
        targets: &[String],
        reason: Option<&str>,
        dry_run: bool,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<ResetReport>;
    /// [`Backend::reset_mfa`], unless a target names no user the caller can see: then nothing
    /// changes, and the answer is the dry run's report (which says who). A backend that cannot
    /// decide and reset in one go asks twice: a dry run, then the reset.
    fn reset_mfa_if_all_found(
        &self,
        who: &Credential,
        targets: &[String],
        reason: Option<&str>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<ResetReport> {
        let plan = self.reset_mfa(who, targets, reason, true, &mut |_, _| {})?;
        if plan.count(ResetOutcome::NotFound) > 0 {
            return Ok(plan);
        }
        self.reset_mfa(who, targets, reason, false, progress)
    }
    /// Lift the lockout that wrong codes put on a user's factor (the factor itself stays).
    fn unlock_mfa(&self, who: &Credential, user: &str, reason: Option<&str>) -> Result<UserView>;
    fn begin_enrollment(&self, who: &Credential, user: &str) -> Result<Enrollment>;
    fn confirm_enrollment(&self, who: &Credential, user: &str, code: &str) -> Result<Confirmed>;

    fn orgs(&self, who: &Credential) -> Result<Vec<OrgView>>;
    fn set_mfa_enforced(&self, who: &Credential, org: Option<&str>, enforced: bool) -> Result<OrgView>;
    /// Create an org (the service lets only the console operator).
    fn add_org(&self, who: &Credential, name: &str, mfa_enforced: bool) -> Result<OrgView>;

    fn audit_list(&self, who: &Credential, query: &AuditQuery) -> Result<Vec<AuditView>>;
    fn audit_verify(&self, who: &Credential) -> Result<VerifyReport>;
    /// Every audit event `who` may read, oldest first, written to `out` as it arrives (not
    /// gathered first: the log can be long).
    fn audit_export(&self, who: &Credential, format: AuditFormat, out: &mut dyn std::io::Write) -> Result<()>;

    /// The unexpired API keys `who` may see (never the keys themselves).
    fn api_keys(&self, who: &Credential) -> Result<Vec<ApiKeyView>>;
    /// Revoke the API key with this id (from [`Backend::api_keys`]).
    fn revoke_api_key(&self, who: &Credential, id: &str) -> Result<()>;

    /// Check the store: indexes against records, and the audit chain (the console operator's).
    fn check(&self, who: &Credential) -> Result<StoreCheck>;

    /// A consistent backup of the whole store, written to `out` as it is made (never whole in memory).
    fn backup(&self, who: &Credential, out: &mut dyn std::io::Write) -> Result<()>;
}

/// Every user `query` finds, page by page (its cursor and limit are ignored).
pub fn list_all(backend: &dyn Backend, who: &Credential, query: &UserQuery) -> Result<Vec<UserView>> {
    let mut all = Vec::new();
    let mut page_query = UserQuery { cursor: None, limit: Some(PAGE), ..query.clone() };
    loop {
        let page = backend.list_users(who, &page_query)?;
        all.extend(page.users);
        match page.next_cursor {
            Some(next) => page_query.cursor = Some(next),
            None => return Ok(all),
        }
    }
}
