//! The user-name index, kept in ordered buckets of names instead of one store entry per user.
//!
//! Every store entry is a bucket: its key is the lowest name it may hold, and it records the key of
//! the next bucket as its `upper` bound, so the buckets cover every name once, in order. The first
//! bucket's key is empty. A name is found in the bucket with the greatest key not above it; a
//! bucket that grows past [`SPLIT_ABOVE`] names is split in two. sled opens a store in time
//! proportional to its pages, and a million one-name entries took as many pages as the user records
//! themselves; in buckets they take a few thousand.

use super::buckets::Bucket;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A bucket holding more names than this is split in two.
pub const SPLIT_ABOVE: usize = 64;
/// A bulk load fills buckets to this many names, leaving room for names added later.
pub const FILL: usize = 48;

/// One bucket: its names (lower-cased, sorted, each once) and where its range ends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameBucket {
    /// The next bucket's key, the first name this bucket does not cover; `None` for the last bucket.
    pub upper: Option<String>,
    pub entries: Bucket<String>,
}

/// A stored bucket read in place, without copying its names (the same encoding as [`NameBucket`]).
#[derive(Debug, Deserialize)]
pub struct NameBucketRef<'a> {
    #[serde(borrow)]
    pub upper: Option<&'a str>,
    #[serde(borrow)]
    pub entries: Bucket<&'a str>,
}

/// Where a bucket keyed `key` sends `name`: it holds it, or a later bucket does, or an earlier one.
#[derive(Debug, PartialEq, Eq)]
pub enum Place<'a> {
    Here,
    /// The bucket with this key or one after it.
    After(&'a str),
    Before,
}

impl NameBucket {
    /// Where `name` belongs, seen from this bucket stored under `key`.
    pub fn place<'a>(&'a self, key: &str, name: &str) -> Place<'a> {
        match &self.upper {
            _ if name < key => Place::Before,
            Some(upper) if name >= upper.as_str() => Place::After(upper),
            _ => Place::Here,
        }
    }

    /// When this bucket holds more than [`SPLIT_ABOVE`] names, move its upper half into a new
    /// bucket and return it with its key (its first name); this bucket then ends there.
    pub fn split(&mut self) -> Option<(String, NameBucket)> {
        let names = &mut self.entries.0;
        if names.len() <= SPLIT_ABOVE {
            return None;
        }
        let entries = Bucket(names.split_off(names.len() / 2));
        let key = entries.0[0].0.clone();
        let upper = self.upper.replace(key.clone());
        Some((key, NameBucket { upper, entries }))
    }

    /// Is every name in order, there once, and inside this bucket's range?
    pub fn is_sound(&self, key: &str) -> bool {
        self.entries.is_sorted() && self.entries.0.iter().all(|(n, _)| self.place(key, n) == Place::Here)
    }
}

/// Buckets of [`FILL`] names for `entries` (sorted by name, each once), in key order: the whole index.
pub fn group(entries: Vec<(String, Uuid)>) -> Vec<(String, NameBucket)> {
    let mut buckets: Vec<(String, NameBucket)> = Vec::with_capacity(entries.len().div_ceil(FILL));
    let mut entries = entries.into_iter().peekable();
    while entries.peek().is_some() {
        let chunk: Vec<(String, Uuid)> = entries.by_ref().take(FILL).collect();
        let key = if buckets.is_empty() { String::new() } else { chunk[0].0.clone() };
        if let Some((_, previous)) = buckets.last_mut() {
            previous.upper = Some(key.clone());
        }
        buckets.push((key, NameBucket { upper: None, entries: Bucket(chunk) }));
    }
    buckets
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<(String, Uuid)> {
        list.iter().enumerate().map(|(i, n)| (n.to_string(), Uuid::from_u128(i as u128))).collect()
    }

    #[test]
    fn buckets_cover_every_name_once_in_order() {
        let all: Vec<String> = (0..200).map(|i| format!("user{i:03}")).collect();
        let buckets = group(names(&all.iter().map(String::as_str).collect::<Vec<_>>()));
        assert_eq!(buckets.len(), 200usize.div_ceil(FILL));
        assert_eq!(buckets[0].0, "", "the first bucket starts below every name");
        for pair in buckets.windows(2) {
            assert_eq!(pair[0].1.upper.as_deref(), Some(pair[1].0.as_str()), "each bucket ends where the next starts");
        }
        assert_eq!(buckets.last().unwrap().1.upper, None);
        for (key, bucket) in &buckets {
            assert!(bucket.is_sound(key));
        }
        for name in &all {
            let holders: Vec<&String> = buckets.iter().filter(|(k, b)| b.place(k, name) == Place::Here).map(|(k, _)| k).collect();
            assert_eq!(holders.len(), 1, "{name} has exactly one bucket");
            let bucket = &buckets.iter().find(|(k, _)| k == holders[0]).unwrap().1;
            assert!(bucket.entries.find(name.as_str()).is_some());
        }
    }

    #[test]
    fn a_full_bucket_splits_in_two_that_cover_its_range() {
        let mut bucket = NameBucket { upper: Some("zz".into()), entries: Bucket::new() };
        for i in 0..=SPLIT_ABOVE {
            assert!(bucket.split().is_none(), "not full yet");
            assert!(bucket.entries.insert(format!("m{i:03}"), Uuid::from_u128(i as u128)));
        }
        assert!(!bucket.entries.insert("m000".into(), Uuid::nil()), "a name already there is refused");
        let (key, right) = bucket.split().expect("one past full splits");
        assert_eq!(bucket.entries.0.len() + right.entries.0.len(), SPLIT_ABOVE + 1);
        assert_eq!(bucket.upper.as_deref(), Some(key.as_str()));
        assert_eq!(right.upper.as_deref(), Some("zz"), "the new bucket ends where the old one did");
        assert!(bucket.is_sound("m") && right.is_sound(&key));
        assert_eq!(bucket.place("m", &key), Place::After(&key));
        assert_eq!(right.place(&key, "m000"), Place::Before);
        assert_eq!(right.place(&key, "zz"), Place::After("zz"));
    }

    #[test]
    fn a_bucket_read_in_place_finds_what_the_owned_one_does() {
        let bucket = group(names(&["ann", "bob", "cy"])).remove(0).1;
        let bytes = postcard::to_allocvec(&bucket).unwrap();
        let read: NameBucketRef = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(read.entries.find("bob"), bucket.entries.find("bob"));
        assert_eq!(read.entries.find("bo"), None);
        assert_eq!(read.upper, None);
    }
}
