//! The data-side findings of the hardening review (issue 20), each reproduced as an attack.

mod common;
mod http_support;

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

// ------------------------------------------------------------------ 5. an Admin takes over an Admin

#[tokio::test]
async fn an_admin_manages_only_roles_below_its_own_and_steps_up_for_itself() {
    use axum::http::Method;
    use http_support::{Harness, PASSWORD};
    use mfadmin::domain::role::Role;
    use serde_json::json;
    let h = Harness::new();
    h.add_org("Acme", false);
    h.add_user("Acme", "adm1", Role::Admin, true);
    let adm2 = h.add_user("Acme", "adm2", Role::Admin, true);
    h.add_user("Acme", "own", Role::Owner, true);
    h.add_user("Acme", "mem", Role::Member, true);
    h.enroll("adm2");
    let adm1 = h.login("adm1").await;
    let put = |path: String, token: String, body: Value| {
        let h = &h;
        async move { h.call(Method::PUT, &path, Some(&token), Some(body)).await }
    };

    // The takeover: adm2's password, adm2's status, a new Admin, an imported Admin — all refused.
    let r = put("/api/v1/users/adm2/password".into(), adm1.clone(), json!({"password": "taken over by adm1"})).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let r = put("/api/v1/users/adm2/status".into(), adm1.clone(), json!({"status": "disabled"})).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let new = json!({"username": "adm3", "email": "adm3@acme.example", "role": "admin", "org": "Acme"});
    assert_eq!(h.post("/api/v1/users", Some(&adm1), new).await.status, 403);
    let csv = "username,email,display_name,role,org\nadm4,adm4@acme.example,Adm 4,admin,Acme\n";
    let req = axum::http::Request::post("/api/v1/users/import")
        .header("content-type", "text/csv")
        .header("authorization", format!("Bearer {adm1}"))
        .body(axum::body::Body::from(csv))
        .unwrap();
    assert_eq!(h.send(req).await.status, 400, "the Admin row is refused (and so the import)");
    assert!(h.service().store().user_id_by_name("adm4").unwrap().is_none());
    // Below its own role an Admin still manages; the reset table is unchanged (Admin resets Admin).
    assert_eq!(put("/api/v1/users/mem/password".into(), adm1.clone(), json!({"password": "set by an admin"})).await.status, 204);
    let r = h.post(&format!("/api/v1/users/{}/mfa/reset", adm2.id), Some(&adm1), json!({"reason": "lost phone"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // An Owner manages Admins.
    let own = h.login("own").await;
    assert_eq!(put("/api/v1/users/adm2/password".into(), own.clone(), json!({"password": "set by the owner"})).await.status, 204);

    // One's own password and one's own MFA: a stolen session alone is not enough.
    let r = put("/api/v1/users/adm1/password".into(), adm1.clone(), json!({"password": "my own new one"})).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("current_password"), "{}", r.text());
    let r = put("/api/v1/users/adm1/password".into(), adm1.clone(), json!({"password": "my own new one", "current_password": "not it at all"})).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let r = put("/api/v1/users/adm1/password".into(), adm1.clone(), json!({"password": "my own new one", "current_password": PASSWORD})).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let adm1 = h.post("/api/v1/auth/login", None, json!({"username": "adm1", "password": "my own new one"})).await.ok()["token"]
        .as_str()
        .unwrap()
        .to_string();
    h.enroll("adm1");
    let me = h.service().store().user_id_by_name("adm1").unwrap().unwrap();
    for (path, body) in [
        ("/api/v1/me/mfa/reset".to_string(), json!({"reason": "new phone"})),
        (format!("/api/v1/users/{me}/mfa/reset"), json!({"reason": "new phone"})),
    ] {
        let r = h.post(&path, Some(&adm1), body).await;
        assert_eq!(r.status, 403, "{path}: {}", r.text());
    }
    let r = h.post("/api/v1/mfa/reset", Some(&adm1), json!({"ids": [me], "reason": "new phone"})).await.ok();
    assert_eq!(r["results"][0]["outcome"], "denied", "{r}");
    let r = h.post("/api/v1/me/mfa/reset", Some(&adm1), json!({"reason": "new phone", "current_password": "my own new one"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The console operator is at the machine: no step-up.
    h.service().set_password(&Harness::console(), "adm1", "console sets it", None, h.now()).unwrap();
}

// ------------------------------------------------------------------ 8. squatted references

#[test]
fn a_user_name_cannot_take_the_form_of_another_reference() {
    use common::{add, console, store, T0};
    use mfadmin::domain::role::Role;
    use mfadmin::service::NewUser;
    let t = store();
    let mem = add(&t.svc, "mem2", Role::Member, "acme");
    let new = |username: &str, email: &str| NewUser {
        username: username.into(),
        email: email.into(),
        display_name: "Squatter".into(),
        role: Role::Member,
        org: "globex".into(),
        password: None,
    };
    let number = mem.number.to_string();
    let id = mem.id.to_string();
    let simple = mem.id.simple().to_string();
    for name in [mem.email.as_str(), "mem2@acme.example", number.as_str(), "2005", id.as_str(), simple.as_str()] {
        let r = t.svc.add_user(&console(), new(name, "squat@globex.example"), T0);
        assert!(r.is_err(), "the user name {name:?} was accepted");
    }
    // An email that is another user's name.
    assert!(t.svc.add_user(&console(), new("squat", "mem2"), T0).is_err());
    // The owner's lookups still find mem2 by each of its references.
    for reference in [mem.email.as_str(), number.as_str(), id.as_str(), "mem2"] {
        assert_eq!(t.svc.get_user(&console(), reference, T0).unwrap().user.id, mem.id, "{reference}");
    }
}

// ------------------------------------------------------------------ 10. invisible and mixed-script text

#[test]
fn invisible_and_mixed_script_characters_are_refused() {
    use common::{add, console, store, T0};
    use mfadmin::domain::role::Role;
    use mfadmin::service::NewUser;
    let t = store();
    add(&t.svc, "vic", Role::Member, "acme");
    common::enroll(&t.svc, "vic", T0);
    let new = |username: &str, email: &str, display: &str| NewUser {
        username: username.into(),
        email: email.into(),
        display_name: display.into(),
        role: Role::Member,
        org: "acme".into(),
        password: None,
    };
    let bad = [
        new("eve", "eve@acme.example", "Eve\u{200B}Admin"),
        new("eve", "eve@acme.example", "\u{202E}nimdA evE"),
        new("eve", "eve@acme.example", "Eve\u{2066}x\u{2069}"),
        new("eve", "eve@acme.example", "\u{FEFF}Eve"),
        new("eve", "eve@acme.example", "\u{00AD}Eve"),
        new("eve", "eve\u{200D}@acme.example", "Eve"),
        new("eve", "еve@acme.example", "Eve"),
        new("eve", "eve@асme.example", "Eve"),
        new("eve", "eve@acme.example", "Pаypal"),
        new("eve", "eve@acme.example", "Αdmin"),
    ];
    for n in bad {
        assert!(t.svc.add_user(&console(), n.clone(), T0).is_err(), "{:?} / {:?} was accepted", n.email, n.display_name);
    }
    // Any one script is fine in a display name, and so are words in different scripts.
    for (i, display) in ["Ирина Петрова", "Ελένη", "Zoë Ångström", "Dmitri Дмитрий", "李小龍"].iter().enumerate() {
        t.svc.add_user(&console(), new(&format!("ok{i}"), &format!("ok{i}@acme.example"), display), T0).unwrap();
    }
    for reason in ["lost\u{200B}phone", "ticket \u{202E}1174"] {
        assert!(t.svc.reset_mfa(&console(), &["vic".into()], Some(reason), false, T0).is_err(), "{reason:?}");
    }
}
