//! Two `mfadmin serve` nodes (real processes on 127.0.0.1, ephemeral ports) on one PostgreSQL
//! store: overlapping bulk resets from both at once, a change on one node in the other's next
//! listing (also after its listener's connection is killed), one accept for a code sent to both,
//! the lockout counted across both, a node killed during a bulk reset, and a node whose key file
//! does not open the store refusing to start.
//!
//! PostgreSQL is found as in the store suite (`MFADMIN_TEST_PG_URL` or the `PG*` variables that
//! `pg_virtualenv` sets); `tests/pg/run.sh` runs this in a throw-away cluster. Each test has a
//! schema of its own, dropped afterwards.

#[path = "../figures/mod.rs"]
mod figures;
#[path = "../reliability_support/mod.rs"]
mod reliability_support;
#[path = "../pg_support/mod.rs"]
mod pg_support;
use pg_support::pg_settings;

use mfadmin::app::Context;
use mfadmin::config::{Config, StoreKind};
use mfadmin::domain::role::Role;
use mfadmin::service::{Actor, NewUser, Service};
use reliability_support::{check_invariants, copy_dir, http, now, Fixture, Server};
use serde_json::Value;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The lockout threshold both nodes run with.
const THRESHOLD: u32 = 4;


/// A schema of its own in the test database, dropped when the test ends.
struct Schema {
    admin: postgres::Config,
    name: String,
    /// `store.url` for mfadmin: libpq's `key=value` form, with the schema as the search path.
    url: String,
}

impl Schema {
    /// A fresh schema, or `None` (after saying so) when no database is given.
    fn new(test: &str) -> Option<Schema> {
        let Some(admin) = pg_settings() else {
            if std::env::var("MFADMIN_TEST_PG_REQUIRED").is_ok_and(|v| v == "1") {
                panic!("MFADMIN_TEST_PG_REQUIRED=1 but neither MFADMIN_TEST_PG_URL nor PGHOST is set");
            }
            eprintln!("skipped {test}: set MFADMIN_TEST_PG_URL or run tests/pg/run.sh");
            return None;
        };
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!("mfadmin_nodes_{}_{}_{test}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut client = admin.connect(postgres::NoTls).expect("the test database answers");
        client.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}")).unwrap();
        let mut url = String::new();
        for host in admin.get_hosts() {
            match host {
                postgres::config::Host::Tcp(h) => url.push_str(&format!("host={h} ")),
                postgres::config::Host::Unix(p) => url.push_str(&format!("host={} ", p.display())),
            }
        }
        if let Some(port) = admin.get_ports().first() {
            url.push_str(&format!("port={port} "));
        }
        url.push_str(&format!("user={} dbname={} ", admin.get_user().unwrap_or("postgres"), admin.get_dbname().unwrap_or("postgres")));
        if let Some(password) = admin.get_password() {
            url.push_str(&format!("password='{}' ", String::from_utf8_lossy(password).replace('\\', "\\\\").replace('\'', "\\'")));
        }
        url.push_str(&format!("options='-c search_path={name}'"));
        Some(Schema { admin, name, url })
    }

    fn config(&self, data_dir: &Path) -> Config {
        let mut config = reliability_support::config_for(data_dir);
        config.store.kind = StoreKind::Postgres;
        config.store.url = Some(self.url.clone());
        config.lockout.threshold = THRESHOLD;
        config
    }

    /// The service over this store, with the key file in `data_dir`.
    fn open(&self, data_dir: &Path) -> Service {
        Context { config: self.config(data_dir) }.open_service().expect("the PostgreSQL store opens")
    }

    fn admin(&self) -> postgres::Client {
        self.admin.connect(postgres::NoTls).expect("the test database answers")
    }

    /// `mfadmin serve` on this store, with its own data directory (a copy of `data_dir`: the key
    /// file every node shares, and the API key in `token`).
    fn node(&self, data_dir: &Path, envs: &[(&str, &str)]) -> (Server, tempfile::TempDir) {
        let own = tempfile::tempdir().unwrap();
        copy_dir(data_dir, own.path());
        let threshold = THRESHOLD.to_string();
        let mut all = vec![("MFADMIN_STORE_KIND", "postgres"), ("MFADMIN_STORE_URL", self.url.as_str()), ("MFADMIN_LOCKOUT_THRESHOLD", threshold.as_str())];
        all.extend_from_slice(envs);
        (Server::start(own.path(), &all), own)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if let Ok(mut client) = self.admin.connect(postgres::NoTls) {
            let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}

fn json(answer: Option<(u16, Vec<u8>)>, what: &str) -> Value {
    let (status, body) = answer.unwrap_or_else(|| panic!("{what}: no answer"));
    assert_eq!(status, 200, "{what}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{what}: not JSON ({e})"))
}

fn bulk_reset(server: &Server, token: &str, ids: &[String]) -> Value {
    let body = serde_json::json!({"ids": ids, "reason": "two nodes"}).to_string();
    json(http(server.addr, "POST", "/api/v1/mfa/reset", Some(token), Some(&body)), "a bulk reset")
}

fn outcomes(report: &Value, outcome: &str) -> Vec<String> {
    report["results"].as_array().unwrap().iter().filter(|r| r["outcome"] == outcome).map(|r| r["username"].as_str().unwrap().to_string()).collect()
}

fn verify_through(server: &Server, token: &str) {
    let answer = http(server.addr, "GET", "/api/v1/audit/verify", Some(token), None);
    if answer.as_ref().map(|a| a.0) != Some(200) {
        eprintln!("{}", server.drain().join("\n"));
    }
    let report = json(http(server.addr, "GET", "/api/v1/audit/verify", Some(token), None), "audit verify");
    assert_eq!(report["ok"], true, "the chain verifies through {}: {report}", server.addr);
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[test]
fn overlapping_bulk_resets_from_two_nodes_reset_each_user_once() {
    let Some(schema) = Schema::new("bulk") else { return };
    let fixture = Fixture::with_config(300, |d| schema.config(d));
    let (a, _da) = schema.node(fixture.dir.path(), &[("MFADMIN_BATCH_SIZE", "16")]);
    let (b, _db) = schema.node(fixture.dir.path(), &[("MFADMIN_BATCH_SIZE", "16")]);
    let names: Vec<String> = fixture.members.iter().map(|u| u.username.clone()).collect();
    let ids: Vec<String> = fixture.members.iter().map(|u| u.id.to_string()).collect();
    // A takes the first two thirds, B the last two thirds (the middle third both), in opposite
    // orders, at once.
    let for_a: Vec<String> = ids[..200].to_vec();
    let for_b: Vec<String> = ids[100..].iter().rev().cloned().collect();
    let (token_a, token_b) = (fixture.token.clone(), fixture.token.clone());
    let (addr_a, addr_b) = (a.addr, b.addr);
    let ta = std::thread::spawn(move || {
        let body = serde_json::json!({"ids": for_a, "reason": "two nodes"}).to_string();
        json(http(addr_a, "POST", "/api/v1/mfa/reset", Some(&token_a), Some(&body)), "A's bulk reset")
    });
    let tb = std::thread::spawn(move || {
        let body = serde_json::json!({"ids": for_b, "reason": "two nodes"}).to_string();
        json(http(addr_b, "POST", "/api/v1/mfa/reset", Some(&token_b), Some(&body)), "B's bulk reset")
    });
    let (ra, rb) = (ta.join().unwrap(), tb.join().unwrap());
    let (reset_a, reset_b) = (outcomes(&ra, "reset"), outcomes(&rb, "reset"));
    let mut all: Vec<&String> = reset_a.iter().chain(&reset_b).collect();
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!(before, all.len(), "no user was reset by both nodes");
    assert_eq!(all.len(), names.len(), "every user was reset by one node (A {}, B {})", reset_a.len(), reset_b.len());
    for report in [&ra, &rb] {
        let other: Vec<&Value> = report["results"].as_array().unwrap().iter().filter(|r| r["outcome"] != "reset" && r["outcome"] != "skipped").collect();
        assert!(other.is_empty(), "only resets and skips (already reset by the other node): {other:?}");
    }
    figures::report(&format!(
        "pg two nodes: overlapping bulk resets of {} users: {} by A, {} by B, none twice",
        names.len(),
        reset_a.len(),
        reset_b.len()
    ));
    verify_through(&a, &fixture.token);
    verify_through(&b, &fixture.token);
    let svc = schema.open(fixture.dir.path());
    let tally = check_invariants(&svc, &fixture).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tally.reset, names.len());
}

/// Is `name` shown as reset (no longer enrolled) in `server`'s listing?
fn listed_as_reset(server: &Server, token: &str, name: &str) -> bool {
    let page = json(http(server.addr, "GET", &format!("/api/v1/users?q={name}&limit=5"), Some(token), None), "a listing");
    page["users"].as_array().unwrap().iter().any(|u| u["username"] == name && u["mfa"] != "enrolled")
}

/// Reset each of `names` through `a` and time how long until `b` lists it as reset.
fn propagation(a: &Server, b: &Server, token: &str, fixture: &Fixture, names: &[String]) -> Vec<Duration> {
    let mut waits = Vec::new();
    for name in names {
        let id = fixture.members.iter().find(|u| &u.username == name).unwrap().id;
        let answer = json(http(a.addr, "POST", &format!("/api/v1/users/{id}/mfa/reset"), Some(token), Some(r#"{"reason":"moved"}"#)), "a reset");
        assert_eq!(answer["outcome"], "reset", "{answer}");
        let done = Instant::now();
        while !listed_as_reset(b, token, name) {
            assert!(done.elapsed() < Duration::from_secs(10), "{name}, reset through A, is not in B's listing after 10 s");
            std::thread::sleep(Duration::from_millis(1));
        }
        waits.push(done.elapsed());
    }
    waits.sort();
    waits
}

#[test]
fn a_reset_on_one_node_is_in_the_other_nodes_next_listing() {
    let Some(schema) = Schema::new("listing") else { return };
    let fixture = Fixture::with_config(230, |d| schema.config(d));
    let (a, _da) = schema.node(fixture.dir.path(), &[]);
    let (b, _db) = schema.node(fixture.dir.path(), &[]);
    let names: Vec<String> = fixture.members.iter().map(|u| u.username.clone()).collect();
    // Both nodes have read the directory (a listing waits for it).
    for node in [&a, &b] {
        assert!(!listed_as_reset(node, &fixture.token, &names[0]));
    }
    let waits = propagation(&a, &b, &fixture.token, &fixture, &names[..200]);
    let (p50, p99) = (percentile(&waits, 0.5), percentile(&waits, 0.99));
    figures::report(&format!("pg two nodes: a reset on A in B's listing: p50 {p50:?}, p99 {p99:?} over {} tries", waits.len()));
    // A generous bound: the figure is the report; this only catches a node that never catches up.
    assert!(p99 < Duration::from_secs(5), "p99 {p99:?}");

    // Kill B's listener connection: B listens again, and still lists A's changes.
    let listener = format!("mfadmin-listener-{}", b.child.id());
    let mut admin = schema.admin();
    let count_listeners = |admin: &mut postgres::Client| -> i64 {
        admin.query_one("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", &[&listener]).unwrap().get(0)
    };
    assert_eq!(count_listeners(&mut admin), 1, "B has one listener connection, named {listener}");
    let old: i32 = admin.query_one("SELECT pid FROM pg_stat_activity WHERE application_name = $1", &[&listener]).unwrap().get(0);
    let killed: Vec<bool> = admin
        .query("SELECT pg_terminate_backend($1)", &[&old])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(killed, vec![true], "B's listener connection was terminated");
    let after = propagation(&a, &b, &fixture.token, &fixture, &names[200..]);
    let back = Instant::now();
    while admin.query("SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND pid <> $2", &[&listener, &old]).unwrap().is_empty() {
        assert!(back.elapsed() < Duration::from_secs(20), "B did not open its listener again within 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    figures::report(&format!(
        "pg two nodes: after B's listener was killed: p99 {:?} over {} tries; B listened again within {:?} after them",
        percentile(&after, 0.99),
        after.len(),
        back.elapsed()
    ));
}

/// Two enrolled users `vic` and `wes` in the fixture's store, their TOTP secrets, and a validate key.
fn validation_site(schema: &Schema, fixture: &Fixture) -> (Vec<u8>, Vec<u8>, String, i64) {
    let svc = schema.open(fixture.dir.path());
    let console = Actor::console("test");
    let t = now();
    let mut secrets = Vec::new();
    for name in ["vic", "wes"] {
        let new = NewUser {
            username: name.into(),
            email: format!("{name}@acme.example"),
            display_name: name.into(),
            role: Role::Member,
            org: "Acme".into(),
            password: None,
        };
        svc.add_user(&console, new, t).unwrap();
        let e = svc.begin_enrollment(&console, name, "test", t).unwrap();
        let secret = totp_rs::Secret::try_from_base32(&e.secret_base32).unwrap().to_vec();
        svc.confirm_enrollment(&console, name, &mfadmin::auth::totp::code_at(&secret, t as u64), t).unwrap();
        secrets.push(secret);
    }
    let root = svc.act_as(&console, "root", "test").unwrap();
    let (key, _) = svc.create_validate_key(&root, "radius", t).unwrap();
    let wes = secrets.pop().unwrap();
    (secrets.pop().unwrap(), wes, key, t)
}

fn check_code(node: std::net::SocketAddr, key: &str, user: &str, code: &str) -> Value {
    let body = format!(r#"{{"user":"{user}","pass":"{code}"}}"#);
    json(http(node, "POST", "/validate/check", Some(key), Some(&body)), "a validation")
}

#[test]
fn one_code_sent_to_both_nodes_is_accepted_once_and_wrong_codes_lock_across_them() {
    let Some(schema) = Schema::new("codes") else { return };
    let fixture = Fixture::with_config(2, |d| schema.config(d));
    let (vic, wes, key, t) = validation_site(&schema, &fixture);
    let (a, _da) = schema.node(fixture.dir.path(), &[]);
    let (b, _db) = schema.node(fixture.dir.path(), &[]);

    // The next step's code (the enrollment spent this one), to both nodes at the same moment.
    let code = mfadmin::auth::totp::code_at(&vic, t as u64 + 30);
    let start = std::sync::Barrier::new(2);
    let (start, key_ref, code_ref) = (&start, &key, &code);
    let answers: Vec<Value> = std::thread::scope(|s| {
        let sent: Vec<_> = [a.addr, b.addr].map(|node| s.spawn(move || {
            start.wait();
            check_code(node, key_ref, "vic", code_ref)
        })).into_iter().collect();
        sent.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let accepted = answers.iter().filter(|v| v["result"]["authentication"] == "ACCEPT").count();
    assert_eq!(accepted, 1, "exactly one node accepts the code: {answers:?}");
    let refused = answers.iter().find(|v| v["result"]["authentication"] != "ACCEPT").unwrap();
    assert_eq!(refused["detail"]["message"], "wrong otp value. previous otp used again", "{refused}");

    // Wrong codes, split between the nodes and sent at once, all count.
    let wrong: Vec<String> = (1..THRESHOLD).map(|n| format!("{:06}", 100_000 + n)).collect();
    std::thread::scope(|s| {
        for (i, w) in wrong.iter().enumerate() {
            let node = if i % 2 == 0 { a.addr } else { b.addr };
            let key = &key;
            s.spawn(move || assert_eq!(check_code(node, key, "wes", w)["detail"]["message"], "wrong otp value"));
        }
    });
    let svc = schema.open(fixture.dir.path());
    let failures = svc.resolve("wes").unwrap().unwrap().lockout.failures;
    assert_eq!(failures, THRESHOLD - 1, "every wrong code counted, whichever node it reached");
    // One more, on the node that had fewer: the lockout, at the configured count, on both nodes.
    assert_eq!(check_code(b.addr, &key, "wes", "999999")["detail"]["message"], "wrong otp value");
    let right = mfadmin::auth::totp::code_at(&wes, t as u64 + 30);
    for node in [a.addr, b.addr] {
        let v = check_code(node, &key, "wes", &right);
        assert_eq!(v["detail"]["message"], "matching 1 tokens, Failcounter exceeded", "the right code is refused once locked: {v}");
    }
    figures::report(&format!("pg two nodes: one code to both nodes: 1 accept; lockout after {THRESHOLD} wrong codes split between the nodes"));
}

#[test]
fn a_node_killed_during_a_bulk_reset_leaves_nothing_half_done_and_the_other_serves() {
    let Some(schema) = Schema::new("kill") else { return };
    let fixture = Fixture::with_config(300, |d| schema.config(d));
    let (mut a, _da) = schema.node(fixture.dir.path(), &[("MFADMIN_BATCH_SIZE", "8")]);
    let (b, _db) = schema.node(fixture.dir.path(), &[]);
    let names: Vec<String> = fixture.members.iter().map(|u| u.username.clone()).collect();
    let ids: Vec<String> = fixture.members.iter().map(|u| u.id.to_string()).collect();
    let (addr, token, all) = (a.addr, fixture.token.clone(), ids.clone());
    let reset = std::thread::spawn(move || {
        let body = serde_json::json!({"ids": all, "reason": "killed"}).to_string();
        http(addr, "POST", "/api/v1/mfa/reset", Some(&token), Some(&body))
    });
    // Kill A once it has reset some users (and before it is done, most likely).
    let started = Instant::now();
    let mut svc = schema.open(fixture.dir.path());
    loop {
        let done = svc.store().changes_since(0).unwrap().unwrap().users.iter().filter(|u| !u.mfa.has_factor()).count();
        if done >= 20 || started.elapsed() > Duration::from_secs(20) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    a.kill();
    let answered = reset.join().unwrap();
    // B keeps serving: it lists, and resets whatever A did not get to.
    assert!(!json(http(b.addr, "GET", "/api/v1/users?limit=5", Some(&fixture.token), None), "B's listing")["users"].as_array().unwrap().is_empty());
    let rest = bulk_reset(&b, &fixture.token, &ids);
    let by_b = outcomes(&rest, "reset");
    verify_through(&b, &fixture.token);
    drop(svc);
    svc = schema.open(fixture.dir.path());
    let tally = check_invariants(&svc, &fixture).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tally.reset, names.len(), "every user reset once: by A before the kill or by B after");
    figures::report(&format!(
        "pg two nodes: A killed during a bulk reset of {} ({}): {} reset by A, {} by B after; invariants hold",
        names.len(),
        if answered.is_some() { "it had answered" } else { "mid-request" },
        names.len() - by_b.len(),
        by_b.len()
    ));
}

#[test]
fn a_node_whose_key_file_does_not_open_the_store_refuses_to_start() {
    let Some(schema) = Schema::new("key") else { return };
    let fixture = Fixture::with_config(1, |d| schema.config(d));
    let other = tempfile::tempdir().unwrap();
    copy_dir(fixture.dir.path(), other.path());
    std::fs::remove_file(other.path().join("mfadmin.key")).unwrap();
    mfadmin::auth::seal::Sealer::create_key_file(&other.path().join("mfadmin.key")).unwrap();
    let out = reliability_support::mfadmin(other.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("MFADMIN_STORE_KIND", "postgres")
        .env("MFADMIN_STORE_URL", &schema.url)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a node with another key file must not start: {stderr}");
    assert!(stderr.contains("the key file does not belong to this store"), "the message says why: {stderr}");
    // The right key file still opens it.
    let (node, _d) = schema.node(fixture.dir.path(), &[]);
    verify_through(&node, &fixture.token);
}
