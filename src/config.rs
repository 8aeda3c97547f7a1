//! Settings: defaults, overridden by the config file, then `MFADMIN_*` variables, then flags.

use crate::domain::mfa::LockoutPolicy;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[derive(Default)]
pub struct Config {
    /// Where the store lives. Default: the platform data directory (e.g. ~/.local/share/mfadmin).
    pub data_dir: Option<PathBuf>,
    /// The key that seals TOTP secrets. Default: `mfadmin.key` inside the data directory.
    pub key_file: Option<PathBuf>,
    /// A running `mfadmin serve` (e.g. `http://127.0.0.1:7070`) that the console and the user,
    /// mfa, org and audit commands work through, instead of opening the store themselves.
    pub remote: Option<String>,
    /// PEM file of the CA that signed the remote server's certificate (HTTPS); default: the
    /// system's trusted roots.
    pub remote_ca_file: Option<PathBuf>,
    /// Allow plain `http://` to a remote that is not this machine (loopback needs no allowing).
    pub allow_plain_http: bool,
    /// Where `mfadmin login` keeps the remote session token (mode 0600). Default: `token` in the
    /// platform config directory.
    pub token_file: Option<PathBuf>,
    pub store: StoreConfig,
    pub reset: ResetConfig,
    pub totp: TotpConfig,
    pub lockout: LockoutConfig,
    pub session: SessionConfig,
    pub server: ServerConfig,
    pub tui: TuiConfig,
    /// Which vendors' drop-in MFA-reset routes `mfadmin serve` answers.
    pub compat: CompatConfig,
    /// The privacyIDEA-compatible `/validate/check` that VPNs, SSH and applications ask.
    pub validate: ValidateConfig,
    /// Backups that `mfadmin serve` takes by itself.
    pub backup: BackupConfig,
}

/// Backups that `mfadmin serve` takes by itself, each read back and checked after it is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfig {
    /// Where to write them (made with mode 0700 if absent); none: no scheduled backups.
    pub directory: Option<PathBuf>,
    /// When: an interval (`90s`, `30m`, `6h`, `1d`; the first one that long after the server
    /// starts), or a time of day in UTC (`03:00`, once a day).
    pub schedule: String,
    /// How many to keep: older ones (by the time in their name) are deleted after each new one.
    pub keep: usize,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig { directory: None, schedule: "03:00".into(), keep: 7 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResetConfig {
    pub reason_required: bool,
    pub batch_size: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TotpConfig {
    pub skew: u16,
    pub issuer: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LockoutConfig {
    pub threshold: u32,
    pub base_seconds: u64,
    pub max_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    pub lifetime_minutes: u64,
    /// A login session unused for this long ends, whatever its lifetime (ASVS 3.3.2).
    pub idle_minutes: u64,
    pub challenge_seconds: u64,
    pub api_key_days: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: String,
    pub allow_non_loopback: bool,
    /// Log lines as `text` or `json`.
    pub log_format: LogFormat,
    /// Log level or `tracing` filter (`RUST_LOG` overrides it).
    pub log_level: String,
    /// Largest request body, in bytes, except for the bulk reset.
    pub body_limit_bytes: usize,
    /// Largest request body of the bulk reset (up to 10,000 ids a call).
    pub bulk_body_limit_bytes: usize,
    /// Login, MFA and enrollment requests a minute from one client address (0: no limit).
    pub auth_rate_per_client: u32,
    /// Login, MFA and enrollment requests a minute for one account (0: no limit).
    pub auth_rate_per_account: u32,
    /// On SIGINT/SIGTERM, how long to wait for requests in flight before exiting anyway.
    pub shutdown_grace_seconds: u64,
    /// A client must send a request's headers within this many seconds, or the connection closes.
    pub header_read_timeout_seconds: u64,
    /// A request (its body read and its answer computed) must finish within this many seconds (408).
    pub request_timeout_seconds: u64,
    /// A request's body must arrive whole within this many seconds of its headers (408).
    pub body_read_timeout_seconds: u64,
    /// Open connections from one client address at once (0: no cap); trusted proxies are exempt.
    pub max_connections_per_client: usize,
    /// How long a login attempt waits before it is checked, once its account or its client address
    /// has failed more than its `auth_rate_*` a minute (a correct login still passes, later).
    pub auth_soft_delay_ms: u64,
    /// Proxies (addresses or CIDR ranges) whose `X-Forwarded-For` names the client; empty: none.
    pub trusted_proxies: Vec<String>,
    /// Host names (with or without a port) that requests may name in `Host`; empty: the listen
    /// address, localhost, 127.0.0.1 and [::1]. `*` accepts any (no DNS-rebinding check).
    pub allowed_hosts: Vec<String>,
    /// Serve `/metrics` to anyone; otherwise it needs the token of an Owner, Admin or Auditor.
    pub metrics_public: bool,
    /// The local socket `mfadmin serve` also listens on, and the CLI and console reach it by;
    /// unset: [`default_socket`]; empty: no socket.
    pub socket: Option<PathBuf>,
    /// Besides root and the server's own user, members of this OS group may use the socket (as the
    /// console operator); the socket file belongs to it.
    pub socket_group: String,
}

/// The vendor-compatible routes (see `src/http/compat/`): each vendor can be switched off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompatConfig {
    /// Flashback: `POST /mfa/reset`.
    pub flashback: bool,
    /// EntryGuard: `POST /api/v1/users/{id}/reset-mfa`.
    pub entryguard: bool,
    /// Resolver: `PUT /user/users/mfa/reset`, `PUT /user/org/mfa`, `GET /user/users/me`.
    pub resolver: bool,
    /// Netwrix Privilege Secure: `PUT /api/v1/ManagedAccount/ResetMFA/{id}`, `/signinBody`, `/signin2fa`.
    pub nps: bool,
    /// Who may reset another user's MFA through these routes.
    pub role_table: CompatRoles,
}

/// Who may reset another user's MFA through a vendor's route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompatRoles {
    /// The vendor's documented minimum (an Owner or Admin for all four), then our role table.
    #[default]
    Vendor,
    /// Our role table alone: a Helpdesk may reset Members, as through the native API.
    Mfadmin,
}

/// The second-factor checks other systems make (`/validate/check`, `/validate/radiuscheck`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidateConfig {
    /// Answer the validate routes at all.
    pub enabled: bool,
    /// Addresses (or CIDR ranges) that may validate without a validate-only API key, for plugins
    /// that cannot send one. Default: none.
    pub allow_from: Vec<String>,
    /// The org a request without `realm` means; empty: a user of any org, by user name.
    pub default_realm: String,
    /// What `pass` holds: the code alone (`otp`), or the user's password followed by the code
    /// (`password+otp`), for systems that use RADIUS as their only check.
    pub pass_mode: PassMode,
    /// `pass_mode` for particular orgs (org name -> mode), over the default.
    pub realm_pass_mode: std::collections::BTreeMap<String, PassMode>,
    /// Accept a recovery code in place of the TOTP code.
    pub recovery_codes: bool,
    /// An unknown user is answered as a wrong code (`reject`, existence is not revealed) or with
    /// privacyIDEA's own error 904 (`error`), for plugins that need it.
    pub unknown_user: UnknownUser,
    /// Checks a minute from one client address (a RADIUS server asks for everyone). Each user is
    /// also held to `server.auth_rate_per_account`.
    pub rate_per_client: u32,
}

impl Default for ValidateConfig {
    fn default() -> Self {
        ValidateConfig {
            enabled: true,
            allow_from: Vec::new(),
            default_realm: String::new(),
            pass_mode: PassMode::Otp,
            realm_pass_mode: Default::default(),
            recovery_codes: false,
            unknown_user: UnknownUser::Reject,
            rate_per_client: 600_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PassMode {
    #[default]
    #[serde(rename = "otp")]
    Otp,
    #[serde(rename = "password+otp")]
    PasswordOtp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownUser {
    #[default]
    Reject,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The store: sled on disk (one process), or PostgreSQL (several `mfadmin serve` nodes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `sled` (the embedded store in the data directory) or `postgres` (the database at `url`).
    pub kind: StoreKind,
    /// With `kind = "postgres"`: `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (libpq's
    /// `key=value` form works too; `options=-csearch_path%3DSCHEMA` picks a schema).
    pub url: Option<String>,
    /// With `kind = "postgres"`: at most this many connections from this process.
    pub pool_size: u32,
    /// With `kind = "postgres"`: PEM file of the CA that signed the database server's certificate.
    /// TLS is used when the URL says `sslmode=require` or this is set; default roots: the system's.
    pub ca_file: Option<PathBuf>,
    /// At most this many MiB of the store's pages are kept in memory by a process that opens it
    /// (the console has its own setting, `tui.store_cache_mb`). More helps writes to many
    /// different users; listing never reads them (it has its own summaries).
    pub cache_mb: u64,
}

/// Which implementation of the store a process opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    #[default]
    Sled,
    Postgres,
}

impl StoreConfig {
    pub const DEFAULT_CACHE_MB: u64 = 1024;
    pub const DEFAULT_POOL_SIZE: u32 = 16;

    pub fn cache_bytes(&self) -> u64 {
        self.cache_mb.saturating_mul(1 << 20)
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { kind: StoreKind::Sled, url: None, pool_size: StoreConfig::DEFAULT_POOL_SIZE, ca_file: None, cache_mb: StoreConfig::DEFAULT_CACHE_MB }
    }
}

/// The console (`mfadmin tui`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TuiConfig {
    /// The store's page cache in the console, in MiB: the console keeps its own compact table of
    /// the users, so little is needed, and a large store's console stays small.
    pub store_cache_mb: u64,
    /// Key bindings over the embedded defaults (assets/keymap.toml): mode -> key -> action;
    /// the action "none" removes a default binding. Checked when the console starts.
    pub keys: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
}


impl Default for TuiConfig {
    fn default() -> Self {
        TuiConfig { store_cache_mb: 16, keys: Default::default() }
    }
}

impl Default for CompatConfig {
    fn default() -> Self {
        CompatConfig { flashback: true, entryguard: true, resolver: true, nps: true, role_table: CompatRoles::Vendor }
    }
}

impl Default for ResetConfig {
    fn default() -> Self {
        ResetConfig { reason_required: true, batch_size: 500 }
    }
}

impl Default for TotpConfig {
    fn default() -> Self {
        TotpConfig { skew: 1, issuer: "mfadmin".into() }
    }
}

impl Default for LockoutConfig {
    fn default() -> Self {
        let p = LockoutPolicy::default();
        LockoutConfig { threshold: p.threshold, base_seconds: p.base_secs, max_seconds: p.max_secs }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig { lifetime_minutes: 480, idle_minutes: 30, challenge_seconds: 300, api_key_days: 365 }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:7070".into(),
            allow_non_loopback: false,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            body_limit_bytes: 64 * 1024,
            bulk_body_limit_bytes: 1024 * 1024,
            auth_rate_per_client: 30,
            auth_rate_per_account: 10,
            shutdown_grace_seconds: 30,
            header_read_timeout_seconds: 10,
            request_timeout_seconds: 300,
            body_read_timeout_seconds: 30,
            max_connections_per_client: 64,
            auth_soft_delay_ms: 1000,
            trusted_proxies: Vec::new(),
            allowed_hosts: Vec::new(),
            metrics_public: false,
            socket: None,
            socket_group: SYSTEM_USER.into(),
        }
    }
}

/// The settings the service needs, in its own units.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub reason_required: bool,
    pub batch_size: usize,
    pub totp_skew: u16,
    pub lockout: LockoutPolicy,
    pub session_secs: i64,
    pub session_idle_secs: i64,
    pub challenge_secs: i64,
    pub api_key_secs: i64,
    pub validate: ValidatePolicy,
}

/// How the service checks codes for other systems (from [`ValidateConfig`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidatePolicy {
    /// The org key a request without a realm means (`None`: any org).
    pub default_realm: Option<String>,
    pub pass_mode: PassMode,
    /// By org key.
    pub realm_pass_mode: std::collections::HashMap<String, PassMode>,
    pub recovery_codes: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Config::default().policy()
    }
}

impl Config {
    /// Read a config file; a missing file at the default location is the same as an empty one.
    pub fn load(path: Option<&Path>) -> Result<Config, String> {
        let (path, explicit) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => match default_config_path() {
                Some(p) => (p, false),
                None => return Ok(Config::default()),
            },
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(Config::default()),
            Err(e) => return Err(format!("cannot read the config file {}: {e}", path.display())),
        };
        Config::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    /// Apply `MFADMIN_*` variables from `vars` (normally the process environment).
    pub fn apply_env(&mut self, vars: impl Iterator<Item = (String, String)>) -> Result<(), String> {
        fn num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, String> {
            v.trim().parse().map_err(|_| format!("{name}={v:?} is not a valid number"))
        }
        fn list(v: &str) -> Vec<String> {
            v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
        }
        fn flag(name: &str, v: &str) -> Result<bool, String> {
            match v.trim().to_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(format!("{name}={v:?}: expected true or false")),
            }
        }
        for (name, v) in vars {
            match name.as_str() {
                "MFADMIN_DATA_DIR" => self.data_dir = Some(v.into()),
                "MFADMIN_KEY_FILE" => self.key_file = Some(v.into()),
                "MFADMIN_REMOTE" => self.remote = Some(v).filter(|v| !v.trim().is_empty()),
                "MFADMIN_REMOTE_CA_FILE" => self.remote_ca_file = Some(v.into()),
                "MFADMIN_ALLOW_PLAIN_HTTP" => self.allow_plain_http = flag(&name, &v)?,
                "MFADMIN_TOKEN_FILE" => self.token_file = Some(v.into()),
                "MFADMIN_REASON_REQUIRED" => self.reset.reason_required = flag(&name, &v)?,
                "MFADMIN_BATCH_SIZE" => self.reset.batch_size = num(&name, &v)?,
                "MFADMIN_TOTP_SKEW" => self.totp.skew = num(&name, &v)?,
                "MFADMIN_TOTP_ISSUER" => self.totp.issuer = v,
                "MFADMIN_LOCKOUT_THRESHOLD" => self.lockout.threshold = num(&name, &v)?,
                "MFADMIN_LOCKOUT_BASE_SECONDS" => self.lockout.base_seconds = num(&name, &v)?,
                "MFADMIN_LOCKOUT_MAX_SECONDS" => self.lockout.max_seconds = num(&name, &v)?,
                "MFADMIN_SESSION_LIFETIME_MINUTES" => self.session.lifetime_minutes = num(&name, &v)?,
                "MFADMIN_SESSION_IDLE_MINUTES" => self.session.idle_minutes = num(&name, &v)?,
                "MFADMIN_BODY_READ_TIMEOUT_SECONDS" => self.server.body_read_timeout_seconds = num(&name, &v)?,
                "MFADMIN_MAX_CONNECTIONS_PER_CLIENT" => self.server.max_connections_per_client = num(&name, &v)?,
                "MFADMIN_AUTH_SOFT_DELAY_MS" => self.server.auth_soft_delay_ms = num(&name, &v)?,
                "MFADMIN_TRUSTED_PROXIES" => self.server.trusted_proxies = list(&v),
                "MFADMIN_ALLOWED_HOSTS" => self.server.allowed_hosts = list(&v),
                "MFADMIN_METRICS_PUBLIC" => self.server.metrics_public = flag(&name, &v)?,
                "MFADMIN_LISTEN" => self.server.listen = v,
                "MFADMIN_ALLOW_NON_LOOPBACK" => self.server.allow_non_loopback = flag(&name, &v)?,
                "MFADMIN_STORE_CACHE_MB" => self.store.cache_mb = num(&name, &v)?,
                "MFADMIN_STORE_KIND" => {
                    self.store.kind = match v.trim().to_lowercase().as_str() {
                        "sled" => StoreKind::Sled,
                        "postgres" => StoreKind::Postgres,
                        _ => return Err(format!("{name}={v:?}: expected sled or postgres")),
                    }
                }
                "MFADMIN_STORE_URL" => self.store.url = Some(v).filter(|v| !v.trim().is_empty()),
                "MFADMIN_STORE_POOL_SIZE" => self.store.pool_size = num(&name, &v)?,
                "MFADMIN_STORE_CA_FILE" => self.store.ca_file = Some(v.into()),
                "MFADMIN_TUI_STORE_CACHE_MB" => self.tui.store_cache_mb = num(&name, &v)?,
                "MFADMIN_BACKUP_DIRECTORY" => self.backup.directory = Some(v).filter(|v| !v.trim().is_empty()).map(PathBuf::from),
                "MFADMIN_BACKUP_SCHEDULE" => self.backup.schedule = v,
                "MFADMIN_BACKUP_KEEP" => self.backup.keep = num(&name, &v)?,
                _ => {}
            }
        }
        self.validate()
    }

    fn validate(&self) -> Result<(), String> {
        if self.totp.skew > 2 {
            return Err(format!("totp.skew = {} is too lenient: use 0, 1 or 2 steps", self.totp.skew));
        }
        if self.totp.issuer.is_empty() || self.totp.issuer.contains(':') {
            return Err("totp.issuer must be non-empty and contain no ':'".into());
        }
        if self.reset.batch_size == 0 || self.reset.batch_size > 10_000 {
            return Err(format!("reset.batch_size = {} must be between 1 and 10000", self.reset.batch_size));
        }
        if self.store.kind == StoreKind::Postgres && self.store.url.is_none() {
            return Err("store.kind = \"postgres\" needs store.url (postgres://USER:PASSWORD@HOST:PORT/DATABASE)".into());
        }
        if self.store.pool_size == 0 || self.store.pool_size > 1000 {
            return Err(format!("store.pool_size = {} must be between 1 and 1000", self.store.pool_size));
        }
        for (name, mb) in [("store.cache_mb", self.store.cache_mb), ("tui.store_cache_mb", self.tui.store_cache_mb)] {
            if mb == 0 || mb > 1 << 20 {
                return Err(format!("{name} = {mb} must be between 1 and 1048576 (MiB)"));
            }
        }
        for range in &self.validate.allow_from {
            IpRange::parse(range).map_err(|e| format!("validate.allow_from: {e}"))?;
        }
        if self.lockout.threshold == 0 {
            return Err("lockout.threshold must be at least 1".into());
        }
        crate::backup_schedule::Schedule::parse(&self.backup.schedule)?;
        if self.backup.keep == 0 {
            return Err("backup.keep must be at least 1 (how many scheduled backups to keep)".into());
        }
        if self.server.header_read_timeout_seconds == 0 || self.server.request_timeout_seconds == 0 {
            return Err("server.header_read_timeout_seconds and server.request_timeout_seconds must be greater than zero".into());
        }
        if self.server.body_read_timeout_seconds == 0 {
            return Err("server.body_read_timeout_seconds must be greater than zero (30 is the default)".into());
        }
        if self.server.auth_soft_delay_ms > 60_000 {
            return Err(format!("server.auth_soft_delay_ms = {} is over a minute: use at most 60000", self.server.auth_soft_delay_ms));
        }
        for proxy in &self.server.trusted_proxies {
            IpRange::parse(proxy).map_err(|e| format!("server.trusted_proxies: {e}"))?;
        }
        if self.session.lifetime_minutes == 0
            || self.session.idle_minutes == 0
            || self.session.challenge_seconds == 0
            || self.session.api_key_days == 0
        {
            return Err("session lifetimes must be greater than zero".into());
        }
        Ok(())
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(default_data_dir)
    }

    pub fn key_file(&self) -> PathBuf {
        self.key_file.clone().unwrap_or_else(|| self.data_dir().join("mfadmin.key"))
    }

    /// Where `mfadmin login` keeps the remote session token.
    pub fn token_file(&self) -> PathBuf {
        self.token_file.clone().unwrap_or_else(|| {
            directories::ProjectDirs::from("", "", "mfadmin")
                .map(|d| d.config_dir().join("token"))
                .unwrap_or_else(|| PathBuf::from(".mfadmin-token"))
        })
    }

    /// The local socket of `mfadmin serve`, unless it is switched off (`socket = ""`).
    pub fn socket(&self) -> Option<PathBuf> {
        match &self.server.socket {
            Some(path) if path.as_os_str().is_empty() => None,
            Some(path) => Some(path.clone()),
            None => Some(default_socket(&self.data_dir())),
        }
    }

    /// The directory that holds the sled database, inside the data directory.
    pub fn store_dir(&self) -> PathBuf {
        self.data_dir().join("store")
    }

    pub fn policy(&self) -> Policy {
        Policy {
            reason_required: self.reset.reason_required,
            batch_size: self.reset.batch_size,
            totp_skew: self.totp.skew,
            lockout: LockoutPolicy {
                threshold: self.lockout.threshold,
                base_secs: self.lockout.base_seconds,
                max_secs: self.lockout.max_seconds,
            },
            session_secs: (self.session.lifetime_minutes * 60) as i64,
            session_idle_secs: (self.session.idle_minutes * 60) as i64,
            challenge_secs: self.session.challenge_seconds as i64,
            api_key_secs: (self.session.api_key_days * 86_400) as i64,
            validate: ValidatePolicy {
                default_realm: Some(crate::domain::user::org_key(&self.validate.default_realm)).filter(|r| !r.is_empty()),
                pass_mode: self.validate.pass_mode,
                realm_pass_mode: self
                    .validate
                    .realm_pass_mode
                    .iter()
                    .map(|(org, mode)| (crate::domain::user::org_key(org), *mode))
                    .collect(),
                recovery_codes: self.validate.recovery_codes,
            },
        }
    }
}

/// An address or a CIDR range of them, as `[server] trusted_proxies` and `[validate] allow_from` list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    base: std::net::IpAddr,
    prefix: u8,
}

impl IpRange {
    pub fn parse(text: &str) -> Result<IpRange, String> {
        let text = text.trim();
        let bad = || format!("{text:?} is not an address or a CIDR range such as 10.0.0.5, 10.0.0.0/8 or fd00::/8");
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (text, None),
        };
        let base: std::net::IpAddr = addr.trim_matches(['[', ']']).parse().map_err(|_| bad())?;
        let max = if base.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(IpRange { base, prefix })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        fn bits(ip: std::net::IpAddr) -> (u128, u8) {
            match ip {
                std::net::IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
                std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                    Some(v4) => (u128::from(u32::from(v4)), 32),
                    None => (u128::from(v6), 128),
                },
            }
        }
        let ((want, width), (have, have_width)) = (bits(self.base), bits(ip));
        if width != have_width {
            return false;
        }
        let shift = u32::from(width - self.prefix.min(width));
        let mask = if shift >= 128 { 0 } else { (u128::MAX >> shift) << shift };
        let mask = if width == 32 { mask & u128::from(u32::MAX) } else { mask };
        want & mask == have & mask
    }
}

/// The config file of a system installation (the package's, read by its systemd unit).
pub const SYSTEM_CONFIG: &str = "/etc/mfadmin/config.toml";
/// The data directory of a system installation (the unit's `StateDirectory`).
pub const SYSTEM_DATA_DIR: &str = "/var/lib/mfadmin";
/// The OS user a system installation runs the daemon as.
pub const SYSTEM_USER: &str = "mfadmin";

/// Where the config file and the data directory are when nothing says otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    pub config: Option<PathBuf>,
    pub data_dir: PathBuf,
}

impl Defaults {
    /// The system's paths when run as [`SYSTEM_USER`] or when `system_config` exists (so every
    /// admin on a host with the package reaches the daemon's store); otherwise a person's own XDG
    /// paths.
    pub fn choose(os_user: Option<&str>, system_config: &Path, system_data_dir: &Path) -> Defaults {
        // A config we may not even look at is still there: loading it then says why it cannot be read.
        let config_present = system_config.try_exists().unwrap_or(true);
        if os_user == Some(SYSTEM_USER) || config_present {
            return Defaults { config: Some(system_config.to_path_buf()), data_dir: system_data_dir.to_path_buf() };
        }
        let dirs = directories::ProjectDirs::from("", "", "mfadmin");
        Defaults {
            config: dirs.as_ref().map(|d| d.config_dir().join("config.toml")),
            data_dir: dirs.map_or_else(|| PathBuf::from(".mfadmin"), |d| d.data_dir().to_path_buf()),
        }
    }

    /// The defaults of this process: its effective OS user and this host's files.
    pub fn current() -> Defaults {
        Defaults::choose(effective_user().as_deref(), Path::new(SYSTEM_CONFIG), Path::new(SYSTEM_DATA_DIR))
    }
}

/// The name of the effective user (not `$USER`, which `su` and `sudo` may leave as it was).
fn effective_user() -> Option<String> {
    #[cfg(unix)]
    {
        let mut buf = vec![0u8; 16 * 1024];
        // SAFETY: getpwuid_r writes only into `pwd` and `buf` (whose length we pass); `pw_name`
        // points into `buf`, which outlives the CStr read below.
        unsafe {
            let mut pwd: libc::passwd = std::mem::zeroed();
            let mut found: *mut libc::passwd = std::ptr::null_mut();
            let rc = libc::getpwuid_r(libc::geteuid(), &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut found);
            if rc != 0 || found.is_null() || pwd.pw_name.is_null() {
                return None;
            }
            Some(std::ffi::CStr::from_ptr(pwd.pw_name).to_string_lossy().into_owned())
        }
    }
    #[cfg(not(unix))]
    None
}

/// The runtime directory of a system installation (the unit's `RuntimeDirectory`).
pub const SYSTEM_RUNTIME_DIR: &str = "/run/mfadmin";
/// The file name of the local socket in its directory.
pub const SOCKET_NAME: &str = "mfadmin.sock";

/// Where the local socket is when the config does not say: the unit's runtime directory under
/// systemd (`RUNTIME_DIRECTORY`); `/run/mfadmin` for a system installation (so every admin on the
/// host finds the daemon's); else the person's `XDG_RUNTIME_DIR`, or the data directory itself.
pub fn default_socket(data_dir: &Path) -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    socket_in(
        var("RUNTIME_DIRECTORY").as_deref(),
        Defaults::current().data_dir == Path::new(SYSTEM_DATA_DIR),
        var("XDG_RUNTIME_DIR").as_deref(),
        data_dir,
    )
}

/// [`default_socket`] from what it looks at. systemd may list several runtime directories,
/// separated by colons: the first is ours.
fn socket_in(runtime_directory: Option<&Path>, system: bool, xdg_runtime_dir: Option<&Path>, data_dir: &Path) -> PathBuf {
    let first = runtime_directory.and_then(|d| d.to_str()).and_then(|d| d.split(':').next()).filter(|d| !d.is_empty());
    let dir = match (first, system, xdg_runtime_dir) {
        (Some(dir), _, _) => PathBuf::from(dir),
        (None, true, _) => PathBuf::from(SYSTEM_RUNTIME_DIR),
        (None, false, Some(xdg)) => xdg.to_path_buf(),
        (None, false, None) => data_dir.to_path_buf(),
    };
    dir.join(SOCKET_NAME)
}

pub fn default_data_dir() -> PathBuf {
    Defaults::current().data_dir
}

pub fn default_config_path() -> Option<PathBuf> {
    Defaults::current().config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_documents_every_default() {
        let text = include_str!("../config.example.toml");
        let parsed = Config::parse(text).expect("config.example.toml parses");
        let expected = Config { data_dir: parsed.data_dir.clone(), ..Config::default() };
        assert_eq!(parsed, expected, "config.example.toml must show the defaults");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = Config::parse("[reset]\nreason_requird = false\n").unwrap_err();
        assert!(err.contains("reason_requird"), "{err}");
        let err = Config::parse("[totp]\nskew = 9\n").unwrap_err();
        assert!(err.contains("skew"), "{err}");
    }

    #[test]
    fn trusted_proxies_are_addresses_or_ranges() {
        let range = IpRange::parse("10.0.0.0/8").unwrap();
        assert!(range.contains("10.1.2.3".parse().unwrap()));
        assert!(!range.contains("11.0.0.1".parse().unwrap()));
        assert!(range.contains("::ffff:10.0.0.1".parse().unwrap()), "an IPv4-mapped peer");
        assert!(IpRange::parse("127.0.0.1").unwrap().contains("127.0.0.1".parse().unwrap()));
        assert!(!IpRange::parse("127.0.0.1").unwrap().contains("127.0.0.2".parse().unwrap()));
        assert!(IpRange::parse("fd00::/8").unwrap().contains("fd12::1".parse().unwrap()));
        assert!(IpRange::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        for bad in ["10.0.0.0/33", "proxy.local", "10.0.0.0/x", ""] {
            assert!(IpRange::parse(bad).is_err(), "{bad:?}");
        }
        let err = Config::parse("[server]\ntrusted_proxies = [\"nope\"]\n").unwrap_err();
        assert!(err.contains("trusted_proxies") && err.contains("\"nope\""), "{err}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut c = Config::parse("[reset]\nreason_required = true\n").unwrap();
        c.apply_env([("MFADMIN_REASON_REQUIRED".to_string(), "false".to_string())].into_iter()).unwrap();
        assert!(!c.reset.reason_required);
        c.apply_env([("MFADMIN_REMOTE".to_string(), "http://127.0.0.1:7070".to_string())].into_iter()).unwrap();
        assert_eq!(c.remote.as_deref(), Some("http://127.0.0.1:7070"));
        let err = c.apply_env([("MFADMIN_ALLOW_PLAIN_HTTP".to_string(), "maybe".to_string())].into_iter()).unwrap_err();
        assert!(err.contains("MFADMIN_ALLOW_PLAIN_HTTP"), "{err}");
        let err = c.apply_env([("MFADMIN_TOTP_SKEW".to_string(), "x".to_string())].into_iter()).unwrap_err();
        assert!(err.contains("MFADMIN_TOTP_SKEW"));
    }

    #[test]
    fn the_socket_is_in_the_units_runtime_directory_then_the_systems_then_the_persons() {
        let data = Path::new("/home/a/.local/share/mfadmin");
        let xdg = Path::new("/run/user/1000");
        assert_eq!(socket_in(Some(Path::new("/run/mfadmin:/run/other")), false, Some(xdg), data), Path::new("/run/mfadmin/mfadmin.sock"));
        assert_eq!(socket_in(None, true, Some(xdg), data), Path::new("/run/mfadmin/mfadmin.sock"));
        assert_eq!(socket_in(None, false, Some(xdg), data), Path::new("/run/user/1000/mfadmin.sock"));
        assert_eq!(socket_in(None, false, None, data), data.join("mfadmin.sock"));
        let mut c = Config::default();
        c.server.socket = Some(PathBuf::new());
        assert_eq!(c.socket(), None, "an empty socket setting switches it off");
        c.server.socket = Some("/tmp/x.sock".into());
        assert_eq!(c.socket(), Some(PathBuf::from("/tmp/x.sock")));
    }

    #[test]
    fn the_system_paths_apply_to_the_service_user_or_when_the_system_config_exists() {
        let etc = tempfile::tempdir().unwrap();
        let system_config = etc.path().join("config.toml");
        let system_data = Path::new("/var/lib/mfadmin");

        let person = Defaults::choose(Some("alice"), &system_config, system_data);
        assert_ne!(person.data_dir, system_data, "a person without the system config keeps the XDG paths");
        assert_ne!(person.config.as_deref(), Some(system_config.as_path()));
        assert!(person.data_dir.ends_with("mfadmin"), "{}", person.data_dir.display());

        let daemon = Defaults::choose(Some(SYSTEM_USER), &system_config, system_data);
        assert_eq!(daemon, Defaults { config: Some(system_config.clone()), data_dir: system_data.into() });

        std::fs::write(&system_config, "").unwrap();
        let admin = Defaults::choose(Some("alice"), &system_config, system_data);
        assert_eq!(admin, Defaults { config: Some(system_config.clone()), data_dir: system_data.into() });
        let unknown = Defaults::choose(None, &system_config, system_data);
        assert_eq!(unknown.data_dir, system_data);
    }
}
