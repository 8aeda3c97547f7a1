//! The sled store: trees, keys, record encoding and the one transaction every change goes through.

use super::backup::{Snapshot, TreeDump};
use super::buckets::{self, Bucket};
use super::StoreSpace;
use super::codec::{decode, decode_in_place, decode_session, decode_user, decode_user_record, describe_key, encode, encode_user, encode_audit};
use super::migrate::{self, SCHEMA_VERSION};
use super::names::{self, NameBucket, NameBucketRef, Place};
use super::{Change, Record, Session, Store, TokenHash, META_AUDIT_KEYED_FROM};
use crate::domain::audit::{AuditDraft, AuditEvent, ChainKey, Linker};
use crate::domain::user::{Org, User};
use crate::domain::Timestamp;
use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use uuid::Uuid;

mod import;
mod records;
pub use records::records_of_trees;

const META_SCHEMA: &str = "schema_version";
const META_AUDIT_HEAD: &str = "audit_head";
const META_NEXT_NUMBER: &str = "next_user_number";
/// Present while [`Store::load_new_users`] writes: a store holding it was left half-filled.
const META_UNFINISHED_LOAD: &str = "unfinished_load";
/// Writes per sled batch when loading users tree by tree.
const LOAD_BATCH: usize = 1_000;
/// ...or of at most about this many bytes (an entry may be a bundle of audit events).
const LOAD_BATCH_BYTES: usize = 1 << 20;

/// What a write needs of the user record it replaces: its name, email and number (borrowed), and
/// its version.
#[derive(Debug, PartialEq, Eq)]
struct UserHead<'a> {
    number: u64,
    username: &'a str,
    email: &'a str,
    version: u64,
}

/// Read a stored user record's head and version without decoding the rest of it (no allocation).
/// `None` when the record is not a user that holds the id it is stored under, or
/// cannot be read this way: then the caller decodes it in full, which names any damage.
///
/// The head is the first fields of [`User`] (id, number, user name, email). The version is its
/// last field, a varint; the field before it, `mfa_reset_at` (an `Option<i64>`), always ends in a
/// byte below 0x80 (`None` is a 0 byte, `Some` a 1 and a varint), so the version's bytes are the
/// final byte (below 0x80) and the run of bytes of 0x80 and above just before it.
fn peek_user<'a>(key: &[u8], bytes: &'a [u8]) -> Option<UserHead<'a>> {
    #[derive(Deserialize)]
    struct Head<'a> {
        id: Uuid,
        number: u64,
        username: &'a str,
        email: &'a str,
    }
    // Both layouts begin with the same head.
    #[derive(Deserialize)]
    enum StoredHead<'a> {
        #[serde(borrow)]
        V1(Head<'a>),
        #[serde(borrow)]
        V2(Head<'a>),
    }
    let (StoredHead::V1(head) | StoredHead::V2(head), rest) = postcard::take_from_bytes::<StoredHead<'a>>(bytes).ok()?;
    if head.id.as_bytes() != key {
        return None;
    }
    let (&last, before) = bytes.split_last()?;
    if last >= 0x80 {
        return None;
    }
    let continued = before.iter().rev().take_while(|&&b| b >= 0x80).count();
    // A u64 takes at most 10 varint bytes, and the 13 fields between the head and the version at
    // least a byte each.
    if continued > 9 || rest.len() < 13 + continued + 1 {
        return None;
    }
    let mut version: u64 = 0;
    for (i, b) in bytes[bytes.len() - 1 - continued..].iter().enumerate() {
        let bits = u64::from(b & 0x7f);
        if i == 9 && bits > 1 {
            return None;
        }
        version |= bits << (7 * i);
    }
    Some(UserHead { number: head.number, username: head.username, email: head.email, version })
}


fn storage(e: sled::Error) -> Error {
    Error::Storage(e.to_string())
}

pub struct SledStore {
    dir: PathBuf,
    db: sled::Db,
    users: sled::Tree,
    by_name: sled::Tree,
    /// Buckets of emails (see [`buckets`]).
    email_index: sled::Tree,
    /// Buckets of user numbers (see [`buckets`]).
    number_index: sled::Tree,
    orgs: sled::Tree,
    audit: sled::Tree,
    sessions: sled::Tree,
    user_sessions: sled::Tree,
    meta: sled::Tree,
    /// Every write takes this shared; a snapshot takes it exclusively, so none interleaves with one.
    gate: std::sync::RwLock<()>,
    /// The audit chain's key, once a service handed it over (see [`Store::set_audit_key`]).
    chain_key: std::sync::OnceLock<ChainKey>,
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
        if store.meta.contains_key(META_UNFINISHED_LOAD).map_err(storage)? {
            return Err(Error::Corrupt(format!(
                "the store in {} was left half-filled: the run generating its users stopped before the end. \
                 Delete that directory and its key file, then run `mfadmin demo` again",
                dir.display()
            )));
        }
        store.bring_up_to_date(version)?;
        store.take_back_import()?;
        Ok(store)
    }

    /// Schema 1 kept the email and number indexes as one entry per user (`users_by_email`,
    /// `users_by_number`); schema 2 keeps them in buckets. Schema 2 kept the user-name index as one
    /// entry per user (`users_by_name`); schema 3 keeps it in ordered buckets. Schema 4 may keep an
    /// import's audit events in bundles (see [`AUDIT_BUNDLE`]), which an older binary cannot read;
    /// nothing moves to reach it. Each step writes its
    /// new index first and its version last, so a migration that stops is done again from that step
    /// at the next open; the old trees go once every step is done.
    fn bring_up_to_date(&self, version: u32) -> Result<()> {
        const OLD_TREES: [&str; 3] = ["users_by_email", "users_by_number", "users_by_name"];
        let mark = |version: u32| -> Result<()> {
            self.db.flush().map_err(storage)?;
            self.meta.insert(META_SCHEMA, &version.to_be_bytes()).map_err(storage)?;
            self.db.flush().map_err(storage).map(|_| ())
        };
        let text = |key: &[u8]| String::from_utf8(key.to_vec()).ok();
        if version < 2 {
            tracing::info!("bringing the store up to schema 2: the email and number indexes move into buckets");
            let emails = self.old_index(OLD_TREES[0], "email", text)?;
            let numbers = self.old_index(OLD_TREES[1], "number", |key| <[u8; 8]>::try_from(key).ok().map(u64::from_be_bytes))?;
            self.email_index.clear().map_err(storage)?;
            self.number_index.clear().map_err(storage)?;
            write_in_order(&self.email_index, email_buckets(emails))?;
            write_in_order(&self.number_index, number_buckets(numbers))?;
            mark(2)?;
        }
        if version < 3 {
            tracing::info!("bringing the store up to schema 3: the user-name index moves into ordered buckets");
            let names = self.old_index(OLD_TREES[2], "user name", text)?;
            self.by_name.clear().map_err(storage)?;
            write_in_order(&self.by_name, name_buckets(names))?;
            mark(3)?;
        }
        if version < 4 {
            mark(4)?;
        }
        let trees = self.db.tree_names();
        for old in OLD_TREES {
            if trees.iter().any(|n| n.as_ref() == old.as_bytes()) {
                self.db.drop_tree(old).map_err(storage)?;
            }
        }
        Ok(())
    }

    /// The entries of an index tree of an older schema (one entry per user, the key and the id),
    /// each key read by `key`.
    fn old_index<K>(&self, tree: &str, what: &str, key: impl Fn(&[u8]) -> Option<K>) -> Result<Vec<(K, Uuid)>> {
        let damaged = || Error::Corrupt(format!("an entry of the old {what} index is damaged; the store cannot be brought up to date"));
        self.db
            .open_tree(tree)
            .map_err(storage)?
            .iter()
            .map(|item| {
                let (k, id) = item.map_err(storage)?;
                Ok((key(&k).ok_or_else(damaged)?, Uuid::from_slice(&id).map_err(|_| damaged())?))
            })
            .collect()
    }

    fn open_raw(dir: &Path, cache_bytes: u64) -> Result<SledStore> {
        super::private::make_private(dir)?;
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
                Err(e) if is_lock(&e) => return Err(super::owner::locked(dir)),
                Err(e) => return Err(Error::Storage(format!("cannot open the store in {}: {e}", dir.display()))),
                Ok(db) => break db,
            }
        };
        super::owner::record(dir, None);
        let tree = |name: &str| db.open_tree(name).map_err(storage);
        Ok(SledStore {
            dir: dir.to_path_buf(),
            users: tree("users")?,
            by_name: tree("name_index")?,
            email_index: tree("email_index")?,
            number_index: tree("number_index")?,
            orgs: tree("orgs")?,
            audit: tree("audit")?,
            sessions: tree("sessions")?,
            user_sessions: tree("user_sessions")?,
            meta: tree("meta")?,
            gate: std::sync::RwLock::new(()),
            chain_key: std::sync::OnceLock::new(),
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

    /// The stored bucket of the user-name index that holds `name` (lower-cased) if any does: the
    /// one with the greatest key not above it.
    fn name_bucket_of(&self, name: &str) -> Result<Option<(sled::IVec, sled::IVec)>> {
        self.by_name.range::<&[u8], _>(..=name.as_bytes()).next_back().transpose().map_err(storage)
    }

    /// Note where each of `names` (lower-cased) is in the user-name index, for a transaction.
    fn look_up_names(&self, hints: &mut NameHints, names: impl Iterator<Item = String>) -> Result<()> {
        for name in names {
            let key = match self.name_bucket_of(&name)? {
                Some((key, _)) => String::from_utf8(key.to_vec()).map_err(|_| Error::Corrupt(format!("the user name index bucket {} has a damaged key", hex::encode(&key))))?,
                None => String::new(),
            };
            hints.known.insert(name, key);
        }
        Ok(())
    }

    /// Every entry of a bucketed `what` index as (key bytes, id), noting in `problems` a bucket out
    /// of order (a lookup in it can miss) and an entry in another key's bucket.
    fn checked_bucket_entries<K: Ord + DeserializeOwned + std::fmt::Display>(
        tree: &sled::Tree,
        what: &str,
        bucket_of: impl Fn(&K) -> Vec<u8>,
        key_bytes: impl Fn(K) -> Vec<u8>,
        problems: &mut Vec<String>,
    ) -> Result<Vec<(Vec<u8>, Option<Uuid>)>> {
        let mut entries = Vec::new();
        for (bucket_key, bucket) in Self::bucket_entries::<Bucket<K>>(tree, &format!("{what} index bucket"))? {
            if !bucket.is_sorted() {
                problems.push(format!("the {what} index bucket {} is out of order: lookups in it can miss", hex::encode(&bucket_key)));
            }
            for (key, id) in bucket.0 {
                if bucket_of(&key) != bucket_key.as_ref() {
                    problems.push(format!("the {what} index entry {key} is in another {what}'s bucket"));
                }
                entries.push((key_bytes(key), Some(id)));
            }
        }
        Ok(entries)
    }

    /// Every entry of the user-name index as (name bytes, id), noting in `problems` a bucket whose
    /// names are out of order or outside its range, and buckets that do not follow one another
    /// (lookups can miss in either case).
    fn checked_name_entries(&self, problems: &mut Vec<String>) -> Result<Vec<(Vec<u8>, Option<Uuid>)>> {
        let mut entries = Vec::new();
        // Where the next bucket must start: the first at the empty name, each next one where the one before ends.
        let mut next: Option<String> = Some(String::new());
        for (key, bucket) in Self::bucket_entries::<NameBucket>(&self.by_name, "user name index bucket")? {
            let key = String::from_utf8_lossy(&key).into_owned();
            if next.as_deref() != Some(key.as_str()) {
                problems.push(format!("the user name index bucket {key:?} does not start where the one before it ends ({next:?}): lookups can miss"));
            }
            if !bucket.is_sound(&key) {
                problems.push(format!("the user name index bucket {key:?} holds names out of order or outside its range: lookups in it can miss"));
            }
            next = bucket.upper;
            entries.extend(bucket.entries.0.into_iter().map(|(name, id)| (name.into_bytes(), Some(id))));
        }
        if let Some(end) = next.filter(|end| !end.is_empty()) {
            problems.push(format!("the last user name index bucket ends at {end:?}, where no bucket starts: names from there on cannot be found"));
        }
        Ok(entries)
    }

    /// Every entry of a bucketed index.
    fn stored_entries<K: DeserializeOwned>(tree: &sled::Tree, what: &str) -> Result<impl Iterator<Item = (K, Uuid)>> {
        Ok(Self::bucket_entries::<Bucket<K>>(tree, what)?.into_iter().flat_map(|(_, bucket)| bucket.0))
    }

    /// Every entry of a bucketed index, in bucket order.
    fn bucket_entries<B: DeserializeOwned>(tree: &sled::Tree, what: &str) -> Result<Vec<(sled::IVec, B)>> {
        tree.iter()
            .map(|item| {
                let (key, bytes) = item.map_err(storage)?;
                let bucket = decode(what, &key, &bytes)?;
                Ok((key, bucket))
            })
            .collect()
    }
}

/// A bucket of a bucketed index, empty when there is none.
fn read_bucket<K: DeserializeOwned>(tree: &sled::Tree, what: &str, key: &[u8]) -> Result<Bucket<K>> {
    match tree.get(key).map_err(storage)? {
        Some(bytes) => decode(what, key, &bytes),
        None => Ok(Bucket::new()),
    }
}

fn email_buckets(entries: Vec<(String, Uuid)>) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> {
    buckets::group(entries, |email| buckets::email_bucket(email.as_bytes())).into_iter().map(|(b, bucket)| (b.to_vec(), encode(&bucket)))
}

fn number_buckets(entries: Vec<(u64, Uuid)>) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> {
    buckets::group(entries, |n| buckets::number_bucket(*n)).into_iter().map(|(b, bucket)| (b.to_vec(), encode(&bucket)))
}

/// The whole user-name index for `entries` (sorted by name, each once).
fn name_buckets(entries: Vec<(String, Uuid)>) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> {
    names::group(entries).into_iter().map(|(key, bucket)| (key.into_bytes(), encode(&bucket)))
}

/// An import's audit events are stored this many to an entry, keyed by the first and last event's
/// sequence numbers: sled's page table, which it reads whole when it opens a store, then grows by
/// a page per thousand imported people instead of per nine. Events written by commits stay one to
/// an entry, keyed by their sequence number.
pub(super) const AUDIT_BUNDLE: usize = 64;

/// The key of a bundle of audit events `first..=last`.
pub(super) fn audit_bundle_key(first: u64, last: u64) -> Vec<u8> {
    [first.to_be_bytes(), last.to_be_bytes()].concat()
}

/// Visit the events of one stored audit entry, each with its sequence number and stored bytes, in
/// order or newest first, until `visit` says to stop; false when it did. An entry is one event (an
/// 8-byte key) or a bundle (a 16-byte key, see [`AUDIT_BUNDLE`]).
pub(super) fn each_audit_event(
    key: &[u8],
    bytes: &[u8],
    newest_first: bool,
    visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>,
) -> Result<bool> {
    let seq = |at: usize| <[u8; 8]>::try_from(&key[at..at + 8]).map(u64::from_be_bytes).expect("8 bytes");
    match key.len() {
        8 => visit(seq(0), bytes),
        16 => {
            let (first, last) = (seq(0), seq(8));
            let events: Vec<Vec<u8>> = decode("audit bundle", key, bytes)?;
            if last < first || last - first + 1 != events.len() as u64 {
                return Err(Error::Corrupt(format!(
                    "the audit bundle of events {first} to {last} holds {} events; restore the store from a backup",
                    events.len()
                )));
            }
            for i in 0..events.len() {
                let i = if newest_first { events.len() - 1 - i } else { i };
                if !visit(first + i as u64, &events[i])? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        _ => Err(Error::Corrupt(format!("the audit log has an entry with a damaged key ({})", hex::encode(key)))),
    }
}

/// Write `pairs` (in key order) in batches: for a tree no one else writes at the same time.
fn write_in_order(tree: &sled::Tree, pairs: impl Iterator<Item = (Vec<u8>, Vec<u8>)>) -> Result<()> {
    let mut batch = sled::Batch::default();
    let (mut pending, mut bytes) = (0, 0);
    for (key, value) in pairs {
        bytes += key.len() + value.len();
        batch.insert(key, value);
        pending += 1;
        if pending == LOAD_BATCH || bytes >= LOAD_BATCH_BYTES {
            tree.apply_batch(std::mem::take(&mut batch)).map_err(storage)?;
            (pending, bytes) = (0, 0);
        }
    }
    tree.apply_batch(batch).map_err(storage)
}

/// The new entries of a bucketed index together with those already there, sorted; the first key
/// that would be there twice is refused.
fn merge_entries<K: Ord>(
    existing: impl Iterator<Item = (K, Uuid)>,
    what: &str,
    new: impl Iterator<Item = (K, Uuid)>,
    describe: impl Fn(&K) -> String,
) -> Result<Vec<(K, Uuid)>> {
    let mut entries: Vec<(K, Uuid)> = new.chain(existing).collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if let Some(pair) = entries.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        return Err(Error::Conflict(format!("the {what} {} is already taken; no user was written", describe(&pair[0].0))));
    }
    Ok(entries)
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

/// The first of `entries` (sorted by key) whose key is in `tree` or comes twice, found by walking
/// both in order.
fn first_taken(tree: &sled::Tree, entries: &[(Vec<u8>, Uuid)]) -> Result<Option<Vec<u8>>> {
    if let Some(pair) = entries.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        return Ok(Some(pair[0].0.clone()));
    }
    let mut existing = tree.iter().keys();
    let mut next = existing.next().transpose().map_err(storage)?;
    for (key, _) in entries {
        while let Some(stored) = &next
            && stored.as_ref() < key.as_slice()
        {
            next = existing.next().transpose().map_err(storage)?;
        }
        match &next {
            Some(stored) if stored.as_ref() == key.as_slice() => return Ok(Some(key.clone())),
            Some(_) => {}
            None => break,
        }
    }
    Ok(None)
}

type Abort = ConflictableTransactionError<Error>;

fn abort(e: Error) -> Abort {
    ConflictableTransactionError::Abort(e)
}

fn tx_decode<T: DeserializeOwned>(what: &str, key: &[u8], bytes: &[u8]) -> Result<T, Abort> {
    decode(what, key, bytes).map_err(abort)
}

/// Where the transaction should start looking for names in the user-name index: a transaction can
/// only read keys, not search a tree in order, so each name's bucket is looked up before it. New
/// users' names are looked up at once; a name met without a hint (a rename) is noted, and the
/// transaction is run again once it has been looked up.
#[derive(Default)]
struct NameHints {
    /// A name's bucket key as found before the transaction (the bucket may have split since).
    known: HashMap<String, String>,
    /// Names this run of the transaction needed and did not know.
    missing: RefCell<Vec<String>>,
}

/// The index buckets one run of a transaction has read, changed there: each is read and decoded
/// once and written once, at the end of the run ([`Tx::write_buckets`]), however many users of the
/// run it holds. Buckets made by splits are found here too, so a name finds its bucket in a step or
/// two even when many names of one commit fall into one stored bucket (a bulk import into a small
/// store): walked from the stored bucket bucket by bucket, each name would pass every split before.
#[derive(Default)]
struct TxBuckets {
    /// User-name buckets by key, with whether this run changed them.
    names: std::collections::BTreeMap<String, (NameBucket, bool)>,
    emails: HashMap<Vec<u8>, Bucket<String>>,
    numbers: HashMap<Vec<u8>, Bucket<u64>>,
}

struct Tx<'a> {
    hints: &'a NameHints,
    buckets: RefCell<TxBuckets>,
    users: &'a TransactionalTree,
    by_name: &'a TransactionalTree,
    email_index: &'a TransactionalTree,
    number_index: &'a TransactionalTree,
    orgs: &'a TransactionalTree,
    audit: &'a TransactionalTree,
    sessions: &'a TransactionalTree,
    user_sessions: &'a TransactionalTree,
    meta: &'a TransactionalTree,
}

impl Tx<'_> {
    fn apply(&self, change: &Change, head: &mut Option<(u64, [u8; 32])>, linker: &Linker) -> Result<(), Abort> {
        for write in &change.users {
            self.put_user(&write.user, write.expected_version)?;
        }
        for org in &change.orgs {
            self.orgs.insert(org.key.as_bytes(), encode(org))?;
        }
        for user in &change.revoke_sessions_of {
            // Most users have no session: look first, so that their (absent) list is not written.
            if let Some(list) = self.user_sessions.get(user.as_bytes())? {
                self.user_sessions.remove(user.as_bytes())?;
                let hashes: Vec<TokenHash> = tx_decode("session list", user.as_bytes(), &list)?;
                for h in hashes {
                    self.sessions.remove(&h[..])?;
                }
            }
        }
        for hash in &change.sessions_delete {
            if let Some(bytes) = self.sessions.remove(&hash[..])? {
                let session = decode_session(hash, &bytes).map_err(abort)?;
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
                        .and_then(|b| decode_session(h, &b).ok())
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
            self.audit.insert(&seq.to_be_bytes(), encode_audit(seq, prev, draft))?;
            *head = Some((seq, linker.hash_of(seq, &prev, draft)));
        }
        Ok(())
    }

    /// Move `id`'s entry in a bucketed index from `old` (bucket, key) to `new`, in this
    /// transaction's copy of the buckets (`pick` chooses the index). False, when `new` is another
    /// entry's key.
    fn move_entry<K: Ord + DeserializeOwned>(
        &self,
        (tree, what): (&TransactionalTree, &str),
        pick: fn(&mut TxBuckets) -> &mut HashMap<Vec<u8>, Bucket<K>>,
        old: Option<(&[u8], &K)>,
        (new_bucket, new_key): (&[u8], K),
        id: Uuid,
    ) -> Result<bool, Abort> {
        let mut buckets = self.buckets.borrow_mut();
        let cached = pick(&mut buckets);
        if let Some((bucket, key)) = old {
            Self::cached_bucket(cached, tree, what, bucket)?.remove(key);
        }
        Ok(Self::cached_bucket(cached, tree, what, new_bucket)?.insert(new_key, id))
    }

    /// The bucket under `key` as this run sees it, read from the store the first time.
    fn cached_bucket<'c, K: DeserializeOwned>(
        cached: &'c mut HashMap<Vec<u8>, Bucket<K>>,
        tree: &TransactionalTree,
        what: &str,
        key: &[u8],
    ) -> Result<&'c mut Bucket<K>, Abort> {
        if !cached.contains_key(key) {
            let bucket = match tree.get(key)? {
                Some(bytes) => tx_decode(what, key, &bytes)?,
                None => Bucket::new(),
            };
            cached.insert(key.to_vec(), bucket);
        }
        Ok(cached.get_mut(key).expect("just inserted"))
    }

    /// Write every bucket this run changed; a bucket left empty is removed (a user-name bucket
    /// stays: removing it would move the bound of the bucket before it).
    fn write_buckets(&self) -> Result<(), Abort> {
        let buckets = self.buckets.borrow();
        for (key, (bucket, changed)) in &buckets.names {
            if *changed {
                self.by_name.insert(key.as_bytes(), encode(bucket))?;
            }
        }
        fn write<K: Serialize>(tree: &TransactionalTree, cached: &HashMap<Vec<u8>, Bucket<K>>) -> Result<(), Abort> {
            for (key, bucket) in cached {
                if bucket.0.is_empty() {
                    tree.remove(key.as_slice())?;
                } else {
                    tree.insert(key.as_slice(), encode(bucket))?;
                }
            }
            Ok(())
        }
        write(self.email_index, &buckets.emails)?;
        write(self.number_index, &buckets.numbers)
    }

    /// The key of the user-name bucket that holds `name` (or would), as this transaction sees it;
    /// the bucket is then in `self.buckets`. `None` when `name` has no hint or its bucket now starts
    /// after it: the name is noted as missing and the transaction must run again.
    fn name_bucket(&self, name: &str) -> Result<Option<String>, Abort> {
        if let Some(hint) = self.hints.known.get(name) {
            let mut buckets = self.buckets.borrow_mut();
            // Buckets between the hint and the name are either in this run's copy (read or split
            // off here) or after the nearest one there, which says where it ends.
            let mut key = match buckets.names.range::<str, _>((std::ops::Bound::Unbounded, std::ops::Bound::Included(name))).next_back() {
                Some((nearest, _)) if nearest.as_str() > hint.as_str() => nearest.clone(),
                _ => hint.clone(),
            };
            loop {
                if !buckets.names.contains_key(&key) {
                    let bucket: NameBucket = match self.by_name.get(key.as_bytes())? {
                        Some(bytes) => tx_decode("user name index bucket", key.as_bytes(), &bytes)?,
                        // The first bucket is missing only while the index is empty.
                        None if key.is_empty() => NameBucket::default(),
                        None => break,
                    };
                    buckets.names.insert(key.clone(), (bucket, false));
                }
                match buckets.names[&key].0.place(&key, name) {
                    Place::Here => return Ok(Some(key)),
                    Place::After(next) if next > key.as_str() => key = next.to_owned(),
                    Place::After(_) => {
                        return Err(abort(Error::Corrupt(format!(
                            "the user name index bucket {key:?} ends where it starts or before; nothing was written. Run `mfadmin check`"
                        ))));
                    }
                    Place::Before => break,
                }
            }
        }
        self.hints.missing.borrow_mut().push(name.to_owned());
        Ok(None)
    }

    /// Move `user`'s entry in the user-name index from `old` to `new`; refused when `new` is taken.
    /// Left undone when a bucket has to be looked up first (see [`NameHints`]).
    fn move_name(&self, old: Option<&str>, new: String, user: &User) -> Result<(), Abort> {
        let Some(key) = self.name_bucket(&new)? else {
            return Ok(());
        };
        if self.buckets.borrow().names[&key].0.entries.find(&new).is_some() {
            return Err(abort(Error::Conflict(format!("the user name {:?} is already taken", user.username))));
        }
        if let Some(old) = old {
            let Some(old_key) = self.name_bucket(old)? else {
                return Ok(());
            };
            let mut buckets = self.buckets.borrow_mut();
            let (bucket, changed) = buckets.names.get_mut(&old_key).expect("found above");
            bucket.entries.remove(old);
            *changed = true;
        }
        let mut buckets = self.buckets.borrow_mut();
        let (bucket, changed) = buckets.names.get_mut(&key).expect("found above");
        bucket.entries.insert(new, user.id);
        *changed = true;
        if let Some((split_key, upper_half)) = bucket.split() {
            buckets.names.insert(split_key, (upper_half, true));
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
        let stored = self.users.get(key)?;
        // A write that keeps the name, email and number (a reset, a login) needs only the stored
        // version and those three, which are read without decoding the whole record.
        if let (Some(bytes), Some(expected)) = (&stored, expected_version)
            && let Some(head) = peek_user(key, bytes)
            && head.username == user.username
            && head.email == user.email
            && head.number == user.number
        {
            if head.version != expected {
                return Err(abort(Error::WriteConflict));
            }
            self.users.insert(key, encode_user(user, expected_version))?;
            return Ok(());
        }
        let old: Option<User> = match stored {
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
            self.move_name(old_name.as_deref(), name_key, user)?;
        }
        if old_email.as_deref() != Some(email_key.as_str()) {
            let old = old_email.as_ref().map(|e| (buckets::email_bucket(e.as_bytes()), e));
            let new = (&buckets::email_bucket(email_key.as_bytes())[..], email_key);
            let index = (self.email_index, "email index bucket");
            if !self.move_entry(index, |b| &mut b.emails, old.as_ref().map(|(b, e)| (&b[..], *e)), new, user.id)? {
                return Err(abort(Error::Conflict(format!("the email {:?} is already used by another user", user.email))));
            }
        }
        if old_number != Some(user.number) {
            let old = old_number.map(|n| (buckets::number_bucket(n), n));
            let new = (&buckets::number_bucket(user.number)[..], user.number);
            let index = (self.number_index, "number index bucket");
            if !self.move_entry(index, |b| &mut b.numbers, old.as_ref().map(|(b, n)| (&b[..], n)), new, user.id)? {
                return Err(abort(Error::Conflict(format!("the user number {} is already taken", user.number))));
            }
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
        Ok(self.user_ids_by_name(&[name])?.pop().flatten())
    }

    /// In one pass over the index in name order: each bucket is read once for all the names it holds.
    fn user_ids_by_name(&self, names: &[&str]) -> Result<Vec<Option<Uuid>>> {
        let lowered: Vec<String> = names.iter().map(|n| n.to_lowercase()).collect();
        let mut order: Vec<usize> = (0..names.len()).collect();
        order.sort_unstable_by(|&a, &b| lowered[a].cmp(&lowered[b]));
        let mut found = vec![None; names.len()];
        let mut order = order.into_iter().peekable();
        while let Some(first) = order.next() {
            let Some((key, bytes)) = self.name_bucket_of(&lowered[first])? else {
                continue;
            };
            let bucket: NameBucketRef = decode_in_place("user name index bucket", &key, &bytes)?;
            found[first] = bucket.entries.find(lowered[first].as_str());
            while let Some(&next) = order.peek()
                && bucket.upper.is_none_or(|upper| lowered[next].as_str() < upper)
            {
                found[next] = bucket.entries.find(lowered[next].as_str());
                order.next();
            }
        }
        Ok(found)
    }

    fn user_id_by_email(&self, email: &str) -> Result<Option<Uuid>> {
        let email = email.to_lowercase();
        let bucket: Bucket<String> = read_bucket(&self.email_index, "email index bucket", &buckets::email_bucket(email.as_bytes()))?;
        Ok(bucket.find(&email))
    }

    fn user_id_by_number(&self, number: u64) -> Result<Option<Uuid>> {
        let bucket: Bucket<u64> = read_bucket(&self.number_index, "number index bucket", &buckets::number_bucket(number))?;
        Ok(bucket.find(&number))
    }

    fn scan_ids_by_name(&self, visit: &mut dyn FnMut(Uuid) -> bool) -> Result<()> {
        for item in self.by_name.iter() {
            let (key, bytes) = item.map_err(storage)?;
            let bucket: NameBucketRef = decode_in_place("user name index bucket", &key, &bytes)?;
            if !bucket.entries.0.iter().all(|(_, id)| visit(*id)) {
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
        let Some((key, bytes)) = self.number_index.last().map_err(storage)? else {
            return Ok(0);
        };
        let bucket: Bucket<u64> = decode("number index bucket", &key, &bytes)?;
        Ok(bucket.0.last().map_or(0, |(n, _)| usize::try_from(*n).unwrap_or(usize::MAX)))
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
            Some(bytes) => decode_session(hash, &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn touch_session(&self, hash: &TokenHash, seen: &Session, at: Timestamp) -> Result<()> {
        let Some(old) = self.sessions.get(&hash[..]).map_err(storage)? else {
            return Ok(());
        };
        if decode_session(hash, &old)? != *seen {
            return Ok(());
        }
        let touched = Session { last_seen_at: at, ..seen.clone() };
        // Lost races (another touch, a revoke) are fine: the record is left as the winner wrote it.
        let _ = self.sessions.compare_and_swap(&hash[..], Some(old), Some(encode(&touched))).map_err(storage)?;
        Ok(())
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

    fn count_sessions(&self, now: Timestamp, counts: &dyn Fn(&Session) -> bool) -> Result<u64> {
        let mut n = 0;
        for item in self.sessions.iter() {
            let (key, bytes) = item.map_err(storage)?;
            let Ok(hash) = TokenHash::try_from(key.as_ref()) else { continue };
            let session = decode_session(&hash, &bytes)?;
            n += u64::from(session.expires_at > now && counts(&session));
        }
        Ok(n)
    }

    fn delete_expired_sessions(&self, now: Timestamp, max: usize) -> Result<usize> {
        let mut expired: Vec<TokenHash> = Vec::new();
        for item in self.sessions.iter() {
            let (key, bytes) = item.map_err(storage)?;
            let Ok(hash) = TokenHash::try_from(key.as_ref()) else { continue };
            if decode_session(&hash, &bytes)?.expires_at <= now {
                expired.push(hash);
                if expired.len() >= max {
                    break;
                }
            }
        }
        if expired.is_empty() {
            return Ok(0);
        }
        let count = expired.len();
        self.commit(&[Change { sessions_delete: expired, ..Change::default() }])?;
        self.flush()?;
        Ok(count)
    }

    fn scan_audit(&self, newest_first: bool, visit: &mut dyn FnMut(AuditEvent) -> bool) -> Result<()> {
        let mut step = |item: sled::Result<(sled::IVec, sled::IVec)>| -> Result<bool> {
            let (key, bytes) = item.map_err(storage)?;
            each_audit_event(&key, &bytes, newest_first, &mut |seq, event| Ok(visit(decode("audit", &seq.to_be_bytes(), event)?)))
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

    fn set_audit_key(&self, key: ChainKey) {
        let _ = self.chain_key.set(key);
    }

    fn begin_keyed_chain(&self, head: Option<(u64, [u8; 32])>, keyed_head: Option<[u8; 32]>) -> Result<bool> {
        let _writing = self.gate.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let keyed = self
            .meta
            .transaction(|meta| {
                if meta.get(META_AUDIT_KEYED_FROM)?.is_some() {
                    return Ok(true);
                }
                let now: Option<(u64, [u8; 32])> = match meta.get(META_AUDIT_HEAD)? {
                    Some(bytes) => Some(tx_decode("meta", META_AUDIT_HEAD.as_bytes(), &bytes)?),
                    None => None,
                };
                if now != head {
                    return Ok(false);
                }
                let from = head.map_or(1, |(seq, _)| seq + 1);
                meta.insert(META_AUDIT_KEYED_FROM, &from.to_be_bytes())?;
                if let (Some((seq, _)), Some(hash)) = (head, keyed_head) {
                    meta.insert(META_AUDIT_HEAD, encode(&(seq, hash)))?;
                }
                Ok(true)
            })
            .map_err(|e| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(e) => storage(e),
            })?;
        self.db.flush().map_err(storage)?;
        Ok(keyed)
    }

    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.meta.get(name).map_err(storage)?.map(|v| v.to_vec()))
    }

    fn space(&self) -> Result<Option<StoreSpace>> {
        let mut records = 0u64;
        for name in self.db.tree_names() {
            let tree = self.db.open_tree(&name).map_err(storage)?;
            for item in tree.iter() {
                let (key, value) = item.map_err(storage)?;
                records += (key.len() + value.len()) as u64;
            }
        }
        // sled does not tell how much of its log is still live.
        Ok(Some(StoreSpace { on_disk: self.size_on_disk()?, records, reclaimable: None }))
    }

    fn check_indexes(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let mut users = std::collections::HashMap::new();
        for item in self.users.iter() {
            let (key, bytes) = item.map_err(storage)?;
            match decode_user_record(&key, &bytes) {
                Ok(u) if u.id.as_bytes() == key.as_ref() => {
                    users.insert(u.id, u);
                }
                Ok(u) => problems.push(format!("user record under key {} holds id {}", describe_key(&key), u.id)),
                Err(e) => problems.push(e.to_string()),
            }
        }
        // Every index as (key, id) pairs; a bucket entry is also checked to be in its own bucket.
        let names = self.checked_name_entries(&mut problems)?;
        let emails = Self::checked_bucket_entries(&self.email_index, "email", |e: &String| buckets::email_bucket(e.as_bytes()).to_vec(), String::into_bytes, &mut problems)?;
        let numbers = Self::checked_bucket_entries(&self.number_index, "number", |n: &u64| buckets::number_bucket(*n).to_vec(), |n| n.to_be_bytes().to_vec(), &mut problems)?;
        type KeyOf = fn(&User) -> Vec<u8>;
        type Entries = Vec<(Vec<u8>, Option<Uuid>)>;
        let indexes: [(&str, Entries, KeyOf); 3] = [
            ("user name", names, |u| u.username.to_lowercase().into_bytes()),
            ("email", emails, |u| u.email.to_lowercase().into_bytes()),
            ("number", numbers, |u| u.number.to_be_bytes().to_vec()),
        ];
        for (what, entries, key_of) in indexes {
            let mut found = std::collections::HashMap::with_capacity(entries.len());
            for (key, id) in entries {
                match id.and_then(|id| users.get(&id)) {
                    Some(u) if key_of(u) == key => {}
                    Some(u) => problems.push(format!("the {what} index entry {} points at {}, whose {what} differs", describe_key(&key), u.username)),
                    None => problems.push(format!("the {what} index entry {} points at no user", describe_key(&key))),
                }
                found.insert(key, id);
            }
            for u in users.values() {
                if found.get(&key_of(u)) != Some(&Some(u.id)) {
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
            &self.email_index,
            &self.number_index,
            &self.orgs,
            &self.audit,
            &self.sessions,
            &self.user_sessions,
            &self.meta,
        );
        let mut hints = NameHints::default();
        let new_names = changes.iter().flat_map(|c| &c.users).filter(|w| w.expected_version.is_none()).map(|w| w.user.username.to_lowercase());
        self.look_up_names(&mut hints, new_names)?;
        // A name met without a hint is looked up and the transaction run again; each run knows more
        // names, so a few runs suffice (a rename needs its old name looked up after its new one).
        for _ in 0..16 {
            let result = trees.transaction(|(users, by_name, email_index, number_index, orgs, audit, sessions, user_sessions, meta)| {
                hints.missing.borrow_mut().clear();
                let tx = Tx {
                    hints: &hints,
                    buckets: RefCell::default(),
                    users,
                    by_name,
                    email_index,
                    number_index,
                    orgs,
                    audit,
                    sessions,
                    user_sessions,
                    meta,
                };
                let mut head: Option<(u64, [u8; 32])> = match meta.get(META_AUDIT_HEAD)? {
                    Some(bytes) => Some(tx_decode("meta", META_AUDIT_HEAD.as_bytes(), &bytes)?),
                    None => None,
                };
                let before = head;
                let linker = if changes.iter().any(|c| !c.audit.is_empty()) {
                    super::linker_for_new_events(meta.get(META_AUDIT_KEYED_FROM)?.is_some(), self.chain_key.get()).map_err(abort)?
                } else {
                    Linker::Plain
                };
                for change in changes {
                    tx.apply(change, &mut head, &linker)?;
                }
                if !hints.missing.borrow().is_empty() {
                    // Some name was not placed: write nothing this time.
                    return Err(abort(Error::WriteConflict));
                }
                tx.write_buckets()?;
                if head != before
                    && let Some(h) = &head {
                        meta.insert(META_AUDIT_HEAD, encode(h))?;
                    }
                Ok(())
            });
            // A refusal met while a name was missing may be due to the skipped name: run again.
            let missing = hints.missing.take();
            if !missing.is_empty() {
                self.look_up_names(&mut hints, missing.into_iter())?;
                continue;
            }
            return match result {
                Ok(()) => Ok(()),
                Err(TransactionError::Abort(e)) => Err(e),
                Err(TransactionError::Storage(e)) => Err(storage(e)),
            };
        }
        Err(Error::Storage("the user-name index kept changing under this write; nothing was written. Try again".into()))
    }

    fn flush(&self) -> Result<()> {
        self.db.flush().map(|_| ()).map_err(storage)
    }

    fn add_users(&self, users: &[User], audit: &dyn Fn(&User) -> AuditDraft) -> Result<()> {
        self.import_new_users(users, audit)
    }

    fn load_new_users(&self, mut users: Vec<User>) -> Result<()> {
        let _writing = self.gate.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Everything a transaction would refuse is refused before anything is written.
        users.sort_unstable_by_key(|u| u.id);
        let ids: Vec<(Vec<u8>, Uuid)> = users.iter().map(|u| (u.id.as_bytes().to_vec(), u.id)).collect();
        if let Some(key) = first_taken(&self.users, &ids)? {
            return Err(Error::Conflict(format!("the user id {} is already taken; no user was written", describe_key(&key))));
        }
        drop(ids);
        let stored_names = Self::bucket_entries::<NameBucket>(&self.by_name, "user name index bucket")?.into_iter().flat_map(|(_, b)| b.entries.0);
        let names = merge_entries(stored_names, "user name", users.iter().map(|u| (u.username.to_lowercase(), u.id)), String::clone)?;
        let emails = merge_entries(Self::stored_entries(&self.email_index, "email index bucket")?, "email", users.iter().map(|u| (u.email.to_lowercase(), u.id)), String::clone)?;
        let numbers = merge_entries(Self::stored_entries(&self.number_index, "number index bucket")?, "number", users.iter().map(|u| (u.number, u.id)), u64::to_string)?;
        self.meta.insert(META_UNFINISHED_LOAD, &[1u8]).map_err(storage)?;
        self.db.flush().map_err(storage)?;
        // One tree at a time, each in key order: sled then appends pages one after the other
        // instead of rewriting the same pages of several trees over and over.
        write_in_order(&self.users, users.iter().map(|u| (u.id.as_bytes().to_vec(), encode_user(u, None))))?;
        drop(users);
        // The name index is written anew: its buckets' bounds change with the names added.
        self.by_name.clear().map_err(storage)?;
        write_in_order(&self.by_name, name_buckets(names))?;
        write_in_order(&self.email_index, email_buckets(emails))?;
        write_in_order(&self.number_index, number_buckets(numbers))?;
        self.db.flush().map_err(storage)?;
        self.meta.remove(META_UNFINISHED_LOAD).map_err(storage)?;
        self.db.flush().map_err(storage)?;
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "sled"
    }

    fn export(&self, now: Timestamp, visit: &mut dyn FnMut(Record) -> Result<()>) -> Result<()> {
        records::export(self, now, visit)
    }

    fn import(&self, next: &mut dyn FnMut() -> Result<Option<Record>>) -> Result<()> {
        records::import(self, next)
    }
}

/// Every tree of `store` whole, while no commit runs: what backups of format 1 held (kept to test
/// that those still restore).
pub fn snapshot(store: &SledStore, taken_at: i64) -> Result<Snapshot> {
    store.with_commits_paused(|db| {
        let mut trees = Vec::new();
        for name in db.tree_names() {
            let tree = db.open_tree(&name).map_err(|e| Error::Storage(e.to_string()))?;
            let entries = tree
                .iter()
                .map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(|e| Error::Storage(e.to_string())))
                .collect::<Result<Vec<_>>>()?;
            trees.push(TreeDump { name: name.to_vec(), entries });
        }
        Ok(Snapshot { schema_version: SCHEMA_VERSION, taken_at, trees })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::codec::encode_user_record;
    use crate::domain::audit::{AuditDraft, Outcome};
    use crate::domain::mfa::{Lockout, MfaState, SealedSecret};
    use crate::domain::role::Role;
    use crate::domain::user::Status;
    use crate::store::UserWrite;
    use proptest::prelude::*;

    fn user(version: u64, mfa_reset_at: Option<i64>, mfa: MfaState, codes: usize) -> User {
        User {
            id: Uuid::new_v4(),
            number: 4711,
            username: "alice".into(),
            email: "alice@example.org".into(),
            display_name: "Alice".into(),
            org: "acme".into(),
            role: Role::Member,
            status: Status::Active,
            password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
            mfa,
            lockout: Lockout { failures: 200, locked_until: Some(-5) },
            recovery_codes: vec![[0xff; 32]; codes],
            created_at: 1_800_000_000,
            last_login_at: None,
            mfa_enrolled_at: Some(i64::MAX),
            mfa_last_used_at: None,
            mfa_last_client: None,
            mfa_reset_at,
            version,
        }
    }

    fn mfa_state() -> impl Strategy<Value = MfaState> {
        let secret = prop::collection::vec(any::<u8>(), 0..80).prop_map(SealedSecret);
        prop_oneof![
            Just(MfaState::NotEnrolled),
            Just(MfaState::MustEnroll),
            (secret.clone(), any::<i64>()).prop_map(|(secret, started_at)| MfaState::Pending { secret, started_at }),
            (secret, any::<i64>(), any::<u64>()).prop_map(|(secret, enrolled_at, last_step)| MfaState::Enrolled {
                secret,
                enrolled_at,
                last_step
            }),
        ]
    }

    proptest! {
        /// The version and head read without decoding are those of the record, whatever it holds.
        #[test]
        fn a_peeked_user_record_agrees_with_its_decoding(
            version in prop_oneof![any::<u64>(), 0u64..300],
            reset_at in prop::option::of(any::<i64>()),
            mfa in mfa_state(),
            codes in 0usize..12,
            name in "[a-z0-9._@-]{1,64}",
        ) {
            let mut u = user(version, reset_at, mfa, codes);
            u.username = name;
            let bytes = encode_user_record(&u);
            let head = peek_user(u.id.as_bytes(), &bytes).expect("a user record can be peeked");
            prop_assert_eq!(head, UserHead { number: u.number, username: &u.username, email: &u.email, version });
            prop_assert_eq!(decode_user(u.id.as_bytes(), &bytes).unwrap(), u.clone());
            prop_assert!(peek_user(Uuid::new_v4().as_bytes(), &bytes).is_none(), "another id is not this record");
        }
    }

    #[test]
    fn a_damaged_or_foreign_record_is_not_peeked() {
        let u = user(3, None, MfaState::NotEnrolled, 0);
        let bytes = encode_user_record(&u);
        let mut unfinished = bytes.clone();
        *unfinished.last_mut().unwrap() |= 0x80;
        assert!(peek_user(u.id.as_bytes(), &unfinished).is_none(), "a record cannot end inside a varint");
        assert!(peek_user(u.id.as_bytes(), &[1]).is_none());
        assert!(peek_user(u.id.as_bytes(), &[]).is_none());
        let mut v3 = bytes;
        v3[0] = 2;
        assert!(peek_user(u.id.as_bytes(), &v3).is_none(), "a layout it does not know is decoded in full");
    }

    #[test]
    fn an_audit_event_encoded_from_its_parts_is_the_stored_event() {
        let draft = AuditDraft {
            at: 1_800_000_000,
            actor: "console:root".into(),
            action: "mfa.reset".into(),
            target_id: Some(Uuid::new_v4()),
            target: Some("alice".into()),
            org: Some("acme".into()),
            outcome: Outcome::Success,
            reason: Some("lost phone".into()),
            detail: None,
            source: "cli".into(),
        };
        let prev = [7u8; 32];
        let event = AuditEvent::link(draft.clone(), 300, prev);
        assert_eq!(encode_audit(300, prev, &draft), encode(&event));
        assert_eq!(AuditEvent::hash_of(300, &prev, &draft), event.hash());
        assert_eq!(decode::<AuditEvent>("audit", b"k", &encode_audit(300, prev, &draft)).unwrap(), event);
    }

    /// A commit that revokes the sessions of many users ends every session it names: those from
    /// before, and one this very commit gave.
    #[test]
    fn a_bulk_revoke_ends_every_session_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::create(dir.path()).unwrap();
        let session = |user_id| Session::new(user_id, crate::store::SessionKind::Session, 0, 100, "test");
        let put = |hash: u8, user: Uuid| Change { sessions_put: vec![([hash; 32], session(user))], ..Change::default() };
        let revoke = |users: &[Uuid]| users.iter().map(|&id| Change { revoke_sessions_of: vec![id], ..Change::default() }).collect::<Vec<_>>();
        let ids: Vec<Uuid> = (0..20).map(|_| Uuid::new_v4()).collect();
        for (n, &id) in ids.iter().take(3).enumerate() {
            store.commit(&[put(n as u8, id)]).unwrap();
        }
        let mut changes = vec![put(9, ids[10])];
        changes.extend(revoke(&ids));
        store.commit(&changes).unwrap();
        for hash in [0, 1, 2, 9] {
            assert!(store.get_session(&[hash; 32]).unwrap().is_none(), "session {hash} was revoked");
        }
        assert!(store.user_sessions.iter().next().is_none(), "no session list is left");
        // Only the users named lose their sessions.
        for (n, &id) in ids.iter().take(10).enumerate() {
            store.commit(&[put(n as u8, id)]).unwrap();
        }
        store.commit(&revoke(&ids[..8])).unwrap();
        for (n, &id) in ids.iter().take(10).enumerate() {
            assert_eq!(store.sessions_of(id).unwrap().is_empty(), n < 8, "user {n}");
        }
    }

    /// A write computed from an older version of the record is refused, on the peeked path (same
    /// name, email and number) and on the decoded one (a rename).
    #[test]
    fn a_write_over_a_newer_record_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::create(dir.path()).unwrap();
        let u = user(1, None, MfaState::NotEnrolled, 2);
        let acme = Org { key: "acme".into(), name: "Acme".into(), mfa_enforced: false, created_at: 0 };
        store.commit(&[Change { users: vec![UserWrite { user: u.clone(), expected_version: None }], orgs: vec![acme], ..Change::default() }]).unwrap();
        let write = |user: &User, expected| store.commit(&[Change { users: vec![UserWrite { user: user.clone(), expected_version: Some(expected) }], ..Change::default() }]);
        let mut next = u.clone();
        next.recovery_codes.clear();
        next.version = 2;
        write(&next, 1).unwrap();
        assert_eq!(store.get_user(u.id).unwrap().unwrap(), next);
        // Both computed from version 1, which is gone.
        let mut stale = u.clone();
        stale.mfa_reset_at = Some(9);
        assert!(matches!(write(&stale, 1), Err(Error::WriteConflict)));
        stale.username = "alice2".into();
        assert!(matches!(write(&stale, 1), Err(Error::WriteConflict)));
        assert!(matches!(write(&stale, 3), Err(Error::WriteConflict)), "a version from the future is no match either");
        assert_eq!(store.get_user(u.id).unwrap().unwrap(), next, "the record is untouched");
        stale.version = 3;
        write(&stale, 2).unwrap();
        assert_eq!(store.get_user(u.id).unwrap().unwrap(), stale);
        assert_eq!(store.user_id_by_name("alice2").unwrap(), Some(u.id));
        assert_eq!(store.check_indexes().unwrap(), Vec::<String>::new());
    }

    fn acme() -> Org {
        Org { key: "acme".into(), name: "Acme".into(), mfa_enforced: false, created_at: 0 }
    }

    fn named(name: &str, number: u64) -> User {
        let mut u = user(0, None, MfaState::NotEnrolled, 0);
        u.username = name.into();
        u.email = format!("{name}@Example.org");
        u.number = number;
        u
    }

    fn add(store: &SledStore, users: &[User]) -> Result<()> {
        let users = users.iter().map(|u| UserWrite { user: u.clone(), expected_version: None }).collect();
        store.commit(&[Change { users, orgs: vec![acme()], ..Change::default() }])
    }

    /// Emails and numbers are found through their buckets after every kind of write: new users
    /// (many sharing a bucket), a changed email and number, and a taken email or number refused.
    #[test]
    fn emails_and_numbers_are_found_through_their_buckets() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::create(dir.path()).unwrap();
        let users: Vec<User> = (1..=200).map(|n| named(&format!("user{n}"), n)).collect();
        add(&store, &users).unwrap();
        for u in &users {
            assert_eq!(store.user_id_by_email(&u.email.to_uppercase()).unwrap(), Some(u.id), "{}", u.email);
            assert_eq!(store.user_id_by_number(u.number).unwrap(), Some(u.id));
        }
        assert_eq!(store.user_count_bound().unwrap(), 200);
        assert_eq!(store.number_index.len(), 4, "numbers 1 to 200 fill 4 buckets of 64");
        let mut moved = users[5].clone();
        moved.email = "new@example.org".into();
        moved.number = 999;
        moved.version = 1;
        store.commit(&[Change { users: vec![UserWrite { user: moved.clone(), expected_version: Some(1) }], ..Change::default() }]).unwrap();
        assert_eq!(store.user_id_by_email("new@example.org").unwrap(), Some(moved.id));
        assert_eq!(store.user_id_by_email(&users[5].email).unwrap(), None, "the old email is gone from its bucket");
        assert_eq!((store.user_id_by_number(999).unwrap(), store.user_id_by_number(6).unwrap()), (Some(moved.id), None));
        assert_eq!(store.user_count_bound().unwrap(), 999);
        let mut clash = named("other", 5000);
        clash.email = users[0].email.to_uppercase();
        assert!(matches!(add(&store, &[clash]), Err(Error::Conflict(m)) if m.contains("already used")));
        assert!(matches!(add(&store, &[named("other", 7)]), Err(Error::Conflict(m)) if m.contains("number 7 is already taken")));
        assert_eq!(store.user_id_by_name("other").unwrap(), None, "a refused commit writes nothing");
        assert_eq!(store.check_indexes().unwrap(), Vec::<String>::new());
        // `check` finds a bucket out of order (where a lookup can miss) and an entry in another's bucket.
        let mut first: Bucket<u64> = read_bucket(&store.number_index, "b", &buckets::number_bucket(1)).unwrap();
        first.0.reverse();
        store.number_index.insert(buckets::number_bucket(1), encode(&first)).unwrap();
        let stray = Bucket(vec![(users[1].email.to_lowercase(), users[1].id)]);
        let elsewhere = (0..=u16::MAX).map(u16::to_be_bytes).find(|b| *b != buckets::email_bucket(users[1].email.to_lowercase().as_bytes())).unwrap();
        store.email_index.insert(elsewhere, encode(&stray)).unwrap();
        let problems = store.check_indexes().unwrap();
        assert!(problems.iter().any(|p| p.contains("number index bucket 0000000000000000 is out of order")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains(&format!("{} is in another email's bucket", users[1].email.to_lowercase()))), "{problems:?}");
    }

    /// A bulk load writes what commits would have, next to what was there, and refuses a taken
    /// name, email or number before writing anything.
    #[test]
    fn a_bulk_load_matches_commits_and_refuses_what_they_would() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::create(dir.path()).unwrap();
        let owner = named("owner", 1);
        add(&store, std::slice::from_ref(&owner)).unwrap();
        let users: Vec<User> = (2..=3000).map(|n| named(&format!("u{n}"), n)).collect();
        for (what, clash) in [("user name", named("OWNER", 5000)), ("number", named("x", 1)), ("email", {
            let mut u = named("y", 5001);
            u.email = "owner@example.org".into();
            u
        })] {
            let mut with_clash = users.clone();
            with_clash.push(clash);
            let err = store.load_new_users(with_clash).unwrap_err();
            assert!(matches!(&err, Error::Conflict(m) if m.contains(what) && m.contains("no user was written")), "{err}");
            assert_eq!(store.users.len(), 1, "nothing was written");
        }
        let twice = vec![named("same", 6000), named("same", 6001)];
        assert!(matches!(store.load_new_users(twice), Err(Error::Conflict(_))), "a name twice in the load is refused");
        store.load_new_users(users.clone()).unwrap();
        assert_eq!(store.check_indexes().unwrap(), Vec::<String>::new());
        for u in users.iter().chain([&owner]) {
            assert_eq!(store.user_id_by_email(&u.email).unwrap(), Some(u.id), "{}", u.email);
            assert_eq!(store.user_id_by_number(u.number).unwrap(), Some(u.id));
            assert_eq!(store.get_user(u.id).unwrap().unwrap().version, 1);
        }
        assert_eq!(store.user_count_bound().unwrap(), 3000);
        drop(store);
        assert!(SledStore::open(dir.path()).is_ok(), "a finished load leaves no mark");
    }

    #[test]
    fn a_store_left_half_filled_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::create(dir.path()).unwrap();
        store.meta.insert(META_UNFINISHED_LOAD, &[1u8]).unwrap();
        store.flush().unwrap();
        drop(store);
        let err = SledStore::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("left half-filled") && err.to_string().contains("run `mfadmin demo` again"), "{err}");
    }

    /// A store of schema 1 (one entry per email, number and name) or 2 (one entry per name) opens
    /// with its indexes in buckets.
    #[test]
    fn an_older_store_is_brought_up_to_date_when_opened() {
        for version in [1u32, 2] {
            let dir = tempfile::tempdir().unwrap();
            let users: Vec<User> = (1..=300).map(|n| named(&format!("user{n}"), n)).collect();
            {
                let store = SledStore::create(dir.path()).unwrap();
                add(&store, &users).unwrap();
                // Lay the store out as that schema did.
                let names = store.db.open_tree("users_by_name").unwrap();
                for u in &users {
                    names.insert(u.username.to_lowercase().as_bytes(), u.id.as_bytes()).unwrap();
                }
                store.by_name.clear().unwrap();
                if version == 1 {
                    let (emails, numbers) = (store.db.open_tree("users_by_email").unwrap(), store.db.open_tree("users_by_number").unwrap());
                    for u in &users {
                        emails.insert(u.email.to_lowercase().as_bytes(), u.id.as_bytes()).unwrap();
                        numbers.insert(u.number.to_be_bytes(), u.id.as_bytes()).unwrap();
                    }
                    store.email_index.clear().unwrap();
                    store.number_index.clear().unwrap();
                }
                store.meta.insert(META_SCHEMA, &version.to_be_bytes()).unwrap();
                store.flush().unwrap();
            }
            let store = SledStore::open(dir.path()).unwrap();
            assert_eq!(store.check_indexes().unwrap(), Vec::<String>::new(), "from schema {version}");
            assert_eq!(store.user_id_by_email("USER7@example.org").unwrap(), Some(users[6].id));
            assert_eq!(store.user_id_by_number(300).unwrap(), Some(users[299].id));
            assert_eq!(store.user_id_by_name("User250").unwrap(), Some(users[249].id));
            assert!(store.by_name.len() > 1 && store.by_name.len() < 20, "300 names in a few buckets");
            assert_eq!(store.get_meta(META_SCHEMA).unwrap(), Some(SCHEMA_VERSION.to_be_bytes().to_vec()));
            let trees = store.db.tree_names();
            assert!(!trees.iter().any(|n| [&b"users_by_email"[..], b"users_by_number", b"users_by_name"].contains(&n.as_ref())), "the old trees are gone");
        }
    }

    fn names_in_order(store: &SledStore) -> Vec<String> {
        let mut ids = Vec::new();
        store.scan_ids_by_name(&mut |id| {
            ids.push(id);
            true
        }).unwrap();
        ids.into_iter().map(|id| store.get_user(id).unwrap().unwrap().username.to_lowercase()).collect()
    }

    /// Names are found through their ordered buckets after every kind of write: users added one at a
    /// time and many at once (buckets split), renamed within a bucket and across buckets, a name
    /// passed from one user to another in one change, and a taken name refused.
    #[test]
    fn names_are_found_through_their_ordered_buckets() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::create(dir.path()).unwrap();
        assert_eq!(store.user_id_by_name("anyone").unwrap(), None, "an empty index finds nothing");
        // Added in a scattered order, one at a time and then in a batch.
        let mut users: Vec<User> = (1..=150).map(|n| named(&format!("u{:03}", (n * 37) % 151), n)).collect();
        for u in &users[..100] {
            add(&store, std::slice::from_ref(u)).unwrap();
        }
        add(&store, &users[100..]).unwrap();
        assert!(store.by_name.len() >= 3, "150 names split into several buckets, {}", store.by_name.len());
        assert_eq!(store.check_indexes().unwrap(), Vec::<String>::new());
        for u in &users {
            assert_eq!(store.user_id_by_name(&u.username.to_uppercase()).unwrap(), Some(u.id), "{}", u.username);
        }
        let mut sorted: Vec<String> = users.iter().map(|u| u.username.clone()).collect();
        sorted.sort();
        assert_eq!(names_in_order(&store), sorted);
        // Renames: one to the far end of the order, and two users trading a name in one change.
        let rename = |u: &mut User, to: &str| {
            u.username = to.into();
            u.version = 1;
            UserWrite { user: u.clone(), expected_version: Some(1) }
        };
        let far = rename(&mut users[0], "zed");
        store.commit(&[Change { users: vec![far], ..Change::default() }]).unwrap();
        let (old_a, old_b) = (users[1].username.clone(), users[2].username.clone());
        let a = rename(&mut users[1], "a-free-name");
        let b = rename(&mut users[2], &old_a);
        store.commit(&[Change { users: vec![a, b], ..Change::default() }]).unwrap();
        assert_eq!(store.user_id_by_name("zed").unwrap(), Some(users[0].id));
        assert_eq!(store.user_id_by_name(&old_a).unwrap(), Some(users[2].id), "the name passed on in one change");
        assert_eq!(store.user_id_by_name(&old_b).unwrap(), None, "the name given up is free");
        let mut clash = users[3].clone();
        let clash = rename(&mut clash, "ZED");
        let refused = store.commit(&[Change { users: vec![clash], ..Change::default() }]);
        assert!(matches!(&refused, Err(Error::Conflict(m)) if m.contains("already taken")), "{refused:?}");
        assert_eq!(store.user_id_by_name(&users[3].username).unwrap(), Some(users[3].id), "a refused rename writes nothing");
        assert!(matches!(add(&store, &[named("A-FREE-NAME", 900)]), Err(Error::Conflict(_))));
        assert_eq!(store.check_indexes().unwrap(), Vec::<String>::new());
        let mut sorted: Vec<String> = users.iter().map(|u| u.username.clone()).collect();
        sorted.sort();
        assert_eq!(names_in_order(&store), sorted);
        // Many names at once, in any order and case, some twice and some absent, as one at a time.
        let mut asked: Vec<String> = users.iter().rev().map(|u| u.username.to_uppercase()).collect();
        asked.extend(["", "nobody", "zzz", "u000", &old_b, "zed", "ZED"].map(String::from));
        let asked: Vec<&str> = asked.iter().map(String::as_str).collect();
        let one_by_one: Vec<Option<Uuid>> = asked.iter().map(|n| store.user_id_by_name(n).unwrap()).collect();
        assert_eq!(store.user_ids_by_name(&asked).unwrap(), one_by_one);
        assert_eq!(one_by_one.iter().filter(|id| id.is_some()).count(), users.len() + 2);
    }

    /// Thousands of names in one commit into a store of a few names (an import into a new store)
    /// split one bucket again and again within the transaction: every bucket stays within its
    /// bound, covers its range, and every name and email is found.
    #[test]
    fn many_names_in_one_commit_are_all_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::create(dir.path()).unwrap();
        add(&store, &[named("m", 1), named("zz", 2)]).unwrap();
        let users: Vec<User> = (0..3_000u64).map(|i| named(&format!("n{:05}", (i * 7_919) % 3_000), 10 + i)).collect();
        add(&store, &users).unwrap();
        assert_eq!(store.check_indexes().unwrap(), Vec::<String>::new());
        for item in store.by_name.iter() {
            let (key, bytes) = item.unwrap();
            let bucket: NameBucket = decode("bucket", &key, &bytes).unwrap();
            assert!(bucket.entries.0.len() <= names::SPLIT_ABOVE, "a bucket of {} names", bucket.entries.0.len());
        }
        assert!(store.by_name.len() >= 3_002 / names::SPLIT_ABOVE, "{} buckets", store.by_name.len());
        for u in &users {
            assert_eq!(store.user_id_by_name(&u.username).unwrap(), Some(u.id), "{}", u.username);
            assert_eq!(store.user_id_by_email(&u.email).unwrap(), Some(u.id), "{}", u.email);
        }
        let again = add(&store, &[named("N01234", 9_999)]);
        assert!(matches!(&again, Err(Error::Conflict(m)) if m.contains("already taken")), "{again:?}");
    }

    /// Commits from several threads at once, adding users whose names fall in the same buckets and
    /// split them, leave every name found once.
    #[test]
    fn names_added_from_several_threads_are_all_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::create(dir.path()).unwrap();
        add(&store, &[named("m", 1)]).unwrap();
        let users: Vec<Vec<User>> = (0..4).map(|t| (0..120).map(|i| named(&format!("n{i:03}-{t}"), 10 + t * 1000 + i)).collect()).collect();
        std::thread::scope(|scope| {
            for mine in &users {
                let store = &store;
                scope.spawn(move || {
                    for u in mine {
                        add(store, std::slice::from_ref(u)).unwrap();
                    }
                });
            }
        });
        assert_eq!(store.check_indexes().unwrap(), Vec::<String>::new());
        for u in users.iter().flatten() {
            assert_eq!(store.user_id_by_name(&u.username).unwrap(), Some(u.id), "{}", u.username);
        }
        assert_eq!(names_in_order(&store).len(), 481);
    }

    /// `check` names a name bucket that does not cover its range: a gap before a bucket, and a name
    /// stored outside its bucket's range.
    #[test]
    fn check_finds_name_buckets_that_do_not_cover_their_range() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::create(dir.path()).unwrap();
        add(&store, &[]).unwrap();
        store.load_new_users((1..=200).map(|n| named(&format!("user{n:03}"), n)).collect()).unwrap();
        assert_eq!(store.check_indexes().unwrap(), Vec::<String>::new());
        let (key, bytes) = store.by_name.iter().nth(1).unwrap().unwrap();
        let mut second: NameBucket = decode("b", &key, &bytes).unwrap();
        store.by_name.remove(&key).unwrap();
        second.entries.0.insert(0, ("a-stray".into(), Uuid::new_v4()));
        store.by_name.insert("user0", encode(&second)).unwrap();
        let problems = store.check_indexes().unwrap();
        assert!(problems.iter().any(|p| p.contains("bucket \"user0\" does not start where the one before it ends")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("bucket \"user0\" holds names out of order or outside its range")), "{problems:?}");
        // A bucket whose bound points back at itself: a new name past it is refused, not followed forever.
        let (key, bytes) = store.by_name.last().unwrap().unwrap();
        let mut last: NameBucket = decode("b", &key, &bytes).unwrap();
        last.upper = Some(String::from_utf8(key.to_vec()).unwrap());
        store.by_name.insert(&key, encode(&last)).unwrap();
        let refused = add(&store, &[named("zz-after-everything", 999)]);
        assert!(matches!(&refused, Err(Error::Corrupt(m)) if m.contains("ends where it starts")), "{refused:?}");
    }
}
