//! Many new users into a sled store in use (a bulk import): all or none, through an undo record.
//!
//! One sled transaction holds every page it rewrites until it ends (about 12 KiB a user: a
//! million-row import would need 12 GiB), so an import is written like a new store's load instead,
//! tree by tree in key order, in small batches, while no commit runs. Before the first write, the
//! store records which user numbers and audit events the import adds and a copy of every index
//! bucket it changes; if the import stops half-way (an error, or the process killed), that record
//! takes it back: at once, or when the store is next opened.

use super::{META_AUDIT_HEAD, SledStore, peek_user, storage};
use crate::domain::audit::AuditDraft;
use crate::domain::user::User;
use crate::error::{Error, Result};
use crate::store::buckets::{self, Bucket};
use crate::store::codec::{decode, encode, encode_audit, encode_user};
use crate::store::names::{FILL, NameBucket, SPLIT_ABOVE};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Present while an import writes: what it adds, to take it back.
pub(super) const META_UNFINISHED_IMPORT: &str = "unfinished_import";
/// The index buckets as they were before the unfinished import, by index tag and bucket key.
const UNDO_TREE: &str = "import_undo";
const NAMES: u8 = b'n';
const EMAILS: u8 = b'e';
const NUMBERS: u8 = b'#';

/// What an import adds beside its index buckets: the users numbered `first..=last`, and the audit
/// events after `audit_head`.
#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    first_number: u64,
    last_number: u64,
    audit_head: Option<(u64, [u8; 32])>,
}

/// An index bucket the import rewrites: its tree tag, key, bytes before (`None`: there was none) and after.
type BucketWrite = (u8, Vec<u8>, Option<sled::IVec>, Vec<u8>);
/// An index bucket as the import writes it: its tree tag, key and bytes.
type NewBucket = (u8, Vec<u8>, Vec<u8>);
/// Key and value pairs to write into one tree.
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

impl SledStore {
    /// Add `users` (new, numbered) and an audit event for each, all or none, durably.
    pub(super) fn import_new_users(&self, users: &[User], audit: &dyn Fn(&User) -> AuditDraft) -> Result<()> {
        if users.is_empty() {
            return Ok(());
        }
        // No commit runs meanwhile: whatever is written from here until the end is this import's.
        let _alone = self.gate.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (journal, buckets) = self.begin_import(users)?;
        match self.write_import(users, audit, &journal, buckets) {
            Ok(()) => {
                self.meta.remove(META_UNFINISHED_IMPORT).map_err(storage)?;
                self.db.drop_tree(UNDO_TREE).map_err(storage)?;
                self.db.flush().map_err(storage)?;
                Ok(())
            }
            Err(e) => {
                if let Err(undo_error) = self.take_back_import() {
                    tracing::error!(error = %undo_error, "an import that failed could not be taken back now; it will be when the store is next opened");
                }
                Err(e)
            }
        }
    }

    /// Check an import and record, durably, how to take it back: what it will add, and the index
    /// buckets it changes as they are now. Nothing else is written yet.
    fn begin_import(&self, users: &[User]) -> Result<(Journal, Vec<NewBucket>)> {
        let buckets = self.planned_buckets(users)?;
        let journal = Journal {
            first_number: users.iter().map(|u| u.number).min().unwrap_or(0),
            last_number: users.iter().map(|u| u.number).max().unwrap_or(0),
            audit_head: self.audit_head_now()?,
        };
        let undo = self.db.open_tree(UNDO_TREE).map_err(storage)?;
        undo.clear().map_err(storage)?;
        let mut saved: Vec<(Vec<u8>, Vec<u8>)> = buckets
            .iter()
            .map(|(tag, key, before, _)| {
                let mut undo_key = vec![*tag];
                undo_key.extend_from_slice(key);
                // A leading 0 marks "there was no bucket", a 1 the bytes that were there.
                let value = match before {
                    Some(bytes) => [&[1u8][..], bytes].concat(),
                    None => vec![0u8],
                };
                (undo_key, value)
            })
            .collect();
        saved.sort_unstable();
        super::write_in_order(&undo, saved.into_iter())?;
        self.meta.insert(META_UNFINISHED_IMPORT, encode(&journal)).map_err(storage)?;
        self.db.flush().map_err(storage)?;
        // The buckets as they were are in the undo record now: only the new ones are kept.
        Ok((journal, buckets.into_iter().map(|(tag, key, _, bytes)| (tag, key, bytes)).collect()))
    }

    /// Every index bucket the import changes, as it will be; refused (before anything is written)
    /// when an id, user name, email or number is taken or comes twice.
    fn planned_buckets(&self, users: &[User]) -> Result<Vec<BucketWrite>> {
        let mut ids: Vec<uuid::Uuid> = users.iter().map(|u| u.id).collect();
        ids.sort_unstable();
        if let Some(pair) = ids.windows(2).find(|p| p[0] == p[1]) {
            return Err(Error::Conflict(format!("the user id {} comes twice; no user was written", pair[0])));
        }
        for id in &ids {
            if self.users.contains_key(id.as_bytes()).map_err(storage)? {
                return Err(Error::Conflict(format!("the user id {id} is already taken; no user was written")));
            }
        }
        drop(ids);
        let mut writes = Vec::new();
        let emails = users.iter().map(|u| (u.email.to_lowercase(), u.id));
        self.plan_hashed(&mut writes, EMAILS, &self.email_index, emails, |e: &String| buckets::email_bucket(e.as_bytes()).to_vec(), |e| {
            format!("the email {e:?} is already used by another user; no user was written")
        })?;
        let numbers = users.iter().map(|u| (u.number, u.id));
        self.plan_hashed(&mut writes, NUMBERS, &self.number_index, numbers, |n: &u64| buckets::number_bucket(*n).to_vec(), |n| {
            format!("the user number {n} is already taken; no user was written")
        })?;
        self.plan_names(&mut writes, users)?;
        Ok(writes)
    }

    /// The buckets of an index looked up by exact key (emails, numbers) with the new entries in them.
    fn plan_hashed<K: Ord + Serialize + serde::de::DeserializeOwned>(
        &self,
        writes: &mut Vec<BucketWrite>,
        tag: u8,
        tree: &sled::Tree,
        entries: impl Iterator<Item = (K, uuid::Uuid)>,
        bucket_of: impl Fn(&K) -> Vec<u8>,
        taken: impl Fn(&K) -> String,
    ) -> Result<()> {
        let mut grouped: BTreeMap<Vec<u8>, Vec<(K, uuid::Uuid)>> = BTreeMap::new();
        for (key, id) in entries {
            grouped.entry(bucket_of(&key)).or_default().push((key, id));
        }
        for (bucket_key, new) in grouped {
            let before = tree.get(&bucket_key).map_err(storage)?;
            let mut bucket: Bucket<K> = match &before {
                Some(bytes) => decode("index bucket", &bucket_key, bytes)?,
                None => Bucket::new(),
            };
            for (key, id) in new {
                if bucket.find(&key).is_some() {
                    return Err(Error::Conflict(taken(&key)));
                }
                bucket.insert(key, id);
            }
            writes.push((tag, bucket_key, before, encode(&bucket)));
        }
        Ok(())
    }

    /// The user-name buckets with the new names in them; a bucket grown past its bound is cut into
    /// buckets of [`FILL`] names, the first keeping its key.
    fn plan_names(&self, writes: &mut Vec<BucketWrite>, users: &[User]) -> Result<()> {
        let mut new: Vec<(String, uuid::Uuid)> = users.iter().map(|u| (u.username.to_lowercase(), u.id)).collect();
        new.sort_unstable();
        if let Some(pair) = new.windows(2).find(|p| p[0].0 == p[1].0) {
            return Err(Error::Conflict(format!("the user name {:?} comes twice; no user was written", pair[0].0)));
        }
        let mut new = new.into_iter().peekable();
        while let Some((first, first_id)) = new.next() {
            let (key, before) = match self.by_name.range::<&[u8], _>(..=first.as_bytes()).next_back().transpose().map_err(storage)? {
                Some((key, bytes)) => (key.to_vec(), Some(bytes)),
                None => (Vec::new(), None),
            };
            let mut bucket: NameBucket = match &before {
                Some(bytes) => decode("user name index bucket", &key, bytes)?,
                None => NameBucket::default(),
            };
            let mut add = |name: String, id| {
                if bucket.entries.find(name.as_str()).is_some() {
                    return Err(Error::Conflict(format!("the user name {name:?} is already taken; no user was written")));
                }
                bucket.entries.insert(name, id);
                Ok(())
            };
            add(first, first_id)?;
            while let Some((name, _)) = new.peek()
                && bucket.upper.as_deref().is_none_or(|upper| name.as_str() < upper)
            {
                let (name, id) = new.next().expect("peeked");
                add(name, id)?;
            }
            if bucket.entries.0.len() <= SPLIT_ABOVE {
                writes.push((NAMES, key, before, encode(&bucket)));
                continue;
            }
            // Cut into buckets of FILL names; each ends where the next starts, the last where this one did.
            let mut chunks: Vec<Vec<(String, uuid::Uuid)>> = Vec::new();
            let mut entries = std::mem::take(&mut bucket.entries.0).into_iter().peekable();
            while entries.peek().is_some() {
                chunks.push(entries.by_ref().take(FILL).collect());
            }
            let keys: Vec<Vec<u8>> =
                std::iter::once(key.clone()).chain(chunks.iter().skip(1).map(|c| c[0].0.clone().into_bytes())).collect();
            let last_upper = bucket.upper.take();
            for (i, chunk) in chunks.into_iter().enumerate() {
                let upper = match keys.get(i + 1) {
                    Some(next) => Some(String::from_utf8(next.clone()).expect("a user name")),
                    None => last_upper.clone(),
                };
                let piece = NameBucket { upper, entries: Bucket(chunk) };
                let before = if i == 0 { before.clone() } else { None };
                writes.push((NAMES, keys[i].clone(), before, encode(&piece)));
            }
        }
        Ok(())
    }

    fn audit_head_now(&self) -> Result<Option<(u64, [u8; 32])>> {
        match self.meta.get(META_AUDIT_HEAD).map_err(storage)? {
            Some(bytes) => decode("meta", META_AUDIT_HEAD.as_bytes(), &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The writes of an import, tree by tree, each in key order.
    fn write_import(&self, users: &[User], audit: &dyn Fn(&User) -> AuditDraft, journal: &Journal, buckets: Vec<NewBucket>) -> Result<()> {
        let mut by_id: Vec<&User> = users.iter().collect();
        by_id.sort_unstable_by_key(|u| u.id);
        super::write_in_order(&self.users, by_id.into_iter().map(|u| (u.id.as_bytes().to_vec(), encode_user(u, None))))?;
        let mut head = journal.audit_head;
        let keyed = self.meta.contains_key(crate::store::META_AUDIT_KEYED_FROM).map_err(storage)?;
        let linker = crate::store::linker_for_new_events(keyed, self.chain_key.get())?;
        let mut events = users.iter().map(|u| {
            let draft = audit(u);
            let (seq, prev) = head.map_or((1, [0u8; 32]), |(s, h)| (s + 1, h));
            let bytes = encode_audit(seq, prev, &draft);
            head = Some((seq, linker.hash_of(seq, &prev, &draft)));
            (seq, bytes)
        });
        // In bundles (see AUDIT_BUNDLE), each keyed by its first and last event.
        let bundles = std::iter::from_fn(|| {
            let bundle: Vec<(u64, Vec<u8>)> = events.by_ref().take(super::AUDIT_BUNDLE).collect();
            let (first, last) = (bundle.first()?.0, bundle.last()?.0);
            let stored: Vec<Vec<u8>> = bundle.into_iter().map(|(_, bytes)| bytes).collect();
            Some((super::audit_bundle_key(first, last), encode(&stored)))
        });
        super::write_in_order(&self.audit, bundles)?;
        let mut by_tree: BTreeMap<u8, Pairs> = BTreeMap::new();
        for (tag, key, bytes) in buckets {
            by_tree.entry(tag).or_default().push((key, bytes));
        }
        for (tag, mut pairs) in by_tree {
            pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            super::write_in_order(self.index_tree(tag)?, pairs.into_iter())?;
        }
        if let Some(h) = &head {
            self.meta.insert(META_AUDIT_HEAD, encode(h)).map_err(storage)?;
        }
        self.db.flush().map_err(storage)?;
        Ok(())
    }

    fn index_tree(&self, tag: u8) -> Result<&sled::Tree> {
        match tag {
            NAMES => Ok(&self.by_name),
            EMAILS => Ok(&self.email_index),
            NUMBERS => Ok(&self.number_index),
            _ => Err(Error::Corrupt(format!("the undo record of an unfinished import names an unknown index ({tag})"))),
        }
    }

    /// Take back an import that did not finish, if there is one: its users, their audit events and
    /// their index entries go, the buckets it changed are put back. Done again from the start if
    /// it stops, so it may stop anywhere. Returns whether there was one.
    pub(super) fn take_back_import(&self) -> Result<bool> {
        let Some(bytes) = self.meta.get(META_UNFINISHED_IMPORT).map_err(storage)? else {
            return Ok(false);
        };
        let journal: Journal = decode("meta", META_UNFINISHED_IMPORT.as_bytes(), &bytes)?;
        tracing::warn!(
            first = journal.first_number,
            last = journal.last_number,
            "taking back an import of users that did not finish"
        );
        let undo = self.db.open_tree(UNDO_TREE).map_err(storage)?;
        for item in undo.iter() {
            let (key, value) = item.map_err(storage)?;
            let damaged = || Error::Corrupt("the undo record of an unfinished import is damaged; restore a backup".to_string());
            let (&tag, bucket_key) = key.split_first().ok_or_else(damaged)?;
            let tree = self.index_tree(tag)?;
            match value.split_first() {
                Some((0, _)) => tree.remove(bucket_key).map(|_| ()).map_err(storage)?,
                Some((1, old)) => tree.insert(bucket_key, old).map(|_| ()).map_err(storage)?,
                _ => return Err(damaged()),
            }
        }
        let mut batch = sled::Batch::default();
        for item in self.users.iter() {
            let (key, bytes) = item.map_err(storage)?;
            let number = match peek_user(&key, &bytes) {
                Some(head) => head.number,
                None => super::decode_user(&key, &bytes)?.number,
            };
            if (journal.first_number..=journal.last_number).contains(&number) {
                batch.remove(key);
            }
        }
        self.users.apply_batch(batch).map_err(storage)?;
        let after = journal.audit_head.map_or(1, |(seq, _)| seq + 1);
        let mut batch = sled::Batch::default();
        for item in self.audit.range(after.to_be_bytes()..) {
            batch.remove(item.map_err(storage)?.0);
        }
        self.audit.apply_batch(batch).map_err(storage)?;
        match &journal.audit_head {
            Some(h) => self.meta.insert(META_AUDIT_HEAD, encode(h)).map(|_| ()).map_err(storage)?,
            None => self.meta.remove(META_AUDIT_HEAD).map(|_| ()).map_err(storage)?,
        }
        self.db.flush().map_err(storage)?;
        self.meta.remove(META_UNFINISHED_IMPORT).map_err(storage)?;
        self.db.drop_tree(UNDO_TREE).map_err(storage)?;
        self.db.flush().map_err(storage)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit::Outcome;
    use crate::domain::mfa::MfaState;
    use crate::domain::user::{Org, Status};
    use crate::store::{Change, Store, UserWrite};

    fn user(name: &str, number: u64) -> User {
        User {
            id: uuid::Uuid::new_v4(),
            number,
            username: name.into(),
            email: format!("{name}@example.org"),
            display_name: name.into(),
            org: "acme".into(),
            role: crate::domain::role::Role::Member,
            status: Status::Active,
            password_hash: None,
            mfa: MfaState::NotEnrolled,
            lockout: Default::default(),
            recovery_codes: Vec::new(),
            created_at: 0,
            last_login_at: None,
            mfa_enrolled_at: None,
            mfa_last_used_at: None,
            mfa_last_client: None,
            mfa_reset_at: None,
            version: 1,
        }
    }

    fn event(u: &User) -> AuditDraft {
        AuditDraft {
            at: 0,
            actor: "console:test".into(),
            action: "user.add".into(),
            target_id: Some(u.id),
            target: Some(u.username.clone()),
            org: Some(u.org.clone()),
            outcome: Outcome::Success,
            reason: None,
            detail: None,
            source: "cli".into(),
        }
    }

    /// A store with some users added one commit at a time, as a site has before its import.
    fn store_with_users(dir: &std::path::Path) -> (SledStore, Vec<User>) {
        let store = SledStore::create(dir).unwrap();
        let org = Org { key: "acme".into(), name: "Acme".into(), mfa_enforced: false, created_at: 0 };
        store.commit(&[Change { orgs: vec![org], ..Change::default() }]).unwrap();
        let before: Vec<User> = (0..300).map(|i| user(&format!("m{i:03}"), i + 1)).collect();
        for u in &before {
            let write = UserWrite { user: u.clone(), expected_version: None };
            store.commit(&[Change { users: vec![write], audit: vec![event(u)], ..Change::default() }]).unwrap();
        }
        (store, before)
    }

    fn names(store: &SledStore) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut all = Vec::new();
        for tree in [&store.by_name, &store.email_index, &store.number_index, &store.users, &store.audit, &store.meta] {
            all.extend(tree.iter().map(|item| {
                let (k, v) = item.unwrap();
                (k.to_vec(), v.to_vec())
            }));
        }
        all
    }

    /// Names before, between and after the stored ones, many into one bucket: every one is found
    /// through the indexes, every bucket covers its range, and each user has its audit event.
    #[test]
    fn an_import_into_a_store_in_use_is_found_through_every_index() {
        let dir = tempfile::tempdir().unwrap();
        let (store, before) = store_with_users(dir.path());
        let head = store.audit_head_now().unwrap().unwrap().0;
        let new: Vec<User> = (0..5_000u64).map(|i| user(&format!("{}{:04}", ["a", "m1", "z"][(i % 3) as usize], i), 1_000 + i)).collect();
        store.add_users(&new, &event).unwrap();
        assert_eq!(store.check_indexes().unwrap(), Vec::<String>::new());
        for u in before.iter().chain(&new) {
            assert_eq!(store.user_id_by_name(&u.username).unwrap(), Some(u.id), "{}", u.username);
            assert_eq!(store.user_id_by_email(&u.email).unwrap(), Some(u.id));
            assert_eq!(store.user_id_by_number(u.number).unwrap(), Some(u.id));
        }
        assert_eq!(store.audit_head_now().unwrap().unwrap().0, head + 5_000);
        // The import's events are stored in bundles, and read as one event each, in order both
        // ways, with their users; the commits' events before them stay one to an entry.
        assert_eq!(store.audit.len() as u64, head + 5_000u64.div_ceil(super::super::AUDIT_BUNDLE as u64));
        let mut seqs = Vec::new();
        store.scan_audit(false, &mut |e| {
            seqs.push(e.seq);
            true
        })
        .unwrap();
        assert_eq!(seqs, (1..=head + 5_000).collect::<Vec<_>>());
        let mut newest = Vec::new();
        store.scan_audit(true, &mut |e| {
            newest.push((e.seq, e.draft.target));
            newest.len() < 100
        })
        .unwrap();
        let expected: Vec<(u64, Option<String>)> = (0..100).map(|i| (head + 5_000 - i, Some(new[4_999 - i as usize].username.clone()))).collect();
        assert_eq!(newest, expected);
        assert!(store.meta.get(META_UNFINISHED_IMPORT).unwrap().is_none());
        assert!(!store.db.tree_names().iter().any(|n| n.as_ref() == UNDO_TREE.as_bytes()), "no undo tree is left");
        // A later commit still places names among the buckets the import wrote.
        let late = user("m1zz", 9_999);
        store.commit(&[Change { users: vec![UserWrite { user: late.clone(), expected_version: None }], ..Change::default() }]).unwrap();
        assert_eq!(store.user_id_by_name("m1zz").unwrap(), Some(late.id));
        assert_eq!(store.check_indexes().unwrap(), Vec::<String>::new());
    }

    /// A taken name, email or number, or a name twice, refuses the whole import with nothing written.
    #[test]
    fn a_refused_import_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (store, before) = store_with_users(dir.path());
        let all_before = names(&store);
        let fresh = |i: u64| user(&format!("new{i}"), 2_000 + i);
        let mut taken_name = fresh(1);
        taken_name.username = "M007".into();
        let mut taken_email = fresh(2);
        taken_email.email = before[9].email.to_uppercase();
        let mut taken_number = fresh(3);
        taken_number.number = before[4].number;
        let twice = fresh(4);
        for (bad, what) in [(taken_name, "user name"), (taken_email, "email"), (taken_number, "number"), (twice.clone(), "comes twice")] {
            let mut users: Vec<User> = (10..200).map(fresh).collect();
            users.push(bad);
            if what == "comes twice" {
                users.push(User { id: uuid::Uuid::new_v4(), number: 9_000, email: "other@example.org".into(), ..twice.clone() });
            }
            let refused = store.add_users(&users, &event);
            assert!(matches!(&refused, Err(Error::Conflict(m)) if m.contains(what) && m.contains("no user was written")), "{what}: {refused:?}");
            assert_eq!(names(&store), all_before, "{what}: nothing changed");
        }
    }

    /// An import stopped after any of its writes (the process killed) is taken back when the store
    /// is next opened: the store is as before, and the same import then succeeds.
    #[test]
    fn an_import_stopped_half_way_is_taken_back_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let new: Vec<User> = (0..2_000u64).map(|i| user(&format!("k{i:04}"), 500 + i)).collect();
        let all_before = {
            let (store, _) = store_with_users(dir.path());
            let all_before = names(&store);
            let (journal, buckets) = store.begin_import(&new).unwrap();
            // Every write done, but the record of an unfinished import still there: as if killed
            // just before the end. Each write before it is a subset of this one.
            store.write_import(&new, &event, &journal, buckets).unwrap();
            store.db.flush().unwrap();
            all_before
        };
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(names(&store), all_before, "the store is as it was before the import");
        assert_eq!(store.check_indexes().unwrap(), Vec::<String>::new());
        assert!(!store.db.tree_names().iter().any(|n| n.as_ref() == UNDO_TREE.as_bytes()));
        store.add_users(&new, &event).unwrap();
        assert_eq!(store.user_id_by_name("k1999").unwrap(), Some(new[1_999].id));
        assert_eq!(store.check_indexes().unwrap(), Vec::<String>::new());
    }
}
