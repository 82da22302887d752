//! Requests the orchestrator answers in the agent's place (reads from stage `live`, writes
//! from `rampdown`), while the answer is being built: the client's envelope and the
//! request (to send to legacy if the answer does not come), by token.
//!
//! The mirror's threads enforce `live.timeout`; the table has a deadline of its own a
//! little later, so that a thread that never calls back cannot hold a client forever.

use crate::flags::Shares;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use zmq::Message;

/// A write the orchestrator is taking first: what falling back to legacy needs.
pub struct TakenWrite {
    pub key: String,
    /// Shared with the primary writer: whoever takes it decides the write's fate.
    pub claim: Arc<AtomicBool>,
    pub pinned: super::inflight::Pinned,
}

impl TakenWrite {
    /// Takes the write's fate from the primary writer; `false` when it has decided already
    /// (its answer is on the way).
    pub fn claim(&self) -> bool {
        !self.claim.swap(true, Ordering::SeqCst)
    }
}

/// Past the live budget, how long the forwarder still waits for the reader's own verdict.
const MARGIN: Duration = Duration::from_millis(100);

pub struct LivePending {
    pub envelope: Vec<Message>,
    pub body: Vec<Message>,
    pub slot: usize,
    pub received: Instant,
    /// `None` for a read.
    pub write: Option<TakenWrite>,
    /// A read's copy for the mirror if legacy answers it after all.
    pub otherwise: Option<Shares>,
    deadline: Instant,
}

impl LivePending {
    /// A read the orchestrator was asked to answer within `budget`.
    pub fn read(
        envelope: Vec<Message>,
        body: Vec<Message>,
        slot: usize,
        received: Instant,
        budget: Duration,
    ) -> LivePending {
        LivePending {
            envelope,
            body,
            slot,
            received,
            write: None,
            otherwise: None,
            deadline: received + budget + MARGIN,
        }
    }

    /// A write the orchestrator was asked to take first within `budget`.
    pub fn write(
        envelope: Vec<Message>,
        body: Vec<Message>,
        slot: usize,
        received: Instant,
        budget: Duration,
        taken: TakenWrite,
    ) -> LivePending {
        LivePending {
            write: Some(taken),
            ..LivePending::read(envelope, body, slot, received, budget)
        }
    }

    /// With the copy the mirror gets if legacy answers the read after all.
    pub fn otherwise(self, otherwise: Option<Shares>) -> LivePending {
        LivePending { otherwise, ..self }
    }
}

#[derive(Default)]
pub struct LiveTable {
    entries: HashMap<u64, LivePending>,
}

impl LiveTable {
    pub fn insert(&mut self, token: u64, pending: LivePending) {
        self.entries.insert(token, pending);
    }

    pub fn take(&mut self, token: u64) -> Option<LivePending> {
        self.entries.remove(&token)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.entries.values().map(|p| p.deadline).min()
    }

    /// Removes the entries past their deadline. A write whose fate the primary writer has
    /// decided stays, a little longer, for its answer.
    pub fn expire(&mut self, now: Instant) -> Vec<LivePending> {
        let mut late = Vec::new();
        for (token, p) in &mut self.entries {
            if p.deadline > now {
                continue;
            }
            match &p.write {
                Some(w) if !w.claim() => p.deadline = now + MARGIN,
                _ => late.push(*token),
            }
        }
        late.into_iter()
            .filter_map(|t| self.entries.remove(&t))
            .collect()
    }
}
