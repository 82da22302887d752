//! Reads the orchestrator answers in the agent's place (stage `live`), while the answer is
//! being built: the client's envelope and the request (to send to legacy if the answer does
//! not come), by token.
//!
//! The mirror's reader enforces `live.timeout`; the table has a deadline of its own a
//! little later, so that a reader that never calls back cannot hold a client forever.

use std::collections::HashMap;
use std::time::{Duration, Instant};
use zmq::Message;

/// Past the live budget, how long the forwarder still waits for the reader's own verdict.
const MARGIN: Duration = Duration::from_millis(100);

pub struct LivePending {
    pub envelope: Vec<Message>,
    pub body: Vec<Message>,
    pub slot: usize,
    pub received: Instant,
    deadline: Instant,
}

#[derive(Default)]
pub struct LiveTable {
    entries: HashMap<u64, LivePending>,
}

impl LiveTable {
    pub fn insert(
        &mut self,
        token: u64,
        envelope: Vec<Message>,
        body: Vec<Message>,
        slot: usize,
        received: Instant,
        budget: Duration,
    ) {
        let deadline = received + budget + MARGIN;
        self.entries.insert(
            token,
            LivePending {
                envelope,
                body,
                slot,
                received,
                deadline,
            },
        );
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

    /// Removes the entries past their deadline.
    pub fn expire(&mut self, now: Instant) -> Vec<LivePending> {
        let late: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        late.into_iter()
            .filter_map(|t| self.entries.remove(&t))
            .collect()
    }
}
