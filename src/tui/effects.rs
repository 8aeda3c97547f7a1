//! Work the state asks for: service calls, run off the UI thread, whose results come back as
//! actions. [`perform`] is the whole translation (one service call per effect); [`Runner`] runs it
//! on tokio's blocking pool so drawing never waits for the store.

use super::action::{Action, Session};
use crate::domain::user::Status;
use crate::domain::Timestamp;
use crate::service::{Actor, AuditQuery, LoginStep, Service, UserQuery};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;
use uuid::Uuid;

/// How many audit events the audit view loads.
pub const AUDIT_LIMIT: usize = 1_000;
/// The source recorded in every audit event the console causes.
pub const SOURCE: &str = "tui";

/// A password, kept out of debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Many(Vec<Effect>),
    LoginPassword { username: String, password: Secret },
    LoginCode { challenge: Secret, code: Secret },
    LoginEnrollBegin { challenge: Secret },
    LoginEnrollConfirm { challenge: Secret, code: Secret },
    LoadUsers,
    LoadDetail(Uuid),
    /// Decide a reset without changing anything, for the confirmation dialog.
    PlanReset(Vec<Uuid>),
    RunReset { targets: Vec<Uuid>, reason: String },
    BeginEnroll(Uuid),
    ConfirmEnroll { user: Uuid, code: String },
    SetStatus { user: Uuid, status: Status },
    LoadAudit { generation: u64, text: String },
    VerifyAudit,
    LoadOrgs,
    SetEnforced { org: String, on: bool },
}

impl Effect {
    /// `self` and then `next`, as one effect.
    pub fn and(self, next: Effect) -> Effect {
        match self {
            Effect::Many(mut v) => {
                v.push(next);
                Effect::Many(v)
            }
            first => Effect::Many(vec![first, next]),
        }
    }
}

fn text<T>(r: crate::error::Result<T>) -> Result<T, String> {
    r.map_err(|e| e.to_string())
}

/// Carry out one effect against the service, as `actor`, at `now`, reporting what happened (and
/// any progress on the way) through `emit`. Blocking: call it off the UI thread.
pub fn perform(
    service: &Service,
    actor: Option<&Actor>,
    issuer: &str,
    effect: Effect,
    now: Timestamp,
    emit: &mut dyn FnMut(Action),
) {
    let logged_in = |token: String, recovery_codes: Vec<String>| -> Action {
        match service.authenticate(&token, SOURCE, now) {
            Ok(actor) => Action::LoggedIn(Box::new(Session { actor, token: Some(token), recovery_codes })),
            Err(e) => Action::LoginFailed(e.to_string()),
        }
    };
    let Some(actor) = actor else {
        let action = match effect {
            Effect::Many(all) => {
                for e in all {
                    perform(service, None, issuer, e, now, emit);
                }
                return;
            }
            Effect::LoginPassword { username, password } => match service.login_password(&username, &password.0, SOURCE, now) {
                Ok(LoginStep::Done(session)) => logged_in(session.token, Vec::new()),
                Ok(LoginStep::MfaRequired { challenge, .. }) => Action::LoginNeedsCode { challenge },
                Ok(LoginStep::EnrollmentRequired { challenge, .. }) => Action::LoginNeedsEnrollment { challenge },
                Err(e) => Action::LoginFailed(e.to_string()),
            },
            Effect::LoginCode { challenge, code } => match service.login_code(&challenge.0, &code.0, SOURCE, now) {
                Ok(session) => logged_in(session.token, Vec::new()),
                Err(e) => Action::LoginFailed(e.to_string()),
            },
            Effect::LoginEnrollBegin { challenge } => {
                Action::LoginEnrollment(text(service.login_enroll_begin(&challenge.0, issuer, SOURCE, now)))
            }
            Effect::LoginEnrollConfirm { challenge, code } => {
                match service.login_enroll_confirm(&challenge.0, &code.0, SOURCE, now) {
                    Ok((session, confirmed)) => logged_in(session.token, confirmed.recovery_codes),
                    Err(e) => Action::LoginFailed(e.to_string()),
                }
            }
            other => Action::LoginFailed(format!("log in first ({other:?} needs a logged-in admin)")),
        };
        emit(action);
        return;
    };
    let action = match effect {
        Effect::Many(all) => {
            for e in all {
                perform(service, Some(actor), issuer, e, now, emit);
            }
            return;
        }
        Effect::LoginPassword { .. } | Effect::LoginCode { .. } | Effect::LoginEnrollBegin { .. } | Effect::LoginEnrollConfirm { .. } => {
            return perform(service, None, issuer, effect, now, emit);
        }
        Effect::LoadUsers => Action::UsersLoaded(text(service.list_users(actor, &UserQuery::default(), now).map(|p| p.users))),
        Effect::LoadDetail(id) => Action::DetailLoaded(text(service.get_user(actor, &id.to_string(), now).map(Box::new))),
        Effect::PlanReset(ids) => {
            let targets: Vec<String> = ids.iter().map(Uuid::to_string).collect();
            // The reason is asked for in the dialog this plan is for; the plan only needs one to pass.
            Action::ResetPlanned(text(service.reset_mfa(actor, &targets, Some("(confirmation preview)"), true, now)))
        }
        Effect::RunReset { targets, reason } => {
            let targets: Vec<String> = targets.iter().map(Uuid::to_string).collect();
            let result = service.reset_mfa_with_progress(actor, &targets, Some(&reason), false, now, &mut |done, total| {
                emit(Action::ResetProgress { done, total })
            });
            Action::ResetDone(text(result))
        }
        Effect::BeginEnroll(id) => Action::EnrollmentBegun(text(service.begin_enrollment(actor, &id.to_string(), issuer, now))),
        Effect::ConfirmEnroll { user, code } => Action::EnrollmentConfirmed(text(
            service.confirm_enrollment(actor, &user.to_string(), &code, now).map(|c| c.recovery_codes),
        )),
        Effect::SetStatus { user, status } => Action::UserChanged(text(service.set_status(actor, &user.to_string(), status, now))),
        Effect::LoadAudit { generation, text: needle } => {
            let query = AuditQuery { text: Some(needle).filter(|t| !t.is_empty()), limit: Some(AUDIT_LIMIT) };
            Action::AuditLoaded { generation, result: text(service.audit_list(actor, &query)) }
        }
        Effect::VerifyAudit => Action::AuditVerified(text(service.audit_verify(actor))),
        Effect::LoadOrgs => Action::OrgsLoaded(text(service.orgs(actor, now))),
        Effect::SetEnforced { org, on } => Action::OrgChanged(text(service.set_mfa_enforced(actor, Some(&org), on, now))),
    };
    emit(action);
}

/// Runs effects on the blocking pool and sends their actions to the UI loop.
pub struct Runner {
    service: Arc<Service>,
    issuer: String,
    tx: UnboundedSender<Action>,
    running: Arc<AtomicUsize>,
}

impl Runner {
    pub fn new(service: Arc<Service>, issuer: String, tx: UnboundedSender<Action>) -> Runner {
        Runner { service, issuer, tx, running: Arc::new(AtomicUsize::new(0)) }
    }

    /// How many effects are still running.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    pub fn spawn(&self, effect: Effect, actor: Option<Actor>) {
        if let Effect::Many(all) = effect {
            for e in all {
                self.spawn(e, actor.clone());
            }
            return;
        }
        let (service, issuer, tx, running) = (self.service.clone(), self.issuer.clone(), self.tx.clone(), self.running.clone());
        running.fetch_add(1, Ordering::SeqCst);
        let job_tx = tx.clone();
        let job = tokio::task::spawn_blocking(move || {
            perform(&service, actor.as_ref(), &issuer, effect, crate::cli::now(), &mut |a| {
                let _ = job_tx.send(a);
            });
        });
        tokio::spawn(async move {
            let outcome = job.await;
            running.fetch_sub(1, Ordering::SeqCst);
            if let Err(e) = outcome {
                let _ = tx.send(Action::Crashed(format!("a background job failed: {e}")));
            }
            // Wake the loop so it notices the job count changed.
            let _ = tx.send(Action::Tick);
        });
    }
}
