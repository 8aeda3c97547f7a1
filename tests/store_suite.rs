//! One suite, two stores: every case runs against sled and against PostgreSQL, each in a fresh
//! store (a temporary directory, or a schema of its own that is dropped afterwards).
//!
//! PostgreSQL is found through `MFADMIN_TEST_PG_URL`, or the `PG*` variables (`PGHOST`, `PGPORT`,
//! `PGUSER`, `PGPASSWORD`, `PGDATABASE`) that `pg_virtualenv` sets; `tests/pg/run.sh` runs the suite
//! in a throw-away cluster. Without either, the PostgreSQL cases say they were skipped, unless
//! `MFADMIN_TEST_PG_REQUIRED=1` (as in CI) makes that a failure.

use mfadmin::auth::seal::Sealer;
use mfadmin::config::Config;
use mfadmin::domain::audit::{AuditDraft, AuditEvent, ChainCheck, Linker, Outcome};
use mfadmin::domain::mfa::{Lockout, MfaState};
use mfadmin::domain::role::Role;
use mfadmin::domain::user::{Org, Status, User};
use mfadmin::error::Error;
use mfadmin::service::{Actor, NewUser, ResetOutcome, Service};
use mfadmin::store::postgres::{PgOptions, PgStore};
use mfadmin::store::sled::SledStore;
use mfadmin::store::{Change, Session, SessionKind, Store, UserWrite};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use uuid::Uuid;

#[path = "pg_support/mod.rs"]
mod pg_support;
use pg_support::pg_settings;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Sled,
    Postgres,
}

/// A fresh, empty store, removed when dropped.
struct Fresh {
    store: Arc<dyn Store>,
    /// Opens another handle on the same store, as a second node would (sled: the same one, since a
    /// sled store belongs to one process).
    another: Box<dyn Fn() -> Arc<dyn Store>>,
    _place: Place,
}

enum Place {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    Schema { admin: Box<postgres::Config>, name: String },
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Place::Schema { admin, name } = self
            && let Ok(mut client) = admin.connect(postgres::NoTls)
        {
            let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"));
        }
    }
}


/// A fresh store of `kind`, or `None` (after saying so) when PostgreSQL is not available.
fn fresh(kind: Kind, test: &str) -> Option<Fresh> {
    match kind {
        Kind::Sled => {
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<dyn Store> = Arc::new(SledStore::create(&dir.path().join("store")).unwrap());
            let same = store.clone();
            Some(Fresh { store, another: Box::new(move || same.clone()), _place: Place::Dir(dir) })
        }
        Kind::Postgres => {
            let Some(admin) = pg_settings() else {
                if std::env::var("MFADMIN_TEST_PG_REQUIRED").is_ok_and(|v| v == "1") {
                    panic!("MFADMIN_TEST_PG_REQUIRED=1 but neither MFADMIN_TEST_PG_URL nor PGHOST is set");
                }
                eprintln!("skipped {test} on PostgreSQL: set MFADMIN_TEST_PG_URL or run tests/pg/run.sh");
                return None;
            };
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let name = format!("mfadmin_test_{}_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed), test.replace(|c: char| !c.is_ascii_alphanumeric(), "_"));
            let mut client = admin.connect(postgres::NoTls).expect("the test database answers");
            client.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}")).unwrap();
            let mut settings = admin.clone();
            settings.options(&format!("-c search_path={name}"));
            let store: Arc<dyn Store> = Arc::new(PgStore::create(PgOptions::new(settings.clone(), 8)).unwrap());
            let another = move || -> Arc<dyn Store> { Arc::new(PgStore::open(PgOptions::new(settings.clone(), 8)).unwrap()) };
            Some(Fresh { store, another: Box::new(another), _place: Place::Schema { admin: Box::new(admin), name } })
        }
    }
}

/// Each case as two tests, `NAME::sled` and `NAME::postgres`.
macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[test]
            fn sled() {
                if let Some(f) = super::fresh(super::Kind::Sled, stringify!($case)) {
                    super::$case(f);
                }
            }
            #[test]
            fn postgres() {
                if let Some(f) = super::fresh(super::Kind::Postgres, stringify!($case)) {
                    super::$case(f);
                }
            }
        }
    )*};
}

on_both_stores!(
    a_write_over_a_newer_record_is_refused,
    many_updates_in_one_commit_are_all_or_nothing,
    names_emails_and_numbers_are_unique_ignoring_case,
    a_name_passes_from_one_user_to_another_in_one_change,
    sessions_are_kept_found_and_revoked,
    the_audit_chain_links_every_event_in_commit_order,
    orgs_and_meta_are_kept,
    scans_and_counts_see_every_user,
    a_bulk_load_matches_commits_and_refuses_what_they_would,
    user_numbers_are_never_handed_out_twice,
    two_threads_writing_one_user_from_the_same_version_one_wins,
    the_audit_chain_stays_whole_under_commits_from_two_nodes,
    a_name_wanted_by_many_at_once_goes_to_one,
    another_node_catches_up_from_a_watermark,
    the_service_resets_and_verifies_on_the_store,
    a_backup_restores_into_either_store_with_everything,
    a_consistent_plain_rewrite_of_a_keyed_chain_is_reported,
    removing_the_keyed_marker_with_the_rewrite_is_reported,
    a_plain_chain_is_checked_then_keyed_from_its_next_event,
    a_broken_plain_chain_is_not_keyed,
    expired_sessions_are_deleted_in_bounded_passes_and_left_out_of_backups,
);

fn acme() -> Org {
    Org { key: "acme".into(), name: "Acme".into(), mfa_enforced: false, created_at: 0 }
}

fn named(name: &str, number: u64) -> User {
    User {
        id: Uuid::new_v4(),
        number,
        username: name.into(),
        email: format!("{name}@Example.org"),
        display_name: name.to_uppercase(),
        org: "acme".into(),
        role: Role::Member,
        status: Status::Active,
        password_hash: None,
        mfa: MfaState::NotEnrolled,
        lockout: Lockout::default(),
        recovery_codes: vec![[7; 32]],
        created_at: 1_800_000_000,
        last_login_at: None,
        mfa_enrolled_at: None,
        mfa_last_used_at: None,
        mfa_last_client: None,
        mfa_reset_at: None,
        version: 1,
    }
}

fn add(store: &dyn Store, users: &[User]) -> mfadmin::error::Result<()> {
    let users = users.iter().map(|u| UserWrite { user: u.clone(), expected_version: None }).collect();
    store.commit(&[Change { users, orgs: vec![acme()], ..Change::default() }])
}

/// `user` written over `expected`, carrying the next version.
fn write(store: &dyn Store, user: &User, expected: u64) -> mfadmin::error::Result<()> {
    let mut user = user.clone();
    user.version = expected + 1;
    store.commit(&[Change { users: vec![UserWrite { user, expected_version: Some(expected) }], ..Change::default() }])
}

fn draft(n: usize, source: &str) -> AuditDraft {
    AuditDraft {
        at: 1_800_000_000 + n as i64,
        actor: "console:root".into(),
        action: "mfa.reset".into(),
        target_id: Some(Uuid::new_v4()),
        target: Some(format!("user{n}")),
        org: Some("acme".into()),
        outcome: Outcome::Success,
        reason: Some("lost phone".into()),
        detail: None,
        source: source.into(),
    }
}

/// Walk the chain: every event in order, linked to the one before, ending at the recorded head.
fn verify_chain(store: &dyn Store) -> u64 {
    let mut check = ChainCheck::new();
    store.scan_audit(false, &mut |e| {
        check.step(&e).unwrap_or_else(|b| panic!("the chain breaks at {}: {}", b.seq, b.why));
        true
    })
    .unwrap();
    check.finish(store.audit_head().unwrap()).unwrap_or_else(|b| panic!("the chain breaks at {}: {}", b.seq, b.why))
}

fn a_write_over_a_newer_record_is_refused(f: Fresh) {
    let store = &*f.store;
    let u = named("alice", 1);
    add(store, std::slice::from_ref(&u)).unwrap();
    let mut next = u.clone();
    next.recovery_codes.clear();
    write(store, &next, 1).unwrap();
    next.version = 2;
    assert_eq!(store.get_user(u.id).unwrap().unwrap(), next);
    // Both computed from version 1, which is gone: the same write, and a rename.
    let mut stale = u.clone();
    stale.mfa_reset_at = Some(9);
    assert!(matches!(write(store, &stale, 1), Err(Error::WriteConflict)));
    stale.username = "alice2".into();
    assert!(matches!(write(store, &stale, 1), Err(Error::WriteConflict)));
    assert!(matches!(write(store, &stale, 3), Err(Error::WriteConflict)), "a version from the future is no match either");
    assert!(matches!(write(store, &named("nobody", 9), 1), Err(Error::WriteConflict)), "nor is a user that is not there");
    assert_eq!(store.get_user(u.id).unwrap().unwrap(), next, "the record is untouched");
    write(store, &stale, 2).unwrap();
    assert_eq!(store.get_user(u.id).unwrap().unwrap().version, 3);
    assert_eq!(store.user_id_by_name("ALICE2").unwrap(), Some(u.id));
    assert_eq!(store.user_id_by_name("alice").unwrap(), None);
    // A new user under an id that is taken is refused too.
    let mut twin = named("twin", 2);
    twin.id = u.id;
    assert!(matches!(add(store, &[twin]), Err(Error::Conflict(m)) if m.contains("already exists")));
    assert_eq!(store.check_indexes().unwrap(), Vec::<String>::new());
}

/// Many updates in one commit (as a bulk reset makes): all are written, or — when one of them was
/// computed from a version that moved on, or takes another user's name — none.
fn many_updates_in_one_commit_are_all_or_nothing(f: Fresh) {
    let store = &*f.store;
    let users: Vec<User> = (0..6).map(|i| named(&format!("u{i}"), i + 1)).collect();
    add(store, &users).unwrap();
    let updates = |users: &[User], expected: &[u64]| -> Vec<UserWrite> {
        users
            .iter()
            .zip(expected)
            .map(|(u, &e)| {
                let mut next = u.clone();
                next.mfa_reset_at = Some(7);
                next.version = e + 1;
                UserWrite { user: next, expected_version: Some(e) }
            })
            .collect()
    };
    let commit = |writes: Vec<UserWrite>| store.commit(&[Change { users: writes, revoke_sessions_of: users.iter().map(|u| u.id).collect(), ..Change::default() }]);
    // One stale version among six: nothing is written.
    assert!(matches!(commit(updates(&users, &[1, 1, 1, 2, 1, 1])), Err(Error::WriteConflict)));
    // One rename onto a taken name among plain updates: nothing is written.
    let mut renamed = updates(&users, &[1; 6]);
    renamed[4].user.username = "u0".into();
    assert!(matches!(commit(renamed), Err(Error::Conflict(_))));
    for u in &users {
        assert_eq!(store.get_user(u.id).unwrap().unwrap(), *u, "untouched");
    }
    // A rename onto a free name among plain updates, and the same user twice: all written.
    let mut writes = updates(&users, &[1; 6]);
    writes[5].user.username = "u5-renamed".into();
    let mut again = writes[0].user.clone();
    again.display_name = "twice".into();
    again.version = 3;
    writes.push(UserWrite { user: again, expected_version: Some(2) });
    commit(writes).unwrap();
    let read = store.get_users(&users.iter().map(|u| u.id).collect::<Vec<_>>()).unwrap();
    assert!(read.iter().all(|u| u.as_ref().unwrap().mfa_reset_at == Some(7)));
    assert_eq!(read[0].as_ref().unwrap().version, 3);
    assert_eq!(read[0].as_ref().unwrap().display_name, "twice");
    assert_eq!(store.user_id_by_name("u5-renamed").unwrap(), Some(users[5].id));
    assert_eq!(store.get_users(&[Uuid::new_v4()]).unwrap(), vec![None]);
    assert_eq!(store.check_indexes().unwrap(), Vec::<String>::new());
}

fn names_emails_and_numbers_are_unique_ignoring_case(f: Fresh) {
    let store = &*f.store;
    let users: Vec<User> = (1..=50).map(|n| named(&format!("User{n}"), n)).collect();
    add(store, &users).unwrap();
    for u in &users {
        assert_eq!(store.user_id_by_name(&u.username.to_lowercase()).unwrap(), Some(u.id));
        assert_eq!(store.user_id_by_email(&u.email.to_uppercase()).unwrap(), Some(u.id));
        assert_eq!(store.user_id_by_number(u.number).unwrap(), Some(u.id));
    }
    let refused = |u: User, what: &str| {
        let result = add(store, &[named("fine", 900), u]);
        assert!(matches!(&result, Err(Error::Conflict(m)) if m.contains(what)), "{what}: {result:?}");
        assert_eq!(store.user_id_by_name("fine").unwrap(), None, "a refused commit writes nothing");
    };
    refused(named("USER7", 1000), "user name \"USER7\" is already taken");
    let mut email = named("other", 1001);
    email.email = "user8@EXAMPLE.org".into();
    refused(email, "already used by another user");
    refused(named("other", 9), "user number 9 is already taken");
    // A rename onto a taken name, from the current version.
    let mut rename = users[0].clone();
    rename.username = "user2".into();
    assert!(matches!(write(store, &rename, 1), Err(Error::Conflict(m)) if m.contains("already taken")));
    assert_eq!(store.user_id_by_name("user1").unwrap(), Some(users[0].id));
    // Email and number moved: the old ones are free.
    let mut moved = users[5].clone();
    moved.email = "new@example.org".into();
    moved.number = 999;
    write(store, &moved, 1).unwrap();
    assert_eq!(store.user_id_by_email("NEW@example.org").unwrap(), Some(moved.id));
    assert_eq!((store.user_id_by_email(&users[5].email).unwrap(), store.user_id_by_number(6).unwrap()), (None, None));
    assert_eq!(store.user_id_by_number(999).unwrap(), Some(moved.id));
    assert_eq!(store.user_count_bound().unwrap(), 999);
    add(store, &[named("taker", 6)]).unwrap();
    assert_eq!(store.check_indexes().unwrap(), Vec::<String>::new());
}

fn a_name_passes_from_one_user_to_another_in_one_change(f: Fresh) {
    let store = &*f.store;
    let (a, b) = (named("a", 1), named("b", 2));
    add(store, &[a.clone(), b.clone()]).unwrap();
    let renamed = |u: &User, to: &str| {
        let mut u = u.clone();
        u.username = to.into();
        u.version = 2;
        UserWrite { user: u, expected_version: Some(1) }
    };
    // a gives up its name first, then b takes it: as in sled, in the order written.
    store.commit(&[Change { users: vec![renamed(&a, "c"), renamed(&b, "a")], ..Change::default() }]).unwrap();
    assert_eq!(store.user_id_by_name("a").unwrap(), Some(b.id));
    assert_eq!(store.user_id_by_name("c").unwrap(), Some(a.id));
    assert_eq!(store.user_id_by_name("b").unwrap(), None);
    assert_eq!(store.check_indexes().unwrap(), Vec::<String>::new());
}

fn sessions_are_kept_found_and_revoked(f: Fresh) {
    let store = &*f.store;
    let session = |user_id, created_at, expires_at| Session::new(user_id, SessionKind::Session, created_at, expires_at, "test");
    let put = |hash: u8, s: Session| Change { sessions_put: vec![([hash; 32], s)], ..Change::default() };
    let ids: Vec<Uuid> = (0..20).map(|_| Uuid::new_v4()).collect();
    for (n, &id) in ids.iter().take(10).enumerate() {
        store.commit(&[put(n as u8, session(id, 0, 100))]).unwrap();
    }
    let key = Session::new(ids[0], SessionKind::ApiKey { name: "ci".into(), role: Role::Helpdesk }, 0, 1000, "test");
    store.commit(&[put(50, key.clone())]).unwrap();
    assert_eq!(store.get_session(&[50; 32]).unwrap(), Some(key));
    assert_eq!(store.sessions_of(ids[0]).unwrap().len(), 2);
    store.commit(&[Change { sessions_delete: vec![[50; 32]], ..Change::default() }]).unwrap();
    assert_eq!(store.get_session(&[50; 32]).unwrap(), None);
    assert_eq!(store.sessions_of(ids[0]).unwrap(), vec![([0; 32], session(ids[0], 0, 100))]);
    // A commit that revokes many users' sessions ends those from before and one it gives itself.
    let mut changes = vec![put(90, session(ids[12], 0, 100))];
    changes.extend(ids[..8].iter().chain(&ids[12..13]).map(|&id| Change { revoke_sessions_of: vec![id], ..Change::default() }));
    store.commit(&changes).unwrap();
    for (n, &id) in ids.iter().take(10).enumerate() {
        assert_eq!(store.sessions_of(id).unwrap().is_empty(), n < 8, "user {n}");
        assert_eq!(store.get_session(&[n as u8; 32]).unwrap().is_none(), n < 8, "session {n}");
    }
    assert_eq!(store.get_session(&[90; 32]).unwrap(), None);
    // A session that has expired by the time the next one starts is no longer one of the user's.
    store.commit(&[put(91, session(ids[15], 200, 300))]).unwrap();
    assert_eq!(store.sessions_of(ids[15]).unwrap().iter().map(|(h, _)| h[0]).collect::<Vec<_>>(), vec![91]);
}

fn the_audit_chain_links_every_event_in_commit_order(f: Fresh) {
    let store = &*f.store;
    assert_eq!(store.audit_head().unwrap(), None);
    assert_eq!(verify_chain(store), 0);
    let mut n = 0;
    for batch in [1usize, 3, 0, 7, 2] {
        let audit = (0..batch).map(|_| {
            n += 1;
            draft(n, "test")
        });
        store.commit(&[Change { audit: audit.collect(), ..Change::default() }]).unwrap();
    }
    assert_eq!(verify_chain(store), 13);
    let mut newest = Vec::new();
    store.scan_audit(true, &mut |e| {
        newest.push(e.seq);
        newest.len() < 4
    })
    .unwrap();
    assert_eq!(newest, vec![13, 12, 11, 10]);
    let mut oldest = Vec::new();
    store.scan_audit(false, &mut |e| {
        oldest.push(e.draft.target.clone().unwrap());
        true
    })
    .unwrap();
    assert_eq!(oldest, (1..=13).map(|n| format!("user{n}")).collect::<Vec<_>>(), "events are in the order they were committed");
    // A commit refused part-way records no event.
    let u = named("x", 1);
    add(store, std::slice::from_ref(&u)).unwrap();
    let refused = Change { users: vec![UserWrite { user: u.clone(), expected_version: Some(7) }], audit: vec![draft(99, "test")], ..Change::default() };
    assert!(matches!(store.commit(&[refused]), Err(Error::WriteConflict)));
    assert_eq!(verify_chain(store), 13);
}

fn orgs_and_meta_are_kept(f: Fresh) {
    let store = &*f.store;
    assert_eq!(store.get_org("acme").unwrap(), None);
    let globex = Org { key: "globex".into(), name: "Globex".into(), mfa_enforced: true, created_at: 5 };
    store.commit(&[Change { orgs: vec![globex.clone(), acme()], meta_put: vec![("key_check", vec![1, 2, 3])], ..Change::default() }]).unwrap();
    assert_eq!(store.orgs().unwrap(), vec![acme(), globex.clone()]);
    let relaxed = Org { mfa_enforced: false, ..globex };
    store.commit(&[Change { orgs: vec![relaxed.clone()], meta_put: vec![("key_check", vec![4])], ..Change::default() }]).unwrap();
    assert_eq!(store.get_org("globex").unwrap(), Some(relaxed));
    assert_eq!(store.get_meta("key_check").unwrap(), Some(vec![4]));
    assert_eq!(store.get_meta("nothing").unwrap(), None);
    // A user in an org that does not exist is named by the check.
    let mut lost = named("lost", 1);
    lost.org = "initech".into();
    store.commit(&[Change { users: vec![UserWrite { user: lost, expected_version: None }], ..Change::default() }]).unwrap();
    let problems = store.check_indexes().unwrap();
    assert!(problems.iter().any(|p| p.contains("which does not exist")), "{problems:?}");
}

fn scans_and_counts_see_every_user(f: Fresh) {
    let store = &*f.store;
    // More than one batch of a PostgreSQL scan, added in a scattered name order.
    let users: Vec<User> = (1..=4500).map(|n| named(&format!("u{:05}", (n * 7919) % 10007), n)).collect();
    for chunk in users.chunks(1000) {
        add(store, chunk).unwrap();
    }
    assert_eq!(store.user_count().unwrap(), 4500);
    assert_eq!(store.user_count_bound().unwrap(), 4500);
    let mut ids = Vec::new();
    store.scan_ids_by_name(&mut |id| {
        ids.push(id);
        true
    })
    .unwrap();
    let mut by_name = users.clone();
    by_name.sort_by(|a, b| a.username.cmp(&b.username));
    assert_eq!(ids, by_name.iter().map(|u| u.id).collect::<Vec<_>>());
    let mut seen = 0;
    store.scan_users(&mut |u| {
        seen += 1;
        assert_eq!(u.version, 1);
        seen < 3000
    })
    .unwrap();
    assert_eq!(seen, 3000, "a scan stops when told");
    let mut asked: Vec<String> = users.iter().rev().take(100).map(|u| u.username.to_uppercase()).collect();
    asked.extend(["", "nobody", "zzz"].map(String::from));
    let asked: Vec<&str> = asked.iter().map(String::as_str).collect();
    let one_by_one: Vec<Option<Uuid>> = asked.iter().map(|n| store.user_id_by_name(n).unwrap()).collect();
    assert_eq!(store.user_ids_by_name(&asked).unwrap(), one_by_one);
    assert_eq!(one_by_one.iter().flatten().count(), 100);
    assert_eq!(store.check_indexes().unwrap(), Vec::<String>::new());
    // The room it takes: the records of 4,500 users (over 100 bytes each), within what is on disk.
    let space = store.space().unwrap().expect("both stores tell the room they take");
    assert!(space.records > 4500 * 100 && space.records <= space.on_disk, "{space:?}");
}

fn a_bulk_load_matches_commits_and_refuses_what_they_would(f: Fresh) {
    let store = &*f.store;
    let owner = named("owner", 1);
    add(store, std::slice::from_ref(&owner)).unwrap();
    let users: Vec<User> = (2..=3000).map(|n| named(&format!("u{n}"), n)).collect();
    let mut email = named("y", 5001);
    email.email = "OWNER@example.org".into();
    for (what, clash) in [("user name", named("OWNER", 5000)), ("number", named("x", 1)), ("email", email)] {
        let mut with_clash = users.clone();
        with_clash.push(clash);
        let err = store.load_new_users(with_clash).unwrap_err();
        assert!(matches!(&err, Error::Conflict(m) if m.contains(what) && m.contains("no user was written")), "{err}");
        assert_eq!(store.user_count().unwrap(), 1, "nothing was written");
    }
    let twice = vec![named("same", 6000), named("same", 6001)];
    assert!(matches!(store.load_new_users(twice), Err(Error::Conflict(_))), "a name twice in the load is refused");
    store.load_new_users(users.clone()).unwrap();
    assert_eq!(store.check_indexes().unwrap(), Vec::<String>::new());
    for u in users.iter().chain([&owner]) {
        assert_eq!(store.user_id_by_email(&u.email).unwrap(), Some(u.id), "{}", u.email);
        assert_eq!(store.user_id_by_number(u.number).unwrap(), Some(u.id));
    }
    assert_eq!(store.get_user(users[10].id).unwrap().unwrap(), users[10]);
    assert_eq!(store.user_count_bound().unwrap(), 3000);
    write(store, &users[0], 1).unwrap();
}

fn user_numbers_are_never_handed_out_twice(f: Fresh) {
    let first = f.store.allocate_numbers(3).unwrap();
    assert_eq!(f.store.allocate_numbers(1).unwrap(), first + 3);
    let nodes = [f.store.clone(), (f.another)()];
    let mut handed: Vec<u64> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let store = nodes[t % 2].clone();
                s.spawn(move || (0..50).flat_map(|_| {
                    let start = store.allocate_numbers(2).unwrap();
                    [start, start + 1]
                }).collect::<Vec<u64>>())
            })
            .collect();
        threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
    });
    handed.sort_unstable();
    let before = handed.len();
    handed.dedup();
    assert_eq!(handed.len(), before, "no number was handed out twice");
    assert!(handed[0] > first + 3);
}

fn two_threads_writing_one_user_from_the_same_version_one_wins(f: Fresh) {
    let nodes = [f.store.clone(), (f.another)()];
    let u = named("contested", 1);
    add(&*nodes[0], std::slice::from_ref(&u)).unwrap();
    for round in 1..=20u64 {
        let barrier = Barrier::new(2);
        let results: Vec<mfadmin::error::Result<()>> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..2)
                .map(|t| {
                    let (store, barrier) = (nodes[t].clone(), &barrier);
                    let mut mine = u.clone();
                    mine.display_name = format!("round {round} thread {t}");
                    s.spawn(move || {
                        barrier.wait();
                        write(&*store, &mine, round)
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let won: Vec<usize> = (0..2).filter(|&t| results[t].is_ok()).collect();
        assert_eq!(won.len(), 1, "round {round}: exactly one write wins: {results:?}");
        let lost = 1 - won[0];
        assert!(matches!(results[lost], Err(Error::WriteConflict)), "round {round}: {results:?}");
        let stored = nodes[0].get_user(u.id).unwrap().unwrap();
        assert_eq!((stored.version, stored.display_name), (round + 1, format!("round {round} thread {}", won[0])));
    }
}

fn the_audit_chain_stays_whole_under_commits_from_two_nodes(f: Fresh) {
    let nodes = [f.store.clone(), (f.another)()];
    let users: Vec<User> = (1..=8).map(|n| named(&format!("member{n}"), n)).collect();
    add(&*nodes[0], &users).unwrap();
    let per_thread = 40;
    std::thread::scope(|s| {
        for t in 0..4 {
            let store = nodes[t % 2].clone();
            let users = &users;
            s.spawn(move || {
                for i in 0..per_thread {
                    // Each commit writes a user (retried from the stored version when another
                    // thread wrote it first) and records one or two events.
                    let user = &users[(t * 3 + i) % users.len()];
                    loop {
                        let stored = store.get_user(user.id).unwrap().unwrap();
                        let mut next = stored.clone();
                        next.last_login_at = Some(i as i64);
                        next.version += 1;
                        let audit = (0..1 + i % 2).map(|k| draft(t * 1000 + i * 2 + k, &format!("node{}", t % 2))).collect();
                        let change = Change { users: vec![UserWrite { user: next, expected_version: Some(stored.version) }], audit, ..Change::default() };
                        match store.commit(&[change]) {
                            Ok(()) => break,
                            Err(Error::WriteConflict) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            });
        }
    });
    let expected: u64 = (0..4).map(|_| (0..per_thread).map(|i| 1 + i as u64 % 2).sum::<u64>()).sum();
    assert_eq!(verify_chain(&*nodes[0]), expected);
    assert_eq!(verify_chain(&*nodes[1]), expected, "the chain verifies through either node");
    let writes: u64 = users.iter().map(|u| nodes[1].get_user(u.id).unwrap().unwrap().version - 1).sum();
    assert_eq!(writes, 4 * per_thread as u64, "every write counted once");
}

fn a_name_wanted_by_many_at_once_goes_to_one(f: Fresh) {
    let nodes = [f.store.clone(), (f.another)()];
    add(&*nodes[0], &[]).unwrap();
    for round in 0..10u64 {
        let barrier = Barrier::new(6);
        let name = format!("popular{round}");
        let results: Vec<mfadmin::error::Result<()>> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..6u64)
                .map(|t| {
                    let (store, barrier) = (nodes[t as usize % 2].clone(), &barrier);
                    // Only the name is shared (in differing case); emails and numbers differ.
                    let mut u = named(&name, 1 + round * 10 + t);
                    u.username = if t % 2 == 0 { name.to_uppercase() } else { name.clone() };
                    u.email = format!("{round}-{t}@example.org");
                    s.spawn(move || {
                        barrier.wait();
                        add(&*store, &[u])
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
        assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|e| matches!(e, Error::Conflict(m) if m.contains("already taken"))), "{results:?}");
    }
    assert_eq!(nodes[1].user_count().unwrap(), 10);
    assert_eq!(nodes[1].check_indexes().unwrap(), Vec::<String>::new());
}

fn another_node_catches_up_from_a_watermark(f: Fresh) {
    let (a, b) = (f.store.clone(), (f.another)());
    let Some(start) = b.changes_since(0).unwrap() else {
        // One process owns a sled store: there is no other node to catch up.
        assert!(a.changes_since(0).unwrap().is_none());
        return;
    };
    assert!(start.users.is_empty() && start.orgs.is_empty());
    let users: Vec<User> = (1..=5).map(|n| named(&format!("w{n}"), n)).collect();
    add(&*a, &users).unwrap();
    let first = b.changes_since(start.seq).unwrap().unwrap();
    assert!(first.seq > start.seq);
    assert_eq!(first.users.len(), 5);
    assert_eq!(first.orgs, vec![acme()]);
    write(&*a, &users[2], 1).unwrap();
    let second = b.changes_since(first.seq).unwrap().unwrap();
    assert_eq!(second.users.iter().map(|u| (u.id, u.version)).collect::<Vec<_>>(), vec![(users[2].id, 2)]);
    assert!(second.orgs.is_empty());
    let quiet = b.changes_since(second.seq).unwrap().unwrap();
    assert_eq!((quiet.seq, quiet.users.len()), (second.seq, 0), "nothing new, the watermark stays");
}

fn the_service_resets_and_verifies_on_the_store(f: Fresh) {
    let now = 1_800_000_000;
    let sealer_key = tempfile::tempdir().unwrap();
    let sealer = Sealer::create_key_file(&sealer_key.path().join("key")).unwrap();
    let policy = Config::default().policy();
    let svc = Service::new(f.store.clone(), sealer, policy.clone()).unwrap();
    let console = Actor::console("cli");
    svc.add_org(&console, "Acme", true, now).unwrap();
    let mut names = Vec::new();
    for n in 0..6 {
        let name = format!("member{n}");
        svc.add_user(&console, NewUser { username: name.clone(), email: format!("{name}@acme.example"), display_name: name.clone(), role: Role::Member, org: "acme".into(), password: Some("correct horse battery".into()) }, now).unwrap();
        names.push(name);
    }
    for name in &names[..4] {
        let e = svc.begin_enrollment(&console, name, "mfadmin", now).unwrap();
        let secret = totp_rs::Secret::try_from_base32(&e.secret_base32).unwrap().as_ref().to_vec();
        svc.confirm_enrollment(&console, name, &mfadmin::auth::totp::code_at(&secret, now as u64), now).unwrap();
    }
    let report = svc.reset_mfa(&console, &names, Some("lost phones"), false, now + 60).unwrap();
    assert_eq!((report.count(ResetOutcome::Reset), report.count(ResetOutcome::Skipped)), (4, 2), "{report:?}");
    // A second service on the store (a second node, for PostgreSQL) sees it all and verifies the chain.
    let key = Sealer::load(&sealer_key.path().join("key")).unwrap();
    let other = Service::new((f.another)(), key, policy).unwrap();
    let (problems, verified) = other.check(&console).unwrap();
    assert!(problems.is_empty() && verified.ok, "{problems:?} {verified:?}");
    assert!(verified.events >= 1 + 6 + 4 + 4, "{verified:?}");
    let again = other.reset_mfa(&console, &names[..1], Some("again"), false, now + 120).unwrap();
    assert_eq!(again.count(ResetOutcome::Skipped), 1, "already reset, as the first node left it");
    // A key that is not the store's is refused.
    let wrong = Sealer::create_key_file(&sealer_key.path().join("other")).unwrap();
    assert!(matches!(Service::new((f.another)(), wrong, Config::default().policy()), Err(Error::KeyFile(_))));
}

/// A backup of either store restores into both, with everything: records, indexes, the audit
/// chain, sessions, settings and where user numbers carry on; expired sessions are left behind.
fn a_backup_restores_into_either_store_with_everything(f: Fresh) {
    let store = &*f.store;
    let users: Vec<User> = (1..=300).map(|n| named(&format!("b{n}"), n)).collect();
    add(store, &users).unwrap();
    write(store, &users[7], 1).unwrap();
    let session = Session::new(users[3].id, SessionKind::Session, 0, 1_900_000_000, "test");
    let expired = Session::new(users[4].id, SessionKind::Session, 0, 100, "test");
    let audit = (0..5).map(|n| draft(n, "test")).collect();
    let sessions_put = vec![([3; 32], session.clone()), ([4; 32], expired)];
    store.commit(&[Change { sessions_put, audit, meta_put: vec![("key_check", vec![9])], ..Change::default() }]).unwrap();
    let next = store.allocate_numbers(1).unwrap();
    let sealer = Sealer::ephemeral();
    let mut bytes = Vec::new();
    let counts = mfadmin::backup::write_backup(store, &sealer, 1_800_000_000, &mut bytes).unwrap();
    assert_eq!((counts.users, counts.orgs, counts.audit_events, counts.sessions), (300, 1, 5, 1), "the expired session is left behind");
    for kind in [Kind::Sled, Kind::Postgres] {
        let Some(into) = fresh(kind, "backup_target") else { continue };
        let restored = &*into.store;
        mfadmin::backup::restore_into(restored, &bytes[..], &sealer).unwrap();
        assert_eq!(restored.check_indexes().unwrap(), Vec::<String>::new(), "{kind:?}");
        assert_eq!(verify_chain(restored), 5);
        assert_eq!(restored.audit_head().unwrap(), store.audit_head().unwrap());
        assert_eq!(restored.user_count().unwrap(), 300);
        for u in &users {
            assert_eq!(restored.get_user(u.id).unwrap(), store.get_user(u.id).unwrap());
            assert_eq!(restored.user_id_by_name(&u.username).unwrap(), Some(u.id));
            assert_eq!(restored.user_id_by_email(&u.email).unwrap(), Some(u.id));
            assert_eq!(restored.user_id_by_number(u.number).unwrap(), Some(u.id));
        }
        assert_eq!(restored.get_user(users[7].id).unwrap().unwrap().version, 2);
        assert_eq!(restored.sessions_of(users[3].id).unwrap(), vec![([3; 32], session.clone())]);
        assert_eq!(restored.sessions_of(users[4].id).unwrap(), vec![]);
        assert_eq!(restored.get_meta("key_check").unwrap(), Some(vec![9]));
        assert_eq!(restored.orgs().unwrap(), vec![acme()]);
        assert_eq!(restored.allocate_numbers(1).unwrap(), next + 1, "numbers carry on where they were");
        // A second restore into a store that now holds records is refused.
        let again = mfadmin::backup::restore_into(restored, &bytes[..], &sealer).unwrap_err();
        assert!(matches!(&again, Error::Conflict(m) if m.contains("empty")), "{again}");
        // Another key file: refused before anything is read.
        let Some(other) = fresh(kind, "backup_wrong_key") else { continue };
        let wrong = mfadmin::backup::restore_into(&*other.store, &bytes[..], &Sealer::ephemeral()).unwrap_err();
        assert!(matches!(&wrong, Error::KeyFile(m) if m.contains("another key file")), "{wrong}");
        assert_eq!(other.store.user_count().unwrap(), 0);
        // Cut short: refused, and PostgreSQL keeps nothing of it (one transaction).
        if matches!(kind, Kind::Postgres) {
            let cut = mfadmin::backup::restore_into(&*other.store, &bytes[..bytes.len() - 40], &sealer).unwrap_err();
            assert!(cut.to_string().contains("truncated"), "{cut}");
            assert_eq!((other.store.user_count().unwrap(), other.store.orgs().unwrap().len()), (0, 0), "nothing kept");
        }
    }
}

/// Over TLS (`sslmode=require`), the server's certificate is checked: against the CA file given it
/// connects, against the system's roots (which never signed a test CA) it is refused. Needs
/// `MFADMIN_TEST_PG_CA`, the CA of the test server's certificate (tests/pg/run.sh makes one).
#[test]
fn a_connection_over_tls_checks_the_server_certificate() {
    let (Some(admin), Ok(ca)) = (pg_settings(), std::env::var("MFADMIN_TEST_PG_CA")) else {
        eprintln!("skipped the TLS case: set MFADMIN_TEST_PG_CA (and a PostgreSQL with TLS) or run tests/pg/run.sh");
        return;
    };
    let Some(f) = fresh(Kind::Postgres, "tls") else { return };
    let Place::Schema { name, .. } = &f._place else { unreachable!() };
    let mut settings = admin.clone();
    settings.options(&format!("-c search_path={name}")).ssl_mode(postgres::config::SslMode::Require);
    let options = PgOptions { config: settings, pool_size: 2, ca_file: Some(ca.into()) };
    let store = PgStore::open(options.clone()).expect("TLS with the test CA connects");
    assert_eq!(store.user_count().unwrap(), 0);
    let refused = PgStore::open(PgOptions { ca_file: None, ..options.clone() }).unwrap_err();
    assert!(refused.to_string().contains("cannot connect"), "{refused}");
    let missing = PgStore::open(PgOptions { ca_file: Some("/nonexistent/ca.pem".into()), ..options }).unwrap_err();
    assert!(missing.to_string().contains("store.ca_file /nonexistent/ca.pem: cannot read it"), "{missing}");
}

// ------------------------------------------------------------------ the keyed audit chain

/// A service on the store with a key file of its own; the key file's directory is returned too.
fn service_on(store: Arc<dyn Store>, key_dir: &std::path::Path) -> Service {
    let path = key_dir.join("key");
    let sealer = if path.exists() { Sealer::load(&path).unwrap() } else { Sealer::create_key_file(&path).unwrap() };
    Service::new(store, sealer, Config::default().policy()).unwrap()
}

fn some_events(svc: &Service) {
    let console = Actor::console("cli");
    svc.add_org(&console, "Acme", false, 1_800_000_000).unwrap();
    for n in 0..4 {
        let name = format!("chain{n}");
        let new = NewUser { username: name.clone(), email: format!("{name}@acme.example"), display_name: name, role: Role::Member, org: "acme".into(), password: None };
        svc.add_user(&console, new, 1_800_000_000 + n).unwrap();
    }
}

/// Reach into the store's files (sled) or tables (PostgreSQL) as someone who can write them but
/// cannot read the key file: `edit` changes the stored events, then every link from event
/// `relink_from` on and the head are recomputed with plain SHA-256, consistently; with
/// `drop_marker`, the marker of the keyed chain goes too. The store is opened again afterwards.
fn rewrite(f: Fresh, relink_from: u64, drop_marker: bool, edit: impl FnOnce(&mut Vec<AuditEvent>)) -> Fresh {
    let Fresh { store, another, _place: place } = f;
    drop((store, another));
    let relink = |events: &mut Vec<AuditEvent>| {
        for i in 1..events.len() {
            if events[i].seq >= relink_from {
                events[i].prev_hash = events[i - 1].hash();
            }
        }
        events.last().map(|e| (e.seq, e.hash()))
    };
    // Records are a version tag (0) then the postcard bytes.
    let decode = |bytes: &[u8]| -> AuditEvent { postcard::from_bytes(&bytes[1..]).unwrap() };
    let encode = |value: &dyn erased::Encode| -> Vec<u8> { value.bytes() };
    match &place {
        Place::Dir(dir) => {
            let path = dir.path().join("store");
            let db = (0..100)
                .find_map(|_| {
                    sled::open(&path).ok().or_else(|| {
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        None
                    })
                })
                .expect("the store can be opened directly");
            let audit = db.open_tree("audit").unwrap();
            let mut events: Vec<AuditEvent> = audit.iter().map(|kv| decode(&kv.unwrap().1)).collect();
            edit(&mut events);
            let head = relink(&mut events).unwrap();
            for e in &events {
                audit.insert(e.seq.to_be_bytes(), encode(e)).unwrap();
            }
            let meta = db.open_tree("meta").unwrap();
            meta.insert("audit_head", encode(&head)).unwrap();
            if drop_marker {
                meta.remove("audit_keyed_from").unwrap();
            }
            db.flush().unwrap();
            drop((audit, meta, db));
            // sled lets go of its lock from a background thread a moment after the last handle.
            let opened = (0..100).find_map(|_| {
                SledStore::open(&path).ok().or_else(|| {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    None
                })
            });
            let store: Arc<dyn Store> = Arc::new(opened.expect("the store opens again"));
            let same = store.clone();
            Fresh { store, another: Box::new(move || same.clone()), _place: place }
        }
        Place::Schema { admin, name } => {
            let mut settings = (**admin).clone();
            settings.options(&format!("-c search_path={name}"));
            let mut client = settings.connect(postgres::NoTls).unwrap();
            let mut events: Vec<AuditEvent> =
                client.query("SELECT record FROM audit ORDER BY seq", &[]).unwrap().iter().map(|r| decode(r.get(0))).collect();
            edit(&mut events);
            let (_, hash) = relink(&mut events).unwrap();
            for e in &events {
                client.execute("UPDATE audit SET record = $2 WHERE seq = $1", &[&(e.seq as i64), &encode(e)]).unwrap();
            }
            client.execute("UPDATE head SET audit_hash = $1", &[&hash.to_vec()]).unwrap();
            if drop_marker {
                client.execute("DELETE FROM meta WHERE name = 'audit_keyed_from'", &[]).unwrap();
            }
            let store: Arc<dyn Store> = Arc::new(PgStore::open(PgOptions::new(settings.clone(), 8)).unwrap());
            let another = move || -> Arc<dyn Store> { Arc::new(PgStore::open(PgOptions::new(settings.clone(), 8)).unwrap()) };
            Fresh { store, another: Box::new(another), _place: place }
        }
    }
}

/// Postcard with the store's version tag, for whatever the test writes back.
mod erased {
    pub trait Encode {
        fn bytes(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Encode for T {
        fn bytes(&self) -> Vec<u8> {
            let mut out = vec![0u8];
            out.extend(postcard::to_allocvec(self).unwrap());
            out
        }
    }
}

fn a_consistent_plain_rewrite_of_a_keyed_chain_is_reported(f: Fresh) {
    let keys = tempfile::tempdir().unwrap();
    let svc = service_on(f.store.clone(), keys.path());
    some_events(&svc);
    let console = Actor::console("cli");
    assert!(svc.audit_verify(&console).unwrap().ok);
    assert_eq!(f.store.get_meta("audit_keyed_from").unwrap(), Some(1u64.to_be_bytes().to_vec()), "a new store is keyed from its first event");
    drop(svc);
    let f = rewrite(f, 1, false, |events| events[1].draft.detail = Some("history, rewritten".into()));
    // The rewrite is consistent as plain SHA-256 goes: the old check would pass it.
    assert_eq!(verify_chain(&*f.store), 5);
    let svc = service_on(f.store.clone(), keys.path());
    let report = svc.audit_verify(&console).unwrap();
    assert!(!report.ok, "{report:?}");
    assert_eq!(report.broken_at, Some(2), "the first rewritten keyed link no longer matches: {report:?}");
    assert!(report.problem.unwrap().contains("without the key file"));
    let (_, checked) = svc.check(&console).unwrap();
    assert!(!checked.ok);
}

fn removing_the_keyed_marker_with_the_rewrite_is_reported(f: Fresh) {
    let keys = tempfile::tempdir().unwrap();
    let svc = service_on(f.store.clone(), keys.path());
    some_events(&svc);
    drop(svc);
    let f = rewrite(f, 1, true, |events| events[2].draft.actor = "someone else".into());
    assert_eq!(f.store.get_meta("audit_keyed_from").unwrap(), None);
    // Opening it does not key the forged plain chain afresh: the key check says it was keyed.
    let svc = service_on(f.store.clone(), keys.path());
    assert_eq!(f.store.get_meta("audit_keyed_from").unwrap(), None, "a forged plain chain is not vouched for");
    let report = svc.audit_verify(&Actor::console("cli")).unwrap();
    assert!(!report.ok, "{report:?}");
    assert!(report.problem.unwrap().contains("marker"), "names the missing marker");
}

fn a_plain_chain_is_checked_then_keyed_from_its_next_event(f: Fresh) {
    // A store written before the chain was keyed: plain links, no marker.
    let store = &*f.store;
    add(store, &[named("p1", 1)]).unwrap();
    store.commit(&[Change { audit: (0..7).map(|n| draft(n, "old")).collect(), ..Change::default() }]).unwrap();
    assert_eq!(verify_chain(store), 7);
    let keys = tempfile::tempdir().unwrap();
    let svc = service_on(f.store.clone(), keys.path());
    assert_eq!(store.get_meta("audit_keyed_from").unwrap(), Some(8u64.to_be_bytes().to_vec()));
    let console = Actor::console("cli");
    assert_eq!(svc.audit_verify(&console).unwrap(), mfadmin::service::VerifyReport { events: 7, ok: true, broken_at: None, problem: None });
    svc.add_org(&console, "Globex", false, 1_800_000_000).unwrap();
    let chain_key = Sealer::load(&keys.path().join("key")).unwrap().mac("audit-chain");
    let mut events = Vec::new();
    store.scan_audit(false, &mut |e| {
        events.push(e);
        true
    })
    .unwrap();
    assert_eq!(events[7].prev_hash, Linker::Keyed(chain_key).hash(&events[6]), "the next event carries a keyed link");
    assert_ne!(events[7].prev_hash, events[6].hash());
    assert!(svc.audit_verify(&console).unwrap().ok);
    // Opened again, nothing changes; a second node keeps linking with the key.
    drop(svc);
    let other = service_on((f.another)(), keys.path());
    other.add_org(&console, "Initech", false, 1_800_000_000).unwrap();
    assert_eq!(other.audit_verify(&console).unwrap().events, 9);
    drop(other);
    // Rewriting an event from before the keying, consistently in plain SHA-256, is caught.
    let f = rewrite(f, 1, false, |events| events[3].draft.reason = Some("nothing happened".into()));
    let report = service_on(f.store.clone(), keys.path()).audit_verify(&console).unwrap();
    assert_eq!(report.broken_at, Some(8), "{report:?}");
}

fn a_broken_plain_chain_is_not_keyed(f: Fresh) {
    let store = &*f.store;
    store.commit(&[Change { audit: (0..5).map(|n| draft(n, "old")).collect(), ..Change::default() }]).unwrap();
    // Event 3 altered without relinking: the plain chain breaks at event 4.
    let f = rewrite(f, u64::MAX, false, |events| events[2].draft.reason = Some("altered".into()));
    let keys = tempfile::tempdir().unwrap();
    let svc = service_on(f.store.clone(), keys.path());
    assert_eq!(f.store.get_meta("audit_keyed_from").unwrap(), None, "a chain that does not verify is not keyed");
    let report = svc.audit_verify(&Actor::console("cli")).unwrap();
    assert_eq!((report.ok, report.broken_at), (false, Some(4)), "{report:?}");
}

// ------------------------------------------------------------------ expired sessions

fn expired_sessions_are_deleted_in_bounded_passes_and_left_out_of_backups(f: Fresh) {
    let store = &*f.store;
    let users: Vec<User> = (1..=3).map(|n| named(&format!("s{n}"), n)).collect();
    add(store, &users).unwrap();
    let now = 1_000;
    let kinds = [SessionKind::Session, SessionKind::MfaChallenge, SessionKind::EnrollChallenge, SessionKind::ApiKey { name: "k".into(), role: Role::Helpdesk }];
    let mut puts = Vec::new();
    for (i, kind) in kinds.iter().enumerate() {
        for (j, u) in users.iter().enumerate() {
            let expires_at = if j == 0 { now + 500 } else { now - 1 - i as i64 };
            puts.push(([(10 * i + j) as u8; 32], Session::new(u.id, kind.clone(), 0, expires_at, "test")));
        }
    }
    store.commit(&[Change { sessions_put: puts.clone(), ..Change::default() }]).unwrap();
    let expired = puts.iter().filter(|(_, s)| s.expires_at <= now).count();
    assert_eq!(expired, 8);
    // A backup taken now leaves the expired ones out (restoring one is checked by
    // a_backup_restores_into_either_store_with_everything).
    let mut bytes = Vec::new();
    let counts = mfadmin::backup::write_backup(store, &Sealer::ephemeral(), now, &mut bytes).unwrap();
    assert_eq!(counts.sessions, 4);
    // Deleted a bounded number a pass, until none is left; the live ones stay.
    assert_eq!(store.delete_expired_sessions(now, 5).unwrap(), 5);
    assert_eq!(store.delete_expired_sessions(now, 5).unwrap(), 3);
    assert_eq!(store.delete_expired_sessions(now, 5).unwrap(), 0);
    for (hash, session) in &puts {
        assert_eq!(store.get_session(hash).unwrap().is_some(), session.expires_at > now, "{session:?}");
    }
    assert_eq!(store.sessions_of(users[0].id).unwrap().len(), 4);
    assert!(store.sessions_of(users[2].id).unwrap().is_empty());
    assert_eq!(store.check_indexes().unwrap(), Vec::<String>::new());
}

/// The figure in docs/reliability.md: how long opening a store written before the chain was keyed
/// takes, for N events (the plain chain is walked once, then keyed in one small transaction).
/// Run with `cargo test --release --test store_suite keying_figures -- --ignored --nocapture`.
#[test]
#[ignore]
fn keying_figures() {
    for n in [100_000usize, 1_000_000] {
        let Some(f) = fresh(Kind::Sled, "keying_figures") else { return };
        for start in (0..n).step_by(10_000) {
            f.store.commit(&[Change { audit: (start..start + 10_000).map(|i| draft(i, "old")).collect(), ..Change::default() }]).unwrap();
        }
        f.store.flush().unwrap();
        let keys = tempfile::tempdir().unwrap();
        let started = std::time::Instant::now();
        let svc = service_on(f.store.clone(), keys.path());
        let keyed = started.elapsed();
        let started = std::time::Instant::now();
        let report = svc.audit_verify(&Actor::console("cli")).unwrap();
        let verified = started.elapsed();
        assert!(report.ok && report.events == n as u64, "{report:?}");
        println!("{n} events: keyed at open in {} ms; audit verify (keyed) {} ms", keyed.as_millis(), verified.as_millis());
    }
}

// ------------------------------------------------------------------ PostgreSQL: table layouts and the change log

/// The tables of layout 1, as mfadmin made them before layout 2 (`SCHEMA_V1` in
/// src/store/postgres.rs), kept here as released: what a store made by an older mfadmin holds.
const PG_LAYOUT_1: &str = r#"
CREATE TABLE meta (name text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE head (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    commit_seq bigint NOT NULL,
    audit_seq bigint NOT NULL,
    audit_hash bytea NOT NULL
);
INSERT INTO head (commit_seq, audit_seq, audit_hash) VALUES (0, 0, '\x0000000000000000000000000000000000000000000000000000000000000000');
CREATE TABLE numbers (only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row), next bigint NOT NULL);
INSERT INTO numbers (next) VALUES (1);
CREATE TABLE users (
    id uuid PRIMARY KEY,
    number bigint NOT NULL CONSTRAINT users_number_key UNIQUE,
    name_key text COLLATE "C" NOT NULL CONSTRAINT users_name_key UNIQUE,
    email_key text COLLATE "C" NOT NULL CONSTRAINT users_email_key UNIQUE,
    version bigint NOT NULL,
    commit_seq bigint NOT NULL,
    record bytea NOT NULL
);
CREATE INDEX users_commit_seq ON users (commit_seq);
CREATE TABLE orgs (key text COLLATE "C" PRIMARY KEY, commit_seq bigint NOT NULL, record bytea NOT NULL);
CREATE INDEX orgs_commit_seq ON orgs (commit_seq);
CREATE TABLE audit (seq bigint PRIMARY KEY, record bytea NOT NULL);
CREATE TABLE sessions (hash bytea PRIMARY KEY, user_id uuid NOT NULL, expires_at bigint NOT NULL, record bytea NOT NULL);
CREATE INDEX sessions_user_id ON sessions (user_id);
"#;

/// A connection and the schema of a fresh PostgreSQL store.
fn pg_place(f: &Fresh) -> (postgres::Config, String) {
    match &f._place {
        Place::Schema { admin, name } => ((**admin).clone(), name.clone()),
        Place::Dir(_) => unreachable!("a PostgreSQL store lives in a schema"),
    }
}

/// Options that open the store in `schema`.
fn pg_options(admin: &postgres::Config, schema: &str) -> PgOptions {
    let mut settings = admin.clone();
    settings.options(&format!("-c search_path={schema}"));
    PgOptions::new(settings, 4)
}

/// A store of layout 1, made with layout 1's tables and holding what another mfadmin of layout 1
/// would have written: users (one written twice), an org, audit events, a session. The records
/// are the same bytes in both layouts; they come from a store of this version.
#[test]
fn a_layout_1_store_is_brought_to_layout_2_and_a_follower_sees_every_change() {
    let Some(f) = fresh(Kind::Postgres, "layout_1") else { return };
    let (admin, source) = pg_place(&f);
    let users: Vec<User> = (1..=50).map(|n| named(&format!("v{n}"), n)).collect();
    add(&*f.store, &users).unwrap();
    write(&*f.store, &users[3], 1).unwrap();
    let session = Session::new(users[0].id, SessionKind::Session, 0, 1_900_000_000, "test");
    let audit = (0..3).map(|n| draft(n, "test")).collect();
    f.store.commit(&[Change { sessions_put: vec![([1; 32], session)], audit, ..Change::default() }]).unwrap();
    let old = format!("{source}_v1");
    let _dropped = Place::Schema { admin: Box::new(admin.clone()), name: old.clone() };
    let mut client = admin.connect(postgres::NoTls).unwrap();
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {old}; SET search_path = {old}; {PG_LAYOUT_1}
             INSERT INTO meta SELECT * FROM {source}.meta WHERE name <> 'pg_schema_version';
             INSERT INTO meta VALUES ('pg_schema_version', '\\x00000001');
             UPDATE head SET (commit_seq, audit_seq, audit_hash) = (SELECT commit_seq, audit_seq, audit_hash FROM {source}.head);
             UPDATE numbers SET next = (SELECT next FROM {source}.numbers);
             INSERT INTO users SELECT id, number, name_key, email_key, version, CASE WHEN version = 1 THEN 1 ELSE 2 END, record FROM {source}.users;
             INSERT INTO orgs SELECT * FROM {source}.orgs;
             INSERT INTO audit SELECT * FROM {source}.audit;
             INSERT INTO sessions SELECT * FROM {source}.sessions;"
        ))
        .unwrap();
    let before: i64 = client.query_one(&format!("SELECT commit_seq FROM {old}.head"), &[]).unwrap().get(0);

    // Two nodes start at once: one brings the tables up to date, the other waits for it.
    let (a, b) = std::thread::scope(|s| {
        let opening: Vec<_> = (0..2).map(|_| s.spawn(|| PgStore::open(pg_options(&admin, &old)).unwrap())).collect();
        let mut opened = opening.into_iter().map(|h| h.join().unwrap());
        (opened.next().unwrap(), opened.next().unwrap())
    });
    assert_eq!(a.get_meta("pg_schema_version").unwrap(), Some(2u32.to_be_bytes().to_vec()));
    let columns: Vec<String> = client
        .query("SELECT column_name::text FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'users' ORDER BY ordinal_position", &[&old])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(columns, ["id", "number", "name_key", "email_key", "version", "record"]);
    let indexes: Vec<String> =
        client.query("SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 AND tablename = 'users' ORDER BY 1", &[&old]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(indexes, ["users_email_key", "users_name_key", "users_number_key", "users_pkey"], "no index covers what a reset writes");
    let options: Vec<String> =
        client.query_one(&format!("SELECT reloptions::text[] FROM pg_class WHERE oid = '{old}.users'::regclass"), &[]).unwrap().get(0);
    assert_eq!(options, ["fillfactor=85"]);

    // Everything is there, as it was.
    assert_eq!(a.user_count().unwrap(), 50);
    assert_eq!(a.get_user(users[3].id).unwrap().unwrap().version, 2);
    assert_eq!(a.sessions_of(users[0].id).unwrap().len(), 1);
    assert_eq!(a.check_indexes().unwrap(), Vec::<String>::new());
    assert_eq!(verify_chain(&a), 3);
    assert_eq!(a.commit_seq().unwrap(), before as u64);

    // A node that had read everything before the new layout reads everything again; one that
    // starts now follows every change from here.
    assert!(!b.changes_since(0).unwrap().unwrap().whole);
    let start = b.changes_since(before as u64).unwrap().unwrap();
    assert!(start.whole && start.users.is_empty());
    write(&a, &users[5], 1).unwrap();
    let newcomer = named("v51", 51);
    add(&a, std::slice::from_ref(&newcomer)).unwrap();
    let mut reset = users[7].clone();
    reset.version = 2;
    reset.recovery_codes.clear();
    a.commit(&[Change { users: vec![UserWrite { user: reset, expected_version: Some(1) }], revoke_sessions_of: vec![users[7].id], audit: vec![draft(9, "test")], ..Change::default() }])
        .unwrap();
    let seen = b.changes_since(start.seq).unwrap().unwrap();
    assert!(seen.whole);
    let mut got: Vec<(Uuid, u64)> = seen.users.iter().map(|u| (u.id, u.version)).collect();
    got.sort();
    let mut want = vec![(users[5].id, 2), (newcomer.id, 1), (users[7].id, 2)];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(seen.seq, before as u64 + 3);
    assert_eq!(verify_chain(&b), 4);

    // A layout newer than this binary's is refused, saying so.
    client.batch_execute(&format!("UPDATE {old}.meta SET value = '\\x00000003' WHERE name = 'pg_schema_version'")).unwrap();
    let said = PgStore::open(pg_options(&admin, &old)).err().expect("a newer layout is refused").to_string();
    assert!(said.contains("table layout 3") && said.contains("newer mfadmin"), "{said}");
}

/// The change log forgets old commits; a node whose watermark is older than what it forgot
/// (or than a bulk load) reads everything again rather than miss a change.
#[test]
fn a_node_behind_the_pruned_change_log_reads_everything_again() {
    let Some(f) = fresh(Kind::Postgres, "pruned") else { return };
    let (a, b) = (f.store.clone(), (f.another)());
    let users: Vec<User> = (1..=5).map(|n| named(&format!("p{n}"), n)).collect();
    add(&*a, &users).unwrap();
    let w0 = b.changes_since(0).unwrap().unwrap();
    assert!(w0.whole && w0.users.len() == 5);
    write(&*a, &users[0], 1).unwrap();
    assert_eq!(a.prune_changes(std::time::Duration::from_secs(3600)).unwrap(), 0, "nothing is that old");
    assert_eq!(b.changes_since(w0.seq).unwrap().unwrap().users.len(), 1);
    let w1 = b.changes_since(0).unwrap().unwrap().seq;
    assert_eq!(a.prune_changes(std::time::Duration::ZERO).unwrap(), 2);
    assert!(!b.changes_since(w0.seq).unwrap().unwrap().whole, "what changed after w0 is forgotten");
    let here = b.changes_since(w1).unwrap().unwrap();
    assert!(here.whole && here.users.is_empty(), "a node that read up to the last commit misses nothing");
    write(&*a, &users[1], 1).unwrap();
    let after = b.changes_since(w1).unwrap().unwrap();
    assert_eq!(after.users.iter().map(|u| u.id).collect::<Vec<_>>(), vec![users[1].id]);
    assert_eq!(a.prune_changes(std::time::Duration::ZERO).unwrap(), 1);
    assert_eq!(a.prune_changes(std::time::Duration::ZERO).unwrap(), 0, "an empty log stays as it is");
    assert!(!b.changes_since(w1).unwrap().unwrap().whole);
    // A bulk load logs no ids: a node from before it reads everything again.
    let w2 = b.changes_since(after.seq).unwrap().unwrap().seq;
    a.load_new_users((6..=8).map(|n| named(&format!("p{n}"), n)).collect()).unwrap();
    assert!(!b.changes_since(w2).unwrap().unwrap().whole);

    // A service on the second node, its directory built; a user renamed on the first node, the
    // log pruned: the second node's next listing finds the user by the new name.
    let now = 1_800_000_000;
    let keys = tempfile::tempdir().unwrap();
    let second = service_on(b.clone(), keys.path());
    // (The service keys the audit chain: the first node's handle gets the key too.)
    let _first = service_on(a.clone(), keys.path());
    second.warm_directory().unwrap();
    let console = Actor::console("cli");
    let found = |text: &str| {
        let query = mfadmin::service::UserQuery { text: Some(text.into()), ..Default::default() };
        second.list_users(&console, &query, now).unwrap().users.iter().map(|u| u.username.clone()).collect::<Vec<_>>()
    };
    assert_eq!(found("third"), Vec::<String>::new());
    let mut renamed = users[2].clone();
    renamed.display_name = "Third".into();
    renamed.version = 2;
    a.commit(&[Change { users: vec![UserWrite { user: renamed, expected_version: Some(1) }], ..Change::default() }]).unwrap();
    assert_eq!(a.prune_changes(std::time::Duration::ZERO).unwrap(), 1);
    assert_eq!(found("third"), ["p3"], "read again, the change is there");
}
