//! The local socket of `mfadmin serve`: the same application as on TCP, for the CLI and console
//! on this host. A connection is authenticated by its peer's OS credentials (SO_PEERCRED): root,
//! the server's own user and members of `[server] socket_group` act as the console operator,
//! audited as `console:<os user>`; anyone else is answered 403.

use super::error::ApiError;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::ffi::{CStr, CString};
use std::future::Future;
use std::os::unix::fs::{DirBuilderExt as _, FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt as _;

/// The path a socket connection may ask first: which store the server holds, so a client sure of
/// its data directory does not work on another one by mistake.
pub const INFO_PATH: &str = "/socket/info";

/// The audit source of a socket request: `socket:cli`, `socket:tui`, or `socket`.
pub fn source_of(headers: &axum::http::HeaderMap) -> &'static str {
    match super::extract::source_of(headers) {
        "http:cli" => "socket:cli",
        "http:tui" => "socket:tui",
        _ => "socket",
    }
}

/// Who is at the other end of a socket connection, put in each of its requests.
#[derive(Debug, Clone)]
pub struct SocketPeer {
    pub uid: u32,
    /// The OS user's name (`uid<N>` when the system has none for it).
    pub os_user: String,
    /// May act as the console operator; when false, every request is answered 403.
    pub allowed: bool,
    /// The group whose members may connect, for the refusal's words.
    group: Arc<str>,
    server: Arc<ServerInfo>,
}

impl SocketPeer {
    /// The peer `uid` (named `os_user`) of a connection to the server of `server`, let in or not,
    /// where `group`'s members may connect.
    pub fn new(uid: u32, os_user: String, allowed: bool, group: &str, server: ServerInfo) -> SocketPeer {
        SocketPeer { uid, os_user, allowed, group: group.into(), server: Arc::new(server) }
    }
}

/// What [`INFO_PATH`] answers.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ServerInfo {
    pub data_dir: PathBuf,
    pub pid: u32,
    pub version: String,
}

/// Who may use the socket.
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    /// The uid the server runs as: its own user may always.
    pub own_uid: u32,
    pub group: String,
}

impl PeerPolicy {
    /// Root, the server's own user, and members of the group (primary or supplementary, as the
    /// system's group database says now: a member removed from it loses the socket at once).
    pub fn admits(&self, uid: u32) -> bool {
        if uid == 0 || uid == self.own_uid {
            return true;
        }
        let Some(group) = group_id(&self.group) else {
            return false;
        };
        match user_name_and_gid(uid) {
            Some((name, primary)) => primary == group || groups_of(&name, primary).contains(&group),
            None => false,
        }
    }
}

/// Refuse a peer that is not allowed (403, saying who may), answer [`INFO_PATH`], and pass the
/// rest on. Requests over TCP carry no [`SocketPeer`] and pass untouched.
pub async fn gate(req: Request, next: Next) -> Response {
    let Some(peer) = req.extensions().get::<SocketPeer>().cloned() else {
        return next.run(req).await;
    };
    if !peer.allowed {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "socket-peer-refused",
            format!(
                "the OS user {} (uid {}) may not use this server's local socket: only root, the server's own user \
                 and members of the group {:?} ([server] socket_group) may. Ask an administrator to add you to it \
                 (usermod -aG {} {}, then log in again), or log in to the server as a user of the store \
                 (mfadmin login --remote URL)",
                peer.os_user, peer.uid, &*peer.group, &*peer.group, peer.os_user
            ),
        )
        .into_response();
    }
    if req.uri().path() == INFO_PATH {
        return axum::Json((*peer.server).clone()).into_response();
    }
    next.run(req).await
}

/// The socket file while the server listens on it; removed when the server stops (if it is
/// still the one this server made).
#[derive(Debug)]
pub struct Bound {
    pub listener: tokio::net::UnixListener,
    pub path: PathBuf,
    inode: u64,
}

impl Drop for Bound {
    fn drop(&mut self) {
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.inode) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Listen on `path`: a socket file left by a server that died is replaced; one a live server
/// answers on is refused, as is anything else at that path. The file gets mode 0660 and the group
/// `group` (when it exists and this process may give it), so its members can connect. Call it
/// inside a tokio runtime.
pub fn bind(path: &Path, group: &str) -> anyhow::Result<Bound> {
    use anyhow::{bail, Context as _};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            bail!(
                "{} exists and is not a socket: remove it, or choose another path with [server] socket",
                path.display()
            );
        }
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => bail!(
                "another mfadmin server is listening on {}: stop it first (systemctl stop mfadmin), or give this one \
                 another socket with [server] socket",
                path.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                tracing::info!(socket = %path.display(), "replacing the socket file of a server that is gone");
                std::fs::remove_file(path).with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
            }
            Err(e) => bail!("{} is there but cannot be checked ({e}): remove it if no server uses it", path.display()),
        }
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .with_context(|| format!("cannot create the socket's directory {}", dir.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path).with_context(|| format!("cannot listen on the socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    match group_id(group) {
        Some(gid) => {
            if let Err(e) = chown_group(path, gid) {
                tracing::warn!(
                    socket = %path.display(),
                    "cannot give the socket to the group {group:?} ({e}): only root and this server's user can connect"
                );
            }
        }
        None => tracing::info!(
            socket = %path.display(),
            "there is no group {group:?} ([server] socket_group): only root and this server's user can use the socket"
        ),
    }
    let inode = std::fs::symlink_metadata(path).map(|m| m.ino()).unwrap_or(0);
    Ok(Bound { listener, path: path.to_path_buf(), inode })
}


/// Serve `app` on the socket until `shutdown` completes, then let the open connections finish.
/// Each connection's peer is looked up once, when it connects.
pub async fn serve(
    bound: Bound,
    app: Router,
    policy: PeerPolicy,
    server: ServerInfo,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let server = Arc::new(server);
    let group: Arc<str> = policy.group.clone().into();
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = bound.listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot accept a socket connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(cred) = stream.peer_cred() else {
                    tracing::warn!("a socket connection without peer credentials: closed");
                    continue;
                };
                let uid = cred.uid();
                let (policy, server, group) = (policy.clone(), server.clone(), group.clone());
                let (builder, watcher, app) = (builder.clone(), graceful.watcher(), app.clone());
                tokio::spawn(async move {
                    // The group database may take a moment (NSS): off the async threads.
                    let Ok((allowed, os_user)) =
                        tokio::task::spawn_blocking(move || (policy.admits(uid), user_name(uid))).await
                    else {
                        return;
                    };
                    if !allowed {
                        tracing::warn!(uid, os_user = %os_user, "refusing the socket to an OS user outside its group");
                    }
                    let peer = SocketPeer { uid, os_user, allowed, group: group.clone(), server: server.clone() };
                    let service = app.map_request(move |mut req: axum::http::Request<Incoming>| {
                        req.extensions_mut().insert(peer.clone());
                        req
                    });
                    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service));
                    if let Err(e) = watcher.watch(connection.into_owned()).await {
                        tracing::debug!(error = %e, "socket connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(bound);
    graceful.shutdown().await;
    Ok(())
}

// ------------------------------------------------------------------ the OS's account database

/// The name of the OS user `uid`, or `uid<N>` when it has none.
pub fn user_name(uid: u32) -> String {
    user_name_and_gid(uid).map_or_else(|| format!("uid{uid}"), |(name, _)| name)
}

/// The OS user `uid`'s name and primary group.
fn user_name_and_gid(uid: u32) -> Option<(String, u32)> {
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: getpwuid_r writes only into `pwd` and `buf` (whose length we pass); `pw_name` points
    // into `buf`, which outlives the CStr read below.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut found);
        if rc != 0 || found.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        Some((CStr::from_ptr(pwd.pw_name).to_string_lossy().into_owned(), pwd.pw_gid))
    }
}

/// The id of the OS group `name`, if there is one.
pub fn group_id(name: &str) -> Option<u32> {
    let name = CString::new(name.trim()).ok()?;
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: getgrnam_r writes only into `grp` and `buf` (whose length we pass); we read gr_gid only.
    unsafe {
        let mut grp: libc::group = std::mem::zeroed();
        let mut found: *mut libc::group = std::ptr::null_mut();
        let rc = libc::getgrnam_r(name.as_ptr(), &mut grp, buf.as_mut_ptr().cast(), buf.len(), &mut found);
        if rc != 0 || found.is_null() {
            return None;
        }
        Some(grp.gr_gid)
    }
}

/// Every group of the OS user `name` (primary `gid` included), from the group database.
fn groups_of(name: &str, gid: u32) -> Vec<u32> {
    let Ok(c_name) = CString::new(name) else {
        return vec![gid];
    };
    let mut count: libc::c_int = 64;
    loop {
        let mut groups: Vec<libc::gid_t> = vec![0; count as usize];
        let before = count;
        // SAFETY: `groups` holds `count` entries; getgrouplist writes at most that many and sets
        // `count` to how many there are (more than we gave room for: it returns -1).
        let rc = unsafe { libc::getgrouplist(c_name.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            groups.truncate(count.max(0) as usize);
            return groups;
        }
        if count <= before {
            count = before * 2;
        }
        if count > 1 << 16 {
            return vec![gid];
        }
    }
}

fn chown_group(path: &Path, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::chown(path, None, Some(gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_the_servers_own_user_are_admitted_whatever_the_group() {
        let policy = PeerPolicy { own_uid: 4242, group: "no-such-group-here".into() };
        assert!(policy.admits(0));
        assert!(policy.admits(4242));
        assert!(!policy.admits(4243), "a uid of no group named is refused");
    }

    #[test]
    fn a_member_of_the_group_by_its_primary_group_is_admitted() {
        // SAFETY: plain getters.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let Some((name, _)) = user_name_and_gid(uid) else {
            return; // a uid without a passwd entry (some containers): nothing to look up
        };
        assert!(groups_of(&name, gid).contains(&gid));
        let group = unsafe {
            let g = libc::getgrgid(gid);
            if g.is_null() {
                return;
            }
            CStr::from_ptr((*g).gr_name).to_string_lossy().into_owned()
        };
        // Another server's user (not ours), with our group as its socket group.
        let policy = PeerPolicy { own_uid: uid.wrapping_add(1), group };
        assert!(policy.admits(uid));
    }
}
