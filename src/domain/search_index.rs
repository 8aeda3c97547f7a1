//! Which directory slots hold a text or belong to an org, answered from posting bitmaps, so a
//! text filter never asked before reads the few users it may match instead of every user.
//!
//! Every byte, pair of bytes and run of three bytes of a summary's haystack (one field at a time:
//! none spans the newline between fields) has the set of slots holding it. A needle of up to three
//! bytes is answered exactly by one set; a longer one by the intersection of its three-byte runs,
//! a superset that the caller checks against each candidate's haystack.
//!
//! The email domain is the one text most users of a site share, so a piece of it makes nearly
//! everyone a candidate. Each domain therefore has its set of slots too: a needle found in a
//! domain is surely held by that domain's users, and only the other candidates are checked.

use super::directory::Summary;
use hashbrown::HashMap;
use roaring::RoaringBitmap;
use std::hash::{BuildHasher, Hasher};

/// Separates the fields of a haystack; no gram spans it.
const FIELD_SEP: u8 = b'\n';
/// Slots are added in batches of this many when the index is built, so each gram's bitmap grows
/// at its end (cheap) and the pending lists stay small.
const BUILD_BATCH: usize = 1 << 16;
/// Email domains are noted while a directory has no more than this many (a site has a handful;
/// a directory of addresses at a thousand providers gains little from them and would hold a set
/// per address).
const MAX_DOMAINS: usize = 1024;

/// A gram of one to three bytes as a key: its length in the top byte, its bytes below.
type Gram = u32;

fn gram(bytes: &[u8]) -> Gram {
    bytes.iter().fold((bytes.len() as u32) << 24, |key, &b| (key & 0xff00_0000) | ((key & 0x00ff_ffff) << 8) | u32::from(b))
}

/// Every gram of `haystack` (with repeats), one field at a time.
fn grams_of(haystack: &[u8], mut each: impl FnMut(Gram)) {
    for field in haystack.split(|&b| b == FIELD_SEP) {
        for i in 0..field.len() {
            for len in 1..=3.min(field.len() - i) {
                each(gram(&field[i..i + len]));
            }
        }
    }
}

/// Hashes a gram with one multiplication by a per-index odd key (grams are short and plentiful:
/// a million users have about a hundred million of them to note when the index is built).
#[derive(Clone, Copy)]
struct GramHasher {
    key: u64,
    hash: u64,
}

impl Hasher for GramHasher {
    fn finish(&self) -> u64 {
        self.hash
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u32(u32::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.hash = (self.hash ^ u64::from(n)).wrapping_mul(self.key).rotate_left(29);
    }
}

#[derive(Clone, Copy)]
struct GramHashing {
    key: u64,
}

impl Default for GramHashing {
    fn default() -> Self {
        // A key drawn per process, so that nobody can choose names that collide.
        GramHashing { key: std::collections::hash_map::RandomState::new().hash_one(0u64) | 1 }
    }
}

impl BuildHasher for GramHashing {
    type Hasher = GramHasher;

    fn build_hasher(&self) -> GramHasher {
        GramHasher { key: self.key, hash: 0 }
    }
}

/// The text, org and email-domain postings of a directory's slots.
pub struct SearchIndex {
    grams: HashMap<Gram, RoaringBitmap, GramHashing>,
    orgs: std::collections::HashMap<String, RoaringBitmap>,
    /// "@domain" (lower-cased) → the slots whose email is at it; `None` once there were more
    /// than [`MAX_DOMAINS`].
    domains: Option<std::collections::HashMap<String, RoaringBitmap>>,
}

impl Default for SearchIndex {
    fn default() -> Self {
        SearchIndex { grams: HashMap::default(), orgs: std::collections::HashMap::new(), domains: Some(std::collections::HashMap::new()) }
    }
}

/// The "@domain" part of a summary's lower-cased email, if it has one.
fn domain_of(s: &Summary) -> Option<&str> {
    let email = s.haystack.rsplit(FIELD_SEP as char).next().unwrap_or("");
    email.rfind('@').map(|at| &email[at..])
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex").field("grams", &self.grams.len()).field("orgs", &self.orgs.len()).finish()
    }
}

/// The slots a needle may be in: exactly those (`exact`), or a superset to check one by one
/// except for those in `sure`, which hold it.
pub struct Candidates {
    pub slots: RoaringBitmap,
    pub exact: bool,
    pub sure: RoaringBitmap,
}

impl SearchIndex {
    /// Note the summaries of slots `from..`, which hold no slot yet and are above every noted slot.
    pub fn extend(&mut self, summaries: &[Summary], from: usize) {
        for (batch, chunk) in summaries[from..].chunks(BUILD_BATCH).enumerate() {
            let base = from + batch * BUILD_BATCH;
            let mut pending: HashMap<Gram, Vec<u32>, GramHashing> = HashMap::with_hasher(GramHashing::default());
            let mut orgs: std::collections::HashMap<&str, Vec<u32>> = std::collections::HashMap::new();
            let mut domains: std::collections::HashMap<&str, Vec<u32>> = std::collections::HashMap::new();
            for (i, s) in chunk.iter().enumerate() {
                let slot = (base + i) as u32;
                grams_of(s.haystack.as_bytes(), |g| {
                    let list = pending.entry(g).or_default();
                    if list.last() != Some(&slot) {
                        list.push(slot);
                    }
                });
                orgs.entry(s.org.as_str()).or_default().push(slot);
                if let Some(domain) = domain_of(s) {
                    domains.entry(domain).or_default().push(slot);
                }
            }
            for (g, list) in pending {
                append(self.grams.entry(g).or_default(), list);
            }
            for (org, list) in orgs {
                append(self.orgs.entry(org.to_string()).or_default(), list);
            }
            for (domain, list) in domains {
                if let Some(noted) = &mut self.domains {
                    append(noted.entry(domain.to_string()).or_default(), list);
                }
            }
            self.check_domains();
        }
    }

    /// Stop noting domains once there are too many of them.
    fn check_domains(&mut self) {
        if self.domains.as_ref().is_some_and(|d| d.len() > MAX_DOMAINS) {
            self.domains = None;
        }
    }

    /// Note slot `slot` now holds `new` instead of `old` (or, with no `old`, a new slot).
    pub fn replace(&mut self, slot: u32, old: Option<&Summary>, new: &Summary) {
        if let Some(old) = old {
            if old.haystack == new.haystack && old.org == new.org {
                return;
            }
            grams_of(old.haystack.as_bytes(), |g| {
                if let Some(set) = self.grams.get_mut(&g) {
                    set.remove(slot);
                }
            });
            if let Some(set) = self.orgs.get_mut(&old.org) {
                set.remove(slot);
            }
            if let (Some(domains), Some(domain)) = (&mut self.domains, domain_of(old))
                && let Some(set) = domains.get_mut(domain)
            {
                set.remove(slot);
                if set.is_empty() {
                    domains.remove(domain);
                }
            }
        }
        grams_of(new.haystack.as_bytes(), |g| {
            self.grams.entry(g).or_default().insert(slot);
        });
        self.orgs.entry(new.org.clone()).or_default().insert(slot);
        if let (Some(domains), Some(domain)) = (&mut self.domains, domain_of(new)) {
            domains.entry(domain.to_string()).or_default().insert(slot);
        }
        self.check_domains();
    }

    /// The slots whose haystack may hold `needle` (lower-cased), or `None` when the index cannot
    /// tell (an empty needle, or one spanning fields).
    pub fn text(&self, needle: &[u8]) -> Option<Candidates> {
        if needle.is_empty() || needle.contains(&FIELD_SEP) {
            return None;
        }
        if needle.len() <= 3 {
            let slots = self.grams.get(&gram(needle)).cloned().unwrap_or_default();
            return Some(Candidates { slots, exact: true, sure: RoaringBitmap::new() });
        }
        let mut sets = Vec::with_capacity(needle.len() - 2);
        for run in needle.windows(3) {
            match self.grams.get(&gram(run)) {
                Some(set) => sets.push(set),
                None => return Some(Candidates { slots: RoaringBitmap::new(), exact: true, sure: RoaringBitmap::new() }),
            }
        }
        sets.sort_by_key(|s| s.len());
        let mut slots = sets[0].clone();
        for set in &sets[1..] {
            if slots.is_empty() {
                break;
            }
            slots &= *set;
        }
        let mut sure = RoaringBitmap::new();
        if let Some(domains) = &self.domains {
            let finder = memchr::memmem::Finder::new(needle);
            for (domain, set) in domains {
                if finder.find(domain.as_bytes()).is_some() {
                    sure |= set;
                }
            }
        }
        Some(Candidates { slots, exact: false, sure })
    }

    /// The slots of users of `org`.
    pub fn org(&self, org: &str) -> Option<&RoaringBitmap> {
        self.orgs.get(org)
    }

    /// Bytes held by the bitmaps (for reports of memory use).
    pub fn bitmap_bytes(&self) -> u64 {
        let domains = self.domains.iter().flat_map(|d| d.values());
        self.grams.values().chain(self.orgs.values()).chain(domains).map(|b| b.serialized_size() as u64).sum()
    }
}

/// Add ascending `slots`, all above `set`'s largest, at its end.
fn append(set: &mut RoaringBitmap, slots: Vec<u32>) {
    if set.append(slots.iter().copied()).is_err() {
        set.extend(slots);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grams_stay_within_a_field_and_keep_their_length() {
        let mut seen = Vec::new();
        grams_of(b"ab\nc", |g| seen.push(g));
        assert_eq!(seen, [gram(b"a"), gram(b"ab"), gram(b"b"), gram(b"c")]);
        assert_ne!(gram(b"a"), gram(b"\0a"), "the length is part of the key");
        assert_ne!(gram(b"abc"), gram(b"bc"));
    }

    fn summary(slot: u128, email: &str) -> Summary {
        let mut u = crate::domain::directory::tests::user(&format!("u{slot}"), 1);
        u.id = uuid::Uuid::from_u128(slot);
        u.email = email.into();
        Summary::of(&u)
    }

    #[test]
    fn a_piece_of_a_domain_is_surely_held_by_its_users_until_there_are_too_many_domains() {
        let people: Vec<Summary> = (0..10).map(|i| summary(i, if i < 6 { "a@Corp.Example" } else { "b@home.example" })).collect();
        let mut index = SearchIndex::default();
        index.extend(&people, 0);
        let c = index.text(b"corp.ex").unwrap();
        assert!(!c.exact);
        assert_eq!(c.sure.iter().collect::<Vec<_>>(), [0, 1, 2, 3, 4, 5]);
        assert!(index.text(b"a@corp").unwrap().sure.is_empty(), "a piece reaching past the domain is checked");
        // A user who moves to another domain leaves the first one's set.
        index.replace(0, Some(&people[0]), &summary(0, "a@home.example"));
        assert_eq!(index.text(b"corp.ex").unwrap().sure.len(), 5);
        assert_eq!(index.text(b"home").unwrap().sure.len(), 5);
        // Past the bound, domains are no longer noted and every candidate is checked.
        let many: Vec<Summary> = (10..(11 + MAX_DOMAINS as u128)).map(|i| summary(i, &format!("x@d{i}.example"))).collect();
        let mut all = people.clone();
        all.extend(many);
        index.extend(&all, people.len());
        let c = index.text(b"corp.ex").unwrap();
        assert!(c.sure.is_empty());
        assert_eq!(c.slots.len(), 5);
    }
}
