//! The table of requests forwarded to the legacy agent and not yet answered.
//!
//! Each forwarded request carries a token (a per-forwarder counter) as its routing frame;
//! the legacy REP socket hands it back with the reply, and the token finds the client's
//! envelope here. Every request gets the same timeout, so deadlines arrive in insertion
//! order and a queue gives expiry in O(1); answered entries are skipped lazily.

use crate::flags::Shares;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// One request awaiting its legacy reply.
pub struct Pending<E> {
    /// The client's routing envelope, up to and including the empty delimiter.
    pub envelope: E,
    /// The request's metric slot (see `classify::Classified::slot`).
    pub slot: usize,
    /// When the proxy received the request from the client.
    pub received: Instant,
    /// When it was handed to the legacy socket.
    pub forwarded: Instant,
    /// A write to mirror (or a read to compare, or to mirror for its change to the
    /// agent's state) once answered.
    pub mirror: Option<MirrorCopy>,
}

/// What the mirror needs of a request once legacy has answered it.
pub struct MirrorCopy {
    pub request: Vec<u8>,
    /// The shares of keys to mirror and to compare when it arrived.
    pub shares: Shares,
    /// The key, when it was announced to the mirror as the request went to legacy
    /// (a write going to legacy first while writes may go to the orchestrator first).
    pub announced: Option<String>,
    /// What the orchestrator was given for this write before it fell back to legacy: the
    /// memories' ids and the write's time, which the mirror repeats so that the
    /// orchestrator recognises a write it did apply.
    pub pinned: Option<Pinned>,
}

pub struct Pinned {
    pub ids: Vec<String>,
    pub at: chrono::DateTime<chrono::Utc>,
}

pub struct InFlight<E> {
    entries: HashMap<u64, Pending<E>>,
    deadlines: VecDeque<(Instant, u64)>,
    timeout: Duration,
}

impl<E> InFlight<E> {
    pub fn new(timeout: Duration) -> Self {
        InFlight {
            entries: HashMap::new(),
            deadlines: VecDeque::new(),
            timeout,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn insert(&mut self, token: u64, pending: Pending<E>) {
        self.deadlines
            .push_back((pending.forwarded + self.timeout, token));
        self.entries.insert(token, pending);
    }

    /// The entry for a reply's token; `None` for a reply that came too late.
    pub fn take(&mut self, token: u64) -> Option<Pending<E>> {
        self.entries.remove(&token)
    }

    /// Removes and returns every entry whose deadline is at or before `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<Pending<E>> {
        let mut expired = Vec::new();
        while let Some(&(deadline, token)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            if let Some(p) = self.entries.remove(&token) {
                expired.push(p);
            }
        }
        if self.entries.is_empty() {
            // Everything was answered: the queue holds only stale deadlines.
            self.deadlines.clear();
        }
        expired
    }

    /// The earliest deadline still relevant, if any.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&(deadline, token)) = self.deadlines.front() {
            if self.entries.contains_key(&token) {
                return Some(deadline);
            }
            self.deadlines.pop_front();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(slot: usize, at: Instant) -> Pending<()> {
        Pending {
            envelope: (),
            slot,
            received: at,
            forwarded: at,
            mirror: None,
        }
    }

    #[test]
    fn answered_entries_never_expire_and_late_ones_do() {
        let t0 = Instant::now();
        let mut table = InFlight::new(Duration::from_secs(1));
        table.insert(1, pending(10, t0));
        table.insert(2, pending(20, t0 + Duration::from_millis(500)));
        table.insert(3, pending(30, t0 + Duration::from_millis(600)));
        assert_eq!(table.take(1).map(|p| p.slot), Some(10));
        assert!(table.take(1).is_none(), "a token is answered once");
        assert_eq!(
            table.next_deadline(),
            Some(t0 + Duration::from_millis(1500))
        );
        assert!(table.expire(t0 + Duration::from_millis(1499)).is_empty());
        let expired: Vec<_> = table
            .expire(t0 + Duration::from_millis(1550))
            .iter()
            .map(|p| p.slot)
            .collect();
        assert_eq!(expired, [20]);
        assert_eq!(table.len(), 1);
        assert!(
            table.take(2).is_none(),
            "an expired token is gone: its reply is late"
        );
        assert_eq!(table.take(3).map(|p| p.slot), Some(30));
        assert!(table.is_empty());
        assert_eq!(table.next_deadline(), None);
    }
}
