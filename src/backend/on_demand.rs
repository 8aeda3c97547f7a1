//! The console's in-process backend: the store is opened when a login needs it and kept open only
//! while an admin is logged in, so a console left at its login screen holds no lock (a backup, a
//! cron job or a server can have the store meanwhile).

use super::local::Local;
use super::{Backend, Credential, Login};
use crate::domain::user::{Status, UserView};
use crate::error::Result;
use crate::service::{
    ApiKeyView, AuditFormat, AuditQuery, AuditView, Confirmed, Enrollment, ImportOptions, ImportProgress, ImportReport, NewUser, OrgView,
    ResetReport, StoreCheck, UserDetail, UserPage, UserQuery, VerifyReport,
};
use std::sync::{Arc, Mutex};

type Opener = Box<dyn Fn() -> Result<Local> + Send + Sync>;

pub struct OnDemand {
    open: Opener,
    local: Mutex<Option<Arc<Local>>>,
}

impl std::fmt::Debug for OnDemand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnDemand").field("open", &self.is_open()).finish_non_exhaustive()
    }
}

impl OnDemand {
    /// A backend that calls `open` when it first needs the store.
    pub fn new(open: impl Fn() -> Result<Local> + Send + Sync + 'static) -> OnDemand {
        OnDemand { open: Box::new(open), local: Mutex::new(None) }
    }

    /// Is the store open (and locked) now?
    pub fn is_open(&self) -> bool {
        self.slot().is_some()
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Arc<Local>>> {
        self.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The open store, opening it if need be.
    fn get(&self) -> Result<Arc<Local>> {
        let mut slot = self.slot();
        if let Some(local) = &*slot {
            return Ok(local.clone());
        }
        let local = Arc::new((self.open)()?);
        *slot = Some(local.clone());
        Ok(local)
    }

    /// Close the store (flushed first) unless work still holds it; the next call opens it again.
    fn release(&self) {
        let Some(local) = self.slot().take() else {
            return;
        };
        if let Err(e) = local.service().store().flush() {
            tracing::warn!("flushing the store before closing it: {e}");
        }
    }

    /// A login step: the store is kept open only when it logged someone in.
    fn login_step<T>(&self, step: impl FnOnce(&Local) -> Result<T>, done: impl Fn(&T) -> bool) -> Result<T> {
        let local = self.get()?;
        let result = step(&local);
        drop(local);
        if !result.as_ref().is_ok_and(&done) {
            self.release();
        }
        result
    }
}

impl Backend for OnDemand {
    fn badge(&self) -> Option<String> {
        None
    }

    fn login_password(&self, username: &str, password: &str) -> Result<Login> {
        self.login_step(|l| l.login_password(username, password), |r| matches!(r, Login::Done(_)))
    }

    fn login_code(&self, challenge: &str, code: &str) -> Result<Credential> {
        self.login_step(|l| l.login_code(challenge, code), |_| true)
    }

    fn login_enroll_begin(&self, challenge: &str) -> Result<Enrollment> {
        self.login_step(|l| l.login_enroll_begin(challenge), |_| false)
    }

    fn login_enroll_confirm(&self, challenge: &str, code: &str) -> Result<(Credential, Confirmed)> {
        self.login_step(|l| l.login_enroll_confirm(challenge, code), |_| true)
    }

    fn resume(&self, token: &str) -> Result<Credential> {
        self.login_step(|l| l.resume(token), |_| true)
    }

    /// The session ends and the store is closed: back at the login screen, it is free.
    fn logout(&self, who: &Credential) -> Result<()> {
        let result = self.get().and_then(|l| l.logout(who));
        self.release();
        result
    }

    fn list_users(&self, who: &Credential, query: &UserQuery) -> Result<UserPage> {
        self.get()?.list_users(who, query)
    }

    fn stream_users(&self, who: &Credential, emit: &mut dyn FnMut(Vec<UserView>, usize, usize) -> bool) -> Option<Result<()>> {
        match self.get() {
            Ok(local) => local.stream_users(who, emit),
            Err(e) => Some(Err(e)),
        }
    }

    fn user_detail(&self, who: &Credential, user: &str) -> Result<UserDetail> {
        self.get()?.user_detail(who, user)
    }

    fn set_status(&self, who: &Credential, user: &str, status: Status) -> Result<UserView> {
        self.get()?.set_status(who, user, status)
    }

    fn add_user(&self, who: &Credential, new: NewUser) -> Result<UserView> {
        self.get()?.add_user(who, new)
    }

    fn set_password(&self, who: &Credential, user: &str, password: &str) -> Result<()> {
        self.get()?.set_password(who, user, password)
    }

    fn import_users(&self, who: &Credential, csv: &[u8], options: ImportOptions) -> Result<ImportReport> {
        self.get()?.import_users(who, csv, options)
    }

    fn import_users_with_progress(
        &self,
        who: &Credential,
        csv: &[u8],
        options: ImportOptions,
        progress: &mut dyn FnMut(ImportProgress),
    ) -> Result<ImportReport> {
        self.get()?.import_users_with_progress(who, csv, options, progress)
    }

    fn reset_mfa(
        &self,
        who: &Credential,
        targets: &[String],
        reason: Option<&str>,
        dry_run: bool,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<ResetReport> {
        self.get()?.reset_mfa(who, targets, reason, dry_run, progress)
    }

    fn reset_mfa_if_all_found(
        &self,
        who: &Credential,
        targets: &[String],
        reason: Option<&str>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<ResetReport> {
        self.get()?.reset_mfa_if_all_found(who, targets, reason, progress)
    }

    fn unlock_mfa(&self, who: &Credential, user: &str, reason: Option<&str>) -> Result<UserView> {
        self.get()?.unlock_mfa(who, user, reason)
    }

    fn begin_enrollment(&self, who: &Credential, user: &str) -> Result<Enrollment> {
        self.get()?.begin_enrollment(who, user)
    }

    fn confirm_enrollment(&self, who: &Credential, user: &str, code: &str) -> Result<Confirmed> {
        self.get()?.confirm_enrollment(who, user, code)
    }

    fn orgs(&self, who: &Credential) -> Result<Vec<OrgView>> {
        self.get()?.orgs(who)
    }

    fn set_mfa_enforced(&self, who: &Credential, org: Option<&str>, enforced: bool) -> Result<OrgView> {
        self.get()?.set_mfa_enforced(who, org, enforced)
    }

    fn add_org(&self, who: &Credential, name: &str, mfa_enforced: bool) -> Result<OrgView> {
        self.get()?.add_org(who, name, mfa_enforced)
    }

    fn audit_list(&self, who: &Credential, query: &AuditQuery) -> Result<Vec<AuditView>> {
        self.get()?.audit_list(who, query)
    }

    fn audit_verify(&self, who: &Credential) -> Result<VerifyReport> {
        self.get()?.audit_verify(who)
    }

    fn audit_export(&self, who: &Credential, format: AuditFormat, out: &mut dyn std::io::Write) -> Result<()> {
        self.get()?.audit_export(who, format, out)
    }

    fn api_keys(&self, who: &Credential) -> Result<Vec<ApiKeyView>> {
        self.get()?.api_keys(who)
    }

    fn revoke_api_key(&self, who: &Credential, id: &str) -> Result<()> {
        self.get()?.revoke_api_key(who, id)
    }

    fn check(&self, who: &Credential) -> Result<StoreCheck> {
        self.get()?.check(who)
    }

    fn backup(&self, who: &Credential, out: &mut dyn std::io::Write) -> Result<()> {
        self.get()?.backup(who, out)
    }
}
