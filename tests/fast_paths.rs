//! The fast paths are real answers: cached filter matches follow every write, cursors page stably,
//! group commit answers each caller for its own work and makes it durable, and the directory read
//! in the background sees the writes made while it was read.

mod common;

use common::*;
use mfadmin::domain::mfa::MfaStatus;
use mfadmin::domain::role::Role;
use mfadmin::service::{ResetOutcome, UserQuery};
use std::sync::Arc;

fn smiths(t: &TestStore) -> Vec<(String, MfaStatus)> {
    let q = UserQuery { text: Some("smith".into()), ..UserQuery::default() };
    t.svc.list_users(&console(), &q, T0 + 10).unwrap().users.into_iter().map(|u| (u.username, u.mfa)).collect()
}

#[test]
fn a_cached_text_filter_shows_a_reset_and_a_new_user_in_the_next_list() {
    let t = store();
    for name in ["ann.smith", "bob.smith", "carl.jones"] {
        add(&t.svc, name, Role::Member, "globex");
    }
    enroll(&t.svc, "bob.smith", T0);
    let before = smiths(&t);
    assert_eq!(before, [("ann.smith".into(), MfaStatus::NotEnrolled), ("bob.smith".into(), MfaStatus::Enrolled)]);
    // The same filter again is answered from the cached match list...
    assert_eq!(smiths(&t), before);
    // ...which must follow a reset, a new user and a rename-free write at once.
    let report = t.svc.reset_mfa(&console(), &["bob.smith".into()], Some("lost phone"), false, T0 + 5).unwrap();
    assert_eq!(report.results[0].outcome, ResetOutcome::Reset);
    add(&t.svc, "abe.smithers", Role::Member, "globex");
    assert_eq!(
        smiths(&t),
        [
            ("abe.smithers".into(), MfaStatus::NotEnrolled),
            ("ann.smith".into(), MfaStatus::NotEnrolled),
            ("bob.smith".into(), MfaStatus::NotEnrolled),
        ]
    );
    // Enforcement of the org changes what every listed user shows.
    t.svc.set_mfa_enforced(&console(), Some("globex"), true, T0 + 6).unwrap();
    assert!(smiths(&t).iter().all(|(_, m)| *m == MfaStatus::MustEnroll));
}

#[test]
fn cursor_pages_cover_every_match_once_while_users_are_added() {
    let t = store();
    for i in 0..30 {
        add(&t.svc, &format!("user{i:02}"), Role::Member, "acme");
    }
    let mut seen = Vec::new();
    let mut query = UserQuery { text: Some("user".into()), limit: Some(7), ..UserQuery::default() };
    loop {
        let page = t.svc.list_users(&console(), &query, T0).unwrap();
        seen.extend(page.users.iter().map(|u| u.username.clone()));
        // A user added before the cursor does not shift the pages after it.
        if seen.len() == 7 {
            add(&t.svc, "user00a", Role::Member, "acme");
        }
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => break,
        }
    }
    let expected: Vec<String> = (0..30).map(|i| format!("user{i:02}")).collect();
    assert_eq!(seen, expected);
    // A cursor of another sort order is refused, as is one that is not a cursor.
    let first = t.svc.list_users(&console(), &UserQuery { limit: Some(2), ..UserQuery::default() }, T0).unwrap();
    let wrong = UserQuery {
        sort: mfadmin::service::SortField::Created,
        cursor: first.next_cursor,
        ..UserQuery::default()
    };
    assert!(t.svc.list_users(&console(), &wrong, T0).is_err());
    let garbage = UserQuery { cursor: Some("zzz".into()), ..UserQuery::default() };
    assert!(t.svc.list_users(&console(), &garbage, T0).is_err());
}

#[test]
fn concurrent_single_resets_each_get_their_own_answer_and_are_durable() {
    let t = store();
    let names: Vec<String> = (0..24).map(|i| format!("member{i:02}")).collect();
    for n in &names {
        add(&t.svc, n, Role::Member, "globex");
    }
    for n in &names[..16] {
        enroll(&t.svc, n, T0);
    }
    let svc = Arc::new(t.svc);
    let threads: Vec<_> = names
        .iter()
        .cloned()
        .map(|name| {
            let svc = svc.clone();
            std::thread::spawn(move || {
                let report = svc.reset_mfa(&console(), std::slice::from_ref(&name), Some("group"), false, T0 + 20).unwrap();
                (name, report.results[0].outcome)
            })
        })
        .collect();
    for th in threads {
        let (name, outcome) = th.join().unwrap();
        let enrolled = name.as_str() < "member16";
        assert_eq!(outcome, if enrolled { ResetOutcome::Reset } else { ResetOutcome::Skipped }, "{name}");
    }
    // Durable: reopened from disk, every reset and its audit event are there.
    let dir = t.dir;
    drop(Arc::into_inner(svc).expect("the threads are done"));
    let svc = context(&dir).open_service().unwrap();
    let page = svc.list_users(&console(), &UserQuery { text: Some("member".into()), ..UserQuery::default() }, T0 + 30).unwrap();
    assert!(page.users.iter().all(|u| u.mfa == MfaStatus::NotEnrolled));
    let resets = svc
        .audit_list(&console(), &mfadmin::service::AuditQuery { text: Some("mfa.reset".into()), limit: Some(1000), ..Default::default() })
        .unwrap();
    assert_eq!(resets.len(), 16);
    assert!(svc.audit_verify(&console()).unwrap().ok);
}

#[test]
fn the_directory_built_in_the_background_sees_writes_made_meanwhile() {
    let t = store();
    for i in 0..200 {
        add(&t.svc, &format!("bg{i:03}"), Role::Member, "acme");
    }
    let svc = Arc::new(t.svc);
    let warm = {
        let svc = svc.clone();
        std::thread::spawn(move || svc.warm_directory().unwrap())
    };
    for i in 0..20 {
        add(&svc, &format!("late{i:02}"), Role::Member, "acme");
    }
    warm.join().unwrap();
    let all = svc.list_users(&console(), &UserQuery::default(), T0).unwrap();
    assert_eq!(all.total, 220);
}

#[test]
fn the_in_memory_answer_is_the_full_answer_or_none() {
    let t = store();
    for name in ["dora.smith", "eve.smith", "fay.jones"] {
        add(&t.svc, name, Role::Member, "globex");
    }
    let q = UserQuery { text: Some("smith".into()), limit: Some(1), ..UserQuery::default() };
    assert!(t.svc.list_users_in_memory(&console(), &q, T0).is_none(), "the directory is not built yet");
    let full = t.svc.list_users(&console(), &q, T0).unwrap();
    assert_eq!(t.svc.list_users_in_memory(&console(), &q, T0).unwrap().unwrap(), full);
    let other = UserQuery { text: Some("jones".into()), ..UserQuery::default() };
    assert!(t.svc.list_users_in_memory(&console(), &other, T0).is_none(), "a filter not cached needs a scan");
    add(&t.svc, "abby.smith", Role::Member, "globex");
    let after = t.svc.list_users_in_memory(&console(), &q, T0).unwrap().unwrap();
    assert_eq!((after.total, after.users[0].username.as_str()), (3, "abby.smith"));
    let next = UserQuery { cursor: after.next_cursor.clone(), ..q.clone() };
    assert_eq!(t.svc.list_users_in_memory(&console(), &next, T0).unwrap().unwrap().users[0].username, "dora.smith");
}
