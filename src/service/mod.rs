//! The one admin service every front end calls: authorization, audit and every operation, once.
//! This file holds the service itself, who acts ([`Actor`]) and the one commit path (group commit,
//! directory upkeep); each capability has its own file (a reset is decided in `reset.rs`).

mod apikeys;
mod audit;
mod csv_cell;
mod enroll;
mod import;
mod login;
mod orgs;
mod reset;
mod unlock;
mod sessions;
mod users;
mod validate;

pub use apikeys::*;
pub use audit::*;
pub use csv_cell::*;
pub use enroll::*;
pub use import::*;
pub use login::*;
pub use orgs::*;
pub use reset::*;
pub use users::*;
pub use sessions::{EXPIRED_PASS_EVERY, EXPIRED_PER_PASS};
pub use validate::{VALIDATE_ACTION, ValidateRequest, Validation, Validator, serial_of};

use crate::auth::seal::Sealer;
use crate::config::Policy;
use crate::domain::directory::{Directory, Summary};
use crate::domain::audit::{AuditDraft, Outcome};
use crate::domain::mfa::SealedSecret;
use crate::domain::role::Role;
use crate::domain::user::{User, UserView};
use crate::domain::Timestamp;
use crate::error::{Error, Result};
use crate::store::{Change, Store};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use uuid::Uuid;

const META_KEY_CHECK: &str = "key_check";

const KEY_CHECK_PLAINTEXT: &[u8] = b"mfadmin key check";
/// The key check of a store whose audit chain is keyed: sealed, so only the key file's holder can
/// write it, and it tells `audit verify` that a chain found plain was rewritten (a marker deleted).
const KEY_CHECK_KEYED_PLAINTEXT: &[u8] = b"mfadmin key check; audit chain keyed";

const MAX_REASON_LEN: usize = 500;

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
    /// A system checking second factors (`/validate/check`): may do nothing else, sees no user.
    Validator { name: String },
}

impl Actor {
    pub fn console(source: &str) -> Actor {
        Actor { principal: Principal::Console { os_user: os_user_name() }, source: source.into() }
    }

    pub fn role(&self) -> Role {
        match &self.principal {
            Principal::Console { .. } => Role::Owner,
            Principal::Validator { .. } => Role::Member,
            Principal::User { role, .. } | Principal::ApiKey { role, .. } => *role,
        }
    }

    /// The org the actor acts in; `None` for the console, which sees every org.
    pub fn org(&self) -> Option<&str> {
        match &self.principal {
            Principal::Console { .. } => None,
            Principal::Validator { .. } => Some(""),
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
            Principal::Validator { name } => name.clone(),
        }
    }

    fn sees(&self, user: &User) -> bool {
        self.org().is_none_or(|org| org == user.org)
    }
}

pub struct Service {
    store: Arc<dyn Store>,
    sealer: Sealer,
    /// The key of the audit chain's links (derived from the key file).
    chain_key: crate::domain::audit::ChainKey,
    policy: Policy,
    /// Summaries of every user for listing; built on first use (or by [`Service::warm_directory`]),
    /// then kept in step by `store_commit`.
    directory: RwLock<DirectoryState>,
    /// Held while the directory is built, so that it is built once.
    building: Mutex<()>,
    /// The store is shared with other nodes (PostgreSQL): their commits reach the directory
    /// through [`Service::catch_up`].
    shared: bool,
    /// The commit sequence number up to which the directory has read other nodes' commits; held
    /// while catching up, so that catch-ups run one at a time and it only moves forward.
    watermark: Mutex<u64>,
    /// Durable commits of concurrent callers, shared (see [`Service::commit_durable`]).
    group: Mutex<GroupCommit>,
    group_done: Condvar,
    /// The group commits' flushes, one at a time (see [`Service::flush_shared`]).
    flushes: Mutex<Flushes>,
    flush_done: Condvar,
}

/// The flushes of group commits: how many started, which one finished last and how.
#[derive(Default)]
struct Flushes {
    started: u64,
    finished: u64,
    running: bool,
    /// The answer of the flush that finished last.
    last: Option<std::result::Result<(), String>>,
}

/// How long the follower waits for a wake-up before it catches up anyway (and checks its
/// connection).
pub const FOLLOW_TICK: std::time::Duration = std::time::Duration::from_secs(1);
/// The longest pause between attempts to open the listener while the database is unreachable.
const FOLLOW_MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(5);
/// The shortest time between two catch-ups of the follower: under a stream of commits it reads
/// them in batches instead of once per commit (each costs the database a transaction). A listing
/// catches up by itself, so this delays no listing.
const FOLLOW_MIN_GAP: std::time::Duration = std::time::Duration::from_millis(25);
/// How long a shared store keeps which users each commit wrote (see [`crate::store::Store::prune_changes`]):
/// a node that could not catch up for longer (its database unreachable, say) reads everything again.
pub const CHANGES_KEPT: std::time::Duration = std::time::Duration::from_secs(600);
/// How often the follower prunes what is older than [`CHANGES_KEPT`].
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// The loop of [`Service::follow_store`]'s thread. It holds the service only while it catches up.
fn follow(weak: std::sync::Weak<Service>) {
    let mut listener: Option<Box<dyn crate::store::CommitListener>> = None;
    let mut backoff = std::time::Duration::from_millis(100);
    let mut last_catch_up: Option<std::time::Instant> = None;
    let mut last_prune = std::time::Instant::now();
    loop {
        if let Some(gap) = last_catch_up.and_then(|at| FOLLOW_MIN_GAP.checked_sub(at.elapsed())) {
            std::thread::sleep(gap);
        }
        let Some(service) = weak.upgrade() else { return };
        if listener.is_none() {
            match service.store.commit_listener() {
                Ok(Some(opened)) => {
                    listener = Some(opened);
                    backoff = std::time::Duration::from_millis(100);
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!("{e}; trying again in {} ms", backoff.as_millis());
                    drop(service);
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(FOLLOW_MAX_BACKOFF);
                    continue;
                }
            }
        }
        // After every wake-up, every quiet tick and every (re)connection: announcements missed
        // while the listener was away are found by the watermark.
        if let Err(e) = service.catch_up() {
            tracing::warn!("catching up with other nodes' commits failed (trying again): {e}");
        }
        last_catch_up = Some(std::time::Instant::now());
        if last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = std::time::Instant::now();
            if let Err(e) = service.store.prune_changes(CHANGES_KEPT) {
                tracing::warn!("pruning the store's change log failed (trying again later): {e}");
            }
        }
        drop(service);
        if let Some(open) = listener.as_mut()
            && let Err(e) = open.wait(FOLLOW_TICK)
        {
            tracing::warn!("{e}; listening again");
            listener = None;
        }
    }
}

/// Answers the units of a group commit with an error should their leader unwind before it has
/// (and gives up the lead, if it still holds it).
struct Lead<'a> {
    service: &'a Service,
    tickets: Vec<u64>,
    leading: bool,
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        let mut group = self.service.group.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for ticket in &self.tickets {
            group.results.insert(*ticket, Err(Error::Storage("the commit was interrupted".into())));
        }
        if self.leading {
            group.leading = false;
        }
        self.service.group_done.notify_all();
    }
}

/// Units of work waiting for the next shared commit, and the results of the last ones.
#[derive(Default)]
struct GroupCommit {
    waiting: Vec<(u64, Vec<Change>)>,
    results: HashMap<u64, Result<()>>,
    next_ticket: u64,
    /// A caller is committing the units it took from `waiting` (it gives up the lead once they
    /// are committed, and makes them durable while the next leader commits the next units).
    leading: bool,
}

enum DirectoryState {
    NotBuilt,
    /// Being read from the store; writes meanwhile are kept here and applied when it is done.
    Building { users: Vec<Summary>, orgs: Vec<(String, bool)> },
    Built(Box<Directory>),
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

/// Check that `sealer` holds this store's key; returns whether the key check says the audit
/// chain is keyed (false for a new store, which has none yet).
fn key_check(store: &dyn Store, sealer: &Sealer) -> Result<bool> {
    Ok(key_check_says(store, sealer)?.unwrap_or(false))
}

fn key_check_says(store: &dyn Store, sealer: &Sealer) -> Result<Option<bool>> {
    let Some(sealed) = store.get_meta(META_KEY_CHECK)? else { return Ok(None) };
    let plain = sealer.open(&sealed, META_KEY_CHECK.as_bytes()).map_err(|_| {
        Error::KeyFile(
            "the key file does not belong to this store (its secrets would not open). \
             Point --key-file (MFADMIN_KEY_FILE) at the key created with this store"
                .into(),
        )
    })?;
    Ok(Some(plain.as_slice() == KEY_CHECK_KEYED_PLAINTEXT))
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

impl Service {
    /// A service over `store`, checking that `sealer` holds the key this store was created with.
    /// The store's audit chain is keyed here if it is not yet (see [`Service::key_audit_chain`]).
    pub fn new(store: Arc<dyn Store>, sealer: Sealer, policy: Policy) -> Result<Service> {
        // The key check first: a store is never handed the chain key of another key file.
        let anchored = key_check(store.as_ref(), &sealer)?;
        let chain_key = sealer.mac("audit-chain");
        store.set_audit_key(chain_key.clone());
        let shared = store.commit_seq()?.is_some();
        let service = Service {
            store,
            sealer,
            chain_key,
            policy,
            directory: RwLock::new(DirectoryState::NotBuilt),
            building: Mutex::new(()),
            shared,
            watermark: Mutex::new(0),
            group: Mutex::default(),
            group_done: Condvar::new(),
            flushes: Mutex::default(),
            flush_done: Condvar::new(),
        };
        service.key_audit_chain(anchored)?;
        Ok(service)
    }

    /// Write the key check that says the audit chain is keyed.
    fn anchor_keyed_chain(&self) -> Result<()> {
        let check = self.sealer.seal(KEY_CHECK_KEYED_PLAINTEXT, META_KEY_CHECK.as_bytes());
        self.store.commit(&[Change { meta_put: vec![(META_KEY_CHECK, check)], ..Change::default() }])?;
        self.store.flush()
    }

    /// Does the key check say the audit chain is keyed? `None` when the store has no key check yet.
    fn chain_anchored(&self) -> Result<Option<bool>> {
        key_check_says(self.store.as_ref(), &self.sealer)
    }

    /// Is the store shared with other nodes (a database), so that its reads are round trips over
    /// the network that block, and other nodes' commits must be caught up?
    pub fn shared(&self) -> bool {
        self.shared
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The store's key (backups are authenticated with a key derived from it).
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// Seal a TOTP secret for `user` with this store's key (for generated demo users).
    pub fn seal_secret(&self, user: Uuid, secret: &[u8]) -> SealedSecret {
        SealedSecret(self.sealer.seal(secret, user.as_bytes()))
    }

    /// Commit a unit of work and make it durable.
    fn commit(&self, change: Change) -> Result<()> {
        self.commit_durable(vec![change])
    }

    /// Commit `change` atomically without waiting for it to reach the disk: only for records whose
    /// loss in a crash in the next moments is harmless (a failed login's audit event).
    fn commit_unflushed(&self, change: Change) -> Result<()> {
        self.store_commit(&[change])
    }

    /// Commit `changes` atomically and make them durable, sharing the transaction and the flush
    /// with whoever else commits at the same moment (group commit): the first caller in leads and
    /// commits every unit waiting, in one transaction; then it gives up the lead, so that the
    /// next units are committed while it flushes (flushes at the same moment share the disk's
    /// write), and answers its units once the flush is done. When that transaction fails, each
    /// caller's units are committed alone, so each caller gets its own answer.
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
            // Units taken by a leader that is flushing them wait for its answer.
            if group.leading || group.waiting.is_empty() {
                group = self.group_done.wait(group).unwrap_or_else(|poisoned| poisoned.into_inner());
                continue;
            }
            group.leading = true;
            let units = std::mem::take(&mut group.waiting);
            drop(group);
            // Should the commit or the flush panic, the units are answered and the next caller
            // leads instead of everyone waiting forever.
            let mut lead = Lead { service: self, tickets: units.iter().map(|(t, _)| *t).collect(), leading: true };
            let results = self.commit_group(units);
            group = lock();
            group.leading = false;
            lead.leading = false;
            self.group_done.notify_all();
            drop(group);
            let results = self.flush_group(results);
            lead.tickets.clear();
            drop(lead);
            group = lock();
            group.results.extend(results);
            self.group_done.notify_all();
        }
    }

    /// Commit the units of a group: together in one transaction, or each alone if that fails.
    fn commit_group(&self, units: Vec<(u64, Vec<Change>)>) -> Vec<(u64, Result<()>)> {
        if let [(ticket, changes)] = units.as_slice() {
            // Alone: committed as it is (an import's unit can hold a million users; no copy).
            vec![(*ticket, self.store_commit(changes))]
        } else {
            let all: Vec<Change> = units.iter().flat_map(|(_, c)| c.iter().cloned()).collect();
            match self.store_commit(&all) {
                Ok(()) => units.iter().map(|(t, _)| (*t, Ok(()))).collect(),
                Err(_) => units.iter().map(|(t, c)| (*t, self.store_commit(c))).collect(),
            }
        }
    }

    /// Make everything committed before this call durable, with the store's flush or by waiting
    /// for one that starts after this call (a flush already running may have started before the
    /// caller's commit): while groups commit one after the other, one flush at a time covers
    /// every group committed before it began, rather than one flush each.
    fn flush_shared(&self) -> std::result::Result<(), String> {
        let lock = || self.flushes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut flushes = lock();
        let needed = flushes.started + 1;
        loop {
            if flushes.finished >= needed {
                // A later flush covers this caller too: its answer is the one that counts.
                return flushes.last.clone().unwrap_or(Ok(()));
            }
            if flushes.running {
                flushes = self.flush_done.wait(flushes).unwrap_or_else(|poisoned| poisoned.into_inner());
                continue;
            }
            flushes.running = true;
            flushes.started += 1;
            let number = flushes.started;
            drop(flushes);
            let flushed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.store.flush()));
            flushes = lock();
            flushes.running = false;
            flushes.finished = number;
            flushes.last = Some(match flushed {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(_) => Err("the flush was interrupted".into()),
            });
            self.flush_done.notify_all();
        }
    }

    /// Make the committed units of a group durable: a failed flush fails them.
    fn flush_group(&self, mut results: Vec<(u64, Result<()>)>) -> Vec<(u64, Result<()>)> {
        if results.iter().any(|(_, r)| r.is_ok())
            && let Err(why) = self.flush_shared()
        {
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
        self.note_in_directory(summaries, orgs);
        Ok(())
    }

    /// Note users and orgs just written in the directory (if it is built or being built).
    fn note_in_directory(&self, summaries: impl FnOnce() -> Vec<Summary>, orgs: impl Iterator<Item = (String, bool)>) {
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
        // Where the scan starts: commits after it are caught up from here (a user both scanned and
        // caught up is the same version twice, which changes nothing).
        let start = self.store.commit_seq();
        let read = (|| -> Result<(Vec<Summary>, HashMap<String, bool>)> {
            let enforcement = self.store.orgs()?.into_iter().map(|o| (o.key, o.mfa_enforced)).collect();
            let mut summaries = Vec::with_capacity(self.store.user_count()?);
            self.store.scan_users(&mut |u| {
                summaries.push(Summary::of(&u));
                true
            })?;
            Ok((summaries, enforcement))
        })();
        // The watermark before the directory (the order catch_up takes them in).
        let mut watermark = self.watermark.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut guard = self.directory.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (pending_users, pending_orgs) = match std::mem::replace(&mut *guard, DirectoryState::NotBuilt) {
            DirectoryState::Building { users, orgs } => (users, orgs),
            _ => (Vec::new(), Vec::new()),
        };
        let (summaries, enforcement) = read?;
        *watermark = start?.unwrap_or(0);
        let mut directory = Directory::build(summaries, enforcement);
        for (org, enforced) in pending_orgs {
            directory.set_enforced(&org, enforced);
        }
        // Versions decide: a pending write older than what the scan read changes nothing.
        directory.upsert_many(pending_users);
        *guard = DirectoryState::Built(Box::new(directory));
        Ok(())
    }

    /// Bring the directory up to date with commits other nodes made to a shared store: one read of
    /// the commit sequence number when nothing changed, else the users and orgs written since the
    /// watermark. Nothing to do for a store this process owns, or before the directory is built
    /// (building reads everything).
    pub fn catch_up(&self) -> Result<()> {
        if !self.shared {
            return Ok(());
        }
        let mut watermark = self.watermark.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !matches!(*self.directory.read().unwrap_or_else(|poisoned| poisoned.into_inner()), DirectoryState::Built(_)) {
            return Ok(());
        }
        if self.store.commit_seq()? == Some(*watermark) {
            return Ok(());
        }
        let Some(changes) = self.store.changes_since(*watermark)? else {
            return Ok(());
        };
        if !changes.whole {
            let stale = *watermark;
            drop(watermark);
            return self.read_directory_again(stale);
        }
        let users = changes.users;
        let orgs = changes.orgs.into_iter().map(|o| (o.key, o.mfa_enforced));
        self.note_in_directory(|| users.iter().map(Summary::of).collect(), orgs);
        *watermark = (*watermark).max(changes.seq);
        Ok(())
    }

    /// Build the directory again from the whole store, for a node whose watermark `stale` is older
    /// than what the store still tells about; nothing when another caller did it meanwhile.
    fn read_directory_again(&self, stale: u64) -> Result<()> {
        {
            let _once = self.building.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if *self.watermark.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) != stale {
                return Ok(());
            }
            tracing::info!("this node fell behind what the store keeps of other nodes' commits: reading every user again");
            *self.directory.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = DirectoryState::NotBuilt;
        }
        self.warm_directory()
    }

    /// For a store shared with other nodes: a thread that catches the directory up whenever
    /// another node commits (woken by the store's listener, never reading data from it), at least
    /// every [`FOLLOW_TICK`], and after the listener's connection is lost and opened again (with
    /// a growing pause while the database is unreachable). It ends when the service is dropped.
    pub fn follow_store(self: &Arc<Service>) {
        if !self.shared {
            return;
        }
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new().name("mfadmin-follow".into()).spawn(move || follow(weak));
        if let Err(e) = spawned {
            tracing::warn!("cannot start the thread that follows other nodes' commits ({e}); listings catch up on their own");
        }
    }

    /// Run `f` over the directory, building it first if needed, and with every node's commits so
    /// far in it (see [`Service::catch_up`]).
    fn with_directory<R>(&self, f: impl FnOnce(&Directory) -> R) -> Result<R> {
        self.catch_up()?;
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
        self.resolve_many_with(references, |ids| self.store.get_users(ids))
    }

    /// [`Service::resolve_many`], with whether each org enforces MFA read alongside the users (one
    /// round trip to a database for a list of ids): what deciding resets needs.
    fn resolve_many_and_enforcement(&self, references: &[String]) -> Result<(Vec<Option<User>>, HashMap<String, bool>)> {
        let mut enforcement = HashMap::new();
        let users = self.resolve_many_with(references, |ids| {
            let (users, orgs) = self.store.users_and_orgs(ids)?;
            enforcement = orgs.into_iter().map(|o| (o.key, o.mfa_enforced)).collect();
            Ok(users)
        })?;
        Ok((users, enforcement))
    }

    /// [`Service::resolve_many`], reading the users of the ids found with `read` (in one call).
    fn resolve_many_with(
        &self,
        references: &[String],
        mut read: impl FnMut(&[Uuid]) -> Result<Vec<Option<User>>>,
    ) -> Result<Vec<Option<User>>> {
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
        let ids: Vec<Uuid> = found.iter().map(|(id, _)| *id).collect();
        for ((_, i), user) in found.iter().zip(read(&ids)?) {
            users[*i] = Ok(user);
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
        match check_optional_reason(reason)? {
            None if self.policy.reason_required => Err(Error::invalid(
                "a reason is required for an MFA reset (for example --reason \"lost phone, ticket 4711\")",
            )),
            r => Ok(r),
        }
    }
}

/// A reason as given, trimmed, when it is one the audit log can keep; `None` when none was given.
fn check_optional_reason(reason: Option<&str>) -> Result<Option<String>> {
    match reason.map(str::trim).filter(|r| !r.is_empty()) {
        Some(r) if r.chars().count() > MAX_REASON_LEN => {
            Err(Error::invalid(format!("the reason is longer than {MAX_REASON_LEN} characters")))
        }
        Some(r) if r.chars().any(char::is_control) => Err(Error::invalid("the reason may not contain control characters")),
        Some(r) if crate::domain::text::check_reason_text(r).is_err() => {
            Err(Error::invalid(crate::domain::text::check_reason_text(r).unwrap_err()))
        }
        r => Ok(r.map(str::to_string)),
    }
}
