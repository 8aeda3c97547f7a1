//! The sled store: trees, keys, record encoding and the one transaction every change goes through.

use super::migrate::{self, SCHEMA_VERSION};
use super::{Change, Session, Store, TokenHash};
use crate::domain::audit::{AuditEvent};
use crate::domain::user::{Org, User};
use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;
use std::path::{Path, PathBuf};
use uuid::Uuid;

const META_SCHEMA: &str = "schema_version";
const META_AUDIT_HEAD: &str = "audit_head";
const META_NEXT_NUMBER: &str = "next_user_number";

/// Stored values are wrapped in a versioned enum: a later record layout is a new variant that old
/// records are migrated from when read, so adding a field never breaks an existing store.
#[derive(Serialize, Deserialize)]
enum Versioned<T> {
    V1(T),
}

/// Encode a record as the current variant of [`Versioned`], without copying it.
fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    #[derive(Serialize)]
    enum VersionedRef<'a, T> {
        V1(&'a T),
    }
    postcard::to_stdvec(&VersionedRef::V1(value)).expect("in-memory records always encode")
}

/// A user record as written over `expected_version`: its version is the next one. A record that
/// already carries it is encoded as it is, without a copy.
fn encode_user(user: &User, expected_version: Option<u64>) -> Vec<u8> {
    let version = expected_version.map_or(1, |v| v + 1);
    if user.version == version {
        encode(user)
    } else {
        encode(&User { version, ..user.clone() })
    }
}

fn decode<T: DeserializeOwned>(what: &str, key: &[u8], bytes: &[u8]) -> Result<T> {
    match postcard::from_bytes::<Versioned<T>>(bytes) {
        Ok(Versioned::V1(v)) => Ok(v),
        Err(e) => Err(Error::Corrupt(format!("{what} record {} cannot be decoded ({e})", describe_key(key)))),
    }
}

/// A user record, which must hold the id it is stored under: a damaged id would otherwise make the
/// next write land under another key.
fn decode_user(key: &[u8], bytes: &[u8]) -> Result<User> {
    let user: User = decode("user", key, bytes)?;
    if user.id.as_bytes() != key {
        return Err(Error::Corrupt(format!("user record {} holds the id {}", describe_key(key), user.id)));
    }
    Ok(user)
}

fn describe_key(key: &[u8]) -> String {
    match Uuid::from_slice(key) {
        Ok(id) => id.to_string(),
        Err(_) => String::from_utf8(key.to_vec()).unwrap_or_else(|_| hex::encode(key)),
    }
}

fn storage(e: sled::Error) -> Error {
    Error::Storage(e.to_string())
}

pub struct SledStore {
    dir: PathBuf,
    db: sled::Db,
    users: sled::Tree,
    by_name: sled::Tree,
    by_email: sled::Tree,
    by_number: sled::Tree,
    orgs: sled::Tree,
    audit: sled::Tree,
    sessions: sled::Tree,
    user_sessions: sled::Tree,
    meta: sled::Tree,
    /// Every write takes this shared; a snapshot takes it exclusively, so none interleaves with one.
    gate: std::sync::RwLock<()>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SledStore({})", self.dir.display())
    }
}

/// The page cache of a store opened without saying (the `store.cache_mb` setting's default).
pub const DEFAULT_CACHE_BYTES: u64 = crate::config::StoreConfig::DEFAULT_CACHE_MB << 20;

impl SledStore {
    /// Does `dir` hold a store?
    pub fn exists(dir: &Path) -> bool {
        dir.join("db").exists() || dir.join("conf").exists()
    }

    /// Create a new, empty store in `dir`. Refuses a directory that already holds one.
    pub fn create(dir: &Path) -> Result<SledStore> {
        Self::create_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// [`SledStore::create`], keeping at most `cache_bytes` of the store's pages in memory.
    pub fn create_with_cache(dir: &Path, cache_bytes: u64) -> Result<SledStore> {
        if Self::exists(dir) {
            return Err(Error::Conflict(format!("{} already holds an mfadmin store", dir.display())));
        }
        let store = Self::open_raw(dir, cache_bytes)?;
        store.meta.insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes()).map_err(storage)?;
        store.meta.insert(META_NEXT_NUMBER, &1u64.to_be_bytes()).map_err(storage)?;
        store.db.flush().map_err(storage)?;
        Ok(store)
    }

    /// Open the existing store in `dir`, checking its schema version.
    pub fn open(dir: &Path) -> Result<SledStore> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// [`SledStore::open`], keeping at most `cache_bytes` of the store's pages in memory.
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<SledStore> {
        if !Self::exists(dir) {
            return Err(Error::NoStore { dir: dir.to_path_buf() });
        }
        let store = Self::open_raw(dir, cache_bytes)?;
        let version = store
            .meta
            .get(META_SCHEMA)
            .map_err(storage)?
            .and_then(|v| <[u8; 4]>::try_from(v.as_ref()).ok())
            .map(u32::from_be_bytes)
            .ok_or_else(|| Error::Corrupt(format!("{} has no schema version: it is not an mfadmin store", dir.display())))?;
        migrate::check(version)?;
        Ok(store)
    }

    fn open_raw(dir: &Path, cache_bytes: u64) -> Result<SledStore> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Storage(format!("cannot create {}: {e}", dir.display())))?;
        let is_lock = |e: &sled::Error| matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"));
        // sled lets go of its file lock from a background thread shortly after the last handle is
        // dropped, so a reopen right after a close may find it still held for a moment.
        let mut attempt = 0;
        let mut cleared = false;
        let db = loop {
            match sled::Config::new().path(dir).cache_capacity(cache_bytes).open() {
                Err(sled::Error::Corruption { .. }) if !cleared && remove_unfinished_snapshots(dir) => cleared = true,
                Err(e) if is_lock(&e) && attempt < 20 => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) if is_lock(&e) => return Err(Error::StoreLocked { dir: dir.to_path_buf() }),
                Err(e) => return Err(Error::Storage(format!("cannot open the store in {}: {e}", dir.display()))),
                Ok(db) => break db,
            }
        };
        let tree = |name: &str| db.open_tree(name).map_err(storage);
        Ok(SledStore {
            dir: dir.to_path_buf(),
            users: tree("users")?,
            by_name: tree("users_by_name")?,
            by_email: tree("users_by_email")?,
            by_number: tree("users_by_number")?,
            orgs: tree("orgs")?,
            audit: tree("audit")?,
            sessions: tree("sessions")?,
            user_sessions: tree("user_sessions")?,
            meta: tree("meta")?,
            gate: std::sync::RwLock::new(()),
            db,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Run `f` over the whole database while no commit runs: every commit before it is wholly in
    /// what `f` sees, every commit after it wholly not (backups are made this way).
    pub fn with_commits_paused<R>(&self, f: impl FnOnce(&sled::Db) -> R) -> R {
        let _paused = self.gate.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&self.db)
    }

    pub fn size_on_disk(&self) -> Result<u64> {
        self.db.size_on_disk().map_err(storage)
    }

    fn index_lookup(tree: &sled::Tree, key: &[u8]) -> Result<Option<Uuid>> {
        match tree.get(key).map_err(storage)? {
            Some(v) => Uuid::from_slice(&v).map(Some).map_err(|_| Error::Corrupt("a user index entry is damaged".into())),
            None => Ok(None),
        }
    }
}

/// sled 0.34 writes a snapshot as `snap.N.generating`, syncs it, then renames it to `snap.N`; it
/// also writes one while opening a store. A process killed in between leaves a partial
/// `.generating` file, which the next open takes for the newest snapshot and reports as corruption
/// (spacejam/sled#1527). Such a file was never finished, so the snapshot before it and the log
/// still hold everything: remove it. Returns whether there was one.
fn remove_unfinished_snapshots(dir: &Path) -> bool {
    let unfinished: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("snap.") && n.ends_with(".generating")))
        .collect();
    for path in &unfinished {
        tracing::warn!(file = %path.display(), "removing a snapshot file that a killed process left unfinished");
        if std::fs::remove_file(path).is_err() {
            return false;
        }
    }
    !unfinished.is_empty()
}

type Abort = ConflictableTransactionError<Error>;

fn abort(e: Error) -> Abort {
    ConflictableTransactionError::Abort(e)
}

fn tx_decode<T: DeserializeOwned>(what: &str, key: &[u8], bytes: &[u8]) -> Result<T, Abort> {
    decode(what, key, bytes).map_err(abort)
}

struct Tx<'a> {
    users: &'a TransactionalTree,
    by_name: &'a TransactionalTree,
    by_email: &'a TransactionalTree,
    by_number: &'a TransactionalTree,
    orgs: &'a TransactionalTree,
    audit: &'a TransactionalTree,
    sessions: &'a TransactionalTree,
    user_sessions: &'a TransactionalTree,
    meta: &'a TransactionalTree,
}

impl Tx<'_> {
    fn apply(&self, change: &Change, head: &mut Option<(u64, [u8; 32])>) -> Result<(), Abort> {
        for write in &change.users {
            self.put_user(&write.user, write.expected_version)?;
        }
        for org in &change.orgs {
            self.orgs.insert(org.key.as_bytes(), encode(org))?;
        }
        for user in &change.revoke_sessions_of {
            if let Some(list) = self.user_sessions.remove(user.as_bytes())? {
                let hashes: Vec<TokenHash> = tx_decode("session list", user.as_bytes(), &list)?;
                for h in hashes {
                    self.sessions.remove(&h[..])?;
                }
            }
        }
        for hash in &change.sessions_delete {
            if let Some(bytes) = self.sessions.remove(&hash[..])? {
                let session: Session = tx_decode("session", hash, &bytes)?;
                self.edit_session_list(session.user_id, |list| list.retain(|h| h != hash))?;
            }
        }
        for (hash, session) in &change.sessions_put {
            self.sessions.insert(&hash[..], encode(session))?;
            let now = session.created_at;
            let sessions = self.sessions;
            self.edit_session_list(session.user_id, |list| {
                // Drop the hashes of sessions that are gone or expired while we are here.
                list.retain(|h| {
                    sessions
                        .get(&h[..])
                        .ok()
                        .flatten()
                        .and_then(|b| decode::<Session>("session", h, &b).ok())
                        .is_some_and(|s| s.expires_at > now)
                });
                list.push(*hash);
            })?;
        }
        for (name, value) in &change.meta_put {
            self.meta.insert(name.as_bytes(), value.as_slice())?;
        }
        for draft in &change.audit {
            let (seq, prev) = head.map_or((1, [0u8; 32]), |(s, h)| (s + 1, h));
            let event = AuditEvent::link(draft.clone(), seq, prev);
            self.audit.insert(&seq.to_be_bytes(), encode(&event))?;
            *head = Some((seq, event.hash()));
        }
        Ok(())
    }

    fn edit_session_list(&self, user: Uuid, edit: impl FnOnce(&mut Vec<TokenHash>)) -> Result<(), Abort> {
        let mut list: Vec<TokenHash> = match self.user_sessions.get(user.as_bytes())? {
            Some(bytes) => tx_decode("session list", user.as_bytes(), &bytes)?,
            None => Vec::new(),
        };
        edit(&mut list);
        if list.is_empty() {
            self.user_sessions.remove(user.as_bytes())?;
        } else {
            self.user_sessions.insert(user.as_bytes(), encode(&list))?;
        }
        Ok(())
    }

    fn put_user(&self, user: &User, expected_version: Option<u64>) -> Result<(), Abort> {
        let key = user.id.as_bytes();
        let old: Option<User> = match self.users.get(key)? {
            Some(bytes) => Some(decode_user(key, &bytes).map_err(abort)?),
            None => None,
        };
        match (&old, expected_version) {
            (None, None) => {}
            (Some(old), Some(v)) if old.version == v => {}
            (Some(_), None) => return Err(abort(Error::Conflict(format!("a user with id {} already exists", user.id)))),
            _ => return Err(abort(Error::WriteConflict)),
        }
        // A write that keeps the name, email and number (a reset, a login) leaves the indexes be.
        let same_keys = old.as_ref().is_some_and(|o| o.username == user.username && o.email == user.email && o.number == user.number);
        if same_keys {
            self.users.insert(key, encode_user(user, expected_version))?;
            return Ok(());
        }
        let name_key = user.username.to_lowercase();
        let email_key = user.email.to_lowercase();
        let (old_name, old_email, old_number) = match &old {
            Some(o) => (Some(o.username.to_lowercase()), Some(o.email.to_lowercase()), Some(o.number)),
            None => (None, None, None),
        };
        if old_name.as_deref() != Some(name_key.as_str()) {
            if self.by_name.get(name_key.as_bytes())?.is_some() {
                return Err(abort(Error::Conflict(format!("the user name {:?} is already taken", user.username))));
            }
            if let Some(n) = &old_name {
                self.by_name.remove(n.as_bytes())?;
            }
            self.by_name.insert(name_key.as_bytes(), key)?;
        }
        if old_email.as_deref() != Some(email_key.as_str()) {
            if self.by_email.get(email_key.as_bytes())?.is_some() {
                return Err(abort(Error::Conflict(format!("the email {:?} is already used by another user", user.email))));
            }
            if let Some(e) = &old_email {
                self.by_email.remove(e.as_bytes())?;
            }
            self.by_email.insert(email_key.as_bytes(), key)?;
        }
        if old_number != Some(user.number) {
            if let Some(n) = old_number {
                self.by_number.remove(&n.to_be_bytes())?;
            }
            self.by_number.insert(&user.number.to_be_bytes(), key)?;
        }
        self.users.insert(key, encode_user(user, expected_version))?;
        Ok(())
    }
}

impl Store for SledStore {
    fn get_user(&self, id: Uuid) -> Result<Option<User>> {
        match self.users.get(id.as_bytes()).map_err(storage)? {
            Some(bytes) => decode_user(id.as_bytes(), &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn user_id_by_name(&self, name: &str) -> Result<Option<Uuid>> {
        Self::index_lookup(&self.by_name, name.to_lowercase().as_bytes())
    }

    fn user_id_by_email(&self, email: &str) -> Result<Option<Uuid>> {
        Self::index_lookup(&self.by_email, email.to_lowercase().as_bytes())
    }

    fn user_id_by_number(&self, number: u64) -> Result<Option<Uuid>> {
        Self::index_lookup(&self.by_number, &number.to_be_bytes())
    }

    fn scan_ids_by_name(&self, visit: &mut dyn FnMut(Uuid) -> bool) -> Result<()> {
        for item in self.by_name.iter() {
            let (_, value) = item.map_err(storage)?;
            let id = Uuid::from_slice(&value).map_err(|_| Error::Corrupt("a user index entry is damaged".into()))?;
            if !visit(id) {
                break;
            }
        }
        Ok(())
    }

    fn scan_users(&self, visit: &mut dyn FnMut(User) -> bool) -> Result<()> {
        for item in self.users.iter() {
            let (key, bytes) = item.map_err(storage)?;
            if !visit(decode_user(&key, &bytes)?) {
                break;
            }
        }
        Ok(())
    }

    fn user_count(&self) -> Result<usize> {
        Ok(self.users.len())
    }

    fn user_count_bound(&self) -> Result<usize> {
        let highest = self.by_number.last().map_err(storage)?.and_then(|(key, _)| <[u8; 8]>::try_from(key.as_ref()).ok());
        Ok(highest.map_or(0, |k| usize::try_from(u64::from_be_bytes(k)).unwrap_or(usize::MAX)))
    }

    fn allocate_numbers(&self, count: u64) -> Result<u64> {
        let _writing = self.gate.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let previous = self
            .meta
            .fetch_and_update(META_NEXT_NUMBER, |old| {
                let next = old.and_then(|b| <[u8; 8]>::try_from(b).ok()).map_or(1, u64::from_be_bytes);
                Some(next.saturating_add(count).to_be_bytes().to_vec())
            })
            .map_err(storage)?;
        Ok(previous.and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok()).map_or(1, u64::from_be_bytes))
    }

    fn get_org(&self, key: &str) -> Result<Option<Org>> {
        match self.orgs.get(key.as_bytes()).map_err(storage)? {
            Some(bytes) => decode("org", key.as_bytes(), &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn orgs(&self) -> Result<Vec<Org>> {
        self.orgs
            .iter()
            .map(|item| {
                let (key, bytes) = item.map_err(storage)?;
                decode("org", &key, &bytes)
            })
            .collect()
    }

    fn get_session(&self, hash: &TokenHash) -> Result<Option<Session>> {
        match self.sessions.get(&hash[..]).map_err(storage)? {
            Some(bytes) => decode("session", hash, &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn sessions_of(&self, user: Uuid) -> Result<Vec<(TokenHash, Session)>> {
        let Some(list) = self.user_sessions.get(user.as_bytes()).map_err(storage)? else {
            return Ok(Vec::new());
        };
        let hashes: Vec<TokenHash> = decode("session list", user.as_bytes(), &list)?;
        let mut out = Vec::new();
        for h in hashes {
            if let Some(s) = self.get_session(&h)? {
                out.push((h, s));
            }
        }
        Ok(out)
    }

    fn scan_audit(&self, newest_first: bool, visit: &mut dyn FnMut(AuditEvent) -> bool) -> Result<()> {
        let mut step = |item: sled::Result<(sled::IVec, sled::IVec)>| -> Result<bool> {
            let (key, bytes) = item.map_err(storage)?;
            Ok(visit(decode("audit", &key, &bytes)?))
        };
        if newest_first {
            for item in self.audit.iter().rev() {
                if !step(item)? {
                    break;
                }
            }
        } else {
            for item in self.audit.iter() {
                if !step(item)? {
                    break;
                }
            }
        }
        Ok(())
    }

    fn audit_head(&self) -> Result<Option<(u64, [u8; 32])>> {
        match self.meta.get(META_AUDIT_HEAD).map_err(storage)? {
            Some(bytes) => decode("meta", META_AUDIT_HEAD.as_bytes(), &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.meta.get(name).map_err(storage)?.map(|v| v.to_vec()))
    }

    fn check_indexes(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let mut users = std::collections::HashMap::new();
        for item in self.users.iter() {
            let (key, bytes) = item.map_err(storage)?;
            match decode::<User>("user", &key, &bytes) {
                Ok(u) if u.id.as_bytes() == key.as_ref() => {
                    users.insert(u.id, u);
                }
                Ok(u) => problems.push(format!("user record under key {} holds id {}", describe_key(&key), u.id)),
                Err(e) => problems.push(e.to_string()),
            }
        }
        type KeyOf = fn(&User) -> Vec<u8>;
        let indexes: [(&str, &sled::Tree, KeyOf); 3] = [
            ("user name", &self.by_name, |u| u.username.to_lowercase().into_bytes()),
            ("email", &self.by_email, |u| u.email.to_lowercase().into_bytes()),
            ("number", &self.by_number, |u| u.number.to_be_bytes().to_vec()),
        ];
        for (what, tree, key_of) in indexes {
            for item in tree.iter() {
                let (key, value) = item.map_err(storage)?;
                let target = Uuid::from_slice(&value).ok().and_then(|id| users.get(&id));
                match target {
                    Some(u) if key_of(u) == key.as_ref() => {}
                    Some(u) => problems.push(format!("the {what} index entry {} points at {}, whose {what} differs", describe_key(&key), u.username)),
                    None => problems.push(format!("the {what} index entry {} points at no user", describe_key(&key))),
                }
            }
            for u in users.values() {
                let found = tree.get(key_of(u)).map_err(storage)?;
                if found.as_deref() != Some(u.id.as_bytes().as_slice()) {
                    problems.push(format!("user {} ({}) is missing from the {what} index", u.username, u.id));
                }
            }
        }
        for u in users.values() {
            if self.orgs.get(u.org.as_bytes()).map_err(storage)?.is_none() {
                problems.push(format!("user {} belongs to org {:?}, which does not exist", u.username, u.org));
            }
        }
        Ok(problems)
    }

    fn commit(&self, changes: &[Change]) -> Result<()> {
        let _writing = self.gate.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let trees = (
            &self.users,
            &self.by_name,
            &self.by_email,
            &self.by_number,
            &self.orgs,
            &self.audit,
            &self.sessions,
            &self.user_sessions,
            &self.meta,
        );
        let result = trees.transaction(|(users, by_name, by_email, by_number, orgs, audit, sessions, user_sessions, meta)| {
            let tx = Tx { users, by_name, by_email, by_number, orgs, audit, sessions, user_sessions, meta };
            let mut head: Option<(u64, [u8; 32])> = match meta.get(META_AUDIT_HEAD)? {
                Some(bytes) => Some(tx_decode("meta", META_AUDIT_HEAD.as_bytes(), &bytes)?),
                None => None,
            };
            let before = head;
            for change in changes {
                tx.apply(change, &mut head)?;
            }
            if head != before
                && let Some(h) = &head {
                    meta.insert(META_AUDIT_HEAD, encode(h))?;
                }
            Ok(())
        });
        match result {
            Ok(()) => Ok(()),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(storage(e)),
        }
    }

    fn flush(&self) -> Result<()> {
        self.db.flush().map(|_| ()).map_err(storage)
    }

    fn snapshot(&self, taken_at: i64) -> Result<super::backup::Snapshot> {
        super::backup::snapshot(self, taken_at)
    }
}
