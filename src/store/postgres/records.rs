//! A PostgreSQL store's records for backups: read in one repeatable-read, read-only transaction
//! (through portals, in batches), and written into an empty store in one transaction with COPY.

use super::{advance_head, int8, lock_head, log_restarts_at, pg, scan_in, uint, Failed, PgStore, META_PG_SCHEMA};
use crate::domain::audit::AuditEvent;
use crate::domain::user::Org;
use crate::domain::Timestamp;
use crate::error::{Error, Result};
use crate::store::codec::{decode, decode_session, decode_user};
use crate::store::{Record, TokenHash};
use postgres::error::SqlState;
use postgres::types::{ToSql, Type};
use postgres::Transaction;

/// Rows written per COPY while restoring.
const COPY_BATCH: usize = 5_000;

fn damaged(what: &str) -> Error {
    Error::Corrupt(format!("a {what} row has a damaged key"))
}

/// Every record of `store` at one moment (see `Store::export`).
pub(super) fn export(store: &PgStore, now: Timestamp, visit: &mut dyn FnMut(Record) -> Result<()>) -> Result<()> {
    store.reading(|tx| {
        let next: i64 = tx.query_one("SELECT next FROM numbers", &[]).map_err(pg)?.get(0);
        visit(Record::NextNumber(uint(next, "next user number")?))?;
        scan_in(tx, &format!("SELECT name, value FROM meta WHERE name <> '{META_PG_SCHEMA}' ORDER BY name"), &mut |r| {
            visit(Record::Meta { name: r.get(0), value: r.get(1) })
        })?;
        scan_in(tx, "SELECT key, record FROM orgs ORDER BY key", &mut |r| visit(Record::Org { key: r.get(0), record: r.get(1) }))?;
        scan_in(tx, "SELECT id, record FROM users ORDER BY id", &mut |r| visit(Record::User { id: r.get(0), record: r.get(1) }))?;
        scan_in(tx, "SELECT seq, record FROM audit ORDER BY seq", &mut |r| {
            visit(Record::Audit { seq: uint(r.get(0), "audit sequence number")?, record: r.get(1) })
        })?;
        let head = tx.query_one("SELECT audit_seq, audit_hash FROM head", &[]).map_err(pg)?;
        let seq: i64 = head.get(0);
        if seq > 0 {
            let hash = <[u8; 32]>::try_from(head.get::<_, &[u8]>(1)).map_err(|_| Error::Corrupt("the audit chain head has a damaged hash".into()))?;
            visit(Record::AuditHead { seq: uint(seq, "audit sequence number")?, hash })?;
        }
        // Expired sessions are left behind (the query's text holds no value, so it is bound as it is).
        scan_in(tx, &format!("SELECT hash, record FROM sessions WHERE expires_at > {now} ORDER BY hash"), &mut |r| {
            let hash = TokenHash::try_from(r.get::<_, &[u8]>(0)).map_err(|_| damaged("session"))?;
            visit(Record::Session { hash, record: r.get(1) })
        })
    })
}

/// The kind of rows waiting to be copied.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Table {
    Users,
    Audit,
    Sessions,
}

/// Rows of one table gathered for the next COPY.
struct Pending {
    table: Table,
    rows: Vec<Record>,
}

/// Write `next`'s records into `store`, which holds no user, org or audit event (see `Store::import`):
/// one transaction, so a restore that fails leaves the store as empty as it was.
pub(super) fn import(store: &PgStore, next: &mut dyn FnMut() -> Result<Option<Record>>) -> Result<()> {
    let mut conn = store.conn()?;
    let mut tx = conn.transaction().map_err(pg)?;
    let seq = lock_head(&mut tx).map_err(refused)?.seq;
    let held: i64 = tx
        .query_one("SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM orgs) + (SELECT count(*) FROM audit)", &[])
        .map_err(pg)?
        .get(0);
    if held > 0 {
        return Err(Error::Conflict(format!(
            "the PostgreSQL store at {} already holds users, orgs or audit events: restore into an empty database",
            store.place()
        )));
    }
    let mut head = None;
    let mut pending = Pending { table: Table::Users, rows: Vec::new() };
    while let Some(record) = next()? {
        let table = match &record {
            Record::User { .. } => Some(Table::Users),
            Record::Audit { .. } => Some(Table::Audit),
            Record::Session { .. } => Some(Table::Sessions),
            _ => None,
        };
        if table != Some(pending.table) || pending.rows.len() == COPY_BATCH {
            copy(&mut tx, &mut pending)?;
        }
        match (table, record) {
            (Some(table), record) => {
                pending.table = table;
                pending.rows.push(record);
            }
            (None, Record::NextNumber(n)) => {
                tx.execute_typed("UPDATE numbers SET next = $1", &[(&int8(n, "next user number")?, Type::INT8)]).map_err(pg)?;
            }
            (None, Record::Meta { name, value }) => {
                if name == META_PG_SCHEMA {
                    return Err(Error::Corrupt(format!("the backup holds the store's own setting {name:?} as a record")));
                }
                tx.execute_typed(
                    "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    &[(&name, Type::TEXT), (&value, Type::BYTEA)],
                )
                .map_err(pg)?;
            }
            (None, Record::Org { key, record }) => {
                decode::<Org>("org", key.as_bytes(), &record)?;
                tx.execute_typed(
                    "INSERT INTO orgs (key, commit_seq, record) VALUES ($1, $2, $3)",
                    &[(&key, Type::TEXT), (&seq, Type::INT8), (&record, Type::BYTEA)],
                )
                .map_err(|e| conflict(e, "org"))?;
            }
            (None, Record::AuditHead { seq, hash }) => head = Some((seq, hash)),
            (None, _) => unreachable!("users, audit events and sessions have a table"),
        }
    }
    copy(&mut tx, &mut pending)?;
    log_restarts_at(&mut tx, seq).map_err(refused)?;
    advance_head(&mut tx, seq, head).map_err(refused)?;
    tx.commit().map_err(pg)
}

fn refused(f: Failed) -> Error {
    match f {
        Failed::Refused(e) | Failed::Retry(e) => e,
    }
}

/// A unique key met twice in a backup: damage, named.
fn conflict(e: postgres::Error, what: &str) -> Error {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        let detail = e.as_db_error().and_then(|d| d.detail()).unwrap_or_default().to_owned();
        return Error::Corrupt(format!("the backup holds a {what} twice ({detail}); nothing was restored"));
    }
    pg(e)
}

/// COPY the rows in `pending` into their table, and empty it.
fn copy(tx: &mut Transaction<'_>, pending: &mut Pending) -> Result<()> {
    if pending.rows.is_empty() {
        return Ok(());
    }
    let rows = std::mem::take(&mut pending.rows);
    let (sql, types, what): (&str, &[Type], &str) = match pending.table {
        Table::Users => (
            "COPY users (id, number, name_key, email_key, version, record) FROM STDIN BINARY",
            &[Type::UUID, Type::INT8, Type::TEXT, Type::TEXT, Type::INT8, Type::BYTEA],
            "user (id, name, email or number)",
        ),
        Table::Audit => ("COPY audit (seq, record) FROM STDIN BINARY", &[Type::INT8, Type::BYTEA], "audit event"),
        Table::Sessions => ("COPY sessions (hash, user_id, expires_at, record) FROM STDIN BINARY", &[Type::BYTEA, Type::UUID, Type::INT8, Type::BYTEA], "session"),
    };
    let writer = tx.copy_in(sql).map_err(pg)?;
    let mut writer = postgres::binary_copy::BinaryCopyInWriter::new(writer, types);
    for row in &rows {
        let written = match row {
            Record::User { id, record } => {
                let user = decode_user(id.as_bytes(), record)?;
                let (number, version) = (int8(user.number, "user number")?, int8(user.version, "record version")?);
                let values: [&(dyn ToSql + Sync); 6] =
                    [id, &number, &user.username.to_lowercase(), &user.email.to_lowercase(), &version, record];
                writer.write(&values)
            }
            Record::Audit { seq: n, record } => {
                let event: AuditEvent = decode("audit", &n.to_be_bytes(), record)?;
                if event.seq != *n {
                    return Err(Error::Corrupt(format!("audit event {n} holds the number {}", event.seq)));
                }
                writer.write(&[&int8(*n, "audit sequence number")?, record])
            }
            Record::Session { hash, record } => {
                let session = decode_session(hash, record)?;
                writer.write(&[&&hash[..], &session.user_id, &session.expires_at, record])
            }
            _ => unreachable!("only rows of the pending table are gathered"),
        };
        written.map_err(|e| conflict(e, what))?;
    }
    writer.finish().map_err(|e| conflict(e, what))?;
    Ok(())
}
