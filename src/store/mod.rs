//! Persistence behind one trait, so the service never sees sled (a server database can come later).

pub mod backup;
pub mod buckets;
pub(crate) mod codec;
pub mod migrate;
pub mod names;
pub mod owner;
pub mod postgres;
pub mod private;
pub mod sled;

use crate::domain::audit::{AuditDraft, AuditEvent, ChainKey, ChainLinks, Linker};
use crate::domain::role::Role;
use crate::domain::user::{Org, User};
use crate::domain::Timestamp;
use crate::error::Result;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub type TokenHash = [u8; 32];

/// Meta entry: the number of the first audit event whose link is keyed (big-endian u64). Absent
/// while the chain is plain SHA-256; once there, it never goes, and every new link is keyed.
pub const META_AUDIT_KEYED_FROM: &str = "audit_keyed_from";

/// The value of [`META_AUDIT_KEYED_FROM`], read.
pub fn decode_keyed_from(value: Option<&[u8]>) -> Result<Option<u64>> {
    value
        .map(|v| {
            <[u8; 8]>::try_from(v)
                .map(u64::from_be_bytes)
                .map_err(|_| crate::error::Error::Corrupt(format!("the meta entry {META_AUDIT_KEYED_FROM} is damaged")))
        })
        .transpose()
}

/// How a store links the audit events it appends: keyed once the chain is keyed, which needs the key.
pub(crate) fn linker_for_new_events(keyed: bool, key: Option<&ChainKey>) -> Result<Linker> {
    match (keyed, key) {
        (false, _) => Ok(Linker::Plain),
        (true, Some(key)) => Ok(Linker::Keyed(key.clone())),
        (true, None) => Err(crate::error::Error::KeyFile(
            "this store's audit chain is keyed and the store was opened without its key: open it through the service, with its key file".into(),
        )),
    }
}

/// What a bearer token stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionKind {
    /// A logged-in user.
    Session,
    /// A long-lived key for scripts, acting with `role` (never above its creator's) in the creator's org.
    ApiKey { name: String, role: Role },
    /// Password accepted; a TOTP or recovery code must follow.
    MfaChallenge,
    /// Password accepted; the user must enroll a factor before anything else.
    EnrollChallenge,
    /// A key for a system that checks second factors (`/validate/check`) and may do nothing else.
    ValidateKey { name: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user_id: Uuid,
    pub kind: SessionKind,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// When the token was last used, to within a minute (see [`Store::touch_session`]): a login
    /// session unused for the idle timeout ends.
    pub last_seen_at: Timestamp,
    /// The audit source of the request that made it (`http:tui` when mfadmin's console logged in
    /// over HTTP, `cli` for a key made on the server's host): which client labels it may claim.
    pub made_by: String,
}

impl Session {
    pub fn new(user_id: Uuid, kind: SessionKind, created_at: Timestamp, expires_at: Timestamp, made_by: &str) -> Session {
        Session { user_id, kind, created_at, expires_at, last_seen_at: created_at, made_by: made_by.to_string() }
    }
}

/// What changed after a commit sequence number: the users and orgs that commits after it wrote,
/// as they are now, and the sequence number of the last commit seen (the next watermark).
#[derive(Debug, Clone, Default)]
pub struct ChangesSince {
    pub seq: u64,
    pub users: Vec<User>,
    pub orgs: Vec<Org>,
    /// False when the store no longer knows every user written since the watermark asked about
    /// (its change log was pruned past it, or users were loaded in bulk since): `users` and `orgs`
    /// are then empty, and the node must read everything again.
    pub whole: bool,
}

/// A user record to write. `expected_version` is the version the change was computed from
/// (`None` for a new user); the write is refused if the stored record moved on meanwhile.
#[derive(Debug, Clone)]
pub struct UserWrite {
    pub user: User,
    pub expected_version: Option<u64>,
}

/// One unit of work: everything in it happens in one transaction, or none of it does.
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub users: Vec<UserWrite>,
    pub orgs: Vec<Org>,
    pub sessions_put: Vec<(TokenHash, Session)>,
    pub sessions_delete: Vec<TokenHash>,
    /// Every session, challenge and API key of these users is deleted.
    pub revoke_sessions_of: Vec<Uuid>,
    pub audit: Vec<AuditDraft>,
    pub meta_put: Vec<(&'static str, Vec<u8>)>,
}

/// Wakes a node when a commit may have happened elsewhere. A wake-up carries no data: the node
/// reads what changed with [`Store::changes_since`], so a lost or merged wake-up loses nothing.
pub trait CommitListener: Send {
    /// Wait up to `timeout` for a commit: `Ok(true)` when one was announced, `Ok(false)` when the
    /// time passed without one (the connection was checked then), an error when the connection is
    /// lost (open a new listener, then catch up: announcements meanwhile were missed).
    fn wait(&mut self, timeout: std::time::Duration) -> Result<bool>;
}

/// The room a store takes (`mfadmin check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoreSpace {
    /// Bytes of the store's files (sled) or tables and indexes (PostgreSQL).
    pub on_disk: u64,
    /// Bytes of the records themselves, keys and values, over every table.
    pub records: u64,
    /// Bytes a compaction could give back, when the store can tell.
    pub reclaimable: Option<u64>,
}

pub trait Store: Send + Sync {
    fn get_user(&self, id: Uuid) -> Result<Option<User>>;
    /// [`Store::get_user`] of every id, answers in the order given (a database reads them in
    /// one round trip).
    fn get_users(&self, ids: &[Uuid]) -> Result<Vec<Option<User>>> {
        ids.iter().map(|&id| self.get_user(id)).collect()
    }
    fn user_id_by_name(&self, name: &str) -> Result<Option<Uuid>>;
    /// [`Store::user_id_by_name`] of every name, answers in the order given.
    fn user_ids_by_name(&self, names: &[&str]) -> Result<Vec<Option<Uuid>>> {
        names.iter().map(|n| self.user_id_by_name(n)).collect()
    }
    fn user_id_by_email(&self, email: &str) -> Result<Option<Uuid>>;
    fn user_id_by_number(&self, number: u64) -> Result<Option<Uuid>>;
    /// Visit the ids of users in user-name order until `visit` returns false.
    fn scan_ids_by_name(&self, visit: &mut dyn FnMut(Uuid) -> bool) -> Result<()>;
    /// Visit every user until `visit` returns false.
    fn scan_users(&self, visit: &mut dyn FnMut(User) -> bool) -> Result<()>;
    /// How many users there are, counted (a pass over every user).
    fn user_count(&self) -> Result<usize>;
    /// At least as many as there are users, at once: the highest user number (numbers are
    /// handed out in order and never reused, so it is the count unless some went unused).
    fn user_count_bound(&self) -> Result<usize>;
    /// Reserve `count` fresh user numbers; numbers are never handed out twice.
    fn allocate_numbers(&self, count: u64) -> Result<u64>;

    fn get_org(&self, key: &str) -> Result<Option<Org>>;
    fn orgs(&self) -> Result<Vec<Org>>;
    /// [`Store::get_users`] of `ids` and every org, as one read (a database answers both in one
    /// round trip): what deciding a reset needs.
    fn users_and_orgs(&self, ids: &[Uuid]) -> Result<(Vec<Option<User>>, Vec<Org>)> {
        Ok((self.get_users(ids)?, self.orgs()?))
    }

    fn get_session(&self, hash: &TokenHash) -> Result<Option<Session>>;
    /// The session of a bearer token and, if it has one, the user it belongs to, as one read (a
    /// database answers both in one round trip): what authenticating a request needs.
    fn session_and_user(&self, hash: &TokenHash) -> Result<Option<(Session, Option<User>)>> {
        let Some(session) = self.get_session(hash)? else { return Ok(None) };
        let user = self.get_user(session.user_id)?;
        Ok(Some((session, user)))
    }
    /// Note that the session `seen` (as just read) was used at `at`: one write, not flushed and
    /// outside any transaction, that changes nothing if the session changed or went meanwhile (so
    /// a revoked session never comes back). Callers write at most once a minute per session.
    fn touch_session(&self, hash: &TokenHash, seen: &Session, at: Timestamp) -> Result<()>;
    fn sessions_of(&self, user: Uuid) -> Result<Vec<(TokenHash, Session)>>;
    /// Delete at most `max` sessions, challenges and API keys that expired by `now` (and their
    /// entries in their user's list): a bounded pass, run at open and now and then by the server.
    /// Returns how many went.
    fn delete_expired_sessions(&self, now: Timestamp, max: usize) -> Result<usize>;
    /// How many sessions, challenges and keys that have not expired by `now` `counts` says yes to.
    fn count_sessions(&self, now: Timestamp, counts: &dyn Fn(&Session) -> bool) -> Result<u64>;

    /// Visit audit events in sequence order (or newest first) until `visit` returns false.
    fn scan_audit(&self, newest_first: bool, visit: &mut dyn FnMut(AuditEvent) -> bool) -> Result<()>;
    fn audit_head(&self) -> Result<Option<(u64, [u8; 32])>>;
    /// Hand the store the key of its audit chain: once the chain is keyed, new events are linked
    /// with it (a store opened without it refuses to append to a keyed chain).
    fn set_audit_key(&self, key: ChainKey);
    /// Key the chain from the next event on, in one transaction, if its head is still `head` and it
    /// is not keyed yet: the marker [`META_AUDIT_KEYED_FROM`] is written and the head's hash becomes
    /// `keyed_head` (the keyed link of the last event). Returns false, writing nothing, when the
    /// head moved meanwhile; true when the chain is keyed (by this call or before it).
    fn begin_keyed_chain(&self, head: Option<(u64, [u8; 32])>, keyed_head: Option<[u8; 32]>) -> Result<bool>;
    /// How the chain is linked, given its key.
    fn chain_links(&self, key: &ChainKey) -> Result<ChainLinks> {
        Ok(match decode_keyed_from(self.get_meta(META_AUDIT_KEYED_FROM)?.as_deref())? {
            Some(from) => ChainLinks::keyed_from(key.clone(), from),
            None => ChainLinks::plain(),
        })
    }

    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>>;

    /// Check that every index entry and every user record agree; returns one sentence per problem.
    fn check_indexes(&self) -> Result<Vec<String>>;

    /// How much room the store takes, when it can tell (a pass over every record).
    fn space(&self) -> Result<Option<StoreSpace>> {
        Ok(None)
    }

    /// Apply all the changes in one atomic transaction.
    fn commit(&self, changes: &[Change]) -> Result<()>;
    /// Make everything committed so far durable.
    fn flush(&self) -> Result<()>;
    /// Add many new users (numbered), each with the audit event `audit` makes for it, all or none,
    /// and make them durable: a bulk import into a store in use. Refused, with nothing written,
    /// when any id, user name, email or number is taken.
    fn add_users(&self, users: &[User], audit: &dyn Fn(&User) -> AuditDraft) -> Result<()> {
        let change = Change {
            users: users.iter().map(|u| UserWrite { user: u.clone(), expected_version: None }).collect(),
            audit: users.iter().map(audit).collect(),
            ..Change::default()
        };
        self.commit(&[change])?;
        self.flush()
    }
    /// Write many new users (with their numbers) into a store that no one else uses yet, such as a
    /// demo store being generated: faster and smaller on disk than [`Store::commit`], but not one
    /// transaction. Whatever a commit would refuse is refused before anything is written; the store
    /// is marked unfinished until the last write, and refuses to open if that never came.
    fn load_new_users(&self, users: Vec<User>) -> Result<()> {
        let _ = users;
        Err(crate::error::Error::Storage("this kind of store cannot load users in bulk".into()))
    }
    /// The users and orgs written by commits after the commit sequence number `seq`, for a node
    /// that shares the store with others to catch up. `None` from a store that one process owns
    /// (sled), where there is nothing to catch up on.
    fn changes_since(&self, seq: u64) -> Result<Option<ChangesSince>> {
        let _ = seq;
        Ok(None)
    }
    /// The sequence number of the last commit, for a store that several nodes share: one cheap
    /// read that tells a node whether [`Store::changes_since`] would find anything. `None` from a
    /// store that one process owns (sled).
    fn commit_seq(&self) -> Result<Option<u64>> {
        Ok(None)
    }
    /// Forget which users commits wrote more than `keep` ago (what [`Store::changes_since`] reads),
    /// for a store that several nodes share; how many commits were forgotten. A node whose
    /// watermark is older then reads everything again.
    fn prune_changes(&self, keep: std::time::Duration) -> Result<u64> {
        let _ = keep;
        Ok(0)
    }
    /// A connection of its own that wakes this node when another commits, for a store that several
    /// nodes share; `None` from a store that one process owns (sled).
    fn commit_listener(&self) -> Result<Option<Box<dyn CommitListener>>> {
        Ok(None)
    }
    /// The kind of store, as configs name it (`sled`, `postgres`).
    fn kind(&self) -> &'static str {
        "store"
    }
    /// Every record at one moment, with no commit interleaving, handed to `visit` one at a time in
    /// the order of [`Record`]'s kinds (for backups: nothing is gathered whole). Expired sessions
    /// are left out (`now` says which).
    fn export(&self, now: Timestamp, visit: &mut dyn FnMut(Record) -> Result<()>) -> Result<()> {
        let _ = (now, visit);
        Err(crate::error::Error::Storage("this kind of store cannot make backups".into()))
    }
    /// Put the records that `next` hands out (until `None`) into this store, which must hold no
    /// user, org or audit event yet: a restore. Refused with nothing kept (PostgreSQL: one
    /// transaction) or, for sled, with the caller removing the directory it created.
    fn import(&self, next: &mut dyn FnMut() -> Result<Option<Record>>) -> Result<()> {
        let _ = next;
        Err(crate::error::Error::Storage("this kind of store cannot restore backups".into()))
    }
}

/// One record of a store as a backup carries it: the stored bytes copied as they are (TOTP
/// secrets stay sealed with the key file), with what a store of either kind needs to put it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// The next user number to hand out (numbers are never reused).
    NextNumber(u64),
    /// A setting the service keeps in the store (such as the key check).
    Meta { name: String, value: Vec<u8> },
    Org { key: String, record: Vec<u8> },
    User { id: Uuid, record: Vec<u8> },
    Audit { seq: u64, record: Vec<u8> },
    /// The last audit event's number and hash (the chain's head).
    AuditHead { seq: u64, hash: [u8; 32] },
    Session { hash: TokenHash, record: Vec<u8> },
}

/// How to reach the PostgreSQL store of `config` (its `store.url`, which `kind = "postgres"` requires).
fn postgres_options(config: &crate::config::Config) -> Result<postgres::PgOptions> {
    let url = config.store.url.as_deref().ok_or_else(|| {
        crate::error::Error::invalid("store.kind = \"postgres\" needs store.url (postgres://USER:PASSWORD@HOST:PORT/DATABASE)")
    })?;
    Ok(postgres::PgOptions { config: postgres::parse_url(url)?, pool_size: config.store.pool_size, ca_file: config.store.ca_file.clone() })
}

/// Open the existing store that `config` names: sled in the data directory, or PostgreSQL at
/// `store.url` (whose tables are brought up to date under an advisory lock if an older mfadmin
/// made them). Without a store there, the error says to run `mfadmin init`.
pub fn open_configured(config: &crate::config::Config) -> Result<std::sync::Arc<dyn Store>> {
    use crate::config::StoreKind;
    Ok(match config.store.kind {
        StoreKind::Sled => std::sync::Arc::new(sled::SledStore::open_with_cache(&config.store_dir(), config.store.cache_bytes())?),
        StoreKind::Postgres => std::sync::Arc::new(postgres::PgStore::open(postgres_options(config)?)?),
    })
}

/// Create the store that `config` names; refuses one that holds a store already.
pub fn create_configured(config: &crate::config::Config) -> Result<std::sync::Arc<dyn Store>> {
    use crate::config::StoreKind;
    Ok(match config.store.kind {
        StoreKind::Sled => std::sync::Arc::new(sled::SledStore::create_with_cache(&config.store_dir(), config.store.cache_bytes())?),
        StoreKind::Postgres => std::sync::Arc::new(postgres::PgStore::create(postgres_options(config)?)?),
    })
}

/// Does the store that `config` names exist? (For PostgreSQL this connects to the database.)
pub fn configured_store_exists(config: &crate::config::Config) -> Result<bool> {
    use crate::config::StoreKind;
    match config.store.kind {
        StoreKind::Sled => Ok(sled::SledStore::exists(&config.store_dir())),
        StoreKind::Postgres => postgres::PgStore::exists(postgres_options(config)?),
    }
}

/// Where the store that `config` names is, for messages (a PostgreSQL URL without its password).
pub fn configured_place(config: &crate::config::Config) -> String {
    use crate::config::StoreKind;
    match config.store.kind {
        StoreKind::Sled => config.data_dir().display().to_string(),
        StoreKind::Postgres => postgres_options(config).map_or_else(|_| "PostgreSQL".into(), |o| format!("the PostgreSQL store at {}", postgres::describe(&o.config))),
    }
}
