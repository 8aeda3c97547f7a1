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
        .stderr(predicate::str::contains("dry run, nothing changed: 2 would be reset"));
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
    assert_eq!(eve["user"]["org"], "Globex", "the org as it was given, not its lower-cased key");
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
        .stderr(predicate::str::contains(format!("is in use by another mfadmin process (PID {})", std::process::id())));
}

#[test]
fn check_finds_an_index_entry_that_points_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    mfadmin(dir.path()).args(["demo", "--users", "50"]).assert().success();
    let out = mfadmin(dir.path()).arg("check").assert().success().stdout(predicate::str::contains("store ok: 51 users")).get_output().stdout.clone();
    // The room the store takes: its files, and the records in them (51 users, their indexes, the
    // demo's audit events: tens of KiB at least, and not more than the files).
    let out = String::from_utf8(out).unwrap();
    let line = out.lines().find(|l| l.starts_with("space: ")).unwrap_or_else(|| panic!("no space line in {out}"));
    let bytes = |text: &str| -> f64 {
        let (n, unit) = text.trim().split_once(' ').unwrap();
        n.parse::<f64>().unwrap() * match unit { "B" => 1.0, "KiB" => 1024.0, "MiB" => 1048576.0, "GiB" => 1073741824.0, u => panic!("unit {u}") }
    };
    let (disk, records) = line.trim_start_matches("space: ").split_once(" on disk, of which the records are ").unwrap();
    assert!(bytes(records) > 20_000.0 && bytes(records) <= bytes(disk), "{line}");
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
        .stdout(predicate::str::contains(format!("mfa last used  {} ({client})", when.replacen('T', " ", 1))));
    let never = all.iter().find(|u| u["mfa"] == "enrolled" && u["mfa_last_used_at"].is_null()).expect("a demo factor never used");
    mfadmin(dir.path())
        .args(["user", "show", never["username"].as_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::contains("mfa last used  never"));
}

/// A store with org Acme (and its owner root, password set) and no other user.
fn acme(dir: &std::path::Path) {
    mfadmin(dir)
        .args(["init", "--org", "Acme", "--owner", "root", "--password-stdin", "--no-enforce-mfa"])
        .write_stdin("a long enough password\n")
        .assert()
        .success();
}

#[test]
fn a_reset_naming_a_missing_user_changes_nothing_unless_told_to_skip_it() {
    let dir = tempfile::tempdir().unwrap();
    mfadmin(dir.path()).args(["demo", "--users", "100"]).assert().success();
    let users = json(mfadmin(dir.path()).args(["user", "list", "--mfa", "enrolled", "--role", "member", "--output", "json"]));
    let names: Vec<&str> = users.as_array().unwrap().iter().take(3).map(|u| u["username"].as_str().unwrap()).collect();
    let mfa = |name: &str| json(mfadmin(dir.path()).args(["user", "show", name, "--output", "json"]))["user"]["mfa"].clone();

    let typo = format!("{}x", names[1]);
    mfadmin(dir.path())
        .args(["mfa", "reset", names[0], names[1], &typo, "--reason", "r", "--yes"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("not found"))
        .stderr(predicate::str::contains(format!("not found ({typo})")).and(predicate::str::contains("nothing was changed")));
    assert_eq!(mfa(names[0]), "enrolled");
    assert_eq!(mfa(names[1]), "enrolled");

    // A list from standard input may start with its column's name; with --skip-missing the users
    // that exist are reset and the exit code says all went as asked.
    mfadmin(dir.path())
        .args(["mfa", "reset", "-", "--reason", "r", "--yes", "--skip-missing", "--output", "csv"])
        .write_stdin(format!("username\n{}\nnobody-at-all\n", names[2]))
        .assert()
        .success()
        .stdout(predicate::str::contains("target,user_id,username,outcome,mfa_after,detail"))
        .stdout(predicate::str::is_match("nobody-at-all,,[^,]*,not found").unwrap())
        .stdout(predicate::str::contains("username,").count(1));
    assert_ne!(mfa(names[2]), "enrolled");
}

#[test]
fn api_keys_are_listed_and_revoked_and_a_name_is_used_once_per_user() {
    let dir = tempfile::tempdir().unwrap();
    acme(dir.path());
    let create = |name: &str| mfadmin(dir.path()).args(["apikey", "create", "--user", "root", "--name", name, "--role", "admin"]).output().unwrap();
    let first = create("nightly");
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let key = String::from_utf8(first.stdout).unwrap().trim().to_string();
    let again = create("nightly");
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already has an API key named \"nightly\""));
    assert!(create("weekly").status.success());

    let keys = json(mfadmin(dir.path()).args(["apikey", "list", "--output", "json"]));
    let keys = keys.as_array().unwrap();
    assert_eq!(keys.iter().map(|k| k["name"].as_str().unwrap()).collect::<Vec<_>>(), ["nightly", "weekly"]);
    assert!(keys.iter().all(|k| k["org"] == "Acme" && k["owner"] == "root" && k["role"] == "admin"));
    assert!(!keys.iter().any(|k| k.to_string().contains(&key)), "the key itself is never listed");
    let csv = String::from_utf8(mfadmin(dir.path()).args(["apikey", "list", "--output", "csv"]).output().unwrap().stdout).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let fields: Vec<&str> = keys[0].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(header.iter().copied().collect::<std::collections::BTreeSet<_>>(), fields.iter().copied().collect(), "CSV and JSON carry the same fields");

    let id = keys[0]["id"].as_str().unwrap();
    mfadmin(dir.path()).args(["apikey", "revoke", id]).assert().success().stdout(predicate::str::contains("Revoked"));
    mfadmin(dir.path()).args(["apikey", "list"]).assert().success().stdout(predicate::str::contains("nightly").not());
    mfadmin(dir.path()).args(["apikey", "revoke", id]).assert().code(1).stderr(predicate::str::contains("not found"));
    // Revoked, the name is free again.
    assert!(create("nightly").status.success());
}

#[test]
fn adding_a_user_says_what_a_missing_password_means_and_the_only_org_is_the_default() {
    let dir = tempfile::tempdir().unwrap();
    acme(dir.path());
    mfadmin(dir.path())
        .args(["user", "add", "bob", "--email", "bob@acme.example"])
        .assert()
        .success()
        .stdout(predicate::str::contains("to Acme"))
        .stdout(predicate::str::contains("bob has no password, so cannot log in yet"))
        .stdout(predicate::str::contains("user set-password bob"));
    mfadmin(dir.path()).args(["user", "show", "bob"]).assert().success().stdout(predicate::str::is_match(r"password  not set").unwrap());
    assert_eq!(json(mfadmin(dir.path()).args(["user", "show", "bob", "--output", "json"]))["password_set"], false);
    mfadmin(dir.path()).args(["user", "show", "root"]).assert().success().stdout(predicate::str::is_match(r"password  set\n").unwrap());
    mfadmin(dir.path())
        .args(["user", "add", "cy", "--email", "cy@acme.example", "--password-stdin"])
        .write_stdin("another long password\n")
        .assert()
        .success()
        .stdout(predicate::str::contains("no password").not());

    mfadmin(dir.path()).args(["org", "add", "Globex"]).assert().success();
    mfadmin(dir.path())
        .args(["user", "add", "dee", "--email", "dee@acme.example"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("several orgs (Acme, Globex)").and(predicate::str::contains("--org")));
}

#[test]
fn an_unknown_org_is_an_error_and_the_last_active_owner_stays_enabled() {
    let dir = tempfile::tempdir().unwrap();
    acme(dir.path());
    mfadmin(dir.path())
        .args(["user", "list", "--org", "nosuch"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no org \"nosuch\"").and(predicate::str::contains("Acme")));
    mfadmin(dir.path()).args(["user", "list", "--org", "ACME"]).assert().success().stdout(predicate::str::contains("root"));

    mfadmin(dir.path())
        .args(["user", "disable", "root"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("root is the last active Owner of the org \"Acme\""));
    mfadmin(dir.path()).args(["user", "add", "ann", "--email", "ann@acme.example", "--role", "owner"]).assert().success();
    mfadmin(dir.path()).args(["user", "disable", "root"]).assert().success();
    mfadmin(dir.path()).args(["user", "disable", "ann"]).assert().code(1).stderr(predicate::str::contains("last active Owner"));
}

#[test]
fn export_then_import_keeps_each_users_status() {
    let dir = tempfile::tempdir().unwrap();
    acme(dir.path());
    mfadmin(dir.path()).args(["user", "add", "ann", "--email", "ann@acme.example"]).assert().success();
    mfadmin(dir.path()).args(["user", "add", "ben", "--email", "ben@acme.example"]).assert().success();
    mfadmin(dir.path()).args(["user", "disable", "ben"]).assert().success();
    let export = mfadmin(dir.path()).args(["user", "export"]).output().unwrap().stdout;

    let other = tempfile::tempdir().unwrap();
    mfadmin(other.path())
        .args(["init", "--org", "acme", "--owner", "boss", "--password-stdin", "--no-enforce-mfa"])
        .write_stdin("a long enough password\n")
        .assert()
        .success();
    let export = String::from_utf8(export).unwrap();
    let without_root: String = export.lines().filter(|l| !l.contains(",root,")).map(|l| format!("{l}\n")).collect();
    mfadmin(other.path()).args(["user", "import", "-"]).write_stdin(without_root).assert().success().stdout(predicate::str::contains("Imported 2 users"));
    let status = |name: &str| json(mfadmin(other.path()).args(["user", "show", name, "--output", "json"]))["user"]["status"].clone();
    assert_eq!(status("ann"), "active");
    assert_eq!(status("ben"), "disabled", "a disabled user stays disabled");
    mfadmin(other.path())
        .args(["user", "import", "-"])
        .write_stdin("username,email,display_name,role,org,status\ncal,cal@acme.example,Cal,member,acme,sleeping\n")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("line 2, column status"));
}

#[test]
fn times_read_one_way_in_tables_and_rfc3339_in_json_and_csv_matches_json() {
    let dir = tempfile::tempdir().unwrap();
    mfadmin(dir.path()).args(["demo", "--users", "30", "--seed", "5"]).assert().success();
    let table_time = predicate::str::is_match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ").unwrap();
    mfadmin(dir.path()).args(["user", "list"]).assert().success().stdout(table_time.clone());
    mfadmin(dir.path()).args(["audit", "list"]).assert().success().stdout(table_time.clone());
    let users = json(mfadmin(dir.path()).args(["user", "list", "--output", "json"]));
    let first = &users.as_array().unwrap()[0];
    let name = first["username"].as_str().unwrap();
    mfadmin(dir.path()).args(["user", "show", name]).assert().success().stdout(table_time);
    let created = first["created_at"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(created).is_ok(), "{created}");
    assert!(users.as_array().unwrap().iter().all(|u| u["org"].as_str().unwrap().chars().next().unwrap().is_uppercase()), "orgs as given");

    let fields: std::collections::BTreeSet<String> = first.as_object().unwrap().keys().cloned().collect();
    let csv = String::from_utf8(mfadmin(dir.path()).args(["user", "list", "--output", "csv"]).output().unwrap().stdout).unwrap();
    let header: std::collections::BTreeSet<String> = csv.lines().next().unwrap().split(',').map(str::to_string).collect();
    assert_eq!(header, fields, "user CSV and JSON carry the same fields");
    let orgs = String::from_utf8(mfadmin(dir.path()).args(["org", "show", "--output", "csv"]).output().unwrap().stdout).unwrap();
    let org_json = json(mfadmin(dir.path()).args(["org", "show", "--output", "json"]));
    let org_fields: std::collections::BTreeSet<String> = org_json[0].as_object().unwrap().keys().cloned().collect();
    assert_eq!(orgs.lines().next().unwrap().split(',').map(str::to_string).collect::<std::collections::BTreeSet<_>>(), org_fields);
    let report = json(mfadmin(dir.path()).args(["mfa", "reset", name, "--dry-run", "--reason", "x", "--output", "json"]));
    let result_fields: std::collections::BTreeSet<String> = report["results"][0].as_object().unwrap().keys().cloned().collect();
    let csv = String::from_utf8(mfadmin(dir.path()).args(["mfa", "reset", name, "--dry-run", "--reason", "x", "--output", "csv"]).output().unwrap().stdout).unwrap();
    assert_eq!(csv.lines().next().unwrap().split(',').map(str::to_string).collect::<std::collections::BTreeSet<_>>(), result_fields);
}

/// `init` in a terminal (tmux): a short password is refused before it is asked again, and the
/// next step it prints names the same --data-dir and --config.
#[test]
fn init_checks_the_password_length_first_and_its_hint_repeats_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let (data, config) = (dir.path().join("data"), dir.path().join("my config.toml"));
    std::fs::write(&config, "").unwrap();
    let socket = format!("mfadmin-cli-{}", std::process::id());
    let tmux = |args: &[&str]| {
        let out = std::process::Command::new("tmux").arg("-L").arg(&socket).args(args).env_remove("TMUX").output().expect("tmux runs");
        assert!(out.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    struct Kill(String);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = std::process::Command::new("tmux").arg("-L").arg(&self.0).arg("kill-server").output();
        }
    }
    let _kill = Kill(socket.clone());
    let out = dir.path().join("out");
    let bin = env!("CARGO_BIN_EXE_mfadmin");
    let script = format!(
        "\"$0\" --data-dir '{}' --config '{}' init --org Acme --owner root > '{}'; echo done",
        data.display(),
        config.display(),
        out.display()
    );
    tmux(&["-f", "/dev/null", "new-session", "-d", "-x", "200", "-y", "30", "-s", "t", "sh", "-c", &format!("{script}; sleep 60"), bin]);
    let wait_for = |needle: &str| {
        let start = std::time::Instant::now();
        loop {
            let screen = tmux(&["capture-pane", "-p", "-t", "t:0"]);
            if screen.contains(needle) {
                return screen;
            }
            assert!(start.elapsed().as_secs() < 30, "waited for {needle:?}; the screen:\n{screen}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    wait_for("Password for root:");
    tmux(&["send-keys", "-t", "t:0", "-l", "short"]);
    tmux(&["send-keys", "-t", "t:0", "Enter"]);
    let screen = wait_for("try again");
    assert!(screen.contains("at least") && !screen.contains("Again:"), "{screen}");
    tmux(&["send-keys", "-t", "t:0", "-l", "a long enough password"]);
    tmux(&["send-keys", "-t", "t:0", "Enter"]);
    wait_for("Again:");
    tmux(&["send-keys", "-t", "t:0", "-l", "a long enough password"]);
    tmux(&["send-keys", "-t", "t:0", "Enter"]);
    wait_for("done");
    let printed = std::fs::read_to_string(&out).unwrap();
    let hint = format!("Then confirm with: mfadmin --data-dir {} --config '{}' mfa confirm root CODE", data.display(), config.display());
    assert!(printed.contains(&hint), "{printed}");
}

/// Rewrite the stored audit log of the sled store in `dir` as someone who can write its files
/// but cannot read the key file: one event's reason changes, and every link after it and the head
/// are recomputed with plain SHA-256, consistently.
fn rewrite_audit_plainly(dir: &std::path::Path) {
    use mfadmin::domain::audit::AuditEvent;
    let tagged = |value: &dyn Fn() -> Vec<u8>| [vec![0u8], value()].concat();
    let db = sled::open(dir.join("store")).unwrap();
    let audit = db.open_tree("audit").unwrap();
    let mut events: Vec<AuditEvent> = audit.iter().map(|kv| postcard::from_bytes(&kv.unwrap().1[1..]).unwrap()).collect();
    events[1].draft.reason = Some("nothing to see here".into());
    for i in 2..events.len() {
        events[i].prev_hash = events[i - 1].hash();
    }
    for e in &events {
        audit.insert(e.seq.to_be_bytes(), tagged(&|| postcard::to_allocvec(e).unwrap())).unwrap();
    }
    let last = events.last().unwrap();
    db.open_tree("meta").unwrap().insert("audit_head", tagged(&|| postcard::to_allocvec(&(last.seq, last.hash())).unwrap())).unwrap();
    db.flush().unwrap();
}

#[test]
fn a_consistent_rewrite_of_the_audit_log_fails_verify_check_and_restore() {
    let dir = tempfile::tempdir().unwrap();
    mfadmin(dir.path()).args(["demo", "--users", "20"]).assert().success();
    mfadmin(dir.path()).args(["audit", "verify"]).assert().success().stdout(predicate::str::contains("every link intact"));
    rewrite_audit_plainly(dir.path());
    mfadmin(dir.path())
        .args(["audit", "verify"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("BROKEN at event 3").and(predicate::str::contains("rewritten without the key file")));
    mfadmin(dir.path()).arg("check").assert().code(1).stdout(predicate::str::contains("the audit chain is broken at event 3"));
    // A backup of it restores, and the restore says the chain is broken.
    let file = dir.path().join("store.backup");
    mfadmin(dir.path()).arg("backup").arg(&file).assert().success();
    let target = tempfile::tempdir().unwrap();
    std::fs::copy(dir.path().join("mfadmin.key"), target.path().join("mfadmin.key")).unwrap();
    mfadmin(target.path()).arg("restore").arg(&file).assert().code(1).stdout(predicate::str::contains("the audit chain is broken"));
}

#[test]
fn a_signed_export_is_checked_against_its_signature() {
    let dir = tempfile::tempdir().unwrap();
    mfadmin(dir.path()).args(["demo", "--users", "10"]).assert().success();
    for format in ["jsonl", "csv"] {
        let export = dir.path().join(format!("audit.{format}"));
        mfadmin(dir.path())
            .args(["audit", "export", "--signed", "--format", format, "-o"])
            .arg(&export)
            .assert()
            .success()
            .stderr(predicate::str::contains("Signed:"));
        let sig = std::fs::read_to_string(dir.path().join(format!("audit.{format}.sig"))).unwrap();
        assert!(sig.starts_with("mfadmin audit export signature v1\nhmac-sha256 "), "{sig}");
        mfadmin(dir.path()).args(["audit", "verify", "--file"]).arg(&export).assert().success().stdout(predicate::str::contains("is as mfadmin exported it"));
        // One byte changed: refused.
        let mut bytes = std::fs::read(&export).unwrap();
        let at = bytes.len() / 2;
        bytes[at] = if bytes[at] == b'x' { b'y' } else { b'x' };
        std::fs::write(&export, &bytes).unwrap();
        mfadmin(dir.path()).args(["audit", "verify", "--file"]).arg(&export).assert().code(1).stdout(predicate::str::contains("does NOT match its signature"));
    }
    // Another store's key file does not vouch for it.
    let other = tempfile::tempdir().unwrap();
    mfadmin(other.path()).args(["demo", "--users", "1"]).assert().success();
    let export = dir.path().join("again.jsonl");
    mfadmin(dir.path()).args(["audit", "export", "--signed", "-o"]).arg(&export).assert().success();
    mfadmin(other.path()).args(["audit", "verify", "--file"]).arg(&export).assert().code(1).stdout(predicate::str::contains("another key file"));
    // Without its signature, or to standard output, there is nothing to check.
    std::fs::remove_file(dir.path().join("again.jsonl.sig")).unwrap();
    mfadmin(dir.path()).args(["audit", "verify", "--file"]).arg(&export).assert().code(1).stderr(predicate::str::contains("cannot read the signature"));
    mfadmin(dir.path()).args(["audit", "export", "--signed"]).assert().code(2).stderr(predicate::str::contains("--output"));
}

#[test]
fn expired_sessions_are_deleted_when_the_store_is_opened() {
    use mfadmin::store::{Change, Session, SessionKind, Store};
    let dir = tempfile::tempdir().unwrap();
    mfadmin(dir.path()).args(["demo", "--users", "3"]).assert().success();
    let (expired, live) = ([1u8; 32], [2u8; 32]);
    {
        let store = mfadmin::store::sled::SledStore::open(&dir.path().join("store")).unwrap();
        let mut user = None;
        store.scan_users(&mut |u| {
            user = Some(u.id);
            false
        })
        .unwrap();
        let user = user.unwrap();
        let at = now() as i64;
        let sessions_put = vec![
            (expired, Session::new(user, SessionKind::MfaChallenge, at - 600, at - 300, "test")),
            (live, Session::new(user, SessionKind::Session, at, at + 3_600, "test")),
        ];
        store.commit(&[Change { sessions_put, ..Change::default() }]).unwrap();
        store.flush().unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    mfadmin(dir.path()).args(["user", "list"]).assert().success();
    let store = mfadmin::store::sled::SledStore::open(&dir.path().join("store")).unwrap();
    assert!(store.get_session(&expired).unwrap().is_none(), "the expired challenge went");
    assert!(store.get_session(&live).unwrap().is_some(), "the live session stays");
}

#[test]
fn every_setting_has_a_variable_and_an_unknown_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    mfadmin(dir.path()).args(["demo", "--users", "2"]).assert().success();
    // A full name (generated from the settings) and a documented short one both apply.
    mfadmin(dir.path()).env("MFADMIN_TOTP_SKEW", "9").args(["user", "list"]).assert().code(1).stderr(predicate::str::contains("totp.skew = 9"));
    mfadmin(dir.path()).env("MFADMIN_RESET_BATCH_SIZE", "0").args(["user", "list"]).assert().code(1).stderr(predicate::str::contains("reset.batch_size = 0"));
    mfadmin(dir.path()).env("MFADMIN_BATCH_SIZE", "0").args(["user", "list"]).assert().code(1).stderr(predicate::str::contains("reset.batch_size = 0"));
    mfadmin(dir.path())
        .env("MFADMIN_SERVER_LOG_FORMAT", "xml")
        .args(["user", "list"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("MFADMIN_SERVER_LOG_FORMAT (server.log_format)"));
    mfadmin(dir.path())
        .env("MFADMIN_LISTN", "127.0.0.1:1")
        .env("MFADMIN_TOKEN_FILE", dir.path().join("t"))
        .args(["user", "list"])
        .assert()
        .success()
        .stderr(predicate::str::contains("warning: MFADMIN_LISTN is not an mfadmin setting").and(predicate::str::contains("TOKEN_FILE").not()));
}

#[test]
fn unlock_lifts_a_lockout_keeps_the_factor_and_says_when_there_is_none() {
    let dir = tempfile::tempdir().unwrap();
    acme(dir.path());
    mfadmin(dir.path()).args(["demo", "--users", "200", "--seed", "5"]).assert().success();
    let locked = json(mfadmin(dir.path()).args(["user", "list", "--mfa", "locked", "--output", "json"]));
    let name = locked.as_array().unwrap().first().expect("the demo locks some factors")["username"].as_str().unwrap().to_string();
    let before = json(mfadmin(dir.path()).args(["user", "show", &name, "--output", "json"]));
    assert!(before["mfa_locked_until"].is_string(), "{before}");
    // `mfa status` says until when, and how to lift it now.
    mfadmin(dir.path())
        .args(["mfa", "status", &name])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("{name}: locked until 20")).and(predicate::str::contains(format!("mfadmin mfa unlock {name}"))));

    mfadmin(dir.path())
        .args(["mfa", "unlock", &name, "--reason", "locked out, ticket 4712"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("Unlocked the MFA of {name}: it is enrolled again")));
    let after = json(mfadmin(dir.path()).args(["user", "show", &name, "--output", "json"]));
    assert_eq!(after["user"]["mfa"], "enrolled");
    assert!(after["mfa_locked_until"].is_null(), "{after}");
    assert_eq!(after["user"]["recovery_codes_left"], before["user"]["recovery_codes_left"], "the recovery codes stay");
    let events = json(mfadmin(dir.path()).args(["audit", "list", "--filter", "ticket 4712", "--output", "json"]));
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["action"], "mfa.unlock");
    assert_eq!(events[0]["outcome"], "success");
    assert_eq!(events[0]["target"], name.as_str());

    // Again: not locked, a sentence and exit 1; an unknown user likewise.
    mfadmin(dir.path()).args(["mfa", "unlock", &name]).assert().code(1).stderr(predicate::str::contains("is not locked"));
    mfadmin(dir.path()).args(["mfa", "unlock", "nobody-here"]).assert().code(1).stderr(predicate::str::contains("nobody-here"));
}
