//! The PostgreSQL store: one database shared by several mfadmin nodes, with the same guarantees as sled.
//!
//! Records are the same postcard bytes the sled store keeps (see [`super::codec`]), next to the
//! key columns that PostgreSQL's unique indexes guard (lower-cased in Rust, `COLLATE "C"`). Every
//! commit locks the one `head` row first: that orders commits across nodes, hands out the commit
//! sequence number (kept on each org row it wrote, and with the ids of the users it wrote in the
//! `user_changes` log, so another node can catch up from a watermark) and links the audit chain
//! without gaps. No index covers what a reset changes in a user row, so its update is a HOT one
//! (the row's new version goes on the same page, no index is touched). A commit returns once it
//! is in the log, and [`Store::flush`] waits for the disk (see [`lock_head_unflushed`]); the
//! statements a request runs every time are prepared once per connection (see [`pool`]).

use super::codec::{decode, decode_session, decode_user, decode_user_record, encode, encode_audit, encode_user};
use super::{Change, ChangesSince, Record, Session, Store, StoreSpace, TokenHash, UserWrite, META_AUDIT_KEYED_FROM};
use crate::domain::audit::{AuditDraft, AuditEvent, ChainKey, Linker};
use crate::domain::user::{Org, User};
use crate::domain::Timestamp;
use crate::error::{Error, Result};
use postgres::error::SqlState;
use postgres::types::{ToSql, Type};
use postgres::{Client, NoTls, Transaction};
use pool::Manager;
use r2d2_postgres::r2d2;
use tokio_postgres_rustls::MakeRustlsConnect;
use std::path::PathBuf;
use std::time::Duration;
use uuid::Uuid;

mod pool;
mod records;

/// The layout of the tables this binary writes, kept in `meta` under [`META_PG_SCHEMA`].
pub const PG_SCHEMA_VERSION: u32 = 2;
const META_PG_SCHEMA: &str = "pg_schema_version";
/// The channel a commit notifies (with its sequence number) when it is done: a wake-up for other
/// nodes, which then read what changed from the tables.
pub const NOTIFY_CHANNEL: &str = "mfadmin_commit";
/// Commits retried after a serialization failure, a deadlock or a connection lost before COMMIT.
const RETRIES: usize = 8;
/// Rows fetched per round trip when scanning.
const SCAN_BATCH: i32 = 2_000;
/// The first key of the advisory lock taken while the schema is created or brought up to date
/// ("mfad"); the second is the hash of the schema's name, so stores in two schemas do not wait on
/// each other.
const MIGRATION_LOCK: i32 = 0x6d66_6164;

const SCHEMA_V1: &str = r#"
CREATE TABLE meta (name text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE head (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    commit_seq bigint NOT NULL,
    audit_seq bigint NOT NULL,
    audit_hash bytea NOT NULL
);
INSERT INTO head (commit_seq, audit_seq, audit_hash) VALUES (0, 0, '\x0000000000000000000000000000000000000000000000000000000000000000');
CREATE TABLE numbers (only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row), next bigint NOT NULL);
INSERT INTO numbers (next) VALUES (1);
CREATE TABLE users (
    id uuid PRIMARY KEY,
    number bigint NOT NULL CONSTRAINT users_number_key UNIQUE,
    name_key text COLLATE "C" NOT NULL CONSTRAINT users_name_key UNIQUE,
    email_key text COLLATE "C" NOT NULL CONSTRAINT users_email_key UNIQUE,
    version bigint NOT NULL,
    commit_seq bigint NOT NULL,
    record bytea NOT NULL
);
CREATE INDEX users_commit_seq ON users (commit_seq);
CREATE TABLE orgs (key text COLLATE "C" PRIMARY KEY, commit_seq bigint NOT NULL, record bytea NOT NULL);
CREATE INDEX orgs_commit_seq ON orgs (commit_seq);
CREATE TABLE audit (seq bigint PRIMARY KEY, record bytea NOT NULL);
CREATE TABLE sessions (hash bytea PRIMARY KEY, user_id uuid NOT NULL, expires_at bigint NOT NULL, record bytea NOT NULL);
CREATE INDEX sessions_user_id ON sessions (user_id);
"#;

/// Layout 1 to 2, in the migration's transaction: user updates become HOT updates. The commit
/// sequence number leaves the user rows (its index had every reset write all five of the table's
/// indexes) for `user_changes`, a log that only grows, one row a commit with the ids of the users
/// it wrote; `user_changes_floor` is the commit from which on the log is whole (older rows are
/// pruned, see [`PgStore::prune_changes`]; a bulk load or a restore moves it to its own commit,
/// so followers read everything again). The user rows leave 15% of each page free for new
/// versions (fill factor 85); the rewrite (`CLUSTER`, which a transaction may run, unlike `VACUUM
/// FULL`) applies it to the rows already there and drops the old column's bytes. Dropping the
/// column also stops an mfadmin of layout 1 still running against the database: its user writes
/// name the column, so they fail rather than go unlogged.
const V1_TO_V2: &str = r#"
ALTER TABLE users DROP COLUMN commit_seq;
ALTER TABLE users SET (fillfactor = 85);
CREATE TABLE user_changes (commit_seq bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), ids uuid[] NOT NULL);
CREATE TABLE user_changes_floor (only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row), floor bigint NOT NULL);
INSERT INTO user_changes_floor (floor) SELECT commit_seq FROM head;
CLUSTER users USING users_pkey;
ALTER TABLE users SET WITHOUT CLUSTER;
ANALYZE users;
"#;

/// A pool of connections, plain or over TLS (the two are different types to r2d2).
enum Pool {
    Plain(r2d2::Pool<Manager<NoTls>>),
    Tls(r2d2::Pool<Manager<MakeRustlsConnect>>),
}

/// The settings (and TLS connector) for a connection of its own, kept beside the pool.
#[derive(Clone)]
struct Direct {
    config: postgres::Config,
    tls: Option<MakeRustlsConnect>,
}

impl Direct {
    fn connect(&self) -> Result<Client, postgres::Error> {
        match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(NoTls),
        }
    }
}

/// A connection from either pool.
enum Conn {
    Plain(r2d2::PooledConnection<Manager<NoTls>>),
    Tls(r2d2::PooledConnection<Manager<MakeRustlsConnect>>),
}

impl Conn {
    /// `sql` prepared on this connection (once; then it is reused).
    fn statement(&mut self, sql: &'static str, types: &[Type]) -> Result<postgres::Statement, postgres::Error> {
        match self {
            Conn::Plain(c) => c.statement(sql, types),
            Conn::Tls(c) => c.statement(sql, types),
        }
    }
}

impl std::ops::Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        match self {
            Conn::Plain(c) => &c.client,
            Conn::Tls(c) => &c.client,
        }
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        match self {
            Conn::Plain(c) => &mut c.client,
            Conn::Tls(c) => &mut c.client,
        }
    }
}

/// How to reach the database: its connection settings, the most connections to keep, and for TLS
/// the CA that signed the server's certificate (default: the system's trusted roots).
#[derive(Debug, Clone)]
pub struct PgOptions {
    pub config: postgres::Config,
    pub pool_size: u32,
    pub ca_file: Option<PathBuf>,
}

impl PgOptions {
    pub fn new(config: postgres::Config, pool_size: u32) -> PgOptions {
        PgOptions { config, pool_size, ca_file: None }
    }
}

/// Pools open connections as they are needed, not all at start; a broken connection is noticed by
/// `has_broken` (checking each one out with a query would cost a round trip per operation).
fn pool_builder<M: r2d2::ManageConnection>(pool_size: u32) -> r2d2::Builder<M> {
    r2d2::Pool::builder().max_size(pool_size.max(1)).min_idle(Some(1)).test_on_check_out(false).connection_timeout(Duration::from_secs(15))
}

/// The TLS settings for the database: rustls (ring) checking the server's certificate against
/// `ca_file`, or the system's trusted roots.
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::invalid(format!("TLS setup for PostgreSQL: {e}")))?;
    let Some(path) = ca_file else {
        use rustls_platform_verifier::BuilderVerifierExt;
        return Ok(builder
            .with_platform_verifier()
            .map_err(|e| Error::invalid(format!("cannot use the system's trusted certificates: {e}; set store.ca_file")))?
            .with_no_client_auth());
    };
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let bad = |why: String| Error::invalid(format!("store.ca_file {}: {why}", path.display()));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(format!("cannot read it ({e})")))? {
        let cert = cert.map_err(|e| bad(format!("not a PEM certificate file ({e})")))?;
        roots.add(cert).map_err(|e| bad(format!("a certificate in it is not usable ({e})")))?;
    }
    if roots.is_empty() {
        return Err(bad("it holds no certificate (expected -----BEGIN CERTIFICATE-----)".into()));
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

pub struct PgStore {
    pool: Pool,
    /// How to open a connection outside the pool: the commit listener's.
    direct: Direct,
    /// Where the database is, without the password, for messages.
    place: String,
    /// The audit chain's key, once a service handed it over (see [`Store::set_audit_key`]).
    chain_key: std::sync::OnceLock<ChainKey>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgStore({})", self.place)
    }
}

/// What went wrong in a transaction: a refusal to report, or a reason to run it again.
enum Failed {
    Refused(Error),
    Retry(Error),
}

impl From<postgres::Error> for Failed {
    fn from(e: postgres::Error) -> Self {
        if retryable(&e) { Failed::Retry(pg(e)) } else { Failed::Refused(pg(e)) }
    }
}

impl From<Error> for Failed {
    fn from(e: Error) -> Self {
        Failed::Refused(e)
    }
}

fn retryable(e: &postgres::Error) -> bool {
    e.is_closed() || matches!(e.code(), Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED)
}

fn pg(e: postgres::Error) -> Error {
    match e.as_db_error() {
        Some(db) => Error::Storage(format!("PostgreSQL: {}{}", db.message(), db.detail().map(|d| format!(" ({d})")).unwrap_or_default())),
        None => Error::Storage(format!("PostgreSQL: {e}")),
    }
}

/// A number as PostgreSQL's `bigint`.
fn int8(n: u64, what: &str) -> Result<i64> {
    i64::try_from(n).map_err(|_| Error::invalid(format!("the {what} {n} is too large for the PostgreSQL store (at most {})", i64::MAX)))
}

fn uint(n: i64, what: &str) -> Result<u64> {
    u64::try_from(n).map_err(|_| Error::Corrupt(format!("the {what} {n} is negative")))
}

/// The connection settings of `url` (a `postgres://` URL or `key=value` pairs), with a clear
/// error naming what is wrong.
pub fn parse_url(url: &str) -> Result<postgres::Config> {
    url.parse::<postgres::Config>().map_err(|e| {
        Error::invalid(format!("store.url is not a PostgreSQL connection string ({e}): write it as postgres://USER:PASSWORD@HOST:PORT/DATABASE"))
    })
}

/// Where `config` points, without its password.
pub(crate) fn describe(config: &postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("postgres://{}@{host}:{port}/{}", config.get_user().unwrap_or(""), config.get_dbname().unwrap_or(""))
}

impl PgStore {
    /// Open the store in the database `config` points at, bringing its tables up to date if an
    /// older mfadmin made them. Refuses a database that holds no store (see [`PgStore::create`]).
    pub fn open(options: PgOptions) -> Result<PgStore> {
        let store = Self::connect(options)?;
        if !store.migrate(false)? {
            return Err(Error::NoStore { dir: PathBuf::from(&store.place) });
        }
        Ok(store)
    }

    /// Create the store's tables in the database `config` points at. Refuses one that holds a store.
    pub fn create(options: PgOptions) -> Result<PgStore> {
        let store = Self::connect(options)?;
        if store.migrate(true)? {
            return Err(Error::Conflict(format!("{} already holds an mfadmin store", store.place)));
        }
        Ok(store)
    }

    /// Does the database `config` points at hold a store?
    pub fn exists(options: PgOptions) -> Result<bool> {
        let store = Self::connect(PgOptions { pool_size: 1, ..options })?;
        let mut conn = store.conn()?;
        let found: Option<String> = conn.query_one("SELECT to_regclass('meta')::text", &[]).map_err(pg)?.get(0);
        Ok(found.is_some())
    }

    /// A pool for `options`: over TLS when the URL says `sslmode=require` or a CA file is given
    /// (with `sslmode=prefer`, the default, TLS is then tried first), plain otherwise.
    fn connect(options: PgOptions) -> Result<PgStore> {
        use postgres::config::SslMode;
        let PgOptions { mut config, pool_size, ca_file } = options;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("mfadmin");
        let place = describe(&config);
        let tls = match config.get_ssl_mode() {
            SslMode::Disable => false,
            SslMode::Require => true,
            _ => ca_file.is_some(),
        };
        let unreachable = |e: r2d2::Error| Error::Storage(format!("cannot connect to the PostgreSQL store at {place}: {e}"));
        let connector = if tls { Some(MakeRustlsConnect::new(tls_config(ca_file.as_deref())?)) } else { None };
        let direct = Direct { config: config.clone(), tls: connector.clone() };
        let pool = match connector {
            Some(connector) => Pool::Tls(pool_builder(pool_size).build(Manager::new(config, connector)).map_err(unreachable)?),
            None => Pool::Plain(pool_builder(pool_size).build(Manager::new(config, NoTls)).map_err(unreachable)?),
        };
        Ok(PgStore { pool, direct, place, chain_key: std::sync::OnceLock::new() })
    }

    /// Where the database is (without the password).
    pub fn place(&self) -> &str {
        &self.place
    }

    fn conn(&self) -> Result<Conn> {
        let unreachable = |e: r2d2::Error| Error::Storage(format!("cannot connect to the PostgreSQL store at {}: {e}", self.place));
        match &self.pool {
            Pool::Plain(pool) => pool.get().map(Conn::Plain).map_err(unreachable),
            Pool::Tls(pool) => pool.get().map(Conn::Tls).map_err(unreachable),
        }
    }

    /// Create or bring the tables up to date under an advisory lock, so that of several nodes
    /// starting at once one does it and the others wait. With `create`, an absent store is made;
    /// returns whether a store was there before.
    fn migrate(&self, create: bool) -> Result<bool> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(pg)?;
        let schema: Option<String> = tx.query_one("SELECT current_schema()::text", &[]).map_err(pg)?.get(0);
        let Some(schema) = schema else {
            return Err(Error::invalid(format!(
                "the database at {} has no schema to create tables in (the search_path names none that exists): create one, or fix the search_path",
                self.place
            )));
        };
        tx.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", &[&MIGRATION_LOCK, &schema]).map_err(pg)?;
        let exists: Option<String> = tx.query_one("SELECT to_regclass('meta')::text", &[]).map_err(pg)?.get(0);
        if exists.is_none() {
            if create {
                // The first layout, then the same steps that bring an older store up to date.
                tx.batch_execute(SCHEMA_V1).map_err(pg)?;
                tx.execute("INSERT INTO meta (name, value) VALUES ($1, $2)", &[&META_PG_SCHEMA, &1u32.to_be_bytes().to_vec()]).map_err(pg)?;
                upgrade(&mut tx, 1)?;
                tx.commit().map_err(pg)?;
            }
            return Ok(false);
        }
        let found = tx.query_opt("SELECT value FROM meta WHERE name = $1", &[&META_PG_SCHEMA]).map_err(pg)?;
        let version = found
            .and_then(|row| <[u8; 4]>::try_from(row.get::<_, Vec<u8>>(0).as_slice()).ok())
            .map(u32::from_be_bytes)
            .ok_or_else(|| Error::Corrupt(format!("the schema {schema} at {} has a meta table but no mfadmin schema version: it is not an mfadmin store", self.place)))?;
        if version > PG_SCHEMA_VERSION {
            return Err(Error::Corrupt(format!(
                "the store at {} has table layout {version}, written by a newer mfadmin; this binary understands up to {PG_SCHEMA_VERSION}. Use the newer mfadmin",
                self.place
            )));
        }
        if version < PG_SCHEMA_VERSION {
            tracing::info!("bringing the store at {} from table layout {version} to {PG_SCHEMA_VERSION}", self.place);
            upgrade(&mut tx, version)?;
        }
        tx.commit().map_err(pg)?;
        Ok(true)
    }

    /// Run `body` in a transaction, again after a serialization failure, a deadlock or a lost
    /// connection (none of which commit anything).
    fn in_transaction<R>(&self, mut body: impl FnMut(&mut Transaction<'_>) -> Result<R, Failed>) -> Result<R> {
        self.in_prepared_transaction(&[], |tx, _| body(tx))
    }

    /// [`PgStore::in_transaction`], with the statements `prepare` names (text and parameter types)
    /// prepared on the transaction's connection, handed to `body` in that order.
    fn in_prepared_transaction<R>(
        &self,
        prepare: &[(&'static str, &[Type])],
        mut body: impl FnMut(&mut Transaction<'_>, &[postgres::Statement]) -> Result<R, Failed>,
    ) -> Result<R> {
        let mut last = None;
        for attempt in 0..RETRIES {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(2 << attempt.min(6)));
            }
            let mut conn = self.conn()?;
            let result = (|| {
                let statements = prepare.iter().map(|(sql, types)| conn.statement(sql, types)).collect::<Result<Vec<_>, _>>()?;
                let mut tx = conn.transaction()?;
                let out = body(&mut tx, &statements)?;
                tx.commit().map_err(|e| {
                    // A connection lost during COMMIT may or may not have committed: never run it again.
                    if e.is_closed() { Failed::Refused(Error::Storage(format!("the connection to PostgreSQL was lost while committing; the change may or may not be stored ({e})"))) } else { Failed::from(e) }
                })?;
                Ok(out)
            })();
            match result {
                Ok(out) => return Ok(out),
                Err(Failed::Refused(e)) => return Err(e),
                Err(Failed::Retry(e)) => last = Some(e),
            }
        }
        Err(last.unwrap_or(Error::WriteConflict))
    }

    /// A read-only transaction that sees one moment of the database.
    fn reading<R>(&self, body: impl FnOnce(&mut Transaction<'_>) -> Result<R>) -> Result<R> {
        let mut conn = self.conn()?;
        let mut tx = conn.build_transaction().read_only(true).isolation_level(postgres::IsolationLevel::RepeatableRead).start().map_err(pg)?;
        let out = body(&mut tx)?;
        tx.commit().map_err(pg)?;
        Ok(out)
    }

    /// Visit the rows of `query` in batches until `visit` returns false.
    fn scan(&self, query: &str, visit: &mut dyn FnMut(&postgres::Row) -> Result<bool>) -> Result<()> {
        self.reading(|tx| {
            let portal = tx.bind(query, &[]).map_err(pg)?;
            loop {
                let rows = tx.query_portal(&portal, SCAN_BATCH).map_err(pg)?;
                for row in &rows {
                    if !visit(row)? {
                        return Ok(());
                    }
                }
                if rows.len() < SCAN_BATCH as usize {
                    return Ok(());
                }
            }
        })
    }

    fn one_id(&self, query: &str, param: &(dyn ToSql + Sync), ty: Type) -> Result<Option<Uuid>> {
        let mut conn = self.conn()?;
        let rows = conn.query_typed(query, &[(param, ty)]).map_err(pg)?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    /// The commit sequence number of the last commit: where a node that has read everything so far
    /// stands.
    pub fn commit_seq(&self) -> Result<u64> {
        let mut conn = self.conn()?;
        let statement = conn.statement("SELECT commit_seq FROM head", &[]).map_err(pg)?;
        uint(conn.query_one(&statement, &[]).map_err(pg)?.get(0), "commit sequence number")
    }
}

/// The steps from table layout `version` to [`PG_SCHEMA_VERSION`], in the caller's transaction
/// (which holds the migration lock), ending with the new version in `meta`.
fn upgrade(tx: &mut Transaction<'_>, version: u32) -> Result<()> {
    if version < 2 {
        tx.batch_execute(V1_TO_V2).map_err(pg)?;
    }
    tx.execute("UPDATE meta SET value = $2 WHERE name = $1", &[&META_PG_SCHEMA, &PG_SCHEMA_VERSION.to_be_bytes().to_vec()]).map_err(pg)?;
    Ok(())
}

/// Visit the rows of `query` in `tx`, in batches.
fn scan_in(tx: &mut Transaction<'_>, query: &str, visit: &mut dyn FnMut(&postgres::Row) -> Result<()>) -> Result<()> {
    let portal = tx.bind(query, &[]).map_err(pg)?;
    scan_portal(tx, portal, visit)
}

/// Visit the rows of a bound `portal` in `tx`, in batches.
fn scan_portal(tx: &mut Transaction<'_>, portal: postgres::Portal, visit: &mut dyn FnMut(&postgres::Row) -> Result<()>) -> Result<()> {
    loop {
        let rows = tx.query_portal(&portal, SCAN_BATCH).map_err(pg)?;
        for row in &rows {
            visit(row)?;
        }
        if rows.len() < SCAN_BATCH as usize {
            return Ok(());
        }
    }
}

/// One user write in a transaction: the version check, the key columns and the record.
fn put_user(tx: &mut Transaction<'_>, write: &UserWrite) -> Result<(), Failed> {
    let user = &write.user;
    let record = encode_user(user, write.expected_version);
    let number = int8(user.number, "user number")?;
    let version = int8(write.expected_version.map_or(1, |v| v + 1), "record version")?;
    let (name_key, email_key) = (user.username.to_lowercase(), user.email.to_lowercase());
    let result = match write.expected_version {
        None => tx.execute_typed(
            "INSERT INTO users (id, number, name_key, email_key, version, record) VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                (&user.id, Type::UUID),
                (&number, Type::INT8),
                (&name_key, Type::TEXT),
                (&email_key, Type::TEXT),
                (&version, Type::INT8),
                (&record, Type::BYTEA),
            ],
        ),
        Some(expected) => {
            let expected = int8(expected, "record version")?;
            tx.execute_typed(
                "UPDATE users SET number = $3, name_key = $4, email_key = $5, version = $6, record = $7 WHERE id = $1 AND version = $2",
                &[
                    (&user.id, Type::UUID),
                    (&expected, Type::INT8),
                    (&number, Type::INT8),
                    (&name_key, Type::TEXT),
                    (&email_key, Type::TEXT),
                    (&version, Type::INT8),
                    (&record, Type::BYTEA),
                ],
            )
        }
    };
    match result {
        Ok(0) => Err(Failed::Refused(Error::WriteConflict)),
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            let constraint = e.as_db_error().and_then(|d| d.constraint()).unwrap_or("");
            Err(Failed::Refused(Error::Conflict(match constraint {
                "users_name_key" => format!("the user name {:?} is already taken", user.username),
                "users_email_key" => format!("the email {:?} is already used by another user", user.email),
                "users_number_key" => format!("the user number {} is already taken", user.number),
                _ => format!("a user with id {} already exists", user.id),
            })))
        }
        Err(e) => Err(e.into()),
    }
}

/// The statement that updates users from arrays of [`UserColumns`] (`$1`–`$7`): only the rows whose
/// version and keys are still those the writes expect. A macro, so that statements can be put
/// together from it with `concat!`.
macro_rules! update_users_sql {
    () => {
        "UPDATE users u SET version = v.version, record = v.record \
         FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::bytea[]) \
              AS v(id, number, name_key, email_key, expected, version, record) \
         WHERE u.id = v.id AND u.version = v.expected AND u.number = v.number AND u.name_key = v.name_key AND u.email_key = v.email_key"
    };
}

/// User updates as the columns of [`update_users_sql`]: each user's id, number, lower-cased name
/// and email, the version the write expects and the one it makes, and the record.
struct UserColumns {
    id: Vec<Uuid>,
    number: Vec<i64>,
    name_key: Vec<String>,
    email_key: Vec<String>,
    expected: Vec<i64>,
    version: Vec<i64>,
    record: Vec<Vec<u8>>,
}

impl UserColumns {
    /// The columns of `writes`, each an update (a write with an expected version).
    fn of<'a>(writes: impl ExactSizeIterator<Item = &'a UserWrite>) -> Result<UserColumns> {
        let n = writes.len();
        let mut c = UserColumns {
            id: Vec::with_capacity(n),
            number: Vec::with_capacity(n),
            name_key: Vec::with_capacity(n),
            email_key: Vec::with_capacity(n),
            expected: Vec::with_capacity(n),
            version: Vec::with_capacity(n),
            record: Vec::with_capacity(n),
        };
        for write in writes {
            let (user, old) = (&write.user, write.expected_version.unwrap_or(0));
            c.id.push(user.id);
            c.number.push(int8(user.number, "user number")?);
            c.name_key.push(user.username.to_lowercase());
            c.email_key.push(user.email.to_lowercase());
            c.expected.push(int8(old, "record version")?);
            c.version.push(int8(old + 1, "record version")?);
            c.record.push(encode_user(user, write.expected_version));
        }
        Ok(c)
    }

    /// The statement's parameters `$1`–`$7`.
    fn params(&self) -> [&(dyn ToSql + Sync); 7] {
        [&self.id, &self.number, &self.name_key, &self.email_key, &self.expected, &self.version, &self.record]
    }
}

/// The audit events of `drafts`, numbered and linked one after the other from `head` (which moves
/// to the last of them): their sequence numbers and stored records.
fn chain_events<'a>(drafts: impl Iterator<Item = &'a AuditDraft>, head: &mut AuditHead, linker: &Linker) -> Result<(Vec<i64>, Vec<Vec<u8>>)> {
    let (mut seqs, mut records) = (Vec::new(), Vec::new());
    for draft in drafts {
        let (next, prev) = head.map_or((1, [0u8; 32]), |(s, h)| (s + 1, h));
        seqs.push(int8(next, "audit sequence number")?);
        records.push(encode_audit(next, prev, draft));
        *head = Some((next, linker.hash_of(next, &prev, draft)));
    }
    Ok((seqs, records))
}

/// The updates among `writes` that keep their user's name, email and number, in one statement
/// (a bulk reset's thousands of users in one round trip, not one each). Only when no user is
/// written twice; returns which writes it made. A write it skipped — a new user, changed keys, a
/// version that moved on — is left for [`put_user`], which reports it as one write would.
fn update_users_at_once(tx: &mut Transaction<'_>, writes: &[&UserWrite]) -> Result<Vec<bool>, Failed> {
    let updates: Vec<usize> = (0..writes.len()).filter(|&i| writes[i].expected_version.is_some()).collect();
    let mut ids: Vec<Uuid> = writes.iter().map(|w| w.user.id).collect();
    ids.sort_unstable();
    ids.dedup();
    if updates.len() < 2 || ids.len() != writes.len() {
        return Ok(vec![false; writes.len()]);
    }
    let columns = UserColumns::of(updates.iter().map(|&i| writes[i]))?;
    let [id, number, name_key, email_key, expected, version, record] = columns.params();
    let rows = tx.query_typed(
        concat!(update_users_sql!(), " RETURNING u.id"),
        &[
            (id, Type::UUID_ARRAY),
            (number, Type::INT8_ARRAY),
            (name_key, Type::TEXT_ARRAY),
            (email_key, Type::TEXT_ARRAY),
            (expected, Type::INT8_ARRAY),
            (version, Type::INT8_ARRAY),
            (record, Type::BYTEA_ARRAY),
        ],
    )?;
    let made: std::collections::HashSet<Uuid> = rows.iter().map(|r| r.get(0)).collect();
    Ok(writes.iter().map(|w| made.contains(&w.user.id)).collect())
}

/// A commit of nothing but updates of users that keep their keys (each user once), revocations
/// of sessions, deleted sessions and audit events — a reset, an unlock, a failed login's event, or
/// many of them gathered by the group commit — made as one statement after the head row is
/// locked: the user rows, the sessions, the audit events and the head together.
struct Plain {
    users: UserColumns,
    revoke: Vec<Uuid>,
    delete: Vec<Vec<u8>>,
}

impl Plain {
    /// The columns of `changes`' user writes, when the changes are of this kind.
    fn of(changes: &[Change]) -> Result<Option<Plain>> {
        let plain = |c: &Change| c.orgs.is_empty() && c.sessions_put.is_empty() && c.meta_put.is_empty() && c.users.iter().all(|w| w.expected_version.is_some());
        if !changes.iter().all(plain) {
            return Ok(None);
        }
        let writes: Vec<&UserWrite> = changes.iter().flat_map(|c| &c.users).collect();
        let mut ids: Vec<Uuid> = writes.iter().map(|w| w.user.id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != writes.len() {
            return Ok(None);
        }
        Ok(Some(Plain {
            users: UserColumns::of(writes.into_iter())?,
            revoke: changes.iter().flat_map(|c| c.revoke_sessions_of.iter().copied()).collect(),
            delete: changes.iter().flat_map(|c| c.sessions_delete.iter().map(|h| h.to_vec())).collect(),
        }))
    }

    /// Everything in one statement, after the head row is locked as `locked`. A user whose
    /// version or keys differ from the write's is not written, and the whole commit is refused
    /// with a write conflict (the transaction is then rolled back).
    /// The statement: the users (`$1`–`$7`), the commit sequence number (`$8`), the sessions
    /// (`$9`, `$10`), the audit events (`$11`, `$12`), the new audit head (`$13`, `$14`) and the
    /// channel to notify (`$15`); it answers how many users it wrote. The users' ids go to the
    /// change log under the commit's number.
    const SQL: &'static str = concat!(
        "WITH written AS (",
        update_users_sql!(),
        " RETURNING 1), \
             logged AS (INSERT INTO user_changes (commit_seq, ids) SELECT $8, $1 WHERE cardinality($1) > 0), \
             revoked AS (DELETE FROM sessions WHERE user_id = ANY($9) OR hash = ANY($10)), \
             audited AS (INSERT INTO audit (seq, record) SELECT * FROM unnest($11::bigint[], $12::bytea[])), \
             moved AS (UPDATE head SET commit_seq = $8, audit_seq = $13, audit_hash = $14 RETURNING commit_seq) \
             SELECT (SELECT count(*) FROM written), pg_notify($15, moved.commit_seq::text) FROM moved"
    );
    const TYPES: [Type; 15] = [
        Type::UUID_ARRAY,
        Type::INT8_ARRAY,
        Type::TEXT_ARRAY,
        Type::TEXT_ARRAY,
        Type::INT8_ARRAY,
        Type::INT8_ARRAY,
        Type::BYTEA_ARRAY,
        Type::INT8,
        Type::UUID_ARRAY,
        Type::BYTEA_ARRAY,
        Type::INT8_ARRAY,
        Type::BYTEA_ARRAY,
        Type::INT8,
        Type::BYTEA,
        Type::TEXT,
    ];

    fn apply(&self, tx: &mut Transaction<'_>, statement: &postgres::Statement, changes: &[Change], locked: Locked, linker: &Linker) -> Result<(), Failed> {
        let mut head = locked.audit;
        let (audit_seqs, audit_records) = chain_events(changes.iter().flat_map(|c| &c.audit), &mut head, linker)?;
        let (audit_seq, audit_hash) = head.unwrap_or((0, [0; 32]));
        let audit_seq = int8(audit_seq, "audit sequence number")?;
        let [id, number, name_key, email_key, expected, version, record] = self.users.params();
        let row = tx.query_one(
            statement,
            &[
                id,
                number,
                name_key,
                email_key,
                expected,
                version,
                record,
                &locked.seq,
                &self.revoke,
                &self.delete,
                &audit_seqs,
                &audit_records,
                &audit_seq,
                &&audit_hash[..],
                &NOTIFY_CHANNEL,
            ],
        )?;
        let written: i64 = row.get(0);
        if written != self.users.id.len() as i64 {
            return Err(Failed::Refused(Error::WriteConflict));
        }
        Ok(())
    }
}

/// Delete the sessions of `users` (collected over several changes) and forget them.
fn revoke_sessions(tx: &mut Transaction<'_>, users: &mut Vec<Uuid>) -> Result<(), Failed> {
    if !users.is_empty() {
        tx.execute_typed("DELETE FROM sessions WHERE user_id = ANY($1)", &[(&*users, Type::UUID_ARRAY)])?;
        users.clear();
    }
    Ok(())
}

/// Everything in `changes` after the head row is locked and read as (`seq`, audit head).
fn apply(tx: &mut Transaction<'_>, changes: &[Change], seq: i64, head: &mut Option<(u64, [u8; 32])>, linker: &Linker) -> Result<(), Failed> {
    // User writes touch only the users table, so their order against the rest does not matter;
    // among themselves, what the one statement skipped is written one by one, in order.
    let writes: Vec<&UserWrite> = changes.iter().flat_map(|c| &c.users).collect();
    let made = update_users_at_once(tx, &writes)?;
    for (write, made) in writes.iter().zip(made) {
        if !made {
            put_user(tx, write)?;
        }
    }
    if !writes.is_empty() {
        let ids: Vec<Uuid> = writes.iter().map(|w| w.user.id).collect();
        tx.execute_typed("INSERT INTO user_changes (commit_seq, ids) VALUES ($1, $2)", &[(&seq, Type::INT8), (&ids, Type::UUID_ARRAY)])?;
    }
    // Revocations wait to be made in one statement, until a change puts or deletes sessions.
    let mut revoking: Vec<Uuid> = Vec::new();
    for change in changes {
        for org in &change.orgs {
            tx.execute_typed(
                "INSERT INTO orgs (key, commit_seq, record) VALUES ($1, $2, $3) ON CONFLICT (key) DO UPDATE SET commit_seq = excluded.commit_seq, record = excluded.record",
                &[(&org.key, Type::TEXT), (&seq, Type::INT8), (&encode(org), Type::BYTEA)],
            )?;
        }
        revoking.extend_from_slice(&change.revoke_sessions_of);
        if !change.sessions_delete.is_empty() || !change.sessions_put.is_empty() {
            revoke_sessions(tx, &mut revoking)?;
        }
        if !change.sessions_delete.is_empty() {
            let hashes: Vec<&[u8]> = change.sessions_delete.iter().map(|h| &h[..]).collect();
            tx.execute_typed("DELETE FROM sessions WHERE hash = ANY($1)", &[(&hashes, Type::BYTEA_ARRAY)])?;
        }
        for (hash, session) in &change.sessions_put {
            // The user's sessions that have expired by the time this one starts go (as sled drops
            // them from the user's list), so that the table does not grow with every login.
            tx.execute_typed(
                "WITH expired AS (DELETE FROM sessions WHERE user_id = $2 AND expires_at <= $5 AND hash <> $1) \
                 INSERT INTO sessions (hash, user_id, expires_at, record) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (hash) DO UPDATE SET user_id = excluded.user_id, expires_at = excluded.expires_at, record = excluded.record",
                &[
                    (&&hash[..], Type::BYTEA),
                    (&session.user_id, Type::UUID),
                    (&session.expires_at, Type::INT8),
                    (&encode(session), Type::BYTEA),
                    (&session.created_at, Type::INT8),
                ],
            )?;
        }
        for (name, value) in &change.meta_put {
            tx.execute_typed(
                "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                &[(name, Type::TEXT), (value, Type::BYTEA)],
            )?;
        }
    }
    revoke_sessions(tx, &mut revoking)?;
    let (audit_seqs, audit_records) = chain_events(changes.iter().flat_map(|c| &c.audit), head, linker)?;
    if !audit_seqs.is_empty() {
        tx.execute_typed(
            "INSERT INTO audit (seq, record) SELECT * FROM unnest($1::bigint[], $2::bytea[])",
            &[(&audit_seqs, Type::INT8_ARRAY), (&audit_records, Type::BYTEA_ARRAY)],
        )?;
    }
    Ok(())
}

/// The last audit event's number and hash, if there is one.
type AuditHead = Option<(u64, [u8; 32])>;

/// The head row, locked for this transaction.
struct Locked {
    /// The commit sequence number of this commit.
    seq: i64,
    audit: AuditHead,
    /// Whether the audit chain is keyed (see [`META_AUDIT_KEYED_FROM`]).
    keyed: bool,
}

/// Lock the head row for this transaction: the next commit sequence number, the audit head, and
/// whether the chain is keyed (read under the same lock, so no commit links past a keying).
fn lock_head(tx: &mut Transaction<'_>) -> Result<Locked, Failed> {
    let row = tx.query_typed_one(
        "SELECT commit_seq, audit_seq, audit_hash, EXISTS (SELECT 1 FROM meta WHERE name = $1) FROM head FOR UPDATE",
        &[(&META_AUDIT_KEYED_FROM, Type::TEXT)],
    )?;
    locked_of(&row)
}

/// [`lock_head`] for a commit that returns before it reaches the disk: this transaction commits
/// with `synchronous_commit` off, so that the head row's lock is held only while the commit is
/// written, not while the log is flushed, and the commits of several nodes (each after the other,
/// in the order of the head row) share one flush. [`Store::flush`] makes them durable; the service
/// answers no caller before it has. (PostgreSQL's log is written in order: a later commit that is
/// durable makes every earlier one durable.) The transaction's prepared statements also run with
/// their generic plan: [`Plain::SQL`]'s arrays would otherwise have it planned again at every
/// commit, which took PostgreSQL longer than running it.
fn lock_head_unflushed(tx: &mut Transaction<'_>) -> Result<Locked, Failed> {
    let row = tx.query_typed_one(LOCK_HEAD_UNFLUSHED, &[(&META_AUDIT_KEYED_FROM, Type::TEXT)])?;
    locked_of(&row)
}

/// The statement of [`lock_head_unflushed`]; its parameter is [`META_AUDIT_KEYED_FROM`].
const LOCK_HEAD_UNFLUSHED: &str = "SELECT commit_seq, audit_seq, audit_hash, EXISTS (SELECT 1 FROM meta WHERE name = $1), \
                                          set_config('synchronous_commit', 'off', true), \
                                          set_config('plan_cache_mode', 'force_generic_plan', true) \
                                   FROM head FOR UPDATE";
const LOCK_HEAD_TYPES: [Type; 1] = [Type::TEXT];

/// The head row as [`lock_head`] reads it.
fn locked_of(row: &postgres::Row) -> Result<Locked, Failed> {
    let (commit_seq, audit_seq, hash, keyed): (i64, i64, Vec<u8>, bool) = (row.get(0), row.get(1), row.get(2), row.get(3));
    let hash = <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| Error::Corrupt("the audit chain head has a damaged hash".into()))?;
    let audit = if audit_seq == 0 { None } else { Some((uint(audit_seq, "audit sequence number")?, hash)) };
    Ok(Locked { seq: commit_seq + 1, audit, keyed })
}

/// Start the change log's whole part at commit `seq` (a bulk load's or a restore's, which log no
/// ids): a node whose watermark is older reads every user again.
fn log_restarts_at(tx: &mut Transaction<'_>, seq: i64) -> Result<(), Failed> {
    tx.execute_typed("UPDATE user_changes_floor SET floor = greatest(floor, $1)", &[(&seq, Type::INT8)])?;
    Ok(())
}

/// Move the head to `seq` and `audit`, and wake the other nodes once this commits.
fn advance_head(tx: &mut Transaction<'_>, seq: i64, audit: Option<(u64, [u8; 32])>) -> Result<(), Failed> {
    let (audit_seq, audit_hash) = audit.unwrap_or((0, [0; 32]));
    let audit_seq = int8(audit_seq, "audit sequence number")?;
    tx.query_typed(
        "WITH moved AS (UPDATE head SET commit_seq = $1, audit_seq = $2, audit_hash = $3 RETURNING commit_seq) \
         SELECT pg_notify($4, commit_seq::text) FROM moved",
        &[(&seq, Type::INT8), (&audit_seq, Type::INT8), (&&audit_hash[..], Type::BYTEA), (&NOTIFY_CHANNEL, Type::TEXT)],
    )?;
    Ok(())
}

fn user_of(row: &postgres::Row) -> Result<User> {
    let id: Uuid = row.get("id");
    decode_user(id.as_bytes(), row.get("record"))
}

impl Store for PgStore {
    fn get_user(&self, id: Uuid) -> Result<Option<User>> {
        let mut conn = self.conn()?;
        let statement = conn.statement("SELECT id, record FROM users WHERE id = $1", &[Type::UUID]).map_err(pg)?;
        let rows = conn.query(&statement, &[&id]).map_err(pg)?;
        rows.first().map(user_of).transpose()
    }

    fn get_users(&self, ids: &[Uuid]) -> Result<Vec<Option<User>>> {
        let mut found: std::collections::HashMap<Uuid, User> = std::collections::HashMap::with_capacity(ids.len());
        let mut conn = self.conn()?;
        for chunk in ids.chunks(SCAN_BATCH as usize * 5) {
            let rows = conn.query_typed("SELECT id, record FROM users WHERE id = ANY($1)", &[(&chunk, Type::UUID_ARRAY)]).map_err(pg)?;
            for row in &rows {
                let user = user_of(row)?;
                found.insert(user.id, user);
            }
        }
        Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
    }

    fn user_id_by_name(&self, name: &str) -> Result<Option<Uuid>> {
        self.one_id("SELECT id FROM users WHERE name_key = $1", &name.to_lowercase(), Type::TEXT)
    }

    fn user_ids_by_name(&self, names: &[&str]) -> Result<Vec<Option<Uuid>>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let lowered: Vec<String> = names.iter().map(|n| n.to_lowercase()).collect();
        let mut conn = self.conn()?;
        let rows = conn.query_typed("SELECT name_key, id FROM users WHERE name_key = ANY($1)", &[(&lowered, Type::TEXT_ARRAY)]).map_err(pg)?;
        let found: std::collections::HashMap<String, Uuid> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        Ok(lowered.iter().map(|n| found.get(n).copied()).collect())
    }

    fn user_id_by_email(&self, email: &str) -> Result<Option<Uuid>> {
        self.one_id("SELECT id FROM users WHERE email_key = $1", &email.to_lowercase(), Type::TEXT)
    }

    fn user_id_by_number(&self, number: u64) -> Result<Option<Uuid>> {
        // A number beyond bigint is no user's.
        let Ok(number) = i64::try_from(number) else { return Ok(None) };
        self.one_id("SELECT id FROM users WHERE number = $1", &number, Type::INT8)
    }

    fn scan_ids_by_name(&self, visit: &mut dyn FnMut(Uuid) -> bool) -> Result<()> {
        self.scan("SELECT id FROM users ORDER BY name_key", &mut |row| Ok(visit(row.get(0))))
    }

    fn scan_users(&self, visit: &mut dyn FnMut(User) -> bool) -> Result<()> {
        self.scan("SELECT id, record FROM users ORDER BY id", &mut |row| Ok(visit(user_of(row)?)))
    }

    fn user_count(&self) -> Result<usize> {
        let mut conn = self.conn()?;
        let n: i64 = conn.query_one("SELECT count(*) FROM users", &[]).map_err(pg)?.get(0);
        Ok(usize::try_from(n).unwrap_or(0))
    }

    fn user_count_bound(&self) -> Result<usize> {
        let mut conn = self.conn()?;
        let n: i64 = conn.query_one("SELECT coalesce(max(number), 0) FROM users", &[]).map_err(pg)?.get(0);
        Ok(usize::try_from(n).unwrap_or(0))
    }

    fn allocate_numbers(&self, count: u64) -> Result<u64> {
        let count = int8(count, "count of user numbers")?;
        let mut conn = self.conn()?;
        let row = conn
            .query_typed_one("UPDATE numbers SET next = next + $1 RETURNING next - $1", &[(&count, Type::INT8)])
            .map_err(pg)?;
        uint(row.get(0), "next user number")
    }

    fn get_org(&self, key: &str) -> Result<Option<Org>> {
        let mut conn = self.conn()?;
        let rows = conn.query_typed("SELECT record FROM orgs WHERE key = $1", &[(&key, Type::TEXT)]).map_err(pg)?;
        rows.first().map(|r| decode("org", key.as_bytes(), r.get(0))).transpose()
    }

    fn orgs(&self) -> Result<Vec<Org>> {
        let mut conn = self.conn()?;
        let rows = conn.query_typed("SELECT key, record FROM orgs ORDER BY key", &[]).map_err(pg)?;
        rows.iter().map(|r| decode("org", r.get::<_, &str>(0).as_bytes(), r.get(1))).collect()
    }

    /// One statement: the users' rows and the orgs' rows, told apart by which key column is set.
    fn users_and_orgs(&self, ids: &[Uuid]) -> Result<(Vec<Option<User>>, Vec<Org>)> {
        if ids.len() > SCAN_BATCH as usize {
            return Ok((self.get_users(ids)?, self.orgs()?));
        }
        let mut conn = self.conn()?;
        // One user (a single reset) by a statement of its own: PostgreSQL plans it once per
        // connection, where it plans the one for a list of ids again every time (its plan for a list
        // of unknown length looks dearer than one for the list at hand).
        let rows = if let [id] = ids {
            let statement = conn
                .statement("SELECT id, NULL::text AS key, record FROM users WHERE id = $1 UNION ALL SELECT NULL, key, record FROM orgs", &[Type::UUID])
                .map_err(pg)?;
            conn.query(&statement, &[id]).map_err(pg)?
        } else {
            let statement = conn
                .statement("SELECT id, NULL::text AS key, record FROM users WHERE id = ANY($1) UNION ALL SELECT NULL, key, record FROM orgs", &[Type::UUID_ARRAY])
                .map_err(pg)?;
            conn.query(&statement, &[&ids]).map_err(pg)?
        };
        let mut found: std::collections::HashMap<Uuid, User> = std::collections::HashMap::with_capacity(ids.len());
        let mut orgs = Vec::new();
        for row in &rows {
            match row.get::<_, Option<&str>>(1) {
                Some(key) => orgs.push(decode("org", key.as_bytes(), row.get(2))?),
                None => {
                    let id: Uuid = row.get(0);
                    found.insert(id, decode_user(id.as_bytes(), row.get(2))?);
                }
            }
        }
        orgs.sort_by(|a: &Org, b: &Org| a.key.cmp(&b.key));
        Ok((ids.iter().map(|id| found.get(id).cloned()).collect(), orgs))
    }

    fn session_and_user(&self, hash: &TokenHash) -> Result<Option<(Session, Option<User>)>> {
        let mut conn = self.conn()?;
        let statement = conn
            .statement("SELECT s.record, u.id, u.record FROM sessions s LEFT JOIN users u ON u.id = s.user_id WHERE s.hash = $1", &[Type::BYTEA])
            .map_err(pg)?;
        let rows = conn.query(&statement, &[&&hash[..]]).map_err(pg)?;
        let Some(row) = rows.first() else { return Ok(None) };
        let session = decode_session(hash, row.get(0))?;
        let user = match row.get::<_, Option<Uuid>>(1) {
            Some(id) => Some(decode_user(id.as_bytes(), row.get(2))?),
            None => None,
        };
        Ok(Some((session, user)))
    }

    fn get_session(&self, hash: &TokenHash) -> Result<Option<Session>> {
        let mut conn = self.conn()?;
        let rows = conn.query_typed("SELECT record FROM sessions WHERE hash = $1", &[(&&hash[..], Type::BYTEA)]).map_err(pg)?;
        rows.first().map(|r| decode_session(hash, r.get(0))).transpose()
    }

    fn touch_session(&self, hash: &TokenHash, seen: &Session, at: Timestamp) -> Result<()> {
        // Only over the record as it was read: a revoked or newer session is left as it is.
        let touched = Session { last_seen_at: at, ..seen.clone() };
        let mut conn = self.conn()?;
        conn.execute_typed(
            "UPDATE sessions SET record = $3 WHERE hash = $1 AND record = $2",
            &[(&&hash[..], Type::BYTEA), (&encode(seen), Type::BYTEA), (&encode(&touched), Type::BYTEA)],
        )
        .map_err(pg)?;
        Ok(())
    }

    fn sessions_of(&self, user: Uuid) -> Result<Vec<(TokenHash, Session)>> {
        let mut conn = self.conn()?;
        let rows = conn.query_typed("SELECT hash, record FROM sessions WHERE user_id = $1 ORDER BY hash", &[(&user, Type::UUID)]).map_err(pg)?;
        rows.iter()
            .map(|r| {
                let hash: &[u8] = r.get(0);
                let hash = TokenHash::try_from(hash).map_err(|_| Error::Corrupt(format!("a session of user {user} has a damaged key")))?;
                Ok((hash, decode_session(&hash, r.get(1))?))
            })
            .collect()
    }

    fn count_sessions(&self, now: Timestamp, counts: &dyn Fn(&Session) -> bool) -> Result<u64> {
        let mut n = 0;
        self.reading(|tx| {
            let portal = tx.bind("SELECT hash, record FROM sessions WHERE expires_at > $1", &[&now]).map_err(pg)?;
            scan_portal(tx, portal, &mut |r| {
                let hash = TokenHash::try_from(r.get::<_, &[u8]>(0)).map_err(|_| Error::Corrupt("a session has a damaged key".into()))?;
                n += u64::from(counts(&decode_session(&hash, r.get(1))?));
                Ok(())
            })
        })?;
        Ok(n)
    }

    fn delete_expired_sessions(&self, now: Timestamp, max: usize) -> Result<usize> {
        let limit = int8(max as u64, "count of sessions")?;
        let mut conn = self.conn()?;
        let deleted = conn
            .execute_typed(
                "DELETE FROM sessions WHERE hash IN (SELECT hash FROM sessions WHERE expires_at <= $1 LIMIT $2)",
                &[(&now, Type::INT8), (&limit, Type::INT8)],
            )
            .map_err(pg)?;
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }

    fn scan_audit(&self, newest_first: bool, visit: &mut dyn FnMut(AuditEvent) -> bool) -> Result<()> {
        let query = if newest_first { "SELECT seq, record FROM audit ORDER BY seq DESC" } else { "SELECT seq, record FROM audit ORDER BY seq" };
        self.scan(query, &mut |row| {
            let seq: i64 = row.get(0);
            Ok(visit(decode("audit", &seq.to_be_bytes(), row.get(1))?))
        })
    }

    fn audit_head(&self) -> Result<Option<(u64, [u8; 32])>> {
        let mut conn = self.conn()?;
        let row = conn.query_one("SELECT audit_seq, audit_hash FROM head", &[]).map_err(pg)?;
        let seq: i64 = row.get(0);
        if seq == 0 {
            return Ok(None);
        }
        let hash = <[u8; 32]>::try_from(row.get::<_, &[u8]>(1)).map_err(|_| Error::Corrupt("the audit chain head has a damaged hash".into()))?;
        Ok(Some((uint(seq, "audit sequence number")?, hash)))
    }

    fn set_audit_key(&self, key: ChainKey) {
        let _ = self.chain_key.set(key);
    }

    fn begin_keyed_chain(&self, head: Option<(u64, [u8; 32])>, keyed_head: Option<[u8; 32]>) -> Result<bool> {
        self.in_transaction(|tx| {
            let locked = lock_head(tx)?;
            if locked.keyed {
                return Ok(true);
            }
            if locked.audit != head {
                return Ok(false);
            }
            let from = int8(head.map_or(1, |(seq, _)| seq + 1), "audit sequence number")?;
            tx.execute_typed(
                "INSERT INTO meta (name, value) VALUES ($1, $2)",
                &[(&META_AUDIT_KEYED_FROM, Type::TEXT), (&from.to_be_bytes().to_vec(), Type::BYTEA)],
            )?;
            let audit = match (head, keyed_head) {
                (Some((seq, _)), Some(hash)) => Some((seq, hash)),
                _ => None,
            };
            advance_head(tx, locked.seq, audit)?;
            Ok(true)
        })
    }

    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let mut conn = self.conn()?;
        let rows = conn.query_typed("SELECT value FROM meta WHERE name = $1", &[(&name, Type::TEXT)]).map_err(pg)?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    fn space(&self) -> Result<Option<StoreSpace>> {
        let mut conn = self.conn()?;
        // The store's tables in its schema, with their indexes and TOAST; dead row versions are
        // estimated from the statistics (`VACUUM FULL` gives their room back).
        let row = conn
            .query_one(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint,
                        coalesce(sum(pg_relation_size(c.oid)::float8 * coalesce(s.n_dead_tup, 0)
                            / greatest(coalesce(s.n_live_tup, 0) + coalesce(s.n_dead_tup, 0), 1)), 0)::bigint
                 FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
                 WHERE c.relkind = 'r' AND n.nspname = current_schema()",
                &[],
            )
            .map_err(pg)?;
        let (on_disk, dead): (i64, i64) = (row.get(0), row.get(1));
        let mut records = 0i64;
        for table in ["meta", "head", "numbers", "users", "orgs", "audit", "sessions", "user_changes", "user_changes_floor"] {
            let bytes: i64 =
                conn.query_one(&format!("SELECT coalesce(sum(pg_column_size(t.*)), 0)::bigint FROM {table} t"), &[]).map_err(pg)?.get(0);
            records += bytes;
        }
        let bytes = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(Some(StoreSpace { on_disk: bytes(on_disk), records: bytes(records), reclaimable: Some(bytes(dead)) }))
    }

    /// PostgreSQL keeps its own indexes; what can disagree is a record and the key columns next to
    /// it, and a user and its org.
    fn check_indexes(&self) -> Result<Vec<String>> {
        let orgs: std::collections::HashSet<String> = self.orgs()?.into_iter().map(|o| o.key).collect();
        let mut problems = Vec::new();
        self.scan("SELECT id, number, name_key, email_key, version, record FROM users ORDER BY id", &mut |row| {
            let id: Uuid = row.get(0);
            let user = match decode_user_record(id.as_bytes(), row.get(5)) {
                Ok(u) => u,
                Err(e) => {
                    problems.push(e.to_string());
                    return Ok(true);
                }
            };
            if user.id != id {
                problems.push(format!("user record under key {id} holds id {}", user.id));
            }
            let (number, name_key, email_key, version): (i64, &str, &str, i64) = (row.get(1), row.get(2), row.get(3), row.get(4));
            if u64::try_from(number).ok() != Some(user.number) {
                problems.push(format!("the number column of user {} ({}) is {number}, its record says {}", user.username, user.id, user.number));
            }
            if name_key != user.username.to_lowercase() {
                problems.push(format!("the user name column of user {} ({}) is {name_key:?}", user.username, user.id));
            }
            if email_key != user.email.to_lowercase() {
                problems.push(format!("the email column of user {} ({}) is {email_key:?}, its record says {:?}", user.username, user.id, user.email));
            }
            if u64::try_from(version).ok() != Some(user.version) {
                problems.push(format!("the version column of user {} ({}) is {version}, its record says {}", user.username, user.id, user.version));
            }
            if !orgs.contains(&user.org) {
                problems.push(format!("user {} belongs to org {:?}, which does not exist", user.username, user.org));
            }
            Ok(true)
        })?;
        Ok(problems)
    }

    fn commit(&self, changes: &[Change]) -> Result<()> {
        if let Some(plain) = Plain::of(changes)? {
            // Refused (nothing kept) when a user moved on or a write changes a user's keys: the
            // general path below then finds which, and says so as a write of its own would.
            let prepare = [(LOCK_HEAD_UNFLUSHED, &LOCK_HEAD_TYPES[..]), (Plain::SQL, &Plain::TYPES[..])];
            match self.in_prepared_transaction(&prepare, |tx, statements| {
                let locked = locked_of(&tx.query_one(&statements[0], &[&META_AUDIT_KEYED_FROM])?)?;
                let linker = super::linker_for_new_events(locked.keyed, self.chain_key.get())?;
                plain.apply(tx, &statements[1], changes, locked, &linker)
            }) {
                Err(Error::WriteConflict) => {}
                done => return done,
            }
        }
        self.in_transaction(|tx| {
            let locked = lock_head_unflushed(tx)?;
            let mut head = locked.audit;
            let linker = super::linker_for_new_events(locked.keyed, self.chain_key.get())?;
            apply(tx, changes, locked.seq, &mut head, &linker)?;
            advance_head(tx, locked.seq, head)
        })
    }

    /// A commit returns once it is in the write-ahead log, before the log reaches the disk (see
    /// [`lock_head_unflushed`]); this waits until it has: a transaction that writes a record to the
    /// log (a logical message, which nothing reads) commits durably, which flushes the log up to
    /// its commit — past every commit that returned before. Callers that flush at the same moment
    /// share PostgreSQL's flush.
    fn flush(&self) -> Result<()> {
        let failed = |e| Error::Storage(format!("the commit is made but it is not known to be on disk (waiting for PostgreSQL's flush failed): {}", pg(e)));
        let mut conn = self.conn()?;
        let statement = conn.statement("SELECT pg_logical_emit_message(true, 'mfadmin', 'flush')", &[]).map_err(failed)?;
        conn.execute(&statement, &[]).map(|_| ()).map_err(failed)
    }

    /// One transaction: the users are copied in, and a taken id, name, email or number (in the
    /// store or twice in the load) refuses the whole load.
    fn load_new_users(&self, users: Vec<User>) -> Result<()> {
        self.in_transaction(|tx| {
            let Locked { seq, audit: head, .. } = lock_head(tx)?;
            if let Some(u) = users.iter().find(|u| i64::try_from(u.number).is_err()) {
                return Err(Failed::Refused(Error::invalid(format!("the user number {} of {} is too large for the PostgreSQL store; no user was written", u.number, u.username))));
            }
            let mut copied = || -> Result<(), postgres::Error> {
                let writer = tx.copy_in("COPY users (id, number, name_key, email_key, version, record) FROM STDIN BINARY")?;
                let types = [Type::UUID, Type::INT8, Type::TEXT, Type::TEXT, Type::INT8, Type::BYTEA];
                let mut writer = postgres::binary_copy::BinaryCopyInWriter::new(writer, &types);
                let one = 1i64;
                for u in &users {
                    // Numbers beyond bigint were refused before the copy began.
                    let number = u.number as i64;
                    writer.write(&[&u.id, &number, &u.username.to_lowercase(), &u.email.to_lowercase(), &one, &encode_user(u, None)])?;
                }
                writer.finish()?;
                Ok(())
            };
            match copied() {
                Ok(()) => {}
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    let db = e.as_db_error();
                    let what = match db.and_then(|d| d.constraint()) {
                        Some("users_name_key") => "user name",
                        Some("users_email_key") => "email",
                        Some("users_number_key") => "number",
                        _ => "user id",
                    };
                    // The detail reads `Key (name_key)=(alice) already exists.`
                    let value = db
                        .and_then(|d| d.detail())
                        .and_then(|d| d.split_once(")=(").map(|(_, v)| v.trim_end_matches(" already exists.").trim_end_matches(')').to_owned()))
                        .unwrap_or_default();
                    return Err(Failed::Refused(Error::Conflict(format!("the {what} {value} is already taken; no user was written"))));
                }
                Err(e) => return Err(e.into()),
            }
            // Not a million ids in the change log: other nodes read everything again.
            log_restarts_at(tx, seq)?;
            advance_head(tx, seq, head)
        })
    }

    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn export(&self, now: Timestamp, visit: &mut dyn FnMut(Record) -> Result<()>) -> Result<()> {
        records::export(self, now, visit)
    }

    fn import(&self, next: &mut dyn FnMut() -> Result<Option<Record>>) -> Result<()> {
        records::import(self, next)
    }

    fn commit_seq(&self) -> Result<Option<u64>> {
        PgStore::commit_seq(self).map(Some)
    }

    /// Rows of the change log from transactions that began more than `keep` ago go, and the log's
    /// whole part starts after the last of them (a node whose watermark is older then reads
    /// everything again). Rows are gone in commit order up to the first that is younger, so that
    /// the log stays whole from its floor on.
    fn prune_changes(&self, keep: Duration) -> Result<u64> {
        self.in_transaction(|tx| {
            let cut: Option<i64> = tx
                .query_typed_one(
                    "SELECT coalesce( \
                         (SELECT commit_seq - 1 FROM user_changes WHERE at >= now() - make_interval(secs => $1) ORDER BY commit_seq LIMIT 1), \
                         (SELECT max(commit_seq) FROM user_changes))",
                    &[(&keep.as_secs_f64(), Type::FLOAT8)],
                )?
                .get(0);
            let Some(cut) = cut else { return Ok(0) };
            let gone = tx.execute_typed("DELETE FROM user_changes WHERE commit_seq <= $1", &[(&cut, Type::INT8)])?;
            log_restarts_at(tx, cut)?;
            Ok(gone)
        })
    }

    /// A connection of its own (named `mfadmin-listener-PID` in `pg_stat_activity`) that listens
    /// on [`NOTIFY_CHANNEL`].
    fn commit_listener(&self) -> Result<Option<Box<dyn super::CommitListener>>> {
        let mut direct = self.direct.clone();
        direct.config.application_name(&listener_name());
        let lost = |e: postgres::Error| Error::Storage(format!("cannot listen for commits at {}: {}", self.place, pg(e)));
        let mut client = direct.connect().map_err(lost)?;
        client.batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}")).map_err(lost)?;
        Ok(Some(Box::new(PgListener { client, place: self.place.clone() })))
    }

    /// The users the change log names after `seq`, read in one snapshot with the head; when the
    /// log no longer reaches back to `seq` (pruned, or a bulk load since), the answer says so.
    fn changes_since(&self, seq: u64) -> Result<Option<ChangesSince>> {
        let since = int8(seq, "commit sequence number")?;
        self.reading(|tx| {
            let row = tx.query_typed_one("SELECT commit_seq, (SELECT floor FROM user_changes_floor) FROM head", &[]).map_err(pg)?;
            let (now, floor): (i64, i64) = (row.get(0), row.get(1));
            if since < floor {
                return Ok(Some(ChangesSince { seq: uint(now, "commit sequence number")?, users: Vec::new(), orgs: Vec::new(), whole: false }));
            }
            let users = tx
                .query_typed(
                    "SELECT id, record FROM users WHERE id IN (SELECT unnest(ids) FROM user_changes WHERE commit_seq > $1) ORDER BY id",
                    &[(&since, Type::INT8)],
                )
                .map_err(pg)?
                .iter()
                .map(user_of)
                .collect::<Result<Vec<User>>>()?;
            let orgs = tx
                .query_typed("SELECT key, record FROM orgs WHERE commit_seq > $1 ORDER BY key", &[(&since, Type::INT8)])
                .map_err(pg)?
                .iter()
                .map(|r| decode("org", r.get::<_, &str>(0).as_bytes(), r.get(1)))
                .collect::<Result<Vec<Org>>>()?;
            Ok(Some(ChangesSince { seq: uint(now, "commit sequence number")?, users, orgs, whole: true }))
        })
    }
}

/// The `application_name` of this process's commit listener, so that an operator (or a test) can
/// tell it apart in `pg_stat_activity`.
pub fn listener_name() -> String {
    format!("mfadmin-listener-{}", std::process::id())
}

/// A connection that has run `LISTEN` on [`NOTIFY_CHANNEL`].
struct PgListener {
    client: Client,
    place: String,
}

impl super::CommitListener for PgListener {
    fn wait(&mut self, timeout: Duration) -> Result<bool> {
        let lost = |e: postgres::Error, place: &str| Error::Storage(format!("the commit listener's connection to {place} is lost: {}", pg(e)));
        use postgres::fallible_iterator::FallibleIterator;
        let first = self.client.notifications().timeout_iter(timeout).next().map(|n| n.is_some());
        match first {
            Ok(true) => {
                // Announcements that came meanwhile are covered by the same catch-up.
                while self.client.notifications().iter().next().map_err(|e| lost(e, &self.place))?.is_some() {}
                Ok(true)
            }
            Err(e) => Err(lost(e, &self.place)),
            // Quiet: make sure the connection is still there, or no announcement would ever come.
            Ok(false) => self.client.is_valid(Duration::from_secs(5)).map(|()| false).map_err(|e| lost(e, &self.place)),
        }
    }
}
