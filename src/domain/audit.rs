//! Audit events and their hash chain: each event carries the hash of the one before it, keyed
//! (HMAC-SHA256 under a key derived from the key file) from the event the chain was keyed at on, so
//! that whoever can write the store but not read the key file cannot rewrite history consistently.

use super::Timestamp;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::digest::Update;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The key that links a keyed chain: HMAC-SHA256 under `Sealer::mac("audit-chain")`.
pub type ChainKey = Hmac<Sha256>;

/// How the links of new events are computed: plain SHA-256 (a store whose chain was never keyed),
/// or HMAC-SHA256 under the chain key.
#[derive(Clone)]
pub enum Linker {
    Plain,
    Keyed(ChainKey),
}

impl std::fmt::Debug for Linker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Linker::Plain => "Linker::Plain",
            Linker::Keyed(_) => "Linker::Keyed(<key>)",
        })
    }
}

impl Linker {
    /// The link the event after this one carries: the hash (or MAC) of every field of the event
    /// that links `d` as number `seq` after `prev_hash`.
    pub fn hash_of(&self, seq: u64, prev_hash: &[u8; 32], d: &AuditDraft) -> [u8; 32] {
        match self {
            Linker::Plain => {
                let mut h = Sha256::new();
                feed(&mut h, seq, prev_hash, d);
                h.finalize().into()
            }
            Linker::Keyed(key) => {
                let mut h = key.clone();
                feed(&mut h, seq, prev_hash, d);
                h.finalize().into_bytes().into()
            }
        }
    }

    pub fn is_plain(&self) -> bool {
        matches!(self, Linker::Plain)
    }

    /// [`Linker::hash_of`] of a stored event.
    pub fn hash(&self, e: &AuditEvent) -> [u8; 32] {
        self.hash_of(e.seq, &e.prev_hash, &e.draft)
    }
}

/// A chain key from raw key bytes (for tests and tools; the service derives it from the key file).
pub fn chain_key(bytes: &[u8]) -> ChainKey {
    <ChainKey as KeyInit>::new_from_slice(bytes).expect("HMAC takes a key of any length")
}

/// Every field of an event, each unambiguously delimited, into `h`.
fn feed(h: &mut impl Update, seq: u64, prev_hash: &[u8; 32], d: &AuditDraft) {
    h.update(&seq.to_be_bytes());
    h.update(prev_hash);
    h.update(&d.at.to_be_bytes());
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
                h.update(&[1]);
                h.update(&(s.len() as u64).to_be_bytes());
                h.update(s.as_bytes());
            }
            None => h.update(&[0]),
        }
    }
    h.update(&d.target_id.map_or([0u8; 16], |id| *id.as_bytes()));
}

/// How a whole chain is linked: plain SHA-256 up to the event before `keyed_from`, keyed from
/// there on (and the head keyed). A plain chain has no `keyed_from`. Keying the link of one event
/// protects every event before it too, since each hash covers the link before it.
#[derive(Clone, Debug)]
pub struct ChainLinks {
    keyed: Linker,
    keyed_from: u64,
}

impl ChainLinks {
    /// A chain that was never keyed.
    pub fn plain() -> ChainLinks {
        ChainLinks { keyed: Linker::Plain, keyed_from: u64::MAX }
    }

    /// A chain whose events from number `from` on carry keyed links.
    pub fn keyed_from(key: ChainKey, from: u64) -> ChainLinks {
        ChainLinks { keyed: Linker::Keyed(key), keyed_from: from }
    }

    /// The linker of the link that event number `carrier` carries.
    pub fn linker_for(&self, carrier: u64) -> &Linker {
        if carrier >= self.keyed_from { &self.keyed } else { &Linker::Plain }
    }

    /// The link the event after `e` carries (and the head holds while `e` is the last).
    pub fn link_after(&self, e: &AuditEvent) -> [u8; 32] {
        self.linker_for(e.seq.saturating_add(1)).hash(e)
    }
}

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

    /// The plain SHA-256 link of this event (the link of a chain that was never keyed).
    pub fn hash(&self) -> [u8; 32] {
        Linker::Plain.hash(self)
    }

    /// [`AuditEvent::hash`] of the event that links `d` as number `seq` after `prev_hash`, without
    /// building the event.
    pub fn hash_of(seq: u64, prev_hash: &[u8; 32], d: &AuditDraft) -> [u8; 32] {
        Linker::Plain.hash_of(seq, prev_hash, d)
    }
}

/// Where the chain is broken, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    pub seq: u64,
    pub why: String,
}

/// The state of a chain walk: feed events in sequence order, then `finish`.
#[derive(Debug)]
pub struct ChainCheck {
    expected_seq: u64,
    prev_hash: [u8; 32],
    links: ChainLinks,
}

impl Default for ChainCheck {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainCheck {
    /// A walk of a chain that was never keyed.
    pub fn new() -> Self {
        Self::with_links(ChainLinks::plain())
    }

    /// A walk of a chain linked as `links` says.
    pub fn with_links(links: ChainLinks) -> Self {
        ChainCheck { expected_seq: 1, prev_hash: [0; 32], links }
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
                why: if event.seq >= self.links.keyed_from {
                    format!(
                        "event {} does not carry the keyed hash of event {}: it or an earlier one was altered, or the log was rewritten without the key file",
                        event.seq,
                        event.seq - 1
                    )
                } else {
                    format!("event {} does not carry the hash of event {}: it or an earlier one was altered", event.seq, event.seq - 1)
                },
            });
        }
        self.prev_hash = self.links.link_after(event);
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
            _ if self.links.keyed_from <= count + 1 => Err(BrokenLink {
                seq: count,
                why: format!("event {count} was altered after it was recorded, or the chain was rewritten without the key file (head hash mismatch)"),
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

    /// A chain keyed from `from` on, as a store that was keyed after `from - 1` events links it.
    fn keyed_chain(n: u64, links: &ChainLinks) -> Vec<AuditEvent> {
        let mut prev = [0u8; 32];
        (1..=n)
            .map(|seq| {
                let e = AuditEvent::link(draft(seq as i64), seq, prev);
                prev = links.link_after(&e);
                e
            })
            .collect()
    }

    fn verify_with(events: &[AuditEvent], links: &ChainLinks) -> Result<u64, BrokenLink> {
        let head = events.last().map(|e| (e.seq, links.link_after(e)));
        let mut check = ChainCheck::with_links(links.clone());
        for e in events {
            check.step(e)?;
        }
        check.finish(head)
    }

    #[test]
    fn a_keyed_chain_verifies_only_with_its_key() {
        let links = ChainLinks::keyed_from(chain_key(b"k1"), 4);
        let events = keyed_chain(6, &links);
        assert_eq!(verify_with(&events, &links), Ok(6));
        assert_eq!(verify_with(&events, &ChainLinks::keyed_from(chain_key(b"k2"), 4)).unwrap_err().seq, 4, "another key");
        assert_eq!(verify_with(&events, &ChainLinks::plain()).unwrap_err().seq, 4, "read as plain, the first keyed link breaks");
        assert_eq!(verify_with(&events, &ChainLinks::keyed_from(chain_key(b"k1"), 2)).unwrap_err().seq, 2, "a moved marker breaks it");
    }

    /// Rewriting an early event and recomputing every plain link after it is caught by the first
    /// keyed link: it covers the plain links before it.
    #[test]
    fn a_consistent_plain_rewrite_before_the_keyed_part_is_caught() {
        let links = ChainLinks::keyed_from(chain_key(b"k1"), 4);
        let mut events = keyed_chain(6, &links);
        events[1].draft.reason = Some("rewritten".into());
        for i in 2..3 {
            events[i].prev_hash = events[i - 1].hash();
        }
        let err = verify_with(&events, &links).unwrap_err();
        assert_eq!(err.seq, 4);
        assert!(err.why.contains("without the key file"), "{}", err.why);
        // With no keyed event after it, the keyed head catches it.
        let mut short = keyed_chain(3, &links);
        let head = Some((3, links.link_after(&short[2])));
        short[0].draft.actor = "someone".into();
        short[1].prev_hash = short[0].hash();
        short[2].prev_hash = short[1].hash();
        let mut check = ChainCheck::with_links(links.clone());
        short.iter().for_each(|e| check.step(e).unwrap());
        assert_eq!(check.finish(head).unwrap_err().seq, 3);
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
