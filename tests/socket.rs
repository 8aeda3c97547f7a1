//! The local socket of `mfadmin serve`, with the real binary: while a server holds the store, the
//! CLI goes through its socket by itself as the console operator (the test runs as the server's
//! own OS user, whom the socket admits), with the same output and exit codes as on the store
//! itself; the socket file is the group's, a stale one is replaced and a live one refused. The
//! refusal of other OS users is tested as root by `tests/socket_peers/run.sh`.

mod http_support;
mod remote_support;

use remote_support::Site;
use serde_json::Value;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::{Duration, Instant};

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// This process's OS user, as the server names it in the audit log.
fn os_user() -> String {
    // SAFETY: plain getter.
    let uid = unsafe { libc::geteuid() };
    mfadmin::http::socket::user_name(uid)
}

#[test]
fn the_cli_goes_through_the_servers_socket_with_the_same_output_and_exit_codes() {
    let site = Site::new();
    site.init(30);
    // What the commands say on the store itself, before a server holds it.
    let listed_here = site.ok(&["user", "list", "--sort", "username", "--output", "json"], "");
    let (ok, out_here, err_here) = site.run(&["user", "show", "nobody-here"], "", &[]);
    assert!(!ok);

    let server = site.serve();
    let socket = site.socket();
    let meta = std::fs::symlink_metadata(&socket).expect("the server made its socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660, "the group may connect, others may not");

    // Said once, when asked to be verbose; not otherwise.
    let (ok, listed, err) = site.run(&["-v", "user", "list", "--sort", "username", "--output", "json"], "", &[]);
    assert!(ok, "{err}");
    assert_eq!(err.matches("through the running server").count(), 1, "{err}");
    assert!(err.contains(&socket.display().to_string()), "{err}");
    assert_eq!(json(&listed), json(&listed_here), "the same users, the same way");
    let (ok, _, quiet) = site.run(&["user", "list"], "", &[]);
    assert!(ok && !quiet.contains("through the running server"), "{quiet}");

    // A failure fails the same way: exit code 1, the same words.
    let mut cmd = site.command();
    let failed = cmd.args(["user", "show", "nobody-here"]).output().unwrap();
    assert_eq!(failed.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&failed.stdout), out_here);
    assert_eq!(String::from_utf8_lossy(&failed.stderr), err_here);

    // A change through the socket is the console operator's, audited as on the store itself.
    let target = json(&listed)[1]["username"].as_str().unwrap().to_string();
    site.ok(&["mfa", "reset", &target, "--reason", "socket test", "--yes"], "");
    let audit = json(&site.ok(&["audit", "list", "--filter", "mfa.reset", "--output", "json"], ""));
    let event = &audit[0];
    assert_eq!(event["actor"], format!("console:{}", os_user()), "{event}");
    assert_eq!(event["source"], "socket:cli", "{event}");
    assert_eq!(event["reason"], "socket test");

    // Orgs, the store check and a backup, all while the server holds the store.
    let orgs = site.ok(&["org", "show"], "");
    assert!(orgs.contains("Acme"), "{orgs}");
    let check = site.ok(&["check"], "");
    assert!(check.contains("store ok: 31 users"), "{check}");
    let backup = site.tmp.path().join("while-serving.backup");
    let (ok, out, err) = site.run(&["backup", backup.to_str().unwrap()], "", &[]);
    assert!(ok, "{err}");
    assert!(out.contains("Backed up 31 users"), "{out}");

    // A command that needs the store itself says what holds it, and what to do.
    let (ok, _, err) = site.run(&["apikey", "create", "--user", "alice", "--name", "x"], "", &[]);
    assert!(!ok);
    let pid = server.child.id();
    assert!(err.contains(&format!("the server `mfadmin serve` (PID {pid})")), "{err}");
    assert!(err.contains("stop the server first"), "{err}");
    drop(server);
}

#[test]
fn a_socket_file_left_by_a_dead_server_is_replaced_and_a_live_one_refused() {
    let site = Site::new();
    site.init(0);
    let socket = site.socket();

    // A server killed outright leaves its socket file; the next one replaces it.
    let mut first = site.serve();
    first.kill();
    assert!(socket.exists(), "SIGKILL leaves the file");
    let second = site.serve();
    let (ok, _, err) = site.run(&["-v", "org", "show"], "", &[]);
    assert!(ok && err.contains("through the running server"), "{err}");
    drop(second);

    // Someone else listening there: the server refuses to start, and says why.
    std::fs::remove_file(&socket).unwrap();
    let _taken = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let out = site.command().args(["serve", "--listen", "127.0.0.1:0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another mfadmin server is listening on"), "{err}");

    // Not a socket at all: left alone.
    let plain = site.tmp.path().join("plain-file");
    std::fs::write(&plain, "keep me").unwrap();
    let config = site.tmp.path().join("plain.toml");
    std::fs::write(&config, format!("[server]\nsocket = {plain:?}\n")).unwrap();
    let mut cmd = std::process::Command::new(remote_support::BIN);
    cmd.arg("--config").arg(&config).arg("--data-dir").arg(&site.data).env_remove("RUST_LOG");
    let out = cmd.args(["serve", "--listen", "127.0.0.1:0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a socket"));
    assert_eq!(std::fs::read_to_string(&plain).unwrap(), "keep me");
}

#[test]
fn a_server_of_another_data_directory_is_not_used() {
    let site = Site::new();
    site.init(3);
    let server = site.serve();
    // The same socket setting, another (new) data directory: the CLI works on that one itself.
    let other = site.tmp.path().join("other");
    let mut cmd = std::process::Command::new(remote_support::BIN);
    cmd.arg("--config").arg(&site.config).arg("--data-dir").arg(&other).env_remove("MFADMIN_REMOTE").env_remove("RUST_LOG");
    let out = cmd.args(["-v", "user", "list"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("holds") && err.contains("working on the store here"), "{err}");
    assert!(err.contains("no store in"), "it looked at its own directory: {err}");
    drop(server);
}

/// The console's backend holds the store only while an admin is logged in: at the login screen
/// (and after a failed login, and after logout) another process can open it.
#[test]
fn the_consoles_store_is_open_only_while_someone_is_logged_in() {
    use mfadmin::backend::local::Local;
    use mfadmin::backend::on_demand::OnDemand;
    use mfadmin::backend::{Backend, Login};
    use std::sync::Arc;
    let site = Site::new();
    site.init(0);
    // A user of an org without enforced MFA logs in with the password alone.
    site.ok(&["org", "add", "Globex"], "");
    site.ok(&["user", "add", "gus", "--email", "gus@globex.example", "--org", "Globex", "--role", "admin", "--password-stdin"], "gus-password-long-enough\n");
    let ctx = mfadmin::app::Context { config: mfadmin::config::Config { data_dir: Some(site.data.clone()), ..Default::default() } };
    let opener = ctx.clone();
    let backend = OnDemand::new(move || Ok(Local::new(Arc::new(opener.open_service()?), "tui", "mfadmin")));
    let free = || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match ctx.open_service() {
                Ok(_) => return true,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                Err(_) => return false,
            }
        }
    };
    assert!(!backend.is_open());
    assert!(free(), "at the login screen the store is free");
    assert!(backend.login_password("gus", "wrong password").is_err());
    assert!(!backend.is_open(), "a failed login leaves it closed");
    assert!(free());
    let Login::Done(who) = backend.login_password("gus", "gus-password-long-enough").unwrap() else {
        panic!("gus logs in with the password alone");
    };
    assert!(backend.is_open(), "logged in, the console holds the store");
    assert!(ctx.open_service().is_err(), "and no one else has it meanwhile");
    backend.logout(&who).unwrap();
    assert!(!backend.is_open());
    assert!(free(), "after logout it is free again");
}

/// The router as the socket serves it: a request that carries an admitted peer acts as the console
/// operator without a token; a refused peer is answered 403 saying who may connect and how to be
/// let in; the socket's info is there only for socket peers; over TCP nothing changes.
#[tokio::test]
async fn the_router_lets_an_admitted_peer_act_as_the_console_and_refuses_the_rest() {
    use axum::body::Body;
    use axum::http::Request;
    use mfadmin::http::socket::{ServerInfo, SocketPeer, INFO_PATH};
    let h = http_support::Harness::new();
    let info = ServerInfo { data_dir: h.dir.path().to_path_buf(), pid: 7, version: "test".into() };
    let request = |path: &str, peer: Option<SocketPeer>| {
        let mut req = Request::builder().uri(path).header("host", "localhost").header("x-mfadmin-client", "cli");
        if let Some(peer) = peer {
            req = req.extension(peer);
        }
        req.body(Body::empty()).unwrap()
    };
    let admitted = SocketPeer::new(1234, "carol".into(), true, "ops", info.clone());
    let me = h.send(request("/api/v1/me", Some(admitted.clone()))).await.ok();
    assert_eq!(me["name"], "console:carol", "{me}");
    let said = h.send(request(INFO_PATH, Some(admitted))).await.ok();
    assert_eq!(serde_json::from_value::<ServerInfo>(said).unwrap(), info);

    let refused = SocketPeer::new(1235, "mallory".into(), false, "ops", info);
    let problem = h.send(request("/api/v1/me", Some(refused.clone()))).await.problem(403);
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("mallory (uid 1235)") && detail.contains("usermod -aG ops mallory"), "{detail}");
    h.send(request(INFO_PATH, Some(refused))).await.problem(403);

    // Over TCP: no token, no console; and no socket info.
    h.send(request("/api/v1/me", None)).await.problem(401);
    h.send(request(INFO_PATH, None)).await.problem(404);
}
