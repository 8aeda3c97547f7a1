//! Backup and restore: a round trip through the binary loses nothing (to a file or standard
//! output); a backup taken through a running server while resets commit is a consistent moment;
//! altered, damaged, truncated and foreign files, non-empty targets and missing or wrong key files
//! are refused with a clear error; backups of the older format still restore; and with PostgreSQL
//! (`tests/pg/run.sh`), sled → PostgreSQL → sled by backup and by `mfadmin store migrate` keeps
//! everything, a user's TOTP included.

mod figures;
mod reliability_support;

use mfadmin::auth::seal::Sealer;
use mfadmin::domain::role::Role;
use mfadmin::error::Error;
use mfadmin::service::{Actor, NewUser, Service, ValidateRequest, Validation, Validator};
use mfadmin::store::backup::{self, Snapshot};
use mfadmin::store::sled::SledStore;
use mfadmin::store::{Record, Store};
use reliability_support::{check_invariants, key_file, mfadmin, now, open, Fixture, Server};
use std::path::Path;
use std::process::Command;

/// Every record of the store in `data_dir`, as a backup carries them.
fn records_of(data_dir: &Path) -> Vec<Record> {
    records_in(&open(data_dir))
}

fn records_in(svc: &Service) -> Vec<Record> {
    let mut out = Vec::new();
    svc.store()
        .export(now(), &mut |r| {
            out.push(r);
            Ok(())
        })
        .unwrap();
    out
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed: {text}");
    text
}

fn run_err(cmd: &mut Command) -> String {
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

/// Add a user `totp` to the store in `data_dir`, enrolled with a secret the test knows.
fn enroll_known_user(data_dir: &Path) -> Vec<u8> {
    let svc = open(data_dir);
    let console = Actor::console("cli");
    let new = NewUser {
        username: "totp".into(),
        email: "totp@acme.example".into(),
        display_name: "Totp".into(),
        role: Role::Member,
        org: "Acme".into(),
        password: None,
    };
    svc.add_user(&console, new, now()).unwrap();
    let e = svc.begin_enrollment(&console, "totp", "mfadmin", now()).unwrap();
    let secret = totp_rs::Secret::try_from_base32(&e.secret_base32).unwrap().to_vec();
    svc.confirm_enrollment(&console, "totp", &mfadmin::auth::totp::code_at(&secret, now() as u64), now()).unwrap();
    secret
}

/// The user `totp`'s code, a minute on, is accepted by the store in `svc`.
fn totp_still_validates(svc: &Service, secret: &[u8], later: i64) {
    let at = now() + later;
    let req = ValidateRequest { user: "totp".into(), realm: Some("Acme".into()), pass: mfadmin::auth::totp::code_at(secret, at as u64), ..Default::default() };
    let answer = svc.validate(&Validator::address("127.0.0.1"), &req, at).unwrap();
    assert!(matches!(answer, Validation::Accept { .. }), "{answer:?}");
}

#[test]
fn a_round_trip_through_the_binary_loses_nothing() {
    let fixture = Fixture::new(40);
    let source = fixture.copy();
    let secret = enroll_known_user(source.path());
    let file = source.path().join("store.backup");
    let said = run_ok(mfadmin(source.path()).arg("backup").arg(&file));
    assert!(said.contains("Backed up 42 users, 1 orgs"), "{said}");
    assert!(said.contains("Keep a copy of the key file"), "{said}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let before = records_of(source.path());
    let sealer = Sealer::load(&key_file(source.path())).unwrap();
    let summary = backup::verify(std::fs::File::open(&file).unwrap(), Some(&sealer)).unwrap();
    assert_eq!((summary.format, summary.header.unwrap().store_kind.as_str()), (backup::FORMAT_VERSION, "sled"));

    let target = empty_with_key(source.path());
    let said = run_ok(mfadmin(target.path()).arg("restore").arg(&file));
    assert!(said.contains("Restored 42 users, 1 orgs") && said.contains("intact"), "{said}");
    assert_eq!(records_of(target.path()), before, "every record comes back byte for byte (with the store.backup event)");
    run_ok(mfadmin(target.path()).arg("check"));

    // Users, MFA state, sessions and API keys, orgs and the audit chain: all there and working.
    let svc = open(target.path());
    assert_eq!(check_invariants(&svc, &fixture).unwrap().untouched, 40);
    let actor = svc.authenticate(&fixture.token, "test", now()).expect("the API key still works");
    assert_eq!(actor.role(), Role::Owner);
    let log = svc.audit_list(&Actor::console("cli"), &Default::default()).unwrap();
    assert_eq!(log[0].action, "store.backup");
    totp_still_validates(&svc, &secret, 60);
    // A backup file is never overwritten.
    drop(svc);
    let said = run_err(mfadmin(source.path()).arg("backup").arg(&file));
    assert!(said.contains("already exists"), "{said}");
}

#[test]
fn a_backup_to_standard_output_restores() {
    let fixture = Fixture::new(5);
    let source = fixture.copy();
    let out = mfadmin(source.path()).args(["backup", "-"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("standard output"));
    let sealer = Sealer::load(&key_file(source.path())).unwrap();
    let summary = backup::verify(&out.stdout[..], Some(&sealer)).unwrap();
    assert_eq!((summary.counts.users, summary.counts.orgs), (6, 1));
    let file = source.path().join("piped");
    std::fs::write(&file, &out.stdout).unwrap();
    let target = empty_with_key(source.path());
    run_ok(mfadmin(target.path()).arg("restore").arg(&file));
    assert_eq!(records_of(target.path()), records_of(source.path()));
}

/// Backups written by an older mfadmin (sled's trees whole) restore as they did.
#[test]
fn a_backup_of_the_older_format_still_restores() {
    let fixture = Fixture::new(10);
    let source = fixture.copy();
    let old = {
        let store = SledStore::open(&source.path().join("store")).unwrap();
        mfadmin::store::sled::snapshot(&store, now()).unwrap().encode()
    };
    let file = source.path().join("old.backup");
    std::fs::write(&file, &old).unwrap();
    let target = empty_with_key(source.path());
    let said = run_ok(mfadmin(target.path()).arg("restore").arg(&file));
    assert!(said.contains("Restored 11 users, 1 orgs") && said.contains("intact"), "{said}");
    assert_eq!(records_of(target.path()), records_of(source.path()));
    let svc = open(target.path());
    assert_eq!(check_invariants(&svc, &fixture).unwrap().untouched, 10);
}

#[test]
fn restore_refuses_altered_damaged_files_busy_directories_and_missing_or_wrong_keys() {
    let fixture = Fixture::new(3);
    let source = fixture.copy();
    let file = source.path().join("b");
    run_ok(mfadmin(source.path()).arg("backup").arg(&file));
    let bytes = std::fs::read(&file).unwrap();
    let sealer = Sealer::load(&key_file(source.path())).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let write = |name: &str, content: &[u8]| {
        let p = scratch.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    };

    // Truncated anywhere, one byte changed anywhere, or not a backup at all.
    for cut in [0, 5, 18, 20, 27, bytes.len() / 2, bytes.len() - 1] {
        let err = backup::verify(&bytes[..cut], Some(&sealer)).unwrap_err().to_string();
        assert!(err.contains("truncated") || err.contains("not an mfadmin backup"), "cut at {cut}: {err}");
    }
    for at in [16, 30, bytes.len() / 2, bytes.len() - 3] {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x40;
        assert!(backup::verify(&damaged[..], Some(&sealer)).is_err(), "a flip at {at} went unnoticed");
    }
    let empty_dir = empty_with_key(source.path());
    let truncated = write("truncated", &bytes[..bytes.len() - 10]);
    let said = run_err(mfadmin(empty_dir.path()).arg("restore").arg(&truncated));
    assert!(said.contains("truncated"), "{said}");
    // A record altered by someone without the key file (the frame still decodes): the code tells.
    let mut altered = bytes.clone();
    let name_at = altered.windows(5).position(|w| w == b"m0001").expect("a user name in the backup");
    altered[name_at..name_at + 5].copy_from_slice(b"evil1");
    let said = run_err(mfadmin(empty_dir.path()).arg("restore").arg(write("altered", &altered)));
    assert!(said.contains("was altered or damaged") && said.contains("authentication code"), "{said}");
    let said = run_err(mfadmin(empty_dir.path()).arg("restore").arg(write("csv", b"username,email\n")));
    assert!(said.contains("not an mfadmin backup"), "{said}");
    let mut newer = bytes.clone();
    newer[15..19].copy_from_slice(&9u32.to_be_bytes());
    let said = run_err(mfadmin(empty_dir.path()).arg("restore").arg(write("newer", &newer)));
    assert!(said.contains("newer mfadmin"), "{said}");
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
    assert!(said.contains("another key file") && said.contains("does not belong to this store"), "{said}");
    assert!(!wrong_key.path().join("store").exists(), "nothing was written");

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
        svc.add_user(&console, new, now()).unwrap();
        let adm = svc.act_as(&console, "adm", "cli").unwrap();
        svc.create_api_key(&adm, "adm", Role::Admin, now()).unwrap().0
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
    assert!(!out.path().join("x").exists() && !out.path().join("x.partial").exists(), "a refused backup leaves no file");

    let ids: Vec<String> = fixture.members.iter().map(|u| u.id.to_string()).collect();
    let body = serde_json::json!({"ids": ids, "reason": "backup test"}).to_string();
    let (addr, token) = (server.addr, fixture.token.clone());
    let resets = std::thread::spawn(move || reliability_support::http(addr, "POST", "/api/v1/mfa/reset", Some(&token), Some(&body)));
    // One backup with the CLI (streamed to its file), then as many as fit through the API while
    // the resets commit.
    let cli_file = out.path().join("cli");
    let said = run_ok(mfadmin(data.path()).args(["backup", "--remote", &url]).env("MFADMIN_TOKEN", &fixture.token).arg(&cli_file));
    assert!(said.contains("Backed up 302 users"), "{said}");
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
    let sealer = Sealer::load(&key_file(data.path())).unwrap();
    let mut midway = 0;
    for (i, bytes) in files.iter().enumerate() {
        let restored = empty_with_key(data.path());
        {
            let store = SledStore::create(&restored.path().join("store")).unwrap();
            mfadmin::backup::restore_into(&store, &bytes[..], &sealer).unwrap_or_else(|e| panic!("backup {i}: {e}"));
            store.flush().unwrap();
        }
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
    svc.add_org(&console, "Globex", false, now()).unwrap();
    let owner = svc.act_as(&console, "root", "http").unwrap();
    let err = mfadmin::backup::take(&svc, &owner, now(), &mut Vec::new()).unwrap_err();
    assert!(matches!(err, Error::Forbidden(_)), "{err}");
    assert!(err.to_string().contains("other orgs"), "{err}");
    let mut out = Vec::new();
    let counts = mfadmin::backup::take(&svc, &console, now(), &mut out).unwrap();
    assert_eq!((counts.users, counts.orgs), (2, 2), "the console backs up every org");
    assert!(backup::verify(&out[..], Some(svc.sealer())).is_ok());
}

/// Format-1 files are still told apart from damage by their header.
#[test]
fn an_older_backup_that_is_damaged_is_refused() {
    let fixture = Fixture::new(2);
    let store = SledStore::open(&fixture.dir.path().join("store")).unwrap();
    let bytes = mfadmin::store::sled::snapshot(&store, 0).unwrap().encode();
    assert!(Snapshot::decode(&bytes).is_ok());
    let mut damaged = bytes.clone();
    let at = damaged.len() / 2;
    damaged[at] ^= 1;
    let err = backup::verify(&damaged[..], None).unwrap_err().to_string();
    assert!(err.contains("damaged"), "{err}");
}

// ---------------------------------------------------------------- PostgreSQL

/// A URL for a fresh schema of the test database (dropped when the guard goes), or `None` after
/// saying the case was skipped. See tests/store_suite.rs for the variables.
struct PgSchema {
    url: String,
    admin: postgres::Config,
    name: String,
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if let Ok(mut client) = self.admin.connect(postgres::NoTls) {
            let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}

fn pg_schema(test: &str) -> Option<PgSchema> {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let base = match std::env::var("MFADMIN_TEST_PG_URL") {
        Ok(url) => url,
        Err(_) => match std::env::var("PGHOST") {
            Ok(host) => format!(
                "postgres://{}:{}@{}:{}/{}",
                enc(&std::env::var("PGUSER").unwrap_or_else(|_| "postgres".into())),
                enc(&std::env::var("PGPASSWORD").unwrap_or_default()),
                host,
                std::env::var("PGPORT").unwrap_or_else(|_| "5432".into()),
                std::env::var("PGDATABASE").unwrap_or_else(|_| "postgres".into()),
            ),
            Err(_) => {
                if std::env::var("MFADMIN_TEST_PG_REQUIRED").is_ok_and(|v| v == "1") {
                    panic!("MFADMIN_TEST_PG_REQUIRED=1 but neither MFADMIN_TEST_PG_URL nor PGHOST is set");
                }
                eprintln!("skipped {test} on PostgreSQL: set MFADMIN_TEST_PG_URL or run tests/pg/run.sh");
                return None;
            }
        },
    };
    let admin: postgres::Config = base.parse().expect("a PostgreSQL connection string");
    let name = format!("mfadmin_backup_{}_{test}", std::process::id());
    admin.connect(postgres::NoTls).expect("the test database answers").batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}")).unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{name}");
    Some(PgSchema { url, admin, name })
}

/// `mfadmin` with the store in PostgreSQL at `url` (the key file in `data_dir`).
fn on_pg(data_dir: &Path, url: &str) -> Command {
    let mut cmd = mfadmin(data_dir);
    cmd.env("MFADMIN_STORE_KIND", "postgres").env("MFADMIN_STORE_URL", url);
    cmd
}

/// Counts of users, orgs and audit events, and whether check and the chain pass.
fn counts_of(svc: &Service) -> (usize, usize, u64) {
    let (problems, chain) = svc.check(&Actor::console("cli")).unwrap();
    assert!(problems.is_empty() && chain.ok, "{problems:?} {chain:?}");
    (svc.store().user_count().unwrap(), svc.store().orgs().unwrap().len(), chain.events)
}

fn open_pg(data_dir: &Path, url: &str) -> Service {
    let mut config = reliability_support::config_for(data_dir);
    config.store.kind = mfadmin::config::StoreKind::Postgres;
    config.store.url = Some(url.into());
    mfadmin::app::Context { config }.open_service().unwrap()
}

/// sled → backup → restore into PostgreSQL → backup → restore into sled: nothing lost, `check`
/// and `audit verify` pass at each step, and a user's TOTP still validates.
#[test]
fn a_backup_moves_from_sled_to_postgresql_and_back() {
    let Some(pg) = pg_schema("roundtrip") else { return };
    let fixture = Fixture::new(30);
    let source = fixture.copy();
    let secret = enroll_known_user(source.path());
    let file = source.path().join("sled.backup");
    run_ok(mfadmin(source.path()).arg("backup").arg(&file));
    let before = records_of(source.path());

    let pg_dir = empty_with_key(source.path());
    let said = run_ok(on_pg(pg_dir.path(), &pg.url).arg("restore").arg(&file));
    assert!(said.contains("Restored 32 users, 1 orgs") && said.contains("PostgreSQL") && said.contains("intact"), "{said}");
    run_ok(on_pg(pg_dir.path(), &pg.url).args(["audit", "verify"]));
    run_ok(on_pg(pg_dir.path(), &pg.url).arg("check"));
    // A restore into a database that holds a store with records is refused.
    let said = run_err(on_pg(pg_dir.path(), &pg.url).arg("restore").arg(&file));
    assert!(said.contains("empty database"), "{said}");
    let on_pg_counts = {
        let svc = open_pg(pg_dir.path(), &pg.url);
        assert_eq!(records_in(&svc), before, "PostgreSQL holds every record as sled did");
        assert_eq!(counts_of(&svc), counts_of(&open(source.path())));
        totp_still_validates(&svc, &secret, 60);
        assert_eq!(check_invariants(&svc, &fixture).unwrap().untouched, 30);
        counts_of(&svc)
    };

    let back_file = pg_dir.path().join("pg.backup");
    let said = run_ok(on_pg(pg_dir.path(), &pg.url).arg("backup").arg(&back_file));
    assert!(said.contains("Backed up 32 users"), "{said}");
    let sealer = Sealer::load(&key_file(source.path())).unwrap();
    let summary = backup::verify(std::fs::File::open(&back_file).unwrap(), Some(&sealer)).unwrap();
    assert_eq!(summary.header.unwrap().store_kind, "postgres");
    let back = empty_with_key(source.path());
    run_ok(mfadmin(back.path()).arg("restore").arg(&back_file));
    let svc = open(back.path());
    assert_eq!(counts_of(&svc), (on_pg_counts.0, on_pg_counts.1, on_pg_counts.2 + 1), "the same, with the second backup's event");
    totp_still_validates(&svc, &secret, 120);
}

/// `mfadmin store migrate --to postgres://…` and `--to sled:DIR`: copied in one step, checked,
/// with the config change printed; a target that holds records is refused.
#[test]
fn store_migrate_moves_to_postgresql_and_back() {
    let Some(pg) = pg_schema("migrate") else { return };
    let fixture = Fixture::new(20);
    let source = fixture.copy();
    let secret = enroll_known_user(source.path());
    let said = run_ok(mfadmin(source.path()).args(["store", "migrate", "--to", &pg.url]));
    assert!(said.contains("Copied 22 users, 1 orgs") && said.contains("intact"), "{said}");
    assert!(said.contains("kind = \"postgres\"") && said.contains("url ="), "{said}");
    let said = run_err(mfadmin(source.path()).args(["store", "migrate", "--to", &pg.url]));
    assert!(said.contains("already holds") || said.contains("empty database"), "{said}");
    let original = counts_of(&open(source.path()));
    let on_pg_counts = {
        let svc = open_pg(source.path(), &pg.url);
        assert_eq!(counts_of(&svc), original);
        totp_still_validates(&svc, &secret, 60);
        counts_of(&svc)
    };
    // And back, from the PostgreSQL store into a new data directory.
    let back = tempfile::tempdir().unwrap();
    let target = back.path().join("data");
    let said = run_ok(on_pg(source.path(), &pg.url).args(["store", "migrate", "--to"]).arg(format!("sled:{}", target.display())));
    assert!(said.contains("Copied 22 users") && said.contains("data_dir ="), "{said}");
    let svc = {
        let mut config = reliability_support::config_for(&target);
        config.key_file = Some(key_file(source.path()));
        mfadmin::app::Context { config }.open_service().unwrap()
    };
    assert_eq!(counts_of(&svc), (on_pg_counts.0, on_pg_counts.1, on_pg_counts.2 + 1), "with the second migration's event");
    totp_still_validates(&svc, &secret, 120);
}

// ---------------------------------------------------------------- scheduled backups

fn readyz_backup(server: &Server) -> String {
    let (status, body) = reliability_support::http(server.addr, "GET", "/readyz", None, None).expect("/readyz answers");
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(status == 200 || status == 503, "{status} {body}");
    body["backup"].as_str().unwrap_or_default().to_string()
}

fn backups_in(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

/// With `[backup]`, `mfadmin serve` takes backups as scheduled (every second here), each whole,
/// private and restorable, keeps the newest `keep`, and says so in /readyz and /metrics; when one
/// cannot be written it says that loudly, and carries on once it can again.
#[test]
fn serve_takes_checks_and_prunes_scheduled_backups() {
    let fixture = Fixture::new(20);
    let data = fixture.copy();
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    let backups_env = backups.to_str().unwrap().to_string();
    let mut server = Server::start(
        data.path(),
        &[("MFADMIN_BACKUP_DIRECTORY", backups_env.as_str()), ("MFADMIN_BACKUP_SCHEDULE", "1s"), ("MFADMIN_BACKUP_KEEP", "2")],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        while !done() {
            assert!(std::time::Instant::now() < deadline, "waited a minute for {what}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    // Four backups taken (each has its store.backup event in the next one), two kept.
    let taken = || {
        let files = backups_in(&backups);
        files.last().and_then(|f| std::fs::read(f).ok()).map_or(0, |b| b.windows(12).filter(|w| w == b"store.backup").count())
    };
    wait_for("four scheduled backups", &|| taken() >= 4);
    assert_eq!(readyz_backup(&server), "ok");
    let (status, metrics) = reliability_support::http(server.addr, "GET", "/metrics", Some(&fixture.token), None).unwrap();
    let metrics = String::from_utf8_lossy(&metrics).into_owned();
    assert_eq!(status, 200);
    assert!(metrics.contains("mfadmin_backup_failures_total 0"), "{metrics}");
    assert!(!metrics.contains("mfadmin_backup_last_success_timestamp_seconds 0\n"), "{metrics}");
    let files = backups_in(&backups);
    assert!(files.len() <= 2 && !files.is_empty(), "kept {files:?}");
    assert!(files.iter().all(|f| f.extension().is_some_and(|e| e == "backup")), "no partial file is left: {files:?}");

    // The directory cannot be written (a file where it was): failing, loudly, and then back.
    let moved = dir.path().join("moved");
    std::fs::rename(&backups, &moved).unwrap();
    std::fs::write(&backups, b"not a directory").unwrap();
    wait_for("a failure in /readyz", &|| readyz_backup(&server).starts_with("failing"));
    let (_, metrics) = reliability_support::http(server.addr, "GET", "/metrics", Some(&fixture.token), None).unwrap();
    assert!(!String::from_utf8_lossy(&metrics).contains("mfadmin_backup_failures_total 0"));
    std::fs::remove_file(&backups).unwrap();
    std::fs::rename(&moved, &backups).unwrap();
    wait_for("a good backup again", &|| readyz_backup(&server) == "ok");
    assert_eq!(server.stop().code(), Some(0));
    let log = server.drain().join("\n");
    assert!(log.contains("SCHEDULED BACKUP FAILED"), "{log}");

    // Each kept backup restores, with everything the fixture holds.
    let sealer = Sealer::load(&key_file(data.path())).unwrap();
    for file in backups_in(&backups) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        }
        backup::verify(std::fs::File::open(&file).unwrap(), Some(&sealer)).unwrap();
        let target = empty_with_key(data.path());
        run_ok(mfadmin(target.path()).arg("restore").arg(&file));
        assert_eq!(check_invariants(&open(target.path()), &fixture).unwrap().untouched, 20);
    }
}
