//! What the HTTP tests share: a real service on a temporary store, the router over it, a clock the
//! tests move, and small helpers to call the router (`oneshot`) or a real socket.
#![allow(dead_code)]

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use mfadmin::app::Context;
use mfadmin::config::Config;
use mfadmin::domain::role::Role;
use mfadmin::domain::user::UserView;
use mfadmin::app::Clock;
use mfadmin::http::{router, AppState, Settings};
use mfadmin::service::{Actor, NewUser, Service};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use tower::ServiceExt as _;

pub const PASSWORD: &str = "correct horse battery";

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub config: Config,
    pub state: Arc<AppState>,
    pub app: Router,
    pub time: Arc<AtomicI64>,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {}", self.status, String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Assert this is a problem+json with `status`, and return its body.
    #[track_caller]
    pub fn problem(&self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "expected {status}, got {}: {}", self.status, self.text());
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "{}", self.text());
        let p = self.json();
        assert_eq!(p["status"], status, "{p}");
        for field in ["type", "title", "detail", "instance", "request_id"] {
            assert!(p[field].is_string(), "problem lacks {field}: {p}");
        }
        assert_eq!(Some(p["request_id"].as_str().unwrap()), self.header("x-request-id"));
        p
    }

    #[track_caller]
    pub fn ok(&self) -> Value {
        assert!(self.status.is_success(), "expected success, got {}: {}", self.status, self.text());
        if self.body.is_empty() { Value::Null } else { self.json() }
    }
}

/// The start of a TOTP step, near today, so tests know which step a code belongs to.
fn aligned_now() -> i64 {
    let t = chrono::Utc::now().timestamp();
    t - t % 30
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with(|_| {})
    }

    /// A harness whose config `tune` adjusts first.
    pub fn with(tune: impl FnOnce(&mut Config)) -> Harness {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = Config { data_dir: Some(dir.path().to_path_buf()), ..Default::default() };
        // Other tests rate-limit on purpose; most would only trip over it.
        config.server.auth_rate_per_client = 0;
        config.server.auth_rate_per_account = 0;
        // Tests read /metrics as an observer; the tests of its protection turn this off.
        config.server.metrics_public = true;
        tune(&mut config);
        let service = Context { config: config.clone() }.create_service().expect("a new store");
        let time = Arc::new(AtomicI64::new(aligned_now()));
        let clock = {
            let time = time.clone();
            Clock::from_fn(move || time.load(Ordering::SeqCst))
        };
        let state = AppState::new(service, Settings::from_config(&config), clock);
        let app = router(state.clone());
        Harness { dir, config, state, app, time }
    }

    pub fn service(&self) -> &Service {
        self.state.service()
    }

    pub fn now(&self) -> i64 {
        self.time.load(Ordering::SeqCst)
    }

    /// Move the clock on (to the next TOTP step, for a fresh code).
    pub fn advance(&self, secs: i64) {
        self.time.fetch_add(secs, Ordering::SeqCst);
    }

    pub fn console() -> Actor {
        Actor::console("test")
    }

    pub fn add_org(&self, name: &str, enforced: bool) {
        self.service().add_org(&Self::console(), name, enforced, self.now()).expect("add org");
    }

    /// A user; with a password when `login` is true (hashing costs time, so only for actors).
    pub fn add_user(&self, org: &str, username: &str, role: Role, login: bool) -> UserView {
        let new = NewUser {
            username: username.into(),
            email: format!("{username}@{}.example", org.to_lowercase()),
            display_name: username.into(),
            role,
            org: org.into(),
            password: login.then(|| PASSWORD.to_string()),
        };
        self.service().add_user(&Self::console(), new, self.now()).expect("add user")
    }

    /// Enroll `username` as the console would, returning the TOTP secret.
    pub fn enroll(&self, username: &str) -> Vec<u8> {
        let e = self.service().begin_enrollment(&Self::console(), username, "test", self.now()).expect("begin");
        let secret = secret_of(&e.secret_base32);
        self.service().confirm_enrollment(&Self::console(), username, &self.code(&secret), self.now()).expect("confirm");
        secret
    }

    pub fn code(&self, secret: &[u8]) -> String {
        mfadmin::auth::totp::code_at(secret, self.now() as u64)
    }

    pub async fn send(&self, req: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(req).await.expect("the router answers");
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, 64 << 20).await.expect("a body").to_vec();
        Reply { status: parts.status, headers: parts.headers, body }
    }

    pub async fn call(&self, method: Method, uri: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req.header("content-type", "application/json").body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        };
        self.send(req.unwrap()).await
    }

    pub async fn get(&self, uri: &str, token: Option<&str>) -> Reply {
        self.call(Method::GET, uri, token, None).await
    }

    pub async fn post(&self, uri: &str, token: Option<&str>, body: Value) -> Reply {
        self.call(Method::POST, uri, token, Some(body)).await
    }

    /// Log in a user without MFA and return the session token.
    pub async fn login(&self, username: &str) -> String {
        let r = self.post("/api/v1/auth/login", None, json!({"username": username, "password": PASSWORD})).await;
        let body = r.ok();
        assert_eq!(body["status"], "done", "{body}");
        body["token"].as_str().unwrap().to_string()
    }
}

pub fn secret_of(base32: &str) -> Vec<u8> {
    totp_rs::Secret::try_from_base32(base32).expect("base32 secret").to_vec()
}

/// A minimal HTTP/1.1 client for the tests against a real socket: one request per connection.
pub async fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Reply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("content-type: application/json\r\ncontent-length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> Reply {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let code: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = HeaderMap::new();
    for line in lines {
        let (k, v) = line.split_once(':').unwrap();
        headers.append(
            axum::http::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
            v.trim().parse().unwrap(),
        );
    }
    let mut body = raw[split + 4..].to_vec();
    if headers.get("transfer-encoding").is_some_and(|v| v == "chunked") {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[eol + 2 + size + 2..];
        }
        body = out;
    }
    Reply { status: StatusCode::from_u16(code).unwrap(), headers, body }
}
