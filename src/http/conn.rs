//! The accept loop of `mfadmin serve`: hyper with a timer, so that a client slow to send its
//! request headers is disconnected (`axum::serve` gives hyper no timer, and without one hyper's
//! header timeout never fires: a client could hold a connection open forever). On `shutdown` it
//! stops accepting and waits for the open connections to finish their requests. One client address
//! may hold only so many connections at once, so it cannot take every file descriptor.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use crate::config::IpRange;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::ServiceExt as _;

/// What a connection may take.
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_read_timeout: Duration,
    /// Open connections from one address (0: no cap); trusted proxies are exempt.
    pub max_per_client: usize,
    pub trusted_proxies: Vec<IpRange>,
}

/// The open connections of each client address.
#[derive(Debug, Default)]
struct Open(Mutex<HashMap<IpAddr, usize>>);

/// One connection counted in [`Open`] while it lives.
struct Slot(Arc<Open>, IpAddr);

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.0.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.1);
            }
        }
    }
}

impl Open {
    /// A slot for a connection from `ip`, unless it already holds `cap`.
    fn take(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<Slot> {
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_default();
        if cap > 0 && *n >= cap {
            return None;
        }
        *n += 1;
        Some(Slot(self.clone(), ip))
    }
}

/// Serve `app` on `listener` until `shutdown` completes, then let the open connections finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let header_read_timeout = limits.header_read_timeout;
    let open = Arc::new(Open::default());
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, remote) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a little, as axum::serve does.
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let ip = remote.ip().to_canonical();
                let cap = if limits.trusted_proxies.iter().any(|r| r.contains(ip)) { 0 } else { limits.max_per_client };
                let Some(slot) = open.take(ip, cap) else {
                    // Closed at once: the address holds its share of the descriptors already.
                    tracing::debug!(client = %ip, "refusing a connection: the address has {cap} open");
                    drop(stream);
                    continue;
                };
                let service = app.clone().map_request(move |mut req: axum::http::Request<Incoming>| {
                    req.extensions_mut().insert(ConnectInfo::<SocketAddr>(remote));
                    req
                });
                let (builder, watcher) = (builder.clone(), graceful.watcher());
                tokio::spawn(async move {
                    let _slot = slot;
                    // hyper reads the first bytes to tell HTTP/1 from HTTP/2 before its header timer
                    // starts: a client that sends nothing must be cut off too.
                    if tokio::time::timeout(header_read_timeout, stream.peek(&mut [0u8; 1])).await.is_err() {
                        return;
                    }
                    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service));
                    if let Err(e) = watcher.watch(connection.into_owned()).await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
