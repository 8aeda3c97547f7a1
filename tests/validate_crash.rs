//! An accepted second-factor check is durable before ACCEPT is answered: `mfadmin serve` killed
//! with SIGKILL right after the answer, then started again, refuses the same code as a replay.

mod figures;
mod reliability_support;

use mfadmin::app::Context;
use mfadmin::domain::role::Role;
use mfadmin::service::{Actor, NewUser};
use reliability_support::{config_for, http, now, Server};

#[test]
fn a_code_accepted_before_a_kill_is_refused_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (key, secret, t) = {
        let svc = Context { config: config_for(dir.path()) }.create_service().unwrap();
        let console = Actor::console("test");
        let t = now();
        svc.add_org(&console, "Acme", false, t).unwrap();
        for (name, role) in [("root", Role::Owner), ("vic", Role::Member)] {
            let new = NewUser {
                username: name.into(),
                email: format!("{name}@acme.example"),
                display_name: name.into(),
                role,
                org: "Acme".into(),
                password: None,
            };
            svc.add_user(&console, new, t).unwrap();
        }
        let e = svc.begin_enrollment(&console, "vic", "test", t).unwrap();
        let secret = totp_rs::Secret::try_from_base32(&e.secret_base32).unwrap().to_vec();
        svc.confirm_enrollment(&console, "vic", &mfadmin::auth::totp::code_at(&secret, t as u64), t).unwrap();
        let root = svc.act_as(&console, "root", "test").unwrap();
        let (key, _) = svc.create_validate_key(&root, "radius", t).unwrap();
        (key, secret, t)
    };
    // The next step's code: the enrollment spent this one; the server takes one step either side.
    let code = mfadmin::auth::totp::code_at(&secret, t as u64 + 30);
    let body = format!(r#"{{"user":"vic","pass":"{code}"}}"#);
    let check = |server: &Server| -> serde_json::Value {
        let (status, bytes) = http(server.addr, "POST", "/validate/check", Some(&key), Some(&body)).expect("an answer");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
        serde_json::from_slice(&bytes).unwrap()
    };

    let mut server = Server::start(dir.path(), &[]);
    let first = check(&server);
    server.kill();
    assert_eq!(first["result"]["authentication"], "ACCEPT", "{first}");

    let mut server = Server::start(dir.path(), &[]);
    let again = check(&server);
    server.stop();
    assert_eq!(again["result"]["authentication"], "REJECT", "{again}");
    assert_eq!(again["detail"]["message"], "wrong otp value. previous otp used again", "{again}");
}
