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
        Ok(Context { config })
    }

    /// The backend the user, mfa, org and audit commands work through, and who acts: the
    /// remote server with the token from `mfadmin login` (or MFADMIN_TOKEN), else the local
    /// store as the console operator.
    pub fn backend(&self) -> anyhow::Result<(Box<dyn Backend>, Credential)> {
        let Some(remote) = remote_backend(self, "cli")? else {
            let service = Arc::new(self.open_service()?);
            return Ok((Box::new(Local::new(service, "cli", &self.config.totp.issuer)), crate::backend::local::console("cli")));
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

    /// Open the existing store and its key.
    pub fn open_service(&self) -> crate::error::Result<Service> {
        crate::store::private::check_private(&self.config.data_dir(), &self.config.key_file())?;
        let store = crate::store::open_configured(&self.config)?;
        let sealer = Sealer::load(&self.config.key_file())?;
        let service = Service::new(store, sealer, self.config.policy())?;
        // Expired sessions and challenges go whenever the store is opened; a failure here stops nothing.
        if let Err(e) = service.delete_expired_sessions(now()) {
            tracing::warn!("cannot delete expired sessions: {e}");
        }
        Ok(service)
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
