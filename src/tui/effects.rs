//! Work the state asks for: backend calls, run off the UI thread, whose results come back as
//! actions. [`perform`] is the whole translation (one backend call per effect, or one per page);
//! [`Runner`] runs it on tokio's blocking pool so drawing never waits for the store or the network.

use super::action::{Action, ResetRun, Session};
use super::table::Query;
use crate::backend::{Backend, Credential, Login, PAGE};
use crate::domain::user::Status;
use crate::error::Error;
use crate::service::{AuditQuery, ResetOutcome, ResetReport, UserQuery, VALIDATE_ACTION};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;
use uuid::Uuid;

/// The source recorded in every audit event the console causes on its own store.
pub const SOURCE: &str = "tui";
/// While users stream in, pages are handed to the table at most this often (the first at once).
const PAGE_INTERVAL: Duration = Duration::from_millis(200);

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
    /// Load the users `query` finds, page by page; a newer load makes this one stop.
    LoadUsers { generation: u64, query: Query },
    LoadDetail(Uuid),
    /// Decide a reset without changing anything, for the confirmation dialog.
    PlanReset(Vec<Uuid>),
    /// Reset `targets` in batches of `batch` (one backend call each), so that it can be paused
    /// or stopped between them.
    RunReset { targets: Vec<Uuid>, reason: String, batch: usize },
    /// Tell a running [`Effect::RunReset`] what to do before its next batch.
    Gate(ResetGate),
    BeginEnroll(Uuid),
    ConfirmEnroll { user: Uuid, code: String },
    SetStatus { user: Uuid, status: Status },
    Unlock(Uuid),
    /// The audit events `text` finds; without `validations`, none of the `mfa.validate` ones.
    LoadAudit { generation: u64, text: String, validations: bool, limit: usize },
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

/// What a running bulk reset does before its next batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetGate {
    Run = 0,
    /// Wait: the admin is asked whether to stop.
    Pause = 1,
    Stop = 2,
}

/// What running effects share with the loop: the newest user load, whether the console is
/// closing (so that retries stop), and the gate of a running bulk reset.
#[derive(Debug, Default)]
pub struct Control {
    latest_load: AtomicU64,
    closing: AtomicBool,
    reset_gate: AtomicU8,
}

impl Control {
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }

    pub fn set_gate(&self, gate: ResetGate) {
        self.reset_gate.store(gate as u8, Ordering::SeqCst);
    }

    /// Before a bulk reset's next batch: wait while paused; false when it is to stop.
    fn may_go_on(&self) -> bool {
        loop {
            match self.reset_gate.load(Ordering::SeqCst) {
                0 => return true,
                1 if !self.closing.load(Ordering::SeqCst) => std::thread::sleep(Duration::from_millis(20)),
                _ => return false,
            }
        }
    }

    fn superseded(&self, generation: u64) -> bool {
        self.closing.load(Ordering::SeqCst) || self.latest_load.load(Ordering::SeqCst) > generation
    }

    /// Call `f` until the backend answers; while it does not, say so and wait a little longer
    /// each time. `None` when the console closes meanwhile.
    fn retry<T>(&self, emit: &mut dyn FnMut(Action), mut f: impl FnMut() -> crate::error::Result<T>) -> Option<crate::error::Result<T>> {
        let mut pause = Duration::from_millis(500);
        let mut troubled = false;
        loop {
            match f() {
                Err(e @ Error::Unreachable { .. }) => {
                    troubled = true;
                    emit(Action::Connection(Some(e.to_string())));
                    let until = Instant::now() + pause;
                    while Instant::now() < until {
                        if self.closing.load(Ordering::SeqCst) {
                            return None;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    pause = (pause * 2).min(Duration::from_secs(8));
                }
                other => {
                    if troubled {
                        emit(Action::Connection(None));
                    }
                    return Some(other);
                }
            }
        }
    }
}

/// The query a table filter asks the backend for.
pub fn user_query(query: &Query) -> UserQuery {
    let text = Some(query.text.trim().to_string()).filter(|t| !t.is_empty());
    let unused_for = query.unused.map(|u| u64::from(u.days) * 86_400);
    UserQuery { text, role: query.role, mfa: query.mfa, unused_for, ..UserQuery::default() }
}

/// Carry out one effect against `backend` as `who`, reporting what happened (and any progress
/// on the way) through `emit`. Blocking: call it off the UI thread.
pub fn perform(
    backend: &dyn Backend,
    control: &Control,
    who: Option<&Credential>,
    effect: Effect,
    emit: &mut dyn FnMut(Action),
) {
    let logged_in = |who: Credential, recovery_codes: Vec<String>| Action::LoggedIn(Box::new(Session { who, recovery_codes }));
    let login_failed = |e: Error| Action::LoginFailed(e.to_string());
    let action = match effect {
        Effect::Many(all) => {
            for e in all {
                perform(backend, control, who, e, emit);
            }
            return;
        }
        Effect::Gate(gate) => return control.set_gate(gate),
        Effect::LoginPassword { username, password } => match backend.login_password(&username, &password.0) {
            Ok(Login::Done(who)) => logged_in(who, Vec::new()),
            Ok(Login::MfaRequired { challenge }) => Action::LoginNeedsCode { challenge },
            Ok(Login::EnrollmentRequired { challenge }) => Action::LoginNeedsEnrollment { challenge },
            Err(e) => login_failed(e),
        },
        Effect::LoginCode { challenge, code } => backend.login_code(&challenge.0, &code.0).map_or_else(login_failed, |w| logged_in(w, Vec::new())),
        Effect::LoginEnrollBegin { challenge } => Action::LoginEnrollment(backend.login_enroll_begin(&challenge.0).map_err(|e| e.to_string())),
        Effect::LoginEnrollConfirm { challenge, code } => match backend.login_enroll_confirm(&challenge.0, &code.0) {
            Ok((who, confirmed)) => logged_in(who, confirmed.recovery_codes),
            Err(e) => login_failed(e),
        },
        other => {
            let Some(who) = who else {
                emit(Action::LoginFailed(format!("log in first ({other:?} needs a logged-in admin)")));
                return;
            };
            return perform_as(backend, control, who, other, emit);
        }
    };
    emit(action);
}

/// The action for a backend's answer: `ok` of the value, `err` of the error's text, except that
/// an ended session (401) takes the admin back to the login screen.
fn answer<T>(result: crate::error::Result<T>, ok: impl FnOnce(T) -> Action, err: impl FnOnce(String) -> Action) -> Action {
    match result {
        Ok(value) => ok(value),
        Err(e) if e.needs_login() => Action::SessionEnded(e.to_string()),
        Err(e) => err(e.to_string()),
    }
}

/// The effects that need a logged-in admin.
fn perform_as(backend: &dyn Backend, control: &Control, who: &Credential, effect: Effect, emit: &mut dyn FnMut(Action)) {
    // A read is tried again while the backend does not answer; a change is tried once.
    macro_rules! read {
        ($call:expr) => {
            match control.retry(emit, || $call) {
                Some(result) => result,
                None => return,
            }
        };
    }
    let action = match effect {
        Effect::LoadUsers { generation, query } => return load_users(backend, control, who, generation, &query, emit),
        Effect::LoadDetail(id) => {
            answer(read!(backend.user_detail(who, &id.to_string())), |d| Action::DetailLoaded(Ok(Box::new(d))), |e| Action::DetailLoaded(Err(e)))
        }
        Effect::PlanReset(ids) => {
            let targets: Vec<String> = ids.iter().map(Uuid::to_string).collect();
            // The reason is asked for in the dialog this plan is for; the plan only needs one to pass.
            let plan = read!(backend.reset_mfa(who, &targets, Some("(confirmation preview)"), true, &mut |_, _| {}));
            answer(plan, |p| Action::ResetPlanned(Ok(p)), |e| Action::ResetPlanned(Err(e)))
        }
        Effect::RunReset { targets, reason, batch } => return run_reset(backend, control, who, &targets, &reason, batch, emit),
        Effect::BeginEnroll(id) => {
            answer(backend.begin_enrollment(who, &id.to_string()), |e| Action::EnrollmentBegun(Ok(e)), |e| Action::EnrollmentBegun(Err(e)))
        }
        // A wrong code is a 401 too: it must not end the session.
        Effect::ConfirmEnroll { user, code } => Action::EnrollmentConfirmed(
            backend.confirm_enrollment(who, &user.to_string(), &code).map(|c| c.recovery_codes).map_err(|e| e.to_string()),
        ),
        Effect::SetStatus { user, status } => {
            answer(backend.set_status(who, &user.to_string(), status), |v| Action::UserChanged(Ok(Box::new(v))), |e| Action::UserChanged(Err(e)))
        }
        Effect::Unlock(user) => {
            answer(backend.unlock_mfa(who, &user.to_string(), None), |v| Action::Unlocked(Ok(Box::new(v))), |e| Action::Unlocked(Err(e)))
        }
        Effect::LoadAudit { generation, text, validations, limit } => {
            let skip_actions = if validations { Vec::new() } else { vec![VALIDATE_ACTION.to_string()] };
            let query = AuditQuery { text: Some(text).filter(|t| !t.is_empty()), limit: Some(limit), skip_actions };
            let events = read!(backend.audit_list(who, &query));
            answer(events, |v| Action::AuditLoaded { generation, result: Ok(v) }, |e| Action::AuditLoaded { generation, result: Err(e) })
        }
        Effect::VerifyAudit => answer(read!(backend.audit_verify(who)), |r| Action::AuditVerified(Ok(r)), |e| Action::AuditVerified(Err(e))),
        Effect::LoadOrgs => answer(read!(backend.orgs(who)), |o| Action::OrgsLoaded(Ok(o)), |e| Action::OrgsLoaded(Err(e))),
        Effect::SetEnforced { org, on } => {
            answer(backend.set_mfa_enforced(who, Some(&org), on), |o| Action::OrgChanged(Ok(o)), |e| Action::OrgChanged(Err(e)))
        }
        Effect::Gate(gate) => return control.set_gate(gate),
        Effect::Many(_) | Effect::LoginPassword { .. } | Effect::LoginCode { .. } | Effect::LoginEnrollBegin { .. } | Effect::LoginEnrollConfirm { .. } => {
            return perform(backend, control, Some(who), effect, emit);
        }
    };
    emit(action);
}

/// Reset `targets` a batch at a time, reporting the users reset so far after each batch; between
/// batches, wait while the gate says pause and end when it says stop (or a batch fails). What was
/// done and what was not sent come back together.
fn run_reset(backend: &dyn Backend, control: &Control, who: &Credential, targets: &[Uuid], reason: &str, batch: usize, emit: &mut dyn FnMut(Action)) {
    let mut run = ResetRun { report: ResetReport { dry_run: false, results: Vec::new() }, untouched: Vec::new(), stopped: false, error: None };
    let mut ended = false;
    let mut session_ended = None;
    for chunk in targets.chunks(batch.max(1)) {
        if !ended && !control.may_go_on() {
            run.stopped = true;
            ended = true;
        }
        if ended {
            run.untouched.extend_from_slice(chunk);
            continue;
        }
        let ids: Vec<String> = chunk.iter().map(Uuid::to_string).collect();
        match backend.reset_mfa(who, &ids, Some(reason), false, &mut |_, _| {}) {
            Ok(report) => {
                run.report.results.extend(report.results);
                emit(Action::ResetProgress { reset: run.report.count(ResetOutcome::Reset) });
            }
            Err(e) => {
                if e.needs_login() {
                    session_ended = Some(e.to_string());
                }
                run.error = Some(e.to_string());
                run.untouched.extend_from_slice(chunk);
                ended = true;
            }
        }
    }
    emit(Action::ResetDone(run));
    if let Some(why) = session_ended {
        emit(Action::SessionEnded(why));
    }
}

/// Load the users `query` finds, page by page: the first page at once, the rest in bundles while
/// they arrive, until the last page or a newer load.
fn load_users(backend: &dyn Backend, control: &Control, who: &Credential, generation: u64, query: &Query, emit: &mut dyn FnMut(Action)) {
    if query.is_empty() && stream_users(backend, control, who, generation, emit) {
        return;
    }
    let mut page_query = UserQuery { limit: Some(PAGE), ..user_query(query) };
    let mut bundle = Vec::new();
    let mut last_emit: Option<Instant> = None;
    let mut read = 0;
    loop {
        if control.superseded(generation) {
            return;
        }
        let page = match control.retry(emit, || backend.list_users(who, &page_query)) {
            Some(Ok(page)) => page,
            Some(Err(e)) if e.needs_login() => return emit(Action::SessionEnded(e.to_string())),
            Some(Err(e)) => return emit(Action::UsersPage { generation, result: Err(e.to_string()), read: 0, total: 0, done: true }),
            None => return,
        };
        read += page.users.len();
        bundle.extend(page.users);
        let done = page.next_cursor.is_none();
        if done || last_emit.is_none_or(|t| t.elapsed() >= PAGE_INTERVAL) {
            let users = std::mem::take(&mut bundle);
            emit(Action::UsersPage { generation, result: Ok(users), read, total: page.total, done });
            last_emit = Some(Instant::now());
        }
        match page.next_cursor {
            Some(next) => page_query.cursor = Some(next),
            None => return,
        }
    }
}

/// Load every user from a backend that streams them (the first page at once, the rest in bundles
/// while they arrive); false when the backend pages instead.
fn stream_users(backend: &dyn Backend, control: &Control, who: &Credential, generation: u64, emit: &mut dyn FnMut(Action)) -> bool {
    let mut bundle = Vec::new();
    let mut last_emit: Option<Instant> = None;
    let (mut read, mut of) = (0, 0);
    let streamed = backend.stream_users(who, &mut |users, now_read, total| {
        bundle.extend(users);
        (read, of) = (now_read, total);
        if last_emit.is_none_or(|t| t.elapsed() >= PAGE_INTERVAL) {
            emit(Action::UsersPage { generation, result: Ok(std::mem::take(&mut bundle)), read, total, done: false });
            last_emit = Some(Instant::now());
        }
        !control.superseded(generation)
    });
    match streamed {
        None => return false,
        Some(Ok(())) if control.superseded(generation) => {}
        Some(Ok(())) => emit(Action::UsersPage { generation, result: Ok(bundle), read: of, total: of, done: true }),
        Some(Err(e)) if e.needs_login() => emit(Action::SessionEnded(e.to_string())),
        Some(Err(e)) => emit(Action::UsersPage { generation, result: Err(e.to_string()), read, total: of, done: true }),
    }
    true
}

/// Runs effects on the blocking pool and sends their actions to the UI loop.
pub struct Runner {
    backend: Arc<dyn Backend>,
    control: Arc<Control>,
    tx: UnboundedSender<Action>,
    running: Arc<AtomicUsize>,
}

impl Runner {
    pub fn new(backend: Arc<dyn Backend>, control: Arc<Control>, tx: UnboundedSender<Action>) -> Runner {
        Runner { backend, control, tx, running: Arc::new(AtomicUsize::new(0)) }
    }

    /// How many effects are still running.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    pub fn spawn(&self, effect: Effect, who: Option<Credential>) {
        match effect {
            Effect::Many(all) => {
                for e in all {
                    self.spawn(e, who.clone());
                }
                return;
            }
            Effect::LoadUsers { generation, .. } => {
                self.control.latest_load.fetch_max(generation, Ordering::SeqCst);
            }
            // At once, not queued behind the reset it steers.
            Effect::Gate(gate) => return self.control.set_gate(gate),
            // Here, before the job starts: a pause asked for meanwhile must not be undone by it.
            Effect::RunReset { .. } => self.control.set_gate(ResetGate::Run),
            _ => {}
        }
        let (backend, control, tx, running) = (self.backend.clone(), self.control.clone(), self.tx.clone(), self.running.clone());
        running.fetch_add(1, Ordering::SeqCst);
        let job_tx = tx.clone();
        let job = tokio::task::spawn_blocking(move || {
            perform(backend.as_ref(), &control, who.as_ref(), effect, &mut |a| {
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
            let _ = tx.send(Action::Tick(Instant::now()));
        });
    }
}
