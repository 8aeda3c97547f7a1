//! Property tests standing in for cargo-fuzz (which needs a nightly toolchain these machines cannot
//! fetch): the CSV import, the config file, TOTP and recovery-code parsing, the stored-record decoder
//! and the backup decoder take any input without panicking, and refuse bad input with an error that
//! says what is wrong. `PROPTEST_CASES` sets the cases per property (default 256).

mod figures;
mod reliability_support;

use mfadmin::auth::{token, totp};
use mfadmin::config::Config;
use mfadmin::error::Error;
use mfadmin::store::backup;
use mfadmin::store::sled::SledStore;
use mfadmin::store::Store;
use proptest::prelude::*;
use reliability_support::Fixture;
use std::sync::OnceLock;

fn csv_text() -> impl Strategy<Value = String> {
    let cell = prop_oneof![
        "[a-z0-9._@-]{0,12}",
        Just("member".to_string()),
        Just("owner".to_string()),
        Just("Acme".to_string()),
        Just("\"quoted, with comma\"".to_string()),
        Just("\"unterminated".to_string()),
        "\\PC{0,10}",
    ];
    let row = prop::collection::vec(cell, 0..7).prop_map(|cells| cells.join(","));
    (prop::bool::ANY, prop::collection::vec(row, 0..6)).prop_map(|(header, rows)| {
        let mut text = if header { "username,email,display_name,role,org\n".to_string() } else { String::new() };
        text.push_str(&rows.join("\n"));
        text
    })
}

fn toml_text() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("reason_required"), Just("batch_size"), Just("skew"), Just("issuer"), Just("threshold"),
        Just("lifetime_minutes"), Just("listen"), Just("body_limit_bytes"), Just("header_read_timeout_seconds"),
        Just("flashback"), Just("log_format"), Just("nonsense"),
    ];
    let value = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        "\"\\PC{0,12}\"",
        Just("[1, 2]".to_string()),
        Just("{ a = 1 }".to_string()),
        "\\PC{0,6}",
    ];
    let section = prop_oneof![
        Just(""), Just("[reset]"), Just("[totp]"), Just("[lockout]"), Just("[session]"), Just("[server]"),
        Just("[compat]"), Just("[tui.keys.users]"), Just("[nope]"),
    ];
    prop::collection::vec((section, prop::collection::vec((key, value), 0..4)), 0..4).prop_map(|sections| {
        sections
            .into_iter()
            .map(|(s, kvs)| format!("{s}\n{}", kvs.into_iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join("\n")))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

proptest! {
    #[test]
    fn the_csv_import_never_panics(text in csv_text(), bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        for input in [text.as_bytes(), bytes.as_slice()] {
            match mfadmin::service::parse_user_csv(input) {
                Ok((rows, errors)) => {
                    for e in &errors {
                        prop_assert!(!e.message.is_empty() && !e.column.is_empty());
                    }
                    let svc = import_service();
                    let users: Vec<_> = rows.into_iter().map(|(_, u)| u).collect();
                    if !users.is_empty() {
                        // Checked against a real store, nothing written.
                        let _ = svc.import_users(&mfadmin::service::Actor::console("cli"), &users, true, 0);
                    }
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }

    #[test]
    fn the_config_parser_never_panics_and_names_what_is_wrong(text in toml_text(), raw in "\\PC{0,80}") {
        for input in [&text, &raw] {
            if let Err(e) = Config::parse(input) {
                prop_assert!(!e.is_empty());
            }
        }
    }

    #[test]
    fn totp_and_recovery_code_parsing_never_panic(code in "\\PC{0,24}", digits in "[0-9 ]{0,10}", time in any::<u64>(), skew in 0u16..3, secret in prop::collection::vec(any::<u8>(), 0..40)) {
        for input in [&code, &digits] {
            let _ = totp::looks_like_code(input);
            let _ = totp::check(&secret, input, time, skew);
            if let Some(normal) = token::normalize_recovery_code(input) {
                let again = token::normalize_recovery_code(&normal);
                prop_assert_eq!(again.as_deref(), Some(normal.as_str()), "normalising twice changes nothing");
            }
        }
        let real = totp::code_at(&secret, time);
        prop_assert!(totp::looks_like_code(&real));
    }

    #[test]
    fn the_backup_decoder_refuses_damage_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..300), at in any::<usize>(), bit in 0u8..8) {
        let sealer = import_service().sealer();
        prop_assert!(backup::verify(&bytes[..], Some(sealer)).is_err() || bytes.starts_with(backup::MAGIC));
        for good in [backup_bytes(), old_backup_bytes()] {
            let mut damaged = good.clone();
            let i = at % damaged.len();
            damaged[i] ^= 1 << bit;
            prop_assert!(backup::verify(&damaged[..], Some(sealer)).is_err(), "a flipped bit at {} went unnoticed", i);
            prop_assert!(backup::verify(&good[..at % good.len()], Some(sealer)).is_err());
        }
    }
}

fn import_service() -> &'static mfadmin::service::Service {
    static SERVICE: OnceLock<(Fixture, mfadmin::service::Service)> = OnceLock::new();
    let (_, svc) = SERVICE.get_or_init(|| {
        let f = Fixture::new(1);
        let svc = reliability_support::open(f.dir.path());
        (f, svc)
    });
    svc
}

/// A backup as mfadmin writes them (records).
fn backup_bytes() -> Vec<u8> {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES
        .get_or_init(|| {
            let svc = import_service();
            let mut out = Vec::new();
            mfadmin::backup::write_backup(&**svc.store(), svc.sealer(), 0, &mut out).unwrap();
            out
        })
        .clone()
}

/// A backup as an older mfadmin wrote them (sled's trees whole).
fn old_backup_bytes() -> Vec<u8> {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES
        .get_or_init(|| {
            let fixture = Fixture::new(1);
            let store = SledStore::open(&fixture.dir.path().join("store")).unwrap();
            mfadmin::store::sled::snapshot(&store, 0).unwrap().encode()
        })
        .clone()
}

/// A corrupted record in any tree is an error naming the record, never a panic or a wrong answer.
#[test]
fn a_corrupted_record_is_an_error_that_names_it() {
    let fixture = Fixture::new(2);
    let copy = fixture.copy();
    let store = SledStore::open(&copy.path().join("store")).unwrap();
    let user = fixture.members[0].id;
    let good = store.with_commits_paused(|db| db.open_tree("users").unwrap().get(user.as_bytes()).unwrap().unwrap().to_vec());
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256u32);
    let config = ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let strategy = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        (any::<usize>(), any::<u8>()).prop_map(move |(at, x)| {
            let mut b = good.clone();
            let i = at % b.len();
            b[i] ^= x.max(1);
            b
        }),
        any::<usize>().prop_map({
            let good = store.with_commits_paused(|db| db.open_tree("users").unwrap().get(user.as_bytes()).unwrap().unwrap().to_vec());
            move |n| good[..n % good.len()].to_vec()
        }),
    ];
    runner
        .run(&strategy, |bytes| {
            store.with_commits_paused(|db| db.open_tree("users").unwrap().insert(user.as_bytes(), bytes.clone()).unwrap());
            match store.get_user(user) {
                Err(Error::Corrupt(why)) => prop_assert!(why.contains(&user.to_string()), "{}", why),
                Err(e) => prop_assert!(false, "not reported as damage: {}", e),
                // Some flips land in free text (a name): still a record that decodes.
                Ok(Some(u)) => prop_assert_eq!(u.id, user),
                Ok(None) => prop_assert!(false, "the record vanished"),
            }
            let mut seen = 0;
            let scan = store.scan_users(&mut |_| {
                seen += 1;
                true
            });
            prop_assert!(scan.is_ok() || matches!(scan, Err(Error::Corrupt(_))));
            let checked = store.check_indexes();
            prop_assert!(checked.is_ok() || matches!(checked, Err(Error::Corrupt(_))));
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    figures::report(&format!(
        "proptest: {cases} corrupted user records and 4 damaged trees refused by name; 4 more properties \
         (CSV import, config, TOTP and recovery codes, backup decoder) at {cases} cases each"
    ));
    // The other trees: sessions, orgs, the audit log and the chain head.
    for (tree, key) in [("sessions", None), ("orgs", Some(b"acme".to_vec())), ("audit", Some(1u64.to_be_bytes().to_vec())), ("meta", Some(b"audit_head".to_vec()))] {
        let key = key.unwrap_or_else(|| store.with_commits_paused(|db| db.open_tree("sessions").unwrap().iter().next().unwrap().unwrap().0.to_vec()));
        store.with_commits_paused(|db| db.open_tree(tree).unwrap().insert(key.clone(), b"\xff\xff\xff damaged".to_vec()).unwrap());
        let err = match tree {
            "sessions" => store.get_session(&key.clone().try_into().unwrap()).map(|_| ()),
            "orgs" => store.get_org("acme").map(|_| ()),
            "audit" => store.scan_audit(false, &mut |_| true),
            _ => store.audit_head().map(|_| ()),
        }
        .expect_err(tree);
        assert!(matches!(err, Error::Corrupt(_)), "{tree}: {err}");
        assert!(err.to_string().contains("cannot be decoded"), "{tree}: {err}");
    }
}

/// Found by the property above: a record whose stored id was damaged decoded as another user, and
/// the next write of it would have landed under that other id.
#[test]
fn a_user_record_holding_another_id_is_damage() {
    let fixture = Fixture::new(1);
    let copy = fixture.copy();
    let store = SledStore::open(&copy.path().join("store")).unwrap();
    let user = fixture.members[0].clone();
    let mut other = user.clone();
    other.id = uuid::Uuid::new_v4();
    let forged = postcard::to_stdvec(&(0u8, &other)).unwrap();
    store.with_commits_paused(|db| db.open_tree("users").unwrap().insert(user.id.as_bytes(), forged).unwrap());
    let err = store.get_user(user.id).unwrap_err().to_string();
    assert!(err.contains(&format!("user record {} holds the id {}", user.id, other.id)), "{err}");
}
