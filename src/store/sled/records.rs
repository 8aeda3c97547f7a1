//! A sled store's records for backups: read while no commit runs, and written into a new store
//! tree by tree in batches, its indexes built from the users as they come.

use super::import::META_UNFINISHED_IMPORT;
use super::{
    email_buckets, merge_entries, name_buckets, number_buckets, storage, write_in_order, SledStore, LOAD_BATCH, META_AUDIT_HEAD,
    META_NEXT_NUMBER, META_SCHEMA, META_UNFINISHED_LOAD,
};
use crate::domain::audit::AuditEvent;
use crate::domain::user::Org;
use crate::domain::Timestamp;
use crate::error::{Error, Result};
use crate::store::codec::{decode, decode_session, decode_user, encode};
use crate::store::{Record, TokenHash};
use std::collections::HashMap;
use uuid::Uuid;

/// Meta entries that belong to the sled store itself, not to the records a backup carries.
const OWN_META: [&str; 5] = [META_SCHEMA, META_AUDIT_HEAD, META_NEXT_NUMBER, META_UNFINISHED_LOAD, META_UNFINISHED_IMPORT];

fn damaged_key(what: &str, key: &[u8]) -> Error {
    Error::Corrupt(format!("a {what} record has a damaged key ({})", hex::encode(key)))
}

/// Every record of `store` while no commit runs (see `Store::export`).
pub(super) fn export(store: &SledStore, now: Timestamp, visit: &mut dyn FnMut(Record) -> Result<()>) -> Result<()> {
    store.with_commits_paused(|_| {
        let next = store.meta.get(META_NEXT_NUMBER).map_err(storage)?.and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok()).map_or(1, u64::from_be_bytes);
        visit(Record::NextNumber(next))?;
        for item in store.meta.iter() {
            let (k, v) = item.map_err(storage)?;
            let name = String::from_utf8(k.to_vec()).map_err(|_| damaged_key("meta", &k))?;
            if !OWN_META.contains(&name.as_str()) {
                visit(Record::Meta { name, value: v.to_vec() })?;
            }
        }
        for item in store.orgs.iter() {
            let (k, v) = item.map_err(storage)?;
            let key = String::from_utf8(k.to_vec()).map_err(|_| damaged_key("org", &k))?;
            visit(Record::Org { key, record: v.to_vec() })?;
        }
        for item in store.users.iter() {
            let (k, v) = item.map_err(storage)?;
            let id = Uuid::from_slice(&k).map_err(|_| damaged_key("user", &k))?;
            visit(Record::User { id, record: v.to_vec() })?;
        }
        for item in store.audit.iter() {
            let (k, v) = item.map_err(storage)?;
            super::each_audit_event(&k, &v, false, &mut |seq, record| {
                visit(Record::Audit { seq, record: record.to_vec() })?;
                Ok(true)
            })?;
        }
        if let Some(bytes) = store.meta.get(META_AUDIT_HEAD).map_err(storage)? {
            let (seq, hash): (u64, [u8; 32]) = decode("meta", META_AUDIT_HEAD.as_bytes(), &bytes)?;
            visit(Record::AuditHead { seq, hash })?;
        }
        for item in store.sessions.iter() {
            let (k, v) = item.map_err(storage)?;
            let hash = TokenHash::try_from(k.as_ref()).map_err(|_| damaged_key("session", &k))?;
            if decode_session(&hash, &v)?.expires_at > now {
                visit(Record::Session { hash, record: v.to_vec() })?;
            }
        }
        Ok(())
    })
}

/// Batched writes to one tree.
struct Batched<'a> {
    tree: &'a sled::Tree,
    batch: sled::Batch,
    pending: usize,
}

impl<'a> Batched<'a> {
    fn new(tree: &'a sled::Tree) -> Self {
        Batched { tree, batch: sled::Batch::default(), pending: 0 }
    }

    fn insert(&mut self, key: &[u8], value: Vec<u8>) -> Result<()> {
        self.batch.insert(key, value);
        self.pending += 1;
        if self.pending == LOAD_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.pending = 0;
        self.tree.apply_batch(std::mem::take(&mut self.batch)).map_err(storage)
    }
}

/// Write `next`'s records into `store`, which holds nothing yet (see `Store::import`). Records go
/// to their trees in batches as they come; the indexes (names, emails, numbers, each user's
/// sessions) are built at the end from what was noted of each user on the way.
pub(super) fn import(store: &SledStore, next: &mut dyn FnMut() -> Result<Option<Record>>) -> Result<()> {
    let _writing = store.gate.read().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !store.users.is_empty() || !store.orgs.is_empty() || !store.audit.is_empty() {
        return Err(Error::Conflict(format!("{} already holds users, orgs or audit events: restore into an empty store", store.dir.display())));
    }
    let (mut names, mut emails, mut numbers) = (Vec::new(), Vec::new(), Vec::new());
    let mut lists: HashMap<Uuid, Vec<TokenHash>> = HashMap::new();
    let (mut users, mut audit, mut sessions) = (Batched::new(&store.users), Batched::new(&store.audit), Batched::new(&store.sessions));
    while let Some(record) = next()? {
        match record {
            Record::NextNumber(n) => {
                store.meta.insert(META_NEXT_NUMBER, &n.to_be_bytes()).map_err(storage)?;
            }
            Record::Meta { name, value } => {
                if OWN_META.contains(&name.as_str()) {
                    return Err(Error::Corrupt(format!("the backup holds the store's own setting {name:?} as a record")));
                }
                store.meta.insert(name.as_bytes(), value).map_err(storage)?;
            }
            Record::Org { key, record } => {
                decode::<Org>("org", key.as_bytes(), &record)?;
                store.orgs.insert(key.as_bytes(), record).map_err(storage)?;
            }
            Record::User { id, record } => {
                let user = decode_user(id.as_bytes(), &record)?;
                names.push((user.username.to_lowercase(), id));
                emails.push((user.email.to_lowercase(), id));
                numbers.push((user.number, id));
                users.insert(id.as_bytes(), record)?;
            }
            Record::Audit { seq, record } => {
                let event: AuditEvent = decode("audit", &seq.to_be_bytes(), &record)?;
                if event.seq != seq {
                    return Err(Error::Corrupt(format!("audit event {seq} holds the number {}", event.seq)));
                }
                audit.insert(&seq.to_be_bytes(), record)?;
            }
            Record::AuditHead { seq, hash } => {
                store.meta.insert(META_AUDIT_HEAD, encode(&(seq, hash))).map_err(storage)?;
            }
            Record::Session { hash, record } => {
                lists.entry(decode_session(&hash, &record)?.user_id).or_default().push(hash);
                sessions.insert(&hash, record)?;
            }
        }
    }
    for batched in [&mut users, &mut audit, &mut sessions] {
        batched.flush()?;
    }
    let names = merge_entries(std::iter::empty(), "user name", names.into_iter(), String::clone)?;
    let emails = merge_entries(std::iter::empty(), "email", emails.into_iter(), String::clone)?;
    let numbers = merge_entries(std::iter::empty(), "number", numbers.into_iter(), u64::to_string)?;
    write_in_order(&store.by_name, name_buckets(names))?;
    write_in_order(&store.email_index, email_buckets(emails))?;
    write_in_order(&store.number_index, number_buckets(numbers))?;
    let mut lists: Vec<(Uuid, Vec<TokenHash>)> = lists.into_iter().collect();
    lists.sort_unstable_by_key(|(user, _)| *user);
    write_in_order(&store.user_sessions, lists.into_iter().map(|(user, list)| (user.as_bytes().to_vec(), encode(&list))))?;
    store.db.flush().map_err(storage)?;
    Ok(())
}

/// The records of a format-1 backup (sled's trees whole), for a restore into either store: the
/// indexes are left behind and built again from the users.
pub fn records_of_trees(snapshot: super::super::backup::Snapshot) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    let mut audit_head = None;
    let mut later = Vec::new();
    for tree in snapshot.trees {
        let name = String::from_utf8_lossy(&tree.name).into_owned();
        for (k, v) in tree.entries {
            match name.as_str() {
                "meta" => {
                    let key = String::from_utf8(k.clone()).map_err(|_| damaged_key("meta", &k))?;
                    match key.as_str() {
                        META_NEXT_NUMBER => {
                            let n = <[u8; 8]>::try_from(v.as_slice()).map(u64::from_be_bytes).map_err(|_| damaged_key("meta", &k))?;
                            out.insert(0, Record::NextNumber(n));
                        }
                        META_AUDIT_HEAD => {
                            let (seq, hash): (u64, [u8; 32]) = decode("meta", &k, &v)?;
                            audit_head = Some(Record::AuditHead { seq, hash });
                        }
                        k if OWN_META.contains(&k) => {}
                        _ => out.push(Record::Meta { name: key, value: v }),
                    }
                }
                "orgs" => out.push(Record::Org { key: String::from_utf8(k.clone()).map_err(|_| damaged_key("org", &k))?, record: v }),
                "users" => later.push(Record::User { id: Uuid::from_slice(&k).map_err(|_| damaged_key("user", &k))?, record: v }),
                "audit" => {
                    super::each_audit_event(&k, &v, false, &mut |seq, record| {
                        later.push(Record::Audit { seq, record: record.to_vec() });
                        Ok(true)
                    })?;
                }
                "sessions" => later.push(Record::Session { hash: TokenHash::try_from(k.as_slice()).map_err(|_| damaged_key("session", &k))?, record: v }),
                // Indexes, session lists and the trees of older schemas are built again.
                _ => {}
            }
        }
    }
    // In the order of Record's kinds: what a restore reads first.
    let rank = |r: &Record| match r {
        Record::NextNumber(_) => 0,
        Record::Meta { .. } => 1,
        Record::Org { .. } => 2,
        Record::User { .. } => 3,
        Record::Audit { .. } => 4,
        Record::AuditHead { .. } => 5,
        Record::Session { .. } => 6,
    };
    out.extend(later);
    out.extend(audit_head);
    out.sort_by_key(rank);
    Ok(out)
}
