//! `mfadmin serve`: the admin operations over HTTP, calling the same service as the CLI and TUI.
//!
//! [`router`] builds the whole application from an [`AppState`]; [`run`] serves it on a listener
//! until a shutdown signal, then flushes the store; [`serve`] is the command.

pub mod backup;
pub mod compat;
pub mod conn;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod native;
pub mod openapi;
pub mod ops;
pub mod ratelimit;
pub mod socket;
pub mod system;
pub mod validate;

use crate::app::{Clock, Context};
use crate::config::{CompatConfig, Config, IpRange, LogFormat};
use crate::domain::Timestamp;
use crate::service::Service;
use anyhow::Context as _;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use error::{ApiError, Problem};
use metrics::Metrics;
use ratelimit::AuthLimits;
use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument as _;
use utoipa_swagger_ui::SwaggerUi;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What the server needs from the config besides the service.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The issuer shown in authenticator apps.
    pub issuer: String,
    pub body_limit_bytes: usize,
    pub bulk_body_limit_bytes: usize,
    pub auth_rate_per_client: u32,
    pub auth_rate_per_account: u32,
    /// Which vendors' compatible routes are served.
    pub compat: CompatConfig,
    /// The second-factor checks for other systems (`/validate/check`).
    pub validate: crate::config::ValidateConfig,
    /// How long a client may take to send a request's headers, and to have a request answered.
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    /// How long a request's body may take to arrive, from its headers.
    pub body_read_timeout: Duration,
    /// Open connections from one client address (0: no cap).
    pub max_connections_per_client: usize,
    /// The wait of a login attempt for an account or address that failed too often.
    pub auth_soft_delay: Duration,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpRange>,
    /// `Host` names accepted (lower case, without port); `None`: any.
    pub allowed_hosts: Option<Vec<String>>,
    pub metrics_public: bool,
    /// Where a backup asked for over HTTP is written before it is sent (the data directory: on
    /// disk, never whole in memory).
    pub spool_dir: std::path::PathBuf,
}

impl Settings {
    pub fn from_config(config: &Config) -> Settings {
        Settings {
            issuer: config.totp.issuer.clone(),
            body_limit_bytes: config.server.body_limit_bytes,
            bulk_body_limit_bytes: config.server.bulk_body_limit_bytes,
            auth_rate_per_client: config.server.auth_rate_per_client,
            auth_rate_per_account: config.server.auth_rate_per_account,
            compat: config.compat,
            validate: config.validate.clone(),
            header_read_timeout: Duration::from_secs(config.server.header_read_timeout_seconds),
            request_timeout: Duration::from_secs(config.server.request_timeout_seconds),
            body_read_timeout: Duration::from_secs(config.server.body_read_timeout_seconds),
            max_connections_per_client: config.server.max_connections_per_client,
            auth_soft_delay: Duration::from_millis(config.server.auth_soft_delay_ms),
            // Checked when the config was read.
            trusted_proxies: config.server.trusted_proxies.iter().filter_map(|p| IpRange::parse(p).ok()).collect(),
            allowed_hosts: allowed_hosts(&config.server),
            metrics_public: config.server.metrics_public,
            spool_dir: config.data_dir(),
        }
    }
}

/// The `Host` names to accept: those configured, else the listen address and the loopback names.
fn allowed_hosts(server: &crate::config::ServerConfig) -> Option<Vec<String>> {
    if server.allowed_hosts.iter().any(|h| h.trim() == "*") {
        return None;
    }
    let mut names: Vec<String> = server.allowed_hosts.iter().map(|h| host_name(h).to_string()).collect();
    if names.is_empty() {
        names = ["localhost", "127.0.0.1", "[::1]"].map(str::to_string).to_vec();
        let listen = host_name(&server.listen);
        if !names.contains(&listen) {
            names.push(listen);
        }
    }
    names.retain(|n| !n.is_empty());
    Some(names)
}

/// The host part of `host[:port]` or `[v6]:port`, lower case.
pub fn host_name(authority: &str) -> String {
    let authority = authority.trim();
    let host = if authority.starts_with('[') {
        authority.find(']').map_or(authority, |end| &authority[..=end])
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => authority,
        }
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Everything a request can reach: the service, the settings, the clock, metrics and rate limits.
#[derive(Debug)]
pub struct AppState {
    service: Arc<Service>,
    pub settings: Settings,
    pub clock: Clock,
    pub metrics: Metrics,
    pub limits: AuthLimits,
    pub validate: validate::ValidateSettings,
    /// Password hashing (argon2, ~20 ms of CPU each) runs under these permits, one fewer than the
    /// cores, so a storm of logins cannot take every core from listing and resets.
    hashing: tokio::sync::Semaphore,
    /// Set once the user directory has been read (`/readyz`).
    directory_ready: std::sync::atomic::AtomicBool,
    /// How the scheduled backups are going (`/readyz`, `/metrics`).
    pub backups: Arc<crate::backup_schedule::BackupStatus>,
}

impl AppState {
    pub fn new(service: Service, settings: Settings, clock: Clock) -> Arc<AppState> {
        let limits = AuthLimits::new(settings.auth_rate_per_client, settings.auth_rate_per_account, settings.auth_soft_delay);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let hashing = tokio::sync::Semaphore::new(cores.saturating_sub(1).max(1));
        let validate = validate::ValidateSettings::from_config(&settings.validate);
        Arc::new(AppState {
            service: Arc::new(service),
            settings,
            clock,
            metrics: Metrics::default(),
            limits,
            validate,
            hashing,
            directory_ready: Default::default(),
            backups: Default::default(),
        })
    }

    /// Read the user directory now (blocking), so the first listing need not; `/readyz` answers
    /// 200 from then on.
    pub fn warm_directory(&self) -> crate::error::Result<()> {
        self.service.warm_directory()?;
        self.directory_ready.store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    pub fn directory_ready(&self) -> bool {
        self.directory_ready.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Run `f` on the service off the async threads (password hashing and sled are blocking).
    pub async fn call<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Service, Timestamp) -> crate::error::Result<T> + Send + 'static,
    {
        let service = self.service.clone();
        let now = self.now();
        Ok(tokio::task::spawn_blocking(move || f(&service, now)).await??)
    }

    /// [`AppState::call`] for work that hashes a password: it waits for one of the hashing permits.
    pub async fn call_hashing<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Service, Timestamp) -> crate::error::Result<T> + Send + 'static,
    {
        let _permit = self.hashing.acquire().await.map_err(|_| ApiError::internal("the hashing permits are closed"))?;
        self.call(f).await
    }
}

/// The whole application: the native API, the enabled vendor-compatible routes, `/openapi.json`,
/// `/docs`, `/healthz`, `/readyz`, `/metrics`.
pub fn router(state: Arc<AppState>) -> Router {
    let (api, doc) = openapi::api_router(state.settings.bulk_body_limit_bytes).split_for_parts();
    let doc = openapi::finish(doc);
    let (api, doc) = compat::mount(api, doc, &state.settings.compat, state.settings.bulk_body_limit_bytes);
    let api = if state.validate.enabled { api.merge(validate::routes()) } else { api };
    api.route("/openapi.json", openapi::served_lazily(doc))
        .merge(SwaggerUi::new("/docs").config(utoipa_swagger_ui::Config::from("/openapi.json")))
        .fallback(error::no_route)
        .layer(DefaultBodyLimit::max(state.settings.body_limit_bytes))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, state.settings.request_timeout))
        .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            ApiError::internal("a request handler panicked").into_response()
        }))
        .layer(middleware::from_fn_with_state(state.clone(), limit_body_time))
        .layer(middleware::from_fn_with_state(state.clone(), check_host))
        .layer(middleware::from_fn(socket::gate))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Refuse a request whose `Host` is none of ours (421): a page on another site whose name an
/// attacker points at 127.0.0.1 (DNS rebinding) would otherwise be same-origin with the API.
async fn check_host(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    // No web page can reach the local socket: the name it was asked by does not matter there.
    let on_socket = req.extensions().get::<socket::SocketPeer>().is_some();
    let Some(allowed) = state.settings.allowed_hosts.as_ref().filter(|_| !on_socket) else {
        return next.run(req).await;
    };
    // HTTP/2 names the host in the URI; a request that names none (HTTP/1.0) cannot be a browser's.
    let given = match req.headers().get(header::HOST) {
        Some(value) => Some(value.to_str().map(str::to_string).unwrap_or_default()),
        None => req.uri().authority().map(|a| a.to_string()),
    };
    if let Some(given) = given
        && !allowed.contains(&host_name(&given))
    {
        return ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "unknown-host",
            format!(
                "this server does not answer to the host {given:?}; it answers to {} ([server] allowed_hosts, \
                 MFADMIN_ALLOWED_HOSTS): add the name clients use there",
                allowed.join(", ")
            ),
        )
        .into_response();
    }
    next.run(req).await
}

/// A request's body must arrive whole within `body_read_timeout` of its headers, or the answer is
/// 408 and the connection closes: a body trickled a byte at a time would otherwise hold its
/// connection (and a file descriptor) until the request timeout.
async fn limit_body_time(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    use futures_util::StreamExt as _;
    use std::sync::atomic::{AtomicBool, Ordering};
    let headers = req.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers.get(header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() != b"0");
    if !has_body {
        return next.run(req).await;
    }
    let limit = state.settings.body_read_timeout;
    let deadline = tokio::time::Instant::now() + limit;
    let timed_out = Arc::new(AtomicBool::new(false));
    let flag = timed_out.clone();
    let (parts, body) = req.into_parts();
    let chunks = futures_util::stream::unfold(Some(body.into_data_stream()), move |stream| {
        let flag = flag.clone();
        async move {
            let mut stream = stream?;
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(chunk)) => Some((chunk, Some(stream))),
                Ok(None) => None,
                Err(_) => {
                    flag.store(true, Ordering::SeqCst);
                    Some((Err(axum::Error::new("the request body did not arrive in time")), None))
                }
            }
        }
    });
    let response = next.run(Request::from_parts(parts, axum::body::Body::from_stream(chunks))).await;
    if !timed_out.load(Ordering::SeqCst) {
        return response;
    }
    let mut response = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "body-timeout",
        format!(
            "the request body did not arrive within {} s ([server] body_read_timeout_seconds); send it at once",
            limit.as_secs()
        ),
    )
    .into_response();
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A request id from the client is kept when it is short and plain; otherwise we make one.
fn request_id(req: &Request) -> String {
    let given = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).filter(|v| {
        !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    });
    given.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string)
}

/// Around every request: the request id, one log line, metrics, security headers, and problem
/// bodies completed with the path and request id.
async fn observe(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(&req);
    let id_value = HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    req.headers_mut().insert(REQUEST_ID, id_value.clone());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |m| m.as_str()).to_string();
    let span = tracing::info_span!("request", request_id = %id, method = %method, path = %path, actor = tracing::field::Empty);
    let mut response = next.run(req).instrument(span.clone()).await;

    let status = response.status();
    // A vendor-compatible route's error body is the vendor's shape: keep it.
    let vendor_body = response.extensions().get::<compat::VendorBody>().is_some();
    if (status.is_client_error() || status.is_server_error()) && !vendor_body {
        let problem = response.extensions_mut().remove::<Problem>().unwrap_or_else(|| {
            // An error from outside our handlers (e.g. 405 from the router): give it our body too.
            let detail = match status {
                StatusCode::METHOD_NOT_ALLOWED => format!("{path} does not accept {method}; see /openapi.json"),
                _ => status.canonical_reason().unwrap_or("error").to_lowercase(),
            };
            let slug = match status {
                StatusCode::NOT_FOUND => "not-found",
                StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
                _ => "http-error",
            };
            ApiError::new(status, slug, detail).problem()
        });
        let problem = Problem { instance: Some(path.clone()), request_id: Some(id.clone()), ..problem };
        let (mut parts, _) = response.into_parts();
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(error::PROBLEM_JSON));
        response = Response::from_parts(parts, axum::body::Body::from(problem.body()));
    }

    let headers = response.headers_mut();
    headers.insert(REQUEST_ID, id_value);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    let csp = if path == "/docs" || path.starts_with("/docs/") {
        // Swagger UI: its own scripts and styles, nothing from elsewhere.
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'"
    } else {
        "default-src 'none'; frame-ancestors 'none'"
    };
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));

    let took = started.elapsed();
    state.metrics.record_request(&route, method.as_str(), status.as_u16(), took);
    span.in_scope(|| {
        let ms = took.as_secs_f64() * 1000.0;
        // Its own target, so `RUST_LOG=info,mfadmin::http::request=warn` keeps all but these lines.
        if status.is_server_error() {
            tracing::error!(target: "mfadmin::http::request", status = status.as_u16(), ms, "answered");
        } else {
            tracing::info!(target: "mfadmin::http::request", status = status.as_u16(), ms, "answered");
        }
    });
    response
}

// ------------------------------------------------------------------ the command

/// `mfadmin serve`
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on [default: [server] listen, 127.0.0.1:7070]
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// Allow a non-loopback address (plain HTTP: put TLS in front)
    #[arg(long)]
    pub allow_non_loopback: bool,
    /// Log lines as text or JSON [default: [server] log_format]
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormatArg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

fn init_logging(config: &crate::config::ServerConfig) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(&v).with_context(|| format!("RUST_LOG={v:?}"))?,
        _ => EnvFilter::try_new(&config.log_level)
            .with_context(|| format!("[server] log_level = {:?} is not a level or filter", config.log_level))?,
    };
    use std::io::IsTerminal as _;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    // A second call (tests) keeps the first subscriber.
    let _ = match config.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
    };
    Ok(())
}

/// Where to listen: the address, which must be loopback unless explicitly allowed.
pub fn listen_addr(listen: &str, allow_non_loopback: bool) -> anyhow::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    let addr = listen
        .to_socket_addrs()
        .with_context(|| format!("listen address {listen:?}: expected HOST:PORT such as 127.0.0.1:7070"))?
        .next()
        .with_context(|| format!("listen address {listen:?} resolves to nothing"))?;
    if !addr.ip().is_loopback() && !allow_non_loopback {
        anyhow::bail!(
            "refusing to listen on {addr}, which is not a loopback address. The API is plain HTTP; to serve \
             other machines, put TLS in front and set [server] allow_non_loopback = true \
             (or MFADMIN_ALLOW_NON_LOOPBACK=true, or --allow-non-loopback)"
        );
    }
    Ok(addr)
}

/// Run `mfadmin serve` until SIGINT or SIGTERM.
pub fn serve(ctx: &Context, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = ctx.config.clone();
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    config.server.allow_non_loopback |= args.allow_non_loopback;
    if let Some(format) = args.log_format {
        config.server.log_format = match format {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        };
    }
    init_logging(&config.server)?;
    match system::raise_open_file_limit() {
        Ok(limit) => tracing::debug!(limit, "open files"),
        Err(e) => tracing::warn!("could not raise the open-file limit: {e}"),
    }
    let addr = listen_addr(&config.server.listen, config.server.allow_non_loopback)?;
    // Opening the store refuses a data directory or key file that others can reach.
    let service = ctx.open_service()?;
    let state = AppState::new(service, Settings::from_config(&config), Clock::system());
    let backups = crate::backup_schedule::start(state.service().clone(), &config.backup, state.backups.clone())?;
    let grace = Duration::from_secs(config.server.shutdown_grace_seconds);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let served = runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        if !local.ip().is_loopback() {
            tracing::warn!(
                "LISTENING ON A NON-LOOPBACK ADDRESS {local}: other machines can reach this plain-HTTP admin API. \
                 Put TLS in front of it, and firewall it."
            );
        }
        let socket = match config.socket() {
            Some(path) => {
                let bound = match socket::bind(&path, &config.server.socket_group) {
                    Ok(bound) => bound,
                    // A socket set in the config must be had; the default one is a convenience.
                    Err(e) if config.server.socket.is_none() => {
                        tracing::warn!("not listening on a local socket: {e:#}; set [server] socket to choose one");
                        return serve_tcp(listener, None, state, grace, &config.data_dir()).await;
                    }
                    Err(e) => return Err(e),
                };
                tracing::info!(socket = %path.display(), group = %config.server.socket_group, "listening on the local socket");
                if config.store.kind == crate::config::StoreKind::Sled {
                    crate::store::owner::record(&config.store_dir(), Some(&path));
                }
                Some(LocalSocket {
                    bound,
                    policy: socket::PeerPolicy { own_uid: own_uid(), group: config.server.socket_group.clone() },
                    info: socket::ServerInfo {
                        data_dir: config.data_dir(),
                        pid: std::process::id(),
                        version: env!("CARGO_PKG_VERSION").into(),
                    },
                })
            }
            None => None,
        };
        serve_tcp(listener, socket, state, grace, &config.data_dir()).await
    });
    // A backup being written is finished (whole, or not kept) before the process ends.
    if let Some(backups) = backups {
        backups.stop();
    }
    served?;
    Ok(ExitCode::SUCCESS)
}

/// Say where the server listens, tell systemd it is ready, and serve until a signal.
async fn serve_tcp(
    listener: tokio::net::TcpListener,
    socket: Option<LocalSocket>,
    state: Arc<AppState>,
    grace: Duration,
    data_dir: &std::path::Path,
) -> anyhow::Result<()> {
    let signal = shutdown_signal();
    let local = listener.local_addr()?;
    tracing::info!(data_dir = %data_dir.display(), "listening on http://{local} (API docs at http://{local}/docs)");
    system::notify_ready();
    run_with_socket(listener, socket, state, signal, grace).await
}

/// The server's own uid (the socket always admits it).
fn own_uid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory of ours.
    unsafe { libc::geteuid() }
}

/// The local socket to serve besides TCP, and who may use it.
#[derive(Debug)]
pub struct LocalSocket {
    pub bound: socket::Bound,
    pub policy: socket::PeerPolicy,
    pub info: socket::ServerInfo,
}

/// Serve `state` on `listener` until `shutdown` completes; then stop accepting, let requests in
/// flight finish (for at most `grace`), and flush the store.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> anyhow::Result<()> {
    run_with_socket(listener, None, state, shutdown, grace).await
}

/// [`run`], serving the same application on the local socket too.
pub async fn run_with_socket(
    listener: tokio::net::TcpListener,
    socket: Option<LocalSocket>,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> anyhow::Result<()> {
    let app = router(state.clone());
    // Answer at once; read the user directory in the background, so the first listing need not.
    // On a thread of its own, not the runtime's: a server told to stop does not wait for it.
    let warming = state.clone();
    let warm = std::thread::Builder::new().name("directory".into()).spawn(move || {
        let started = Instant::now();
        match warming.warm_directory() {
            Ok(()) => tracing::info!(ms = started.elapsed().as_millis() as u64, "user directory ready"),
            Err(e) => tracing::warn!("reading the user directory failed (a listing will try again): {e}"),
        }
        // With a store shared by several nodes, others' commits reach the directory from now on.
        warming.service().follow_store();
    });
    if let Err(e) = warm {
        tracing::warn!("cannot start reading the user directory in the background (the first listing will): {e}");
    }
    let sweeper = tokio::spawn(delete_expired_sessions_every(state.clone(), crate::service::EXPIRED_PASS_EVERY));
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    // Both listeners stop on the one signal.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let signal = async move {
        shutdown.await;
        system::notify_stopping();
        tracing::info!("shutting down: no new connections; finishing the requests in flight");
        let _ = stopping_tx.send(());
        let _ = stop_tx.send(true);
    };
    let limits = conn::Limits {
        header_read_timeout: state.settings.header_read_timeout,
        max_per_client: state.settings.max_connections_per_client,
        trusted_proxies: state.settings.trusted_proxies.clone(),
    };
    let header_read_timeout = state.settings.header_read_timeout;
    let tcp = conn::serve(listener, app.clone(), limits, stopped(stop_rx.clone()));
    let local = async move {
        match socket {
            Some(s) => socket::serve(s.bound, app, s.policy, s.info, header_read_timeout, stopped(stop_rx)).await,
            None => Ok(()),
        }
    };
    let server = async move {
        let serving = async { tokio::try_join!(tcp, local).map(|_| ()) };
        tokio::pin!(serving);
        tokio::select! {
            served = &mut serving => return served,
            () = signal => {}
        }
        serving.await
    };
    let deadline = async move {
        match stopping_rx.await {
            Ok(()) => tokio::time::sleep(grace).await,
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        served = server => served.context("serving HTTP")?,
        () = deadline => tracing::warn!("requests still running after {grace:?}; exiting without them"),
    }
    sweeper.abort();
    let _ = sweeper.await;
    // The last reference goes on a blocking thread: a database store's connections block while
    // they close, which must not happen on an async thread (the process would abort).
    tokio::task::spawn_blocking(move || {
        let flushed = state.service().store().flush();
        drop(state);
        flushed
    })
    .await??;
    tracing::info!("store flushed; stopped");
    Ok(())
}

/// Every `every` (`serve`: [`crate::service::EXPIRED_PASS_EVERY`]), delete the sessions,
/// challenges and keys that have expired (a bounded pass each time; opening the store made the
/// first). Runs until it is aborted.
pub async fn delete_expired_sessions_every(state: Arc<AppState>, every: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let (service, now) = (state.service().clone(), state.now());
        match tokio::task::spawn_blocking(move || service.delete_expired_sessions(now)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("cannot delete expired sessions: {e}"),
            Err(e) => tracing::warn!("the pass deleting expired sessions stopped: {e}"),
        }
    }
}

/// SIGINT (Ctrl-C) or SIGTERM. The handlers are in place when this returns (not when the future is
/// first polled), so a signal that arrives as soon as the server says it listens still stops it cleanly.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        (signal(SignalKind::interrupt()).ok(), signal(SignalKind::terminate()).ok())
    };
    async move {
        #[cfg(unix)]
        {
            let (mut int, mut term) = signals;
            let int = async {
                match int.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let term = async {
                match term.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = int => {},
                () = term => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
