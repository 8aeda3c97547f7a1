//! A real server on 127.0.0.1:0: in-process with `run`, and the `mfadmin serve` binary under SIGTERM.
//! Every server here binds loopback only and is stopped by the test, with bounded waits.

mod http_support;
mod serve_support;

use http_support::{http, Harness, PASSWORD};
use mfadmin::app::Context;
use mfadmin::domain::role::Role;
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_server_finishes_requests_in_flight_at_shutdown_and_flushes_the_store() {
    let h = Harness::new();
    h.add_org("Acme", false);
    h.add_user("Acme", "oz", Role::Owner, true);
    let mut ids = Vec::new();
    for i in 0..40 {
        let name = format!("m{i:02}");
        ids.push(h.add_user("Acme", &name, Role::Member, false).id.to_string());
        h.enroll(&name);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    assert!(addr.ip().is_loopback());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(mfadmin::http::run(
        listener,
        h.state.clone(),
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(10),
    ));

    // Over the socket: log in, list, and see the headers.
    let login = json!({"username": "oz", "password": PASSWORD}).to_string();
    let r = http(addr, "POST", "/api/v1/auth/login", &[], Some(&login)).await;
    let token = r.ok()["token"].as_str().unwrap().to_string();
    let auth = format!("Bearer {token}");
    let r = http(addr, "GET", "/api/v1/users?limit=5&sort=username", &[("authorization", &auth)], None).await;
    assert_eq!(r.ok()["users"].as_array().unwrap().len(), 5);
    assert!(r.header("x-request-id").is_some());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let r = http(addr, "GET", "/api/v1/users/nope", &[("authorization", &auth)], Some("{")).await;
    r.problem(400);

    // A bulk reset whose body is still arriving when the shutdown begins.
    let body = json!({"ids": ids, "reason": "shutdown test"}).to_string();
    let (head_part, tail_part) = body.split_at(body.len() / 2);
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/mfa/reset HTTP/1.1\r\nhost: {addr}\r\nauthorization: {auth}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(head_part.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    conn.write_all(tail_part.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut raw)).await.expect("an answer in time").unwrap();
    let reply = http_support::parse_response(&raw);
    let report = reply.ok();
    assert_eq!(report["summary"]["reset"], 40, "{report}");

    // The server stops by itself, and no longer accepts connections.
    tokio::time::timeout(Duration::from_secs(20), server).await.expect("the server stops").unwrap().unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());

    // Everything is on disk: open the store again, as the next process would.
    let Harness { dir, config, state, app, .. } = h;
    drop(app);
    drop(state);
    let service = Context { config }.open_service().expect("the store opens again (the server let go of it)");
    let console = Harness::console();
    let page = service.list_users(&console, &Default::default(), mfadmin::app::now()).unwrap();
    let enrolled = page.users.iter().filter(|u| u.mfa.as_str() == "enrolled").count();
    assert_eq!(enrolled, 0, "all 40 resets are durable");
    assert!(service.audit_verify(&console).unwrap().ok);
    drop(service);
    drop(dir);
}

/// The `mfadmin serve` binary with a store made by the CLI.
struct Served {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    lines: std::sync::mpsc::Receiver<String>,
}

fn mfadmin(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mfadmin"));
    cmd.arg("--data-dir").arg(dir).env_remove("RUST_LOG").env_remove("MFADMIN_CONFIG").env("NO_COLOR", "1");
    // The server's socket is then in the data directory, this test's own.
    cmd.env_remove("XDG_RUNTIME_DIR").env_remove("RUNTIME_DIRECTORY");
    cmd
}

fn start(dir: &std::path::Path, extra: &[&str]) -> Served {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (child, addr, lines) = serve_support::spawn_serve(mfadmin(dir), extra, deadline);
    Served { child, addr, lines }
}

/// A test that fails half-way still stops its server.
impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Served {
    /// SIGTERM, then the exit status and the rest of the log (bounded in time).
    fn terminate(&mut self) -> (std::process::ExitStatus, Vec<String>) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("mfadmin serve did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut rest = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
            rest.push(l);
        }
        (status, rest)
    }
}

#[tokio::test]
async fn the_binary_serves_logs_json_lines_and_exits_0_on_sigterm_with_the_store_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let demo = mfadmin(dir.path()).args(["demo", "--users", "40"]).output().unwrap();
    assert!(demo.status.success(), "{}", String::from_utf8_lossy(&demo.stderr));
    let key = mfadmin(dir.path()).args(["apikey", "create", "--user", "owner", "--name", "test", "--role", "owner"]).output().unwrap();
    assert!(key.status.success(), "{}", String::from_utf8_lossy(&key.stderr));
    let key = String::from_utf8(key.stdout).unwrap().trim().to_string();

    let mut served = start(dir.path(), &["--log-format", "json"]);
    let addr = served.addr;
    assert!(addr.ip().is_loopback());
    let auth = format!("Bearer {key}");
    let health = http(addr, "GET", "/healthz", &[], None).await.ok();
    assert_eq!(health["status"], "ok");
    let page = http(addr, "GET", "/api/v1/users?mfa=enrolled&limit=1", &[("authorization", &auth)], None).await.ok();
    let user = page["users"][0].clone();
    let body = json!({"reason": "binary test"}).to_string();
    let uri = format!("/api/v1/users/{}/mfa/reset", user["id"].as_str().unwrap());
    let reset = http(addr, "POST", &uri, &[("authorization", &auth), ("x-request-id", "reset-1")], Some(&body)).await;
    assert_eq!(reset.header("x-request-id"), Some("reset-1"));
    assert_eq!(reset.ok()["outcome"], "reset");

    // While the server runs it owns the store; the CLI goes through its local socket (in the data
    // directory here: no runtime directory is set), and a command that needs the store itself
    // names the server.
    let listed = mfadmin(dir.path()).args(["-v", "user", "list", "--output", "json"]).output().unwrap();
    let said = String::from_utf8_lossy(&listed.stderr);
    assert!(listed.status.success(), "{said}");
    assert!(said.contains(&format!("local socket {}", dir.path().join("mfadmin.sock").display())), "{said}");
    let busy = mfadmin(dir.path()).args(["apikey", "create", "--user", "owner", "--name", "again"]).output().unwrap();
    assert!(!busy.status.success());
    assert!(String::from_utf8_lossy(&busy.stderr).contains("in use by another mfadmin process: the server `mfadmin serve`"));

    let (status, log) = served.terminate();
    assert!(status.success(), "exit status {status:?}; log: {log:#?}");
    assert!(log.iter().any(|l| l.contains("store flushed")), "{log:#?}");
    assert!(!dir.path().join("mfadmin.sock").exists(), "the server took its socket file away");

    // After exit, the store opens and shows the reset; the audit chain verifies.
    let verify = mfadmin(dir.path()).args(["audit", "verify"]).output().unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
    let show = mfadmin(dir.path()).args(["user", "show", user["username"].as_str().unwrap(), "--output", "json"]).output().unwrap();
    let shown: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_ne!(shown["user"]["mfa"], "enrolled");
    assert_eq!(shown["user"]["id"], user["id"]);
}

#[test]
fn request_log_lines_are_json_with_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    assert!(mfadmin(dir.path()).args(["demo", "--users", "5"]).output().unwrap().status.success());
    let mut served = start(dir.path(), &["--log-format", "json"]);
    let addr = served.addr;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        http(addr, "GET", "/healthz", &[("x-request-id", "probe-7")], None).await.ok();
    });
    let (status, log) = served.terminate();
    assert!(status.success());
    let line = log.iter().find(|l| l.contains("probe-7")).unwrap_or_else(|| panic!("no line for probe-7 in {log:#?}"));
    let v: Value = serde_json::from_str(line).expect("a JSON log line");
    assert_eq!(v["span"]["request_id"], "probe-7", "{v}");
    assert_eq!(v["fields"]["status"], 200, "{v}");
    assert_eq!(v["span"]["path"], "/healthz", "{v}");
}

#[test]
fn a_non_loopback_address_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    assert!(mfadmin(dir.path()).args(["demo", "--users", "5"]).output().unwrap().status.success());
    let out = mfadmin(dir.path()).args(["serve", "--listen", "0.0.0.0:0"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a loopback address") && err.contains("allow_non_loopback"), "{err}");
    assert!(mfadmin::http::listen_addr("0.0.0.0:7070", true).is_ok());
    assert!(mfadmin::http::listen_addr("127.0.0.1:7070", false).is_ok());
    assert!(mfadmin::http::listen_addr("[::1]:7070", false).is_ok());
    assert!(mfadmin::http::listen_addr("localhost:7070", false).is_ok());
    assert!(mfadmin::http::listen_addr("7070", false).is_err());
}
