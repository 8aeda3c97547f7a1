//! The service on a real temporary store: reset as one unit, bulk outcomes, dry runs, login, secrets.

mod common;

use common::*;
use mfadmin::auth::totp;
use mfadmin::domain::mfa::MfaStatus;
use mfadmin::domain::policy;
use mfadmin::domain::role::Role;
use mfadmin::error::Error;
use mfadmin::domain::user::UserView;
use mfadmin::service::{Actor, AuditQuery, LoginStep, ResetOutcome, UserQuery};
use mfadmin::store::{Change, UserWrite};

fn mfa_of(t: &TestStore, name: &str, now: i64) -> MfaStatus {
    t.svc.get_user(&console(), name, now).unwrap().user.mfa
}

fn audit_count(t: &TestStore, action: &str) -> usize {
    t.svc
        .audit_list(&console(), &AuditQuery { text: None, limit: Some(100_000), ..Default::default() })
        .unwrap()
        .iter()
        .filter(|e| e.action == action)
        .count()
}

#[test]
fn a_reset_removes_factor_codes_and_sessions_and_is_audited_together() {
    let t = store();
    add(&t.svc, "alice", Role::Member, "globex");
    let (secret, codes) = enroll(&t.svc, "alice", T0);
    assert_eq!(codes.len(), 10);
    let (token, _) = login(&t.svc, "alice", Some(&secret), T0 + 60);
    assert_eq!(mfa_of(&t, "alice", T0 + 60), MfaStatus::Enrolled);

    let report = t.svc.reset_mfa(&console(), &["alice".into()], Some("lost phone"), false, T0 + 90).unwrap();
    assert_eq!(report.results[0].outcome, ResetOutcome::Reset);
    assert_eq!(report.results[0].mfa_after, Some(MfaStatus::NotEnrolled), "globex does not enforce MFA");

    let user = t.svc.get_user(&console(), "alice", T0 + 90).unwrap().user;
    assert_eq!(user.mfa, MfaStatus::NotEnrolled);
    assert_eq!(user.recovery_codes_left, 0);
    assert!(user.mfa_reset_at.is_some());
    let err = t.svc.authenticate(&token, "test", T0 + 91).unwrap_err();
    assert!(matches!(err, Error::Unauthenticated(_)), "the session died with the reset: {err}");
    let events = t.svc.audit_list(&console(), &AuditQuery { text: Some("mfa.reset".into()), limit: None, ..Default::default() }).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].target.as_deref(), Some("alice"));
    assert_eq!(events[0].reason.as_deref(), Some("lost phone"));
    assert_eq!(events[0].source, "cli");

    // After the reset the password alone logs in.
    assert!(matches!(t.svc.login_password("alice", PASSWORD, "test", T0 + 120).unwrap(), LoginStep::Done(_)));
}

#[test]
fn in_an_org_that_enforces_mfa_a_reset_user_must_enroll_at_next_login() {
    let t = store();
    add(&t.svc, "bob", Role::Member, "acme");
    let (_, _) = enroll(&t.svc, "bob", T0);
    t.svc.reset_mfa(&console(), &["bob".into()], Some("new phone"), false, T0 + 30).unwrap();
    assert_eq!(mfa_of(&t, "bob", T0 + 30), MfaStatus::MustEnroll);
    let LoginStep::EnrollmentRequired { challenge, .. } = t.svc.login_password("bob", PASSWORD, "test", T0 + 60).unwrap() else {
        panic!("bob must enroll before anything else");
    };
    assert!(t.svc.authenticate(&challenge, "test", T0 + 60).is_err(), "a challenge is not a session");
    let e = t.svc.login_enroll_begin(&challenge, "mfadmin", "test", T0 + 60).unwrap();
    let secret = totp_rs::Secret::try_from_base32(&e.secret_base32).unwrap().as_ref().to_vec();
    let (session, confirmed) =
        t.svc.login_enroll_confirm(&challenge, &totp::code_at(&secret, (T0 + 60) as u64), "test", T0 + 60).unwrap();
    assert_eq!(confirmed.recovery_codes.len(), 10);
    assert!(t.svc.authenticate(&session.token, "test", T0 + 61).is_ok());
    assert_eq!(mfa_of(&t, "bob", T0 + 61), MfaStatus::Enrolled);
}

#[test]
fn a_stale_unit_of_work_writes_nothing_at_all() {
    let t = store();
    add(&t.svc, "carol", Role::Member, "globex");
    enroll(&t.svc, "carol", T0);
    let store = t.svc.store().clone();
    let id = t.svc.resolve("carol").unwrap().unwrap().id;
    let stale = store.get_user(id).unwrap().unwrap();
    // Someone else changes carol first.
    t.svc.set_status(&console(), "carol", mfadmin::domain::user::Status::Disabled, T0 + 1).unwrap();
    let head_before = store.audit_head().unwrap();
    let reset = stale.reset_mfa(false, T0 + 2).unwrap();
    let unit = Change {
        users: vec![UserWrite { expected_version: Some(stale.version), user: reset }],
        revoke_sessions_of: vec![id],
        audit: vec![mfadmin::domain::audit::AuditDraft {
        at: T0 + 2,
        actor: "test".into(),
        action: "mfa.reset".into(),
        target_id: Some(id),
        target: Some("carol".into()),
        org: Some("globex".into()),
        outcome: mfadmin::domain::audit::Outcome::Success,
        reason: Some("stale".into()),
        detail: None,
        source: "test".into(),
        }],
        ..Change::default()
    };
    assert!(matches!(store.commit(&[unit]), Err(Error::WriteConflict)));
    assert_eq!(store.audit_head().unwrap(), head_before, "no audit event without its reset");
    assert_eq!(mfa_of(&t, "carol", T0 + 3), MfaStatus::Enrolled, "the record is untouched");
}

#[test]
fn a_bulk_reset_reports_every_target() {
    let t = store();
    add(&t.svc, "desk", Role::Helpdesk, "acme");
    for name in ["m1", "m2", "m3"] {
        add(&t.svc, name, Role::Member, "acme");
    }
    add(&t.svc, "boss", Role::Admin, "acme");
    add(&t.svc, "outsider", Role::Member, "globex");
    for name in ["m1", "m2", "boss", "outsider"] {
        enroll(&t.svc, name, T0);
    }
    let (desk_secret, _) = enroll(&t.svc, "desk", T0);
    let (_, desk) = login(&t.svc, "desk", Some(&desk_secret), T0 + 30);
    let m2_number = t.svc.resolve("m2").unwrap().unwrap().number.to_string();
    let targets: Vec<String> =
        ["m1", &m2_number, "m3", "boss", "outsider", "ghost", "m1"].iter().map(|s| s.to_string()).collect();
    let report = t.svc.reset_mfa(&desk, &targets, Some("ticket 12"), false, T0 + 30).unwrap();
    let outcomes: Vec<_> = report.results.iter().map(|r| (r.target.as_str(), r.outcome)).collect();
    assert_eq!(
        outcomes,
        vec![
            ("m1", ResetOutcome::Reset),
            (m2_number.as_str(), ResetOutcome::Reset),
            ("m3", ResetOutcome::Skipped),
            ("boss", ResetOutcome::Denied),
            ("outsider", ResetOutcome::NotFound),
            ("ghost", ResetOutcome::NotFound),
            ("m1", ResetOutcome::Skipped),
        ]
    );
    assert_eq!(report.results[3].detail.as_deref(), Some("a helpdesk cannot reset the MFA of an admin"));
    assert_eq!(report.results[2].detail.as_deref(), Some("MFA was not set up"));
    // Another org's user is reported exactly like a user that does not exist.
    assert_eq!(report.results[4].user_id, None);
    assert_eq!(report.results[4].username, None);
    assert_eq!(mfa_of(&t, "boss", T0 + 30), MfaStatus::Enrolled);
    assert_eq!(mfa_of(&t, "outsider", T0 + 30), MfaStatus::Enrolled);
    let events = t.svc.audit_list(&console(), &AuditQuery { text: Some("ticket 12".into()), limit: None, ..Default::default() }).unwrap();
    let mut summary: Vec<_> = events.iter().map(|e| (e.target.clone().unwrap(), e.outcome.as_str())).collect();
    summary.sort();
    assert_eq!(
        summary,
        vec![("boss".to_string(), "denied"), ("m1".to_string(), "success"), ("m2".to_string(), "success")]
    );
    assert!(t.svc.audit_verify(&console()).unwrap().ok);
}

/// A bulk reset looks its targets up in key order, not in the order given; the report, the audit
/// trail and the sessions ended are still those of each target as given, whatever form it takes.
#[test]
fn a_bulk_reset_reports_and_audits_in_the_order_given() {
    let t = store();
    let names = ["zed", "yan", "xia", "wes", "vic", "una", "tom", "sam", "rex", "quinn"];
    let mut secrets = Vec::new();
    for name in names {
        add(&t.svc, name, Role::Member, "globex");
        secrets.push(enroll(&t.svc, name, T0).0);
    }
    let (token, _) = login(&t.svc, "tom", Some(&secrets[6]), T0 + 60);
    let user = |name: &str| t.svc.resolve(name).unwrap().unwrap();
    let targets: Vec<String> = vec![
        "zed".into(),
        " YAN ".into(),
        user("xia").email,
        format!("#{}", user("wes").number),
        user("vic").id.to_string(),
        "ghost".into(),
        "una".into(),
        "tom".into(),
        "sam".into(),
        "rex".into(),
        "quinn".into(),
    ];
    let expected: Vec<_> = targets.iter().map(|target| t.svc.resolve(target).unwrap().map(|u| u.id)).collect();
    let report = t.svc.reset_mfa(&console(), &targets, Some("order"), false, T0 + 90).unwrap();
    let found: Vec<_> = report.results.iter().map(|r| r.user_id).collect();
    assert_eq!(found, expected);
    assert_eq!(report.results.iter().map(|r| r.target.clone()).collect::<Vec<_>>(), targets);
    assert_eq!(report.count(ResetOutcome::Reset), 10);
    assert_eq!(report.results[5].outcome, ResetOutcome::NotFound);
    let events = t.svc.audit_list(&console(), &AuditQuery { text: Some("order".into()), limit: None, ..Default::default() }).unwrap();
    let mut audited: Vec<_> = events.iter().map(|e| (e.seq, e.target.clone().unwrap())).collect();
    audited.sort();
    assert_eq!(audited.into_iter().map(|(_, target)| target).collect::<Vec<_>>(), names, "one event per user, in target order");
    assert!(t.svc.authenticate(&token, "test", T0 + 91).is_err(), "tom's session ended with the reset");
    assert!(t.svc.audit_verify(&console()).unwrap().ok);
}

#[test]
fn batches_commit_every_user_of_a_large_reset() {
    let t = store();
    let mut names = Vec::new();
    for i in 0..1_203 {
        names.push(format!("user{i}"));
    }
    let mut users = mfadmin::demo::generate(&t.svc, names.len(), 7, T0).unwrap();
    for (u, n) in users.iter_mut().zip(&names) {
        u.username = n.clone();
        u.email = format!("{n}@acme.example");
        u.org = "acme".into();
        u.mfa = mfadmin::domain::mfa::MfaState::Enrolled {
            secret: t.svc.seal_secret(u.id, &totp::new_secret()),
            enrolled_at: T0,
            last_step: 0,
        };
        u.lockout = Default::default();
    }
    t.svc.insert_generated_users(&console(), users, "test users", T0).unwrap();
    let mut calls = Vec::new();
    let report = t
        .svc
        .reset_mfa_with_progress(&console(), &names, Some("bulk"), false, T0 + 1, &mut |done, total| calls.push((done, total)))
        .unwrap();
    assert_eq!(report.count(ResetOutcome::Reset), 1_203);
    assert_eq!(calls, vec![(500, 1203), (1000, 1203), (1203, 1203)], "batch_size is 500");
    assert_eq!(audit_count(&t, "mfa.reset"), 1_203);
    let still = t.svc.list_users(&console(), &UserQuery { mfa: Some(MfaStatus::Enrolled), ..Default::default() }, T0 + 1).unwrap();
    assert_eq!(still.total, 0);
    assert!(t.svc.audit_verify(&console()).unwrap().ok);
}

#[test]
fn a_dry_run_decides_the_same_and_changes_nothing() {
    let t = store();
    add(&t.svc, "dee", Role::Member, "acme");
    add(&t.svc, "owner2", Role::Owner, "acme");
    add(&t.svc, "adm", Role::Admin, "acme");
    enroll(&t.svc, "dee", T0);
    enroll(&t.svc, "owner2", T0);
    let (adm_secret, _) = enroll(&t.svc, "adm", T0);
    let (_, adm) = login(&t.svc, "adm", Some(&adm_secret), T0 + 30);
    let before = t.svc.list_users(&console(), &UserQuery::default(), T0 + 2).unwrap();
    let head = t.svc.store().audit_head().unwrap();
    let targets = vec!["dee".to_string(), "owner2".to_string(), "adm".to_string()];
    let dry = t.svc.reset_mfa(&adm, &targets, Some("check"), true, T0 + 2).unwrap();
    assert!(dry.dry_run);
    assert_eq!(t.svc.list_users(&console(), &UserQuery::default(), T0 + 2).unwrap(), before);
    assert_eq!(t.svc.store().audit_head().unwrap(), head, "a dry run records nothing");
    let real = t.svc.reset_mfa(&adm, &targets, Some("check"), false, T0 + 2).unwrap();
    let outcomes = |r: &mfadmin::service::ResetReport| r.results.iter().map(|x| x.outcome).collect::<Vec<_>>();
    assert_eq!(outcomes(&dry), outcomes(&real));
    // adm itself is denied: resetting one's own MFA needs the current password (reset_own_mfa).
    assert_eq!(outcomes(&real), vec![ResetOutcome::Reset, ResetOutcome::Denied, ResetOutcome::Denied]);
}

#[test]
fn a_reason_is_required_unless_configured_otherwise() {
    let t = store();
    add(&t.svc, "eve", Role::Member, "acme");
    let err = t.svc.reset_mfa(&console(), &["eve".into()], Some("   "), false, T0).unwrap_err();
    assert!(err.to_string().contains("a reason is required"), "{err}");
    let mut policy = t.svc.policy().clone();
    policy.reason_required = false;
    let relaxed = mfadmin::service::Service::new(t.svc.store().clone(), mfadmin::auth::seal::Sealer::load(&t.ctx.config.key_file()).unwrap(), policy).unwrap();
    assert!(relaxed.reset_mfa(&console(), &["eve".into()], None, false, T0).is_ok());
}

/// Every cell of the role table, through the service, with users logged in for real.
#[test]
fn the_service_follows_the_role_table_in_every_cell() {
    let t = store();
    let mut secrets = std::collections::HashMap::new();
    for actor in Role::ALL {
        for target in Role::ALL {
            let name = format!("{actor}-{target}");
            add(&t.svc, &name, target, "acme");
            secrets.insert(name.clone(), enroll(&t.svc, &name, T0).0);
        }
        let me = format!("{actor}-self");
        add(&t.svc, &me, actor, "acme");
        secrets.insert(me.clone(), enroll(&t.svc, &me, T0).0);
    }
    for actor_role in Role::ALL {
        let me = format!("{actor_role}-self");
        let (_, actor) = login(&t.svc, &me, Some(&secrets[&me]), T0 + 60);
        for target_role in Role::ALL {
            let target = format!("{actor_role}-{target_role}");
            let r = t.svc.reset_mfa(&actor, std::slice::from_ref(&target), Some("table"), false, T0 + 90).unwrap();
            let allowed = policy::may_reset(actor_role, target_role, false).is_ok();
            let expected = if allowed { ResetOutcome::Reset } else { ResetOutcome::Denied };
            assert_eq!(r.results[0].outcome, expected, "{actor_role} resets {target_role}");
        }
        // Oneself: only with the current password (issue 20, item 5), and never an Auditor.
        let r = t.svc.reset_mfa(&actor, std::slice::from_ref(&me), Some("self"), false, T0 + 90).unwrap();
        assert_eq!(r.results[0].outcome, ResetOutcome::Denied, "{actor_role} resets self without its password");
        let r = t.svc.reset_own_mfa(&actor, Some(common::PASSWORD), Some("self"), false, T0 + 90);
        if actor_role == Role::Auditor {
            assert!(matches!(r, Err(mfadmin::error::Error::Forbidden(_))), "{r:?}");
        } else {
            assert_eq!(r.unwrap().results[0].outcome, ResetOutcome::Reset, "{actor_role} resets self");
        }
    }
}

#[test]
fn codes_are_accepted_once_and_wrong_codes_lock_the_factor() {
    let t = store();
    add(&t.svc, "fay", Role::Member, "globex");
    let (secret, codes) = enroll(&t.svc, "fay", T0);
    let challenge = |now| match t.svc.login_password("fay", PASSWORD, "test", now).unwrap() {
        LoginStep::MfaRequired { challenge, .. } => challenge,
        other => panic!("expected an MFA challenge, got {other:?}"),
    };
    // The enrollment code's time step cannot be used again.
    let same_step = totp::code_at(&secret, T0 as u64);
    let err = t.svc.login_code(&challenge(T0 + 1), &same_step, "test", T0 + 1).unwrap_err();
    assert!(err.to_string().contains("already used"), "{err}");
    let now = T0 + 60;
    let code = totp::code_at(&secret, now as u64);
    t.svc.login_code(&challenge(now), &code, "test", now).unwrap();
    assert!(t.svc.login_code(&challenge(now), &code, "test", now).unwrap_err().to_string().contains("already used"));
    // A recovery code works once.
    t.svc.login_code(&challenge(now), &codes[0].to_uppercase(), "test", now).unwrap();
    assert!(t.svc.login_code(&challenge(now), &codes[0], "test", now).is_err());
    assert_eq!(t.svc.get_user(&console(), "fay", now).unwrap().user.recovery_codes_left, 9);
    // Wrong codes: the reused recovery code above was the first failure in a row, so four more
    // make five and lock the factor; the lock refuses even the password step.
    let later = T0 + 300;
    for i in 0..4 {
        let c = challenge(later);
        let err = t.svc.login_code(&c, "000000", "test", later).unwrap_err();
        assert!(matches!(err, Error::Unauthenticated(_)), "attempt {i}: {err}");
    }
    assert_eq!(mfa_of(&t, "fay", later), MfaStatus::Locked);
    let locked = t.svc.login_password("fay", PASSWORD, "test", later).unwrap_err();
    assert!(matches!(locked, Error::Locked { retry_after_secs: 30 }), "{locked}");
    // The lock ends, and a right code works again.
    let after = later + 31;
    let good = totp::code_at(&secret, after as u64);
    t.svc.login_code(&challenge(after), &good, "test", after).unwrap();
    assert_eq!(mfa_of(&t, "fay", after), MfaStatus::Enrolled);
}

#[test]
fn wrong_passwords_and_unknown_users_get_the_same_answer() {
    let t = store();
    add(&t.svc, "gil", Role::Member, "globex");
    let a = t.svc.login_password("gil", "wrong password", "test", T0).unwrap_err().to_string();
    let b = t.svc.login_password("nobody", "wrong password", "test", T0).unwrap_err().to_string();
    assert_eq!(a, b);
    t.svc.set_status(&console(), "gil", mfadmin::domain::user::Status::Disabled, T0).unwrap();
    let c = t.svc.login_password("gil", PASSWORD, "test", T0).unwrap_err().to_string();
    assert_eq!(a, c);
}

#[test]
fn tokens_expire_and_logout_revokes() {
    let t = store();
    add(&t.svc, "hal", Role::Member, "globex");
    let (token, _) = login(&t.svc, "hal", None, T0);
    let (lifetime, idle) = (t.svc.policy().session_secs, t.svc.policy().session_idle_secs);
    // Used now and then, a session lasts its lifetime and no longer.
    let mut at = T0;
    while at + idle / 2 < T0 + lifetime {
        at += idle / 2;
        assert!(t.svc.authenticate(&token, "test", at).is_ok(), "used every {} s, alive at +{} s", idle / 2, at - T0);
    }
    assert!(t.svc.authenticate(&token, "test", T0 + lifetime).unwrap_err().to_string().contains("expired"));
    // Left unused for the idle timeout, it ends before its lifetime.
    let (idle_token, _) = login(&t.svc, "hal", None, T0);
    assert!(t.svc.authenticate(&idle_token, "test", T0 + idle).unwrap_err().to_string().contains("unused"));
    t.svc.logout(&token).unwrap();
    assert!(t.svc.authenticate(&token, "test", T0 + 1).unwrap_err().to_string().contains("unknown or revoked"));
}

#[test]
fn api_keys_act_with_their_role_and_die_with_their_owner_reset() {
    let t = store();
    add(&t.svc, "root2", Role::Admin, "globex");
    let (secret, _) = enroll(&t.svc, "root2", T0);
    let (_, admin) = login(&t.svc, "root2", Some(&secret), T0 + 60);
    assert!(t.svc.create_api_key(&admin, "script", Role::Owner, T0).is_err(), "never above its creator");
    let (key, _) = t.svc.create_api_key(&admin, "script", Role::Helpdesk, T0 + 60).unwrap();
    let as_key = t.svc.authenticate(&key, "http", T0 + 61).unwrap();
    assert_eq!(as_key.role(), Role::Helpdesk);
    assert_eq!(as_key.audit_name(), "apikey:script");
    t.svc.reset_mfa(&console(), &["root2".into()], Some("left"), false, T0 + 62).unwrap();
    assert!(t.svc.authenticate(&key, "http", T0 + 63).is_err());
}

#[test]
fn no_secret_is_readable_in_the_data_directory() {
    let t = store();
    add(&t.svc, "ivy", Role::Member, "globex");
    let e = t.svc.begin_enrollment(&console(), "ivy", "mfadmin", T0).unwrap();
    let raw = totp_rs::Secret::try_from_base32(&e.secret_base32).unwrap().as_ref().to_vec();
    let confirmed = t.svc.confirm_enrollment(&console(), "ivy", &totp::code_at(&raw, T0 as u64), T0).unwrap();
    let (token, _) = login(&t.svc, "ivy", Some(&raw), T0 + 60);
    t.svc.store().flush().unwrap();
    let needles: Vec<Vec<u8>> = vec![
        e.secret_base32.as_bytes().to_vec(),
        raw.clone(),
        confirmed.recovery_codes[1].as_bytes().to_vec(),
        token.as_bytes().to_vec(),
        PASSWORD.as_bytes().to_vec(),
    ];
    let mut files = 0;
    for entry in walk(t.dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        files += 1;
        for n in &needles {
            assert!(!bytes.windows(n.len()).any(|w| w == n.as_slice()), "{} holds a secret in plain text", entry.display());
        }
    }
    assert!(files >= 3, "the store and key files were all read");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out
}

#[test]
fn a_second_process_is_told_who_holds_the_store() {
    let t = store();
    let err = t.ctx.open_service().unwrap_err();
    assert!(matches!(err, Error::StoreLocked { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&t.ctx.config.store_dir().display().to_string()), "{msg}");
    assert!(msg.contains("mfadmin serve"), "{msg}");
}

#[test]
fn a_wrong_or_missing_key_file_is_a_clear_error() {
    let t = store();
    let ctx = t.ctx.clone();
    drop(t.svc);
    let key = ctx.config.key_file();
    let original = std::fs::read(&key).unwrap();
    std::fs::remove_file(&key).unwrap();
    assert!(ctx.open_service().unwrap_err().to_string().contains("is missing"));
    mfadmin::auth::seal::Sealer::create_key_file(&key).unwrap();
    let msg = ctx.open_service().unwrap_err().to_string();
    assert!(msg.contains("does not belong to this store"), "{msg}");
    std::fs::remove_file(&key).unwrap();
    std::fs::write(&key, original).unwrap();
    assert!(ctx.open_service().is_ok());
}

#[test]
fn audit_verify_names_the_first_altered_event() {
    let t = store();
    add(&t.svc, "jo", Role::Member, "globex");
    enroll(&t.svc, "jo", T0);
    t.svc.reset_mfa(&console(), &["jo".into()], Some("lost phone"), false, T0 + 30).unwrap();
    let report = t.svc.audit_verify(&console()).unwrap();
    assert!(report.ok);
    let events = report.events;
    let ctx = t.ctx.clone();
    drop(t.svc);
    // Alter the reason of the reset event in the database file itself. (Opened as the store, which
    // waits for the lock sled lets go of shortly after the service above is dropped.)
    {
        let store = mfadmin::store::sled::SledStore::open(&ctx.config.store_dir()).unwrap();
        store.with_commits_paused(|db| {
            let audit = db.open_tree("audit").unwrap();
            let key = events.to_be_bytes();
            let mut value = audit.get(key).unwrap().unwrap().to_vec();
            let at = value.windows(10).position(|w| w == b"lost phone").unwrap();
            value[at] = b'L';
            audit.insert(key, value).unwrap();
            db.flush().unwrap();
        });
    }
    let svc = ctx.open_service().unwrap();
    let broken = svc.audit_verify(&console()).unwrap();
    assert!(!broken.ok);
    assert_eq!(broken.broken_at, Some(events), "{:?}", broken.problem);
}

#[test]
fn import_is_all_or_nothing_and_names_each_problem() {
    let t = store();
    add(&t.svc, "taken", Role::Member, "acme");
    let row = |name: &str, role: Role, org: &str| mfadmin::service::NewUser {
        username: name.into(),
        email: format!("{name}@x.example"),
        display_name: name.into(),
        role,
        org: org.into(),
        password: None,
    };
    let rows = vec![row("new1", Role::Member, "acme"), row("taken", Role::Member, "acme"), row("new2", Role::Member, "nowhere")];
    let problems = t.svc.import_users(&console(), &rows, false, T0).unwrap().unwrap_err();
    let fields: Vec<_> = problems.iter().map(|p| (p.row, p.field)).collect();
    assert_eq!(fields, vec![(1, "username"), (2, "org")]);
    assert!(t.svc.resolve("new1").unwrap().is_none(), "nothing imported");
    assert_eq!(t.svc.import_users(&console(), &rows[..1], false, T0).unwrap(), Ok(1));
    assert!(t.svc.resolve("new1").unwrap().is_some());
}

#[test]
fn listings_follow_every_write_made_after_the_first_listing() {
    let t = store();
    add(&t.svc, "kim", Role::Member, "acme");
    enroll(&t.svc, "kim", T0);
    let list = |q: UserQuery| t.svc.list_users(&console(), &q, T0 + 5).unwrap();
    assert_eq!(list(UserQuery { mfa: Some(MfaStatus::Enrolled), ..Default::default() }).total, 1);
    t.svc.reset_mfa(&console(), &["kim".into()], Some("r"), false, T0 + 5).unwrap();
    assert_eq!(list(UserQuery { mfa: Some(MfaStatus::Enrolled), ..Default::default() }).total, 0);
    assert_eq!(list(UserQuery { mfa: Some(MfaStatus::MustEnroll), ..Default::default() }).users[0].username, "kim");
    add(&t.svc, "Lee", Role::Helpdesk, "acme");
    t.svc.set_status(&console(), "lee", mfadmin::domain::user::Status::Disabled, T0 + 5).unwrap();
    let found = list(UserQuery { text: Some("LEE@ACME".into()), ..Default::default() });
    assert_eq!(found.total, 1);
    assert_eq!(found.users[0].status, mfadmin::domain::user::Status::Disabled);
    // Paging walks every match once, in order.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = list(UserQuery { limit: Some(1), cursor: cursor.clone(), ..Default::default() });
        seen.extend(page.users.iter().map(|u| u.username.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, ["kim", "Lee"]);
    // A user in another org is invisible to an org's admin.
    add(&t.svc, "gx", Role::Member, "globex");
    add(&t.svc, "ad", Role::Admin, "acme");
    let (secret, _) = enroll(&t.svc, "ad", T0);
    let (_, admin) = login(&t.svc, "ad", Some(&secret), T0 + 60);
    let names: Vec<_> = t.svc.list_users(&admin, &UserQuery::default(), T0 + 60).unwrap().users.into_iter().map(|u| u.username).collect();
    assert_eq!(names, ["ad", "kim", "Lee"]);
}

#[test]
fn a_console_stream_brings_every_visible_user_once_the_first_batch_in_name_order() {
    let t = store();
    for i in (0..30).rev() {
        add(&t.svc, &format!("user{i:02}"), Role::Member, if i % 3 == 0 { "globex" } else { "acme" });
    }
    add(&t.svc, "ad", Role::Admin, "acme");
    let (secret, _) = enroll(&t.svc, "ad", T0);
    let (_, admin) = login(&t.svc, "ad", Some(&secret), T0 + 60);
    let listed = |actor: &Actor| -> Vec<UserView> { t.svc.list_users(actor, &UserQuery::default(), T0 + 60).unwrap().users };

    for actor in [console(), admin.clone()] {
        let mut batches: Vec<(Vec<UserView>, usize, usize)> = Vec::new();
        t.svc.stream_users(&actor, 5, T0 + 60, &mut |users, read, of| {
            batches.push((users, read, of));
            true
        })
        .unwrap();
        let expected = listed(&actor);
        let first: Vec<&str> = batches[0].0.iter().map(|u| u.username.as_str()).collect();
        let names: Vec<&str> = expected.iter().take(5).map(|u| u.username.as_str()).collect();
        assert_eq!(first, names, "the first batch is the first users by name");
        // After it, every user the actor may see comes exactly once, as listing shows them.
        let mut rest: Vec<UserView> = batches[1..].iter().flat_map(|b| b.0.clone()).collect();
        rest.sort_by(|a, b| a.username.cmp(&b.username));
        assert_eq!(rest, expected);
        let (_, read, of) = batches.last().unwrap();
        assert_eq!((read, of), (&31, &31), "the last batch says every user of the store was read");
    }
    assert!(listed(&admin).iter().all(|u| u.org == "acme"), "an org's admin sees its own org only");

    // A member sees only itself; a stream stops when told to.
    add(&t.svc, "mem", Role::Member, "acme");
    let (secret, _) = enroll(&t.svc, "mem", T0);
    let (_, member) = login(&t.svc, "mem", Some(&secret), T0 + 60);
    let mut seen = Vec::new();
    t.svc.stream_users(&member, 5, T0 + 60, &mut |users, _, _| {
        seen.extend(users.into_iter().map(|u| u.username));
        true
    })
    .unwrap();
    assert_eq!(seen, ["mem"]);
    let mut calls = 0;
    t.svc.stream_users(&console(), 5, T0 + 60, &mut |_, _, _| {
        calls += 1;
        false
    })
    .unwrap();
    assert_eq!(calls, 1, "false from the first batch stops the stream");
}

/// A long list is decided on several threads, in shares: the report must be exactly what deciding
/// one target after the other gives — in order, a user listed twice (even in different shares)
/// reset once, unknown names not found — with one audit event per reset and an intact chain.
#[test]
fn a_long_bulk_reset_reports_every_target_in_order_as_one_at_a_time_would() {
    let dir = tempfile::tempdir().unwrap();
    let svc = context(&dir).create_service().unwrap();
    for (name, enforced, _) in mfadmin::demo::ORGS {
        svc.add_org(&console(), name, enforced, T0).unwrap();
    }
    let users = mfadmin::demo::generate(&svc, 9_000, 7, T0).unwrap();
    svc.insert_generated_users(&console(), users.clone(), "test users", T0).unwrap();
    let mut targets: Vec<String> = Vec::new();
    for (i, u) in users.iter().enumerate() {
        targets.push(u.username.clone());
        if i % 1000 == 0 {
            targets.push(format!("ghost{i}"));
        }
    }
    // Repeats from the first share at the very end, and one right after itself.
    targets.extend(users[..40].iter().map(|u| u.username.clone()));
    targets.insert(5, users[4].username.clone());
    let role = console().role();
    let mut seen = std::collections::HashSet::new();
    let expected: Vec<(String, ResetOutcome, Option<String>)> = targets
        .iter()
        .map(|t| match users.iter().find(|u| &u.username == t) {
            None => (t.clone(), ResetOutcome::NotFound, None),
            Some(u) if !seen.insert(u.id) => (t.clone(), ResetOutcome::Skipped, Some("listed more than once".to_string())),
            Some(u) => match policy::may_reset(role, u.role, false) {
                Err(policy::Denied(why)) => (t.clone(), ResetOutcome::Denied, Some(why)),
                Ok(()) if u.mfa.has_factor() => (t.clone(), ResetOutcome::Reset, None),
                Ok(()) => (t.clone(), ResetOutcome::Skipped, Some("MFA was not set up".to_string())),
            },
        })
        .collect();
    let resets = expected.iter().filter(|e| e.1 == ResetOutcome::Reset).count();
    assert!(resets > 1_000, "the demo users include enrolled ones ({resets})");
    let outcomes = |report: &mfadmin::service::ResetReport| -> Vec<(String, ResetOutcome, Option<String>)> {
        report
            .results
            .iter()
            .map(|r| (r.target.clone(), r.outcome, r.detail.clone()))
            .collect()
    };
    let dry = svc.reset_mfa(&console(), &targets, Some("many"), true, T0 + 10).unwrap();
    assert_eq!(outcomes(&dry), expected);
    let events_before = audit_verify_count(&svc);
    let report = svc.reset_mfa(&console(), &targets, Some("many"), false, T0 + 10).unwrap();
    assert_eq!(outcomes(&report), expected);
    for (r, t) in report.results.iter().zip(&targets) {
        let user = users.iter().find(|u| &u.username == t);
        assert_eq!(r.user_id, user.map(|u| u.id), "{t}");
    }
    assert_eq!(audit_verify_count(&svc), events_before + resets as u64, "one audit event per reset, chain intact");
    let again = svc.reset_mfa(&console(), &targets[..100], Some("many"), false, T0 + 20).unwrap();
    assert!(again.results.iter().all(|r| r.outcome != ResetOutcome::Reset), "every listed factor is gone");
}

fn audit_verify_count(svc: &mfadmin::service::Service) -> u64 {
    let report = svc.audit_verify(&console()).unwrap();
    assert!(report.ok, "{report:?}");
    report.events
}

#[test]
fn unused_for_finds_confirmed_factors_with_no_check_since_then_counting_a_never_used_one_from_its_enrollment() {
    const DAY: i64 = 86_400;
    let t = store();
    for name in ["used100", "used10", "never", "again", "fresh", "nofactor"] {
        add(&t.svc, name, Role::Member, "globex");
    }
    let (a, _) = enroll(&t.svc, "used100", T0);
    let (b, _) = enroll(&t.svc, "used10", T0);
    enroll(&t.svc, "never", T0);
    let (d, _) = enroll(&t.svc, "again", T0);
    login(&t.svc, "used100", Some(&a), T0 + 100 * DAY);
    login(&t.svc, "used10", Some(&b), T0 + 10 * DAY);
    // Used once, reset, enrolled again later and never used since: counts from the new enrollment.
    login(&t.svc, "again", Some(&d), T0 + DAY);
    t.svc.reset_mfa(&console(), &["again".into()], Some("new phone"), false, T0 + 2 * DAY).unwrap();
    enroll(&t.svc, "again", T0 + 150 * DAY);
    enroll(&t.svc, "fresh", T0 + 200 * DAY);

    let now = T0 + 300 * DAY;
    let names = |unused_for: Option<i64>, now: i64| -> Vec<String> {
        let q = UserQuery { unused_for: unused_for.map(|d| (d * DAY) as u64), ..Default::default() };
        t.svc.list_users(&console(), &q, now).unwrap().users.into_iter().map(|u| u.username).collect()
    };
    assert_eq!(names(None, now).len(), 6);
    assert_eq!(names(Some(180), now), ["never", "used10", "used100"], "not used since day 120");
    assert_eq!(names(Some(250), now), ["never", "used10"], "not used since day 50");
    assert_eq!(names(Some(295), now), ["never"], "not used since day 5");
    assert_eq!(names(Some(90), now), ["again", "fresh", "never", "used10", "used100"], "not used since day 210");
    // The same query later finds more: the time is the listing's, never a cached one. Enrolled
    // on day 150 is not "unused since day 150"; since day 151 it is.
    assert_eq!(names(Some(180), now + 30 * DAY), ["never", "used10", "used100"]);
    assert_eq!(names(Some(180), now + 31 * DAY), ["again", "never", "used10", "used100"]);
    // A use takes a user out at once; the last use and its client are shown.
    login(&t.svc, "used100", Some(&a), now);
    assert_eq!(names(Some(180), now), ["never", "used10"]);
    let u = t.svc.get_user(&console(), "used100", now).unwrap().user;
    assert_eq!(u.mfa_last_used_at, Some(mfadmin::domain::user::rfc3339(now)));
    assert_eq!(u.mfa_last_client.as_deref(), Some("test"));
    // With other filters, and page by page.
    let q = UserQuery { unused_for: Some((180 * DAY) as u64), text: Some("used".into()), ..Default::default() };
    assert_eq!(t.svc.list_users(&console(), &q, now).unwrap().users.len(), 1);
    let (mut seen, mut cursor) = (Vec::new(), None);
    loop {
        let q = UserQuery { unused_for: Some((90 * DAY) as u64), limit: Some(1), cursor: cursor.clone(), ..Default::default() };
        let page = t.svc.list_users(&console(), &q, now).unwrap();
        assert_eq!(page.total, 4);
        seen.extend(page.users.into_iter().map(|u| u.username));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, ["again", "fresh", "never", "used10"]);
    // Not from memory alone: the filter is not cached under a time of its own.
    assert!(t.svc.list_users_in_memory(&console(), &UserQuery { unused_for: Some(DAY as u64), ..Default::default() }, now).is_none());
}

#[test]
fn an_age_is_days_weeks_or_hours_and_anything_else_says_how_to_write_one() {
    use mfadmin::service::parse_unused_for;
    assert_eq!(parse_unused_for("180d", false), Ok(180 * 86_400));
    assert_eq!(parse_unused_for(" 26W ", false), Ok(26 * 7 * 86_400));
    assert_eq!(parse_unused_for("12h", false), Ok(12 * 3_600));
    assert_eq!(parse_unused_for("3600", true), Ok(3_600), "the HTTP API also takes seconds");
    for bad in ["180", "", "d", "6m", "1.5d", "-3d", "0d", "36501d", "99999999999999999999999d"] {
        let e = parse_unused_for(bad, false).unwrap_err();
        assert!(e.contains("180d") || e.contains("at most"), "{bad:?}: {e}");
    }
}

#[test]
fn an_unlock_lifts_the_lockout_keeps_the_factor_and_follows_the_reset_rules() {
    let t = store();
    add(&t.svc, "gus", Role::Member, "globex");
    add(&t.svc, "hal", Role::Helpdesk, "globex");
    add(&t.svc, "ada", Role::Admin, "globex");
    add(&t.svc, "aud", Role::Auditor, "globex");
    let (secret, _) = enroll(&t.svc, "gus", T0);
    let now = T0 + 300;
    let (_, helpdesk) = login(&t.svc, "hal", None, now);
    let (_, admin) = login(&t.svc, "ada", None, now);
    let (_, auditor) = login(&t.svc, "aud", None, now);
    let challenge = |now| match t.svc.login_password("gus", PASSWORD, "test", now).unwrap() {
        LoginStep::MfaRequired { challenge, .. } => challenge,
        other => panic!("expected an MFA challenge, got {other:?}"),
    };

    // Nothing to unlock yet: a conflict that says so, and nothing audited.
    let err = t.svc.unlock_mfa(&helpdesk, "gus", None, now).unwrap_err();
    assert!(matches!(err, Error::Conflict(_)) && err.to_string().contains("not locked"), "{err}");
    for _ in 0..5 {
        let c = challenge(now);
        t.svc.login_code(&c, "000000", "test", now).unwrap_err();
    }
    assert_eq!(mfa_of(&t, "gus", now), MfaStatus::Locked);

    // Refused as a reset would be (the role table), and one's own never: audited as denied.
    let err = t.svc.unlock_mfa(&auditor, "gus", Some("curious"), now).unwrap_err();
    assert!(matches!(err, Error::Forbidden(_)) && err.to_string().contains("cannot unlock"), "{err}");
    let err = t.svc.unlock_mfa(&helpdesk, "ada", None, now).unwrap_err();
    assert!(matches!(err, Error::Forbidden(_)), "a helpdesk may not reset an admin, so not unlock one: {err}");
    let err = t.svc.unlock_mfa(&admin, "ada", None, now).unwrap_err();
    assert!(err.to_string().contains("your own"), "{err}");
    let err = t.svc.unlock_mfa(&helpdesk, "gus", Some("bad\u{7}reason"), now).unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    assert_eq!(mfa_of(&t, "gus", now), MfaStatus::Locked, "no refusal changed anything");

    // Allowed: the lockout goes at once, the factor and its recovery codes stay.
    let view = t.svc.unlock_mfa(&helpdesk, "gus", Some("locked out, ticket 4712"), now).unwrap();
    assert_eq!(view.mfa, MfaStatus::Enrolled);
    assert_eq!(view.recovery_codes_left, 10);
    let detail = t.svc.get_user(&console(), "gus", now).unwrap();
    assert_eq!(detail.mfa_locked_until, None);
    let good = totp::code_at(&secret, now as u64 + 30);
    t.svc.login_code(&challenge(now + 30), &good, "test", now + 30).unwrap();

    let events: Vec<_> = t
        .svc
        .audit_list(&console(), &AuditQuery { text: None, limit: Some(100_000), ..Default::default() })
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "mfa.unlock")
        .collect();
    let outcomes: Vec<&str> = events.iter().map(|e| e.outcome.as_str()).collect();
    assert_eq!(outcomes.iter().filter(|o| **o == "denied").count(), 3, "{outcomes:?}");
    let done: Vec<_> = events.iter().filter(|e| e.outcome.as_str() == "success").collect();
    assert_eq!(done.len(), 1, "{outcomes:?}");
    assert_eq!(done[0].target.as_deref(), Some("gus"));
    assert_eq!(done[0].actor, "hal");
    assert_eq!(done[0].reason.as_deref(), Some("locked out, ticket 4712"));
    assert!(done[0].detail.as_deref().is_some_and(|d| d.contains("5 wrong codes")), "{:?}", done[0].detail);

    // Unlocked now: a second unlock is the same clear conflict.
    let err = t.svc.unlock_mfa(&console(), "gus", None, now + 31).unwrap_err();
    assert!(matches!(err, Error::Conflict(_)) && err.to_string().contains("not locked"), "{err}");
}
