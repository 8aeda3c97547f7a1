//! The backend in this process: the service over the store this process holds.

use super::{Backend, Credential, Login, Proof};
use crate::domain::user::{Status, UserView};
use crate::error::Result;
use crate::app::Clock;
use crate::service::{
    Actor, ApiKeyView, AuditFormat, AuditQuery, AuditView, Confirmed, Enrollment, ImportOptions, ImportProgress, ImportReport, LoginStep, NewUser,
    OrgView, ResetReport, Service, StoreCheck, UserDetail, UserPage, UserQuery, VerifyReport,
};
use std::sync::Arc;

/// How many users in name order a console gets before the rest (a screenful or two).
const STREAM_FIRST: usize = 200;

pub struct Local {
    service: Arc<Service>,
    /// `tui` or `cli`: recorded in every audit event.
    source: String,
    /// The issuer shown in authenticator apps.
    issuer: String,
    clock: Clock,
}

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Local").field("source", &self.source).finish_non_exhaustive()
    }
}

impl Local {
    pub fn new(service: Arc<Service>, source: &str, issuer: &str) -> Local {
        Local::with_clock(service, source, issuer, Clock::system())
    }

    /// A backend whose "now" comes from `clock` (tests fix it).
    pub fn with_clock(service: Arc<Service>, source: &str, issuer: &str, clock: Clock) -> Local {
        Local { service, source: source.into(), issuer: issuer.into(), clock }
    }

    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    fn actor(&self, who: &Credential) -> Result<Actor> {
        match &who.proof {
            Proof::Actor { actor, .. } => Ok(actor.clone()),
            Proof::Token(token) => self.service.authenticate(token, &self.source, self.clock.now()),
            Proof::Peer => Err(crate::error::Error::Unauthenticated("a socket peer's credential works only through a server's socket".into())),
        }
    }

    fn session(&self, token: String) -> Result<Credential> {
        let actor = self.service.authenticate(&token, &self.source, self.clock.now())?;
        Ok(Credential::of_actor(actor, Some(token)))
    }
}

impl Backend for Local {
    fn badge(&self) -> Option<String> {
        None
    }

    fn login_password(&self, username: &str, password: &str) -> Result<Login> {
        Ok(match self.service.login_password(username, password, &self.source, self.clock.now())? {
            LoginStep::Done(s) => Login::Done(self.session(s.token)?),
            LoginStep::MfaRequired { challenge, .. } => Login::MfaRequired { challenge },
            LoginStep::EnrollmentRequired { challenge, .. } => Login::EnrollmentRequired { challenge },
        })
    }

    fn login_code(&self, challenge: &str, code: &str) -> Result<Credential> {
        let s = self.service.login_code(challenge, code, &self.source, self.clock.now())?;
        self.session(s.token)
    }

    fn login_enroll_begin(&self, challenge: &str) -> Result<Enrollment> {
        self.service.login_enroll_begin(challenge, &self.issuer, &self.source, self.clock.now())
    }

    fn login_enroll_confirm(&self, challenge: &str, code: &str) -> Result<(Credential, Confirmed)> {
        let (s, confirmed) = self.service.login_enroll_confirm(challenge, code, &self.source, self.clock.now())?;
        Ok((self.session(s.token)?, confirmed))
    }

    fn resume(&self, token: &str) -> Result<Credential> {
        self.session(token.to_string())
    }

    fn logout(&self, who: &Credential) -> Result<()> {
        match who.token() {
            Some(token) => self.service.logout(token),
            None => Ok(()),
        }
    }

    fn list_users(&self, who: &Credential, query: &UserQuery) -> Result<UserPage> {
        self.service.list_users(&self.actor(who)?, query, self.clock.now())
    }

    fn stream_users(&self, who: &Credential, emit: &mut dyn FnMut(Vec<UserView>, usize, usize) -> bool) -> Option<Result<()>> {
        Some(self.actor(who).and_then(|actor| self.service.stream_users(&actor, STREAM_FIRST, self.clock.now(), emit)))
    }

    fn user_detail(&self, who: &Credential, user: &str) -> Result<UserDetail> {
        self.service.get_user(&self.actor(who)?, user, self.clock.now())
    }

    fn set_status(&self, who: &Credential, user: &str, status: Status) -> Result<UserView> {
        self.service.set_status(&self.actor(who)?, user, status, self.clock.now())
    }

    fn add_user(&self, who: &Credential, new: NewUser) -> Result<UserView> {
        self.service.add_user(&self.actor(who)?, new, self.clock.now())
    }

    fn set_password(&self, who: &Credential, user: &str, password: &str) -> Result<()> {
        self.service.set_password(&self.actor(who)?, user, password, None, self.clock.now())
    }

    fn import_users(&self, who: &Credential, csv: &[u8], options: ImportOptions) -> Result<ImportReport> {
        self.service.import_csv(&self.actor(who)?, csv, options, self.clock.now())
    }

    fn import_users_with_progress(
        &self,
        who: &Credential,
        csv: &[u8],
        options: ImportOptions,
        progress: &mut dyn FnMut(ImportProgress),
    ) -> Result<ImportReport> {
        self.service.import_csv_with_progress(&self.actor(who)?, csv, options, self.clock.now(), progress)
    }

    fn reset_mfa(
        &self,
        who: &Credential,
        targets: &[String],
        reason: Option<&str>,
        dry_run: bool,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<ResetReport> {
        self.service.reset_mfa_with_progress(&self.actor(who)?, targets, reason, dry_run, self.clock.now(), progress)
    }

    /// Each target decided once: the service stops before writing when one names no one.
    fn reset_mfa_if_all_found(
        &self,
        who: &Credential,
        targets: &[String],
        reason: Option<&str>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<ResetReport> {
        self.service.reset_mfa_if_all_found(&self.actor(who)?, targets, reason, self.clock.now(), progress)
    }

    fn unlock_mfa(&self, who: &Credential, user: &str, reason: Option<&str>) -> Result<UserView> {
        self.service.unlock_mfa(&self.actor(who)?, user, reason, self.clock.now())
    }

    fn begin_enrollment(&self, who: &Credential, user: &str) -> Result<Enrollment> {
        self.service.begin_enrollment(&self.actor(who)?, user, &self.issuer, self.clock.now())
    }

    fn confirm_enrollment(&self, who: &Credential, user: &str, code: &str) -> Result<Confirmed> {
        self.service.confirm_enrollment(&self.actor(who)?, user, code, self.clock.now())
    }

    fn orgs(&self, who: &Credential) -> Result<Vec<OrgView>> {
        self.service.orgs(&self.actor(who)?, self.clock.now())
    }

    fn set_mfa_enforced(&self, who: &Credential, org: Option<&str>, enforced: bool) -> Result<OrgView> {
        self.service.set_mfa_enforced(&self.actor(who)?, org, enforced, self.clock.now())
    }

    fn add_org(&self, who: &Credential, name: &str, mfa_enforced: bool) -> Result<OrgView> {
        self.service.add_org(&self.actor(who)?, name, mfa_enforced, self.clock.now())
    }

    fn audit_list(&self, who: &Credential, query: &AuditQuery) -> Result<Vec<AuditView>> {
        self.service.audit_list(&self.actor(who)?, query)
    }

    fn audit_verify(&self, who: &Credential) -> Result<VerifyReport> {
        self.service.audit_verify(&self.actor(who)?)
    }

    fn audit_export(&self, who: &Credential, format: AuditFormat, out: &mut dyn std::io::Write) -> Result<()> {
        self.service.audit_export_to(&self.actor(who)?, format, out).map(|_| ())
    }

    fn api_keys(&self, who: &Credential) -> Result<Vec<ApiKeyView>> {
        self.service.list_api_keys(&self.actor(who)?, self.clock.now())
    }

    fn revoke_api_key(&self, who: &Credential, id: &str) -> Result<()> {
        self.service.revoke_api_key(&self.actor(who)?, id, self.clock.now())
    }

    fn check(&self, who: &Credential) -> Result<StoreCheck> {
        self.service.check_store(&self.actor(who)?)
    }

    fn backup(&self, who: &Credential, out: &mut dyn std::io::Write) -> Result<()> {
        crate::backup::take(&self.service, &self.actor(who)?, self.clock.now(), out).map(|_| ())
    }
}

/// A credential for the console operator of this store (what the CLI acts as locally).
pub fn console(source: &str) -> Credential {
    Credential::acting(Actor::console(source))
}

