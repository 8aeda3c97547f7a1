//! Concurrency: for a bounded time, threads reset overlapping sets of users (on the service, and
//! through a real server on 127.0.0.1:0), enroll and confirm, log in with password and code, and
//! switch the org's MFA enforcement. Then: no operation hung (every thread ends before a deadline),
//! every reported reset, confirmation and login has exactly one audit event and no event lacks its
//! report, and the final state of every user and the org is the one the last audited operation left
//! (the audit order is a serial order the results agree with).
//!
//! `MFADMIN_CONCURRENCY_SECS` (default 4) sets how long; `MFADMIN_CONCURRENCY_SEED` repeats a run.

mod figures;
mod reliability_support;

use mfadmin::auth::totp;
use mfadmin::domain::audit::Outcome;
use mfadmin::domain::mfa::MfaState;
use mfadmin::domain::role::Role;
use mfadmin::app::Clock;
use mfadmin::http::{AppState, Settings};
use mfadmin::service::{Actor, LoginStep, NewUser, ResetOutcome, Service};
use mfadmin::store::SessionKind;
use reliability_support::{config_for, env_number, Rng};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

const MEMBERS: usize = 24;
const LOGIN_USERS: usize = 3;
const PASSWORD: &str = "correct horse battery";

#[derive(Default)]
struct Reports {
    resets: HashMap<Uuid, usize>,
    confirms: HashMap<Uuid, usize>,
    logins: HashMap<Uuid, usize>,
    enforcements: usize,
    operations: usize,
}

#[test]
fn concurrent_resets_enrollments_logins_and_enforcement_agree_with_a_serial_order() {
    let secs = env_number("MFADMIN_CONCURRENCY_SECS", 4);
    let (seed_rng, seed) = Rng::from_env("MFADMIN_CONCURRENCY_SEED");
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path());
    config.server.auth_rate_per_client = 0;
    config.server.auth_rate_per_account = 0;
    config.reset.batch_size = 3;
    let svc = mfadmin::app::Context { config: config.clone() }.create_service().unwrap();
    let console = Actor::console("cli");
    // A clock that moves one second per operation: every operation has its own "now".
    let clock = Arc::new(AtomicI64::new(1_800_000_000));
    let tick = {
        let clock = clock.clone();
        move || clock.fetch_add(1, Ordering::SeqCst)
    };
    svc.add_org(&console, "Acme", false, tick()).unwrap();
    let mut rows = Vec::new();
    for i in 0..MEMBERS {
        rows.push(NewUser {
            username: format!("u{i:02}"),
            email: format!("u{i:02}@acme.example"),
            display_name: format!("U {i}"),
            role: Role::Member,
            org: "Acme".into(),
            password: None,
        });
    }
    svc.import_users(&console, &rows, false, tick()).unwrap().unwrap();
    for i in 0..LOGIN_USERS {
        let new = NewUser {
            username: format!("login{i}"),
            email: format!("login{i}@acme.example"),
            display_name: "L".into(),
            role: Role::Member,
            org: "Acme".into(),
            password: Some(PASSWORD.into()),
        };
        svc.add_user(&console, new, tick()).unwrap();
    }
    svc.add_user(
        &console,
        NewUser { username: "root".into(), email: "root@acme.example".into(), display_name: "R".into(), role: Role::Owner, org: "Acme".into(), password: None },
        tick(),
    )
    .unwrap();
    let root = svc.act_as(&console, "root", "test").unwrap();
    let (api_key, _) = svc.create_api_key(&root, "conc", Role::Owner, tick()).unwrap();
    let members: Vec<String> = (0..MEMBERS).map(|i| format!("u{i:02}")).collect();
    let logins: Vec<String> = (0..LOGIN_USERS).map(|i| format!("login{i}")).collect();
    // The login users' secrets, as their phones know them; only the login thread enrolls them.
    let mut secrets = HashMap::new();
    for name in members.iter().chain(&logins) {
        let t = tick();
        let e = svc.begin_enrollment(&console, name, "t", t).unwrap();
        let secret = totp_rs::Secret::try_from_base32(&e.secret_base32).unwrap().to_vec();
        svc.confirm_enrollment(&console, name, &totp::code_at(&secret, t as u64), t).unwrap();
        secrets.insert(name.clone(), secret);
    }
    let audit_before = count_events(&svc);

    // A real server over the same service, on loopback, stopped at the end.
    let server_clock = clock.clone();
    let state = AppState::new(svc, Settings::from_config(&config), Clock::from_fn(move || server_clock.fetch_add(1, Ordering::SeqCst)));
    let svc: Arc<Service> = state.service().clone();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(mfadmin::http::run(listener, state, async move { let _ = stopped.await; }, Duration::from_secs(10)));

    let reports = Arc::new(Mutex::new(Reports::default()));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (done_tx, done_rx) = std::sync::mpsc::channel::<&'static str>();
    let mut workers = Vec::new();
    let ids: HashMap<String, Uuid> = members.iter().chain(&logins).map(|n| (n.clone(), svc.resolve(n).unwrap().unwrap().id)).collect();
    let resettable: Vec<String> = members.iter().chain(&logins).cloned().collect();
    let failures = Arc::new(AtomicUsize::new(0));

    let spawn = |name: &'static str, mut body: Box<dyn FnMut(&mut Rng) + Send>, rng: Rng, workers: &mut Vec<std::thread::JoinHandle<()>>| {
        let done = done_tx.clone();
        let mut rng = rng;
        workers.push(std::thread::spawn(move || {
            while Instant::now() < deadline {
                body(&mut rng);
            }
            let _ = done.send(name);
        }));
    };
    let mut seeds = seed_rng.clone();
    for _ in 0..3 {
        let (svc, reports, pool, tick) = (svc.clone(), reports.clone(), resettable.clone(), tick.clone());
        spawn("reset", Box::new(move |rng: &mut Rng| {
            let n = 1 + rng.below(6) as usize;
            let targets: Vec<String> = (0..n).map(|_| rng.pick(&pool).clone()).collect();
            let report = svc.reset_mfa(&Actor::console("cli"), &targets, Some("concurrency"), false, tick()).unwrap();
            let mut r = reports.lock().unwrap();
            r.operations += 1;
            for res in report.results.iter().filter(|r| r.outcome == ResetOutcome::Reset) {
                *r.resets.entry(res.user_id.unwrap()).or_default() += 1;
            }
        }), Rng::new(seeds.next()), &mut workers);
    }
    for _ in 0..2 {
        let (reports, pool, ids, key) = (reports.clone(), resettable.clone(), ids.clone(), api_key.clone());
        spawn("http reset", Box::new(move |rng: &mut Rng| {
            let n = 1 + rng.below(6) as usize;
            let targets: Vec<String> = (0..n).map(|_| ids[rng.pick(&pool)].to_string()).collect();
            let body = serde_json::json!({"ids": targets, "reason": "concurrency over http"}).to_string();
            let (status, answer) = reliability_support::http(addr, "POST", "/api/v1/mfa/reset", Some(&key), Some(&body)).expect("the server answers");
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
            let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
            let mut r = reports.lock().unwrap();
            r.operations += 1;
            for res in answer["results"].as_array().unwrap().iter().filter(|r| r["outcome"] == "reset") {
                *r.resets.entry(res["user_id"].as_str().unwrap().parse().unwrap()).or_default() += 1;
            }
        }), Rng::new(seeds.next()), &mut workers);
    }
    for _ in 0..2 {
        let (svc, reports, pool, tick, failures) = (svc.clone(), reports.clone(), members.clone(), tick.clone(), failures.clone());
        spawn("enroll", Box::new(move |rng: &mut Rng| {
            let name = rng.pick(&pool).clone();
            let console = Actor::console("cli");
            let t = tick();
            let Ok(e) = svc.begin_enrollment(&console, &name, "t", t) else {
                reports.lock().unwrap().operations += 1;
                return;
            };
            let secret = totp_rs::Secret::try_from_base32(&e.secret_base32).unwrap().to_vec();
            let t = tick();
            let confirmed = svc.confirm_enrollment(&console, &name, &totp::code_at(&secret, t as u64), t);
            let mut r = reports.lock().unwrap();
            r.operations += 2;
            match confirmed {
                Ok(_) => *r.confirms.entry(svc.resolve(&name).unwrap().unwrap().id).or_default() += 1,
                Err(_) => {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }), Rng::new(seeds.next()), &mut workers);
    }
    {
        let (svc, reports, pool, tick, secrets) = (svc.clone(), reports.clone(), logins.clone(), tick.clone(), secrets.clone());
        spawn("login", Box::new(move |rng: &mut Rng| {
            let name = rng.pick(&pool).clone();
            let t = tick();
            let step = svc.login_password(&name, PASSWORD, "test", t);
            let session = match step {
                Ok(LoginStep::Done(s)) => Some(*s),
                Ok(LoginStep::MfaRequired { challenge, .. }) => {
                    let t = tick();
                    svc.login_code(&challenge, &totp::code_at(&secrets[&name], t as u64), "test", t).ok()
                }
                // After a reset, in an org that now enforces MFA: enroll again with a new secret,
                // which this thread does not keep (so later logins of this user stop at the code).
                Ok(LoginStep::EnrollmentRequired { .. }) | Err(_) => None,
            };
            let mut r = reports.lock().unwrap();
            r.operations += 1;
            if session.is_some() {
                *r.logins.entry(svc.resolve(&name).unwrap().unwrap().id).or_default() += 1;
            }
        }), Rng::new(seeds.next()), &mut workers);
    }
    {
        let (svc, reports, tick) = (svc.clone(), reports.clone(), tick.clone());
        spawn("enforce", Box::new(move |rng: &mut Rng| {
            let on = rng.below(2) == 1;
            svc.set_mfa_enforced(&Actor::console("cli"), Some("Acme"), on, tick()).unwrap();
            let mut r = reports.lock().unwrap();
            r.operations += 1;
            r.enforcements += 1;
            drop(r);
            std::thread::sleep(Duration::from_millis(5));
        }), Rng::new(seeds.next()), &mut workers);
    }
    drop(done_tx);
    // No deadlock: every worker ends within a minute of the deadline.
    let count = workers.len();
    for _ in 0..count {
        let left = (deadline + Duration::from_secs(60)).saturating_duration_since(Instant::now());
        done_rx.recv_timeout(left).unwrap_or_else(|_| panic!("a worker is stuck (deadlock?) a minute past the deadline; seed {seed}"));
    }
    for w in workers {
        w.join().unwrap();
    }
    let _ = stop.send(());
    runtime.block_on(async { tokio::time::timeout(Duration::from_secs(20), server).await }).expect("the server stops").unwrap().unwrap();

    // The audit log is the serial order; every report has its event and every event its report.
    let console = Actor::console("cli");
    let (problems, chain) = svc.check(&console).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert!(chain.ok, "{chain:?}");
    let r = reports.lock().unwrap();
    let mut resets: HashMap<Uuid, usize> = HashMap::new();
    let mut confirms: HashMap<Uuid, usize> = HashMap::new();
    let mut logins_seen: HashMap<Uuid, usize> = HashMap::new();
    // Per user: the last event that decides the factor, and the seq of the last reset and login.
    let mut last_factor: HashMap<Uuid, &'static str> = HashMap::new();
    let mut last_reset: HashMap<Uuid, u64> = HashMap::new();
    let mut last_login: HashMap<Uuid, u64> = HashMap::new();
    let mut enforcements = 0;
    let mut last_enforcement = None;
    // Each event must be possible in the state the events before it left (a serial history):
    // a reset needs a factor, a begin no confirmed factor, a confirm a begun enrollment.
    let mut impossible = Vec::new();
    let mut step = |id: Uuid, seq: u64, action: &str, state: &mut HashMap<Uuid, &'static str>| {
        let before = state.get(&id).copied().unwrap_or("enrolled");
        let (allowed, after) = match action {
            "mfa.reset" => (before != "reset", "reset"),
            "mfa.enroll.begin" => (before != "enrolled", "pending"),
            _ => (before == "pending", "enrolled"),
        };
        if !allowed {
            impossible.push(format!("event {seq}: {action} on {id} while {before}"));
        }
        state.insert(id, after);
    };
    let mut events = 0;
    svc.store()
        .scan_audit(false, &mut |e| {
            events += 1;
            if e.seq <= audit_before {
                return true;
            }
            let d = &e.draft;
            let ok = d.outcome == Outcome::Success;
            if let Some(id) = d.target_id {
                match (d.action.as_str(), ok) {
                    ("mfa.reset", true) => {
                        *resets.entry(id).or_default() += 1;
                        step(id, e.seq, "mfa.reset", &mut last_factor);
                        last_reset.insert(id, e.seq);
                    }
                    ("mfa.enroll.begin", true) => {
                        step(id, e.seq, "mfa.enroll.begin", &mut last_factor);
                    }
                    ("mfa.enroll.confirm", true) => {
                        step(id, e.seq, "mfa.enroll.confirm", &mut last_factor);
                        if d.source == "cli" {
                            *confirms.entry(id).or_default() += 1;
                        }
                    }
                    ("auth.login", true) => {
                        *logins_seen.entry(id).or_default() += 1;
                        last_login.insert(id, e.seq);
                    }
                    _ => {}
                }
            }
            if d.action == "org.enforce_mfa" {
                enforcements += 1;
                last_enforcement = d.detail.clone();
            }
            true
        })
        .unwrap();
    assert!(impossible.is_empty(), "the audit log is not a serial history (seed {seed}):\n{}", impossible.join("\n"));
    assert_eq!(r.resets, resets, "reported resets and audited resets differ (seed {seed})");
    assert_eq!(r.confirms, confirms, "reported and audited confirmations differ (seed {seed})");
    assert_eq!(r.logins, logins_seen, "reported and audited logins differ (seed {seed})");
    assert_eq!(r.enforcements, enforcements, "reported and audited enforcement changes differ");
    let org = svc.store().get_org("acme").unwrap().unwrap();
    assert_eq!(Some(if org.mfa_enforced { "on" } else { "off" }.to_string()), last_enforcement, "the org is as the last change left it");
    for (name, id) in &ids {
        let u = svc.store().get_user(*id).unwrap().unwrap();
        let state = match u.mfa {
            MfaState::Enrolled { .. } => "enrolled",
            MfaState::Pending { .. } => "pending",
            MfaState::NotEnrolled | MfaState::MustEnroll => "reset",
        };
        let last = last_factor.get(id).copied().unwrap_or("enrolled");
        assert_eq!(state, last, "{name} is {state} but the last audited change made it {last} (seed {seed})");
        let codes = if state == "enrolled" { 10 } else { 0 };
        assert!(u.recovery_codes.len() <= codes, "{name}: {} recovery codes while {state}", u.recovery_codes.len());
        let live = svc.store().sessions_of(*id).unwrap().into_iter().filter(|(_, s)| s.kind == SessionKind::Session).count();
        if live > 0 {
            assert!(
                last_login.get(id) > last_reset.get(id),
                "{name} has a session from before its last reset (login at {:?}, reset at {:?}; seed {seed})",
                last_login.get(id),
                last_reset.get(id)
            );
        }
    }
    let total_resets: usize = resets.values().sum();
    figures::report(&format!(
        "concurrency: {} operations in {secs} s by {count} threads (5 resetting, 2 over HTTP), {total_resets} resets, {} confirmations, {} logins, {enforcements} enforcement changes, {} refused confirmations; {events} audit events, all matched; seed {seed}",
        r.operations,
        confirms.values().sum::<usize>(),
        logins_seen.values().sum::<usize>(),
        failures.load(Ordering::Relaxed)
    ));
}

fn count_events(svc: &Service) -> u64 {
    svc.store().audit_head().unwrap().map_or(0, |(seq, _)| seq)
}
