//! Helpers for tests: a real store in a temporary directory, users, and enrolled factors.
#![allow(dead_code)]

use mfadmin::auth::totp;
use mfadmin::app::Context;
use mfadmin::config::Config;
use mfadmin::domain::role::Role;
use mfadmin::domain::user::UserView;
use mfadmin::service::{Actor, NewUser, Service};
use tempfile::TempDir;

/// A fixed clock: 2027-01-15T08:00:00Z. Tests move it forward explicitly.
pub const T0: i64 = 1_800_000_000;
pub const PASSWORD: &str = "correct horse battery";

pub struct TestStore {
    pub dir: TempDir,
    pub ctx: Context,
    pub svc: Service,
}

pub fn context(dir: &TempDir) -> Context {
    Context { config: Config { data_dir: Some(dir.path().to_path_buf()), ..Config::default() } }
}

/// A new store with orgs `acme` (MFA enforced) and `globex` (not enforced).
pub fn store() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(&dir);
    let svc = ctx.create_service().unwrap();
    svc.add_org(&console(), "Acme", true, T0).unwrap();
    svc.add_org(&console(), "Globex", false, T0).unwrap();
    TestStore { dir, ctx, svc }
}

pub fn console() -> Actor {
    Actor::console("cli")
}

pub fn add(svc: &Service, username: &str, role: Role, org: &str) -> UserView {
    let new = NewUser {
        username: username.into(),
        email: format!("{username}@{org}.example"),
        display_name: username.into(),
        role,
        org: org.into(),
        password: Some(PASSWORD.into()),
    };
    svc.add_user(&console(), new, T0).unwrap()
}

/// Enroll `username` (begin + confirm at `now`); returns the raw secret and the recovery codes.
pub fn enroll(svc: &Service, username: &str, now: i64) -> (Vec<u8>, Vec<String>) {
    let e = svc.begin_enrollment(&console(), username, "mfadmin", now).unwrap();
    let secret = totp_rs::Secret::try_from_base32(&e.secret_base32).unwrap().as_ref().to_vec();
    let confirmed = svc.confirm_enrollment(&console(), username, &totp::code_at(&secret, now as u64), now).unwrap();
    (secret, confirmed.recovery_codes)
}

/// Log in fully (password, then a code at `now`) and return the session's actor.
pub fn login(svc: &Service, username: &str, secret: Option<&[u8]>, now: i64) -> (String, Actor) {
    use mfadmin::service::LoginStep;
    let session = match svc.login_password(username, PASSWORD, "test", now).unwrap() {
        LoginStep::Done(s) => *s,
        LoginStep::MfaRequired { challenge, .. } => {
            let code = totp::code_at(secret.expect("user has MFA: pass its secret"), now as u64);
            svc.login_code(&challenge, &code, "test", now).unwrap()
        }
        LoginStep::EnrollmentRequired { .. } => panic!("{username} must enroll first"),
    };
    let actor = svc.authenticate(&session.token, "test", now).unwrap();
    (session.token, actor)
}
