//! Remote mode: the same scenarios through the in-process backend and through the HTTP client of
//! a real server on 127.0.0.1 give the same results; the CLI logs in, works and logs out through
//! `mfadmin serve`; and a bulk reset whose server is killed half-way reports per user what
//! happened, checked against the store afterwards.

mod remote_support;

use mfadmin::backend::local::Local;
use mfadmin::backend::remote::{Remote, RemoteOptions};
use mfadmin::backend::{list_all, Backend, Credential, Login};
use mfadmin::cli::Context;
use mfadmin::config::Config;
use mfadmin::domain::mfa::MfaStatus;
use mfadmin::domain::role::Role;
use mfadmin::domain::user::Status;
use mfadmin::http::{AppState, Clock, Settings};
use mfadmin::service::{Actor, AuditQuery, NewUser, ResetOutcome, Service, UserQuery};
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
    let now = mfadmin::cli::now();
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
    log_in_at(backend, username, secret, mfadmin::cli::now())
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
    let code = code_for(&e.secret_base32, mfadmin::cli::now());
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

    // The audit log: what the reset wrote, and the chain.
    seen.push(format!("helpdesk audit: {}", backend.audit_list(&hd, &AuditQuery::default()).unwrap_err()));
    let events = backend.audit_list(&oz, &AuditQuery { text: Some("mfa.".into()), limit: Some(50) }).unwrap();
    let events: Vec<String> = events
        .iter()
        .map(|e| format!("{} {} {:?} {:?} {:?} {:?}", e.actor, e.action, e.target, e.outcome, e.reason, e.detail))
        .collect();
    seen.push(format!("audit: {events:#?}"));
    let verify = backend.audit_verify(&oz).unwrap();
    seen.push(format!("verify: ok={} events={}", verify.ok, verify.events));
    backend.logout(&hd).unwrap();
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
    let remote = Remote::new(&server.url, &RemoteOptions::default()).unwrap();
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

    // A revoked token: the server answers 401, which the console takes back to its login screen.
    let hd = log_in_at(&remote, "hd", &helpdesk_b, mfadmin::cli::now() + 30);
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
    let server = site.serve();
    let url = server.url.as_str();

    // While the server holds the store, the local CLI says what to do instead.
    let (ok, _, err) = site.run(&["user", "list"], "", &[]);
    assert!(!ok && err.contains("in use by another mfadmin process"), "{err}");

    // Password, then the code; the token lands in a file only its owner can read.
    let code = code_for(&secret, mfadmin::cli::now());
    let (ok, _, err) = site.run(&["login", "--remote", url, "--username", "alice", "--password-stdin"], &format!("{}\n{code}\n", remote_support::PASSWORD), &[]);
    assert!(ok, "{err}");
    assert!(err.contains("Logged in") && !err.contains(&std::fs::read_to_string(&site.token_file).unwrap()), "{err}");
    assert_eq!(mode_of(&site.token_file), 0o600, "the token file is for its owner only");

    let users = json(&site.ok(&["user", "list", "--remote", url, "--mfa", "enrolled", "--output", "json"], ""));
    let names: Vec<String> = users.as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap().to_string()).collect();
    assert!(names.len() > 3, "{names:?}");
    assert!(users.as_array().unwrap().iter().all(|u| u["org"] == "acme"), "alice sees her org only");
    let targets: Vec<&str> = names.iter().filter(|n| *n != "alice").take(2).map(String::as_str).collect();

    let mut args = vec!["mfa", "reset", "--remote", url, "--reason", "cli remote", "--yes", "--output", "json"];
    args.extend(&targets);
    args.push("no-such-user");
    let (ok, out, _) = site.run(&args, "", &[]);
    assert!(!ok, "a not-found target makes the exit code 1");
    let report = json(&out);
    let outcomes: Vec<&str> = report["results"].as_array().unwrap().iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["reset", "reset", "not_found"], "{report}");
    for name in &targets {
        let status = site.ok(&["mfa", "status", "--remote", url, name], "");
        assert!(status.contains("must_enroll"), "{status}");
    }
    let events = json(&site.ok(&["audit", "list", "--remote", url, "--filter", "cli remote", "--output", "json"], ""));
    assert_eq!(events.as_array().unwrap().len(), 2, "{events}");
    assert!(events.as_array().unwrap().iter().all(|e| e["actor"] == "alice" && e["source"] == "http"));

    // Commands that work on the store itself refuse --remote and say why.
    let (ok, _, err) = site.run(&["user", "add", "x", "--email", "x@acme.example", "--org", "Acme", "--remote", url], "", &[]);
    assert!(!ok && err.contains("no remote form"), "{err}");

    // Logout revokes the token on the server and deletes the file.
    let token = std::fs::read_to_string(&site.token_file).unwrap();
    let token = json(&token)["token"].as_str().unwrap().to_string();
    site.ok(&["logout"], "");
    assert!(!site.token_file.exists());
    let (ok, _, err) = site.run(&["user", "list", "--remote", url], "", &[]);
    assert!(!ok && err.contains("not logged in"), "{err}");
    let (ok, _, err) = site.run(&["user", "list", "--remote", url], "", &[("MFADMIN_TOKEN", &token)]);
    assert!(!ok && err.contains("log in again"), "the revoked token no longer works: {err}");
}

#[test]
fn a_bulk_reset_whose_server_is_killed_reports_each_user_as_the_store_has_it() {
    let site = Site::new();
    let secret = site.init(6000);
    let mut server = site.serve();
    let url = server.url.clone();
    let code = code_for(&secret, mfadmin::cli::now());
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
    let now = mfadmin::cli::now();
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
