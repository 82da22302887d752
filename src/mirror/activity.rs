//! Which keys have mirrored writes in flight: what tells a `race` from a `mismatch`.
//!
//! Keys are hashed into a fixed number of buckets, each with two counters: operations
//! appended to the outbox and not yet settled (`pending`), and operations ever appended
//! (`appended`). The writer counts appends, the deliverer settlements. A read raced its
//! key's writes when the bucket had pending operations when the legacy agent answered it,
//! or got new ones before the comparison. Buckets shared by several keys can only make a
//! comparison a `race` that was not one, never hide a mismatch behind a match; and the
//! memory is fixed however many keys there are.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use xxhash_rust::xxh3::xxh3_64;

const BUCKETS: usize = 1 << 16;

pub struct KeyActivity {
    pending: Box<[AtomicI64]>,
    appended: Box<[AtomicU64]>,
    /// The sum of `pending`: whether any key is busy at all, without hashing one.
    total: AtomicI64,
}

/// A key's bucket counters at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    bucket: usize,
    pending: i64,
    appended: u64,
}

impl KeyActivity {
    pub fn new() -> KeyActivity {
        KeyActivity {
            pending: (0..BUCKETS).map(|_| AtomicI64::new(0)).collect(),
            appended: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            total: AtomicI64::new(0),
        }
    }

    fn bucket(key: &str) -> usize {
        (xxh3_64(key.as_bytes()) % BUCKETS as u64) as usize
    }

    /// `n` operations of `key` appended to the outbox.
    pub fn appended(&self, key: &str, n: u64) {
        let b = Self::bucket(key);
        self.add(b, n as i64);
        self.appended[b].fetch_add(n, Ordering::SeqCst);
    }

    /// A write of `key` handed to the writer and not yet appended (stage `live` announces
    /// writes, so that a read right after one is not served from an orchestrator that
    /// lacks it). [`KeyActivity::absorbed`] ends it.
    pub fn announced(&self, key: &str) {
        self.add(Self::bucket(key), 1);
    }

    /// An announced write was appended (its operations now count themselves) or dropped.
    pub fn absorbed(&self, key: &str) {
        self.add(Self::bucket(key), -1);
    }

    fn add(&self, bucket: usize, n: i64) {
        self.pending[bucket].fetch_add(n, Ordering::SeqCst);
        self.total.fetch_add(n, Ordering::SeqCst);
    }

    /// Whether no key at all is busy (one atomic load).
    pub fn idle(&self) -> bool {
        self.total.load(Ordering::SeqCst) <= 0
    }

    /// Whether `key` may have writes the orchestrator has not applied yet.
    pub fn busy(&self, key: &str) -> bool {
        self.pending[Self::bucket(key)].load(Ordering::SeqCst) > 0
    }

    /// `n` operations of `key` found pending in the outbox at start-up.
    pub fn restored(&self, key: &str, n: u64) {
        self.add(Self::bucket(key), n as i64);
    }

    /// One operation of `key` delivered or dead-lettered.
    pub fn settled(&self, key: &str) {
        self.add(Self::bucket(key), -1);
    }

    pub fn snapshot(&self, key: &str) -> Snapshot {
        let bucket = Self::bucket(key);
        Snapshot {
            bucket,
            pending: self.pending[bucket].load(Ordering::SeqCst),
            appended: self.appended[bucket].load(Ordering::SeqCst),
        }
    }

    /// Operations ever appended in `key`'s bucket: unchanged, then no write of the key was
    /// appended since.
    pub fn appended_in(&self, key: &str) -> u64 {
        self.appended[Self::bucket(key)].load(Ordering::SeqCst)
    }

    /// Whether a read whose key was at `then` raced its writes.
    pub fn raced(&self, then: Snapshot) -> bool {
        then.pending > 0 || self.appended[then.bucket].load(Ordering::SeqCst) != then.appended
    }
}

impl Snapshot {
    /// The snapshot without `own` pending operations: the read's own change to the
    /// agent's state, appended just before (not a write the read raced).
    pub fn excluding(self, own: i64) -> Snapshot {
        Snapshot {
            pending: self.pending - own,
            ..self
        }
    }
}

impl Default for KeyActivity {
    fn default() -> Self {
        KeyActivity::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_races_pending_writes_and_writes_appended_after_it() {
        let a = KeyActivity::new();
        let quiet = a.snapshot("s1");
        assert!(!a.raced(quiet));
        a.appended("s1", 2);
        assert!(a.raced(quiet), "a write appended after the read");
        let busy = a.snapshot("s1");
        assert!(a.raced(busy), "writes still pending");
        a.settled("s1");
        a.settled("s1");
        let settled = a.snapshot("s1");
        assert!(!a.raced(settled));
        assert!(!a.raced(a.snapshot("another key")));
    }
}
