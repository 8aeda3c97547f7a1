//! The native API through the router (`oneshot`, no socket), on a real service and temporary store.

mod http_support;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request};
use http_support::{Harness, PASSWORD};
use mfadmin::domain::policy;
use mfadmin::domain::role::Role;
use serde_json::{json, Value};
use std::net::SocketAddr;

// ------------------------------------------------------------------ login

#[tokio::test]
async fn full_login_flow_password_enroll_code_token_reset_audit() {
    let h = Harness::new();
    h.add_org("Acme", true);
    h.add_user("Acme", "ada", Role::Admin, true);
    let bob = h.add_user("Acme", "bob", Role::Member, false);
    h.enroll("bob");

    // The org enforces MFA and ada has none: the login asks her to enroll first.
    let step = h.post("/api/v1/auth/login", None, json!({"username": "ada", "password": PASSWORD})).await.ok();
    assert_eq!(step["status"], "enrollment_required", "{step}");
    let challenge = step["challenge"].as_str().unwrap();
    assert!(step.get("token").is_none());
    let r = h.get("/api/v1/users", Some(challenge)).await;
    r.problem(401); // a challenge is not a session

    let enrollment = h.post("/api/v1/auth/enroll", None, json!({"challenge": challenge})).await.ok();
    assert!(enrollment["otpauth_uri"].as_str().unwrap().starts_with("otpauth://totp/"), "{enrollment}");
    let secret = http_support::secret_of(enrollment["secret_base32"].as_str().unwrap());
    let wrong = h.post("/api/v1/auth/enroll/confirm", None, json!({"challenge": challenge, "code": "000000"})).await;
    if h.code(&secret) != "000000" {
        wrong.problem(401);
    }
    let done = h
        .post("/api/v1/auth/enroll/confirm", None, json!({"challenge": challenge, "code": h.code(&secret)}))
        .await
        .ok();
    assert_eq!(done["recovery_codes"].as_array().unwrap().len(), 10);
    assert_eq!(done["user"]["mfa"], "enrolled");
    let first_token = done["token"].as_str().unwrap().to_string();
    let me = h.get("/api/v1/me", Some(&first_token)).await.ok();
    assert_eq!((me["kind"].as_str(), me["role"].as_str(), me["name"].as_str()), (Some("user"), Some("admin"), Some("ada")));

    // Logout ends that token.
    let r = h.call(Method::POST, "/api/v1/auth/logout", Some(&first_token), None).await;
    assert_eq!(r.status, 204);
    h.get("/api/v1/me", Some(&first_token)).await.problem(401);

    // The next login: password, then a code from the next time step.
    h.advance(30);
    let step = h.post("/api/v1/auth/login", None, json!({"username": "ada", "password": PASSWORD})).await.ok();
    assert_eq!(step["status"], "mfa_required", "{step}");
    let challenge = step["challenge"].as_str().unwrap();
    let mut bad = h.code(&secret).into_bytes();
    bad[0] = if bad[0] == b'9' { b'0' } else { bad[0] + 1 };
    let p = h.post("/api/v1/auth/mfa", None, json!({"challenge": challenge, "code": String::from_utf8(bad).unwrap()})).await;
    assert!(p.problem(401)["detail"].as_str().unwrap().contains("code"), "{}", p.text());
    let session = h.post("/api/v1/auth/mfa", None, json!({"challenge": challenge, "code": h.code(&secret)})).await.ok();
    let token = session["token"].as_str().unwrap();
    assert_eq!(session["user"]["username"], "ada");
    assert!(session["expires_at"].as_str().unwrap().ends_with('Z'));
    // The challenge is spent.
    h.post("/api/v1/auth/mfa", None, json!({"challenge": challenge, "code": h.code(&secret)})).await.problem(401);

    // Reset bob.
    let uri = format!("/api/v1/users/{}/mfa/reset", bob.id);
    let result = h.post(&uri, Some(token), json!({"reason": "lost phone, ticket 4711"})).await.ok();
    assert_eq!(result["outcome"], "reset", "{result}");
    assert_eq!(result["mfa_after"], "must_enroll");
    let user = h.get(&format!("/api/v1/users/{}", bob.id), Some(token)).await.ok();
    assert_eq!(user["mfa"], "must_enroll");
    assert_eq!(user["username"], "bob");
    // Nothing left to reset: 409, and the reason is required.
    h.post(&uri, Some(token), json!({"reason": "again"})).await.problem(409);
    let p = h.post(&uri, Some(token), json!({})).await.problem(400);
    assert!(p["detail"].as_str().unwrap().contains("reason"), "{p}");

    // The audit log has it, by ada, over http, with the reason; the chain verifies.
    let audit = h.get("/api/v1/audit?q=mfa.reset", Some(token)).await.ok();
    let event = audit["events"].as_array().unwrap().iter().find(|e| e["action"] == "mfa.reset").expect("a reset event").clone();
    assert_eq!((event["actor"].as_str(), event["source"].as_str()), (Some("ada"), Some("http")));
    assert_eq!(event["target"], "bob");
    assert_eq!(event["reason"], "lost phone, ticket 4711");
    let verify = h.get("/api/v1/audit/verify", Some(token)).await.ok();
    assert_eq!(verify["ok"], true, "{verify}");
    assert!(verify["events"].as_u64().unwrap() >= 8);

    // A recovery code works once as the second factor.
    let step = h.post("/api/v1/auth/login", None, json!({"username": "ada", "password": PASSWORD})).await.ok();
    let recovery = done["recovery_codes"][0].as_str().unwrap();
    let challenge = step["challenge"].as_str().unwrap();
    h.post("/api/v1/auth/mfa", None, json!({"challenge": challenge, "code": recovery})).await.ok();
    let step = h.post("/api/v1/auth/login", None, json!({"username": "ada", "password": PASSWORD})).await.ok();
    let challenge = step["challenge"].as_str().unwrap();
    h.post("/api/v1/auth/mfa", None, json!({"challenge": challenge, "code": recovery})).await.problem(401);
}

#[tokio::test]
async fn a_user_without_mfa_in_a_relaxed_org_gets_a_token_at_once_and_wrong_passwords_get_401() {
    let h = Harness::new();
    h.add_org("Globex", false);
    h.add_user("Globex", "gus", Role::Helpdesk, true);
    let body = h.post("/api/v1/auth/login", None, json!({"username": "gus", "password": PASSWORD})).await.ok();
    assert_eq!(body["status"], "done");
    assert_eq!(body["user"]["mfa"], "not_enrolled");
    for (user, password) in [("gus", "wrong password!"), ("nobody", PASSWORD)] {
        let r = h.post("/api/v1/auth/login", None, json!({"username": user, "password": password})).await;
        let p = r.problem(401);
        assert_eq!(p["detail"], "authentication failed: wrong user name or password");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    }
}

#[tokio::test]
async fn an_email_address_works_wherever_a_user_name_is_asked() {
    let h = Harness::new();
    h.add_org("Acme", false);
    h.add_user("Acme", "ann", Role::Admin, true);
    let login = |name: &str, password: &str| h.post("/api/v1/auth/login", None, json!({"username": name, "password": password}));
    for given in ["ann@acme.example", "  ANN@Acme.Example "] {
        let done = login(given, PASSWORD).await.ok();
        assert_eq!((done["status"].as_str(), done["user"]["username"].as_str()), (Some("done"), Some("ann")), "{given}: {done}");
    }
    login("ann@acme.example", "wrong password").await.problem(401);
    login("nobody@acme.example", PASSWORD).await.problem(401);

    // Netwrix's sign-in, and the console and CLI (the in-process backend), take it too.
    let r = h.post("/signinBody", None, json!({"Login": "ann@acme.example", "Password": PASSWORD})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let backend = mfadmin::backend::local::Local::new(h.state.service().clone(), "tui", "test");
    let step = mfadmin::backend::Backend::login_password(&backend, "ann@acme.example", PASSWORD).unwrap();
    assert!(matches!(&step, mfadmin::backend::Login::Done(who) if who.name == "ann"), "{step:?}");
}

#[tokio::test]
async fn wrong_codes_lock_the_factor_with_retry_after() {
    let h = Harness::new();
    h.add_org("Acme", true);
    h.add_user("Acme", "ann", Role::Member, true);
    let secret = h.enroll("ann");
    h.advance(30);
    let step = h.post("/api/v1/auth/login", None, json!({"username": "ann", "password": PASSWORD})).await.ok();
    let challenge = step["challenge"].as_str().unwrap();
    let right = h.code(&secret);
    let wrong = if right == "111111" { "222222" } else { "111111" };
    for _ in 0..h.config.lockout.threshold {
        h.post("/api/v1/auth/mfa", None, json!({"challenge": challenge, "code": wrong})).await.problem(401);
    }
    let r = h.post("/api/v1/auth/mfa", None, json!({"challenge": challenge, "code": right})).await;
    let p = r.problem(429);
    assert!(p["detail"].as_str().unwrap().contains("locked"), "{p}");
    let retry: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!(retry >= 1 && retry <= h.config.lockout.max_seconds, "{retry}");
    let list = h.service().list_users(&Harness::console(), &Default::default(), h.now()).unwrap();
    assert_eq!(list.users[0].mfa.as_str(), "locked");
}

fn from(client: [u8; 4], mut req: Request<Body>) -> Request<Body> {
    req.extensions_mut().insert(ConnectInfo(SocketAddr::from((client, 40000))));
    req
}

fn login_request(user: &str, password: &str) -> Request<Body> {
    Request::post("/api/v1/auth/login")
        .header("content-type", "application/json")
        .body(Body::from(json!({"username": user, "password": password}).to_string()))
        .unwrap()
}

#[tokio::test]
async fn login_is_refused_per_account_and_client_and_slowed_down_past_failures() {
    let h = Harness::with(|c| {
        c.server.auth_rate_per_client = 3;
        c.server.auth_rate_per_account = 5;
        c.server.auth_soft_delay_ms = 200;
    });
    h.add_org("Acme", false);
    h.add_user("Acme", "amy", Role::Member, true);
    // Client A: five attempts for amy, then 429 for amy from A.
    for _ in 0..5 {
        h.send(from([10, 0, 0, 1], login_request("amy", "not her password"))).await.problem(401);
    }
    let r = h.send(from([10, 0, 0, 1], login_request("AMY", PASSWORD))).await;
    let p = r.problem(429);
    assert!(p["detail"].as_str().unwrap().contains("this account from this address"), "{p}");
    let retry: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=12).contains(&retry), "{retry}");
    // Client B: amy's account has failed five times, so B waits; her correct password still passes.
    let started = std::time::Instant::now();
    h.send(from([10, 0, 0, 2], login_request("amy", PASSWORD))).await.ok();
    assert!(started.elapsed() >= std::time::Duration::from_millis(200), "{:?}", started.elapsed());
    // Client A failed more than three times: slowed down for other accounts too, not refused.
    let started = std::time::Instant::now();
    h.send(from([10, 0, 0, 1], login_request("someone", "whatever pw"))).await.problem(401);
    assert!(started.elapsed() >= std::time::Duration::from_millis(200), "{:?}", started.elapsed());
    // Another client and another account: neither.
    h.send(from([10, 0, 0, 3], login_request("someone", "whatever pw"))).await.problem(401);
    let metrics = h.get("/metrics", None).await.text();
    assert!(metrics.contains("mfadmin_logins_total{step=\"password\",outcome=\"rate_limited\"} 1"), "{metrics}");
    assert!(metrics.contains("mfadmin_logins_total{step=\"password\",outcome=\"failure\"} 7"), "{metrics}");
}

#[tokio::test]
async fn the_mfa_step_counts_against_the_account_of_its_challenge() {
    let h = Harness::with(|c| {
        c.server.auth_rate_per_client = 0;
        c.server.auth_rate_per_account = 2;
    });
    h.add_org("Acme", true);
    h.add_user("Acme", "max", Role::Member, true);
    h.enroll("max");
    let step = h.post("/api/v1/auth/login", None, json!({"username": "max", "password": PASSWORD})).await.ok();
    let challenge = step["challenge"].as_str().unwrap();
    h.post("/api/v1/auth/mfa", None, json!({"challenge": challenge, "code": "999999x"})).await.problem(401);
    let r = h.post("/api/v1/auth/mfa", None, json!({"challenge": challenge, "code": "999999x"})).await;
    r.problem(429);
    assert!(r.header("retry-after").is_some());
}

// ------------------------------------------------------------------ errors

#[tokio::test]
async fn every_bad_request_is_a_4xx_problem_that_says_what_was_wrong() {
    let h = Harness::new();
    h.add_org("Acme", false);
    h.add_user("Acme", "oz", Role::Owner, true);
    let token = h.login("oz").await;
    let uuid = uuid::Uuid::new_v4();
    let reset = format!("/api/v1/users/{uuid}/mfa/reset");

    let raw = |method: Method, uri: &str, content_type: Option<&str>, body: Vec<u8>| {
        let mut req = Request::builder().method(method).uri(uri).header("authorization", format!("Bearer {token}"));
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        req.body(Body::from(body)).unwrap()
    };
    let json_ct = Some("application/json");
    let cases: Vec<(&str, Request<Body>, u16, &str)> = vec![
        ("malformed JSON", raw(Method::POST, &reset, json_ct, b"{\"reason\": ".to_vec()), 400, "not valid JSON"),
        ("not JSON at all", raw(Method::POST, &reset, json_ct, b"reason=x".to_vec()), 400, "not valid JSON"),
        ("wrong content type", raw(Method::POST, &reset, Some("text/plain"), b"{}".to_vec()), 415, "Content-Type: application/json"),
        ("no content type", raw(Method::POST, &reset, None, b"{}".to_vec()), 415, "Content-Type: application/json"),
        ("unknown field", raw(Method::POST, &reset, json_ct, br#"{"reason":"x","force":true}"#.to_vec()), 422, "unknown field `force`"),
        ("wrong type", raw(Method::POST, &reset, json_ct, br#"{"reason":"x","dry_run":"yes"}"#.to_vec()), 422, "dry_run"),
        ("missing field", raw(Method::POST, "/api/v1/auth/login", json_ct, br#"{"username":"oz"}"#.to_vec()), 422, "missing field `password`"),
        ("bad UUID in the path", raw(Method::GET, "/api/v1/users/not-a-uuid", None, vec![]), 400, "is not a user id"),
        ("bad UUID in a reset path", raw(Method::POST, "/api/v1/users/12345/mfa/reset", json_ct, br#"{"reason":"x"}"#.to_vec()), 400, "is not a user id"),
        ("bad UUID in the bulk ids", raw(Method::POST, "/api/v1/mfa/reset", json_ct, json!({"ids": [uuid.to_string(), "bob"], "reason": "x"}).to_string().into_bytes()), 400, "ids[1]"),
        ("empty bulk", raw(Method::POST, "/api/v1/mfa/reset", json_ct, br#"{"ids": [], "reason": "x"}"#.to_vec()), 400, "ids is empty"),
        ("unknown query parameter", raw(Method::GET, "/api/v1/users?mfa_state=locked", None, vec![]), 400, "unknown field `mfa_state`"),
        ("bad enum in the query", raw(Method::GET, "/api/v1/users?mfa=broken", None, vec![]), 400, "unknown variant `broken`"),
        ("bad number in the query", raw(Method::GET, "/api/v1/users?limit=lots", None, vec![]), 400, "limit"),
        ("page too large", raw(Method::GET, "/api/v1/users?limit=501", None, vec![]), 400, "1 to 500"),
        ("page of zero", raw(Method::GET, "/api/v1/users?limit=0", None, vec![]), 400, "1 to 500"),
        ("bad cursor", raw(Method::GET, "/api/v1/users?cursor=zzz", None, vec![]), 400, "cursor"),
        ("bad role of an API key", raw(Method::POST, "/api/v1/apikeys", json_ct, br#"{"name":"k","role":"god"}"#.to_vec()), 422, "unknown variant `god`"),
        ("unknown route", raw(Method::GET, "/api/v1/nothing-here", None, vec![]), 404, "/openapi.json"),
        ("wrong method", raw(Method::DELETE, "/api/v1/users", None, vec![]), 405, "does not accept DELETE"),
        ("body over 64 KiB", raw(Method::POST, &reset, json_ct, json!({"reason": "x".repeat(70 * 1024)}).to_string().into_bytes()), 413, "larger than"),
    ];
    for (what, req, status, says) in cases {
        let r = h.send(req).await;
        let p = r.problem(status);
        let detail = p["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{what}: {detail:?} should say {says:?}");
        assert!(p["type"].as_str().unwrap().starts_with("urn:mfadmin:problem:"), "{what}: {p}");
    }
}

#[tokio::test]
async fn the_bulk_endpoint_takes_10000_ids_within_its_1_mib_and_refuses_more() {
    let h = Harness::new();
    h.add_org("Acme", false);
    h.add_user("Acme", "oz", Role::Owner, true);
    let token = h.login("oz").await;
    let ids: Vec<String> = (0..10_000).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let body = json!({"ids": ids, "reason": "audit of stale ids", "dry_run": true});
    assert!(body.to_string().len() > 64 * 1024 && body.to_string().len() < 1024 * 1024);
    let r = h.post("/api/v1/mfa/reset", Some(&token), body).await.ok();
    assert_eq!(r["summary"]["not_found"], 10_000);

    let mut more = ids.clone();
    more.push(uuid::Uuid::new_v4().to_string());
    let p = h.post("/api/v1/mfa/reset", Some(&token), json!({"ids": more, "reason": "x"})).await.problem(400);
    assert!(p["detail"].as_str().unwrap().contains("10000"), "{p}");

    let huge = json!({"ids": ids, "reason": "x".repeat(700 * 1024)});
    let p = h.post("/api/v1/mfa/reset", Some(&token), huge).await.problem(413);
    assert!(p["detail"].as_str().unwrap().contains("1 MiB"), "{p}");
}

#[tokio::test]
async fn missing_and_bad_tokens_are_401_with_www_authenticate() {
    let h = Harness::new();
    for auth in [None, Some("Basic b3o6cHc="), Some("Bearer "), Some("Bearer nope"), Some("Bearer ü")] {
        let mut req = Request::get("/api/v1/users");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = h.send(req.body(Body::empty()).unwrap()).await;
        r.problem(401);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{auth:?}");
    }
    let long = format!("Bearer {}", "a".repeat(5000));
    h.send(Request::get("/api/v1/users").header("authorization", long).body(Body::empty()).unwrap()).await.problem(401);
}

#[test]
fn internal_errors_keep_their_detail_out_of_the_body() {
    use axum::response::IntoResponse;
    let err = mfadmin::http::error::ApiError::from(mfadmin::error::Error::Corrupt("user 42: secret detail".into()));
    let response = err.into_response();
    assert_eq!(response.status(), 500);
    let problem = response.extensions().get::<mfadmin::http::error::Problem>().unwrap();
    assert!(!problem.detail.contains("secret detail"));
    assert!(problem.detail.contains("log"));
}

// ------------------------------------------------------------------ the role table over HTTP

fn target_roles() -> [Role; 5] {
    [Role::Member, Role::Helpdesk, Role::Auditor, Role::Admin, Role::Owner]
}

/// For every actor role and every target role, in the actor's org and in another, what the API
/// answers is what the role table (`domain::policy`) says: 200 or 403, and 404 across orgs.
#[tokio::test]
async fn resets_answer_by_the_role_table_and_other_orgs_are_404() {
    let h = Harness::new();
    h.add_org("Acme", false);
    h.add_org("Globex", false);
    // The org does not enforce MFA and the actors have none: the password is the whole login.
    let mut sessions = Vec::new();
    for actor in Role::ALL {
        let name = format!("actor-{actor}");
        let me = h.add_user("Acme", &name, actor, true);
        sessions.push((actor, me, h.login(&name).await));
    }
    let mut checked = 0;
    for (actor, me, token) in &sessions {
        for target in target_roles() {
            for org in ["Acme", "Globex"] {
                let name = format!("t-{actor}-{target}-{org}").to_lowercase();
                let victim = h.add_user(org, &name, target, false);
                h.enroll(&name);
                let uri = format!("/api/v1/users/{}/mfa/reset", victim.id);
                let r = h.post(&uri, Some(token), json!({"reason": "role table"})).await;
                let expected = if org != "Acme" {
                    404
                } else if policy::may_reset(*actor, target, false).is_ok() {
                    200
                } else {
                    403
                };
                assert_eq!(r.status.as_u16(), expected, "{actor} resetting a {target} in {org}: {}", r.text());
                if expected != 200 {
                    r.problem(expected);
                }
                // Reading the user: members see only themselves; nobody sees another org.
                let read = h.get(&format!("/api/v1/users/{}", victim.id), Some(token)).await;
                let expected = if org == "Acme" && policy::may_read_users(*actor) { 200 } else { 404 };
                assert_eq!(read.status.as_u16(), expected, "{actor} reading a {target} in {org}");
                checked += 1;
            }
        }
        // Reading the audit log, changing org settings, creating API keys.
        let r = h.get("/api/v1/audit", Some(token)).await;
        assert_eq!(r.status.as_u16(), if policy::may_read_audit(*actor) { 200 } else { 403 }, "{actor} audit");
        let r = h.call(Method::PUT, "/api/v1/orgs/Acme/mfa", Some(token), Some(json!({"enforced": false}))).await;
        assert_eq!(r.status.as_u16(), if policy::may_change_org(*actor) { 200 } else { 403 }, "{actor} org");
        let r = h.call(Method::PUT, "/api/v1/orgs/Globex/mfa", Some(token), Some(json!({"enforced": true}))).await;
        r.problem(404);
        let r = h.post("/api/v1/apikeys", Some(token), json!({"name": "k", "role": "member"})).await;
        let may = policy::may_create_api_key(*actor, Role::Member);
        assert_eq!(r.status.as_u16(), if may { 201 } else { 403 }, "{actor} apikey");
        // Listing users: members see only themselves.
        let list = h.get("/api/v1/users?limit=500", Some(token)).await.ok();
        let users = list["users"].as_array().unwrap();
        assert!(users.iter().all(|u| u["org"] == "acme"), "{actor} sees only its org");
        if *actor == Role::Member {
            assert_eq!(users.len(), 1);
        } else {
            assert!(users.len() > 5);
        }
        // Self-reset, by the table's last column; last, as it ends the caller's sessions.
        h.enroll(&me.username);
        // Through this route a session may not reset itself: that needs the current password (at
        // /api/v1/me/mfa/reset, see callers_enroll_and_reset_their_own_factor).
        let r = h.post(&format!("/api/v1/users/{}/mfa/reset", me.id), Some(token), json!({"reason": "self"})).await;
        let expected = 403;
        assert_eq!(r.status.as_u16(), expected, "{actor} resetting itself: {}", r.text());
    }
    assert_eq!(checked, 5 * 5 * 2);
    // Without a token, every one of these is 401.
    let any = &sessions[0].1;
    h.post(&format!("/api/v1/users/{}/mfa/reset", any.id), None, json!({"reason": "x"})).await.problem(401);
    h.get(&format!("/api/v1/users/{}", any.id), None).await.problem(401);
}

// ------------------------------------------------------------------ bulk, self, orgs, keys

#[tokio::test]
async fn a_bulk_reset_reports_each_user_and_a_dry_run_changes_nothing() {
    let h = Harness::new();
    h.add_org("Acme", true);
    h.add_org("Globex", false);
    h.add_user("Acme", "hal", Role::Helpdesk, true);
    let m1 = h.add_user("Acme", "m1", Role::Member, false);
    let m2 = h.add_user("Acme", "m2", Role::Member, false);
    let bare = h.add_user("Acme", "bare", Role::Member, false);
    let boss = h.add_user("Acme", "boss", Role::Admin, false);
    let far = h.add_user("Globex", "far", Role::Member, false);
    for u in ["m1", "m2", "boss", "far", "hal"] {
        h.enroll(u);
    }
    h.service().reset_mfa(&Harness::console(), &["hal".to_string()], Some("setup"), false, h.now()).unwrap();
    h.service().set_mfa_enforced(&Harness::console(), Some("Acme"), false, h.now()).unwrap();
    let token = h.login("hal").await;
    let ghost = uuid::Uuid::new_v4();
    let ids = [m1.id, m2.id, bare.id, boss.id, far.id, ghost, m1.id].map(|i| i.to_string());

    let dry = h.post("/api/v1/mfa/reset", Some(&token), json!({"ids": ids, "reason": "office move", "dry_run": true})).await.ok();
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["summary"], json!({"reset": 2, "skipped": 2, "denied": 1, "not_found": 2, "failed": 0}), "{dry}");
    let still = h.get(&format!("/api/v1/users/{}", m1.id), Some(&token)).await.ok();
    assert_eq!(still["mfa"], "enrolled");

    let real = h.post("/api/v1/mfa/reset", Some(&token), json!({"ids": ids, "reason": "office move"})).await.ok();
    assert_eq!(real["summary"], dry["summary"]);
    let outcomes: Vec<&str> = real["results"].as_array().unwrap().iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["reset", "reset", "skipped", "denied", "not_found", "not_found", "skipped"]);
    assert_eq!(real["results"][3]["detail"], "a helpdesk cannot reset the MFA of an admin");
    let now = h.get(&format!("/api/v1/users/{}", m1.id), Some(&token)).await.ok();
    assert_eq!(now["mfa"], "not_enrolled");
    let metrics = h.get("/metrics", None).await.text();
    assert!(metrics.contains("mfadmin_mfa_resets_total{outcome=\"reset\"} 2"), "{metrics}");
    assert!(metrics.contains("mfadmin_mfa_resets_total{outcome=\"denied\"} 1"), "{metrics}");
}

#[tokio::test]
async fn callers_enroll_and_reset_their_own_factor() {
    let h = Harness::new();
    h.add_org("Globex", false);
    h.add_user("Globex", "mel", Role::Member, true);
    h.add_user("Globex", "aud", Role::Auditor, true);
    h.add_user("Globex", "own", Role::Owner, true);
    let token = h.login("mel").await;
    let e = h.call(Method::POST, "/api/v1/me/mfa/enroll", Some(&token), None).await.ok();
    let secret = http_support::secret_of(e["secret_base32"].as_str().unwrap());
    h.post("/api/v1/me/mfa/confirm", Some(&token), json!({"code": "12"})).await.problem(401);
    let c = h.post("/api/v1/me/mfa/confirm", Some(&token), json!({"code": h.code(&secret)})).await.ok();
    assert_eq!(c["recovery_codes"].as_array().unwrap().len(), 10);
    h.call(Method::POST, "/api/v1/me/mfa/enroll", Some(&token), None).await.problem(409);
    let p = h.post("/api/v1/me/mfa/reset", Some(&token), json!({"reason": "new phone"})).await.problem(403);
    assert!(p["detail"].as_str().unwrap().contains("current_password"), "{p}");
    let r = h.post("/api/v1/me/mfa/reset", Some(&token), json!({"reason": "new phone", "current_password": PASSWORD})).await.ok();
    assert_eq!(r["outcome"], "reset");
    // A reset ends the user's sessions, this one included.
    h.get("/api/v1/me", Some(&token)).await.problem(401);

    let aud = h.login("aud").await;
    h.call(Method::POST, "/api/v1/me/mfa/enroll", Some(&aud), None).await.ok();
    let p = h.post("/api/v1/me/mfa/reset", Some(&aud), json!({"reason": "x"})).await.problem(403);
    assert!(p["detail"].as_str().unwrap().contains("auditors"), "{p}");

    let own = h.login("own").await;
    let key = h.post("/api/v1/apikeys", Some(&own), json!({"name": "bot", "role": "admin"})).await.ok();
    let key = key["key"].as_str().unwrap();
    let p = h.call(Method::POST, "/api/v1/me/mfa/enroll", Some(key), None).await.problem(403);
    assert!(p["detail"].as_str().unwrap().contains("API key"), "{p}");
}

#[tokio::test]
async fn org_settings_read_and_change() {
    let h = Harness::new();
    h.add_org("Acme", false);
    h.add_org("Globex", true);
    h.add_user("Acme", "adm", Role::Admin, true);
    h.add_user("Acme", "plain", Role::Member, false);
    let token = h.login("adm").await;
    let orgs = h.get("/api/v1/orgs", Some(&token)).await.ok();
    assert_eq!(orgs["orgs"].as_array().unwrap().len(), 1, "only its own org: {orgs}");
    let acme = h.get("/api/v1/orgs/ACME", Some(&token)).await.ok();
    assert_eq!((acme["name"].as_str(), acme["mfa_enforced"].as_bool()), (Some("Acme"), Some(false)));
    h.get("/api/v1/orgs/Globex", Some(&token)).await.problem(404);
    let changed = h.call(Method::PUT, "/api/v1/orgs/Acme/mfa", Some(&token), Some(json!({"enforced": true}))).await.ok();
    assert_eq!(changed["mfa_enforced"], true);
    let list = h.get("/api/v1/users?mfa=must_enroll&sort=username", Some(&token)).await.ok();
    let names: Vec<&str> = list["users"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
    assert_eq!(names, ["adm", "plain"]);
}

#[tokio::test]
async fn api_keys_are_shown_once_listed_without_the_key_revocable_and_audited() {
    let h = Harness::new();
    h.add_org("Acme", false);
    h.add_user("Acme", "own", Role::Owner, true);
    h.add_user("Acme", "adm", Role::Admin, true);
    let own = h.login("own").await;
    let adm = h.login("adm").await;
    let created = h.post("/api/v1/apikeys", Some(&own), json!({"name": "ticket-bot", "role": "helpdesk"})).await;
    assert_eq!(created.status, 201);
    let created = created.json();
    let key = created["key"].as_str().unwrap().to_string();
    assert_eq!(created["role"], "helpdesk");
    // The key works, with its role.
    let me = h.get("/api/v1/me", Some(&key)).await.ok();
    assert_eq!((me["kind"].as_str(), me["role"].as_str()), (Some("api_key"), Some("helpdesk")));
    h.get("/api/v1/users", Some(&key)).await.ok();
    h.get("/api/v1/audit", Some(&key)).await.problem(403);
    // An admin cannot mint an owner key.
    h.post("/api/v1/apikeys", Some(&adm), json!({"name": "x", "role": "owner"})).await.problem(403);
    // Listed by id, never with the key.
    let list = h.get("/api/v1/apikeys", Some(&adm)).await.ok();
    let keys = list["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{list}");
    assert!(!list.to_string().contains(&key));
    let id = keys[0]["id"].as_str().unwrap();
    assert_eq!(keys[0]["owner"], "own");
    // An admin may not revoke an owner's key; the owner may.
    h.call(Method::DELETE, &format!("/api/v1/apikeys/{id}"), Some(&adm), None).await.problem(403);
    h.call(Method::DELETE, "/api/v1/apikeys/0000000000000000", Some(&own), None).await.problem(404);
    let r = h.call(Method::DELETE, &format!("/api/v1/apikeys/{id}"), Some(&own), None).await;
    assert_eq!(r.status, 204);
    h.get("/api/v1/users", Some(&key)).await.problem(401);
    let audit = h.get("/api/v1/audit?q=apikey", Some(&own)).await.ok();
    let actions: Vec<&str> = audit["events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["apikey.revoke", "apikey.create"]);
}

#[tokio::test]
async fn users_list_filters_sorts_and_pages_with_a_cursor() {
    let h = Harness::new();
    h.add_org("Acme", false);
    h.add_user("Acme", "aud", Role::Auditor, true);
    for i in 0..120 {
        h.add_user("Acme", &format!("u{i:03}"), if i % 10 == 0 { Role::Helpdesk } else { Role::Member }, false);
    }
    h.enroll("u007");
    let token = h.login("aud").await;
    let first = h.get("/api/v1/users", Some(&token)).await.ok();
    assert_eq!(first["users"].as_array().unwrap().len(), 50, "the default page is 50");
    assert_eq!(first["total"], 121);
    let mut seen = 0;
    let mut cursor: Option<String> = None;
    loop {
        let uri = match &cursor {
            Some(c) => format!("/api/v1/users?limit=40&cursor={c}"),
            None => "/api/v1/users?limit=40".into(),
        };
        let page = h.get(&uri, Some(&token)).await.ok();
        seen += page["users"].as_array().unwrap().len();
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, 121);
    let helpdesk = h.get("/api/v1/users?role=helpdesk&sort=username&desc=true", Some(&token)).await.ok();
    let names: Vec<&str> = helpdesk["users"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 12);
    assert_eq!(names[0], "u110");
    let enrolled = h.get("/api/v1/users?mfa=enrolled&q=U00", Some(&token)).await.ok();
    assert_eq!(enrolled["users"][0]["username"], "u007");
    assert_eq!(enrolled["users"].as_array().unwrap().len(), 1);
    // The user object is the CLI's `--output json` object.
    let keys: Vec<String> = enrolled["users"][0].as_object().unwrap().keys().cloned().collect();
    for k in ["id", "username", "email", "display_name", "org", "role", "status", "mfa", "created_at", "last_login_at"] {
        assert!(keys.iter().any(|x| x == k), "the user object lacks {k}");
    }
}

// ------------------------------------------------------------------ discoverability and headers

#[tokio::test]
async fn openapi_json_documents_every_route_and_every_documented_route_answers() {
    // The native API alone; the vendor-compatible routes are checked in tests/http_compat.rs.
    let off = mfadmin::config::CompatConfig { flashback: false, entryguard: false, resolver: false, nps: false, ..Default::default() };
    let h = Harness::with(|c| c.compat = off);
    let doc = h.get("/openapi.json", None).await.ok();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().unwrap();
    let expected = [
        ("post", "/api/v1/auth/login"),
        ("post", "/api/v1/auth/mfa"),
        ("post", "/api/v1/auth/enroll"),
        ("post", "/api/v1/auth/enroll/confirm"),
        ("post", "/api/v1/auth/logout"),
        ("get", "/api/v1/me"),
        ("post", "/api/v1/me/mfa/enroll"),
        ("post", "/api/v1/me/mfa/confirm"),
        ("post", "/api/v1/me/mfa/reset"),
        ("get", "/api/v1/users"),
        ("post", "/api/v1/users"),
        ("post", "/api/v1/users/import"),
        ("put", "/api/v1/users/{id}/password"),
        ("get", "/api/v1/users/{id}"),
        ("post", "/api/v1/users/{id}/mfa/reset"),
        ("post", "/api/v1/users/{id}/mfa/unlock"),
        ("get", "/api/v1/users/{id}/detail"),
        ("put", "/api/v1/users/{id}/status"),
        ("post", "/api/v1/users/{id}/mfa/enroll"),
        ("post", "/api/v1/users/{id}/mfa/confirm"),
        ("post", "/api/v1/mfa/reset"),
        ("get", "/api/v1/orgs"),
        ("post", "/api/v1/orgs"),
        ("get", "/api/v1/orgs/{org}"),
        ("put", "/api/v1/orgs/{org}/mfa"),
        ("get", "/api/v1/audit"),
        ("get", "/api/v1/audit/verify"),
        ("get", "/api/v1/audit/export"),
        ("get", "/api/v1/apikeys"),
        ("post", "/api/v1/apikeys"),
        ("delete", "/api/v1/apikeys/{id}"),
        ("get", "/api/v1/backup"),
        ("get", "/api/v1/check"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
    ];
    let mut documented = Vec::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            documented.push((method.clone(), path.clone()));
            let responses = op["responses"].as_object().unwrap();
            assert!(responses.contains_key("500"), "{method} {path} documents no 500");
            let problem = &responses["500"]["content"]["application/problem+json"]["schema"]["$ref"];
            assert_eq!(problem, "#/components/schemas/Problem", "{method} {path}");
            if op.get("security").is_some() {
                assert!(responses.contains_key("401"), "{method} {path} documents no 401");
            }
        }
    }
    documented.sort();
    let mut want: Vec<(String, String)> = expected.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    want.sort();
    assert_eq!(documented, want);
    // Every documented operation is routed (a routed one answers something other than "no route");
    // /readyz answers 503 until the user directory is read, as `serve` does at start.
    h.state.warm_directory().unwrap();
    for (method, path) in &documented {
        let uri = path.replace("{id}", &uuid::Uuid::new_v4().to_string()).replace("{org}", "acme");
        let r = h.call(method.to_uppercase().parse().unwrap(), &uri, None, None).await;
        assert!(!(r.status == 404 && r.text().contains("there is no")), "{method} {path} is documented but not routed");
        assert_ne!(r.status, 405, "{method} {path}");
        assert!(!r.status.is_server_error(), "{method} {path}: {}", r.text());
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for s in ["Problem", "UserView", "UserPage", "ResetResult", "BulkResetRequest", "BulkResetResponse", "LoginResponse", "MfaStatus", "Role"] {
        assert!(schemas.contains_key(s), "no schema {s}");
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let mfa_enum = &schemas["MfaStatus"]["enum"];
    assert_eq!(mfa_enum, &json!(["enrolled", "not_enrolled", "must_enroll", "pending", "locked"]));
}

#[tokio::test]
async fn docs_are_served_from_the_binary() {
    let h = Harness::new();
    let r = h.get("/docs", None).await;
    assert!(r.status.is_redirection(), "{}", r.status);
    let page = h.get("/docs/", None).await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("swagger-ui"), "{}", page.text());
    for asset in ["/docs/swagger-ui.css", "/docs/swagger-ui-bundle.js", "/docs/swagger-initializer.js"] {
        let r = h.get(asset, None).await;
        assert_eq!(r.status, 200, "{asset}");
        assert!(r.body.len() > 100, "{asset}");
    }
    let init = h.get("/docs/swagger-initializer.js", None).await.text();
    assert!(init.contains("/openapi.json"), "{init}");
}

#[tokio::test]
async fn healthz_and_metrics() {
    let h = Harness::new();
    h.add_org("Acme", false);
    h.add_user("Acme", "oz", Role::Owner, true);
    h.add_user("Acme", "mem", Role::Member, false);
    h.enroll("mem");
    let _session = h.login("oz").await;
    let health = h.get("/healthz", None).await.ok();
    assert_eq!((health["status"].as_str(), health["store"].as_str()), (Some("ok"), Some("ok")));
    h.get(&format!("/api/v1/users/{}", uuid::Uuid::new_v4()), None).await.problem(401);
    let r = h.get("/metrics", None).await;
    assert!(r.header("content-type").unwrap().starts_with("application/openmetrics-text; version=1.0.0"));
    let text = r.text();
    for line in [
        "# TYPE mfadmin_http_requests counter",
        "mfadmin_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"} 1",
        "mfadmin_http_requests_total{route=\"/api/v1/users/{id}\",method=\"GET\",status=\"401\"} 1",
        "# TYPE mfadmin_http_request_duration_seconds histogram",
        "mfadmin_http_request_duration_seconds_bucket{le=\"+Inf\",route=\"/healthz\"} 1",
        "mfadmin_http_request_duration_seconds_count{route=\"/api/v1/users/{id}\"} 1",
        "# TYPE mfadmin_mfa_resets counter",
        "# TYPE mfadmin_logins counter",
        "mfadmin_users{mfa_state=\"enrolled\"} 1",
        "mfadmin_users{mfa_state=\"not_enrolled\"} 1",
        "mfadmin_users{mfa_state=\"locked\"} 0",
        "mfadmin_active_sessions 1",
        "# TYPE mfadmin_build info",
        "# TYPE process_cpu_seconds counter",
        "# TYPE process_resident_memory_bytes gauge",
        "# TYPE process_open_fds gauge",
        "# TYPE process_max_fds gauge",
        "# TYPE process_start_time_seconds gauge",
        "# EOF",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }
    assert!(text.contains(&format!("mfadmin_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"))), "{text}");
    // Every sample line is `name{labels} value`.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (_, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
}

#[tokio::test]
async fn every_response_has_a_request_id_and_the_security_headers() {
    let h = Harness::new();
    h.add_org("Acme", false);
    h.add_user("Acme", "oz", Role::Owner, true);
    let token = h.login("oz").await;
    let responses = vec![
        h.get("/healthz", None).await,
        h.get("/api/v1/users", Some(&token)).await,
        h.get("/api/v1/users", None).await,
        h.get("/nowhere", None).await,
        h.call(Method::PATCH, "/api/v1/users", None, None).await,
        h.post("/api/v1/auth/login", None, json!({"username": "oz", "password": PASSWORD})).await,
        h.get("/openapi.json", None).await,
        h.get("/docs/", None).await,
        h.get("/metrics", None).await,
    ];
    let mut ids = std::collections::HashSet::new();
    for r in &responses {
        let id = r.header("x-request-id").expect("x-request-id");
        assert!(ids.insert(id.to_string()), "request ids are unique");
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert!(r.header("content-security-policy").unwrap().contains("frame-ancestors 'none'"));
    }
    // A client's own request id is kept, unless it is odd.
    let req = |id: &str| Request::get("/healthz").header("x-request-id", id).body(Body::empty()).unwrap();
    assert_eq!(h.send(req("job-42.retry_1")).await.header("x-request-id"), Some("job-42.retry_1"));
    let odd = h.send(req("has spaces and / slashes")).await;
    assert_ne!(odd.header("x-request-id"), Some("has spaces and / slashes"));
    assert_eq!(odd.header("x-request-id").unwrap().len(), 36);
}

#[tokio::test]
async fn unauthenticated_errors_never_leak_whether_a_user_exists_in_another_org() {
    let h = Harness::new();
    h.add_org("Acme", false);
    h.add_org("Globex", false);
    h.add_user("Acme", "oz", Role::Owner, true);
    let other = h.add_user("Globex", "gil", Role::Member, false);
    let token = h.login("oz").await;
    let missing = h.get(&format!("/api/v1/users/{}", uuid::Uuid::new_v4()), Some(&token)).await.problem(404);
    let hidden = h.get(&format!("/api/v1/users/{}", other.id), Some(&token)).await.problem(404);
    let strip = |v: &Value| v["detail"].as_str().unwrap().split('"').next().unwrap().to_string();
    assert_eq!(strip(&missing), strip(&hidden));
}

#[tokio::test]
async fn users_list_takes_unused_for_in_seconds_or_days_and_the_audit_list_skips_actions() {
    const DAY: i64 = 86_400;
    let h = Harness::new();
    h.add_org("Acme", false);
    h.add_user("Acme", "aud", Role::Auditor, true);
    for name in ["busy", "idle", "never"] {
        h.add_user("Acme", name, Role::Member, true);
    }
    h.add_user("Acme", "plain", Role::Member, false);
    let (busy, idle) = (h.enroll("busy"), h.enroll("idle"));
    h.enroll("never");
    let use_factor = async |name: &str, secret: &[u8]| {
        let step = h.post("/api/v1/auth/login", None, json!({"username": name, "password": PASSWORD})).await.ok();
        assert_eq!(step["status"], "mfa_required", "{step}");
        h.post("/api/v1/auth/mfa", None, json!({"challenge": step["challenge"], "code": h.code(secret)})).await.ok();
    };
    h.advance(10 * DAY);
    use_factor("idle", &idle).await;
    h.advance(190 * DAY);
    use_factor("busy", &busy).await;
    let busy_used_at = h.now();
    h.advance(DAY);
    let token = h.login("aud").await;
    let names = async |query: &str| -> Vec<String> {
        let page = h.get(&format!("/api/v1/users?{query}"), Some(&token)).await.ok();
        page["users"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(names("unused_for=30d").await, ["idle", "never"], "not used since day 171");
    assert_eq!(names(&format!("unused_for={}", 30 * DAY)).await, ["idle", "never"], "seconds");
    assert_eq!(names("unused_for=28w").await, ["never"], "not used since day 5");
    assert_eq!(names("unused_for=180d&q=IDL").await, ["idle"]);
    assert_eq!(names("unused_for=").await.len(), 5, "empty is no filter");
    for bad in ["soon", "0", "6m", "-1d"] {
        let problem = h.get(&format!("/api/v1/users?unused_for={bad}"), Some(&token)).await.problem(400);
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.starts_with("unused_for: ") && detail.contains("180d"), "{bad}: {detail}");
    }
    let user = h.get("/api/v1/users?q=busy", Some(&token)).await.ok()["users"][0].clone();
    assert_eq!(user["mfa_last_used_at"], mfadmin::domain::user::rfc3339(busy_used_at));
    assert!(user["mfa_last_client"].is_string(), "{user}");

    let all = h.get("/api/v1/audit?limit=1000", Some(&token)).await.ok();
    let all = all["events"].as_array().unwrap();
    let count = |action: &str| all.iter().filter(|e| e["action"] == action).count();
    assert!(count("user.add") == 5 && count("auth.mfa") >= 2, "{all:?}");
    let some = h.get("/api/v1/audit?limit=1000&skip_actions=user.add,%20auth.mfa", Some(&token)).await.ok();
    let some = some["events"].as_array().unwrap();
    assert_eq!(some.len(), all.len() - count("user.add") - count("auth.mfa"));
    assert!(some.iter().all(|e| e["action"] != "user.add" && e["action"] != "auth.mfa"));

    let doc = h.get("/openapi.json", None).await.ok();
    let params = |path: &str| -> Vec<String> {
        doc["paths"][path]["get"]["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_string()).collect()
    };
    assert!(params("/api/v1/users").contains(&"unused_for".to_string()));
    assert!(params("/api/v1/audit").contains(&"skip_actions".to_string()));
}

// ------------------------------------------------------------------ the API document

/// Every `$ref` in `value`, with where it was found.
fn refs<'a>(value: &'a Value, at: String, out: &mut Vec<(String, &'a str)>) {
    match value {
        Value::Object(fields) => {
            for (key, inner) in fields {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(target)) => out.push((at.clone(), target)),
                    _ => refs(inner, format!("{at}/{key}"), out),
                }
            }
        }
        Value::Array(items) => items.iter().enumerate().for_each(|(i, inner)| refs(inner, format!("{at}/{i}"), out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_api_document_resolves_every_ref_names_each_operation_once_and_shows_examples() {
    let h = Harness::new();
    let doc = h.get("/openapi.json", None).await.ok();
    let mut found = Vec::new();
    refs(&doc, String::new(), &mut found);
    assert!(found.len() > 50, "{}", found.len());
    for (at, target) in &found {
        let name = target.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{at}: {target}"));
        assert!(doc["components"]["schemas"][name].is_object(), "{at} refers to {target}, which is not in the document");
    }
    assert!(doc["components"]["schemas"]["AuditFormat"]["enum"].as_array().is_some_and(|e| e.len() == 2));

    let mut ids = std::collections::BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            if let Some(other) = ids.insert(id.to_string(), format!("{method} {path}")) {
                panic!("operationId {id:?} names both {other} and {method} {path}");
            }
            // Swagger UI's "Try it out" starts from these: every body and parameter has an example.
            for media in op["requestBody"]["content"].as_object().into_iter().flat_map(|c| c.values()) {
                assert!(media.get("example").is_some(), "{method} {path}: a request body without an example");
            }
            for parameter in op["parameters"].as_array().into_iter().flatten() {
                assert!(parameter.get("example").is_some(), "{method} {path}: parameter {} without an example", parameter["name"]);
            }
            for (status, response) in op["responses"].as_object().unwrap() {
                for media in response["content"].as_object().into_iter().flat_map(|c| c.values()) {
                    assert!(media.get("example").is_some(), "{method} {path} {status}: a response without an example");
                }
            }
        }
    }
    assert!(ids.contains_key("me") && ids.contains_key("resolverMe"), "{ids:?}");

    // The examples are of the right shape: the login example logs in once its user exists.
    let login = &doc["paths"]["/api/v1/auth/login"]["post"]["requestBody"]["content"]["application/json"]["example"];
    assert_eq!(login["username"], "alice", "{login}");
    h.add_org("Acme", false);
    h.service()
        .add_user(
            &Harness::console(),
            mfadmin::service::NewUser {
                username: "alice".into(),
                email: "alice@acme.example".into(),
                display_name: "Alice".into(),
                role: Role::Member,
                org: "Acme".into(),
                password: Some(login["password"].as_str().unwrap().into()),
            },
            h.now(),
        )
        .unwrap();
    assert_eq!(h.post("/api/v1/auth/login", None, login.clone()).await.ok()["status"], "done");
    let export = &doc["paths"]["/api/v1/audit/export"]["get"]["parameters"][0];
    assert_eq!((export["name"].as_str(), export["example"].as_str()), (Some("format"), Some("jsonl")));
}

/// While serving, expired sessions and challenges go at every pass of the background task; live
/// ones stay.
#[tokio::test]
async fn the_server_deletes_expired_sessions_as_it_runs() {
    use mfadmin::store::{Change, Session, SessionKind};
    let h = Harness::new();
    h.add_org("Acme", false);
    let user = h.add_user("Acme", "oz", Role::Owner, true);
    let now = h.state.now();
    let store = h.state.service().store().clone();
    let sessions_put = vec![
        ([1u8; 32], Session::new(user.id, SessionKind::MfaChallenge, now - 600, now - 300, "test")),
        ([2u8; 32], Session::new(user.id, SessionKind::Session, now, now + 3_600, "test")),
    ];
    store.commit(&[Change { sessions_put, ..Change::default() }]).unwrap();
    let sweeper = tokio::spawn(mfadmin::http::delete_expired_sessions_every(h.state.clone(), std::time::Duration::from_millis(50)));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.get_session(&[1u8; 32]).unwrap().is_some() {
        assert!(std::time::Instant::now() < deadline, "the expired challenge is still there after 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    sweeper.abort();
    assert!(store.get_session(&[2u8; 32]).unwrap().is_some(), "the live session stays");
}

// ------------------------------------------------------------------ unlock

#[tokio::test]
async fn unlock_lifts_a_lockout_by_name_or_id_and_answers_409_when_there_is_none() {
    let h = Harness::new();
    h.add_org("Acme", false);
    h.add_user("Acme", "hal", Role::Helpdesk, true);
    h.add_user("Acme", "amy", Role::Admin, false);
    let bob = h.add_user("Acme", "bob", Role::Member, true);
    let secret = h.enroll("bob");
    h.advance(30);
    let token = h.login("hal").await;
    // Five wrong codes lock bob's factor.
    for _ in 0..5 {
        let step = h.post("/api/v1/auth/login", None, json!({"username": "bob", "password": PASSWORD})).await.ok();
        let challenge = step["challenge"].as_str().unwrap().to_string();
        h.post("/api/v1/auth/mfa", None, json!({"challenge": challenge, "code": "000000"})).await.problem(401);
    }
    assert_eq!(h.get(&format!("/api/v1/users/{}", bob.id), Some(&token)).await.ok()["mfa"], "locked");

    let p = h.post("/api/v1/users/amy/mfa/unlock", Some(&token), json!({})).await.problem(403);
    assert!(p["detail"].as_str().unwrap().contains("cannot unlock"), "{p}");
    h.post("/api/v1/users/nobody/mfa/unlock", Some(&token), json!({})).await.problem(404);
    let unlocked = h.post(&format!("/api/v1/users/{}/mfa/unlock", bob.id), Some(&token), json!({"reason": "ticket 4712"})).await.ok();
    assert_eq!(unlocked["mfa"], "enrolled", "{unlocked}");
    assert_eq!(unlocked["username"], "bob");
    let p = h.post("/api/v1/users/bob/mfa/unlock", Some(&token), json!({})).await.problem(409);
    assert!(p["detail"].as_str().unwrap().contains("not locked"), "{p}");
    // The factor is the same one: its codes work at once.
    h.advance(30);
    let step = h.post("/api/v1/auth/login", None, json!({"username": "bob", "password": PASSWORD})).await.ok();
    let challenge = step["challenge"].as_str().unwrap();
    h.post("/api/v1/auth/mfa", None, json!({"challenge": challenge, "code": h.code(&secret)})).await.ok();
}
