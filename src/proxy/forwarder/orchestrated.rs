//! The forwarder's side of the requests the orchestrator answers in the agent's place:
//! handing a write to the primary writer, the answers (live reads, writes taken first)
//! coming back on the control pipe, and the fall back to legacy when none comes.

use super::{Command, Forwarder, action_at, frames};
use crate::flags::{Percent, Shares};
use crate::metrics::Outcome;
use crate::mirror::{Fallback, Served, Write, Written};
use crate::proxy::inflight::{MirrorCopy, Pending, Pinned};
use crate::proxy::live::{LivePending, TakenWrite};
use crate::translate;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use tracing::debug;
use zmq::Message;

impl Forwarder {
    /// The orchestrator's answer to a live read: to the client, or the read to legacy.
    pub(super) fn on_served(&mut self, token: u64, served: Served) -> zmq::Result<()> {
        let Some(p) = self.live.take(token) else {
            // Already sent to legacy after the deadline.
            return Ok(());
        };
        let mirror = self.mirror.as_ref().expect("live reads need the mirror");
        let (action, _) = action_at(self.profile, p.slot);
        match served {
            Ok(bytes) => {
                self.answer(p.envelope, bytes, p.slot)?;
                mirror.metrics().served(action, "orchestrator");
                mirror
                    .metrics()
                    .live_latency(action, p.received.elapsed().as_secs_f64());
                Ok(())
            }
            Err(reason) => self.fall_back(p, reason),
        }
    }

    /// Sends the client a reply memshift made (the orchestrator's, in the agent's shape).
    pub(super) fn answer(
        &self,
        envelope: Vec<Message>,
        bytes: Vec<u8>,
        slot: usize,
    ) -> zmq::Result<()> {
        let delivered = frames::reply(&self.frontend, envelope, vec![Message::from(bytes)])?;
        let outcome = if delivered {
            Outcome::Answered
        } else {
            Outcome::Undeliverable
        };
        self.metrics.request(slot, outcome);
        Ok(())
    }

    /// What became of a write the orchestrator was to take first: the client's reply, or
    /// the write to legacy.
    pub(super) fn on_written(&mut self, token: u64, written: Written) -> zmq::Result<()> {
        let Some(p) = self.live.take(token) else {
            // Already sent to legacy after the deadline.
            return Ok(());
        };
        match written {
            Written::Reply(bytes) => self.answer(p.envelope, bytes, p.slot),
            Written::Fallback(reason) => self.fall_back(p, reason),
            // Counted as a timeout: the client sees what a silent agent would give it.
            Written::Unanswered => {
                self.metrics.request(p.slot, Outcome::Timeout);
                Ok(())
            }
        }
    }

    /// Sends a request the orchestrator did not answer to the legacy agent. A write goes
    /// with its key announced, and with the ids the orchestrator was given for it, so that
    /// the mirror's delivery repeats what the orchestrator may have done, not twins it. A
    /// read goes with the copy decided when it arrived ([`route::Route::Serve`]).
    pub(super) fn fall_back(&mut self, p: LivePending, reason: Fallback) -> zmq::Result<()> {
        let mirror = self
            .mirror
            .as_ref()
            .expect("the orchestrator answers only with a mirror");
        let copy = match p.write {
            None => {
                mirror.metrics().fallback(reason);
                p.otherwise.map(|shares| MirrorCopy {
                    request: p.body[0].to_vec(),
                    shares,
                    announced: None,
                    pinned: None,
                })
            }
            Some(w) => {
                mirror.announce_key(&w.key);
                Some(MirrorCopy {
                    request: p.body[0].to_vec(),
                    shares: Shares::write(Percent::ALL),
                    announced: Some(w.key),
                    pinned: Some(w.pinned),
                })
            }
        };
        debug!(agent = %self.name, reason = reason.as_label(), "answered by legacy after all");
        let pending = Pending {
            envelope: p.envelope,
            slot: p.slot,
            received: p.received,
            forwarded: p.received,
            mirror: copy,
        };
        self.forward(p.body, pending)
    }

    /// Hands a write to the primary writer; the token and what falling back needs, or the
    /// key back when the writer cannot take it.
    pub(super) fn take_first(
        &mut self,
        action: &'static str,
        key: String,
        plan: translate::Plan,
        received: Instant,
    ) -> Result<(u64, TakenWrite), String> {
        let token = self.next_token();
        let mirror = self.mirror.as_ref().expect("routed with a mirror");
        let control = self.control_tx.clone();
        let claim = Arc::new(AtomicBool::new(false));
        let accepted_at = chrono::Utc::now();
        let taken = TakenWrite {
            key: key.clone(),
            claim: claim.clone(),
            pinned: Pinned {
                ids: plan.memory_ids(),
                at: accepted_at,
            },
        };
        let write = Write {
            action,
            plan,
            accepted_at,
            claim,
            deadline: received + mirror.live_budget(),
            reply: Box::new(move |written| {
                control.send(Command::Written { token, written });
            }),
        };
        match mirror.take_first(write) {
            Ok(()) => Ok((token, taken)),
            Err(_) => Err(key),
        }
    }
}
