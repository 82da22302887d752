//! What the mirror's threads hand each other: a leaf, so that each thread's module imports
//! these and nothing of the module that wires the threads up.

use crate::flags::Shares;
use crate::profile::Class;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// One request and the legacy reply to it, handed from the forwarder to the writer: a
/// write to mirror, or a read to compare (and, for a profile whose reads change its state,
/// to mirror for that change).
pub struct Exchange {
    pub class: Class,
    /// The legacy action (from the profile's table).
    pub action: &'static str,
    pub request: Vec<u8>,
    pub reply: Vec<u8>,
    /// When the forwarder saw the reply (or, for a write the orchestrator was asked to
    /// take first, when it was asked: the time it was given then).
    pub at: DateTime<Utc>,
    /// `mirror_percent` and `shadow_percent` as they apply to it when the request arrived.
    pub shares: Shares,
    /// A write whose key was announced to the key activity ([`super::MirrorSender::announce`]).
    pub announced: bool,
    /// Ids for the memories the write creates, chosen when the orchestrator was asked to
    /// take it first (it may have, before it went silent): empty otherwise.
    pub pinned: Vec<String>,
}

/// What a deliverer thread (forward or reverse) is told.
#[derive(Debug)]
pub enum ToDeliverer {
    /// New entries are in the outbox.
    Appended,
    /// Send nothing more; wait at most `grace` for the answers of what is out, then exit.
    Stop { grace: Duration },
}

pub use crate::metrics::Fallback;

/// A served read's answer (its bytes), or why there is none.
pub type Served = Result<Vec<u8>, Fallback>;
