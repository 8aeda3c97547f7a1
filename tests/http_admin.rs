//! The native routes that remote mode's CLI needs beyond the console's: add a user, set a
//! password, import CSV, add an org, export the audit log; and the audit source a client names.
//! Through the router (`oneshot`), on a real service and temporary store.

mod http_support;

use axum::body::Body;
use axum::http::{Method, Request};
use http_support::{Harness, Reply, PASSWORD};
use mfadmin::domain::role::Role;
use mfadmin::service::AuditQuery;
use serde_json::{json, Value};

/// Acme with an owner and a helpdesk who log in without MFA; Globex beside it.
fn acme() -> Harness {
    let h = Harness::new();
    h.add_org("Acme", false);
    h.add_org("Globex", false);
    h.add_user("Acme", "oz", Role::Owner, true);
    h.add_user("Acme", "hd", Role::Helpdesk, true);
    h.add_user("Globex", "gus", Role::Member, false);
    h
}

async fn csv(h: &Harness, query: &str, token: &str, content_type: &str, body: &str) -> Reply {
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("/api/v1/users/import{query}"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", content_type)
        .body(Body::from(body.to_string()))
        .unwrap();
    h.send(req).await
}

fn newest_event(h: &Harness) -> mfadmin::service::AuditView {
    let events = h.service().audit_list(&Harness::console(), &AuditQuery { text: None, limit: Some(1), ..Default::default() }).unwrap();
    events.into_iter().next().expect("an audit event")
}

#[tokio::test]
async fn add_a_user_and_set_a_password() {
    let h = acme();
    let oz = h.login("oz").await;
    let hd = h.login("hd").await;

    let r = h
        .post("/api/v1/users", Some(&oz), json!({"username": "bob", "email": "bob@acme.example", "org": "Acme", "password": PASSWORD}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let bob = r.json();
    assert_eq!((bob["username"].as_str(), bob["display_name"].as_str(), bob["role"].as_str()), (Some("bob"), Some("bob"), Some("member")));
    assert_eq!(r.header("location"), Some(format!("/api/v1/users/{}", bob["id"].as_str().unwrap()).as_str()));
    assert!(bob.get("password").is_none() && !r.text().contains(PASSWORD), "{bob}");
    assert_eq!(h.get(r.header("location").unwrap(), Some(&oz)).await.ok()["username"], "bob");
    let event = newest_event(&h);
    assert_eq!((event.actor.as_str(), event.action.as_str(), event.source.as_str()), ("oz", "user.add", "http"));

    // Refusals: the same rules as everywhere, as problems.
    let body = |name: &str, role: &str, org: &str| json!({"username": name, "email": format!("{name}@x.example"), "role": role, "org": org});
    let p = h.post("/api/v1/users", Some(&oz), body("bob", "member", "Acme")).await.problem(409);
    assert!(p["detail"].as_str().unwrap().contains("already taken"), "{p}");
    h.post("/api/v1/users", Some(&hd), body("boss", "admin", "Acme")).await.problem(403);
    h.post("/api/v1/users", Some(&oz), body("far", "member", "Globex")).await.problem(404);
    h.post("/api/v1/users", Some(&oz), json!({"username": "x y", "email": "x@x.example", "org": "Acme"})).await.problem(400);
    h.post("/api/v1/users", Some(&oz), json!({"username": "eve", "email": "eve@x.example"})).await.problem(422);
    h.post("/api/v1/users", Some(&oz), json!({"username": "eve", "email": "eve@x.example", "org": "Acme", "admin": true})).await.problem(422);
    h.post("/api/v1/users", None, body("eve", "member", "Acme")).await.problem(401);

    // The password: set by the owner, then bob logs in with it (and no longer with the old one).
    let set = |who: &str, token: &str, password: &str| {
        let (who, token, password) = (who.to_string(), token.to_string(), password.to_string());
        let h = &h;
        async move { h.call(Method::PUT, &format!("/api/v1/users/{who}/password"), Some(&token), Some(json!({"password": password}))).await }
    };
    let r = set("bob", &oz, "a brand new passphrase").await;
    assert_eq!(r.status, 204, "{}", r.text());
    let login = h.post("/api/v1/auth/login", None, json!({"username": "bob", "password": "a brand new passphrase"})).await.ok();
    assert_eq!(login["status"], "done", "{login}");
    h.post("/api/v1/auth/login", None, json!({"username": "bob", "password": PASSWORD})).await.problem(401);
    set("bob", &oz, "short").await.problem(400);
    set("oz", &hd, "a brand new passphrase").await.problem(403);
    set("gus", &oz, "a brand new passphrase").await.problem(404);
}

#[tokio::test]
async fn import_csv_all_or_nothing_checked_or_skipping() {
    let h = acme();
    let oz = h.login("oz").await;
    let header = "username,email,display_name,role,org\n";
    let good = format!("{header}ann,ann@acme.example,Ann,member,Acme\nben,ben@acme.example,Ben,auditor,Acme\n");
    let bad = format!("{header}cat,cat@acme.example,Cat,member,Acme\ndan,dan@acme.example,Dan,wizard,Acme\neve,,Eve,member,Acme\n");
    let users = |h: &Harness| h.service().store().user_count().unwrap();
    let before = users(&h);

    let report = csv(&h, "?check_only=true", &oz, "text/csv", &good).await.ok();
    assert_eq!(report, json!({"check_only": true, "imported": 2, "skipped": []}));
    assert_eq!(users(&h), before, "a check writes nothing");
    let report = csv(&h, "", &oz, "text/csv; charset=utf-8", &good).await.ok();
    assert_eq!(report, json!({"check_only": false, "imported": 2, "skipped": []}));
    assert_eq!(users(&h), before + 2);

    // A bad row: nothing is imported, and the problem names every bad row by line and column.
    let p = csv(&h, "", &oz, "text/csv", &bad).await.problem(400);
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("nothing was imported") && detail.contains("line 3, column role") && detail.contains("line 4, column email"), "{detail}");
    assert_eq!(users(&h), before + 2);
    let report = csv(&h, "?skip_invalid=true", &oz, "text/csv", &bad).await.ok();
    assert_eq!((report["imported"].as_u64(), report["skipped"].as_array().unwrap().len()), (Some(1), 2), "{report}");
    assert_eq!(report["skipped"][0], json!({"line": 3, "column": "role", "message": "unknown role \"wizard\": expected one of owner, admin, helpdesk, auditor, member"}));
    assert_eq!(users(&h), before + 3);

    // The body: CSV only, within the import's limit.
    let p = csv(&h, "", &oz, "application/json", &good).await.problem(415);
    assert!(p["detail"].as_str().unwrap().contains("text/csv"), "{p}");
    csv(&h, "?check_only=maybe", &oz, "text/csv", &good).await.problem(400);
    csv(&h, "?dry_run=true", &oz, "text/csv", &good).await.problem(400);
    csv(&h, "", "not-a-token", "text/csv", &good).await.problem(401);
    csv(&h, "", &oz, "text/csv", "").await.problem(400);
}

#[tokio::test]
async fn an_import_larger_than_the_limit_is_refused_with_what_to_do() {
    let h = Harness::with(|c| c.server.bulk_body_limit_bytes = 2048);
    h.add_org("Acme", false);
    h.add_user("Acme", "oz", Role::Owner, true);
    let oz = h.login("oz").await;
    let mut big = String::from("username,email,display_name,role,org\n");
    for i in 0..100 {
        big.push_str(&format!("u{i},u{i}@acme.example,U {i},member,Acme\n"));
    }
    let p = csv(&h, "", &oz, "text/csv", &big).await.problem(413);
    assert!(p["detail"].as_str().unwrap().contains("2048 bytes") && p["detail"].as_str().unwrap().contains("split"), "{p}");
    assert!(h.service().resolve("u0").unwrap().is_none());
    // The import's own limit is the bulk one, above the default body limit of other routes.
    let small: String = big.lines().take(40).map(|l| format!("{l}\n")).collect();
    assert!(small.len() > 1024 && small.len() < 2048);
    let h2 = Harness::with(|c| {
        c.server.body_limit_bytes = 1024;
        c.server.bulk_body_limit_bytes = 2048;
    });
    h2.add_org("Acme", false);
    h2.add_user("Acme", "oz", Role::Owner, true);
    let oz2 = h2.login("oz").await;
    assert_eq!(csv(&h2, "", &oz2, "text/csv", &small).await.ok()["imported"], 39);
}

#[tokio::test]
async fn an_org_is_added_only_by_the_console_operator() {
    let h = acme();
    let oz = h.login("oz").await;
    let p = h.post("/api/v1/orgs", Some(&oz), json!({"name": "Initech", "mfa_enforced": true})).await.problem(403);
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("console operator") && detail.contains("mfadmin org add"), "{detail}");
    let orgs = h.get("/api/v1/orgs", Some(&oz)).await.ok();
    assert_eq!(orgs["orgs"].as_array().unwrap().len(), 1, "{orgs}");
    assert!(h.service().store().get_org("initech").unwrap().is_none(), "nothing was created");
    h.post("/api/v1/orgs", Some(&oz), json!({"title": "Initech"})).await.problem(422);
}

#[tokio::test]
async fn the_audit_export_streams_every_event_the_caller_may_read() {
    let h = acme();
    let oz = h.login("oz").await;
    let hd = h.login("hd").await;
    let r = h.get("/api/v1/audit/export", Some(&oz)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(r.header("content-disposition"), Some("attachment; filename=\"audit.jsonl\""));
    let lines: Vec<Value> = r.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let listed = h.get("/api/v1/audit?limit=1000", Some(&oz)).await.ok();
    let mut listed = listed["events"].as_array().unwrap().clone();
    listed.reverse();
    assert_eq!(lines, listed, "every event of the owner's org, oldest first");
    assert!(lines.iter().all(|e| e["org"] == "acme") && lines.len() >= 4, "{lines:?}");

    let r = h.get("/api/v1/audit/export?format=csv", Some(&oz)).await;
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    let text = r.text();
    assert!(text.starts_with("seq,at,actor,action,target,target_id,org,outcome,reason,detail,source,prev_hash,hash\n"), "{text}");
    assert_eq!(csv::Reader::from_reader(text.as_bytes()).records().count(), lines.len());

    let p = h.get("/api/v1/audit/export", Some(&hd)).await.problem(403);
    assert!(p["detail"].as_str().unwrap().contains("cannot read the audit log"), "{p}");
    h.get("/api/v1/audit/export?format=xml", Some(&oz)).await.problem(400);
    h.get("/api/v1/audit/export", None).await.problem(401);
}

#[tokio::test]
async fn our_console_and_cli_name_their_audit_source_and_nothing_else_is_taken() {
    let h = acme();
    let oz = h.login("oz").await;
    let disable = |client: Option<&str>, status: &str| {
        let mut req = Request::builder()
            .method(Method::PUT)
            .uri("/api/v1/users/hd/status")
            .header("authorization", format!("Bearer {oz}"))
            .header("content-type", "application/json");
        if let Some(c) = client {
            req = req.header(mfadmin::http::extract::CLIENT_HEADER, c);
        }
        req.body(Body::from(json!({"status": status}).to_string())).unwrap()
    };
    // oz's session comes from a login without the header: the console's label is only claimed.
    for (client, source) in [
        (Some("tui"), "http:tui?"),
        (Some("cli"), "http:cli?"),
        (None, "http"),
        (Some("TUI"), "http"),
        (Some("cli "), "http"),
        (Some("http:flashback"), "http"),
        (Some("console"), "http"),
    ] {
        let (status, action) = if newest_event(&h).action == "user.disable" { ("active", "user.enable") } else { ("disabled", "user.disable") };
        h.send(disable(client, status)).await.ok();
        let event = newest_event(&h);
        assert_eq!((event.action.as_str(), event.source.as_str()), (action, source), "{client:?}: {event:?}");
    }
    // The login steps too.
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/auth/login")
        .header("content-type", "application/json")
        .header(mfadmin::http::extract::CLIENT_HEADER, "tui")
        .body(Body::from(json!({"username": "oz", "password": PASSWORD}).to_string()))
        .unwrap();
    h.send(req).await.ok();
    let event = newest_event(&h);
    assert_eq!((event.actor.as_str(), event.source.as_str()), ("oz", "http:tui"), "{event:?}");
}

#[tokio::test]
async fn a_user_named_like_a_route_is_still_reachable_by_name() {
    let h = acme();
    let oz = h.login("oz").await;
    let r = h.post("/api/v1/users", Some(&oz), json!({"username": "import", "email": "import@acme.example", "org": "Acme"})).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(h.get("/api/v1/users/import/detail", Some(&oz)).await.ok()["user"]["username"], "import");
    let r = h.call(Method::PUT, "/api/v1/users/import/password", Some(&oz), Some(json!({"password": "a brand new passphrase"}))).await;
    assert_eq!(r.status, 204, "{}", r.text());
}
