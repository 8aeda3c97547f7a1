//! Secrets stay secret: after a real server (debug logging) has seen logins with password, TOTP and
//! recovery codes, API keys and failed attempts, no password, TOTP secret, recovery code, token or
//! challenge appears in plain text in the data directory's files, the server's output, any error
//! body, or the `Debug` form of the values that carry them. The server refuses a key file others can
//! read; tokens expire; a reset of their owner revokes them.

mod figures;
mod reliability_support;

use mfadmin::auth::totp;
use mfadmin::domain::role::Role;
use mfadmin::service::{Actor, LoginStep, NewUser};
use reliability_support::{config_for, http, mfadmin, open, Server};
use serde_json::{json, Value};

const PASSWORD: &str = "Plaintext-Canary-Password-42";

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_secret_in_the_data_directory_the_logs_error_bodies_or_debug_output() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = mfadmin::app::Context { config: config_for(dir.path()) };
    let svc = ctx.create_service().unwrap();
    let console = Actor::console("cli");
    let t = reliability_support::now();
    svc.add_org(&console, "Acme", false, t).unwrap();
    let new = |name: &str, role| NewUser {
        username: name.into(),
        email: format!("{name}@acme.example"),
        display_name: name.into(),
        role,
        org: "Acme".into(),
        password: Some(PASSWORD.into()),
    };
    svc.add_user(&console, new("root", Role::Owner), t).unwrap();
    svc.add_user(&console, new("mem", Role::Member), t).unwrap();
    let e = svc.begin_enrollment(&console, "root", "mfadmin", t).unwrap();
    let secret = totp_rs::Secret::try_from_base32(&e.secret_base32).unwrap().to_vec();
    let codes = svc.confirm_enrollment(&console, "root", &totp::code_at(&secret, t as u64), t).unwrap().recovery_codes;
    let root = svc.act_as(&console, "root", "cli").unwrap();
    let (api_key, _) = svc.create_api_key(&root, "canary", Role::Admin, t).unwrap();
    let mut secrets: Vec<(String, Vec<u8>)> = vec![
        ("password".into(), PASSWORD.as_bytes().to_vec()),
        ("TOTP secret (base32)".into(), e.secret_base32.as_bytes().to_vec()),
        ("TOTP secret (raw)".into(), secret.clone()),
        ("API key".into(), api_key.as_bytes().to_vec()),
    ];
    for (i, c) in codes.iter().enumerate() {
        secrets.push((format!("recovery code {i}"), c.as_bytes().to_vec()));
        secrets.push((format!("recovery code {i} (no dashes)"), c.replace('-', "").into_bytes()));
    }
    // The Debug form of everything that carries a secret.
    let mut debug = vec![format!("{:?}", new("x", Role::Member)), format!("{e:?}"), format!("{root:?}")];
    debug.push(format!("{:?}", svc.store().get_user(svc.resolve("root").unwrap().unwrap().id).unwrap()));
    debug.push(format!("{:?}", mfadmin::auth::seal::Sealer::load(&ctx.config.key_file()).unwrap()));
    match svc.login_password("root", PASSWORD, "test", t) {
        Ok(step @ LoginStep::MfaRequired { .. }) => {
            if let LoginStep::MfaRequired { challenge, .. } = &step {
                secrets.push(("challenge (in-process)".into(), challenge.as_bytes().to_vec()));
            }
            debug.push(format!("{step:?}"));
        }
        other => panic!("{other:?}"),
    }
    drop(svc);

    // A real server with debug logging: logins (password + code, password + recovery code), failed
    // attempts, API key use, errors.
    let mut server = Server::start(dir.path(), &[("RUST_LOG", "debug"), ("MFADMIN_TOTP_SKEW", "2")]);
    let addr = server.addr;
    let mut bodies: Vec<(u16, Vec<u8>)> = Vec::new();
    let mut call = |method: &str, path: &str, token: Option<&str>, body: Option<Value>| -> Value {
        let text = body.map(|b| b.to_string());
        let (status, bytes) = http(addr, method, path, token, text.as_deref()).expect("an answer");
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        bodies.push((status, bytes));
        value
    };
    let step = call("POST", "/api/v1/auth/login", None, Some(json!({"username": "root", "password": PASSWORD})));
    let challenge = step["challenge"].as_str().unwrap().to_string();
    let now = reliability_support::now() as u64;
    let code = totp::code_at(&secret, now + 30);
    let session = call("POST", "/api/v1/auth/mfa", None, Some(json!({"challenge": challenge, "code": code})));
    let token = session["token"].as_str().unwrap_or_else(|| panic!("{session}")).to_string();
    let step = call("POST", "/api/v1/auth/login", None, Some(json!({"username": "root", "password": PASSWORD})));
    let challenge2 = step["challenge"].as_str().unwrap().to_string();
    let session2 = call("POST", "/api/v1/auth/mfa", None, Some(json!({"challenge": challenge2, "code": codes[0]})));
    let token2 = session2["token"].as_str().unwrap_or_else(|| panic!("{session2}")).to_string();
    call("POST", "/api/v1/auth/login", None, Some(json!({"username": "root", "password": "not the password"})));
    call("POST", "/api/v1/auth/login", None, Some(json!({"username": "root", "password": PASSWORD, "extra": codes[1]})));
    let step = call("POST", "/api/v1/auth/login", None, Some(json!({"username": "root", "password": PASSWORD})));
    let challenge3 = step["challenge"].as_str().unwrap().to_string();
    call("POST", "/api/v1/auth/mfa", None, Some(json!({"challenge": challenge3, "code": "000000"})));
    call("POST", "/api/v1/auth/mfa", None, Some(json!({"challenge": challenge3, "code": codes[0]})));
    call("GET", "/api/v1/me", Some(&token), None);
    call("GET", "/api/v1/users", Some(&api_key), None);
    call("GET", "/api/v1/users/nope", Some(&token2), None);
    call("GET", "/api/v1/me", Some(&format!("{api_key}x")), None);
    call("POST", "/api/v1/me/mfa/confirm", Some(&token), Some(json!({"code": codes[2]})));
    call("PUT", "/api/v1/ManagedAccount/ResetMFA/x", None, None);
    let _ = call;
    assert_eq!(server.stop().code(), Some(0));
    let log: Vec<String> = server.drain();
    let log = log.join("\n");
    assert!(log.contains("DEBUG") || log.contains("debug"), "debug logging is on");
    for (what, value) in [("session token", &token), ("session token 2", &token2), ("challenge", &challenge), ("challenge 2", &challenge2), ("challenge 3", &challenge3)] {
        secrets.push((what.to_string(), value.as_bytes().to_vec()));
    }

    let mut found = Vec::new();
    let key_file = ctx.config.key_file();
    for file in files_under(dir.path()).into_iter().filter(|f| *f != key_file) {
        let bytes = std::fs::read(&file).unwrap();
        for (what, s) in &secrets {
            if contains(&bytes, s) {
                found.push(format!("{what} in {}", file.display()));
            }
        }
    }
    for (what, s) in &secrets {
        if contains(log.as_bytes(), s) {
            found.push(format!("{what} in the server log"));
        }
        for (status, body) in &bodies {
            if *status >= 400 && contains(body, s) {
                found.push(format!("{what} in a {status} body"));
            }
        }
        for d in &debug {
            if contains(d.as_bytes(), s) {
                found.push(format!("{what} in Debug output {d}"));
            }
        }
    }
    assert!(found.is_empty(), "secrets in plain text:\n{}", found.join("\n"));
    let errors = bodies.iter().filter(|(s, _)| *s >= 400).count();
    figures::report(&format!(
        "secrets: {} secrets looked for in {} files, {} log lines, {errors} error bodies and {} Debug forms: none found",
        secrets.len(),
        files_under(dir.path()).len(),
        log.lines().count(),
        debug.len()
    ));

    // Tokens expire, and a reset of their owner revokes its sessions and API keys.
    let svc = open(dir.path());
    let later = reliability_support::now() + 365 * 86_400;
    let err = svc.authenticate(&token, "test", later).unwrap_err().to_string();
    assert!(err.contains("expired"), "{err}");
    assert!(svc.authenticate(&api_key, "test", reliability_support::now()).is_ok());
    svc.reset_mfa(&console, &["root".into()], Some("revoke"), false, reliability_support::now()).unwrap();
    for t in [&token, &token2, &api_key] {
        let err = svc.authenticate(t, "test", reliability_support::now()).unwrap_err().to_string();
        assert!(err.contains("unknown or revoked"), "{err}");
    }
}

#[test]
fn the_server_refuses_a_key_file_others_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let fixture = reliability_support::Fixture::new(1);
    let dir = fixture.copy();
    let key = reliability_support::key_file(dir.path());
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = mfadmin(dir.path()).args(["serve", "--listen", "127.0.0.1:0"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("can be read or written by other users") && err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut server = Server::start(dir.path(), &[]);
    assert_eq!(server.stop().code(), Some(0));
}
