//! The one error type of the service boundary; front ends map it to exit codes or HTTP statuses.

use std::path::PathBuf;

/// Why an operation did not happen. Every variant's message is written for the person who will read
/// it: what was wrong and, where there is one, what to do instead.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidInput(String),
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{0}")]
    Conflict(String),
    #[error("permission denied: {0}")]
    Forbidden(String),
    #[error("authentication failed: {0}")]
    Unauthenticated(String),
    #[error("too many failed attempts: the second factor is locked for {retry_after_secs} more seconds")]
    Locked { retry_after_secs: u64 },
    #[error("the data directory {dir} is in use by another mfadmin process{holder}. A store can be opened by one process at a time. {advice}")]
    StoreLocked {
        dir: PathBuf,
        /// Who holds it (`: mfadmin serve (PID 812)`), from its owner file; see [`crate::store::owner`].
        holder: String,
        /// What to do about it.
        advice: String,
    },
    #[error("no store in {dir}: run `mfadmin init --org NAME --owner USER` (or `mfadmin demo --users 1000`) first")]
    NoStore { dir: PathBuf },
    #[error("{0}")]
    KeyFile(String),
    #[error("the store is damaged: {0}")]
    Corrupt(String),
    #[error("storage error: {0}")]
    Storage(String),
    #[error("the store changed while this operation ran; try again")]
    WriteConflict,
    /// A remote console's server did not answer (or its answer was lost on the way).
    #[error("the server at {url} does not answer: {why}")]
    Unreachable { url: String, why: String },
    /// What a remote console's server answered with an error status: its words, as they were.
    #[error("{detail}")]
    Remote { status: u16, detail: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidInput(msg.into())
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound { what: what.into() }
    }

    /// Must the admin log in (again)? A token that is unknown, revoked or expired.
    pub fn needs_login(&self) -> bool {
        matches!(self, Error::Unauthenticated(_) | Error::Remote { status: 401, .. })
    }
}
