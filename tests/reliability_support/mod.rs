//! What the crash, concurrency and backup harnesses share: a seeded RNG, a store of enrolled users
//! with live sessions made once and copied per run, the `mfadmin` binary (CLI and `serve` on
//! 127.0.0.1:0, killed or stopped by the test), and the reset invariants checked on a reopened store.
#![allow(dead_code)]

#[path = "../serve_support/mod.rs"]
mod serve_support;

use mfadmin::auth::token;
use mfadmin::app::Context;
use mfadmin::config::Config;
use mfadmin::domain::role::Role;
use mfadmin::domain::user::User;
use mfadmin::service::{Actor, NewUser, Service};
use mfadmin::store::{Change, Session, SessionKind};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// splitmix64: small, seeded, the same sequence everywhere, so a failing run repeats with its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The seed from `var`, else from the clock; printed so a failure can be repeated.
    pub fn from_env(var: &str) -> (Rng, u64) {
        let seed = std::env::var(var).ok().and_then(|s| s.trim().parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        });
        eprintln!("{var}={seed} (set it to repeat this run)");
        (Rng(seed), seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

pub fn env_number(var: &str, default: u64) -> u64 {
    std::env::var(var).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(default)
}

pub fn now() -> i64 {
    mfadmin::app::now()
}

/// A store of `members` enrolled users (each with a live session) in one org "Acme" that enforces
/// MFA, with an owner `root` who has an API key (in the file `token`).
pub struct Fixture {
    pub dir: tempfile::TempDir,
    /// The records as made, by id.
    pub users: HashMap<Uuid, User>,
    pub members: Vec<User>,
    pub token: String,
}

pub fn config_for(data_dir: &Path) -> Config {
    Config { data_dir: Some(data_dir.to_path_buf()), ..Config::default() }
}

impl Fixture {
    pub fn new(members: usize) -> Fixture {
        Fixture::with_config(members, config_for)
    }

    /// [`Fixture::new`] in the store that `config` (given the data directory) names.
    pub fn with_config(members: usize, config: impl Fn(&Path) -> Config) -> Fixture {
        let dir = tempfile::tempdir().expect("temporary directory");
        let ctx = Context { config: config(dir.path()) };
        let svc = ctx.create_service().expect("a new store");
        let console = Actor::console("cli");
        let t = now();
        svc.add_org(&console, "Acme", true, t).unwrap();
        let mut rows = vec![NewUser {
            username: "root".into(),
            email: "root@acme.example".into(),
            display_name: "Root".into(),
            role: Role::Owner,
            org: "Acme".into(),
            password: None,
        }];
        for i in 0..members {
            rows.push(NewUser {
                username: format!("m{i:04}"),
                email: format!("m{i:04}@acme.example"),
                display_name: format!("Member {i}"),
                role: Role::Member,
                org: "Acme".into(),
                password: None,
            });
        }
        svc.import_users(&console, &rows, false, t).unwrap().expect("valid rows");
        let mut sessions = Change::default();
        for i in 0..members {
            let name = format!("m{i:04}");
            let e = svc.begin_enrollment(&console, &name, "mfadmin", t).unwrap();
            let secret = totp_rs::Secret::try_from_base32(&e.secret_base32).unwrap().to_vec();
            svc.confirm_enrollment(&console, &name, &mfadmin::auth::totp::code_at(&secret, t as u64), t).unwrap();
            let id = svc.resolve(&name).unwrap().unwrap().id;
            let session = Session::new(id, SessionKind::Session, t, t + 86_400, "http");
            sessions.sessions_put.push((token::hash(&token::new_token()), session));
        }
        svc.store().commit(&[sessions]).unwrap();
        let root = svc.act_as(&console, "root", "cli").unwrap();
        let (token, _) = svc.create_api_key(&root, "reliability", Role::Owner, t).unwrap();
        std::fs::write(dir.path().join("token"), &token).unwrap();
        svc.store().flush().unwrap();
        let mut users = HashMap::new();
        svc.store()
            .scan_users(&mut |u| {
                users.insert(u.id, u);
                true
            })
            .unwrap();
        let mut members: Vec<User> = users.values().filter(|u| u.role == Role::Member).cloned().collect();
        members.sort_by(|a, b| a.username.cmp(&b.username));
        drop(svc);
        Fixture { dir, users, members, token }
    }

    /// A copy of the store (and its key file) in a new directory.
    pub fn copy(&self) -> tempfile::TempDir {
        let to = tempfile::tempdir().expect("temporary directory");
        copy_dir(self.dir.path(), to.path());
        to
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Open the store in `data_dir` (retrying while a killed process's lock is let go).
pub fn open(data_dir: &Path) -> Service {
    try_open(data_dir).unwrap_or_else(|e| panic!("{e}"))
}

pub fn try_open(data_dir: &Path) -> Result<Service, String> {
    let ctx = Context { config: config_for(data_dir) };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match ctx.open_service() {
            Ok(s) => return Ok(s),
            Err(mfadmin::error::Error::StoreLocked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(format!("the store in {} does not open: {e}", data_dir.display())),
        }
    }
}

/// The files of a directory tree with their sizes, for a failure message.
pub fn listing(dir: &Path) -> String {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(format!("{} ({} bytes)", p.display(), e.metadata().map(|m| m.len()).unwrap_or(0)));
            }
        }
    }
    out.sort();
    out.join("\n")
}

/// What the reset invariants found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub reset: usize,
    pub untouched: usize,
}

/// The invariants of a store after resets of `fixture`'s members, however they ended:
/// every member is fully reset (no secret, no recovery codes, no sessions, state and time set, one
/// version on) with exactly one successful `mfa.reset` event, or untouched (the very record of the
/// fixture, its session still there) with none; the indexes agree and the audit chain verifies.
pub fn check_invariants(svc: &Service, fixture: &Fixture) -> Result<Tally, String> {
    let console = Actor::console("cli");
    let (problems, chain) = svc.check(&console).map_err(|e| e.to_string())?;
    if !problems.is_empty() {
        return Err(format!("index problems: {problems:?}"));
    }
    if !chain.ok {
        return Err(format!("the audit chain is broken: {chain:?}"));
    }
    let mut resets: HashMap<Uuid, usize> = HashMap::new();
    svc.store()
        .scan_audit(false, &mut |e| {
            if e.draft.action == "mfa.reset" && e.draft.outcome == mfadmin::domain::audit::Outcome::Success {
                *resets.entry(e.draft.target_id.unwrap_or_default()).or_default() += 1;
            }
            true
        })
        .map_err(|e| e.to_string())?;
    let mut tally = Tally::default();
    for before in &fixture.members {
        let name = &before.username;
        let after = svc.store().get_user(before.id).map_err(|e| e.to_string())?.ok_or(format!("{name} is gone"))?;
        let sessions = svc.store().sessions_of(before.id).map_err(|e| e.to_string())?;
        match resets.remove(&before.id).unwrap_or(0) {
            0 => {
                if &after != before {
                    return Err(format!("{name} has no reset event but changed: {:?} -> {:?}", before.mfa, after.mfa));
                }
                if sessions.len() != 1 {
                    return Err(format!("{name} was not reset but has {} sessions, not 1", sessions.len()));
                }
                tally.untouched += 1;
            }
            1 => {
                let fully = !after.mfa.has_factor()
                    && after.recovery_codes.is_empty()
                    && sessions.is_empty()
                    && after.mfa_reset_at.is_some()
                    && after.version == before.version + 1
                    && after.lockout == Default::default();
                if !fully {
                    return Err(format!(
                        "{name} has a reset event but is not fully reset: mfa {:?}, {} recovery codes, {} sessions, reset at {:?}, version {} -> {}",
                        after.mfa,
                        after.recovery_codes.len(),
                        sessions.len(),
                        after.mfa_reset_at,
                        before.version,
                        after.version
                    ));
                }
                tally.reset += 1;
            }
            n => return Err(format!("{name} has {n} reset events")),
        }
    }
    if let Some((id, n)) = resets.into_iter().next() {
        return Err(format!("{n} reset events for {id}, which is not a member of the fixture"));
    }
    Ok(tally)
}

// ------------------------------------------------------------------ the binary

/// The binary under test; `MFADMIN_TEST_BIN` points long runs at a copy that rebuilds cannot touch.
pub fn mfadmin(data_dir: &Path) -> Command {
    let bin = std::env::var_os("MFADMIN_TEST_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_mfadmin").into());
    let mut cmd = Command::new(bin);
    cmd.arg("--data-dir")
        .arg(data_dir)
        .env_remove("RUST_LOG")
        .env_remove("MFADMIN_CONFIG")
        .env_remove("MFADMIN_KEY_FILE")
        .env_remove("MFADMIN_DATA_DIR")
        // A server's local socket is then in its data directory: each test has its own.
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("RUNTIME_DIRECTORY")
        .env("NO_COLOR", "1");
    cmd
}

/// `mfadmin serve` on 127.0.0.1:0; killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub lines: std::sync::mpsc::Receiver<String>,
}

impl Server {
    pub fn start(data_dir: &Path, envs: &[(&str, &str)]) -> Server {
        let mut cmd = mfadmin(data_dir);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let (child, addr, lines) = serve_support::spawn_serve(cmd, &[], deadline);
        let server = Server { child, addr, lines };
        // Wait until it answers, so that a test starts on a server that serves.
        while http(server.addr, "GET", "/healthz", None, None).map(|(s, _)| s) != Some(200) {
            assert!(Instant::now() < deadline, "mfadmin serve does not answer /healthz");
            std::thread::sleep(Duration::from_millis(10));
        }
        server
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait (bounded) for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                self.kill();
                panic!("mfadmin serve did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every log line so far.
    pub fn drain(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// One blocking HTTP/1.1 request over a new connection; `None` when the connection fails or is cut
/// (as when the server is killed mid-request).
pub fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Option<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(120))).ok()?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method != "GET" {
        req.push_str(&format!("content-type: application/json\r\ncontent-length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let mut content = raw[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut rest = &content[..];
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n")?;
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).ok()?.trim(), 16).ok()?;
            if size == 0 {
                break;
            }
            out.extend_from_slice(rest.get(eol + 2..eol + 2 + size)?);
            rest = rest.get(eol + 2 + size + 2..)?;
        }
        content = out;
    }
    if let Some(len) = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok())
        && content.len() < len
    {
        return None;
    }
    Some((status, content))
}

pub fn key_file(data_dir: &Path) -> PathBuf {
    data_dir.join("mfadmin.key")
}
