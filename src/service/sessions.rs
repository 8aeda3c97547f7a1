//! What a session records about its use: when it was last used (the idle timeout) and which
//! client made it (which client labels its requests may claim).

use super::Service;
use crate::auth::token;
use crate::domain::Timestamp;
use crate::error::{Error, Result};
use crate::store::{Session, SessionKind};

/// The audit sources of mfadmin's own console and CLI talking to a server. Any HTTP client can
/// send their header; a session's requests are believed to come from them only when its login did.
const OWN_CLIENTS: [&str; 2] = ["http:tui", "http:cli"];

/// A session's last use is written when it is older than this: one write a minute at most, rather
/// than one for every request.
const SEEN_GRANULARITY_SECS: i64 = 60;

/// The most expired sessions, challenges and keys one pass deletes, so that a pass over a store
/// that gathered many stays short; the next pass takes the rest.
pub const EXPIRED_PER_PASS: usize = 10_000;

/// How often `mfadmin serve` deletes expired sessions, challenges and keys.
pub const EXPIRED_PASS_EVERY: std::time::Duration = std::time::Duration::from_secs(10 * 60);

impl Service {
    /// Delete the sessions, challenges and API keys that expired by `now` (at most
    /// [`EXPIRED_PER_PASS`]): they can never be used again, and should not sit in the store or its
    /// backups. Returns how many went.
    pub fn delete_expired_sessions(&self, now: Timestamp) -> Result<usize> {
        let deleted = self.store.delete_expired_sessions(now, EXPIRED_PER_PASS)?;
        if deleted > 0 {
            tracing::info!(deleted, "expired sessions, challenges and keys deleted");
        }
        Ok(deleted)
    }

    /// Login sessions in use at `now`: not expired, and not idle for longer than the idle timeout.
    pub fn active_session_count(&self, now: Timestamp) -> Result<u64> {
        let idle = self.policy.session_idle_secs;
        self.store.count_sessions(now, &|s| s.kind == SessionKind::Session && (idle <= 0 || now - s.last_seen_at < idle))
    }

    /// The bearer token of `session` is being used at `now`: refuse it when it is a login session
    /// unused for longer than the idle timeout; otherwise note the use (at most once a minute).
    pub(super) fn note_use(&self, bearer: &str, session: &Session, now: Timestamp) -> Result<()> {
        if session.kind != SessionKind::Session {
            return Ok(());
        }
        let idle = self.policy.session_idle_secs;
        if idle > 0 && now - session.last_seen_at >= idle {
            return Err(Error::Unauthenticated(format!(
                "the session was unused for more than {} minutes ([session] idle_minutes); log in again",
                idle / 60
            )));
        }
        if now - session.last_seen_at >= SEEN_GRANULARITY_SECS
            && let Err(e) = self.store.touch_session(&token::hash(bearer.trim()), session, now)
        {
            // The request goes on; the session may end early, which is the safe side.
            tracing::warn!("cannot note the use of a session: {e}");
        }
        Ok(())
    }

    /// The audit source of a request with `session`: a claim to be mfadmin's console or CLI is
    /// marked as such (`http:tui?`) unless the session was made by their own login.
    pub(super) fn vouched_source(&self, claimed: &str, session: &Session) -> String {
        if OWN_CLIENTS.contains(&claimed) && !OWN_CLIENTS.contains(&session.made_by.as_str()) {
            format!("{claimed}?")
        } else {
            claimed.to_string()
        }
    }
}
