//! The bytes of stored records, shared by every store: postcard in a versioned envelope.

use crate::domain::audit::AuditDraft;
use crate::domain::user::User;
use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Stored values are wrapped in a versioned enum: a later record layout is a new variant that old
/// records are migrated from when read, so adding a field never breaks an existing store.
#[derive(Serialize, Deserialize)]
pub(super) enum Versioned<T> {
    V1(T),
}

/// Encode a record as the current variant of [`Versioned`], without copying it.
pub(super) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    encode_sized(value, 0)
}

/// [`encode`] into a buffer of `capacity` bytes to start with (a good guess saves the growing).
pub(super) fn encode_sized<T: Serialize>(value: &T, capacity: usize) -> Vec<u8> {
    #[derive(Serialize)]
    enum VersionedRef<'a, T> {
        V1(&'a T),
    }
    postcard::to_extend(&VersionedRef::V1(value), Vec::with_capacity(capacity)).expect("in-memory records always encode")
}

/// A user record as written over `expected_version`: its version is the next one. A record that
/// already carries it is encoded as it is, without a copy.
pub(super) fn encode_user(user: &User, expected_version: Option<u64>) -> Vec<u8> {
    let version = expected_version.map_or(1, |v| v + 1);
    // The strings and hashes, plus room for the fixed fields and the sealed secret.
    let capacity = 160
        + user.username.len()
        + user.email.len()
        + user.display_name.len()
        + user.org.len()
        + user.password_hash.as_ref().map_or(0, String::len)
        + 32 * user.recovery_codes.len();
    if user.version == version {
        encode_sized(user, capacity)
    } else {
        encode_sized(&User { version, ..user.clone() }, capacity)
    }
}

/// An audit event as stored, encoded from its parts without copying the draft: the same bytes as
/// [`encode`] of the [`AuditEvent`].
pub(super) fn encode_audit(seq: u64, prev_hash: [u8; 32], draft: &AuditDraft) -> Vec<u8> {
    #[derive(Serialize)]
    struct AuditEventRef<'a> {
        seq: u64,
        prev_hash: [u8; 32],
        draft: &'a AuditDraft,
    }
    let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    let capacity = 96
        + draft.actor.len()
        + draft.action.len()
        + draft.source.len()
        + text(&draft.target)
        + text(&draft.org)
        + text(&draft.reason)
        + text(&draft.detail);
    encode_sized(&AuditEventRef { seq, prev_hash, draft }, capacity)
}

pub(super) fn decode<T: DeserializeOwned>(what: &str, key: &[u8], bytes: &[u8]) -> Result<T> {
    decode_in_place(what, key, bytes)
}

/// [`decode`] into a value that borrows from `bytes` instead of copying them.
pub(super) fn decode_in_place<'a, T: Deserialize<'a>>(what: &str, key: &[u8], bytes: &'a [u8]) -> Result<T> {
    match postcard::from_bytes::<Versioned<T>>(bytes) {
        Ok(Versioned::V1(v)) => Ok(v),
        Err(e) => Err(Error::Corrupt(format!("{what} record {} cannot be decoded ({e})", describe_key(key)))),
    }
}

/// A user record, which must hold the id it is stored under: a damaged id would otherwise make the
/// next write land under another key.
pub(super) fn decode_user(key: &[u8], bytes: &[u8]) -> Result<User> {
    let user: User = decode("user", key, bytes)?;
    if user.id.as_bytes() != key {
        return Err(Error::Corrupt(format!("user record {} holds the id {}", describe_key(key), user.id)));
    }
    Ok(user)
}

pub(super) fn describe_key(key: &[u8]) -> String {
    match Uuid::from_slice(key) {
        Ok(id) => id.to_string(),
        Err(_) => String::from_utf8(key.to_vec()).unwrap_or_else(|_| hex::encode(key)),
    }
}
