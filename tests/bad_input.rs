//! Bad input over HTTP: generated bodies for every route with a body (native and compatible,
//! through the router with `oneshot`) never get a 5xx; oversized and deeply nested bodies get a
//! clear 4xx; a client slow to send its headers is disconnected and one slow to send its body gets
//! 408 (a real server on 127.0.0.1:0).
//!
//! cargo-fuzz needs a nightly toolchain this project's machines cannot fetch; these proptest
//! targets stand in for it. `PROPTEST_CASES` sets the cases per route (default here: 48).

mod figures;
mod http_support;

use axum::body::Body;
use axum::http::{Method, Request};
use http_support::Harness;
use mfadmin::domain::role::Role;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Every route that takes a body, from `/openapi.json`, with its path parameters filled in.
fn body_routes(h: &Harness, rt: &tokio::runtime::Runtime, user: &str) -> Vec<(Method, String)> {
    let doc = rt.block_on(h.get("/openapi.json", None)).ok();
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["post", "put", "patch"] {
            if item.get(method).is_some() {
                let path = path.replace("{id}", user).replace("{org}", "Acme");
                out.push((method.to_uppercase().parse().unwrap(), path));
            }
        }
    }
    assert!(out.len() >= 15, "{out:?}");
    out
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        "\\PC{0,40}".prop_map(Value::String),
        prop_oneof![Just("ids"), Just("reason"), Just("username"), Just("code"), Just("resetUserId"), Just("challenge")]
            .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("ids".to_string()),
                    Just("reason".to_string()),
                    Just("dry_run".to_string()),
                    Just("username".to_string()),
                    Just("password".to_string()),
                    Just("code".to_string()),
                    Just("challenge".to_string()),
                    Just("enforced".to_string()),
                    Just("isMfaEnforced".to_string()),
                    Just("resetUserId".to_string()),
                    Just("name".to_string()),
                    Just("role".to_string()),
                    "[a-zA-Z]{1,8}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn generated_bodies_on_every_route_never_get_a_5xx() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let h = Harness::new();
    h.add_org("Acme", false);
    h.add_user("Acme", "root", Role::Owner, true);
    let member = h.add_user("Acme", "mem", Role::Member, false);
    h.enroll("mem");
    let token = rt.block_on(h.login("root"));
    let routes = body_routes(&h, &rt, &member.id.to_string());
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(48u32);
    let sent = AtomicUsize::new(0);
    for (method, path) in &routes {
        let config = ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() };
        let mut runner = proptest::test_runner::TestRunner::new(config);
        let strategy = (json_value(), prop::collection::vec(any::<u8>(), 0..64), any::<u8>());
        runner
            .run(&strategy, |(value, bytes, pick)| {
                // The token is revoked by some bodies (a reset of the caller): make a fresh one sometimes.
                let body = if pick % 4 == 0 { bytes } else { value.to_string().into_bytes() };
                let mut req = Request::builder().method(method.clone()).uri(path.as_str()).header("content-type", "application/json");
                if pick % 8 != 0 {
                    req = req.header("authorization", format!("Bearer {token}"));
                }
                let reply = rt.block_on(h.send(req.body(Body::from(body.clone())).unwrap()));
                sent.fetch_add(1, Ordering::Relaxed);
                prop_assert!(
                    !reply.status.is_server_error(),
                    "{method} {path} with {:?} answered {}: {}",
                    String::from_utf8_lossy(&body),
                    reply.status,
                    reply.text()
                );
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{e}"));
        h.advance(30);
    }
    figures::report(&format!("bad input: {} generated bodies over {} routes, no 5xx", sent.load(Ordering::Relaxed), routes.len()));
}

#[tokio::test]
async fn oversized_and_deeply_nested_bodies_get_a_clear_4xx_on_every_route() {
    let h = Harness::new();
    h.add_org("Acme", false);
    h.add_user("Acme", "root", Role::Owner, true);
    let member = h.add_user("Acme", "mem", Role::Member, false);
    let token = h.login("root").await;
    let doc = h.get("/openapi.json", None).await.ok();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let huge = format!("{{\"reason\": \"{}\"}}", "x".repeat(2 << 20));
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["post", "put"] {
            let Some(op) = item.get(method) else { continue };
            if path == "/api/v1/auth/logout" {
                continue; // takes no body, and would end the session the next routes use
            }
            let reads_body = op.get("requestBody").is_some();
            let path = path.replace("{id}", &member.id.to_string()).replace("{org}", "Acme");
            for (what, body) in [("deep", &deep), ("huge", &huge)] {
                let req = Request::builder()
                    .method(method.to_uppercase().as_str())
                    .uri(path.as_str())
                    .header("content-type", "application/json")
                    .header("authorization", format!("Bearer {token}"))
                    .body(Body::from(body.clone()))
                    .unwrap();
                let reply = h.send(req).await;
                let s = reply.status.as_u16();
                assert!(s < 500 && (!reads_body || s >= 400), "{what} body on {method} {path}: {s} {}", reply.text());
                if what == "huge" && reads_body {
                    assert_eq!(s, 413, "{method} {path}: {}", reply.text());
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 30, "{checked}");
}

/// `mfadmin::http::run` on 127.0.0.1:0 with short timeouts.
async fn short_timeout_server() -> (Harness, std::net::SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let h = Harness::with(|c| {
        c.server.header_read_timeout_seconds = 1;
        c.server.request_timeout_seconds = 2;
    });
    h.add_org("Acme", false);
    h.add_user("Acme", "root", Role::Owner, true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(mfadmin::http::run(listener, h.state.clone(), async move { let _ = stopped.await; }, Duration::from_secs(5)));
    (h, addr, stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (h, addr, stop, task) = short_timeout_server().await;

    // Headers that never finish: the server closes the connection after the header timeout.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n").await.unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "a client that never finishes its headers keeps its connection");
    // Nothing at all after connecting: the same.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), silent.read_to_end(&mut Vec::new())).await;
    assert!(closed.is_ok(), "a silent client keeps its connection");

    // A body that never finishes: 408 after the request timeout.
    let login = b"{\"username\": \"root\", \"password\": ";
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = "POST /api/v1/auth/login HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(login).await.unwrap();
    let mut raw = Vec::new();
    let answered = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw)).await;
    assert!(answered.is_ok(), "a client that never finishes its body keeps its connection");
    let reply = http_support::parse_response(&raw);
    assert_eq!(reply.status.as_u16(), 408, "{}", reply.text());

    // A kept-alive connection that goes quiet after its first request: closed too.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), idle.read_to_end(&mut Vec::new())).await;
    assert!(closed.is_ok(), "an idle kept-alive connection stays open");

    // Meanwhile, and afterwards, everyone else is served.
    let ok = http_support::http(addr, "GET", "/healthz", &[], None).await;
    assert_eq!(ok.status.as_u16(), 200);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(20), task).await.unwrap().unwrap().unwrap();
    drop(h);
}
