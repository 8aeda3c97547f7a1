//! The four vendor-compatible APIs: each document's own example requests, replayed with real tokens
//! (password + TOTP) against a real server on 127.0.0.1:0, every status code the document lists,
//! and after each compat reset the same effect in the native API and the audit log as a native reset.

mod http_support;

use axum::http::Method;
use http_support::{Harness, PASSWORD, Reply, parse_response};
use mfadmin::config::Config;
use mfadmin::domain::audit::AuditEvent;
use mfadmin::domain::role::Role;
use mfadmin::domain::user::{Org, User, UserView, rfc3339};
use mfadmin::error::{Error, Result as CoreResult};
use mfadmin::app::Clock;
use mfadmin::http::{AppState, Settings, router};
use mfadmin::service::Service;
use mfadmin::store::sled::SledStore;
use mfadmin::store::{Change, Session, Store, TokenHash};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;
use uuid::Uuid;

// ------------------------------------------------------------------ a real server and a raw client

/// `mfadmin::http::run` on 127.0.0.1:0, stopped by [`Server::stop`] (or when the test's runtime ends).
struct Server {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    async fn start(h: &Harness) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(addr.ip().is_loopback());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(mfadmin::http::run(listener, h.state.clone(), shutdown, Duration::from_secs(5)));
        Server { addr, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(20), self.task).await.expect("the server stops").unwrap().unwrap();
    }

    /// One request as a script sends it: exactly these headers (plus host and length), this body.
    async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Reply {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.expect("connect");
        let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n", self.addr);
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(body) = body {
            req.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        req.push_str(body.unwrap_or(""));
        stream.write_all(req.as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut raw))
            .await
            .expect("an answer")
            .expect("read");
        parse_response(&raw)
    }

    async fn json(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Reply {
        let auth = format!("Bearer {token}");
        let mut headers = vec![("authorization", auth.as_str())];
        let text = body.map(|b| b.to_string());
        if text.is_some() {
            headers.push(("content-type", "application/json"));
        }
        self.send(method, path, &headers, text.as_deref()).await
    }

    /// Log in over the socket with password and a fresh TOTP code (or the password alone).
    async fn login(&self, h: &Harness, username: &str, secret: Option<&[u8]>) -> String {
        h.advance(30);
        let body = json!({"username": username, "password": PASSWORD}).to_string();
        let step =
            self.send("POST", "/api/v1/auth/login", &[("content-type", "application/json")], Some(&body)).await.ok();
        let Some(secret) = secret else {
            assert_eq!(step["status"], "done", "{step}");
            return step["token"].as_str().unwrap().to_string();
        };
        assert_eq!(step["status"], "mfa_required", "{step}");
        let body = json!({"challenge": step["challenge"], "code": h.code(secret)}).to_string();
        let session =
            self.send("POST", "/api/v1/auth/mfa", &[("content-type", "application/json")], Some(&body)).await.ok();
        session["token"].as_str().unwrap().to_string()
    }
}

// ------------------------------------------------------------------ the people of the documents

/// Acme (MFA not enforced) and Globex. User number 1 is Valentina, the documents' example id `1`.
struct People {
    secrets: HashMap<String, Vec<u8>>,
    users: HashMap<String, UserView>,
}

impl People {
    fn id(&self, name: &str) -> String {
        self.users[name].id.to_string()
    }

    fn number(&self, name: &str) -> u64 {
        self.users[name].number
    }

    fn secret(&self, name: &str) -> Option<&[u8]> {
        self.secrets.get(name).map(Vec::as_slice)
    }
}

/// `(name, role, enrolled)` in Acme, plus `gina` (enrolled) in Globex; everyone can log in.
fn people(h: &Harness, acme: &[(&str, Role, bool)]) -> People {
    h.add_org("Acme", false);
    h.add_org("Globex", false);
    let mut users = HashMap::new();
    let mut secrets = HashMap::new();
    let first = [("valentina", Role::Member, true)];
    let everyone = first.iter().chain(acme).map(|(n, r, e)| ("Acme", *n, *r, *e));
    for (org, name, role, enrolled) in everyone.chain([("Globex", "gina", Role::Member, true)]) {
        users.insert(name.to_string(), h.add_user(org, name, role, true));
        if enrolled {
            secrets.insert(name.to_string(), h.enroll(name));
        }
    }
    assert_eq!(users["valentina"].number, 1, "the documents' example id is user number 1");
    People { secrets, users }
}

fn user(h: &Harness, name: &str) -> UserView {
    h.service().get_user(&Harness::console(), name, h.now()).expect("user").user
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap_or_else(|| panic!("not an object: {v}")).keys().cloned().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// The `mfa.reset` events about `username`, newest first, through the native audit API.
async fn reset_events(server: &Server, token: &str, username: &str) -> Vec<Value> {
    let audit = server.json("GET", &format!("/api/v1/audit?q={username}&limit=1000"), token, None).await.ok();
    audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "mfa.reset" && e["target"] == username)
        .cloned()
        .collect()
}

/// After a compat reset of `compat_target` (by the user behind `token`, with `reason`), reset
/// `native_target` through the native API with the same reason and compare: the users look alike
/// in the native API, each has exactly one `mfa.reset` event, and the events differ only in target
/// and source. Also: the compat target's session (`target_token`) ended with the reset.
async fn assert_same_effect_as_native(
    server: &Server,
    token: &str,
    compat_target: &str,
    native_target: &str,
    source: &str,
    reason: &str,
    target_token: Option<&str>,
) {
    let native = user_by_name(server, token, native_target).await;
    let r = server
        .json(
            "POST",
            &format!("/api/v1/users/{}/mfa/reset", native["id"].as_str().unwrap()),
            token,
            Some(json!({"reason": reason})),
        )
        .await;
    assert_eq!(r.ok()["outcome"], "reset");
    let compat = user_by_name(server, token, compat_target).await;
    let native = user_by_name(server, token, native_target).await;
    for field in ["mfa", "recovery_codes_left", "mfa_reset_at", "status", "role"] {
        assert_eq!(compat[field], native[field], "{field}: {compat} vs {native}");
    }
    assert_ne!(compat["mfa"], "enrolled");
    assert!(compat["mfa_reset_at"].is_string());

    let compat_events = reset_events(server, token, compat_target).await;
    let native_events = reset_events(server, token, native_target).await;
    assert_eq!(compat_events.len(), 1, "one mfa.reset event for {compat_target}: {compat_events:?}");
    assert_eq!(native_events.len(), 1);
    let (c, n) = (&compat_events[0], &native_events[0]);
    assert_eq!(c["source"], source, "{c}");
    assert_eq!(n["source"], "http");
    assert_eq!(c["reason"], reason);
    for field in ["actor", "action", "outcome", "reason", "detail", "org", "at"] {
        assert_eq!(c[field], n[field], "{field}: {c} vs {n}");
    }
    if let Some(t) = target_token {
        server.json("GET", "/api/v1/me", t, None).await.problem(401);
    }
}

async fn user_by_name(server: &Server, token: &str, name: &str) -> Value {
    let page = server.json("GET", &format!("/api/v1/users?q={name}"), token, None).await.ok();
    page["users"].as_array().unwrap().iter().find(|u| u["username"] == name).cloned().expect("the user is listed")
}

// ------------------------------------------------------------------ Flashback (seed 000)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flashback_replays_the_documents_requests_with_every_status_it_lists() {
    let h = Harness::new();
    let p = people(
        &h,
        &[
            ("olga", Role::Owner, true),
            ("ada", Role::Admin, true),
            ("hal", Role::Helpdesk, true),
            ("mia", Role::Member, true),
            ("bob", Role::Member, true),
            ("twin", Role::Member, true),
        ],
    );
    let server = Server::start(&h).await;
    let ada = server.login(&h, "ada", p.secret("ada")).await;
    let hal = server.login(&h, "hal", p.secret("hal")).await;
    let mia = server.login(&h, "mia", p.secret("mia")).await;
    let bob_session = server.login(&h, "bob", p.secret("bob")).await;
    let flashback_ok = json!({"success": true, "message": "MFA reset successfully"});

    // Self-reset, as the Shell tab: no body, no content type. A session alone may not drop its own
    // second factor (issue 20, item 5): refused in Flashback's shape, done natively with the password.
    let mia_auth = format!("Bearer {mia}");
    let r =
        server.send("POST", "/mfa/reset", &[("Accept", "application/json"), ("Authorization", &mia_auth)], None).await;
    assert_eq!(r.status.as_u16(), 403, "{}", r.text());
    assert_eq!(r.json()["success"], false);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(user(&h, "mia").mfa.as_str(), "enrolled");
    let body = format!(r#"{{"reason": "new phone", "current_password": "{PASSWORD}"}}"#);
    let r = server
        .send("POST", "/api/v1/me/mfa/reset", &[("Content-Type", "application/json"), ("Authorization", &mia_auth)], Some(&body))
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(user(&h, "mia").mfa.as_str(), "not_enrolled");
    let events = reset_events(&server, &ada, "mia").await;
    assert_eq!((events.len(), events[0]["actor"].as_str()), (2, Some("mia")), "the refused one and the reset");

    // Admin reset, as the Shell tab: resetUserId in a JSON body.
    let ada_auth = format!("Bearer {ada}");
    let body = format!(r#"{{"resetUserId": "{}"}}"#, p.id("bob"));
    let admin_headers =
        [("Accept", "application/json"), ("Authorization", ada_auth.as_str()), ("Content-Type", "application/json")];
    let r = server.send("POST", "/mfa/reset", &admin_headers, Some(&body)).await;
    assert_eq!((r.status.as_u16(), r.json()), (200, flashback_ok.clone()));
    assert_same_effect_as_native(
        &server,
        &ada,
        "bob",
        "twin",
        "http:flashback",
        "Flashback-compatible API",
        Some(&bob_session),
    )
    .await;

    // The TypeScript client's self-reset sends `null`; the X-Reset-Reason header is the reason.
    let r = server
        .send(
            "POST",
            "/mfa/reset",
            &[("authorization", &ada_auth), ("content-type", "application/json"), ("x-reset-reason", "ticket 4711")],
            Some("null"),
        )
        .await;
    // A session alone may not reset its own factor (issue 20, item 5): refused, and audited with the reason.
    assert_eq!(r.status.as_u16(), 403, "{}", r.text());
    let refused = reset_events(&server, &ada, "ada").await;
    assert_eq!((refused[0]["reason"].as_str(), refused[0]["outcome"].as_str()), (Some("ticket 4711"), Some("denied")));

    // 403: the document's sentence for a role without the right; our role table's reason for an Admin.
    let r = server.json("POST", "/mfa/reset", &hal, Some(json!({"resetUserId": p.id("olga")}))).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json(),
        json!({"success": false, "error": "Insufficient permissions. OWNER or ADMINISTRATOR role required to reset another user's MFA."})
    );
    let r = server.json("POST", "/mfa/reset", &ada, Some(json!({"resetUserId": p.id("olga")}))).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json(),
        json!({"success": false, "error": "Insufficient permissions. An admin cannot reset the MFA of an owner."})
    );
    assert_eq!(user(&h, "olga").mfa.as_str(), "enrolled");

    // 404: an unknown id, the document's placeholder, and a user of another org alike.
    for id in [Uuid::new_v4().to_string(), "user-id-to-reset".to_string(), p.id("gina")] {
        let r = server.json("POST", "/mfa/reset", &ada, Some(json!({"resetUserId": id}))).await;
        assert_eq!((r.status.as_u16(), r.json()), (404, json!({"success": false, "error": "User not found"})), "{id}");
    }
    assert_eq!(user(&h, "gina").mfa.as_str(), "enrolled");

    // A misspelt field is refused, never taken to mean "reset me".
    let r = server.json("POST", "/mfa/reset", &ada, Some(json!({"resetUserID": p.id("olga")}))).await;
    assert_eq!(r.status, 400);
    assert_eq!(keys(&r.json()), set(&["success", "error"]));

    // 401 without a token (and with a wrong one), in Flashback's shape.
    for headers in [vec![("Accept", "application/json")], vec![("Authorization", "Bearer not-a-token")]] {
        let r = server.send("POST", "/mfa/reset", &headers, None).await;
        assert_eq!(r.status, 401);
        let body = r.json();
        assert_eq!((keys(&body), &body["success"]), (set(&["success", "error"]), &json!(false)), "{body}");
        assert!(body["error"].as_str().unwrap().starts_with("Unauthorized"), "{body}");
    }
    server.stop().await;
}

// ------------------------------------------------------------------ EntryGuard (seed 001)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entryguard_replays_the_documents_request_with_every_status_it_lists() {
    let h = Harness::new();
    let p = people(
        &h,
        &[
            ("ada", Role::Admin, true),
            ("hal", Role::Helpdesk, true),
            ("bob", Role::Member, true),
            ("twin", Role::Member, true),
        ],
    );
    let server = Server::start(&h).await;
    let ada = server.login(&h, "ada", p.secret("ada")).await;
    let hal = server.login(&h, "hal", p.secret("hal")).await;
    let bob_session = server.login(&h, "bob", p.secret("bob")).await;
    let path = |id: &str| format!("/api/v1/users/{id}/reset-mfa");
    let error = |status: u16, reason: &str, message: &str, path: &str| json!({"timestamp": rfc3339(h.now()), "status": status, "error": reason, "message": message, "path": path});

    // The document's curl: POST, the bearer token, no body.
    let auth = format!("Bearer {ada}");
    let r = server.send("POST", &path(&p.id("bob")), &[("Authorization", &auth)], None).await;
    assert_eq!((r.status.as_u16(), r.json()), (200, json!({"message": "MFA reset successfully"})));
    assert_same_effect_as_native(
        &server,
        &ada,
        "bob",
        "twin",
        "http:entryguard",
        "EntryGuard-compatible API",
        Some(&bob_session),
    )
    .await;

    // 400: nothing left to reset.
    let r = server.send("POST", &path(&p.id("bob")), &[("Authorization", &auth)], None).await;
    assert_eq!(
        (r.status.as_u16(), r.json()),
        (400, error(400, "Bad Request", "MFA is not enabled for this user", &path(&p.id("bob"))))
    );

    // 401: missing or invalid token.
    for headers in [vec![], vec![("Authorization", "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...")]] {
        let r = server.send("POST", &path(&p.id("hal")), &headers, None).await;
        let expected = error(401, "Unauthorized", "Missing or invalid authentication token", &path(&p.id("hal")));
        assert_eq!((r.status.as_u16(), r.json()), (401, expected));
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    }

    // 403: a helpdesk is no org admin.
    let r = server.json("POST", &path(&p.id("ada")), &hal, None).await;
    assert_eq!(
        (r.status.as_u16(), r.json()),
        (403, error(403, "Forbidden", "User does not have ORG_ADMIN role", &path(&p.id("ada"))))
    );
    assert_eq!(user(&h, "ada").mfa.as_str(), "enrolled");

    // 404: the document's example id, a user of another org, and a malformed id.
    for id in ["770e8400-e29b-41d4-a716-446655440004".to_string(), p.id("gina"), "nope".to_string()] {
        let r = server.json("POST", &path(&id), &ada, None).await;
        let expected = error(404, "Not Found", &format!("User not found with id: {id}"), &path(&id));
        assert_eq!((r.status.as_u16(), r.json()), (404, expected));
    }
    assert_eq!(user(&h, "gina").mfa.as_str(), "enrolled");
    server.stop().await;
}

#[tokio::test]
async fn entryguard_answers_429_when_failed_authentications_exceed_the_rate_limit() {
    let h = Harness::with(|c| c.server.auth_rate_per_client = 2);
    let p = people(&h, &[]);
    let uri = format!("/api/v1/users/{}/reset-mfa", p.id("valentina"));
    for _ in 0..2 {
        assert_eq!(h.call(Method::POST, &uri, Some("guess"), None).await.status, 401);
    }
    let r = h.call(Method::POST, &uri, Some("guess"), None).await;
    assert_eq!(r.status, 429);
    let expected = json!({"timestamp": rfc3339(h.now()), "status": 429, "error": "Too Many Requests", "message": "Rate limit exceeded", "path": uri});
    assert_eq!(r.json(), expected);
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
}

// ------------------------------------------------------------------ Resolver (seeds 002, 003)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolver_replays_the_swagger_calls_all_or_nothing() {
    let h = Harness::new();
    let p = people(
        &h,
        &[
            ("olga", Role::Owner, true),
            ("ada", Role::Admin, true),
            ("hal", Role::Helpdesk, true),
            ("mo", Role::Member, true),
            ("max", Role::Member, true),
            ("twin", Role::Member, true),
        ],
    );
    let server = Server::start(&h).await;
    let ada = server.login(&h, "ada", p.secret("ada")).await;
    let hal = server.login(&h, "hal", p.secret("hal")).await;
    let valentina_session = server.login(&h, "valentina", p.secret("valentina")).await;
    let auth = format!("Bearer {ada}");
    // What Swagger UI's Execute sends.
    let swagger = |auth: &str| -> Vec<(&'static str, String)> {
        vec![("accept", "*/*".into()), ("Authorization", auth.to_string()), ("Content-Type", "application/json".into())]
    };
    let send = |method: &'static str, path: &'static str, auth: String, body: String| {
        let server = &server;
        async move {
            let headers = swagger(&auth);
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            server.send(method, path, &headers, Some(&body)).await
        }
    };

    // The example value as it is: {"ids": [1]}, user number 1.
    let r = send("PUT", "/user/users/mfa/reset", auth.clone(), "{\n  \"ids\": [\n    1\n  ]\n}".into()).await;
    assert_eq!((r.status.as_u16(), r.json()), (200, json!({"reset": [1], "skipped": []})));
    assert_same_effect_as_native(
        &server,
        &ada,
        "valentina",
        "twin",
        "http:resolver",
        "Resolver-compatible API",
        Some(&valentina_session),
    )
    .await;

    // 404 names the unknown ids (another org's user is unknown), and nothing is reset.
    let (mo, max) = (p.number("mo"), p.number("max"));
    let body = json!({"ids": [mo, 9999, p.id("gina"), max]}).to_string();
    let r = send("PUT", "/user/users/mfa/reset", auth.clone(), body).await;
    assert_eq!(r.status, 404);
    let gina = p.id("gina");
    assert_eq!(
        r.json(),
        json!({"status": 404, "error": "Not Found", "message": format!("No user with id 9999, {gina} in your org; no MFA was reset"), "ids": [9999, gina]})
    );
    assert_eq!((user(&h, "mo").mfa.as_str(), user(&h, "max").mfa.as_str()), ("enrolled", "enrolled"));

    // 403 names the ids the caller may not reset, and nothing is reset: a Helpdesk is no
    // Administrator, so it may reset no one else here (the document: "Only Administrators").
    let body = json!({"ids": [mo, p.id("ada"), p.number("olga")]}).to_string();
    let r = send("PUT", "/user/users/mfa/reset", format!("Bearer {hal}"), body).await;
    assert_eq!(r.status, 403);
    let (ada_id, olga_n) = (p.id("ada"), p.number("olga"));
    assert_eq!(
        r.json(),
        json!({"status": 403, "error": "Forbidden", "ids": [mo, ada_id, olga_n], "message": format!(
            "You may not reset the MFA of id {mo}, {ada_id}, {olga_n} (only Administrators (Owners and Admins) can reset MFA for users on their Org); no MFA was reset"
        )})
    );
    // An Admin may not reset an Owner (the role table), and again nothing is reset.
    let body = json!({"ids": [mo, olga_n]}).to_string();
    let r = send("PUT", "/user/users/mfa/reset", auth.clone(), body).await;
    assert_eq!((r.status.as_u16(), &r.json()["ids"]), (403, &json!([olga_n])));
    assert!(r.json()["message"].as_str().unwrap().contains("an admin cannot reset the MFA of an owner"), "{}", r.text());
    assert_eq!(user(&h, "mo").mfa.as_str(), "enrolled");
    let denied: Vec<Value> = reset_events(&server, &ada, "ada").await;
    assert_eq!(
        (denied.len(), denied[0]["outcome"].as_str(), denied[0]["source"].as_str()),
        (1, Some("denied"), Some("http:resolver"))
    );

    // Then all at once: numbers and UUIDs mixed, one already reset and one listed twice are skipped.
    let body = json!({"ids": [mo, p.id("max"), 1, mo.to_string()]}).to_string();
    let r = send("PUT", "/user/users/mfa/reset", auth.clone(), body).await;
    assert_eq!(
        (r.status.as_u16(), r.json()),
        (200, json!({"reset": [mo, p.id("max")], "skipped": [1, mo.to_string()]}))
    );
    assert_eq!((user(&h, "mo").mfa.as_str(), user(&h, "max").mfa.as_str()), ("not_enrolled", "not_enrolled"));

    // 400: not ids.
    for body in [r#"{"ids": []}"#, r#"{"ids": ["alice"]}"#, r#"{"idz": [1]}"#, "{"] {
        let r = send("PUT", "/user/users/mfa/reset", auth.clone(), body.into()).await;
        assert_eq!(r.status, 400, "{body}");
        assert!(set(&["status", "error", "message", "ids"]).is_superset(&keys(&r.json())), "{}", r.text());
    }

    // Org enforcement (the second Swagger call), for the caller's org; Administrators only.
    let r = send("PUT", "/user/org/mfa", auth.clone(), "{\n  \"isMfaEnforced\": true\n}".into()).await;
    assert_eq!((r.status.as_u16(), r.json()), (200, json!({"name": "Acme", "isMfaEnforced": true})));
    let org = server.json("GET", "/api/v1/orgs/Acme", &ada, None).await.ok();
    assert_eq!(org["mfa_enforced"], true);
    let audit = server.json("GET", "/api/v1/audit?q=org.enforce_mfa", &ada, None).await.ok();
    assert_eq!(audit["events"][0]["source"], "http:resolver");
    assert_eq!(audit["events"][0]["detail"], "on");
    let r = send("PUT", "/user/org/mfa", format!("Bearer {hal}"), r#"{"isMfaEnforced": false}"#.into()).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json(),
        json!({"status": 403, "error": "Forbidden", "message": "Only Administrators can enforce multi-factor authentication (MFA) on their Org."})
    );
    // The other org is untouched.
    assert!(!h.service().store().get_org("globex").unwrap().unwrap().mfa_enforced);

    // Who am I, with the number the ids use.
    let r = server.json("GET", "/user/users/me", &ada, None).await;
    let me = r.ok();
    assert_eq!((me["username"].as_str(), me["number"].as_u64()), (Some("ada"), Some(p.number("ada"))));

    // 401 without a token, on every Resolver route.
    for (method, path) in [("PUT", "/user/users/mfa/reset"), ("PUT", "/user/org/mfa"), ("GET", "/user/users/me"), ("GET", "/user/users")] {
        let r = server.send(method, path, &[("Content-Type", "application/json")], Some(r#"{"ids": [1]}"#)).await;
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(keys(&r.json()), set(&["status", "error", "message"]));
        assert_eq!(r.json()["status"], 401);
    }
    server.stop().await;
}

#[tokio::test]
async fn resolver_resets_hundreds_of_users_in_one_call() {
    let h = Harness::new();
    people(&h, &[("ada", Role::Admin, false)]);
    let mut numbers = Vec::new();
    for i in 0..200 {
        let name = format!("u{i:04}");
        numbers.push(h.add_user("Acme", &name, Role::Member, false).number);
    }
    // Enrolled through the service; the numbers are what a Resolver script sends.
    for i in (0..200).step_by(2) {
        h.enroll(&format!("u{i:04}"));
    }
    let token = h.login("ada").await;
    let r = h.call(Method::PUT, "/user/users/mfa/reset", Some(&token), Some(json!({"ids": numbers}))).await;
    let body = r.ok();
    assert_eq!((body["reset"].as_array().unwrap().len(), body["skipped"].as_array().unwrap().len()), (100, 100));
    let audit = h.get("/api/v1/audit?q=Resolver-compatible&limit=1000", Some(&token)).await.ok();
    assert_eq!(audit["events"].as_array().unwrap().len(), 100);
    assert_eq!(h.get("/api/v1/audit/verify", Some(&token)).await.ok()["ok"], true);
}

// ------------------------------------------------------------------ Netwrix Privilege Secure (seed 004)

/// What `Invoke-RestMethod` makes of a response: JSON is parsed (a JSON string becomes a string).
fn as_powershell_sees_it(r: &Reply) -> String {
    assert_eq!(r.status, 200, "{}", r.text());
    match serde_json::from_slice::<Value>(&r.body) {
        Ok(Value::String(s)) => s,
        _ => r.text(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nps_replays_the_curl_and_powershell_examples_with_every_status_it_lists() {
    let h = Harness::new();
    let p = people(
        &h,
        &[
            ("ada", Role::Admin, true),
            ("hal", Role::Helpdesk, true),
            ("bob", Role::Member, true),
            ("twin", Role::Member, true),
            ("cy", Role::Member, true),
            ("dee", Role::Member, true),
            ("eve", Role::Member, false),
            ("olga", Role::Owner, true),
        ],
    );
    let server = Server::start(&h).await;
    let ada = server.login(&h, "ada", p.secret("ada")).await;
    let bob_session = server.login(&h, "bob", p.secret("bob")).await;
    let reset = |id: &str| format!("/api/v1/ManagedAccount/ResetMFA/{id}");

    // The curl example: `Authorization: API_KEY`, the key with no scheme.
    let key = server.json("POST", "/api/v1/apikeys", &ada, Some(json!({"name": "nps-script", "role": "admin"}))).await;
    let key = key.ok()["key"].as_str().unwrap().to_string();
    let r = server
        .send("PUT", &reset(&p.id("bob")), &[("Accept", "application/json"), ("Authorization", &key)], None)
        .await;
    assert_eq!((r.status.as_u16(), r.body.len()), (200, 0), "{}", r.text());
    let key_events = reset_events(&server, &ada, "bob").await;
    assert_eq!(key_events[0]["actor"], "apikey:nps-script");
    // (The same effect as a native reset, by the same actor: compare with a bearer-token reset.)
    let r = server.json("PUT", &reset(&p.id("cy")), &ada, None).await;
    assert_eq!((r.status.as_u16(), r.body.len()), (200, 0));
    assert_same_effect_as_native(
        &server,
        &ada,
        "cy",
        "twin",
        "http:nps",
        "Netwrix Privilege Secure-compatible API",
        None,
    )
    .await;
    server.json("GET", "/api/v1/me", &bob_session, None).await.problem(401);

    // The PowerShell example (an Administrator, as the document requires): signinBody, then the
    // code at `sigin2fa` (sic), then the reset.
    let powershell = [
        ("User-Agent", "Mozilla/5.0 (Windows NT; Windows NT 10.0; en-US) WindowsPowerShell/5.1.19041.1"),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let admin_login = format!("{{\r\n    \"Login\":  \"ada\",\r\n    \"Password\":  \"{PASSWORD}\"\r\n}}"); // ConvertTo-Json $Login
    let token = as_powershell_sees_it(&server.send("POST", "/signinBody", &powershell, Some(&admin_login)).await);
    h.advance(30);
    let mfa_code = h.code(p.secret("ada").unwrap());
    let bearer = format!("Bearer {token}");
    let headers = [powershell[0], powershell[1], ("Authorization", bearer.as_str())];
    let token = as_powershell_sees_it(&server.send("POST", "/sigin2fa", &headers, Some(&mfa_code)).await);
    let bearer = format!("Bearer {token}");
    let r = server.send("PUT", &reset(&p.id("dee")), &[powershell[0], ("Authorization", &bearer)], None).await;
    assert_eq!((r.status.as_u16(), r.body.len()), (200, 0), "{}", r.text());
    let events = reset_events(&server, &ada, "dee").await;
    assert_eq!((events[0]["actor"].as_str(), events[0]["source"].as_str()), (Some("ada"), Some("http:nps")));
    let logins = server.json("GET", "/api/v1/audit?q=auth.login", &ada, None).await.ok();
    assert_eq!(logins["events"][0]["source"], "http:nps");
    let login = format!("{{\r\n    \"Login\":  \"hal\",\r\n    \"Password\":  \"{PASSWORD}\"\r\n}}");

    // The correctly spelt `/signin2fa`, the code as a JSON string; a wrong code is a 401 ProblemDetails.
    let step = as_powershell_sees_it(&server.send("POST", "/signinBody", &[], Some(&login)).await);
    let bearer = format!("Bearer {step}");
    h.advance(30);
    let right = h.code(p.secret("hal").unwrap());
    let wrong = if right == "000000" { "111111" } else { "000000" };
    let r = server.send("POST", "/signin2fa", &[("Authorization", &bearer)], Some(&format!("\"{wrong}\""))).await;
    nps_problem(&r, 401, "Unauthorized", "/signin2fa");
    let r = server
        .send(
            "POST",
            "/signin2fa",
            &[("Authorization", &bearer), ("Content-Type", "application/json")],
            Some(&format!("\"{right}\"")),
        )
        .await;
    let hal = as_powershell_sees_it(&r);
    assert_eq!(server.json("GET", "/api/v1/me", &hal, None).await.ok()["name"], "hal");
    // A wrong password at signinBody.
    let r = server.send("POST", "/signinBody", &[], Some(r#"{"Login": "hal", "Password": "wrong"}"#)).await;
    nps_problem(&r, 401, "Unauthorized", "/signinBody");

    // 400 Error resetting MFA: nothing left to reset.
    let r = server.json("PUT", &reset(&p.id("eve")), &ada, None).await;
    let body = nps_problem(&r, 400, "Error resetting MFA", &reset(&p.id("eve")));
    assert_eq!(body["type"], "https://tools.ietf.org/html/rfc7231#section-6.5.1");
    // 403 User is not an Administrator.
    let r = server.send("PUT", &reset(&p.id("ada")), &[("Authorization", &format!("Bearer {hal}"))], None).await;
    let body = nps_problem(&r, 403, "User is not an Administrator", &reset(&p.id("ada")));
    assert_eq!(body["detail"], "only an Administrator (an Owner or Admin) can reset another user's MFA");
    assert_eq!(user(&h, "ada").mfa.as_str(), "enrolled");
    // An Administrator whom the role table refuses (an Admin resetting an Owner) is told so, not
    // that it is no Administrator.
    let r = server.send("PUT", &reset(&p.id("olga")), &[("Authorization", &key)], None).await;
    let body = nps_problem(&r, 403, "Role does not allow resetting this user", &reset(&p.id("olga")));
    assert_eq!(body["detail"], "an admin cannot reset the MFA of an owner");
    assert_eq!(user(&h, "olga").mfa.as_str(), "enrolled");
    // 404 User not found: unknown, another org's, malformed.
    for id in [Uuid::new_v4().to_string(), p.id("gina"), "not-a-uuid".to_string()] {
        let r = server.send("PUT", &reset(&id), &[("Authorization", &key)], None).await;
        nps_problem(&r, 404, "User not found", &reset(&id));
    }
    // 401 without a key, and with an unknown one.
    for headers in [vec![("Accept", "application/json")], vec![("Authorization", "API_KEY")]] {
        let r = server.send("PUT", &reset(&p.id("twin")), &headers, None).await;
        nps_problem(&r, 401, "Unauthorized", &reset(&p.id("twin")));
    }
    server.stop().await;
}

/// An RFC 7807 ProblemDetails as ASP.NET Core writes it (our request id as its one extension).
#[track_caller]
fn nps_problem(r: &Reply, status: u16, title: &str, path: &str) -> Value {
    assert_eq!(r.status.as_u16(), status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let body = r.json();
    assert_eq!(keys(&body), set(&["type", "title", "status", "detail", "instance", "request_id"]), "{body}");
    assert_eq!((body["title"].as_str(), body["status"].as_u64()), (Some(title), Some(u64::from(status))), "{body}");
    assert_eq!(body["instance"], path);
    assert!(body["type"].as_str().unwrap().starts_with("https://tools.ietf.org/html/rfc"), "{body}");
    assert!(!body["detail"].as_str().unwrap().is_empty());
    body
}

#[tokio::test]
async fn nps_sign_in_of_a_user_without_mfa_passes_the_second_step_unchanged() {
    let h = Harness::new();
    let p = people(&h, &[("ada", Role::Admin, false)]);
    let r = h.post("/signinBody", None, json!({"Login": "ada", "Password": PASSWORD})).await;
    let token: String = serde_json::from_value(r.ok()).unwrap();
    let r = h.call(Method::POST, "/signin2fa", Some(&token), None).await;
    assert_eq!(r.status, 400, "no code at all is still an error");
    let mut req = axum::http::Request::builder()
        .method("POST")
        .uri("/signin2fa")
        .header("authorization", format!("Bearer {token}"));
    req = req.header("content-type", "text/plain");
    let r = h.send(req.body(axum::body::Body::from("123456")).unwrap()).await;
    assert_eq!(serde_json::from_value::<String>(r.ok()).unwrap(), token);
    let r = h
        .call(Method::PUT, &format!("/api/v1/ManagedAccount/ResetMFA/{}", p.id("valentina")), Some(&token), None)
        .await;
    assert_eq!((r.status.as_u16(), r.body.len()), (200, 0));
}

// ------------------------------------------------------------------ switched off, documented, failing

#[tokio::test]
async fn a_vendor_switched_off_answers_404_and_leaves_the_document() {
    type Switch = fn(&mut Config);
    /// The vendor's tag, its switch, requests to its routes, and its documented paths.
    type Vendor<'a> = (&'a str, Switch, Vec<(&'a str, &'a str)>, &'a [&'a str]);
    let uuid = "67e55044-10b1-426f-9247-bb680e5fe0c8";
    let entryguard = format!("/api/v1/users/{uuid}/reset-mfa");
    let nps = format!("/api/v1/ManagedAccount/ResetMFA/{uuid}");
    let vendors: [Vendor; 4] = [
        ("Flashback", |c| c.compat.flashback = false, vec![("POST", "/mfa/reset")], &["/mfa/reset"]),
        ("EntryGuard", |c| c.compat.entryguard = false, vec![("POST", &entryguard)], &["/api/v1/users/{id}/reset-mfa"]),
        (
            "Resolver",
            |c| c.compat.resolver = false,
            vec![("PUT", "/user/users/mfa/reset"), ("PUT", "/user/org/mfa"), ("GET", "/user/users/me"), ("GET", "/user/users")],
            &["/user/users/mfa/reset", "/user/org/mfa", "/user/users/me", "/user/users"],
        ),
        (
            "Netwrix Privilege Secure",
            |c| c.compat.nps = false,
            vec![("PUT", &nps), ("POST", "/signinBody"), ("POST", "/signin2fa"), ("POST", "/sigin2fa")],
            &["/api/v1/ManagedAccount/ResetMFA/{id}", "/signinBody", "/signin2fa", "/sigin2fa"],
        ),
    ];
    let one_of_each = [
        ("POST", "/mfa/reset"),
        ("POST", entryguard.as_str()),
        ("PUT", "/user/users/mfa/reset"),
        ("PUT", nps.as_str()),
    ];
    for (name, off, routes, documented) in &vendors {
        let h = Harness::with(off);
        for (method, path) in routes {
            let r = h.call(method.parse().unwrap(), path, Some("some-token"), Some(json!({}))).await;
            r.problem(404);
        }
        // The other vendors still answer (401: no such token).
        for (method, path) in one_of_each {
            if !routes.iter().any(|(_, p)| *p == path) {
                let r = h.call(method.parse().unwrap(), path, Some("some-token"), Some(json!({}))).await;
                assert_eq!(r.status, 401, "{name} off: {path}");
            }
        }
        let doc = h.get("/openapi.json", None).await.ok();
        assert!(doc["tags"].as_array().unwrap().iter().all(|t| t["name"] != *name), "{name} still tagged");
        for path in *documented {
            assert!(doc["paths"].get(path).is_none(), "{path} still documented");
        }
    }
    let parsed = Config::parse("[compat]\nnps = false\n").unwrap();
    assert!(!parsed.compat.nps && parsed.compat.flashback && parsed.compat.entryguard && parsed.compat.resolver);
    assert!(Config::parse("[compat]\nokta = true\n").unwrap_err().contains("okta"));
}

#[tokio::test]
async fn every_compat_route_is_in_the_openapi_document_under_its_vendor() {
    let h = Harness::new();
    let doc = h.get("/openapi.json", None).await.ok();
    let expected = [
        ("/mfa/reset", "post", "Flashback", &["200", "403", "404", "500"][..]),
        ("/api/v1/users/{id}/reset-mfa", "post", "EntryGuard", &["200", "400", "401", "403", "404", "429", "500"]),
        ("/user/users/mfa/reset", "put", "Resolver", &["200", "400", "401", "403", "404"]),
        ("/user/org/mfa", "put", "Resolver", &["200", "403"]),
        ("/user/users/me", "get", "Resolver", &["200", "401"]),
        ("/user/users", "get", "Resolver", &["200", "400", "401"]),
        ("/api/v1/ManagedAccount/ResetMFA/{id}", "put", "Netwrix Privilege Secure", &["200", "400", "403", "404"]),
        ("/signinBody", "post", "Netwrix Privilege Secure", &["200", "401"]),
        ("/signin2fa", "post", "Netwrix Privilege Secure", &["200", "401"]),
        ("/sigin2fa", "post", "Netwrix Privilege Secure", &["200", "401"]),
    ];
    for (path, method, tag, statuses) in expected {
        let op = &doc["paths"][path][method];
        assert_eq!(op["tags"], json!([tag]), "{method} {path}: {op}");
        for status in statuses {
            assert!(op["responses"][status].is_object(), "{method} {path} lacks {status}");
        }
    }
    // Every documented compat operation is routed: without a token it answers 401 (or, for the
    // sign-in, 400 for the missing body), never "no route", 405 or 5xx.
    for (path, method, _, _) in expected {
        let uri = path.replace("{id}", &Uuid::new_v4().to_string());
        let r = h.call(method.to_uppercase().parse().unwrap(), &uri, None, None).await;
        let expected = if path == "/signinBody" { 400 } else { 401 };
        assert_eq!(r.status, expected, "{method} {path}: {}", r.text());
    }
    let nps = &doc["paths"]["/api/v1/ManagedAccount/ResetMFA/{id}"]["put"];
    assert!(nps["responses"]["403"]["description"].as_str().unwrap().starts_with("User is not an Administrator"), "{nps}");
    assert_eq!(doc["components"]["securitySchemes"]["nps_api_key"]["in"], "header");
    let tags: Vec<&str> = doc["tags"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    for tag in ["Flashback", "EntryGuard", "Resolver", "Netwrix Privilege Secure"] {
        assert!(tags.contains(&tag), "{tags:?}");
    }
}

/// A store whose commits fail on demand, as a full disk would.
struct FailingStore {
    inner: SledStore,
    fail: Arc<AtomicBool>,
}

impl Store for FailingStore {
    fn get_user(&self, id: Uuid) -> CoreResult<Option<User>> {
        self.inner.get_user(id)
    }
    fn user_id_by_name(&self, name: &str) -> CoreResult<Option<Uuid>> {
        self.inner.user_id_by_name(name)
    }
    fn user_id_by_email(&self, email: &str) -> CoreResult<Option<Uuid>> {
        self.inner.user_id_by_email(email)
    }
    fn user_id_by_number(&self, number: u64) -> CoreResult<Option<Uuid>> {
        self.inner.user_id_by_number(number)
    }
    fn scan_ids_by_name(&self, visit: &mut dyn FnMut(Uuid) -> bool) -> CoreResult<()> {
        self.inner.scan_ids_by_name(visit)
    }
    fn scan_users(&self, visit: &mut dyn FnMut(User) -> bool) -> CoreResult<()> {
        self.inner.scan_users(visit)
    }
    fn user_count(&self) -> CoreResult<usize> {
        self.inner.user_count()
    }
    fn user_count_bound(&self) -> CoreResult<usize> {
        self.inner.user_count_bound()
    }
    fn allocate_numbers(&self, count: u64) -> CoreResult<u64> {
        self.inner.allocate_numbers(count)
    }
    fn get_org(&self, key: &str) -> CoreResult<Option<Org>> {
        self.inner.get_org(key)
    }
    fn orgs(&self) -> CoreResult<Vec<Org>> {
        self.inner.orgs()
    }
    fn get_session(&self, hash: &TokenHash) -> CoreResult<Option<Session>> {
        self.inner.get_session(hash)
    }
    fn sessions_of(&self, user: Uuid) -> CoreResult<Vec<(TokenHash, Session)>> {
        self.inner.sessions_of(user)
    }
    fn touch_session(&self, hash: &TokenHash, seen: &Session, at: i64) -> CoreResult<()> {
        self.inner.touch_session(hash, seen, at)
    }
    fn scan_audit(&self, newest_first: bool, visit: &mut dyn FnMut(AuditEvent) -> bool) -> CoreResult<()> {
        self.inner.scan_audit(newest_first, visit)
    }
    fn audit_head(&self) -> CoreResult<Option<(u64, [u8; 32])>> {
        self.inner.audit_head()
    }
    fn count_sessions(&self, now: i64, counts: &dyn Fn(&Session) -> bool) -> CoreResult<u64> {
        self.inner.count_sessions(now, counts)
    }
    fn delete_expired_sessions(&self, now: i64, max: usize) -> CoreResult<usize> {
        self.inner.delete_expired_sessions(now, max)
    }
    fn set_audit_key(&self, key: mfadmin::domain::audit::ChainKey) {
        self.inner.set_audit_key(key)
    }
    fn begin_keyed_chain(&self, head: Option<(u64, [u8; 32])>, keyed_head: Option<[u8; 32]>) -> CoreResult<bool> {
        self.inner.begin_keyed_chain(head, keyed_head)
    }
    fn get_meta(&self, name: &str) -> CoreResult<Option<Vec<u8>>> {
        self.inner.get_meta(name)
    }
    fn check_indexes(&self) -> CoreResult<Vec<String>> {
        self.inner.check_indexes()
    }
    fn commit(&self, changes: &[Change]) -> CoreResult<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(Error::Storage("no space left on device".into()));
        }
        self.inner.commit(changes)
    }
    fn flush(&self) -> CoreResult<()> {
        self.inner.flush()
    }
}

#[tokio::test]
async fn a_store_that_cannot_write_gives_each_vendors_500() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config { data_dir: Some(dir.path().to_path_buf()), ..Default::default() };
    config.server.auth_rate_per_client = 0;
    config.server.auth_rate_per_account = 0;
    let fail = Arc::new(AtomicBool::new(false));
    let store = FailingStore { inner: SledStore::create(&config.store_dir()).unwrap(), fail: fail.clone() };
    let service = Service::new(Arc::new(store), mfadmin::auth::seal::Sealer::ephemeral(), config.policy()).unwrap();
    let time = Arc::new(AtomicI64::new(chrono::Utc::now().timestamp() / 30 * 30));
    let clock = {
        let time = time.clone();
        Clock::from_fn(move || time.load(Ordering::SeqCst))
    };
    let state = AppState::new(service, Settings::from_config(&config), clock);
    let h = Harness { app: router(state.clone()), dir, config, state, time };
    let p = people(&h, &[("ada", Role::Admin, false)]);
    let token = h.login("ada").await;
    fail.store(true, Ordering::SeqCst);

    let r = h.post("/mfa/reset", Some(&token), json!({"resetUserId": p.id("valentina")})).await;
    assert_eq!((r.status.as_u16(), r.json()), (500, json!({"success": false, "error": "Failed to reset MFA"})));

    let uri = format!("/api/v1/users/{}/reset-mfa", p.id("valentina"));
    let r = h.call(Method::POST, &uri, Some(&token), None).await;
    let expected = json!({"timestamp": rfc3339(h.now()), "status": 500, "error": "Internal Server Error", "message": "Server error occurred", "path": uri});
    assert_eq!((r.status.as_u16(), r.json()), (500, expected));

    let r = h.call(Method::PUT, "/user/users/mfa/reset", Some(&token), Some(json!({"ids": [1]}))).await;
    assert_eq!(r.status, 500);
    assert_eq!(keys(&r.json()), set(&["status", "error", "message"]));
    assert!(!r.text().contains("no space"), "the cause stays in the log: {}", r.text());

    // NPS lists no 500: a reset that could not be written is its 400 "Error resetting MFA".
    let r = h
        .call(Method::PUT, &format!("/api/v1/ManagedAccount/ResetMFA/{}", p.id("valentina")), Some(&token), None)
        .await;
    assert_eq!((r.status.as_u16(), r.json()["title"].as_str()), (400, Some("Error resetting MFA")));
    assert!(!r.text().contains("no space"), "{}", r.text());

    fail.store(false, Ordering::SeqCst);
    assert_eq!(user(&h, "valentina").mfa.as_str(), "enrolled", "nothing was written");
}

// ------------------------------------------------------------------ each vendor's minimum role

/// Log in through the router: password, then (for an enrolled user) a fresh code.
async fn login_oneshot(h: &Harness, username: &str, secret: Option<&[u8]>) -> String {
    let Some(secret) = secret else {
        return h.login(username).await;
    };
    h.advance(30);
    let step = h.post("/api/v1/auth/login", None, json!({"username": username, "password": PASSWORD})).await.ok();
    let session = h.post("/api/v1/auth/mfa", None, json!({"challenge": step["challenge"], "code": h.code(secret)})).await.ok();
    session["token"].as_str().unwrap().to_string()
}

/// A Helpdesk resets a Member through each vendor's route: (status, body) of each, in the order
/// Flashback, EntryGuard, Resolver, NPS; and whether each Member is still enrolled after.
async fn helpdesk_resets_members(h: &Harness) -> (Vec<(u16, Value)>, Vec<bool>) {
    h.add_org("Acme", false);
    h.add_user("Acme", "hal", Role::Helpdesk, true);
    let members: Vec<UserView> = (1..=4).map(|i| h.add_user("Acme", &format!("m{i}"), Role::Member, false)).collect();
    for m in &members {
        h.enroll(&m.username);
    }
    let hal = login_oneshot(h, "hal", None).await;
    let replies = [
        h.call(Method::POST, "/mfa/reset", Some(&hal), Some(json!({"resetUserId": members[0].id}))).await,
        h.call(Method::POST, &format!("/api/v1/users/{}/reset-mfa", members[1].id), Some(&hal), None).await,
        h.call(Method::PUT, "/user/users/mfa/reset", Some(&hal), Some(json!({"ids": [members[2].number]}))).await,
        h.call(Method::PUT, &format!("/api/v1/ManagedAccount/ResetMFA/{}", members[3].id), Some(&hal), None).await,
    ];
    let answers = replies.iter().map(|r| (r.status.as_u16(), if r.body.is_empty() { Value::Null } else { r.json() })).collect();
    let enrolled = members.iter().map(|m| user(h, &m.username).mfa.as_str() == "enrolled").collect();
    (answers, enrolled)
}

#[tokio::test]
async fn each_vendor_route_requires_its_documents_minimum_role_unless_told_to_use_ours() {
    // By default a Helpdesk is refused by all four, in each vendor's words, and no one is reset.
    let h = Harness::new();
    let (answers, enrolled) = helpdesk_resets_members(&h).await;
    assert_eq!(answers.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [403, 403, 403, 403], "{answers:?}");
    assert_eq!(answers[0].1["error"], "Insufficient permissions. OWNER or ADMINISTRATOR role required to reset another user's MFA.");
    assert_eq!(answers[1].1["message"], "User does not have ORG_ADMIN role");
    assert!(answers[2].1["message"].as_str().unwrap().contains("only Administrators"), "{}", answers[2].1);
    assert_eq!(answers[3].1["title"], "User is not an Administrator");
    assert_eq!(enrolled, [true, true, true, true]);
    // The refusals are audited as denials, with the vendor's rule as the reason.
    let denied = h.service().audit_list(&Harness::console(), &mfadmin::service::AuditQuery { text: Some("mfa.reset".into()), limit: Some(10), ..Default::default() }).unwrap();
    assert_eq!(denied.len(), 4);
    assert!(denied.iter().all(|e| e.outcome.as_str() == "denied" && e.actor == "hal"), "{denied:?}");

    // The rule is about resetting someone else: one's own reset is refused for its own reason
    // (it needs the current password, at /api/v1/me/mfa/reset), not for the role.
    h.add_user("Acme", "mel", Role::Member, true);
    let secret = h.enroll("mel");
    let mel = login_oneshot(&h, "mel", Some(&secret)).await;
    let r = h.call(Method::POST, "/mfa/reset", Some(&mel), None).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("current password") && !r.text().contains("ADMINISTRATOR"), "{}", r.text());

    // `[compat] role_table = "mfadmin"`: our role table alone, as before; a Helpdesk resets Members.
    let h = Harness::with(|c| c.compat.role_table = mfadmin::config::CompatRoles::Mfadmin);
    let (answers, enrolled) = helpdesk_resets_members(&h).await;
    assert_eq!(answers.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [200, 200, 200, 200], "{answers:?}");
    assert_eq!(enrolled, [false, false, false, false]);
}

#[test]
fn the_role_table_setting_reads_vendor_or_mfadmin_and_nothing_else() {
    let read = |text: &str| toml::from_str::<Config>(text).map(|c| c.compat.role_table);
    assert_eq!(read("").unwrap(), mfadmin::config::CompatRoles::Vendor);
    assert_eq!(read("[compat]\nrole_table = \"mfadmin\"").unwrap(), mfadmin::config::CompatRoles::Mfadmin);
    assert!(read("[compat]\nrole_table = \"lenient\"").unwrap_err().to_string().contains("unknown variant"));
}

// ------------------------------------------------------------------ Resolver's user list

#[tokio::test]
async fn resolver_lists_the_orgs_users_by_number_and_says_who_an_api_key_is() {
    let h = Harness::new();
    let p = people(&h, &[("ada", Role::Admin, false), ("mo", Role::Member, false), ("hal", Role::Helpdesk, false)]);
    h.service().set_status(&Harness::console(), "mo", mfadmin::domain::user::Status::Disabled, h.now()).unwrap();
    let ada = h.login("ada").await;

    // Every user of the caller's org, by number, with the fields of Resolver's User Management.
    let r = h.get("/user/users", Some(&ada)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let users = r.json();
    let listed = users.as_array().unwrap();
    let numbers: Vec<u64> = listed.iter().map(|u| u["id"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [1, p.number("ada"), p.number("mo"), p.number("hal")], "Acme's, never Globex's gina: {users}");
    assert_eq!(keys(&listed[0]), set(&["id", "firstName", "lastName", "email", "lastLogin", "enabled", "admin"]));
    let by_number = |n: u64| listed.iter().find(|u| u["id"] == n).unwrap().clone();
    assert_eq!(by_number(1)["email"], "valentina@acme.example");
    assert_eq!((by_number(p.number("mo"))["enabled"].as_bool(), by_number(p.number("mo"))["admin"].as_bool()), (Some(false), Some(false)));
    assert_eq!(by_number(p.number("ada"))["admin"], true);
    assert!(by_number(p.number("ada"))["lastLogin"].is_string(), "ada just logged in");
    assert!(by_number(1)["lastLogin"].is_null());

    // A set of users by id: numbers or UUIDs; other orgs' ids are left out.
    let uri = format!("/user/users?ids=1,{}&ids={}", p.id("hal"), p.number("gina"));
    let picked: Vec<u64> = h.get(&uri, Some(&ada)).await.ok().as_array().unwrap().iter().map(|u| u["id"].as_u64().unwrap()).collect();
    assert_eq!(picked, [1, p.number("hal")]);
    let r = h.get("/user/users?ids=alice", Some(&ada)).await;
    assert_eq!((r.status.as_u16(), r.json()["status"].as_u64()), (400, Some(400)));
    assert!(r.json()["message"].as_str().unwrap().contains("Not a user id: alice"));
    assert_eq!(h.get("/user/users?limit=5", Some(&ada)).await.status, 400);
    assert_eq!(h.get("/user/users", None).await.status, 401);
    // A Member sees itself alone.
    let mel = {
        h.add_user("Acme", "mel", Role::Member, true);
        h.login("mel").await
    };
    let mine = h.get("/user/users", Some(&mel)).await.ok();
    assert_eq!(mine.as_array().unwrap().len(), 1);
    assert_eq!(mine[0]["email"], "mel@acme.example");

    // `me` answers for an API key with the user who created it.
    let key = h.post("/api/v1/apikeys", Some(&ada), json!({"name": "resolver-script", "role": "helpdesk"})).await.ok();
    let key = key["key"].as_str().unwrap();
    let me = h.get("/user/users/me", Some(key)).await.ok();
    assert_eq!((me["username"].as_str(), me["number"].as_u64()), (Some("ada"), Some(p.number("ada"))));
    assert_eq!(h.get("/user/users/me", Some(&ada)).await.ok()["username"], "ada");
}
