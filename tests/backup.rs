//! Backup and restore: a round trip through the binary loses nothing; a backup taken through a
//! running server while resets commit is a consistent snapshot; damaged, truncated and foreign files,
//! non-empty directories and missing or wrong key files are refused with a clear error.

mod figures;
mod reliability_support;

use mfadmin::domain::role::Role;
use mfadmin::error::Error;
use mfadmin::service::{Actor, NewUser};
use mfadmin::store::backup::Snapshot;
use reliability_support::{check_invariants, key_file, mfadmin, open, Fixture, Server};
use std::path::Path;

fn snapshot_of(data_dir: &Path) -> Snapshot {
    let svc = open(data_dir);
    svc.store().snapshot(0).unwrap()
}

fn run_ok(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed: {text}");
    text
}

fn run_err(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{cmd:?} should have failed: {text}");
    text
}

/// A new data directory holding only a copy of `from`'s key file.
fn empty_with_key(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    std::fs::copy(key_file(from), key_file(to.path())).unwrap();
    to
}

#[test]
fn a_round_trip_through_the_binary_loses_nothing() {
    let fixture = Fixture::new(40);
    let source = fixture.copy();
    let file = source.path().join("store.backup");
    let said = run_ok(mfadmin(source.path()).arg("backup").arg(&file));
    assert!(said.contains("Backed up 41 users, 1 orgs"), "{said}");
    assert!(said.contains("Keep a copy of the key file"), "{said}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let before = snapshot_of(source.path());
    let taken = Snapshot::decode(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(taken.trees, before.trees, "the file holds the store as it is (with its own store.backup event)");

    let target = empty_with_key(source.path());
    let said = run_ok(mfadmin(target.path()).arg("restore").arg(&file));
    assert!(said.contains("Restored 41 users, 1 orgs") && said.contains("intact"), "{said}");
    let after = snapshot_of(target.path());
    assert_eq!(after.trees, before.trees, "every tree comes back byte for byte");
    run_ok(mfadmin(target.path()).arg("check"));

    // Users, MFA state, sessions and API keys, orgs and the audit chain: all there and working.
    let svc = open(target.path());
    assert_eq!(check_invariants(&svc, &fixture).unwrap().untouched, 40);
    let actor = svc.authenticate(&fixture.token, "test", reliability_support::now()).expect("the API key still works");
    assert_eq!(actor.role(), Role::Owner);
    let log = svc.audit_list(&Actor::console("cli"), &Default::default()).unwrap();
    assert_eq!(log[0].action, "store.backup");
    // A backup file is never overwritten.
    drop(svc);
    let said = run_err(mfadmin(source.path()).arg("backup").arg(&file));
    assert!(said.contains("already exists"), "{said}");
}

#[test]
fn restore_refuses_damaged_files_busy_directories_and_missing_or_wrong_keys() {
    let fixture = Fixture::new(3);
    let source = fixture.copy();
    let file = source.path().join("b");
    run_ok(mfadmin(source.path()).arg("backup").arg(&file));
    let bytes = std::fs::read(&file).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let write = |name: &str, content: &[u8]| {
        let p = scratch.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    };

    // Truncated anywhere, one byte flipped anywhere, or not a backup at all.
    for cut in [0, 5, 20, 27, bytes.len() / 2, bytes.len() - 1] {
        let err = Snapshot::decode(&bytes[..cut]).unwrap_err().to_string();
        assert!(err.contains("truncated") || err.contains("not an mfadmin backup"), "cut at {cut}: {err}");
    }
    for at in [16, 30, bytes.len() / 2, bytes.len() - 3] {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x40;
        let err = Snapshot::decode(&damaged).unwrap_err().to_string();
        assert!(err.contains("damaged") || err.contains("truncated") || err.contains("newer"), "flip at {at}: {err}");
    }
    let empty_dir = empty_with_key(source.path());
    let truncated = write("truncated", &bytes[..bytes.len() - 10]);
    let said = run_err(mfadmin(empty_dir.path()).arg("restore").arg(&truncated));
    assert!(said.contains("truncated"), "{said}");
    let said = run_err(mfadmin(empty_dir.path()).arg("restore").arg(write("csv", b"username,email\n")));
    assert!(said.contains("not an mfadmin backup"), "{said}");
    let mut newer = bytes.clone();
    newer[15..19].copy_from_slice(&9u32.to_be_bytes());
    let err = Snapshot::decode(&newer).unwrap_err().to_string();
    assert!(err.contains("newer mfadmin"), "{err}");
    assert!(!empty_dir.path().join("store").exists(), "nothing was written for a bad file");

    // A directory that holds a store, or anything but the key file.
    let said = run_err(mfadmin(source.path()).arg("restore").arg(&file));
    assert!(said.contains("not empty"), "{said}");
    std::fs::write(empty_dir.path().join("notes.txt"), "x").unwrap();
    let said = run_err(mfadmin(empty_dir.path()).arg("restore").arg(&file));
    assert!(said.contains("not empty") && said.contains("notes.txt"), "{said}");

    // No key file, or another store's: refused, and nothing left behind.
    let no_key = tempfile::tempdir().unwrap();
    let said = run_err(mfadmin(no_key.path()).arg("restore").arg(&file));
    assert!(said.contains("key file") && said.contains("copy it to"), "{said}");
    let other = Fixture::new(1);
    let wrong_key = empty_with_key(other.dir.path());
    let said = run_err(mfadmin(wrong_key.path()).arg("restore").arg(&file));
    assert!(said.contains("does not belong to this store"), "{said}");
    assert!(!wrong_key.path().join("store").exists(), "the half-restored store was removed");

    // The right key and an empty directory: restored.
    let good = empty_with_key(source.path());
    run_ok(mfadmin(good.path()).arg("restore").arg(&file));
}

#[test]
fn a_backup_through_a_running_server_is_consistent_while_resets_commit() {
    const MEMBERS: usize = 300;
    let fixture = Fixture::new(MEMBERS);
    let data = fixture.copy();
    let admin_token = {
        let svc = open(data.path());
        let console = Actor::console("cli");
        let new = NewUser {
            username: "adm".into(),
            email: "adm@acme.example".into(),
            display_name: "Adm".into(),
            role: Role::Admin,
            org: "Acme".into(),
            password: None,
        };
        svc.add_user(&console, new, reliability_support::now()).unwrap();
        let adm = svc.act_as(&console, "adm", "cli").unwrap();
        svc.create_api_key(&adm, "adm", Role::Admin, reliability_support::now()).unwrap().0
    };
    let mut server = Server::start(data.path(), &[("MFADMIN_BATCH_SIZE", "1")]);
    let url = format!("http://{}", server.addr);
    let out = tempfile::tempdir().unwrap();

    // While the server holds the store, a backup on its host goes through the server's socket.
    let said = run_ok(mfadmin(data.path()).arg("backup").arg(out.path().join("through-the-socket")));
    assert!(said.contains(&format!("Backed up {} users", MEMBERS + 2)), "{said}");
    // Only an Owner.
    let said = run_err(
        mfadmin(data.path()).args(["backup", "--remote", &url]).env("MFADMIN_TOKEN", &admin_token).arg(out.path().join("x")),
    );
    assert!(said.contains("only an Owner"), "{said}");

    let ids: Vec<String> = fixture.members.iter().map(|u| u.id.to_string()).collect();
    let body = serde_json::json!({"ids": ids, "reason": "backup test"}).to_string();
    let (addr, token) = (server.addr, fixture.token.clone());
    let resets = std::thread::spawn(move || reliability_support::http(addr, "POST", "/api/v1/mfa/reset", Some(&token), Some(&body)));
    // One backup with the CLI, then as many as fit through the API while the resets commit.
    let cli_file = out.path().join("cli");
    run_ok(mfadmin(data.path()).args(["backup", "--remote", &url]).env("MFADMIN_TOKEN", &fixture.token).arg(&cli_file));
    let mut files = vec![std::fs::read(&cli_file).unwrap()];
    while !resets.is_finished() || files.len() < 3 {
        let (status, bytes) = reliability_support::http(addr, "GET", "/api/v1/backup", Some(&fixture.token), None).expect("a backup");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
        files.push(bytes);
        assert!(files.len() < 5000, "the bulk reset never finished");
    }
    let (status, _) = resets.join().unwrap().expect("the bulk reset answers");
    assert_eq!(status, 200);
    assert_eq!(server.stop().code(), Some(0));

    // Every backup is a state the store was in: each member reset (with its event) or untouched.
    let mut midway = 0;
    for (i, bytes) in files.iter().enumerate() {
        let snapshot = Snapshot::decode(bytes).unwrap();
        let restored = empty_with_key(data.path());
        drop(mfadmin::store::sled::restore(&snapshot, &restored.path().join("store")).unwrap());
        let svc = open(restored.path());
        let tally = check_invariants(&svc, &fixture).unwrap_or_else(|e| panic!("backup {i}: {e}"));
        if tally.reset > 0 && tally.untouched > 0 {
            midway += 1;
        }
    }
    figures::report(&format!("backup: {} backups during a bulk reset, {midway} of them mid-way, all consistent", files.len()));
}

#[test]
fn an_owner_cannot_back_up_a_store_that_holds_other_orgs() {
    let fixture = Fixture::new(1);
    let data = fixture.copy();
    let svc = open(data.path());
    let console = Actor::console("cli");
    svc.add_org(&console, "Globex", false, reliability_support::now()).unwrap();
    let owner = svc.act_as(&console, "root", "http").unwrap();
    let err = mfadmin::backup::take(&svc, &owner, reliability_support::now()).unwrap_err();
    assert!(matches!(err, Error::Forbidden(_)), "{err}");
    assert!(err.to_string().contains("other orgs"), "{err}");
    assert!(mfadmin::backup::take(&svc, &console, reliability_support::now()).is_ok());
}
