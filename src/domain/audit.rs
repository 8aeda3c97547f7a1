//! Audit events and their hash chain: each event carries the hash of the one before it.

use super::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Denied,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failure => "failure",
        }
    }
}

/// What the service wants recorded; the store gives it a sequence number and links it into the chain
/// in the same transaction as the change it describes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditDraft {
    pub at: Timestamp,
    /// `console:<os user>`, a user name, or `apikey:<name>`.
    pub actor: String,
    /// e.g. `mfa.reset`, `user.add`, `org.enforce_mfa`.
    pub action: String,
    pub target_id: Option<Uuid>,
    pub target: Option<String>,
    pub org: Option<String>,
    pub outcome: Outcome,
    pub reason: Option<String>,
    /// What else a reader needs: why it was denied, how many were imported.
    pub detail: Option<String>,
    /// `cli`, `tui`, `http` or `http:<vendor>`.
    pub source: String,
}

/// A stored audit event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub seq: u64,
    pub prev_hash: [u8; 32],
    pub draft: AuditDraft,
}

impl AuditEvent {
    /// Link a draft after the event numbered `seq - 1` whose hash is `prev_hash`.
    pub fn link(draft: AuditDraft, seq: u64, prev_hash: [u8; 32]) -> AuditEvent {
        AuditEvent { seq, prev_hash, draft }
    }

    /// The hash the next event must carry: SHA-256 over every field of this one.
    pub fn hash(&self) -> [u8; 32] {
        Self::hash_of(self.seq, &self.prev_hash, &self.draft)
    }

    /// [`AuditEvent::hash`] of the event that links `d` as number `seq` after `prev_hash`, without
    /// building the event.
    pub fn hash_of(seq: u64, prev_hash: &[u8; 32], d: &AuditDraft) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(seq.to_be_bytes());
        h.update(prev_hash);
        h.update(d.at.to_be_bytes());
        for field in [
            Some(d.actor.as_str()),
            Some(d.action.as_str()),
            d.target.as_deref(),
            d.org.as_deref(),
            Some(d.outcome.as_str()),
            d.reason.as_deref(),
            d.detail.as_deref(),
            Some(d.source.as_str()),
        ] {
            match field {
                Some(s) => {
                    h.update([1]);
                    h.update((s.len() as u64).to_be_bytes());
                    h.update(s.as_bytes());
                }
                None => h.update([0]),
            }
        }
        h.update(d.target_id.map_or([0u8; 16], |id| *id.as_bytes()));
        h.finalize().into()
    }
}

/// Where the chain is broken, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    pub seq: u64,
    pub why: String,
}

/// The state of a chain walk: feed events in sequence order, then `finish`.
#[derive(Debug, Default)]
pub struct ChainCheck {
    expected_seq: u64,
    prev_hash: [u8; 32],
}

impl ChainCheck {
    pub fn new() -> Self {
        ChainCheck { expected_seq: 1, prev_hash: [0; 32] }
    }

    pub fn step(&mut self, event: &AuditEvent) -> Result<(), BrokenLink> {
        if event.seq != self.expected_seq {
            return Err(BrokenLink {
                seq: self.expected_seq,
                why: format!("event {} is missing (found {} next)", self.expected_seq, event.seq),
            });
        }
        if event.prev_hash != self.prev_hash {
            return Err(BrokenLink {
                seq: event.seq,
                why: format!("event {} does not carry the hash of event {}: it or an earlier one was altered", event.seq, event.seq - 1),
            });
        }
        self.prev_hash = event.hash();
        self.expected_seq += 1;
        Ok(())
    }

    /// Check the end of the walk against the head the store recorded.
    pub fn finish(self, head: Option<(u64, [u8; 32])>) -> Result<u64, BrokenLink> {
        let count = self.expected_seq - 1;
        match head {
            None if count == 0 => Ok(0),
            Some((seq, hash)) if seq == count && hash == self.prev_hash => Ok(count),
            Some((seq, _)) if seq > count => Err(BrokenLink {
                seq: count + 1,
                why: format!("the log ends at event {count} but the chain head says {seq}: events were removed"),
            }),
            _ => Err(BrokenLink { seq: count, why: format!("event {count} was altered after it was recorded (head hash mismatch)") }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(n: i64) -> AuditDraft {
        AuditDraft {
            at: n,
            actor: "console:root".into(),
            action: "mfa.reset".into(),
            target_id: None,
            target: Some(format!("user{n}")),
            org: Some("acme".into()),
            outcome: Outcome::Success,
            reason: Some("lost phone".into()),
            detail: None,
            source: "cli".into(),
        }
    }

    fn chain(n: u64) -> Vec<AuditEvent> {
        let mut prev = [0u8; 32];
        (1..=n)
            .map(|seq| {
                let e = AuditEvent::link(draft(seq as i64), seq, prev);
                prev = e.hash();
                e
            })
            .collect()
    }

    fn verify(events: &[AuditEvent]) -> Result<u64, BrokenLink> {
        let head = events.last().map(|e| (e.seq, e.hash()));
        let mut check = ChainCheck::new();
        for e in events {
            check.step(e)?;
        }
        check.finish(head)
    }

    #[test]
    fn intact_chain_verifies() {
        assert_eq!(verify(&chain(5)), Ok(5));
        assert_eq!(verify(&[]), Ok(0));
    }

    #[test]
    fn altered_event_is_named() {
        let mut events = chain(5);
        let head = events.last().map(|e| (e.seq, e.hash()));
        events[2].draft.reason = Some("something else".into());
        let mut check = ChainCheck::new();
        let err = events.iter().try_for_each(|e| check.step(e)).unwrap_err();
        assert_eq!(err.seq, 4, "event 3 was altered, so event 4's link breaks");
        let _ = head;
    }

    #[test]
    fn removed_event_is_named() {
        let mut events = chain(5);
        events.remove(1);
        assert_eq!(verify(&events).unwrap_err().seq, 2);
    }

    #[test]
    fn altered_last_event_is_caught_by_the_head() {
        let events = chain(3);
        let head = Some((3, events[2].hash()));
        let mut tampered = events.clone();
        tampered[2].draft.actor = "someone".into();
        let mut check = ChainCheck::new();
        tampered.iter().for_each(|e| check.step(e).unwrap());
        assert_eq!(check.finish(head).unwrap_err().seq, 3);
    }
}
