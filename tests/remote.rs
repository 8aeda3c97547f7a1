//! Remote mode: the same scenarios through the in-process backend and through the HTTP client of
//! a real server on 127.0.0.1 give the same results; the CLI logs in, works and logs out through
//! `mfadmin serve`; and a bulk reset whose server is killed half-way reports per user what
//! happened, checked against the store afterwards.

mod remote_support;

use mfadmin::backend::local::Local;
use mfadmin::backend::remote::{Remote, RemoteOptions};
use mfadmin::backend::{list_all, Backend, Credential, Login};
use mfadmin::app::Context;
use mfadmin::config::Config;
use mfadmin::domain::mfa::MfaStatus;
use mfadmin::domain::role::Role;
use mfadmin::domain::user::Status;
use mfadmin::app::Clock;
use mfadmin::http::{AppState, Settings};
use mfadmin::service::{Actor, AuditFormat, AuditQuery, AuditView, ImportOptions, NewUser, ResetOutcome, Service, UserQuery};
use remote_support::{code_for, mode_of, Site};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

const PASSWORD: &str = "correct horse battery";

/// A store made the same way every time: Acme (MFA not enforced) with an owner and a helpdesk
/// who log in with a code, an admin, enrolled members and one without MFA; Globex beside it.
/// Returns the service and the TOTP secrets of the owner and the helpdesk (raw bytes).
fn site(dir: &std::path::Path) -> (Service, Vec<u8>, Vec<u8>) {
    let mut config = Config { data_dir: Some(dir.to_path_buf()), ..Config::default() };
    config.server.auth_rate_per_client = 0;
    config.server.auth_rate_per_account = 0;
    let service = Context { config }.create_service().unwrap();
    let console = Actor::console("test");
    let now = mfadmin::app::now();
    service.add_org(&console, "Acme", false, now).unwrap();
    service.add_org(&console, "Globex", false, now).unwrap();
    let add = |name: &str, role: Role, org: &str| {
        let new = NewUser {
            username: name.into(),
            email: format!("{name}@{org}.example"),
            display_name: format!("{name} Person"),
            role,
            org: org.into(),
            password: Some(PASSWORD.into()),
        };
        service.add_user(&console, new, now).unwrap();
    };
    let enroll = |name: &str| {
        let e = service.begin_enrollment(&console, name, "mfadmin", now).unwrap();
        let secret = totp_rs::Secret::try_from_base32(&e.secret_base32).unwrap().as_ref().to_vec();
        // The previous step's code, so that logins in the test can use the current one.
        let code = mfadmin::auth::totp::code_at(&secret, (now - 30) as u64);
        service.confirm_enrollment(&console, name, &code, now).unwrap();
        secret
    };
    add("oz", Role::Owner, "Acme");
    add("hd", Role::Helpdesk, "Acme");
    add("ada", Role::Admin, "Acme");
    for i in 1..=6 {
        add(&format!("m0{i}"), Role::Member, "Acme");
    }
    add("nomfa", Role::Member, "Acme");
    add("gus", Role::Member, "Globex");
    let owner = enroll("oz");
    let helpdesk = enroll("hd");
    for name in ["ada", "m01", "m02", "m03", "m04", "m05", "m06", "gus"] {
        enroll(name);
    }
    (service, owner, helpdesk)
}

/// `mfadmin::http::run` over `service` on 127.0.0.1:0, in a thread of its own; stops when dropped.
struct Server {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(service: Service) -> Server {
        let mut config = Config::default();
        config.server.auth_rate_per_client = 0;
        config.server.auth_rate_per_account = 0;
        let state = AppState::new(service, Settings::from_config(&config), Clock::system());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let shutdown = async move {
                    let _ = stopped.await;
                };
                mfadmin::http::run(listener, state, shutdown, Duration::from_secs(5)).await.unwrap();
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(30)).expect("the server listens");
        assert!(addr.ip().is_loopback());
        Server { url: format!("http://{addr}"), stop: Some(stop), thread: Some(thread) }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Log in with password, then the current TOTP code.
fn log_in(backend: &dyn Backend, username: &str, secret: &[u8]) -> Credential {
    log_in_at(backend, username, secret, mfadmin::app::now())
}

/// Log in with password, then the TOTP code of `time` (a code is accepted once).
fn log_in_at(backend: &dyn Backend, username: &str, secret: &[u8], time: i64) -> Credential {
    match backend.login_password(username, PASSWORD).unwrap() {
        Login::MfaRequired { challenge } => {
            let code = mfadmin::auth::totp::code_at(secret, time as u64);
            backend.login_code(&challenge, &code).unwrap()
        }
        other => panic!("{username} has MFA: expected a code step, got {other:?}"),
    }
}

/// Everything the scenarios observe, with what differs between two stores (ids, times, hashes,
/// and the door in the audit log: `tui`/`cli` or `http`) left out.
fn scenario(backend: &dyn Backend, owner_secret: &[u8], helpdesk_secret: &[u8], ids: &dyn Fn(&str) -> String) -> Vec<String> {
    let mut seen = Vec::new();
    let hd = log_in(backend, "hd", helpdesk_secret);
    let oz = log_in(backend, "oz", owner_secret);
    seen.push(format!("who: {} {} {:?} / {} {}", hd.name, hd.role, hd.org, oz.name, oz.role));

    // Lists with filters, one page at a time and whole.
    for query in [
        UserQuery::default(),
        UserQuery { text: Some("m0".into()), ..UserQuery::default() },
        UserQuery { role: Some(Role::Member), mfa: Some(MfaStatus::Enrolled), ..UserQuery::default() },
        UserQuery { text: Some("PERSON".into()), limit: Some(3), ..UserQuery::default() },
    ] {
        let page = backend.list_users(&hd, &query).unwrap();
        let names: Vec<String> = page.users.iter().map(|u| format!("{}:{}:{}", u.username, u.role, u.mfa)).collect();
        seen.push(format!("list {query:?}: total {} next {} {names:?}", page.total, page.next_cursor.is_some()));
    }
    let all: Vec<String> = list_all(backend, &hd, &UserQuery::default()).unwrap().into_iter().map(|u| u.username).collect();
    seen.push(format!("all: {all:?}"));

    // A bulk reset with every outcome: reset, skipped (no factor; twice listed), denied (an
    // admin, for a helpdesk), not found (another org's user; an unknown id; an unknown name).
    let targets: Vec<String> = vec![
        ids("m01"),
        "m02".into(),
        ids("nomfa"),
        ids("ada"),
        ids("gus"),
        "00000000-0000-4000-8000-000000000000".into(),
        "nobody".into(),
        ids("m01"),
    ];
    let plan = backend.reset_mfa(&hd, &targets, Some("parity"), true, &mut |_, _| {}).unwrap();
    let mut progress = Vec::new();
    let report = backend.reset_mfa(&hd, &targets, Some("parity"), false, &mut |d, t| progress.push((d, t))).unwrap();
    for (label, r) in [("plan", &plan), ("reset", &report)] {
        let rows: Vec<String> = r
            .results
            .iter()
            .map(|x| format!("{}|{:?}|{:?}|{:?}", x.username.as_deref().unwrap_or("-"), x.outcome, x.detail, x.mfa_after))
            .collect();
        seen.push(format!("{label} dry_run={}: {rows:?}", r.dry_run));
    }
    // How finely progress is reported differs (units of work in-process, targets over HTTP); both end full.
    seen.push(format!("progress ends full: {:?}", progress.last().map(|(d, t)| d == t)));
    let missing_reason = backend.reset_mfa(&hd, &targets[..1], None, false, &mut |_, _| {}).unwrap_err();
    seen.push(format!("no reason: {missing_reason}"));

    // Enroll a user at the admin's side, with a wrong code first.
    let e = backend.begin_enrollment(&hd, "nomfa").unwrap();
    let wrong = backend.confirm_enrollment(&hd, "nomfa", "000000").map(|_| ()).unwrap_err();
    seen.push(format!("wrong code: {wrong}"));
    let code = code_for(&e.secret_base32, mfadmin::app::now());
    let confirmed = backend.confirm_enrollment(&hd, "nomfa", &code).unwrap();
    seen.push(format!("enrolled {} with {} recovery codes", e.username, confirmed.recovery_codes.len()));
    let detail = backend.user_detail(&hd, "nomfa").unwrap();
    seen.push(format!("nomfa: {} {}", detail.user.mfa, detail.user.recovery_codes_left));

    // Changes the helpdesk may not make, and one the owner may.
    seen.push(format!("disable ada: {}", backend.set_status(&hd, "ada", Status::Disabled).unwrap_err()));
    seen.push(format!("disable m03: {}", backend.set_status(&oz, "m03", Status::Disabled).unwrap().status.as_str()));
    seen.push(format!("unknown user: {}", backend.user_detail(&hd, "nobody").unwrap_err()));
    let orgs: Vec<String> = backend.orgs(&oz).unwrap().iter().map(|o| format!("{}:{}:{}:{}", o.name, o.mfa_enforced, o.users, o.enrolled)).collect();
    seen.push(format!("orgs: {orgs:?}"));
    let org = backend.set_mfa_enforced(&oz, None, true).unwrap();
    seen.push(format!("enforced: {} {}", org.name, org.mfa_enforced));

    seen.extend(user_admin(backend, &oz, &hd));

    // The audit log: what the reset wrote, and the chain.
    seen.push(format!("helpdesk audit: {}", backend.audit_list(&hd, &AuditQuery::default()).unwrap_err()));
    let events = backend.audit_list(&oz, &AuditQuery { text: Some("mfa.".into()), limit: Some(50), ..Default::default() }).unwrap();
    let events: Vec<String> = events
        .iter()
        .map(|e| format!("{} {} {:?} {:?} {:?} {:?}", e.actor, e.action, e.target, e.outcome, e.reason, e.detail))
        .collect();
    seen.push(format!("audit: {events:#?}"));
    let verify = backend.audit_verify(&oz).unwrap();
    seen.push(format!("verify: ok={} events={}", verify.ok, verify.events));
    seen.extend(exports(backend, &oz, &hd));
    backend.logout(&hd).unwrap();
    seen
}

const CSV_HEADER: &str = "username,email,display_name,role,org\n";

/// Adding users, setting passwords, importing CSV and adding an org, as the owner `oz` and the
/// helpdesk `hd`; what each did to the store is read back through the backend.
fn user_admin(backend: &dyn Backend, oz: &Credential, hd: &Credential) -> Vec<String> {
    let mut seen = Vec::new();
    let total = |b: &dyn Backend| b.list_users(oz, &UserQuery::default()).unwrap().total;
    let new_user = |name: &str, email: &str, role: Role, org: &str, password: Option<&str>| NewUser {
        username: name.into(),
        email: email.into(),
        display_name: format!("{name} New"),
        role,
        org: org.into(),
        password: password.map(str::to_string),
    };

    // user add: one that works, then each way it is refused.
    let added = backend.add_user(oz, new_user("newbie", "newbie@acme.example", Role::Member, "Acme", Some(PASSWORD))).unwrap();
    seen.push(format!("added: {} {} {} {} {} {}", added.username, added.display_name, added.role, added.org, added.mfa, added.status.as_str()));
    let detail = backend.user_detail(oz, "newbie").unwrap().user;
    assert_eq!((detail.id, detail.number), (added.id, added.number), "the user is in the store");
    for (label, who, new) in [
        ("taken", oz, new_user("newbie", "other@acme.example", Role::Member, "Acme", None)),
        ("email taken", oz, new_user("newbie2", "NEWBIE@acme.example", Role::Member, "Acme", None)),
        ("bad email", oz, new_user("newbie3", "not-an-email", Role::Member, "Acme", None)),
        ("weak password", oz, new_user("newbie4", "newbie4@acme.example", Role::Member, "Acme", Some("short"))),
        ("other org", oz, new_user("newbie5", "newbie5@globex.example", Role::Member, "Globex", None)),
        ("helpdesk adds an admin", hd, new_user("boss", "boss@acme.example", Role::Admin, "Acme", None)),
    ] {
        seen.push(format!("add refused, {label}: {}", backend.add_user(who, new).unwrap_err()));
    }

    // set-password: the new password works, the old one no longer does.
    backend.set_password(oz, "newbie", "another fine passphrase").unwrap();
    let step = backend.login_password("newbie", "another fine passphrase").unwrap();
    seen.push(format!("newbie logs in: {}", format!("{step:?}").split([' ', '(', '{']).next().unwrap()));
    seen.push(format!("old password: {}", backend.login_password("newbie", PASSWORD).unwrap_err()));
    seen.push(format!("helpdesk sets ada's: {}", backend.set_password(hd, "ada", "another fine passphrase").unwrap_err()));
    seen.push(format!("nobody's: {}", backend.set_password(oz, "nobody", "another fine passphrase").unwrap_err()));
    seen.push(format!("too short: {}", backend.set_password(oz, "newbie", "short").unwrap_err()));

    // import: a check changes nothing; then all of a good file; none of a bad one, unless told.
    let good = format!("{CSV_HEADER}imp1,imp1@acme.example,Imp One,member,Acme\nimp2,imp2@acme.example,Imp Two,helpdesk,Acme\n");
    let bad = format!(
        "{CSV_HEADER}imp3,imp3@acme.example,Imp Three,member,Acme\nimp4,imp4@acme.example,Imp Four,wizard,Acme\n\
         imp5,,Imp Five,member,Acme\nimp6,imp6@globex.example,Imp Six,member,Globex\nimp1,dup@acme.example,Dup,member,Acme\n"
    );
    let check = ImportOptions { check_only: true, skip_invalid: false };
    let skip = ImportOptions { check_only: false, skip_invalid: true };
    let before = total(backend);
    seen.push(format!("check good: {:?}", backend.import_users(oz, good.as_bytes(), check).unwrap()));
    assert_eq!(total(backend), before, "a check imports nothing");
    seen.push(format!("imp1 after the check: {}", backend.user_detail(oz, "imp1").unwrap_err()));
    seen.push(format!("import good: {:?}", backend.import_users(oz, good.as_bytes(), ImportOptions::default()).unwrap()));
    assert_eq!(total(backend), before + 2);
    let imp2 = backend.user_detail(oz, "imp2").unwrap().user;
    seen.push(format!("imp2: {} {} {} {}", imp2.display_name, imp2.role, imp2.org, imp2.mfa));
    seen.push(format!("import bad: {}", backend.import_users(oz, bad.as_bytes(), ImportOptions::default()).unwrap_err()));
    let both = ImportOptions { check_only: true, skip_invalid: true };
    seen.push(format!("check bad, skipping: {:?}", backend.import_users(oz, bad.as_bytes(), both).unwrap()));
    assert_eq!(total(backend), before + 2, "a bad file imports nothing, checked or not");
    seen.push(format!("import bad, skipping: {:?}", backend.import_users(oz, bad.as_bytes(), skip).unwrap()));
    assert_eq!(total(backend), before + 3, "the one good row of the bad file");
    seen.push(format!("imp3: {}", backend.user_detail(oz, "imp3").unwrap().user.username));
    let headerless = backend.import_users(oz, b"name,mail\nx,y\n", ImportOptions::default()).unwrap_err();
    seen.push(format!("no header: {headerless}"));
    let above = format!("{CSV_HEADER}imp7,imp7@acme.example,Imp Seven,admin,Acme\n");
    seen.push(format!("helpdesk imports an admin: {}", backend.import_users(hd, above.as_bytes(), ImportOptions::default()).unwrap_err()));
    assert_eq!(total(backend), before + 3);

    // org add: the service lets only the console operator, so a logged-in owner is refused.
    seen.push(format!("owner adds an org: {}", backend.add_org(oz, "Initech", false).unwrap_err()));
    seen.push(format!("orgs after: {:?}", backend.orgs(oz).unwrap().iter().map(|o| o.name.clone()).collect::<Vec<_>>()));
    seen
}

/// The owner's export in both formats: the whole log it may read, oldest first, the same events
/// as the list; the helpdesk may not export.
fn exports(backend: &dyn Backend, oz: &Credential, hd: &Credential) -> Vec<String> {
    let mut seen = Vec::new();
    let mut jsonl = Vec::new();
    backend.audit_export(oz, AuditFormat::Jsonl, &mut jsonl).unwrap();
    let exported: Vec<AuditView> =
        String::from_utf8(jsonl).unwrap().lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    let mut listed = backend.audit_list(oz, &AuditQuery { text: None, limit: Some(1000), ..Default::default() }).unwrap();
    listed.reverse();
    assert!(exported.len() > 20, "{}", exported.len());
    assert_eq!(exported, listed, "the export is the log the owner may read, oldest first");
    let mut csv = Vec::new();
    backend.audit_export(oz, AuditFormat::Csv, &mut csv).unwrap();
    let mut reader = csv::Reader::from_reader(&csv[..]);
    assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), mfadmin::service::AUDIT_CSV_HEADER);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), exported.len());
    for (row, e) in rows.iter().zip(&exported) {
        assert_eq!((&row[0], &row[3], &row[12]), (e.seq.to_string().as_str(), e.action.as_str(), e.hash.as_str()));
    }
    let lines: Vec<String> = exported
        .iter()
        .map(|e| format!("{} {} {} {:?} {:?} {:?} {:?}", e.seq, e.actor, e.action, e.target, e.outcome, e.reason, e.detail))
        .collect();
    seen.push(format!("export: {lines:#?}"));
    seen.push(format!("helpdesk export: {}", backend.audit_export(hd, AuditFormat::Csv, &mut Vec::new()).unwrap_err()));
    seen
}

#[test]
fn the_same_scenarios_give_the_same_results_in_process_and_over_http() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (local_service, owner_a, helpdesk_a) = site(dir_a.path());
    let (served_service, owner_b, helpdesk_b) = site(dir_b.path());
    let local_service = Arc::new(local_service);
    let id_of = |service: &Service, name: &str| service.resolve(name).unwrap().unwrap().id.to_string();
    let local_ids: std::collections::HashMap<String, String> =
        ["m01", "nomfa", "ada", "gus"].iter().map(|n| (n.to_string(), id_of(&local_service, n))).collect();
    let remote_ids: std::collections::HashMap<String, String> =
        ["m01", "nomfa", "ada", "gus"].iter().map(|n| (n.to_string(), id_of(&served_service, n))).collect();

    let local = Local::new(local_service.clone(), "cli", "mfadmin");
    let in_process = scenario(&local, &owner_a, &helpdesk_a, &|n| local_ids[n].clone());

    let server = Server::start(served_service);
    let remote = Remote::new(&server.url, &RemoteOptions { client: Some("cli"), ..RemoteOptions::default() }).unwrap();
    assert_eq!(remote.badge(), Some(format!("remote: {}", server.url)));
    let over_http = scenario(&remote, &owner_b, &helpdesk_b, &|n| remote_ids[n].clone());

    assert_eq!(in_process.len(), over_http.len());
    for (a, b) in in_process.iter().zip(&over_http) {
        assert_eq!(a, b, "in-process and over HTTP differ");
    }
    // The scenario saw every outcome, so the comparison covers them.
    let reset = in_process.iter().find(|l| l.starts_with("reset dry_run=false")).unwrap();
    for outcome in ["Reset", "Skipped", "Denied", "NotFound"] {
        assert!(reset.contains(outcome), "{outcome} missing: {reset}");
    }

    // Orgs are the console operator's to create: in-process it may; a server refuses everyone,
    // with a 403 from the service that says where to do it instead.
    let console = mfadmin::backend::local::console("cli");
    let initech = local.add_org(&console, "Initech", true).unwrap();
    assert_eq!((initech.name.as_str(), initech.mfa_enforced), ("Initech", true));
    assert!(local.orgs(&console).unwrap().iter().any(|o| o.name == "Initech"));
    let oz = log_in_at(&remote, "oz", &owner_b, mfadmin::app::now() + 30);
    match remote.add_org(&oz, "Initech", true).unwrap_err() {
        mfadmin::error::Error::Remote { status: 403, detail } => assert!(detail.contains("`mfadmin org add NAME`"), "{detail}"),
        other => panic!("expected a 403 from the service: {other:?}"),
    }
    // The server records what the remote CLI did with the source it named; in-process, `cli`.
    let mut jsonl = Vec::new();
    remote.audit_export(&oz, AuditFormat::Jsonl, &mut jsonl).unwrap();
    let sources: std::collections::BTreeSet<String> = String::from_utf8(jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<AuditView>(l).unwrap())
        .filter(|e| e.actor == "oz" || e.actor == "hd")
        .map(|e| e.source)
        .collect();
    assert_eq!(sources.into_iter().collect::<Vec<_>>(), ["http:cli"]);
    let local_sources: std::collections::BTreeSet<String> = local_service
        .audit_list(&Actor::console("test"), &AuditQuery { text: None, limit: Some(1000), ..Default::default() })
        .unwrap()
        .into_iter()
        .filter(|e| e.actor == "oz" || e.actor == "hd")
        .map(|e| e.source)
        .collect();
    assert_eq!(local_sources.into_iter().collect::<Vec<_>>(), ["cli"]);

    // A revoked token: the server answers 401, which the console takes back to its login screen.
    let hd = log_in_at(&remote, "hd", &helpdesk_b, mfadmin::app::now() + 30);
    remote.logout(&hd).unwrap();
    let ended = remote.list_users(&hd, &UserQuery::default()).unwrap_err();
    assert!(ended.needs_login(), "{ended:?}");
    drop(server);
    // And a server that is gone is "unreachable", not a crash.
    let gone = remote.list_users(&hd, &UserQuery::default()).unwrap_err();
    assert!(matches!(gone, mfadmin::error::Error::Unreachable { .. }), "{gone:?}");
}

#[test]
fn a_remote_that_is_not_this_machine_needs_https_or_an_explicit_allowance() {
    let refused = Remote::new("http://192.0.2.10:7070", &RemoteOptions::default()).unwrap_err().to_string();
    assert!(refused.contains("--allow-plain-http") && refused.contains("https://"), "{refused}");
    let allowed = RemoteOptions { allow_plain_http: true, ..RemoteOptions::default() };
    assert!(Remote::new("http://192.0.2.10:7070", &allowed).is_ok());
    assert!(Remote::new("http://localhost:7070", &RemoteOptions::default()).is_ok());
    assert!(Remote::new("http://[::1]:7070", &RemoteOptions::default()).is_ok());
    let bad = Remote::new("ftp://127.0.0.1", &RemoteOptions::default()).unwrap_err().to_string();
    assert!(bad.contains("http or https"), "{bad}");
    assert!(Remote::new("not a url", &RemoteOptions::default()).unwrap_err().to_string().contains("not a URL"));
    // A CA file that is missing, or holds no certificate, is named with what is wrong.
    let dir = tempfile::tempdir().unwrap();
    let missing = RemoteOptions { ca_file: Some(dir.path().join("nope.pem")), ..RemoteOptions::default() };
    let e = Remote::new("https://mfadmin.example:7070", &missing).unwrap_err().to_string();
    assert!(e.contains("remote_ca_file") && e.contains("nope.pem"), "{e}");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let e = Remote::new("https://mfadmin.example:7070", &RemoteOptions { ca_file: Some(empty), ..RemoteOptions::default() })
        .unwrap_err()
        .to_string();
    assert!(e.contains("holds no certificate"), "{e}");
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn cli_login_list_reset_and_logout_through_a_running_server() {
    let site = Site::new();
    let secret = site.init(200);
    let key = site.ok(&["apikey", "create", "--user", "alice", "--name", "nightly", "--role", "helpdesk"], "");
    let server = site.serve();
    let url = server.url.as_str();

    // While the server holds the store, a command that works on the store itself says what holds it.
    let (ok, _, err) = site.run(&["apikey", "create", "--user", "alice", "--name", "second"], "", &[]);
    assert!(!ok && err.contains("in use by another mfadmin process: the server `mfadmin serve` (PID"), "{err}");

    // Password, then the code; the token lands in a file only its owner can read.
    let code = code_for(&secret, mfadmin::app::now());
    let (ok, _, err) = site.run(&["login", "--remote", url, "--username", "alice", "--password-stdin"], &format!("{}\n{code}\n", remote_support::PASSWORD), &[]);
    assert!(ok, "{err}");
    assert!(err.contains("Logged in") && !err.contains(&std::fs::read_to_string(&site.token_file).unwrap()), "{err}");
    assert_eq!(mode_of(&site.token_file), 0o600, "the token file is for its owner only");

    let users = json(&site.ok(&["user", "list", "--remote", url, "--mfa", "enrolled", "--output", "json"], ""));
    let names: Vec<String> = users.as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap().to_string()).collect();
    assert!(names.len() > 3, "{names:?}");
    assert!(users.as_array().unwrap().iter().all(|u| u["org"] == "Acme"), "alice sees her org only, named as it was given");
    let targets: Vec<&str> = names.iter().filter(|n| *n != "alice").take(2).map(String::as_str).collect();

    let mut args = vec!["mfa", "reset", "--remote", url, "--reason", "cli remote", "--yes", "--output", "json"];
    args.extend(&targets);
    args.push("no-such-user");
    let (ok, _, err) = site.run(&args, "", &[]);
    assert!(!ok && err.contains("nothing was changed") && err.contains("no-such-user"), "a list naming no one changes nothing: {err}");
    assert!(site.ok(&["mfa", "status", "--remote", url, targets[0]], "").contains(": enrolled"));
    args.push("--skip-missing");
    let (ok, out, err) = site.run(&args, "", &[]);
    assert!(ok, "--skip-missing resets the others: {err}");
    let report = json(&out);
    let outcomes: Vec<&str> = report["results"].as_array().unwrap().iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["reset", "reset", "not_found"], "{report}");
    for name in &targets {
        let status = site.ok(&["mfa", "status", "--remote", url, name], "");
        assert!(status.contains("must_enroll"), "{status}");
    }
    let events = json(&site.ok(&["audit", "list", "--remote", url, "--filter", "cli remote", "--output", "json"], ""));
    assert_eq!(events.as_array().unwrap().len(), 2, "{events}");
    assert!(events.as_array().unwrap().iter().all(|e| e["actor"] == "alice" && e["source"] == "http:cli"));

    // user add, set-password and import work through the server, on the store it holds.
    let add = ["user", "add", "xavier", "--email", "xavier@acme.example", "--org", "Acme", "--role", "helpdesk", "--password-stdin", "--remote", url];
    let out = site.ok(&add, "a long enough password\n");
    assert!(out.starts_with("Added xavier (#"), "{out}");
    let xavier = json(&site.ok(&["user", "show", "xavier", "--remote", url, "--output", "json"], ""));
    assert_eq!((xavier["user"]["org"].as_str(), xavier["user"]["role"].as_str()), (Some("Acme"), Some("helpdesk")));
    let (ok, _, err) = site.run(&add, "a long enough password\n", &[]);
    assert!(!ok && err.contains("already taken"), "{err}");
    site.ok(&["user", "set-password", "xavier", "--password-stdin", "--remote", url], "another long password\n");
    let csv = site.tmp.path().join("people.csv");
    std::fs::write(&csv, "username,email,display_name,role,org\nyan,yan@acme.example,Yan Y,member,Acme\nzoe,zoe@acme.example,Zoe Z,auditor,Acme\n").unwrap();
    let csv = csv.to_str().unwrap();
    let out = site.ok(&["user", "import", csv, "--check-only", "--remote", url], "");
    assert!(out.contains("2 users would be imported") && out.contains("nothing was changed"), "{out}");
    let (ok, _, err) = site.run(&["user", "show", "zoe", "--remote", url], "", &[]);
    assert!(!ok && err.contains("not found"), "the check imported nothing: {err}");
    assert!(site.ok(&["user", "import", csv, "--remote", url], "").contains("Imported 2 users"));
    let (ok, _, err) = site.run(&["user", "import", csv, "--remote", url], "", &[]);
    assert!(!ok && err.contains("line 2, column username") && err.contains("line 3, column username"), "{err}");
    // org add: the server's service refuses, and says where it can be done.
    let (ok, _, err) = site.run(&["org", "add", "Initech", "--remote", url], "", &[]);
    assert!(!ok && err.contains("console operator") && err.contains("`mfadmin org add NAME`"), "{err}");

    // audit export through the server: JSON Lines on stdout; CSV to a file, the same events.
    let remote_export = site.ok(&["audit", "export", "--remote", url], "");
    let exported: Vec<Value> = remote_export.lines().map(json).collect();
    let added = exported.iter().find(|e| e["action"] == "user.add" && e["target"] == "xavier").expect("the user.add event");
    assert_eq!((added["actor"].as_str(), added["source"].as_str()), (Some("alice"), Some("http:cli")));
    assert!(exported.iter().all(|e| e["org"] == "acme"), "alice exports her org's events only");
    let file = site.tmp.path().join("audit.csv");
    let (ok, _, err) = site.run(&["audit", "export", "--remote", url, "--format", "csv", "--file", file.to_str().unwrap()], "", &[]);
    assert!(ok && err.contains(&format!("Exported {} events to", exported.len())), "{err}");
    let mut reader = csv::Reader::from_path(&file).unwrap();
    let seqs: Vec<String> = reader.records().map(|r| r.unwrap()[0].to_string()).collect();
    assert_eq!(seqs, exported.iter().map(|e| e["seq"].to_string()).collect::<Vec<_>>());

    // API keys are listed and revoked through the server too.
    let keys = json(&site.ok(&["apikey", "list", "--remote", url, "--output", "json"], ""));
    let nightly = keys.as_array().unwrap().iter().find(|k| k["name"] == "nightly").expect("the key is listed").clone();
    assert_eq!((nightly["owner"].as_str(), nightly["org"].as_str()), (Some("alice"), Some("Acme")));
    assert!(!keys.to_string().contains(key.trim()), "a list never shows a key itself");
    let id = nightly["id"].as_str().unwrap();
    assert!(site.ok(&["apikey", "revoke", id, "--remote", url], "").contains("Revoked"));
    assert!(!site.ok(&["apikey", "list", "--remote", url], "").contains("nightly"));
    let (ok, _, err) = site.run(&["user", "list", "--remote", url], "", &[("MFADMIN_TOKEN", key.trim())]);
    assert!(!ok && err.contains("log in again"), "the revoked key no longer works: {err}");

    // Logout revokes the token on the server and deletes the file.
    let token = std::fs::read_to_string(&site.token_file).unwrap();
    let token = json(&token)["token"].as_str().unwrap().to_string();
    site.ok(&["logout"], "");
    assert!(!site.token_file.exists());
    let (ok, _, err) = site.run(&["user", "list", "--remote", url], "", &[]);
    assert!(!ok && err.contains("not logged in"), "{err}");
    let (ok, _, err) = site.run(&["user", "list", "--remote", url], "", &[("MFADMIN_TOKEN", &token)]);
    assert!(!ok && err.contains("log in again"), "the revoked token no longer works: {err}");

    // With the server stopped, the local export holds the very same lines (and more: every org's,
    // and the logout's).
    drop(server);
    let local_export = site.ok(&["audit", "export"], "");
    let local_acme: Vec<&str> = local_export.lines().filter(|l| json(l)["org"] == "acme").collect();
    assert_eq!(local_acme[..exported.len()], remote_export.lines().collect::<Vec<_>>());
}

#[test]
fn a_long_audit_log_is_exported_in_pieces_exactly_as_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let (service, owner, _) = site(dir.path());
    // Hundreds of events: the export crosses the edge of the server's pieces (64 KiB) twice.
    let console = Actor::console("test");
    for i in 0..400 {
        let status = if i % 2 == 0 { Status::Disabled } else { Status::Active };
        service.set_status(&console, "m01", status, mfadmin::app::now()).unwrap();
    }
    let server = Server::start(service);
    let remote = Remote::new(&server.url, &RemoteOptions::default()).unwrap();
    let oz = log_in(&remote, "oz", &owner);
    let (mut jsonl, mut csv) = (Vec::new(), Vec::new());
    remote.audit_export(&oz, AuditFormat::Jsonl, &mut jsonl).unwrap();
    remote.audit_export(&oz, AuditFormat::Csv, &mut csv).unwrap();
    assert!(jsonl.len() > 2 * 64 * 1024, "{} bytes", jsonl.len());
    // Streamed: the server does not know the length when it starts answering.
    let response = reqwest::blocking::Client::new()
        .get(format!("{}/api/v1/audit/export?format=csv", server.url))
        .bearer_auth(oz.token().unwrap())
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(response.headers().get("content-length").is_none(), "{:?}", response.headers());
    assert_eq!(response.bytes().unwrap(), csv, "the same bytes on every export");
    drop(server);

    // The store, opened in this process once the server is gone, exports the same bytes.
    let service = Context { config: Config { data_dir: Some(dir.path().to_path_buf()), ..Config::default() } }.open_service().unwrap();
    let as_oz = service.act_as(&console, "oz", "test").unwrap();
    let (mut local_jsonl, mut local_csv) = (Vec::new(), Vec::new());
    let count = service.audit_export_to(&as_oz, AuditFormat::Jsonl, &mut local_jsonl).unwrap();
    assert!(count > 400 && count == jsonl.iter().filter(|&&b| b == b'\n').count() as u64, "{count}");
    service.audit_export_to(&as_oz, AuditFormat::Csv, &mut local_csv).unwrap();
    assert!(local_jsonl == jsonl, "the JSON Lines differ");
    assert!(local_csv == csv, "the CSV differs");
}

#[test]
fn a_bulk_reset_whose_server_is_killed_reports_each_user_as_the_store_has_it() {
    let site = Site::new();
    let secret = site.init(6000);
    let mut server = site.serve();
    let url = server.url.clone();
    let code = code_for(&secret, mfadmin::app::now());
    site.ok(&["login", "--remote", &url, "--username", "alice", "--password-stdin"], &format!("{}\n{code}\n", remote_support::PASSWORD));
    let users = json(&site.ok(&["user", "list", "--remote", &url, "--mfa", "enrolled", "--output", "json"], ""));
    let ids: Vec<String> = users
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["username"] != "alice")
        .map(|u| u["id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.len() > 4 * mfadmin::backend::RESET_BATCH, "enough users for several batches: {}", ids.len());

    // Start the reset; kill the server as soon as the first batch is confirmed.
    let mut child = site
        .command()
        .args(["mfa", "reset", "-", "--yes", "--reason", "killed server", "--output", "json", "--remote", &url])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(ids.join("\n").as_bytes()).unwrap();
    }
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    loop {
        let line = rx.recv_timeout(Duration::from_secs(120)).expect("the reset reports progress");
        let progressed = line.starts_with("progress:");
        log.push(line);
        if progressed {
            break;
        }
    }
    server.kill();
    let out = child.wait_with_output().unwrap();
    log.extend(rx.iter());
    assert!(!out.status.success(), "an interrupted reset exits 1: {log:?} {}", String::from_utf8_lossy(&out.stdout).chars().take(3000).collect::<String>());
    let report = json(&String::from_utf8_lossy(&out.stdout));
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), ids.len(), "one result per user");

    // The server is gone: open the store in this process and compare, user by user.
    let service = Context { config: Config { data_dir: Some(site.data.clone()), ..Config::default() } }.open_service().unwrap();
    let console = Actor::console("test");
    let now = mfadmin::app::now();
    let mut counts = std::collections::HashMap::new();
    for (r, id) in results.iter().zip(&ids) {
        assert_eq!(r["target"], id.as_str());
        let outcome: ResetOutcome = serde_json::from_value(r["outcome"].clone()).unwrap();
        *counts.entry(outcome).or_insert(0) += 1;
        let mfa = service.get_user(&console, id, now).unwrap().user.mfa;
        match outcome {
            ResetOutcome::Reset => assert_ne!(mfa, MfaStatus::Enrolled, "{id} was reported reset: {r}"),
            ResetOutcome::Failed => {
                assert_eq!(mfa, MfaStatus::Enrolled, "{id} was reported not reset: {r}");
                assert!(r["detail"].as_str().unwrap().starts_with("not sent"), "{r}");
            }
            ResetOutcome::Unknown => assert!(r["detail"].as_str().unwrap().contains("mfadmin mfa status"), "{r}"),
            other => panic!("{id}: unexpected {other:?}: {r}"),
        }
    }
    assert!(counts.get(&ResetOutcome::Reset).copied().unwrap_or(0) >= mfadmin::backend::RESET_BATCH, "{counts:?}");
    assert!(counts.get(&ResetOutcome::Failed).copied().unwrap_or(0) > 0, "the kill stopped the reset half-way: {counts:?}");
    assert!(service.audit_verify(&console).unwrap().ok, "the audit chain is intact after the kill");
}
