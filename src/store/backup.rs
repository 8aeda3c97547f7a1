//! Backup files: one consistent snapshot of every tree of the store, with a header and a checksum.
//! Taking and restoring one is the store's business (`SledStore::snapshot`, `SledStore::restore`).
//!
//! Layout (all integers big-endian):
//!
//! | bytes | what |
//! | --- | --- |
//! | 15 | `MAGIC`, `mfadmin-backup` and a NUL |
//! | 4 | format version ([`FORMAT_VERSION`]) |
//! | 8 | length of the body |
//! | n | body: postcard of [`Snapshot`] (schema version, time, every tree's key/value pairs) |
//! | 32 | SHA-256 of everything before it |
//!
//! Records are copied byte for byte: TOTP secrets stay sealed, so a restore needs the key file the
//! store was created with, which is not in the backup.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const MAGIC: &[u8; 15] = b"mfadmin-backup\0";
pub const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = MAGIC.len() + 4 + 8;
const CHECKSUM_LEN: usize = 32;

/// Every tree of a store at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub schema_version: u32,
    /// Unix seconds when it was taken.
    pub taken_at: i64,
    pub trees: Vec<TreeDump>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeDump {
    pub name: Vec<u8>,
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
}

/// How much a snapshot holds, for people to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Counts {
    pub users: usize,
    pub orgs: usize,
    pub audit_events: usize,
    pub sessions: usize,
}

impl Snapshot {
    pub fn counts(&self) -> Counts {
        let len = |name: &str| self.trees.iter().find(|t| t.name == name.as_bytes()).map_or(0, |t| t.entries.len());
        Counts { users: len("users"), orgs: len("orgs"), audit_events: len("audit"), sessions: len("sessions") }
    }

    /// The backup file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let body = postcard::to_stdvec(self).expect("in-memory snapshots always encode");
        let mut out = Vec::with_capacity(HEADER_LEN + body.len() + CHECKSUM_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        out.extend_from_slice(&(body.len() as u64).to_be_bytes());
        out.extend_from_slice(&body);
        let sum: [u8; 32] = Sha256::digest(&out).into();
        out.extend_from_slice(&sum);
        out
    }

    /// Read a backup file's bytes, refusing anything truncated, damaged or not a backup.
    pub fn decode(bytes: &[u8]) -> Result<Snapshot> {
        let bad = |why: String| Error::Corrupt(format!("the backup {why}"));
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(Error::invalid("this file is not an mfadmin backup (it does not start with the backup header)"));
        }
        if bytes.len() < HEADER_LEN {
            return Err(bad("is truncated: it ends inside its header".into()));
        }
        let version = u32::from_be_bytes(bytes[MAGIC.len()..MAGIC.len() + 4].try_into().expect("4 bytes"));
        if version > FORMAT_VERSION {
            return Err(bad(format!(
                "has format version {version}, written by a newer mfadmin; this one reads up to {FORMAT_VERSION}"
            )));
        }
        if version == 0 {
            return Err(bad("has format version 0, which no mfadmin writes".into()));
        }
        let body_len = u64::from_be_bytes(bytes[MAGIC.len() + 4..HEADER_LEN].try_into().expect("8 bytes"));
        let expected = (HEADER_LEN as u64).saturating_add(body_len).saturating_add(CHECKSUM_LEN as u64);
        if (bytes.len() as u64) < expected {
            return Err(bad(format!("is truncated: {} bytes of the {expected} it should have", bytes.len())));
        }
        if (bytes.len() as u64) > expected {
            return Err(bad(format!("has {} bytes after its end: it is damaged", bytes.len() as u64 - expected)));
        }
        let (content, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        let actual: [u8; 32] = Sha256::digest(content).into();
        if actual.as_slice() != sum {
            return Err(bad("is damaged: its checksum does not match its content".into()));
        }
        let snapshot: Snapshot = postcard::from_bytes(&content[HEADER_LEN..])
            .map_err(|e| bad(format!("has a checksum that matches but a body that does not decode ({e})")))?;
        Ok(snapshot)
    }
}
