//! What the package builds from the binary and what systemd sees of it: completions, man pages,
//! `-o` for `--output`, and `serve`'s readiness and stopping notices on `$NOTIFY_SOCKET`.

use assert_cmd::Command;
use predicates::prelude::*;
use std::time::Duration;

fn mfadmin(dir: &std::path::Path) -> Command {
    let mut cmd = Command::cargo_bin("mfadmin").unwrap();
    cmd.env("MFADMIN_DATA_DIR", dir).env("USER", "tester").env_remove("MFADMIN_CONFIG");
    cmd
}

fn init(dir: &std::path::Path) {
    mfadmin(dir)
        .args(["init", "--org", "Acme", "--owner", "root", "--password-stdin", "--no-enforce-mfa"])
        .write_stdin("a long enough password\n")
        .assert()
        .success();
}

fn stdout(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Every command's page that lists `--output` lists `-o` with it; the pages are generated from the
/// whole command tree, which in a debug build also runs clap's own checks (no two arguments of a
/// command share a name or a short flag).
#[test]
fn every_output_option_has_the_short_o() {
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man");
    mfadmin(dir.path()).args(["man", pages.to_str().unwrap()]).assert().success();
    let mut with_output = Vec::new();
    for entry in std::fs::read_dir(&pages).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        for line in text.lines().filter(|l| l.starts_with(".TP") || l.contains("\\-\\-output")) {
            if line.contains("\\-\\-output") {
                assert!(line.contains("\\-o"), "{name}: --output without -o: {line}");
                with_output.push(name.clone());
            }
        }
    }
    for expected in ["mfadmin-user-list", "mfadmin-user-show", "mfadmin-user-export", "mfadmin-mfa-reset", "mfadmin-org-show", "mfadmin-audit-list", "mfadmin-audit-export"] {
        assert!(with_output.iter().any(|n| n == expected), "{expected} shows no --output: {with_output:?}");
    }
}

#[test]
fn completions_for_bash_zsh_and_fish_name_the_commands_and_options() {
    let dir = tempfile::tempdir().unwrap();
    let bash = stdout(mfadmin(dir.path()).args(["completions", "bash"]));
    let zsh = stdout(mfadmin(dir.path()).args(["completions", "zsh"]));
    let fish = stdout(mfadmin(dir.path()).args(["completions", "fish"]));
    assert!(zsh.starts_with("#compdef mfadmin"), "{}", &zsh[..zsh.len().min(200)]);
    assert!(fish.contains("complete -c mfadmin"), "fish script");
    for script in [&bash, &zsh, &fish] {
        for word in ["reset", "enforce-mfa", "remote", "completions"] {
            assert!(script.contains(word), "a completion script lacks {word}");
        }
    }
    assert!(bash.contains("--output") && bash.contains("-o "), "bash offers -o, --output");
    assert!(zsh.contains("'-o+[") && zsh.contains("'--output=["), "zsh offers -o, --output");
    assert!(fish.contains("-s o -l output"), "fish offers -o, --output");
    // No config is read: a broken one does not stop a package build from generating them.
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[nonsense\n").unwrap();
    mfadmin(dir.path()).args(["--config", broken.to_str().unwrap(), "completions", "fish"]).assert().success();
    mfadmin(dir.path()).args(["completions", "powershell"]).assert().code(2).stderr(predicate::str::contains("bash"));

    // bash loads the script and binds it to the command.
    let file = dir.path().join("mfadmin.bash");
    std::fs::write(&file, &bash).unwrap();
    let out = std::process::Command::new("bash")
        .args(["--norc", "-c", &format!("source {} && complete -p mfadmin", file.display())])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("mfadmin"), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn man_pages_go_to_standard_output_or_one_per_subcommand_into_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let page = stdout(mfadmin(dir.path()).arg("man"));
    assert!(page.contains(".TH mfadmin 1"), "{}", &page[..page.len().min(300)]);
    assert!(page.contains("reset MFA"), "the page carries the long description");

    let pages = dir.path().join("man");
    mfadmin(dir.path()).args(["man", pages.to_str().unwrap()]).assert().success().stderr(predicate::str::contains("man pages in"));
    for name in ["mfadmin.1", "mfadmin-serve.1", "mfadmin-user.1", "mfadmin-user-list.1", "mfadmin-mfa-reset.1", "mfadmin-audit-export.1"] {
        let text = std::fs::read_to_string(pages.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{name} is not a man page");
    }
    let list = std::fs::read_to_string(pages.join("mfadmin-user-list.1")).unwrap();
    assert!(list.contains("\\-o") && list.contains("output"), "user list's page shows -o, --output");
    // A directory that cannot be made is a clear error, not a panic.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    mfadmin(dir.path())
        .args(["man", file.join("sub").to_str().unwrap()])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("cannot create the directory"));
}

#[test]
fn short_o_and_audit_export_output() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let long = stdout(mfadmin(dir.path()).args(["user", "list", "--output", "json"]));
    let short = stdout(mfadmin(dir.path()).args(["user", "list", "-o", "json"]));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&long).unwrap(), serde_json::from_str::<serde_json::Value>(&short).unwrap());
    assert!(stdout(mfadmin(dir.path()).args(["org", "show", "-o", "json"])).trim_start().starts_with('['));

    let by_output = dir.path().join("audit-o.csv");
    let by_file = dir.path().join("audit-file.csv");
    mfadmin(dir.path()).args(["audit", "export", "--format", "csv", "-o", by_output.to_str().unwrap()]).assert().success();
    mfadmin(dir.path()).args(["audit", "export", "--format", "csv", "--file", by_file.to_str().unwrap()]).assert().success();
    let a = std::fs::read_to_string(&by_output).unwrap();
    assert!(a.lines().count() >= 2, "a header and init's events: {a}");
    assert_eq!(a.lines().next(), std::fs::read_to_string(&by_file).unwrap().lines().next());
    let stdout_csv = stdout(mfadmin(dir.path()).args(["audit", "export", "--format", "csv"]));
    assert_eq!(stdout_csv, a);
}

/// `serve` under `Type=notify`: READY=1 once it listens with the store open, STOPPING=1 on SIGTERM.
#[cfg(target_os = "linux")]
#[test]
fn serve_tells_systemd_when_it_is_ready_and_when_it_stops() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let bin = assert_cmd::cargo::cargo_bin("mfadmin");
    let mut child = std::process::Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("MFADMIN_DATA_DIR", dir.path())
        .env("USER", "tester")
        .env_remove("MFADMIN_CONFIG")
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let received = socket.recv(&mut buf);
    let guard = KillOnDrop(child.id());
    let n = received.expect("READY=1 within 30 s");
    assert_eq!(std::str::from_utf8(&buf[..n]).unwrap().trim(), "READY=1");

    // SAFETY: kill(2) on the child we started.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let n = socket.recv(&mut buf).expect("STOPPING=1 after SIGTERM");
    assert_eq!(std::str::from_utf8(&buf[..n]).unwrap().trim(), "STOPPING=1");
    let out = wait_with_timeout(&mut child, Duration::from_secs(30));
    std::mem::forget(guard);
    assert!(out.success(), "serve exits 0 after SIGTERM");
}

#[cfg(target_os = "linux")]
struct KillOnDrop(u32);

#[cfg(target_os = "linux")]
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the child we started, so a failed assertion leaves no server behind.
        unsafe { libc::kill(self.0 as libc::pid_t, libc::SIGKILL) };
    }
}

#[cfg(target_os = "linux")]
fn wait_with_timeout(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(started.elapsed() < limit, "serve did not stop within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
