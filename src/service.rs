//! The one admin service every front end calls: authorization, audit and every operation, once.
//! Reset is implemented here, in [`Service::reset_mfa`].

use crate::auth::{password, seal::Sealer, token, totp};
use crate::config::Policy;
use crate::domain::directory::{Cursor, Directory, Filter, Summary};
use crate::domain::audit::{AuditDraft, AuditEvent, BrokenLink, ChainCheck, Outcome};
use crate::domain::mfa::{MfaState, MfaStatus, SealedSecret};
use crate::domain::policy;
use crate::domain::role::Role;
use crate::domain::user::{self, Org, Status, User, UserView};
use crate::domain::Timestamp;
use crate::error::{Error, Result};
use crate::store::{Change, Session, SessionKind, Store, TokenHash, UserWrite};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use uuid::Uuid;

const META_KEY_CHECK: &str = "key_check";
const KEY_CHECK_PLAINTEXT: &[u8] = b"mfadmin key check";
const MAX_REASON_LEN: usize = 500;
/// Users handed over at a time by [`Service::stream_users`].
const STREAM_BATCH: usize = 2_000;

/// Who is acting, and through which door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub principal: Principal,
    /// `cli`, `tui`, `http` or `http:<vendor>`, recorded in every audit event.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The operator at the machine that holds the store and its key file: acts as Owner in every org.
    Console { os_user: String },
    User { id: Uuid, username: String, org: String, role: Role },
    ApiKey { user_id: Uuid, name: String, org: String, role: Role },
}

impl Actor {
    pub fn console(source: &str) -> Actor {
        Actor { principal: Principal::Console { os_user: os_user_name() }, source: source.into() }
    }

    pub fn role(&self) -> Role {
        match &self.principal {
            Principal::Console { .. } => Role::Owner,
            Principal::User { role, .. } | Principal::ApiKey { role, .. } => *role,
        }
    }

    /// The org the actor acts in; `None` for the console, which sees every org.
    pub fn org(&self) -> Option<&str> {
        match &self.principal {
            Principal::Console { .. } => None,
            Principal::User { org, .. } | Principal::ApiKey { org, .. } => Some(org),
        }
    }

    /// The user the actor is, if any (an API key is not its creator).
    pub fn user_id(&self) -> Option<Uuid> {
        match &self.principal {
            Principal::User { id, .. } => Some(*id),
            _ => None,
        }
    }

    /// The name written into audit events.
    pub fn audit_name(&self) -> String {
        match &self.principal {
            Principal::Console { os_user } => format!("console:{os_user}"),
            Principal::User { username, .. } => username.clone(),
            Principal::ApiKey { name, .. } => format!("apikey:{name}"),
        }
    }

    fn sees(&self, user: &User) -> bool {
        self.org().is_none_or(|org| org == user.org)
    }
}

/// One target of a reset and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResetResult {
    /// The target as it was given.
    pub target: String,
    pub user_id: Option<Uuid>,
    pub username: Option<String>,
    pub outcome: ResetOutcome,
    /// Why it was skipped, denied or failed.
    pub detail: Option<String>,
    /// The MFA state after the reset (or after it would have happened, in a dry run).
    pub mfa_after: Option<MfaStatus>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResetOutcome {
    Reset,
    Skipped,
    Denied,
    NotFound,
    Failed,
    /// Not known: a remote reset whose answer was lost (never produced by the service itself).
    Unknown,
}

impl ResetOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ResetOutcome::Reset => "reset",
            ResetOutcome::Skipped => "skipped",
            ResetOutcome::Denied => "denied",
            ResetOutcome::NotFound => "not_found",
            ResetOutcome::Failed => "failed",
            ResetOutcome::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResetReport {
    pub dry_run: bool,
    pub results: Vec<ResetResult>,
}

impl ResetReport {
    pub fn count(&self, outcome: ResetOutcome) -> usize {
        self.results.iter().filter(|r| r.outcome == outcome).count()
    }
}

/// A user to create.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub org: String,
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
}

pub use crate::domain::directory::SortField;

/// Which users to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserQuery {
    /// Case-insensitive substring of user name, display name or email.
    pub text: Option<String>,
    pub role: Option<Role>,
    pub org: Option<String>,
    pub mfa: Option<MfaStatus>,
    pub status: Option<Status>,
    pub sort: SortField,
    pub descending: bool,
    /// Continue after this cursor (from a previous page).
    pub cursor: Option<String>,
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserPage {
    pub users: Vec<UserView>,
    pub next_cursor: Option<String>,
    /// How many users match the query in all.
    pub total: usize,
}

/// A CSV row that cannot be imported: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RowError {
    /// The line of the CSV text (the header is line 1).
    pub line: u64,
    pub column: String,
    pub message: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}: {}", self.line, self.column, self.message)
    }
}

/// How a CSV import treats its rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// Check every row, write nothing.
    pub check_only: bool,
    /// Import the valid rows and report the others, instead of importing nothing.
    pub skip_invalid: bool,
}

/// What a CSV import did (or, checking only, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportReport {
    /// Nothing was written: `imported` is how many users would be.
    pub check_only: bool,
    pub imported: usize,
    /// The rows left out (only with `skip_invalid`), by line.
    pub skipped: Vec<RowError>,
}

/// Which way the audit log is exported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuditFormat {
    /// One JSON object a line.
    #[default]
    Jsonl,
    /// CSV with a header line.
    Csv,
}

/// Why one row of an import cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportProblem {
    pub row: usize,
    pub field: &'static str,
    pub message: String,
}

/// A user with what the detail views show beside the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserDetail {
    pub user: UserView,
    pub recent_audit: Vec<AuditView>,
}

/// An audit event as shown and exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditView {
    pub seq: u64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub target_id: Option<Uuid>,
    pub org: Option<String>,
    pub outcome: Outcome,
    pub reason: Option<String>,
    pub detail: Option<String>,
    pub source: String,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditView {
    pub fn new(e: &AuditEvent) -> AuditView {
        let d = &e.draft;
        AuditView {
            seq: e.seq,
            at: user::rfc3339(d.at),
            actor: d.actor.clone(),
            action: d.action.clone(),
            target: d.target.clone(),
            target_id: d.target_id,
            org: d.org.clone(),
            outcome: d.outcome,
            reason: d.reason.clone(),
            detail: d.detail.clone(),
            source: d.source.clone(),
            prev_hash: hex::encode(e.prev_hash),
            hash: hex::encode(e.hash()),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Case-insensitive substring of actor, action, target or reason.
    pub text: Option<String>,
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VerifyReport {
    pub events: u64,
    pub ok: bool,
    /// The first broken link, when there is one.
    pub broken_at: Option<u64>,
    pub problem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrgView {
    pub name: String,
    pub mfa_enforced: bool,
    pub users: usize,
    pub enrolled: usize,
}

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

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("username", &self.username)
            .field("email", &self.email)
            .field("display_name", &self.display_name)
            .field("role", &self.role)
            .field("org", &self.org)
            .field("password", &self.password.as_ref().map(|_| "<password>"))
            .finish()
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

pub struct Service {
    store: Arc<dyn Store>,
    sealer: Sealer,
    policy: Policy,
    /// Summaries of every user for listing; built on first use (or by [`Service::warm_directory`]),
    /// then kept in step by `store_commit`.
    directory: RwLock<DirectoryState>,
    /// Held while the directory is built, so that it is built once.
    building: Mutex<()>,
    /// Durable commits of concurrent callers, shared (see [`Service::commit_durable`]).
    group: Mutex<GroupCommit>,
    group_done: Condvar,
}

/// Gives up the lead of a group commit, and answers the units it held, when the leader unwinds.
struct Lead<'a>(&'a Service, Vec<u64>);

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        let mut group = self.0.group.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for ticket in &self.1 {
            group.results.insert(*ticket, Err(Error::Storage("the commit was interrupted".into())));
        }
        group.leading = false;
        self.0.group_done.notify_all();
    }
}

/// Units of work waiting for the next shared commit, and the results of the last ones.
#[derive(Default)]
struct GroupCommit {
    waiting: Vec<(u64, Vec<Change>)>,
    results: HashMap<u64, Result<()>>,
    next_ticket: u64,
    /// A caller is committing the units it took from `waiting`.
    leading: bool,
}

enum DirectoryState {
    NotBuilt,
    /// Being read from the store; writes meanwhile are kept here and applied when it is done.
    Building { users: Vec<Summary>, orgs: Vec<(String, bool)> },
    Built(Directory),
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").field("policy", &self.policy).finish_non_exhaustive()
    }
}

/// An audit event of `actor` doing `action`, successful, about no user (yet).
pub(crate) fn draft(actor: &Actor, action: &str, now: Timestamp) -> AuditDraft {
    AuditDraft {
        at: now,
        actor: actor.audit_name(),
        action: action.into(),
        target_id: None,
        target: None,
        org: actor.org().map(str::to_string),
        outcome: Outcome::Success,
        reason: None,
        detail: None,
        source: actor.source.clone(),
    }
}

fn about(mut d: AuditDraft, user: &User) -> AuditDraft {
    d.target_id = Some(user.id);
    d.target = Some(user.username.clone());
    d.org = Some(user.org.clone());
    d
}

impl Service {
    /// A service over `store`, checking that `sealer` holds the key this store was created with.
    pub fn new(store: Arc<dyn Store>, sealer: Sealer, policy: Policy) -> Result<Service> {
        match store.get_meta(META_KEY_CHECK)? {
            Some(sealed) => {
                sealer.open(&sealed, META_KEY_CHECK.as_bytes()).map_err(|_| {
                    Error::KeyFile(
                        "the key file does not belong to this store (its secrets would not open). \
                         Point --key-file (MFADMIN_KEY_FILE) at the key created with this store"
                            .into(),
                    )
                })?;
            }
            None => {
                let check = sealer.seal(KEY_CHECK_PLAINTEXT, META_KEY_CHECK.as_bytes());
                store.commit(&[Change { meta_put: vec![(META_KEY_CHECK, check)], ..Change::default() }])?;
                store.flush()?;
            }
        }
        Ok(Service {
            store,
            sealer,
            policy,
            directory: RwLock::new(DirectoryState::NotBuilt),
            building: Mutex::new(()),
            group: Mutex::default(),
            group_done: Condvar::new(),
        })
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Seal a TOTP secret for `user` with this store's key (for generated demo users).
    pub fn seal_secret(&self, user: Uuid, secret: &[u8]) -> SealedSecret {
        SealedSecret(self.sealer.seal(secret, user.as_bytes()))
    }

    /// Commit a unit of work and make it durable.
    fn commit(&self, change: Change) -> Result<()> {
        self.commit_durable(vec![change])
    }

    /// Commit `changes` atomically and make them durable, sharing the transaction and the flush
    /// with whoever else commits at the same moment (group commit): the first caller in leads and
    /// commits every unit waiting, in one transaction, then flushes once. When that transaction
    /// fails, each caller's units are committed alone, so each caller gets its own answer.
    fn commit_durable(&self, changes: Vec<Change>) -> Result<()> {
        let lock = || self.group.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut group = lock();
        let ticket = group.next_ticket;
        group.next_ticket += 1;
        group.waiting.push((ticket, changes));
        loop {
            if let Some(result) = group.results.remove(&ticket) {
                return result;
            }
            if group.leading {
                group = self.group_done.wait(group).unwrap_or_else(|poisoned| poisoned.into_inner());
                continue;
            }
            group.leading = true;
            let units = std::mem::take(&mut group.waiting);
            drop(group);
            // Should the commit panic, the next caller leads instead of everyone waiting forever.
            let lead = Lead(self, units.iter().map(|(t, _)| *t).collect());
            let results = self.commit_group(units);
            std::mem::forget(lead);
            group = lock();
            group.results.extend(results);
            group.leading = false;
            self.group_done.notify_all();
        }
    }

    fn commit_group(&self, units: Vec<(u64, Vec<Change>)>) -> Vec<(u64, Result<()>)> {
        let all: Vec<Change> = units.iter().flat_map(|(_, c)| c.iter().cloned()).collect();
        let mut results: Vec<(u64, Result<()>)> = match self.store_commit(&all) {
            Ok(()) => units.iter().map(|(t, _)| (*t, Ok(()))).collect(),
            Err(e) if units.len() == 1 => vec![(units[0].0, Err(e))],
            Err(_) => units.iter().map(|(t, c)| (*t, self.store_commit(c))).collect(),
        };
        if results.iter().any(|(_, r)| r.is_ok())
            && let Err(e) = self.store.flush()
        {
            let why = e.to_string();
            for (_, r) in &mut results {
                if r.is_ok() {
                    *r = Err(Error::Storage(why.clone()));
                }
            }
        }
        results
    }

    /// The only way changes reach the store: commit them atomically, then note the users and orgs
    /// they wrote in the directory.
    fn store_commit(&self, changes: &[Change]) -> Result<()> {
        self.store.commit(changes)?;
        if changes.iter().all(|c| c.users.is_empty() && c.orgs.is_empty()) {
            return Ok(());
        }
        let summaries = || {
            changes
                .iter()
                .flat_map(|c| &c.users)
                .map(|write| {
                    let mut summary = Summary::of(&write.user);
                    summary.version = write.expected_version.map_or(1, |v| v + 1);
                    summary
                })
                .collect::<Vec<_>>()
        };
        let orgs = changes.iter().flat_map(|c| &c.orgs).map(|o| (o.key.clone(), o.mfa_enforced));
        let mut guard = self.directory.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        match &mut *guard {
            DirectoryState::NotBuilt => {}
            DirectoryState::Building { users, orgs: pending } => {
                users.extend(summaries());
                pending.extend(orgs);
            }
            DirectoryState::Built(directory) => {
                for (org, enforced) in orgs {
                    directory.set_enforced(&org, enforced);
                }
                directory.upsert_many(summaries());
            }
        }
        Ok(())
    }

    /// Build the user directory now, if it is not built yet (`mfadmin serve` does this in the
    /// background once it listens, so that the first listing does not pay for it).
    pub fn warm_directory(&self) -> Result<()> {
        let _once = self.building.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if matches!(*self.directory.read().unwrap_or_else(|poisoned| poisoned.into_inner()), DirectoryState::Built(_)) {
            return Ok(());
        }
        // Read the store without holding the directory: writes meanwhile are noted as pending.
        *self.directory.write().unwrap_or_else(|poisoned| poisoned.into_inner()) =
            DirectoryState::Building { users: Vec::new(), orgs: Vec::new() };
        let read = (|| -> Result<(Vec<Summary>, HashMap<String, bool>)> {
            let enforcement = self.store.orgs()?.into_iter().map(|o| (o.key, o.mfa_enforced)).collect();
            let mut summaries = Vec::with_capacity(self.store.user_count()?);
            self.store.scan_users(&mut |u| {
                summaries.push(Summary::of(&u));
                true
            })?;
            Ok((summaries, enforcement))
        })();
        let mut guard = self.directory.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (pending_users, pending_orgs) = match std::mem::replace(&mut *guard, DirectoryState::NotBuilt) {
            DirectoryState::Building { users, orgs } => (users, orgs),
            _ => (Vec::new(), Vec::new()),
        };
        let (summaries, enforcement) = read?;
        let mut directory = Directory::build(summaries, enforcement);
        for (org, enforced) in pending_orgs {
            directory.set_enforced(&org, enforced);
        }
        // Versions decide: a pending write older than what the scan read changes nothing.
        directory.upsert_many(pending_users);
        *guard = DirectoryState::Built(directory);
        Ok(())
    }

    /// Run `f` over the directory, building it first if needed.
    fn with_directory<R>(&self, f: impl FnOnce(&Directory) -> R) -> Result<R> {
        loop {
            {
                let guard = self.directory.read().unwrap_or_else(|poisoned| poisoned.into_inner());
                if let DirectoryState::Built(directory) = &*guard {
                    return Ok(f(directory));
                }
            }
            self.warm_directory()?;
        }
    }

    fn org_enforces(&self, org: &str) -> Result<bool> {
        Ok(self.store.get_org(org)?.is_some_and(|o| o.mfa_enforced))
    }

    fn enforcement_map(&self) -> Result<HashMap<String, bool>> {
        Ok(self.store.orgs()?.into_iter().map(|o| (o.key, o.mfa_enforced)).collect())
    }

    pub fn view(&self, user: &User, now: Timestamp) -> Result<UserView> {
        Ok(UserView::new(user, self.org_enforces(&user.org)?, now))
    }

    /// Find a user by id, user name, email or number, as a person would type it.
    pub fn resolve(&self, reference: &str) -> Result<Option<User>> {
        match self.resolve_id(reference.trim())? {
            Some(id) => self.store.get_user(id),
            None => Ok(None),
        }
    }

    /// The id of the user a trimmed reference names (see [`Service::resolve`]), looked up in the
    /// indexes only.
    fn resolve_id(&self, r: &str) -> Result<Option<Uuid>> {
        if r.is_empty() {
            return Ok(None);
        }
        if let Ok(uuid) = Uuid::parse_str(r) {
            Ok(Some(uuid))
        } else if let Some(id) = self.store.user_id_by_name(r)? {
            Ok(Some(id))
        } else {
            self.resolve_id_not_a_name(r)
        }
    }

    /// The rest of [`Service::resolve_id`], for a reference that is neither an id nor a user name.
    fn resolve_id_not_a_name(&self, r: &str) -> Result<Option<Uuid>> {
        if r.contains('@') {
            self.store.user_id_by_email(r)
        } else if let Ok(n) = r.strip_prefix('#').unwrap_or(r).parse::<u64>() {
            self.store.user_id_by_number(n)
        } else {
            Ok(None)
        }
    }

    /// [`Service::resolve`] of every reference, in order; the first error (in reference order) is
    /// the answer. The lookups are made in key order: the user names in one pass over the name
    /// index, the other references sorted, then the ids sorted. A lookup next to the one before
    /// finds the store's pages warm, which makes a long list about twice as fast to read as in the
    /// order given.
    fn resolve_many(&self, references: &[String]) -> Result<Vec<Option<User>>> {
        let trimmed: Vec<&str> = references.iter().map(|r| r.trim()).collect();
        let mut ids: Vec<Result<Option<Uuid>>> = trimmed.iter().map(|r| Ok(Uuid::parse_str(r).ok())).collect();
        let maybe_names: Vec<usize> = (0..trimmed.len()).filter(|&i| !trimmed[i].is_empty() && matches!(ids[i], Ok(None))).collect();
        let named = self.store.user_ids_by_name(&maybe_names.iter().map(|&i| trimmed[i]).collect::<Vec<_>>())?;
        let mut rest: Vec<usize> = Vec::new();
        for (i, id) in maybe_names.into_iter().zip(named) {
            match id {
                Some(id) => ids[i] = Ok(Some(id)),
                None => rest.push(i),
            }
        }
        rest.sort_unstable_by_key(|&i| trimmed[i]);
        for i in rest {
            ids[i] = self.resolve_id_not_a_name(trimmed[i]);
        }
        let mut found: Vec<(Uuid, usize)> = Vec::with_capacity(ids.len());
        let mut users: Vec<Result<Option<User>>> = Vec::with_capacity(ids.len());
        for (i, id) in ids.into_iter().enumerate() {
            if let Ok(Some(id)) = id {
                found.push((id, i));
            }
            users.push(id.map(|_| None));
        }
        found.sort_unstable();
        for (id, i) in found {
            users[i] = self.store.get_user(id);
        }
        users.into_iter().collect()
    }

    /// A user the actor can see, or "not found" (also for users in other orgs).
    fn visible_user(&self, actor: &Actor, reference: &str) -> Result<User> {
        match self.resolve(reference)? {
            Some(u) if actor.sees(&u) => Ok(u),
            _ => Err(Error::not_found(format!("user {reference:?}"))),
        }
    }

    fn check_reason(&self, reason: Option<&str>) -> Result<Option<String>> {
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        match reason {
            None if self.policy.reason_required => Err(Error::invalid(
                "a reason is required for an MFA reset (for example --reason \"lost phone, ticket 4711\")",
            )),
            Some(r) if r.chars().count() > MAX_REASON_LEN => {
                Err(Error::invalid(format!("the reason is longer than {MAX_REASON_LEN} characters")))
            }
            Some(r) if r.chars().any(char::is_control) => Err(Error::invalid("the reason may not contain control characters")),
            r => Ok(r.map(str::to_string)),
        }
    }

    // ---------------------------------------------------------------- reset

    /// Reset the MFA of every target: one result per target. Each user's reset is one atomic unit
    /// (record, recovery codes, sessions, audit event); units are committed in batches and made
    /// durable before this returns. A dry run decides exactly the same way and changes nothing.
    pub fn reset_mfa(
        &self,
        actor: &Actor,
        targets: &[String],
        reason: Option<&str>,
        dry_run: bool,
        now: Timestamp,
    ) -> Result<ResetReport> {
        self.reset_mfa_with_progress(actor, targets, reason, dry_run, now, &mut |_, _| {})
    }

    /// [`Service::reset_mfa`], calling `progress(done, total)` after each batch.
    pub fn reset_mfa_with_progress(
        &self,
        actor: &Actor,
        targets: &[String],
        reason: Option<&str>,
        dry_run: bool,
        now: Timestamp,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<ResetReport> {
        let reason = self.check_reason(reason)?;
        if targets.is_empty() {
            return Err(Error::invalid("no users given to reset"));
        }
        let enforcement = self.enforcement_map()?;
        let mut decided = self.decide_resets(actor, targets, reason.as_deref(), &enforcement, now)?;
        skip_repeats(&mut decided);
        let mut results: Vec<ResetResult> = Vec::with_capacity(targets.len());
        // Index into `results` of each unit waiting to be committed.
        let mut pending: Vec<(usize, Change)> = Vec::new();
        for (result, change) in decided {
            if let Some(change) = change {
                pending.push((results.len(), change));
            }
            results.push(result);
        }
        let total = pending.len();
        if dry_run {
            // Denials are decided but, like everything in a dry run, not recorded.
            progress(total, total);
            return Ok(ResetReport { dry_run, results });
        }
        let batch_size = self.policy.batch_size.max(1);
        // One batch (a single reset, say) shares its commit and flush with concurrent callers;
        // several are committed one after the other and flushed once, at the end.
        let shared = pending.len() <= batch_size;
        let (mut done, mut flush) = (0, !shared);
        let mut pending = pending.into_iter().peekable();
        while pending.peek().is_some() {
            let (indexes, changes): (Vec<usize>, Vec<Change>) = pending.by_ref().take(batch_size).unzip();
            let committed = if shared { self.commit_durable(changes) } else { self.store_commit(&changes) };
            if committed.is_err() {
                // Someone changed one of these users meanwhile: decide each one again, alone.
                for &i in &indexes {
                    let target = results[i].target.clone();
                    results[i] = self.reset_one_again(actor, &target, reason.as_deref(), now);
                }
                flush = true;
            }
            done += indexes.len();
            progress(done, total);
        }
        if flush {
            self.store.flush()?;
        }
        Ok(ResetReport { dry_run, results })
    }

    fn reset_one_again(&self, actor: &Actor, target: &str, reason: Option<&str>, now: Timestamp) -> ResetResult {
        let mut last_error = String::new();
        for _ in 0..5 {
            let attempt = self.enforcement_map().and_then(|enf| {
                let (result, change) = self.decide_reset(actor, target, reason, &enf, now)?;
                if let Some(change) = change {
                    self.store_commit(&[change])?;
                }
                Ok(result)
            });
            match attempt {
                Ok(result) => return result,
                Err(Error::WriteConflict) => continue,
                Err(e) => {
                    last_error = e.to_string();
                    break;
                }
            }
        }
        ResetResult {
            target: target.into(),
            user_id: None,
            username: None,
            outcome: ResetOutcome::Failed,
            detail: Some(if last_error.is_empty() { "the user kept changing; try again".into() } else { last_error }),
            mfa_after: None,
        }
    }

    /// [`Service::decide_reset`] of every target, in order; the first error (in target order) is
    /// the answer. Deciding only reads, so a long list is decided on every core, in contiguous
    /// shares; the report and the units are the same as one thread's.
    fn decide_resets(
        &self,
        actor: &Actor,
        targets: &[String],
        reason: Option<&str>,
        enforcement: &HashMap<String, bool>,
        now: Timestamp,
    ) -> Result<Vec<(ResetResult, Option<Change>)>> {
        /// Fewer targets than this a thread are not worth one.
        const SHARE: usize = 4096;
        let decide = |share: &[String]| -> Result<Vec<(ResetResult, Option<Change>)>> {
            let users = self.resolve_many(share)?;
            Ok(share.iter().zip(users).map(|(target, user)| decide_reset_of(actor, target, user, reason, enforcement, now)).collect())
        };
        if targets.len() < 2 * SHARE {
            return decide(targets);
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = cores.min(targets.len() / SHARE).max(1);
        if threads == 1 {
            return decide(targets);
        }
        let (first, rest) = targets.split_at(targets.len().div_ceil(threads));
        std::thread::scope(|scope| {
            let others: Vec<_> = rest.chunks(first.len()).map(|share| scope.spawn(move || decide(share))).collect();
            let mut decided = decide(first)?;
            decided.reserve(rest.len());
            for other in others {
                decided.extend(other.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?);
            }
            Ok(decided)
        })
    }

    /// Decide what a reset does to one target, and the unit of work that does it. A target listed
    /// more than once is the caller's to notice (by the user id of the result).
    fn decide_reset(
        &self,
        actor: &Actor,
        target: &str,
        reason: Option<&str>,
        enforcement: &HashMap<String, bool>,
        now: Timestamp,
    ) -> Result<(ResetResult, Option<Change>)> {
        Ok(decide_reset_of(actor, target, self.resolve(target)?, reason, enforcement, now))
    }

    // ---------------------------------------------------------------- enrollment

    fn may_enroll(&self, actor: &Actor, user: &User) -> Result<()> {
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

    fn begin_enrollment_for(&self, actor: &Actor, user: User, issuer: &str, now: Timestamp) -> Result<Enrollment> {
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

    fn confirm_enrollment_for(&self, actor: &Actor, user: User, code: &str, now: Timestamp) -> Result<Confirmed> {
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

    fn record_wrong_code(&self, actor: &Actor, user: &User, action: &str, now: Timestamp) -> Result<()> {
        let mut next = user.clone();
        next.lockout = self.policy.lockout.after_failure(&user.lockout, now);
        let mut event = about(draft(actor, action, now), user);
        event.outcome = Outcome::Failure;
        event.detail = Some(match next.lockout.locked_until {
            Some(t) if t > now => format!("wrong code ({} in a row); locked for {} s", next.lockout.failures, t - now),
            _ => format!("wrong code ({} in a row)", next.lockout.failures),
        });
        self.commit(Change {
            users: vec![UserWrite { expected_version: Some(user.version), user: next }],
            audit: vec![event],
            ..Change::default()
        })
    }

    /// Check a TOTP code or a recovery code as the second factor of `user`, consuming it: a code's
    /// time step, or a recovery code, is accepted once. Wrong codes count towards the lockout.
    fn verify_second_factor(&self, actor: &Actor, user: &User, code: &str, now: Timestamp) -> Result<()> {
        let MfaState::Enrolled { secret, enrolled_at, last_step } = &user.mfa else {
            return Err(Error::Conflict(format!("{} has no MFA enrolled", user.username)));
        };
        if user.lockout.is_locked(now) {
            return Err(Error::Locked { retry_after_secs: user.lockout.retry_after(now) });
        }
        let mut next = user.clone();
        let accepted = if totp::looks_like_code(code) {
            let plain = self.sealer.open(&secret.0, user.id.as_bytes())?;
            match totp::check(&plain, code, now.max(0) as u64, self.policy.totp_skew) {
                Some(step) if step > *last_step => {
                    next.mfa = MfaState::Enrolled { secret: secret.clone(), enrolled_at: *enrolled_at, last_step: step };
                    Some("totp")
                }
                Some(_) => {
                    self.record_wrong_code(actor, user, "auth.mfa", now)?;
                    return Err(Error::Unauthenticated(
                        "that code was already used; wait for the next code from the app".into(),
                    ));
                }
                None => None,
            }
        } else {
            token::normalize_recovery_code(code).and_then(|c| {
                let h = token::hash(&c);
                let pos = user.recovery_codes.iter().position(|stored| stored == &h)?;
                next.recovery_codes.remove(pos);
                Some("recovery code")
            })
        };
        let Some(kind) = accepted else {
            self.record_wrong_code(actor, user, "auth.mfa", now)?;
            return Err(Error::Unauthenticated("wrong code".into()));
        };
        next.lockout = Default::default();
        next.last_login_at = Some(now);
        let mut event = about(draft(actor, "auth.mfa", now), user);
        event.detail = Some(format!("accepted a {kind}"));
        self.commit(Change {
            users: vec![UserWrite { expected_version: Some(user.version), user: next }],
            audit: vec![event],
            ..Change::default()
        })
    }

    // ---------------------------------------------------------------- login and tokens

    fn put_token(&self, user: &User, kind: SessionKind, lifetime: i64, now: Timestamp, extra: Change) -> Result<(String, Timestamp)> {
        let secret = token::new_token();
        let expires_at = now + lifetime;
        let mut change = extra;
        change
            .sessions_put
            .push((token::hash(&secret), Session { user_id: user.id, kind, created_at: now, expires_at }));
        self.commit(change)?;
        Ok((secret, expires_at))
    }

    fn new_session(&self, user: &User, source: &str, now: Timestamp) -> Result<NewSession> {
        let mut logged_in = user.clone();
        logged_in.last_login_at = Some(now);
        let actor = Actor { principal: principal_of(user), source: source.into() };
        let extra = Change {
            users: vec![UserWrite { expected_version: Some(user.version), user: logged_in.clone() }],
            audit: vec![about(draft(&actor, "auth.login", now), user)],
            ..Change::default()
        };
        let (token, expires_at) = self.put_token(user, SessionKind::Session, self.policy.session_secs, now, extra)?;
        Ok(NewSession { token, expires_at: user::rfc3339(expires_at), user: self.view(&logged_in, now)? })
    }

    /// First step of a login: the password. Unknown users, wrong passwords and disabled accounts
    /// all get the same answer, after the same time.
    pub fn login_password(&self, username: &str, password_given: &str, source: &str, now: Timestamp) -> Result<LoginStep> {
        let denied = || Error::Unauthenticated("wrong user name or password".into());
        let user = match self.store.user_id_by_name(username.trim())? {
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
            self.commit(Change { audit: vec![event], ..Change::default() })?;
            return Err(denied());
        }
        if user.lockout.is_locked(now) {
            return Err(Error::Locked { retry_after_secs: user.lockout.retry_after(now) });
        }
        let enforced = self.org_enforces(&user.org)?;
        let challenge = |kind: SessionKind| -> Result<LoginStep> {
            let enroll = kind == SessionKind::EnrollChallenge;
            let (challenge, expires_at) = self.put_token(&user, kind, self.policy.challenge_secs, now, Change::default())?;
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

    fn challenge_user(&self, challenge: &str, expected: &SessionKind, now: Timestamp) -> Result<(TokenHash, User)> {
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

    /// Second step of a login: a TOTP or recovery code for the challenge from the first step.
    pub fn login_code(&self, challenge: &str, code: &str, source: &str, now: Timestamp) -> Result<NewSession> {
        let (hash, user) = self.challenge_user(challenge, &SessionKind::MfaChallenge, now)?;
        let actor = Actor { principal: principal_of(&user), source: source.into() };
        self.verify_second_factor(&actor, &user, code, now)?;
        let user = self.store.get_user(user.id)?.ok_or_else(|| Error::not_found("user"))?;
        self.commit(Change { sessions_delete: vec![hash], ..Change::default() })?;
        self.new_session(&user, source, now)
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
        let session = self
            .store
            .get_session(&token::hash(bearer.trim()))?
            .ok_or_else(|| Error::Unauthenticated("unknown or revoked token".into()))?;
        if session.expires_at <= now {
            return Err(Error::Unauthenticated("the token has expired; log in again".into()));
        }
        let user = self
            .store
            .get_user(session.user_id)?
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

    /// Create a long-lived API key for the acting user, acting with `role` (never above the user's).
    pub fn create_api_key(&self, actor: &Actor, name: &str, role: Role, now: Timestamp) -> Result<(String, Timestamp)> {
        let Principal::User { id, .. } = &actor.principal else {
            return Err(Error::Forbidden("API keys are created by a logged-in Owner or Admin".into()));
        };
        if !policy::may_create_api_key(actor.role(), role) {
            return Err(Error::Forbidden(format!(
                "{} cannot create an API key with the role {role}",
                actor.role().with_article()
            )));
        }
        user::validate_name("API key name", name).map_err(Error::invalid)?;
        let user = self.store.get_user(*id)?.ok_or_else(|| Error::not_found("user"))?;
        let mut event = about(draft(actor, "apikey.create", now), &user);
        event.detail = Some(format!("key {name:?} with role {role}"));
        let kind = SessionKind::ApiKey { name: name.to_string(), role };
        self.put_token(&user, kind, self.policy.api_key_secs, now, Change { audit: vec![event], ..Change::default() })
    }

    // ---------------------------------------------------------------- users

    /// Create a user (and, with a password, let it log in).
    pub fn add_user(&self, actor: &Actor, new: NewUser, now: Timestamp) -> Result<UserView> {
        let user = self.prepare_user(actor, &new, now).map_err(|(_, e)| e)?;
        let number = self.store.allocate_numbers(1)?;
        let user = User { number, ..user };
        let event = about(draft(actor, "user.add", now), &user);
        self.commit(Change {
            users: vec![UserWrite { user: user.clone(), expected_version: None }],
            audit: vec![event],
            ..Change::default()
        })?;
        self.view(&user, now)
    }

    /// Validate a new user against the rules and the store; numbers are assigned by the caller.
    /// A problem comes with the name of the field it is about.
    fn prepare_user(&self, actor: &Actor, new: &NewUser, now: Timestamp) -> std::result::Result<User, (&'static str, Error)> {
        let invalid = |field| move |msg: String| (field, Error::invalid(msg));
        let storage = |e: Error| ("", e);
        user::validate_username(&new.username).map_err(invalid("username"))?;
        user::validate_email(&new.email).map_err(invalid("email"))?;
        user::validate_name("display name", &new.display_name).map_err(invalid("display_name"))?;
        let org_key = user::org_key(&new.org);
        let no_org = || ("org", Error::not_found(format!("org {:?} (create it with `mfadmin org add`)", new.org)));
        if actor.org().is_some_and(|o| o != org_key) {
            return Err(no_org());
        }
        let org = self.store.get_org(&org_key).map_err(storage)?.ok_or_else(no_org)?;
        if !policy::may_manage_user(actor.role(), new.role) {
            let why = format!("{} cannot create {}", actor.role().with_article(), new.role.with_article());
            return Err(("role", Error::Forbidden(why)));
        }
        if self.store.user_id_by_name(&new.username).map_err(storage)?.is_some() {
            return Err(("username", Error::Conflict(format!("the user name {:?} is already taken", new.username))));
        }
        if self.store.user_id_by_email(&new.email).map_err(storage)?.is_some() {
            return Err(("email", Error::Conflict(format!("the email {:?} is already used by another user", new.email))));
        }
        let password_hash = match &new.password {
            Some(p) => {
                password::check_strength(p).map_err(invalid("password"))?;
                Some(password::hash(p))
            }
            None => None,
        };
        Ok(User {
            id: Uuid::new_v4(),
            number: 0,
            username: new.username.trim().to_string(),
            email: new.email.trim().to_string(),
            display_name: new.display_name.trim().to_string(),
            org: org.key,
            role: new.role,
            status: Status::Active,
            password_hash,
            mfa: MfaState::NotEnrolled,
            lockout: Default::default(),
            recovery_codes: Vec::new(),
            created_at: now,
            last_login_at: None,
            mfa_enrolled_at: None,
            mfa_reset_at: None,
            version: 0,
        })
    }

    /// Import many users at once: all of them, or (with a problem in any) none. Problems come as
    /// (index into `rows`, field, message); nothing is written when there are any, nor when
    /// `check_only` (which answers how many would be imported).
    pub fn import_users(
        &self,
        actor: &Actor,
        rows: &[NewUser],
        check_only: bool,
        now: Timestamp,
    ) -> Result<std::result::Result<usize, Vec<ImportProblem>>> {
        may_create_users(actor)?;
        let mut problems = Vec::new();
        let mut users = Vec::with_capacity(rows.len());
        let (mut names, mut emails) = (HashSet::new(), HashSet::new());
        for (row, new) in rows.iter().enumerate() {
            let problem = |field: &'static str, message: String| ImportProblem { row, field, message };
            match self.prepare_user(actor, new, now) {
                Ok(u) => {
                    if !names.insert(u.username.to_lowercase()) {
                        problems.push(problem("username", format!("the user name {:?} appears twice in this import", u.username)));
                    } else if !emails.insert(u.email.to_lowercase()) {
                        problems.push(problem("email", format!("the email {:?} appears twice in this import", u.email)));
                    } else {
                        users.push(u);
                    }
                }
                Err(("", e)) => return Err(e),
                Err((field, e)) => problems.push(problem(field, e.to_string())),
            }
        }
        if !problems.is_empty() {
            return Ok(Err(problems));
        }
        if check_only {
            return Ok(Ok(users.len()));
        }
        let first = self.store.allocate_numbers(users.len() as u64)?;
        let mut change = Change::default();
        for (i, mut u) in users.into_iter().enumerate() {
            u.number = first + i as u64;
            change.audit.push(about(draft(actor, "user.add", now), &u));
            change.users.push(UserWrite { user: u, expected_version: None });
        }
        let count = change.users.len();
        self.commit(change)?;
        Ok(Ok(count))
    }

    /// Import users from CSV text with the header `username,email,display_name,role,org` (other
    /// columns are ignored): every row, or (with a problem in any) none, and then the error names
    /// each bad row by line and column. `skip_invalid` imports the valid rows and reports the
    /// others; `check_only` writes nothing.
    pub fn import_csv(&self, actor: &Actor, csv: &[u8], options: ImportOptions, now: Timestamp) -> Result<ImportReport> {
        may_create_users(actor)?;
        let (rows, mut errors) = parse_user_csv(csv)?;
        let users: Vec<NewUser> = rows.iter().map(|(_, u)| u.clone()).collect();
        // Check every row against the store first, so one run reports every problem.
        let problems = self.import_users(actor, &users, true, now)?.err().unwrap_or_default();
        let bad: HashSet<usize> = problems.iter().map(|p| p.row).collect();
        errors.extend(problems.into_iter().map(|p| RowError { line: rows[p.row].0, column: p.field.into(), message: p.message }));
        errors.sort_by_key(|e| e.line);
        if !errors.is_empty() && !options.skip_invalid {
            let list: Vec<String> = errors.iter().map(RowError::to_string).collect();
            let rows = if errors.len() == 1 { "1 row".to_string() } else { format!("{} rows", errors.len()) };
            return Err(Error::invalid(format!(
                "nothing was imported: fix {rows}, or import the others alone (--skip-invalid; over HTTP \
                 skip_invalid=true):\n{}",
                list.join("\n")
            )));
        }
        let valid: Vec<NewUser> = users.into_iter().enumerate().filter(|(i, _)| !bad.contains(i)).map(|(_, u)| u).collect();
        let imported = match self.import_users(actor, &valid, options.check_only, now)? {
            Ok(count) => count,
            Err(problems) => {
                return Err(Error::Conflict(format!(
                    "the store changed during the import ({}); nothing was imported, run it again",
                    problems[0].message
                )));
            }
        };
        Ok(ImportReport { check_only: options.check_only, imported, skipped: errors })
    }

    /// Write many prepared users (demo data) in batches, with one audit event for all of them.
    pub fn insert_generated_users(&self, actor: &Actor, mut users: Vec<User>, what: &str, now: Timestamp) -> Result<usize> {
        let count = users.len();
        let event = self.prepare_generated_users(actor, &mut users, what, now)?;
        // In key order, the store appends records instead of rewriting the same pages again and again.
        users.sort_unstable_by_key(|u| u.id);
        let mut batch = Vec::new();
        for u in users {
            batch.push(UserWrite { user: u, expected_version: None });
            if batch.len() == 2_000 {
                self.store_commit(&[Change { users: std::mem::take(&mut batch), ..Change::default() }])?;
            }
        }
        self.store_commit(&[Change { users: batch, audit: vec![event], ..Change::default() }])?;
        self.store.flush()?;
        Ok(count)
    }

    /// [`Service::insert_generated_users`] into a store created for them moments ago, which no one
    /// else uses yet (a new demo store): the store writes them tree by tree instead of in
    /// transactions (see [`Store::load_new_users`]).
    pub fn load_generated_users_into_new_store(&self, actor: &Actor, mut users: Vec<User>, what: &str, now: Timestamp) -> Result<usize> {
        let count = users.len();
        let event = self.prepare_generated_users(actor, &mut users, what, now)?;
        self.store.load_new_users(users)?;
        // The users went around the directory: whoever lists next reads them from the store.
        *self.directory.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = DirectoryState::NotBuilt;
        self.store_commit(&[Change { audit: vec![event], ..Change::default() }])?;
        self.store.flush()?;
        Ok(count)
    }

    /// Only the console operator generates users; each gets a fresh number, and all of them one
    /// audit event (returned, to be committed with the last of them).
    fn prepare_generated_users(&self, actor: &Actor, users: &mut [User], what: &str, now: Timestamp) -> Result<AuditDraft> {
        if !matches!(actor.principal, Principal::Console { .. }) {
            return Err(Error::Forbidden("only the console operator can generate users".into()));
        }
        let first = self.store.allocate_numbers(users.len() as u64)?;
        for (i, u) in users.iter_mut().enumerate() {
            u.number = first + i as u64;
        }
        let mut event = draft(actor, "user.generate", now);
        event.detail = Some(format!("{} {what}", users.len()));
        Ok(event)
    }

    pub fn set_password(&self, actor: &Actor, reference: &str, new_password: &str, now: Timestamp) -> Result<()> {
        let user = self.visible_user(actor, reference)?;
        if actor.user_id() != Some(user.id) && !policy::may_manage_user(actor.role(), user.role) {
            return Err(Error::Forbidden(format!("{} cannot set the password of {}", actor.role().with_article(), user.username)));
        }
        password::check_strength(new_password).map_err(Error::invalid)?;
        let mut next = user.clone();
        next.password_hash = Some(password::hash(new_password));
        self.commit(Change {
            users: vec![UserWrite { expected_version: Some(user.version), user: next }],
            revoke_sessions_of: vec![user.id],
            audit: vec![about(draft(actor, "user.set_password", now), &user)],
            ..Change::default()
        })
    }

    /// Disable or enable a user. Disabling also ends the user's sessions.
    pub fn set_status(&self, actor: &Actor, reference: &str, status: Status, now: Timestamp) -> Result<UserView> {
        let user = self.visible_user(actor, reference)?;
        if !policy::may_manage_user(actor.role(), user.role) || actor.user_id() == Some(user.id) {
            return Err(Error::Forbidden(format!(
                "{} cannot change the status of {}",
                actor.role().with_article(),
                user.username
            )));
        }
        let mut next = user.clone();
        next.status = status;
        let action = if status == Status::Active { "user.enable" } else { "user.disable" };
        self.commit(Change {
            users: vec![UserWrite { expected_version: Some(user.version), user: next.clone() }],
            revoke_sessions_of: if status == Status::Disabled { vec![user.id] } else { vec![] },
            audit: vec![about(draft(actor, action, now), &user)],
            ..Change::default()
        })?;
        self.view(&next, now)
    }

    pub fn get_user(&self, actor: &Actor, reference: &str, now: Timestamp) -> Result<UserDetail> {
        let user = self.visible_user(actor, reference)?;
        if actor.user_id() != Some(user.id) && !policy::may_read_users(actor.role()) {
            return Err(Error::not_found(format!("user {reference:?}")));
        }
        let mut recent = Vec::new();
        if policy::may_read_audit(actor.role()) || actor.user_id() == Some(user.id) {
            self.store.scan_audit(true, &mut |e| {
                if e.draft.target_id == Some(user.id) {
                    recent.push(AuditView::new(&e));
                }
                recent.len() < 10
            })?;
        }
        Ok(UserDetail { user: self.view(&user, now)?, recent_audit: recent })
    }

    /// The users the actor may see that match `query`, sorted and paged. The directory keeps the
    /// matches of recent filters, so a page is a seek by the cursor's key, not a scan.
    pub fn list_users(&self, actor: &Actor, query: &UserQuery, now: Timestamp) -> Result<UserPage> {
        let (filter, cursor) = list_filter(actor, query);
        self.with_directory(|directory| {
            let after = list_cursor(directory, &filter, cursor, now)?;
            let page = directory.page(&filter, after.as_ref(), query.descending, query.limit.unwrap_or(usize::MAX), now);
            Ok(user_page(directory, page, now))
        })?
    }

    /// [`Service::list_users`] when it can answer from memory at once — the directory is built and
    /// the filter's matches are cached — else `None` (then call `list_users` where blocking is fine).
    pub fn list_users_in_memory(&self, actor: &Actor, query: &UserQuery, now: Timestamp) -> Option<Result<UserPage>> {
        let (filter, cursor) = list_filter(actor, query);
        let guard = self.directory.try_read().ok()?;
        let DirectoryState::Built(directory) = &*guard else {
            return None;
        };
        let after = match list_cursor(directory, &filter, cursor, now) {
            Ok(after) => after,
            Err(e) => return Some(Err(e)),
        };
        let page = directory.page_if_cached(&filter, after.as_ref(), query.descending, query.limit.unwrap_or(usize::MAX), now)?;
        Some(Ok(user_page(directory, page, now)))
    }

    /// Every user the actor may see, for a console that keeps a table of its own: first up to
    /// `first` users in user-name order (through the name index, so they come at once), then every
    /// user in the store's order, those first ones again too. `emit(users, read, of)` gets the
    /// batches, with how many of the store's `of` users were read so far, and returns false to
    /// stop. It reads the store, so a console never builds the directory beside its own table.
    pub fn stream_users(
        &self,
        actor: &Actor,
        first: usize,
        now: Timestamp,
        emit: &mut dyn FnMut(Vec<UserView>, usize, usize) -> bool,
    ) -> Result<()> {
        let (filter, _) = list_filter(actor, &UserQuery::default());
        let visible = |u: &User| filter.orgs.iter().all(|o| *o == u.org);
        let enforced = self.enforcement_map()?;
        let view = |u: &User| UserView::new(u, enforced.get(&u.org).copied().unwrap_or(false), now);
        let of = self.store.user_count_bound()?;
        if let Some(only) = filter.only {
            let me = self.store.get_user(only)?.filter(visible).map(|u| view(&u));
            emit(me.into_iter().collect(), of, of);
            return Ok(());
        }
        let mut batch = Vec::new();
        let mut failed = None;
        // A small org is sought among many names: give up on the first page after a while.
        let mut tries = first.saturating_mul(50);
        let name_order = if first == 0 { Ok(()) } else { self.store.scan_ids_by_name(&mut |id| {
            match self.store.get_user(id) {
                Ok(Some(u)) if visible(&u) => batch.push(view(&u)),
                Ok(_) => {}
                Err(e) => failed = Some(e),
            }
            tries = tries.saturating_sub(1);
            failed.is_none() && batch.len() < first && tries > 0
        }) };
        name_order?;
        if let Some(e) = failed {
            return Err(e);
        }
        if !emit(std::mem::take(&mut batch), 0, of) {
            return Ok(());
        }
        let (mut read, mut going) = (0, true);
        self.store.scan_users(&mut |u| {
            read += 1;
            if visible(&u) {
                batch.push(view(&u));
            }
            if batch.len() >= STREAM_BATCH {
                going = emit(std::mem::take(&mut batch), read, of);
            }
            going
        })?;
        if going {
            emit(batch, read, read);
        }
        Ok(())
    }

    // ---------------------------------------------------------------- orgs

    /// Create an org. Only the console operator creates orgs.
    pub fn add_org(&self, actor: &Actor, name: &str, mfa_enforced: bool, now: Timestamp) -> Result<OrgView> {
        if !matches!(actor.principal, Principal::Console { .. }) {
            return Err(Error::Forbidden(
                "orgs are created by the console operator: run `mfadmin org add NAME` on the host that holds the \
                 store (the server's host, after stopping `mfadmin serve`)"
                    .into(),
            ));
        }
        user::validate_name("org name", name).map_err(Error::invalid)?;
        let key = user::org_key(name);
        if self.store.get_org(&key)?.is_some() {
            return Err(Error::Conflict(format!("the org {name:?} already exists")));
        }
        let org = Org { key: key.clone(), name: name.trim().to_string(), mfa_enforced, created_at: now };
        let mut event = draft(actor, "org.add", now);
        event.org = Some(key);
        self.commit(Change { orgs: vec![org.clone()], audit: vec![event], ..Change::default() })?;
        Ok(OrgView { name: org.name, mfa_enforced, users: 0, enrolled: 0 })
    }

    /// The orgs the actor can see, with user counts.
    pub fn orgs(&self, actor: &Actor, now: Timestamp) -> Result<Vec<OrgView>> {
        let counts: HashMap<String, (usize, usize)> = self.with_directory(|directory| {
            let mut counts: HashMap<String, (usize, usize)> = HashMap::new();
            for s in directory.iter() {
                let c = counts.entry(s.org.clone()).or_default();
                c.0 += 1;
                if s.mfa_status(false, now) == MfaStatus::Enrolled {
                    c.1 += 1;
                }
            }
            counts
        })?;
        Ok(self
            .store
            .orgs()?
            .into_iter()
            .filter(|o| actor.org().is_none_or(|a| a == o.key))
            .map(|o| {
                let (users, enrolled) = counts.get(&o.key).copied().unwrap_or_default();
                OrgView { name: o.name, mfa_enforced: o.mfa_enforced, users, enrolled }
            })
            .collect())
    }

    /// Turn MFA enforcement on or off for an org (the actor's own, unless the console names one).
    pub fn set_mfa_enforced(&self, actor: &Actor, org: Option<&str>, enforced: bool, now: Timestamp) -> Result<OrgView> {
        let key = match (actor.org(), org) {
            (Some(own), Some(named)) if user::org_key(named) != own => {
                return Err(Error::not_found(format!("org {named:?}")));
            }
            (Some(own), _) => own.to_string(),
            (None, Some(named)) => user::org_key(named),
            (None, None) => {
                let orgs = self.store.orgs()?;
                match orgs.as_slice() {
                    [only] => only.key.clone(),
                    _ => return Err(Error::invalid("there are several orgs: name one with --org")),
                }
            }
        };
        if !policy::may_change_org(actor.role()) {
            return Err(Error::Forbidden(format!("{} cannot change org settings", actor.role().with_article())));
        }
        let mut org = self.store.get_org(&key)?.ok_or_else(|| Error::not_found(format!("org {key:?}")))?;
        org.mfa_enforced = enforced;
        let mut event = draft(actor, "org.enforce_mfa", now);
        event.org = Some(key.clone());
        event.detail = Some(if enforced { "on".into() } else { "off".into() });
        self.commit(Change { orgs: vec![org], audit: vec![event], ..Change::default() })?;
        self.orgs(actor, now)?
            .into_iter()
            .find(|o| user::org_key(&o.name) == key)
            .ok_or_else(|| Error::not_found("org"))
    }

    // ---------------------------------------------------------------- audit

    fn may_read_audit(&self, actor: &Actor) -> Result<()> {
        if policy::may_read_audit(actor.role()) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!("{} cannot read the audit log", actor.role().with_article())))
        }
    }

    /// Audit events the actor may see, newest first.
    pub fn audit_list(&self, actor: &Actor, query: &AuditQuery) -> Result<Vec<AuditView>> {
        self.may_read_audit(actor)?;
        let needle = query.text.as_deref().map(str::to_lowercase).filter(|t| !t.is_empty());
        let limit = query.limit.unwrap_or(100);
        let mut out = Vec::new();
        self.store.scan_audit(true, &mut |e| {
            let d = &e.draft;
            let visible = actor.org().is_none_or(|o| d.org.as_deref() == Some(o));
            let matches = needle.as_deref().is_none_or(|n| {
                [Some(&d.actor), Some(&d.action), d.target.as_ref(), d.reason.as_ref(), d.detail.as_ref()]
                    .into_iter()
                    .flatten()
                    .any(|s| contains_ci(s, n))
            });
            if visible && matches {
                out.push(AuditView::new(&e));
            }
            out.len() < limit
        })?;
        Ok(out)
    }

    /// Every audit event the actor may see, oldest first, to `visit`.
    pub fn audit_export(&self, actor: &Actor, visit: &mut dyn FnMut(AuditView) -> Result<()>) -> Result<()> {
        self.may_read_audit(actor)?;
        let mut failure = None;
        self.store.scan_audit(false, &mut |e| {
            if actor.org().is_none_or(|o| e.draft.org.as_deref() == Some(o))
                && let Err(err) = visit(AuditView::new(&e)) {
                    failure = Some(err);
                    return false;
                }
            true
        })?;
        failure.map_or(Ok(()), Err)
    }

    /// Every audit event the actor may see, oldest first, written to `out` as JSON Lines or as CSV
    /// under a header. Returns how many events were written.
    pub fn audit_export_to(&self, actor: &Actor, format: AuditFormat, out: &mut dyn std::io::Write) -> Result<u64> {
        self.may_read_audit(actor)?;
        let written = |e: std::io::Error| Error::Storage(format!("writing the export: {e}"));
        let mut count = 0u64;
        match format {
            AuditFormat::Jsonl => self.audit_export(actor, &mut |e| {
                count += 1;
                serde_json::to_writer(&mut *out, &e).map_err(|e| written(e.into()))?;
                out.write_all(b"\n").map_err(written)
            })?,
            AuditFormat::Csv => {
                let mut w = csv::Writer::from_writer(&mut *out);
                let csv_failed = |e: csv::Error| written(e.into());
                w.write_record(AUDIT_CSV_HEADER).map_err(csv_failed)?;
                self.audit_export(actor, &mut |e| {
                    count += 1;
                    w.write_record(audit_csv_row(&e)).map_err(csv_failed)
                })?;
                w.flush().map_err(written)?;
            }
        }
        Ok(count)
    }

    /// Check the store offline: indexes agree with the records, and the audit chain verifies.
    pub fn check(&self, actor: &Actor) -> Result<(Vec<String>, VerifyReport)> {
        if !matches!(actor.principal, Principal::Console { .. }) {
            return Err(Error::Forbidden("the store check is for the console operator".into()));
        }
        Ok((self.store.check_indexes()?, self.audit_verify(actor)?))
    }

    /// Walk the whole chain and name the first broken link.
    pub fn audit_verify(&self, actor: &Actor) -> Result<VerifyReport> {
        self.may_read_audit(actor)?;
        let mut check = ChainCheck::new();
        let mut broken: Option<BrokenLink> = None;
        self.store.scan_audit(false, &mut |e| match check.step(&e) {
            Ok(()) => true,
            Err(b) => {
                broken = Some(b);
                false
            }
        })?;
        let result = match broken {
            Some(b) => Err(b),
            None => check.finish(self.store.audit_head()?),
        };
        Ok(match result {
            Ok(events) => VerifyReport { events, ok: true, broken_at: None, problem: None },
            Err(b) => VerifyReport { events: b.seq.saturating_sub(1), ok: false, broken_at: Some(b.seq), problem: Some(b.why) },
        })
    }

    // ---------------------------------------------------------------- API keys: list and revoke
    // (added with `mfadmin serve`, issue 4: keys are revocable and audited)

    /// The unexpired API keys of the actor's org (every org for the console), for an Owner or Admin.
    pub fn list_api_keys(&self, actor: &Actor, now: Timestamp) -> Result<Vec<ApiKeyView>> {
        if !policy::may_create_api_key(actor.role(), Role::Member) {
            return Err(Error::Forbidden(format!("{} cannot see API keys", actor.role().with_article())));
        }
        let mut owners = Vec::new();
        self.store.scan_users(&mut |u| {
            if actor.sees(&u) && policy::may_create_api_key(u.role, Role::Member) {
                owners.push(u);
            }
            true
        })?;
        let mut keys = Vec::new();
        for owner in owners {
            for (hash, session) in self.store.sessions_of(owner.id)? {
                if let SessionKind::ApiKey { name, role } = session.kind
                    && session.expires_at > now
                {
                    keys.push(ApiKeyView {
                        id: api_key_id(&hash),
                        name,
                        role,
                        owner: owner.username.clone(),
                        org: owner.org.clone(),
                        created_at: user::rfc3339(session.created_at),
                        expires_at: user::rfc3339(session.expires_at),
                    });
                }
            }
        }
        keys.sort_by(|a, b| (&a.org, &a.owner, &a.name, &a.id).cmp(&(&b.org, &b.owner, &b.name, &b.id)));
        Ok(keys)
    }

    /// Revoke the API key with this id (from [`Service::list_api_keys`]). An Owner revokes any key
    /// of the org; an Admin its own keys and those of the users it may manage.
    pub fn revoke_api_key(&self, actor: &Actor, id: &str, now: Timestamp) -> Result<()> {
        let id = id.trim().to_lowercase();
        let not_found = || Error::not_found(format!("API key {id:?}"));
        let Some(key) = self.list_api_keys(actor, now)?.into_iter().find(|k| k.id == id) else {
            return Err(not_found());
        };
        let owner = self.resolve(&key.owner)?.ok_or_else(not_found)?;
        if actor.user_id() != Some(owner.id) && !policy::may_manage_user(actor.role(), owner.role) {
            return Err(Error::Forbidden(format!(
                "{} cannot revoke the API keys of {}",
                actor.role().with_article(),
                owner.role.with_article()
            )));
        }
        let hash = self
            .store
            .sessions_of(owner.id)?
            .into_iter()
            .map(|(h, _)| h)
            .find(|h| api_key_id(h) == id)
            .ok_or_else(not_found)?;
        let mut event = about(draft(actor, "apikey.revoke", now), &owner);
        event.detail = Some(format!("key {:?} ({id})", key.name));
        self.commit(Change { sessions_delete: vec![hash], audit: vec![event], ..Change::default() })
    }

    // ---------------------------------------------------------------- all-or-nothing reset
    // (added with the vendor-compatible routes, issue 5: Resolver's bulk reset changes all or none)

    /// Reset the MFA of every target, or of none. Each target is decided as in
    /// [`Service::reset_mfa`]; when any target is unknown in the actor's org (`not_found`) or may not
    /// be reset by the actor (`denied`), no user changes (the denials are audited, as in any reset)
    /// and `committed` is false. Otherwise every unit is committed in one transaction, then flushed.
    /// Targets without a factor, or listed twice, are skipped and do not stop the others.
    pub fn reset_mfa_all_or_nothing(
        &self,
        actor: &Actor,
        targets: &[String],
        reason: Option<&str>,
        now: Timestamp,
    ) -> Result<AllOrNothingReport> {
        let reason = self.check_reason(reason)?;
        if targets.is_empty() {
            return Err(Error::invalid("no users given to reset"));
        }
        // A user changed between deciding and committing: decide everything again.
        for _ in 0..5 {
            let enforcement = self.enforcement_map()?;
            let mut decided = self.decide_resets(actor, targets, reason.as_deref(), &enforcement, now)?;
            skip_repeats(&mut decided);
            let mut results = Vec::with_capacity(targets.len());
            let (mut resets, mut denials) = (Vec::new(), Vec::new());
            for (result, change) in decided {
                match (result.outcome, change) {
                    (ResetOutcome::Denied, Some(change)) => denials.push(change),
                    (_, Some(change)) => resets.push(change),
                    (_, None) => {}
                }
                results.push(result);
            }
            let refused = results.iter().any(|r| matches!(r.outcome, ResetOutcome::NotFound | ResetOutcome::Denied));
            let changes = if refused { denials } else { resets };
            if !changes.is_empty() {
                match self.store_commit(&changes) {
                    Ok(()) => self.store.flush()?,
                    Err(Error::WriteConflict) => continue,
                    Err(e) => return Err(e),
                }
            }
            return Ok(AllOrNothingReport { committed: !refused, results });
        }
        Err(Error::WriteConflict)
    }
}

/// [`Service::decide_reset`] of a target already resolved to `user` (or to no one).
fn decide_reset_of(
    actor: &Actor,
    target: &str,
    user: Option<User>,
    reason: Option<&str>,
    enforcement: &HashMap<String, bool>,
    now: Timestamp,
) -> (ResetResult, Option<Change>) {
    let mut result = ResetResult {
        target: target.to_string(),
        user_id: None,
        username: None,
        outcome: ResetOutcome::NotFound,
        detail: None,
        mfa_after: None,
    };
    let user = match user {
        Some(u) if actor.sees(&u) => u,
        _ => return (result, None),
    };
    result.user_id = Some(user.id);
    result.username = Some(user.username.clone());
    let enforced = enforcement.get(&user.org).copied().unwrap_or(false);
    let mut event = about(draft(actor, "mfa.reset", now), &user);
    event.reason = reason.map(str::to_string);
    if let Err(policy::Denied(why)) = policy::may_reset(actor.role(), user.role, actor.user_id() == Some(user.id)) {
        result.outcome = ResetOutcome::Denied;
        result.detail = Some(why.clone());
        event.outcome = Outcome::Denied;
        event.detail = Some(why);
        return (result, Some(Change { audit: vec![event], ..Change::default() }));
    }
    let (id, version) = (user.id, user.version);
    let after = match user.into_reset_mfa(enforced, now) {
        Ok(after) => after,
        Err(user) => {
            result.outcome = ResetOutcome::Skipped;
            result.detail = Some("MFA was not set up".into());
            result.mfa_after = Some(user.mfa_status(enforced, now));
            return (result, None);
        }
    };
    let mfa_after = after.mfa_status(enforced, now);
    let after = User { version: version + 1, ..after };
    result.outcome = ResetOutcome::Reset;
    result.mfa_after = Some(mfa_after);
    event.detail = Some(format!("mfa now {mfa_after}"));
    let change = Change {
        users: vec![UserWrite { expected_version: Some(version), user: after }],
        revoke_sessions_of: vec![id],
        audit: vec![event],
        ..Change::default()
    };
    (result, Some(change))
}

/// A user named by more than one target is reset once, for the first target that names them; the
/// later targets are skipped (and change nothing).
fn skip_repeats(decided: &mut [(ResetResult, Option<Change>)]) {
    let mut seen = HashSet::new();
    for (result, change) in decided {
        if let Some(id) = result.user_id
            && !seen.insert(id)
        {
            result.outcome = ResetOutcome::Skipped;
            result.detail = Some("listed more than once".into());
            result.mfa_after = None;
            *change = None;
        }
    }
}

/// What [`Service::reset_mfa_all_or_nothing`] decided for each target, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllOrNothingReport {
    /// True when every reset was committed; false when an unknown or denied target stopped them all.
    pub committed: bool,
    pub results: Vec<ResetResult>,
}

/// An API key as listed: never the key itself, only an id derived from its hash.
/// An import is refused as a whole to a role that may create no user at all; other rows that ask
/// for a role above the actor's are refused row by row.
fn may_create_users(actor: &Actor) -> Result<()> {
    if Role::ALL.iter().any(|&r| policy::may_manage_user(actor.role(), r)) {
        Ok(())
    } else {
        Err(Error::Forbidden(format!("{} cannot create users", actor.role().with_article())))
    }
}

pub const AUDIT_CSV_HEADER: [&str; 13] =
    ["seq", "at", "actor", "action", "target", "target_id", "org", "outcome", "reason", "detail", "source", "prev_hash", "hash"];

/// An audit event as a CSV row under [`AUDIT_CSV_HEADER`].
pub fn audit_csv_row(e: &AuditView) -> Vec<String> {
    let opt = |o: &Option<String>| o.clone().unwrap_or_default();
    vec![
        e.seq.to_string(),
        e.at.clone(),
        e.actor.clone(),
        e.action.clone(),
        opt(&e.target),
        e.target_id.map(|i| i.to_string()).unwrap_or_default(),
        opt(&e.org),
        e.outcome.as_str().into(),
        opt(&e.reason),
        opt(&e.detail),
        e.source.clone(),
        e.prev_hash.clone(),
        e.hash.clone(),
    ]
}

const IMPORT_COLUMNS: [&str; 5] = ["username", "email", "display_name", "role", "org"];

/// The rows of a user CSV that parsed, each with its line, and those that did not.
pub type ParsedCsv = (Vec<(u64, NewUser)>, Vec<RowError>);

/// Parse user CSV (header `username,email,display_name,role,org`; other columns are ignored).
pub fn parse_user_csv(input: &[u8]) -> Result<ParsedCsv> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(input);
    let headers = reader.headers().map_err(|e| Error::invalid(format!("line 1: cannot read the CSV header: {e}")))?.clone();
    let index: Vec<usize> = IMPORT_COLUMNS
        .iter()
        .map(|c| {
            headers.iter().position(|h| h.eq_ignore_ascii_case(c)).ok_or_else(|| {
                Error::invalid(format!("line 1: the header has no column {c:?}; it must name username,email,display_name,role,org"))
            })
        })
        .collect::<Result<_>>()?;
    let (mut rows, mut errors) = (Vec::new(), Vec::new());
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                errors.push(RowError { line, column: "-".into(), message: format!("not valid CSV: {e}") });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: usize| record.get(index[i]).unwrap_or("").to_string();
        let missing = IMPORT_COLUMNS.iter().enumerate().find(|(i, _)| field(*i).is_empty());
        if let Some((_, column)) = missing {
            errors.push(RowError { line, column: column.to_string(), message: "is empty".into() });
            continue;
        }
        let role = match field(3).parse::<Role>() {
            Ok(r) => r,
            Err(message) => {
                errors.push(RowError { line, column: "role".into(), message });
                continue;
            }
        };
        rows.push((
            line,
            NewUser { username: field(0), email: field(1), display_name: field(2), role, org: field(4), password: None },
        ));
    }
    Ok((rows, errors))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiKeyView {
    /// 16 hex digits that name the key (the start of its hash).
    pub id: String,
    pub name: String,
    pub role: Role,
    /// The user who created it.
    pub owner: String,
    pub org: String,
    pub created_at: String,
    pub expires_at: String,
}

fn api_key_id(hash: &TokenHash) -> String {
    hex::encode(&hash[..8])
}

/// The operating-system account running this process: `$USER`, else the passwd entry of our uid.
fn os_user_name() -> String {
    if let Some(name) = ["USER", "LOGNAME", "USERNAME"].iter().find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty())) {
        return name;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) {
            let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
            let found = passwd.lines().find_map(|line| {
                let mut f = line.split(':');
                let name = f.next()?;
                (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
            });
            return found.unwrap_or_else(|| format!("uid{uid}"));
        }
    }
    "unknown".into()
}

/// The directory filter of a listing: the query within what the actor may see; and its cursor.
fn list_filter<'q>(actor: &Actor, query: &'q UserQuery) -> (Filter, Option<&'q str>) {
    let needle = query.text.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_lowercase);
    let mut orgs: Vec<String> = actor.org().map(str::to_string).into_iter().collect();
    if let Some(named) = query.org.as_deref().map(user::org_key)
        && !orgs.contains(&named)
    {
        orgs.push(named);
    }
    let filter = Filter {
        orgs,
        only: if policy::may_read_users(actor.role()) { None } else { Some(actor.user_id().unwrap_or(Uuid::nil())) },
        role: query.role,
        status: query.status,
        needle,
        mfa: query.mfa,
        sort: query.sort,
    };
    (filter, query.cursor.as_deref().map(str::trim).filter(|c| !c.is_empty()))
}

fn list_cursor(directory: &Directory, filter: &Filter, cursor: Option<&str>, now: Timestamp) -> Result<Option<Cursor>> {
    Ok(match cursor {
        None => None,
        // A cursor from an older release names only the last user of its page.
        Some(c) if Uuid::parse_str(c).is_ok() => Uuid::parse_str(c).ok().and_then(|id| directory.cursor_at(filter, id, now)),
        Some(c) => match Cursor::decode(c) {
            Some(cursor) if cursor.sort == filter.sort => Some(cursor),
            Some(_) => return Err(Error::invalid(format!("{c:?} is a cursor of a list in another order"))),
            None => return Err(Error::invalid(format!("{c:?} is not a cursor from a previous page"))),
        },
    })
}

fn user_page(directory: &Directory, page: crate::domain::directory::Page<'_>, now: Timestamp) -> UserPage {
    let users = page.rows.iter().map(|s| s.view(directory.enforces(&s.org), now)).collect();
    UserPage { users, next_cursor: page.next.map(|c| c.encode()), total: page.total }
}

fn principal_of(user: &User) -> Principal {
    Principal::User { id: user.id, username: user.username.clone(), org: user.org.clone(), role: user.role }
}

fn contains_ci(haystack: &str, lowered_needle: &str) -> bool {
    if lowered_needle.is_empty() {
        true
    } else if haystack.is_ascii() && lowered_needle.is_ascii() {
        haystack.as_bytes().windows(lowered_needle.len()).any(|w| w.eq_ignore_ascii_case(lowered_needle.as_bytes()))
    } else {
        haystack.to_lowercase().contains(lowered_needle)
    }
}
