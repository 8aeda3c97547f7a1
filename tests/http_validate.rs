//! `/validate/check` and `/validate/radiuscheck` as privacyIDEA's plugins call them: answers in
//! privacyIDEA's shape, the login's rules (replay, lockout, disabled, must enroll, realm), the
//! caller's authentication, and bad input answered with a clear error, never a 5xx.

mod http_support;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use http_support::{Harness, Reply};
use mfadmin::domain::role::Role;
use mfadmin::domain::user::Status;
use serde_json::Value;
use std::net::SocketAddr;

/// A store with an owner (who makes the validate key) and enrolled alice and bob.
struct Site {
    h: Harness,
    key: String,
    alice: Vec<u8>,
    bob: Vec<u8>,
}

fn site_with(tune: impl FnOnce(&mut mfadmin::config::Config)) -> Site {
    let h = Harness::with(tune);
    h.add_org("Acme", false);
    h.add_org("Globex", false);
    h.add_user("Acme", "owner", Role::Owner, false);
    h.add_user("Acme", "alice", Role::Member, true);
    h.add_user("Acme", "bob", Role::Member, false);
    let alice = h.enroll("alice");
    let bob = h.enroll("bob");
    let owner = h.service().act_as(&Harness::console(), "owner", "test").unwrap();
    let (key, _) = h.service().create_validate_key(&owner, "radius", h.now()).unwrap();
    // The enrollment used this step's code: the checks start at the next.
    h.advance(30);
    Site { h, key, alice, bob }
}

fn site() -> Site {
    site_with(|_| {})
}

impl Site {
    /// POST a form as privacyIDEA's PAM and FreeRADIUS plugins do, with the key, from `from`.
    async fn form_from(&self, path: &str, form: &str, key: Option<&str>, from: &str) -> Reply {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(key) = key {
            req = req.header("PI-Authorization", key);
        }
        let mut req = req.body(Body::from(form.to_string())).unwrap();
        req.extensions_mut().insert(ConnectInfo(from.parse::<SocketAddr>().unwrap()));
        self.h.send(req).await
    }

    async fn form(&self, path: &str, form: &str) -> Reply {
        self.form_from(path, form, Some(&self.key), "127.0.0.1:40000").await
    }

    async fn check(&self, form: &str) -> Value {
        let r = self.form("/validate/check", form).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        r.json()
    }

    fn code(&self, secret: &[u8]) -> String {
        self.h.code(secret)
    }
}

#[track_caller]
fn assert_accept(v: &Value) {
    assert_eq!(v["jsonrpc"], "2.0", "{v}");
    assert_eq!(v["result"]["status"], true, "{v}");
    assert_eq!(v["result"]["value"], true, "{v}");
    assert_eq!(v["result"]["authentication"], "ACCEPT", "{v}");
    assert_eq!(v["detail"]["message"], "matching 1 tokens", "{v}");
    assert_eq!(v["detail"]["type"], "totp", "{v}");
    assert_eq!(v["detail"]["otplen"], 6, "{v}");
    assert!(v["detail"]["serial"].as_str().unwrap().starts_with("TOTP"), "{v}");
}

#[track_caller]
fn assert_reject(v: &Value, message: &str) {
    assert_eq!(v["result"]["status"], true, "{v}");
    assert_eq!(v["result"]["value"], false, "{v}");
    assert_eq!(v["result"]["authentication"], "REJECT", "{v}");
    assert_eq!(v["detail"]["message"], message, "{v}");
    assert!(v["detail"].get("serial").is_none(), "a rejection names no serial: {v}");
}

#[tokio::test]
async fn a_good_code_is_accepted_once_and_recorded_as_the_factors_last_use() {
    let s = site();
    let code = s.code(&s.alice);
    let v = s.check(&format!("user=alice&pass={code}&client=10.1.2.3")).await;
    assert_accept(&v);
    assert_eq!(v["detail"]["serial"], format!("TOTP{:08}", s.h.service().resolve("alice").unwrap().unwrap().number));
    assert_reject(&s.check(&format!("user=alice&pass={code}")).await, "wrong otp value. previous otp used again");
    let alice = s.h.service().resolve("alice").unwrap().unwrap();
    assert_eq!(alice.mfa_last_used_at, Some(s.h.now()));
    assert_eq!(alice.mfa_last_client.as_deref(), Some("10.1.2.3"));
    assert_eq!(alice.lockout.failures, 0, "a replay does not count towards the lockout");
    let events = s.h.service().audit_list(&Harness::console(), &Default::default()).unwrap();
    let validations: Vec<_> = events.iter().filter(|e| e.action == "mfa.validate").collect();
    assert_eq!(validations.len(), 2, "every check is audited");
    assert!(validations.iter().any(|e| e.outcome.as_str() == "success" && e.detail.as_deref().unwrap().contains("10.1.2.3")));
}

#[tokio::test]
async fn wrong_codes_lock_the_factor_and_a_locked_factor_refuses_even_the_right_code() {
    let s = site_with(|c| c.lockout.threshold = 3);
    for n in 1..=3 {
        assert_reject(&s.check(&format!("user=bob&pass=00000{n}")).await, "wrong otp value");
    }
    let code = s.code(&s.bob);
    assert_reject(&s.check(&format!("user=bob&pass={code}")).await, "matching 1 tokens, Failcounter exceeded");
    assert_eq!(s.h.service().resolve("bob").unwrap().unwrap().lockout.failures, 3);
}

#[tokio::test]
async fn disabled_users_users_without_a_factor_and_users_reset_a_moment_ago_are_rejected() {
    let s = site();
    s.h.service().set_status(&Harness::console(), "alice", Status::Disabled, s.h.now()).unwrap();
    assert_reject(&s.check(&format!("user=alice&pass={}", s.code(&s.alice))).await, "The user is disabled");
    s.h.service().reset_mfa(&Harness::console(), &["bob".to_string()], Some("lost phone"), false, s.h.now()).unwrap();
    assert_reject(&s.check(&format!("user=bob&pass={}", s.code(&s.bob))).await, "The user has no tokens assigned");
}

#[tokio::test]
async fn an_unknown_user_reads_as_a_wrong_code_or_as_privacyideas_error_when_configured() {
    let s = site();
    assert_reject(&s.check("user=nobody&pass=123456").await, "wrong otp value");
    let s = site_with(|c| c.validate.unknown_user = mfadmin::config::UnknownUser::Error);
    let r = s.form("/validate/check", "user=nobody&pass=123456").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let v = r.json();
    assert_eq!(v["result"]["status"], false, "{v}");
    assert_eq!(v["result"]["error"]["code"], 904, "{v}");
}

#[tokio::test]
async fn a_key_checks_only_its_own_orgs_users_and_a_realm_must_match() {
    let s = site();
    s.h.add_user("Globex", "gina", Role::Member, false);
    let gina = s.h.enroll("gina");
    s.h.advance(30);
    assert_reject(&s.check(&format!("user=gina&pass={}", s.code(&gina))).await, "wrong otp value");
    assert_reject(&s.check(&format!("user=alice&realm=Globex&pass={}", s.code(&s.alice))).await, "wrong otp value");
    assert_accept(&s.check(&format!("user=alice&realm=acme&pass={}", s.code(&s.alice))).await);
    let r = s.form("/validate/check", "user=alice&realm=nosuch&pass=123456").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(r.json()["result"]["error"]["message"].as_str().unwrap().contains("unknown realm"), "{}", r.text());
}

#[tokio::test]
async fn callers_need_a_validate_key_or_an_allowed_address() {
    let s = site_with(|c| c.validate.allow_from = vec!["10.0.0.0/8".into()]);
    let form = format!("user=alice&pass={}", s.code(&s.alice));
    let r = s.form_from("/validate/check", &form, None, "127.0.0.1:1").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    assert_eq!(r.json()["result"]["error"]["code"], 4033);
    let admin_key = {
        let owner = s.h.service().act_as(&Harness::console(), "owner", "test").unwrap();
        s.h.service().create_api_key(&owner, "ops", Role::Helpdesk, s.h.now()).unwrap().0
    };
    let r = s.form_from("/validate/check", &form, Some(&admin_key), "127.0.0.1:1").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "an admin API key is not a validate key: {}", r.text());
    let r = s.form_from("/validate/check", &form, None, "10.9.8.7:1").await;
    assert_accept(&r.json());
    // A validate key opens nothing else.
    let r = s.h.get("/api/v1/users", Some(&s.key)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
}

#[tokio::test]
async fn radiuscheck_answers_204_on_accept_and_400_with_no_body_otherwise() {
    let s = site();
    let r = s.form("/validate/radiuscheck", &format!("user=alice&pass={}", s.code(&s.alice))).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.body.is_empty());
    let r = s.form("/validate/radiuscheck", "user=alice&pass=000000").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.is_empty(), "{}", r.text());
}

#[tokio::test]
async fn json_and_get_are_read_like_forms() {
    let s = site();
    let body = serde_json::json!({"user": "alice", "pass": s.code(&s.alice)}).to_string();
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/validate/check")
        .header("content-type", "application/json")
        .header("Authorization", format!("Bearer {}", s.key))
        .body(Body::from(body))
        .unwrap();
    req.extensions_mut().insert(ConnectInfo("127.0.0.1:2".parse::<SocketAddr>().unwrap()));
    assert_accept(&s.h.send(req).await.json());
    s.h.advance(30);
    let mut req = Request::builder()
        .uri(format!("/validate/check?user=alice&pass={}", s.code(&s.alice)))
        .header("Authorization", &s.key)
        .body(Body::empty())
        .unwrap();
    req.extensions_mut().insert(ConnectInfo("127.0.0.1:2".parse::<SocketAddr>().unwrap()));
    assert_accept(&s.h.send(req).await.json());
}

#[tokio::test]
async fn password_and_code_together_when_the_org_says_so() {
    let s = site_with(|c| {
        c.validate.realm_pass_mode.insert("Acme".into(), mfadmin::config::PassMode::PasswordOtp);
    });
    let good = format!("user=alice&pass={}{}", http_support::PASSWORD.replace(' ', "+"), s.code(&s.alice));
    assert_reject(&s.check(&format!("user=alice&pass=wrong{}", s.code(&s.alice))).await, "wrong otp pin");
    assert_accept(&s.check(&good).await);
}

#[tokio::test]
async fn bad_input_gets_a_clear_400_and_never_a_5xx() {
    let s = site();
    let long = "1".repeat(10_000);
    let cases: Vec<(String, &str, &str)> = vec![
        ("pass=123456".into(), "application/x-www-form-urlencoded", "missing parameter user"),
        ("user=alice".into(), "application/x-www-form-urlencoded", "missing parameter pass"),
        (format!("user=alice&pass={long}"), "application/x-www-form-urlencoded", "longer than"),
        ("user=alice&pass=1&pass=2".into(), "application/x-www-form-urlencoded", "given twice"),
        ("user=alice&pass=1&transaction_id=9".into(), "application/x-www-form-urlencoded", "challenge-response"),
        ("user=alice&serial=TOTP99999999&pass=123456".into(), "application/x-www-form-urlencoded", "ERR"),
        (r#"{"user":"alice","pass":"123456"}"#.into(), "application/x-www-form-urlencoded", "is JSON"),
        ("user=alice&pass=123456".into(), "application/json", "not JSON"),
        ("user=alice&pass=123456".into(), "text/plain", "Content-Type"),
        (r#"{"user":["alice"],"pass":"1"}"#.into(), "application/json", "must be a string"),
    ];
    for (body, content_type, expected) in cases {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri("/validate/check")
            .header("content-type", content_type)
            .header("PI-Authorization", &s.key)
            .body(Body::from(body.clone()))
            .unwrap();
        req.extensions_mut().insert(ConnectInfo("127.0.0.1:3".parse::<SocketAddr>().unwrap()));
        let r = s.h.send(req).await;
        let shown: String = body.chars().take(60).collect();
        if expected == "ERR" {
            // A serial of no one: the same rejection as an unknown user.
            assert_eq!(r.status, StatusCode::OK, "{shown}: {}", r.text());
            continue;
        }
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{shown}: {}", r.text());
        let v = r.json();
        assert_eq!(v["result"]["status"], false, "{shown}: {v}");
        assert!(v["result"]["error"]["message"].as_str().unwrap().contains(expected), "{shown}: {v}");
    }
    // Non-digits and a serial naming another user's factor.
    assert_reject(&s.check("user=alice&pass=abcdef").await, "wrong otp value");
    let bob_serial = format!("TOTP{:08}", s.h.service().resolve("bob").unwrap().unwrap().number);
    let r = s.form("/validate/check", &format!("user=alice&serial={bob_serial}&pass=123456")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
}

#[test]
fn one_code_sent_five_times_at_once_is_accepted_exactly_once() {
    let s = site();
    let code = s.code(&s.alice);
    let svc = s.h.service();
    let who = svc.authenticate_validator(&s.key, s.h.now()).unwrap();
    let now = s.h.now();
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..5)
            .map(|_| {
                let (who, code) = (who.clone(), code.clone());
                scope.spawn(move || {
                    let req = mfadmin::service::ValidateRequest { user: "alice".into(), pass: code, ..Default::default() };
                    svc.validate(&who, &req, now).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let accepted = results.iter().filter(|r| matches!(r, mfadmin::service::Validation::Accept { .. })).count();
    assert_eq!(accepted, 1, "{results:?}");
    assert_eq!(svc.resolve("alice").unwrap().unwrap().lockout.failures, 0, "the replays do not count");
}

#[test]
fn wrong_codes_sent_at_once_are_each_counted() {
    let s = site_with(|c| c.lockout.threshold = 100);
    let svc = s.h.service();
    let who = svc.authenticate_validator(&s.key, s.h.now()).unwrap();
    let now = s.h.now();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let who = who.clone();
            scope.spawn(move || {
                for i in 0..5 {
                    let req = mfadmin::service::ValidateRequest { user: "bob".into(), pass: format!("{:06}", t * 10 + i), ..Default::default() };
                    svc.validate(&who, &req, now).unwrap();
                }
            });
        }
    });
    assert_eq!(svc.resolve("bob").unwrap().unwrap().lockout.failures, 20, "20 wrong codes, 20 failures");
}
