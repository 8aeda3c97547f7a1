//! The bytes of stored records, shared by every store: postcard in a versioned envelope.

use crate::domain::audit::AuditDraft;
use crate::domain::Timestamp;
use crate::domain::mfa::{Lockout, MfaState};
use crate::domain::role::Role;
use crate::domain::user::{Status, User};
use crate::error::{Error, Result};
use crate::store::Session;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Stored values are wrapped in a versioned enum: a later record layout is a new variant that old
/// records are migrated from when read, so adding a field never breaks an existing store.
#[derive(Serialize, Deserialize)]
pub(super) enum Versioned<T> {
    V1(T),
}

/// The stored layouts of a user record. V1 had no record of the factor's last use.
#[derive(Deserialize)]
enum StoredUser {
    V1(UserV1),
    V2(User),
}

/// A user record as the first layout stored it; read and converted, never written.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct UserV1 {
    id: Uuid,
    number: u64,
    username: String,
    email: String,
    display_name: String,
    org: String,
    role: Role,
    status: Status,
    password_hash: Option<String>,
    mfa: MfaState,
    lockout: Lockout,
    recovery_codes: Vec<[u8; 32]>,
    created_at: Timestamp,
    last_login_at: Option<Timestamp>,
    mfa_enrolled_at: Option<Timestamp>,
    mfa_reset_at: Option<Timestamp>,
    version: u64,
}

impl From<UserV1> for User {
    fn from(u: UserV1) -> User {
        User {
            id: u.id,
            number: u.number,
            username: u.username,
            email: u.email,
            display_name: u.display_name,
            org: u.org,
            role: u.role,
            status: u.status,
            password_hash: u.password_hash,
            mfa: u.mfa,
            lockout: u.lockout,
            recovery_codes: u.recovery_codes,
            created_at: u.created_at,
            last_login_at: u.last_login_at,
            mfa_enrolled_at: u.mfa_enrolled_at,
            mfa_last_used_at: None,
            mfa_last_client: None,
            mfa_reset_at: u.mfa_reset_at,
            version: u.version,
        }
    }
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
    if user.version == version {
        encode_user_record(user)
    } else {
        encode_user_record(&User { version, ..user.clone() })
    }
}

/// A user record as stored: the current layout ([`StoredUser::V2`]), version and all as it is.
pub(super) fn encode_user_record(user: &User) -> Vec<u8> {
    #[derive(Serialize)]
    enum StoredUserRef<'a> {
        #[allow(dead_code)]
        V1(()),
        V2(&'a User),
    }
    // The strings and hashes, plus room for the fixed fields and the sealed secret.
    let capacity = 160
        + user.username.len()
        + user.email.len()
        + user.display_name.len()
        + user.org.len()
        + user.password_hash.as_ref().map_or(0, String::len)
        + user.mfa_last_client.as_ref().map_or(0, String::len)
        + 32 * user.recovery_codes.len();
    postcard::to_extend(&StoredUserRef::V2(user), Vec::with_capacity(capacity)).expect("in-memory records always encode")
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
    let user = decode_user_record(key, bytes)?;
    if user.id.as_bytes() != key {
        return Err(Error::Corrupt(format!("user record {} holds the id {}", describe_key(key), user.id)));
    }
    Ok(user)
}

/// A user record of any layout, as the current one, whatever id it holds.
pub(super) fn decode_user_record(key: &[u8], bytes: &[u8]) -> Result<User> {
    match postcard::from_bytes::<StoredUser>(bytes) {
        Ok(StoredUser::V1(old)) => Ok(old.into()),
        Ok(StoredUser::V2(user)) => Ok(user),
        Err(e) => Err(Error::Corrupt(format!("user record {} cannot be decoded ({e})", describe_key(key)))),
    }
}

/// A session as written before it had `last_seen_at` and `made_by`.
#[derive(Deserialize)]
struct SessionBefore {
    user_id: Uuid,
    kind: crate::store::SessionKind,
    created_at: Timestamp,
    expires_at: Timestamp,
}

/// A session record of either layout (postcard ignores trailing bytes, so an older binary still
/// reads a newer record; this reads an older one). An old session counts as last seen when made.
pub(super) fn decode_session(key: &[u8], bytes: &[u8]) -> Result<Session> {
    decode::<Session>("session", key, bytes).or_else(|e| match decode::<SessionBefore>("session", key, bytes) {
        Ok(old) => Ok(Session::new(old.user_id, old.kind, old.created_at, old.expires_at, "")),
        Err(_) => Err(e),
    })
}

pub(super) fn describe_key(key: &[u8]) -> String {
    match Uuid::from_slice(key) {
        Ok(id) => id.to_string(),
        Err(_) => String::from_utf8(key.to_vec()).unwrap_or_else(|_| hex::encode(key)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_of_the_first_layout_reads_as_a_factor_never_used() {
        let old = UserV1 {
            id: Uuid::new_v4(),
            number: 7,
            username: "alice".into(),
            email: "alice@example.org".into(),
            display_name: "Alice".into(),
            org: "acme".into(),
            role: Role::Member,
            status: Status::Active,
            password_hash: None,
            mfa: MfaState::NotEnrolled,
            lockout: Lockout::default(),
            recovery_codes: vec![[1; 32]],
            created_at: 1_800_000_000,
            last_login_at: Some(1_800_000_100),
            mfa_enrolled_at: Some(1_800_000_050),
            mfa_reset_at: None,
            version: 4,
        };
        let bytes = encode(&old);
        let user = decode_user(old.id.as_bytes(), &bytes).unwrap();
        assert_eq!((user.username.as_str(), user.number, user.version, user.recovery_codes.len()), ("alice", 7, 4, 1));
        assert_eq!((user.mfa_last_used_at, user.mfa_last_client.as_deref()), (None, None));
        // Written again, it is the current layout, and reads back the same.
        assert_eq!(decode_user(old.id.as_bytes(), &encode_user_record(&user)).unwrap(), user);
    }
}
