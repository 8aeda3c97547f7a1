//! The real binary in a real terminal (tmux): log in, filter, mark three users, reset them with a
//! reason, quit; then check through the CLI that exactly those three were reset and audited.
//! Needs tmux (`.ci/run` installs it).

mod remote_support;
mod tui_common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mfadmin");
/// How long to wait for a screen before failing (MFADMIN_E2E_WAIT_SECS overrides, for slow machines).
fn wait() -> Duration {
    Duration::from_secs(std::env::var("MFADMIN_E2E_WAIT_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(30))
}

/// A tmux server of our own (its own socket), killed when dropped.
struct Tmux {
    socket: String,
    /// Where the console's exit status is written when it ends.
    status_file: PathBuf,
    socket_path: String,
}

impl Tmux {
    /// Start `args` of the binary in a detached 120×40 session.
    fn start(dir: &Path, args: &[&str]) -> Tmux {
        static N: AtomicUsize = AtomicUsize::new(0);
        let socket = format!("mfadmin-e2e-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        // Our own config: no user ~/.tmux.conf; keep a pane that exited, to read its last words.
        let conf = dir.join("tmux.conf");
        std::fs::write(&conf, "set -g remain-on-exit on\nset -g history-limit 100\n").unwrap();
        let status_file = dir.join("exit-status");
        // tmux may be slow to notice that a pane's process ended, so a shell records how it ended.
        let script = format!("\"$0\" \"$@\"; echo $? > '{}'", status_file.display());
        let mut tmux = Tmux { socket, status_file, socket_path: String::new() };
        let mut command = vec!["-f", conf.to_str().unwrap(), "new-session", "-d", "-x", "120", "-y", "40", "-s", "e2e", "sh", "-c", &script, BIN];
        command.extend_from_slice(args);
        tmux.run(&command);
        tmux.socket_path = tmux.run(&["display-message", "-p", "#{socket_path}"]).trim().to_string();
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("tmux runs (install tmux to run these tests)");
        assert!(out.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "e2e:0"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    fn text(&self, text: &str) {
        self.run(&["send-keys", "-t", "e2e:0", "-l", text]);
    }

    fn screen(&self, target: &str) -> String {
        self.run(&["capture-pane", "-p", "-t", target])
    }

    /// Poll the screen until `predicate` holds; fail with the screen after the timeout.
    fn wait_until(&self, target: &str, what: &str, predicate: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen(target);
            if predicate(&screen) {
                return screen;
            }
            if start.elapsed() > wait() {
                panic!("waited {:?} for {what}; the screen:\n{screen}", wait());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_for(&self, needle: &str) -> String {
        self.wait_until("e2e:0", needle, |s| s.contains(needle))
    }

    /// Wait for the console in window 0 to exit; its exit status.
    fn wait_exit(&self) -> i32 {
        let start = Instant::now();
        loop {
            if let Some(status) = std::fs::read_to_string(&self.status_file).ok().filter(|s| s.ends_with('\n')) {
                return status.trim().parse().unwrap_or(-1);
            }
            if start.elapsed() > wait() {
                panic!("the console did not exit; the screen:\n{}", self.screen("e2e:0"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").arg("-L").arg(&self.socket).arg("kill-server").env_remove("TMUX").output();
        if !self.socket_path.is_empty() {
            let _ = std::fs::remove_file(&self.socket_path);
        }
    }
}

/// Run the CLI on the store in `data`; its standard output.
fn cli(data: &Path, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let config = data.parent().unwrap().join("empty.toml");
    std::fs::write(&config, "").unwrap();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "mfadmin {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn json(data: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&cli(data, args, None)).unwrap()
}

fn usernames(list: &Value) -> Vec<String> {
    list.as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap().to_string()).collect()
}

/// A text that finds at least three enrolled users of `org`, and the users it finds, in the
/// order the console shows them (by user name).
fn pick_filter(data: &Path, org: &str) -> (String, Vec<String>) {
    let enrolled = json(data, &["user", "list", "--org", org, "--mfa", "enrolled", "--output", "json"]);
    for user in enrolled.as_array().unwrap() {
        let last = user["display_name"].as_str().unwrap().rsplit(' ').next().unwrap().to_lowercase();
        let found = json(data, &["user", "list", "--org", org, "--mfa", "enrolled", "--filter", &last, "--sort", "username", "--output", "json"]);
        if found.as_array().unwrap().len() >= 3 {
            return (last, usernames(&found));
        }
    }
    panic!("no last name finds three enrolled users");
}

/// In the running console: show the enrolled users that `text` finds, mark the first three,
/// reset them with `reason`, close the result and quit. Returns the three user names.
fn filter_mark_reset(tmux: &Tmux, text: &str, found: &[String], reason: &str) -> Vec<String> {
    tmux.keys(&["m"]);
    tmux.wait_for("MFA: enrolled");
    tmux.keys(&["/"]);
    tmux.text(text);
    tmux.keys(&["Enter"]);
    tmux.wait_for(&format!("shown {} /", found.len()));
    tmux.keys(&["Space", "Space", "Space"]);
    // The first three are marked, with a glyph (and reverse video, which a capture does not show).
    let glyphs: Vec<String> = found[..3].iter().map(|name| format!("✓ {}", name.chars().take(12).collect::<String>())).collect();
    tmux.wait_until("e2e:0", "three marks", |s| s.contains("marked 3") && glyphs.iter().all(|g| s.contains(g.as_str())));
    tmux.keys(&["R"]);
    let dialog = tmux.wait_until("e2e:0", "the dry run", |s| s.contains("will reset") && s.contains("esc cancel"));
    assert!(dialog.contains("Reset MFA for 3 users"), "{dialog}");
    assert!(dialog.lines().any(|l| l.contains("will reset") && l.contains(" 3 ")), "{dialog}");
    assert!(dialog.contains("▶ Cancel ◀"), "Cancel has the focus:\n{dialog}");
    tmux.text(reason);
    tmux.wait_for(reason);
    tmux.keys(&["Tab"]);
    tmux.wait_for("▶ Cancel ◀");
    tmux.keys(&["Tab"]);
    tmux.wait_for("▶ Reset 3 ◀");
    tmux.keys(&["Enter"]);
    let result = tmux.wait_until("e2e:0", "the result screen", |s| s.contains("Reset finished") && s.contains("esc close"));
    let counts = |label: &str| result.lines().find_map(|l| l.split('│').find(|part| part.split_whitespace().next() == Some(label)).map(|p| p.split_whitespace().last().unwrap().to_string()));
    assert_eq!(counts("reset").as_deref(), Some("3"), "{result}");
    assert_eq!(counts("failed").as_deref(), Some("0"), "{result}");
    // Escape on its own: sent together with the next key, a terminal reads it as alt-<key>.
    tmux.keys(&["Escape"]);
    tmux.wait_until("e2e:0", "the result to close", |s| !s.contains("Reset finished"));
    tmux.keys(&["q"]);
    assert_eq!(tmux.wait_exit(), 0, "the console exits cleanly");
    found[..3].to_vec()
}

/// Through the CLI: exactly `reset` were reset (by `actor`, from the console, with `reason`).
fn check_through_the_cli(data: &Path, reset: &[String], enrolled_after: usize, actor: &str, reason: &str) {
    for name in reset {
        let detail = json(data, &["user", "show", name, "--output", "json"]);
        assert_eq!(detail["user"]["mfa"], "must_enroll", "{name}: {detail}");
        assert!(detail["user"]["mfa_reset_at"].is_string(), "{name}");
    }
    let enrolled = json(data, &["user", "list", "--mfa", "enrolled", "--output", "json"]).as_array().unwrap().len();
    assert_eq!(enrolled, enrolled_after, "nobody else was reset");
    let events = json(data, &["audit", "list", "--filter", "mfa.reset", "--output", "json"]);
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 3, "{events:?}");
    let mut targets: Vec<String> = events.iter().map(|e| e["target"].as_str().unwrap().to_string()).collect();
    targets.sort();
    let mut expected = reset.to_vec();
    expected.sort();
    assert_eq!(targets, expected);
    for e in events {
        assert_eq!(e["source"], "tui");
        assert_eq!(e["actor"], actor);
        assert_eq!(e["reason"], reason);
        assert_eq!(e["outcome"], "success");
    }
}

#[test]
fn demo_console_filter_mark_three_reset_and_the_cli_agrees() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    cli(&data, &["demo", "--users", "400"], None);
    let (text, found) = pick_filter(&data, "acme");
    let enrolled_before = json(&data, &["user", "list", "--mfa", "enrolled", "--output", "json"]).as_array().unwrap().len();
    let config = tmp.path().join("empty.toml");
    let tmux = Tmux::start(tmp.path(), &["--config", config.to_str().unwrap(), "--data-dir", data.to_str().unwrap(), "tui", "--demo"]);
    tmux.wait_until("e2e:0", "the demo owner's table", |s| s.contains("users loaded") && s.contains("owner (owner, acme)"));

    // While the console holds the store, a second one says so and why.
    tmux.run(&["new-window", "-d", "-t", "e2e:1", BIN, "--config", config.to_str().unwrap(), "--data-dir", data.to_str().unwrap(), "tui"]);
    let second = tmux.wait_until("e2e:1", "the lock message", |s| s.contains("in use by another mfadmin process"));
    assert!(second.replace('\n', " ").contains("remote mode"), "{second}");

    let reset = filter_mark_reset(&tmux, &text, &found, "e2e ticket 42");
    drop(tmux);
    check_through_the_cli(&data, &reset, enrolled_before - 3, "owner", "e2e ticket 42");
}

#[test]
fn password_login_with_enrollment_then_reset_three_and_the_cli_agrees() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let password = "correct-horse-battery-staple";
    cli(&data, &["init", "--org", "Acme", "--owner", "alice", "--password-stdin"], Some(&format!("{password}\n")));
    cli(&data, &["demo", "--users", "300"], None);
    let (text, found) = pick_filter(&data, "acme");
    let enrolled_before = json(&data, &["user", "list", "--mfa", "enrolled", "--output", "json"]).as_array().unwrap().len();
    let config = tmp.path().join("empty.toml");
    let tmux = Tmux::start(tmp.path(), &["--config", config.to_str().unwrap(), "--data-dir", data.to_str().unwrap(), "tui"]);
    tmux.wait_for("User name");
    tmux.text("alice");
    tmux.keys(&["Enter"]);
    tmux.text(password);
    tmux.keys(&["Enter"]);
    // Acme enforces MFA and alice has none yet: she enrolls right on the login screen.
    let screen = tmux.wait_until("e2e:0", "the secret", |s| s.contains("Secret: ") && s.contains("First code"));
    assert!(screen.contains("Scan this code"), "the QR code is drawn:\n{screen}");
    let secret = screen.lines().find_map(|l| l.split("Secret: ").nth(1)).unwrap().split_whitespace().next().unwrap().to_string();
    let code = tui_common::code_for(&secret, chrono::Utc::now().timestamp());
    tmux.text(&code);
    tmux.keys(&["Enter"]);
    tmux.wait_until("e2e:0", "the recovery codes", |s| s.contains("recovery codes") && s.contains("continue to the console"));
    tmux.keys(&["Enter"]);
    tmux.wait_until("e2e:0", "alice's table", |s| s.contains("users loaded") && s.contains("alice (owner, acme)"));

    let reset = filter_mark_reset(&tmux, &text, &found, "helpdesk call 7");
    drop(tmux);
    // Three fewer enrolled, and alice, who enrolled while logging in, one more.
    check_through_the_cli(&data, &reset, enrolled_before - 3 + 1, "alice", "helpdesk call 7");
    let logins = json(&data, &["audit", "list", "--filter", "auth.login", "--output", "json"]);
    assert!(logins.as_array().unwrap().iter().any(|e| e["actor"] == "alice" && e["source"] == "tui"));
}

/// On the console's remote login screen (which names the server): alice logs in with password
/// then code, and her table loads, still showing where it comes from.
fn remote_login(tmux: &Tmux, url: &str, secret: &str) {
    let login = tmux.wait_for("User name");
    assert!(login.contains(&format!("remote: {url}")), "the login screen says where it logs in:\n{login}");
    tmux.text("alice");
    tmux.keys(&["Enter"]);
    tmux.text(remote_support::PASSWORD);
    tmux.keys(&["Enter"]);
    tmux.wait_for("Type the 6-digit code");
    tmux.text(&remote_support::code_for(secret, chrono::Utc::now().timestamp()));
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_until("e2e:0", "alice's table", |s| s.contains("users loaded") && s.contains("alice (owner, acme)"));
    assert!(screen.contains(&format!("remote: {url}")), "the badge:\n{screen}");
}

/// Remote mode: `mfadmin serve` (the real binary) holds the store; the console connects to it with
/// `--remote`, logs in with password then code, filters, marks three and resets them. The API
/// (with an API key) and its audit log then show exactly those three, reset through the server.
#[test]
fn remote_console_logs_in_with_a_code_and_resets_three_through_the_server() {
    let site = remote_support::Site::new();
    let secret = site.init(300);
    let (text, found) = pick_filter(&site.data, "acme");
    let key = site.ok(&["apikey", "create", "--user", "alice", "--name", "e2e-check", "--role", "admin"], "").trim().to_string();
    let server = site.serve();
    let api = |args: &[&str]| -> Value {
        let mut all = args.to_vec();
        all.extend(["--remote", server.url.as_str(), "--output", "json"]);
        let (ok, out, err) = site.run(&all, "", &[("MFADMIN_TOKEN", key.as_str())]);
        assert!(ok, "{args:?}: {err}");
        serde_json::from_str(&out).unwrap()
    };
    let enrolled_before = api(&["user", "list", "--mfa", "enrolled"]).as_array().unwrap().len();

    let config = site.config.to_str().unwrap();
    let data = site.data.to_str().unwrap();
    let tmux = Tmux::start(site.tmp.path(), &["--config", config, "--data-dir", data, "tui", "--remote", &server.url]);
    remote_login(&tmux, &server.url, &secret);

    let reset = filter_mark_reset(&tmux, &text, &found, "remote ticket 9");
    drop(tmux);
    for name in &reset {
        let detail = api(&["user", "show", name]);
        assert_eq!(detail["user"]["mfa"], "must_enroll", "{name}: {detail}");
    }
    let enrolled_after = api(&["user", "list", "--mfa", "enrolled"]).as_array().unwrap().len();
    assert_eq!(enrolled_after, enrolled_before - 3, "nobody else was reset");
    let events = api(&["audit", "list", "--filter", "remote ticket 9"]);
    let mut targets: Vec<String> = events.as_array().unwrap().iter().map(|e| e["target"].as_str().unwrap().to_string()).collect();
    targets.sort();
    let mut expected = reset.clone();
    expected.sort();
    assert_eq!(targets, expected);
    for e in events.as_array().unwrap() {
        assert_eq!((e["actor"].as_str(), e["action"].as_str(), e["source"].as_str()), (Some("alice"), Some("mfa.reset"), Some("http:tui")));
    }
    // The login itself went through the server.
    let logins = api(&["audit", "list", "--filter", "auth.login"]);
    assert!(logins.as_array().unwrap().iter().any(|e| e["actor"] == "alice" && e["source"] == "http:tui"));
}

/// `mfadmin tui` without `--remote` on a store that `mfadmin serve` holds, without a local socket:
/// the console finds the server at `[server] listen` and offers to connect. `n` leaves with the lock message; `y` opens
/// the remote login screen (with the badge), and the login goes through the server.
#[test]
fn a_console_on_a_store_a_server_holds_offers_to_connect_and_logs_in_through_it() {
    let site = remote_support::Site::new();
    let secret = site.init(20);
    let key = site.ok(&["apikey", "create", "--user", "alice", "--name", "e2e-check", "--role", "admin"], "").trim().to_string();
    // A server without a local socket: the console finds it by its address.
    std::fs::write(&site.config, "[server]\nsocket = \"\"\n").unwrap();
    let server = site.serve();
    let listen = server.url.strip_prefix("http://").unwrap();
    let config = site.tmp.path().join("listen.toml");
    std::fs::write(&config, format!("[server]\nlisten = \"{listen}\"\n")).unwrap();
    let (config, data) = (config.to_str().unwrap(), site.data.to_str().unwrap());
    let question = "Connect the console to that server instead";

    let tmux = Tmux::start(site.tmp.path(), &["--config", config, "--data-dir", data, "tui"]);
    tmux.run(&["new-window", "-d", "-t", "e2e:1", BIN, "--config", config, "--data-dir", data, "tui"]);
    let asked = tmux.wait_until("e2e:1", "the question", |s| s.contains(question));
    assert!(asked.contains(&format!("in use by the mfadmin server at {}", server.url)), "{asked}");
    tmux.run(&["send-keys", "-t", "e2e:1", "n", "Enter"]);
    let declined = tmux.wait_until("e2e:1", "the lock message", |s| s.contains("in use by another mfadmin process"));
    assert!(declined.replace('\n', " ").contains("--remote"), "it says how to connect later:\n{declined}");

    tmux.wait_for(question);
    tmux.keys(&["y", "Enter"]);
    remote_login(&tmux, &server.url, &secret);
    tmux.keys(&["q"]);
    assert_eq!(tmux.wait_exit(), 0, "the console exits cleanly");
    drop(tmux);

    let (ok, out, err) = site.run(
        &["audit", "list", "--filter", "auth.login", "--output", "json", "--remote", &server.url],
        "",
        &[("MFADMIN_TOKEN", key.as_str())],
    );
    assert!(ok, "{err}");
    let logins: Value = serde_json::from_str(&out).unwrap();
    assert!(
        logins.as_array().unwrap().iter().any(|e| e["actor"] == "alice" && e["source"] == "http:tui"),
        "the console logged in through the server: {logins}"
    );
}

/// `mfadmin tui` on a store that `mfadmin serve` holds: the console goes through the server's
/// local socket by itself (no question, no `--remote`), says so in its badge, and the login goes
/// through the server.
#[test]
fn a_console_on_a_store_a_server_holds_logs_in_through_its_socket() {
    let site = remote_support::Site::new();
    let secret = site.init(20);
    let server = site.serve();
    let (config, data) = (site.config.to_str().unwrap(), site.data.to_str().unwrap());
    let tmux = Tmux::start(site.tmp.path(), &["--config", config, "--data-dir", data, "tui"]);
    let badge = format!("server: {}", site.socket().display());
    let login = tmux.wait_for("User name");
    assert!(login.contains(&badge), "the login screen says where it logs in:\n{login}");
    tmux.text("alice");
    tmux.keys(&["Enter"]);
    tmux.text(remote_support::PASSWORD);
    tmux.keys(&["Enter"]);
    tmux.wait_for("Type the 6-digit code");
    tmux.text(&remote_support::code_for(&secret, chrono::Utc::now().timestamp()));
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_until("e2e:0", "alice's table", |s| s.contains("users loaded") && s.contains("alice (owner, acme)"));
    assert!(screen.contains(&badge), "the badge:\n{screen}");
    tmux.keys(&["q"]);
    assert_eq!(tmux.wait_exit(), 0, "the console exits cleanly");
    drop(tmux);
    // The login is in the server's audit log (read through the socket, as the console operator).
    let logins = site.ok(&["audit", "list", "--filter", "auth.login", "--output", "json"], "");
    let logins: Value = serde_json::from_str(&logins).unwrap();
    assert!(logins.as_array().unwrap().iter().any(|e| e["actor"] == "alice" && e["source"] == "http:tui"), "{logins}");
    drop(server);
}
