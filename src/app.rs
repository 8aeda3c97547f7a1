//! What every front end needs to start: the settings, the way to the store (local or a remote
//! server), the clock, and the demo store. Front ends import this; it imports none of them.

use crate::auth::seal::Sealer;
use crate::backend::local::Local;
use crate::backend::remote::{Remote, RemoteOptions};
use crate::backend::{Backend, Credential};
use crate::config::Config;
use crate::demo;
use crate::domain::Timestamp;
use crate::domain::role::Role;
use crate::error::Error;
use crate::service::{Actor, NewUser, Service};
use anyhow::{Context as _, bail};
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The flags every command takes.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// Directory of the store and its key file [default: /var/lib/mfadmin for the mfadmin user or when
    /// /etc/mfadmin/config.toml exists, otherwise the platform data directory]
    #[arg(long, global = true, env = "MFADMIN_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Config file [default: /etc/mfadmin/config.toml for the mfadmin user or when it exists, otherwise
    /// the platform config directory's mfadmin/config.toml, if present]
    #[arg(long, global = true, env = "MFADMIN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Key file that seals TOTP secrets [default: DATA_DIR/mfadmin.key]
    #[arg(long, global = true, env = "MFADMIN_KEY_FILE", value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Work through the running `mfadmin serve` at URL (tui, login, logout, user, mfa, org, audit)
    /// [default: `remote` in the config, MFADMIN_REMOTE]
    #[arg(long, global = true, value_name = "URL")]
    pub remote: Option<String>,
    /// PEM file of the CA that signed the remote server's certificate (https)
    #[arg(long, global = true, value_name = "FILE")]
    pub remote_ca_file: Option<PathBuf>,
    /// Allow plain http:// to a remote that is not this machine
    #[arg(long, global = true)]
    pub allow_plain_http: bool,
    /// Where `mfadmin login` keeps the remote session token [default: the config directory's mfadmin/token]
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Say on standard error how the store is reached (in this process, or through a running
    /// server's local socket)
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

/// `-v`: set once from the command line, read where the way to the store is chosen.
static VERBOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn verbose() -> bool {
    VERBOSE.load(std::sync::atomic::Ordering::Relaxed)
}

/// Settings and the way to the store, shared by every front end started from the command line.
#[derive(Debug, Clone)]
pub struct Context {
    pub config: Config,
}

impl Context {
    /// Read the config file and environment, then apply the global flags.
    pub fn from_args(cli: &GlobalArgs) -> anyhow::Result<Context> {
        let mut config = Config::load(cli.config.as_deref()).map_err(anyhow::Error::msg)?;
        config.apply_env(std::env::vars()).map_err(anyhow::Error::msg)?;
        if let Some(d) = &cli.data_dir {
            config.data_dir = Some(d.clone());
        }
        if let Some(k) = &cli.key_file {
            config.key_file = Some(k.clone());
        }
        if let Some(r) = &cli.remote {
            config.remote = Some(r.clone());
        }
        if let Some(f) = &cli.remote_ca_file {
            config.remote_ca_file = Some(f.clone());
        }
        config.allow_plain_http |= cli.allow_plain_http;
        if let Some(f) = &cli.token_file {
            config.token_file = Some(f.clone());
        }
        if cli.verbose {
            VERBOSE.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(Context { config })
    }

    /// The backend the user, mfa, org and audit commands work through, and who acts: the
    /// remote server with the token from `mfadmin login` (or MFADMIN_TOKEN), else the local
    /// store as the console operator.
    pub fn backend(&self) -> anyhow::Result<(Box<dyn Backend>, Credential)> {
        let Some(remote) = remote_backend(self, "cli")? else {
            return self.store_backend("cli");
        };
        let token = match std::env::var("MFADMIN_TOKEN").ok().filter(|t| !t.trim().is_empty()) {
            Some(token) => token,
            None => {
                let saved = TokenFile::read(&self.config.token_file())?;
                if saved.url != remote.url() {
                    bail!(
                        "the token in {} is for {}, not {}: log in with `mfadmin login --remote {}`",
                        self.config.token_file().display(),
                        saved.url,
                        remote.url(),
                        remote.url()
                    );
                }
                saved.token
            }
        };
        let who = remote.resume(&token).map_err(|e| {
            if e.needs_login() {
                anyhow::anyhow!("{e}: the login has ended; log in again with `mfadmin login --remote {}`", remote.url())
            } else {
                e.into()
            }
        })?;
        Ok((Box::new(remote), who))
    }

    /// The store of this host as the console operator: through the running server that holds it
    /// (its local socket), or opened in this process when no server does.
    pub fn store_backend(&self, client: &'static str) -> anyhow::Result<(Box<dyn Backend>, Credential)> {
        if let Some(server) = self.local_server(client)? {
            let who = server.as_peer()?;
            return Ok((Box::new(server), who));
        }
        let service = Arc::new(self.open_service()?);
        Ok((Box::new(Local::new(service, client, &self.config.totp.issuer)), crate::backend::local::console(client)))
    }

    /// The running server that holds this store, reached through its local socket, when there is
    /// one this OS user may use (no `--remote` named). Looked for on the configured socket first;
    /// when the store is locked, on the socket its owner file names. Says which on standard error
    /// with `-v`.
    pub fn local_server(&self, client: &'static str) -> anyhow::Result<Option<Remote>> {
        let options = remote_options(self, client);
        let mut refused = None;
        if let Some(path) = self.config.socket() {
            match self.server_on(&path, &options) {
                Ok(found) => {
                    if found.is_some() {
                        return Ok(found);
                    }
                }
                Err(e) => refused = Some(e),
            }
        }
        // A store the server holds while its socket is elsewhere (a socket set only in the
        // server's own config): its owner file says where.
        if self.config.store.kind == crate::config::StoreKind::Sled
            && let Some(owner) = crate::store::owner::read(&self.config.store_dir())
            && owner.is_server()
            && let Some(path) = owner.socket
            && Some(&path) != self.config.socket().as_ref()
        {
            match self.server_on(&path, &options) {
                Ok(Some(found)) => return Ok(Some(found)),
                Ok(None) => {}
                Err(e) => refused = refused.or(Some(e)),
            }
        }
        match refused {
            // Refused on the socket, and the store cannot be opened here either: the refusal says
            // what to do.
            Some(e) if self.open_would_fail() => Err(e.into()),
            _ => Ok(None),
        }
    }

    /// The server on the socket `path` if it holds this data directory; `None` when no server
    /// answers there or it holds another; an error when it refuses this OS user.
    fn server_on(&self, path: &Path, options: &RemoteOptions) -> crate::error::Result<Option<Remote>> {
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {}
            // The socket file's mode keeps out whoever is not root, the server's user or in its group.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(Error::Remote {
                    status: 403,
                    detail: format!(
                        "a server listens on {}, but this OS user may not use that socket ({e}): only root, the \
                         server's user and members of its socket group ({:?}, [server] socket_group) may. Ask an \
                         administrator to add you to it (usermod -aG {} USER, then log in again), or log in to the \
                         server as a user of the store (mfadmin login --remote URL)",
                        path.display(),
                        self.config.server.socket_group,
                        self.config.server.socket_group,
                    ),
                });
            }
            Err(_) => return Ok(None),
        }
        let server = Remote::over_socket(path, options)?;
        let info = match server.socket_info() {
            Ok(info) => info,
            Err(e @ Error::Remote { status: 403, .. }) => return Err(e),
            Err(_) => return Ok(None),
        };
        if !same_dir(&info.data_dir, &self.config.data_dir()) {
            if verbose() {
                eprintln!(
                    "mfadmin: the server on {} (PID {}) holds {}, not {}: working on the store here",
                    path.display(),
                    info.pid,
                    info.data_dir.display(),
                    self.config.data_dir().display()
                );
            }
            return Ok(None);
        }
        if verbose() {
            eprintln!(
                "mfadmin: through the running server (PID {}) on its local socket {}, as the console operator",
                info.pid,
                path.display()
            );
        }
        Ok(Some(server))
    }

    /// Would opening the store here fail at once (no access to the data directory, or it is held)?
    fn open_would_fail(&self) -> bool {
        let dir = self.config.data_dir();
        std::fs::read_dir(&dir).is_err()
            || (self.config.store.kind == crate::config::StoreKind::Sled && crate::store::owner::read(&self.config.store_dir()).is_some())
    }

    /// Open the existing store and its key.
    pub fn open_service(&self) -> crate::error::Result<Service> {
        crate::store::private::check_private(&self.config.data_dir(), &self.config.key_file())?;
        let store = crate::store::open_configured(&self.config)?;
        let sealer = Sealer::load(&self.config.key_file())?;
        Service::new(store, sealer, self.config.policy())
    }

    /// Create a new store and key file. Refuses when either exists.
    pub fn create_service(&self) -> crate::error::Result<Service> {
        if crate::store::configured_store_exists(&self.config)? {
            return Err(Error::Conflict(format!("{} already holds a store", self.config.data_dir().display())));
        }
        crate::store::private::make_private(&self.config.data_dir())?;
        let sealer = Sealer::create_key_file(&self.config.key_file())?;
        let store = crate::store::create_configured(&self.config)?;
        Service::new(store, sealer, self.config.policy())
    }

    pub fn store_exists(&self) -> bool {
        crate::store::configured_store_exists(&self.config).unwrap_or(false)
    }
}

/// Do two paths name the same directory (as the file system resolves them, when it can)?
fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Where "now" comes from: the system clock, or (in tests) one they move.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> Timestamp + Send + Sync>);

impl Clock {
    pub fn system() -> Clock {
        Clock(Arc::new(now))
    }

    pub fn from_fn(f: impl Fn() -> Timestamp + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(f))
    }

    pub fn now(&self) -> Timestamp {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Refuse `--remote` (given on the command line) for a command that works on the store itself.
pub fn local_only(remote_flag: bool, what: &str) -> anyhow::Result<()> {
    if remote_flag {
        bail!(
            "`mfadmin {what}` works on the store itself and has no remote form; run it where the store \
             is (the server holds the store while it runs)"
        );
    }
    Ok(())
}

/// How to reach the remote server, from the config and flags, for the front end `client`
/// (`tui` or `cli`, which the server records as the audit source `http:<client>`).
pub fn remote_options(ctx: &Context, client: &'static str) -> RemoteOptions {
    RemoteOptions {
        ca_file: ctx.config.remote_ca_file.clone(),
        allow_plain_http: ctx.config.allow_plain_http,
        reconnect_for: None,
        client: Some(client),
    }
}

/// The remote server of `--remote` (or the config), if one is named, for the front end `client`.
pub fn remote_backend(ctx: &Context, client: &'static str) -> anyhow::Result<Option<Remote>> {
    match &ctx.config.remote {
        Some(url) => Ok(Some(Remote::new(url, &remote_options(ctx, client))?)),
        None => Ok(None),
    }
}

/// The token file of `mfadmin login`: the server and the session token, readable only by its owner.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct TokenFile {
    pub url: String,
    pub token: String,
}

impl TokenFile {
    pub fn read(path: &Path) -> anyhow::Result<TokenFile> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow::anyhow!("not logged in: no token file {} (run `mfadmin login --remote URL`, or set MFADMIN_TOKEN)", path.display())
            } else {
                anyhow::anyhow!("cannot read the token file {}: {e}", path.display())
            }
        })?;
        serde_json::from_str(&text).map_err(|_| {
            anyhow::anyhow!("{} is not a token file of `mfadmin login`; delete it and log in again", path.display())
        })
    }

    /// Write it anew with mode 0600 (created so: never readable by others, not even briefly).
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let _ = std::fs::remove_file(path);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).with_context(|| format!("cannot create the token file {}", path.display()))?;
        file.write_all(serde_json::to_string(self)?.as_bytes())?;
        Ok(())
    }
}

impl std::fmt::Debug for TokenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenFile({}, <token>)", self.url)
    }
}

/// Open the store, or create a demo store (orgs and a demo owner) when there is none.
pub fn ensure_demo_store(ctx: &Context, actor: &Actor) -> anyhow::Result<Service> {
    if ctx.store_exists() {
        return Ok(ctx.open_service()?);
    }
    let service = ctx.create_service()?;
    let t = now();
    for (name, enforced, _) in demo::ORGS {
        service.add_org(actor, name, enforced, t)?;
    }
    service.add_user(
        actor,
        NewUser {
            username: demo::OWNER.into(),
            email: format!("{}@acme.example", demo::OWNER),
            display_name: "Demo Owner".into(),
            role: Role::Owner,
            org: demo::ORGS[0].0.into(),
            password: Some(demo::PASSWORD.into()),
        },
        t,
    )?;
    Ok(service)
}
