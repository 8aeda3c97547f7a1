//! The data-side findings of the hardening review (issue 20), each reproduced as an attack.

mod common;

use assert_cmd::Command;
use serde_json::Value;

fn mfadmin(dir: &std::path::Path) -> Command {
    let mut cmd = Command::cargo_bin("mfadmin").unwrap();
    cmd.env("MFADMIN_DATA_DIR", dir).env("USER", "tester").env_remove("MFADMIN_CONFIG");
    cmd
}

fn json(cmd: &mut Command) -> Value {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stdout(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Every cell of a CSV text, parsed as a spreadsheet would split it.
fn cells(text: &str) -> Vec<String> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
    reader.records().flat_map(|r| r.unwrap().iter().map(str::to_string).collect::<Vec<_>>()).collect()
}

fn no_formula(text: &str) {
    for cell in cells(text) {
        assert!(!cell.starts_with(['=', '+', '-', '@', '\t', '\r']), "a cell starts a formula: {cell:?}\n{text}");
    }
}

// ------------------------------------------------------------------ 3. CSV formula injection

#[test]
fn csv_exports_carry_no_formula_and_import_reads_them_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    mfadmin(dir.path()).args(["demo", "--users", "30"]).assert().success();
    let names = ["=cmd|' /C calc'!A0", "'=already quoted", "@SUM(1+1)", "+1 555", "-2", "'plain", "Ann O'Neil"];
    for (i, name) in names.iter().enumerate() {
        mfadmin(dir.path())
            .args(["user", "add", &format!("evil{i}"), "--email", &format!("evil{i}@acme.example"), "--org", "Acme"])
            .arg(format!("--display-name={name}"))
            .assert()
            .success();
    }
    let enrolled = json(mfadmin(dir.path()).args(["user", "list", "--mfa", "enrolled", "--role", "member", "--output", "json"]));
    let target = enrolled[0]["username"].as_str().unwrap().to_string();
    mfadmin(dir.path())
        .args(["mfa", "reset", &target, "--yes", "--reason", "=HYPERLINK(\"http://x.test\",\"y\")"])
        .assert()
        .success();

    let users = stdout(mfadmin(dir.path()).args(["user", "list", "--filter", "evil", "--output", "csv"]));
    no_formula(&users);
    let audit = stdout(mfadmin(dir.path()).args(["audit", "export", "--format", "csv"]));
    no_formula(&audit);
    assert!(audit.contains("'=HYPERLINK"), "{audit}");
    no_formula(&stdout(mfadmin(dir.path()).args(["audit", "list", "--output", "csv"])));

    // The export imports into another store with every display name as it was.
    let other = tempfile::tempdir().unwrap();
    mfadmin(other.path()).args(["demo", "--users", "5"]).assert().success();
    mfadmin(other.path()).args(["user", "import", "-"]).write_stdin(users).assert().success();
    for (i, name) in names.iter().enumerate() {
        let shown = json(mfadmin(other.path()).args(["user", "show", &format!("evil{i}"), "--output", "json"]));
        assert_eq!(shown["user"]["display_name"], *name);
    }
}

// ------------------------------------------------------------------ 4. private store files

/// `mfadmin ARGS` run under `umask`, as a shell would start it.
fn under_umask(umask: &str, data: &std::path::Path, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let bin = assert_cmd::cargo::cargo_bin("mfadmin");
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(bin)
        .args(args)
        .env("MFADMIN_DATA_DIR", data)
        .env("USER", "tester")
        .env_remove("MFADMIN_CONFIG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Every path under `dir` (itself included) whose mode lets group or others in.
fn open_to_others(dir: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        let wanted = if meta.is_dir() { 0o700 } else { 0o600 };
        if mode != wanted {
            found.push(format!("{} {mode:o}", path.display()));
        }
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    found
}

#[test]
fn the_store_is_private_under_any_umask_and_a_loose_one_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    for umask in ["000", "022"] {
        let top = tempfile::tempdir().unwrap();
        std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = top.path().join("data");
        let out = under_umask(umask, &data, &["init", "--org", "Acme", "--owner", "root", "--password-stdin"], "a long enough password\n");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let out = under_umask(umask, &data, &["user", "add", "ann", "--email", "ann@acme.example", "--org", "Acme"], "");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let backup = data.join("b.mfab");
        let out = under_umask(umask, &data, &["backup", backup.to_str().unwrap()], "");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(open_to_others(&data), Vec::<String>::new(), "under umask {umask}");

        // A store an older mfadmin left open to others is refused, with the command that fixes it.
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        for args in [&["user", "list"][..], &["serve", "--listen", "127.0.0.1:0"][..], &["audit", "verify"][..]] {
            let out = under_umask(umask, &data, args, "");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} ran on a data directory open to others");
            assert!(err.contains(&format!("chmod -R go-rwx {}", data.display())), "{args:?}: {err}");
        }
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        let key = data.join("mfadmin.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let out = under_umask(umask, &data, &["user", "list"], "");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(&format!("chmod 600 {}", key.display())), "{err}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let out = under_umask(umask, &data, &["user", "list"], "");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}
