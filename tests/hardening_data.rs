//! The data-side findings of the hardening review (issue 20), each reproduced as an attack.

mod common;

use assert_cmd::Command;
use predicates::prelude::*;
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
