//! The email and number indexes, kept in buckets of entries instead of one store entry per user.
//!
//! sled writes every change of a page to its log and keeps at most 64 small entries in a leaf
//! (16 upstream; vendor/sled/MFADMIN.md), so an index of one small entry per user costs a large
//! share of the pages the users take, and far more on disk than its content. In buckets of dozens
//! of entries, the two indexes that are only ever looked up by exact key take a few thousand store
//! entries at a million users. The user-name index, also read in name order, is kept in ordered
//! buckets instead (`names`).

use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use uuid::Uuid;

/// Emails are spread over 2^16 buckets by a hash of the lower-cased email.
const EMAIL_BUCKET_BITS: u32 = 16;
/// Numbers are handed out in order: each bucket holds 64 consecutive numbers.
const NUMBER_BUCKET_SHIFT: u32 = 6;

/// The bucket of a lower-cased email. FNV-1a, written out here: the bucket of an email must never
/// change, whatever the version of a library.
pub fn email_bucket(email_key: &[u8]) -> [u8; 2] {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in email_key {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    ((hash >> (64 - EMAIL_BUCKET_BITS)) as u16).to_be_bytes()
}

/// The bucket of a user number; buckets sort in number order.
pub fn number_bucket(number: u64) -> [u8; 8] {
    (number >> NUMBER_BUCKET_SHIFT).to_be_bytes()
}

/// One bucket: its entries, sorted by key, each key once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket<K>(pub Vec<(K, Uuid)>);

impl<K> Bucket<K> {
    pub fn new() -> Bucket<K> {
        Bucket(Vec::new())
    }
}

impl<K: Ord> Bucket<K> {
    /// The id under `key` (a `&str` finds a `String` key).
    pub fn find<Q: Ord + ?Sized>(&self, key: &Q) -> Option<Uuid>
    where
        K: Borrow<Q>,
    {
        self.0.binary_search_by(|(k, _)| k.borrow().cmp(key)).ok().map(|i| self.0[i].1)
    }

    /// Add `key`; false (and nothing changed) when it is already there.
    pub fn insert(&mut self, key: K, id: Uuid) -> bool {
        match self.0.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, (key, id));
                true
            }
        }
    }

    pub fn remove<Q: Ord + ?Sized>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
    {
        if let Ok(at) = self.0.binary_search_by(|(k, _)| k.borrow().cmp(key)) {
            self.0.remove(at);
        }
    }

    /// Is every key in order and there once (a bucket read from the store may be damaged)?
    pub fn is_sorted(&self) -> bool {
        self.0.windows(2).all(|pair| pair[0].0 < pair[1].0)
    }
}

impl<K> Default for Bucket<K> {
    fn default() -> Self {
        Bucket::new()
    }
}

/// Group `(key, id)` entries into their buckets, in bucket order, each bucket sorted.
pub fn group<K: Ord, B: Ord>(entries: impl IntoIterator<Item = (K, Uuid)>, bucket_of: impl Fn(&K) -> B) -> Vec<(B, Bucket<K>)> {
    let mut grouped: std::collections::BTreeMap<B, Bucket<K>> = std::collections::BTreeMap::new();
    for (key, id) in entries {
        grouped.entry(bucket_of(&key)).or_default().0.push((key, id));
    }
    grouped
        .into_iter()
        .map(|(b, mut bucket)| {
            bucket.0.sort_unstable_by(|x, y| x.0.cmp(&y.0));
            (b, bucket)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_email_bucket_is_fixed_by_its_text() {
        // FNV-1a of these bytes, top 16 bits: the same on every machine and in every version.
        assert_eq!(email_bucket(b""), [0xcb, 0xf2]);
        assert_eq!(email_bucket(b"a"), [0xaf, 0x63]);
        assert_ne!(email_bucket(b"alice@acme.example"), email_bucket(b"alice@acme.exampl"));
    }

    #[test]
    fn numbers_share_a_bucket_64_at_a_time_in_order() {
        assert_eq!(number_bucket(0), number_bucket(63));
        assert_ne!(number_bucket(63), number_bucket(64));
        assert!(number_bucket(64) < number_bucket(1 << 40));
    }

    #[test]
    fn a_bucket_keeps_its_keys_sorted_and_once() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut bucket = Bucket::new();
        assert!(bucket.insert(5u64, a));
        assert!(bucket.insert(3u64, b));
        assert!(!bucket.insert(5u64, b), "a key already there is refused");
        assert_eq!(bucket.0, vec![(3, b), (5, a)]);
        assert_eq!(bucket.find(&5), Some(a));
        bucket.remove(&5);
        assert_eq!(bucket.find(&5), None);
        assert!(bucket.is_sorted());
        assert!(!Bucket(vec![(2u64, a), (2u64, b)]).is_sorted());
    }
}
