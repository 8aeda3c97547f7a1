//! The real binary, as a script would drive it: init → demo → enroll → confirm → reset → audit verify.

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

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn init_demo_enroll_confirm_reset_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let out = mfadmin(dir.path())
        .args(["init", "--org", "Acme", "--owner", "root", "--password-stdin"])
        .write_stdin("a long enough password\n")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("otpauth://totp/mfadmin:root?"), "{text}");
    assert!(text.contains('█') || text.contains('▀'), "a QR code is drawn");
    let secret = text.lines().find_map(|l| l.strip_prefix("Secret:")).unwrap().trim().to_string();
    let raw = totp_rs::Secret::try_from_base32(&secret).unwrap().as_ref().to_vec();

    // A wrong code is refused and changes nothing.
    mfadmin(dir.path()).args(["mfa", "confirm", "root", "12345x"]).assert().code(1).stderr(predicate::str::contains("does not match"));
    let code = mfadmin::auth::totp::code_at(&raw, now());
    mfadmin(dir.path())
        .args(["mfa", "confirm", "root", &code])
        .assert()
        .success()
        .stdout(predicate::str::contains("Recovery codes"));
    mfadmin(dir.path()).args(["mfa", "status", "root"]).assert().success().stdout(predicate::str::contains("root: enrolled"));

    mfadmin(dir.path()).args(["demo", "--users", "300", "--seed", "3"]).assert().success();
    let users = json(mfadmin(dir.path()).args(["user", "list", "--mfa", "enrolled", "--org", "acme", "--output", "json"]));
    let users = users.as_array().unwrap();
    assert!(users.len() > 10);
    for field in ["id", "number", "username", "email", "display_name", "org", "role", "status", "mfa", "created_at"] {
        assert!(users[0].get(field).is_some(), "user JSON has {field}");
    }
    let picked: Vec<String> = users.iter().filter(|u| u["role"] != "owner").take(3).map(|u| u["username"].as_str().unwrap().to_string()).collect();

    let mut reset = mfadmin(dir.path());
    reset.args(["mfa", "reset", "--reason", "lost phones, ticket 99", "--yes", "--output", "json"]).args(&picked);
    let report = json(&mut reset);
    let outcomes: Vec<&str> = report["results"].as_array().unwrap().iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["reset", "reset", "reset"]);
    for name in &picked {
        let shown = json(mfadmin(dir.path()).args(["user", "show", name, "--output", "json"]));
        assert_eq!(shown["user"]["mfa"], "must_enroll", "acme enforces MFA");
    }
    let events = json(mfadmin(dir.path()).args(["audit", "list", "--filter", "ticket 99", "--output", "json"]));
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e["actor"] == "console:tester" && e["source"] == "cli" && e["action"] == "mfa.reset"));
    mfadmin(dir.path()).args(["audit", "verify"]).assert().success().stdout(predicate::str::contains("verifies"));

    // Exports: JSON Lines and CSV, every event.
    let jsonl = mfadmin(dir.path()).args(["audit", "export"]).output().unwrap().stdout;
    let lines: Vec<Value> = String::from_utf8(jsonl).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.first().unwrap()["seq"], 1);
    let csv = String::from_utf8(mfadmin(dir.path()).args(["audit", "export", "--format", "csv"]).output().unwrap().stdout).unwrap();
    assert_eq!(csv.lines().count(), lines.len() + 1);
}

#[test]
fn resets_read_targets_from_stdin_and_never_run_unconfirmed() {
    let dir = tempfile::tempdir().unwrap();
    mfadmin(dir.path()).args(["demo", "--users", "100"]).assert().success();
    let users = json(mfadmin(dir.path()).args(["user", "list", "--mfa", "enrolled", "--role", "member", "--output", "json"]));
    let names: Vec<&str> = users.as_array().unwrap().iter().take(2).map(|u| u["username"].as_str().unwrap()).collect();
    let stdin = format!("# queue from the help desk\n{}\n\n{}\n", names[0], names[1]);
    // Without --yes and without a terminal nothing happens.
    mfadmin(dir.path())
        .args(["mfa", "reset", "-", "--reason", "queue"])
        .write_stdin(stdin.clone())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--yes"));
    assert_eq!(json(mfadmin(dir.path()).args(["user", "show", names[0], "--output", "json"]))["user"]["mfa"], "enrolled");
    // A dry run says what would happen.
    mfadmin(dir.path())
        .args(["mfa", "reset", "-", "--reason", "queue", "--dry-run"])
        .write_stdin(stdin.clone())
        .assert()
        .success()
        .stdout(predicate::str::contains("would reset"))
        .stderr(predicate::str::contains("nothing changed"));
    mfadmin(dir.path()).args(["mfa", "reset", "-", "--reason", "queue", "--yes"]).write_stdin(stdin).assert().success();
    assert_ne!(json(mfadmin(dir.path()).args(["user", "show", names[1], "--output", "json"]))["user"]["mfa"], "enrolled");
    // A missing reason is refused; an unknown user makes the exit code 1.
    mfadmin(dir.path()).args(["mfa", "reset", names[0], "--yes"]).assert().code(1).stderr(predicate::str::contains("reason is required"));
    mfadmin(dir.path())
        .args(["mfa", "reset", "nobody-here", "--yes", "--reason", "x"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("not found"));
}

#[test]
fn import_names_line_and_column_and_imports_nothing_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    mfadmin(dir.path()).args(["demo", "--users", "10"]).assert().success();
    let csv = dir.path().join("people.csv");
    std::fs::write(
        &csv,
        "username,email,display_name,role,org\n\
         ann,ann@acme.example,Ann A,member,Acme\n\
         ben,ben@acme.example,Ben B,wizard,Acme\n\
         cat,,Cat C,member,Acme\n\
         dan,dan@acme.example,Dan D,member,Nowhere\n\
         eve,eve@acme.example,Eve E,helpdesk,Globex\n",
    )
    .unwrap();
    mfadmin(dir.path())
        .args(["user", "import"])
        .arg(&csv)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("line 3, column role"))
        .stderr(predicate::str::contains("line 4, column email"))
        .stderr(predicate::str::contains("line 5, column org"))
        .stderr(predicate::str::contains("nothing was imported"));
    mfadmin(dir.path()).args(["user", "show", "ann"]).assert().code(1).stderr(predicate::str::contains("not found"));
    mfadmin(dir.path())
        .args(["user", "import", "--skip-invalid"])
        .arg(&csv)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("Imported 2 users; skipped 3 rows"));
    let eve = json(mfadmin(dir.path()).args(["user", "show", "eve", "--output", "json"]));
    assert_eq!(eve["user"]["role"], "helpdesk");
    assert_eq!(eve["user"]["org"], "globex");
    mfadmin(dir.path())
        .args(["user", "import", "-"])
        .write_stdin("name,mail\nx,y\n")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no column \"username\""));
}

#[test]
fn usage_errors_exit_2_and_problems_exit_1_with_a_sentence() {
    let dir = tempfile::tempdir().unwrap();
    mfadmin(dir.path()).args(["user", "list"]).assert().code(1).stderr(predicate::str::contains("mfadmin init"));
    mfadmin(dir.path()).args(["demo", "--users", "5"]).assert().success();
    mfadmin(dir.path()).args(["user", "list", "--role", "wizard"]).assert().code(2).stderr(predicate::str::contains("unknown role"));
    mfadmin(dir.path()).args(["user", "list", "--mfa", "sometimes"]).assert().code(2);
    mfadmin(dir.path()).args(["frobnicate"]).assert().code(2);
    mfadmin(dir.path())
        .args(["init", "--org", "X", "--owner", "y", "--password-stdin"])
        .write_stdin("long enough pw\n")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("already holds a store"));
    mfadmin(dir.path())
        .env("MFADMIN_TOTP_SKEW", "lots")
        .args(["user", "list"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("MFADMIN_TOTP_SKEW"));
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[reset]\nreason = true\n").unwrap();
    mfadmin(dir.path()).args(["--config"]).arg(&config).args(["user", "list"]).assert().code(1).stderr(predicate::str::contains("unknown field `reason`"));
}

#[test]
fn a_store_held_by_another_process_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    mfadmin(dir.path()).args(["demo", "--users", "5"]).assert().success();
    let _held = mfadmin::store::sled::SledStore::open(&dir.path().join("store")).unwrap();
    mfadmin(dir.path())
        .args(["user", "list"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("is in use by another mfadmin process (probably `mfadmin serve`)"));
}

#[test]
fn check_finds_an_index_entry_that_points_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    mfadmin(dir.path()).args(["demo", "--users", "50"]).assert().success();
    mfadmin(dir.path()).arg("check").assert().success().stdout(predicate::str::contains("store ok: 51 users"));
    {
        let db = sled::open(dir.path().join("store")).unwrap();
        let users = db.open_tree("users").unwrap();
        users.remove(users.first().unwrap().unwrap().0).unwrap();
        db.flush().unwrap();
    }
    mfadmin(dir.path())
        .arg("check")
        .assert()
        .code(1)
        .stdout(predicate::str::is_match("the user name index entry [^ ]+ points at no user").unwrap());
}

#[test]
fn user_list_finds_factors_unused_for_an_age_and_shows_when_each_was_last_used() {
    let dir = tempfile::tempdir().unwrap();
    mfadmin(dir.path()).args(["demo", "--users", "400", "--seed", "5"]).assert().success();
    let all = json(mfadmin(dir.path()).args(["user", "list", "--output", "json"]));
    let all = all.as_array().unwrap();
    let at = |v: &Value| v.as_str().map(|t| chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp());
    // The rule, applied here to the full list: a confirmed factor, last used (or, never used,
    // enrolled) before the cutoff.
    let unused_since = |since: i64| -> Vec<String> {
        let mut names: Vec<String> = all
            .iter()
            .filter(|u| u["mfa"] == "enrolled" || u["mfa"] == "locked")
            .filter(|u| at(&u["mfa_last_used_at"]).max(at(&u["mfa_enrolled_at"])).is_none_or(|t| t < since))
            .map(|u| u["username"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    };
    for (age, secs) in [("180d", 180 * 86_400), ("26w", 26 * 7 * 86_400), ("2000h", 2000 * 3_600)] {
        let found = json(mfadmin(dir.path()).args(["user", "list", "--unused-for", age, "--output", "json"]));
        let mut names: Vec<String> = found.as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap().to_string()).collect();
        names.sort();
        assert_eq!(names, unused_since(now() as i64 - secs), "{age}");
        assert!(!names.is_empty() && names.len() < all.len(), "{age}: some factors are unused, not all");
    }
    for (bad, says) in [("180", "has no unit"), ("6m", "unknown unit"), ("0d", "no time at all"), ("soon", "not an age")] {
        mfadmin(dir.path())
            .args(["user", "list", "--unused-for", bad])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(says).and(predicate::str::contains("180d")));
    }

    // The table: a column with the day, or never; the CSV and JSON carry the time and client.
    let out = mfadmin(dir.path()).args(["user", "list", "--unused-for", "180d"]).output().unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    let header = table.lines().next().unwrap();
    assert!(header.contains("LAST LOGIN") && header.ends_with("MFA LAST USED"), "{header}");
    let column = header.find("MFA LAST USED").unwrap();
    for line in table.lines().skip(1) {
        let cell = line.get(column..).unwrap_or_default();
        let is_day = cell.len() == 10 && chrono::NaiveDate::parse_from_str(cell, "%Y-%m-%d").is_ok();
        assert!(cell == "never" || is_day, "{line}");
    }
    assert!(table.lines().all(|l| l.chars().count() < 160), "the table stays narrow enough");
    let csv = String::from_utf8(mfadmin(dir.path()).args(["user", "list", "--output", "csv"]).output().unwrap().stdout).unwrap();
    assert!(csv.lines().next().unwrap().ends_with(",mfa_reset_at,mfa_last_used_at,mfa_last_client"));
    let used = all.iter().find(|u| u["mfa_last_used_at"].is_string() && u["mfa_last_client"].is_string()).expect("a demo user used a factor");
    let (name, when, client) = (used["username"].as_str().unwrap(), used["mfa_last_used_at"].as_str().unwrap(), used["mfa_last_client"].as_str().unwrap());
    assert!(csv.lines().any(|l| l.contains(name) && l.ends_with(&format!(",{when},{client}"))));

    // user show: when and for which client, or never.
    mfadmin(dir.path())
        .args(["user", "show", name])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("mfa last used  {when} ({client})")));
    let never = all.iter().find(|u| u["mfa"] == "enrolled" && u["mfa_last_used_at"].is_null()).expect("a demo factor never used");
    mfadmin(dir.path())
        .args(["user", "show", never["username"].as_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::contains("mfa last used  never"));
}
