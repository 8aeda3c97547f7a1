//! The schema version of a store, checked at open, and the steps that bring an older store up to date.

use crate::error::{Error, Result};

/// The schema this binary writes. Records carry their own version too (see `sled::Versioned`).
/// 2: the email and number indexes are kept in buckets (a store of schema 1 is brought up to
/// date when it is opened). 3: the user-name index is kept in ordered buckets (likewise). 4: an
/// import's audit events may be kept several to a stored entry (nothing to bring up to date).
pub const SCHEMA_VERSION: u32 = 4;

/// Decide what to do with a store found at `found`: nothing, migrate, or refuse.
pub fn check(found: u32) -> Result<()> {
    match found {
        1..=SCHEMA_VERSION => Ok(()),
        v if v > SCHEMA_VERSION => Err(Error::Corrupt(format!(
            "this store has schema version {v}, written by a newer mfadmin; this binary understands up to {SCHEMA_VERSION}. Use the newer mfadmin"
        ))),
        v => Err(Error::Corrupt(format!("unknown schema version {v}"))),
    }
}
