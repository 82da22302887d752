//! The reverse deliverer: writes the orchestrator took first (stages `rampdown` and
//! `complete`), replayed to the legacy agent from the reverse outbox, so that legacy stays
//! complete and every step back, or a rollback, finds it up to date.
//!
//! One thread, one DEALER to the legacy agent's REP socket (next to the forwarder's own),
//! one replay out at a time, oldest first: the agent answers one request at a time anyway,
//! and a key's writes then reach it in the order the orchestrator took them. What an answer
//! means is the profile's own success signal ([`crate::translate`]):
//! - accepted → delivered (deleted);
//! - refused → dead-lettered with the reason: legacy's store had drifted from the
//!   orchestrator's (a session it expired, a session it already had). Nothing to retry;
//!   `memshift reconcile` reports the key.
//! - no answer within `mirror.timeout` → retried after a backoff, on a fresh socket. A
//!   legacy write is not idempotent, so if the agent did apply it, the retry applies it
//!   twice; the agent answering at all within the timeout (ten seconds by default) is
//!   what keeps that from happening.
//!
//! Delivery pauses in `complete` (legacy is left alone; the outbox keeps the writes) and
//! resumes as soon as the stage steps back or a rollback holds.

use super::activity::KeyActivity;
use super::messages::ToDeliverer;
use crate::config::MirrorSettings;
use crate::flags::SharedFlags;
use crate::link;
use crate::metrics::{MirrorMetrics, ReplayOutcome};
use crate::outbox::{Entry, Operation, Outbox, Settled};
use crate::profile::Profile;
use crate::translate::{self, Verdict};
use crate::wakeup::WakeReceiver;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

/// How often the gauges are refreshed and the flags looked at without being woken.
const TICK: Duration = Duration::from_secs(1);

/// A write the orchestrator took first, as the legacy agent is to receive it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Replay {
    /// The request's JSON text.
    pub request: String,
}

impl Operation for Replay {
    fn operation(&self) -> &'static str {
        "replay"
    }
}

struct Out {
    entry: Entry<Replay>,
    token: u64,
    deadline: Instant,
}

pub(super) struct ReverseDeliverer {
    pub agent: String,
    pub profile: Profile,
    pub ctx: zmq::Context,
    pub legacy: String,
    pub outbox: Outbox<Replay>,
    pub settings: MirrorSettings,
    pub flags: SharedFlags,
    pub activity: Arc<KeyActivity>,
    pub metrics: Arc<MirrorMetrics>,
}

impl ReverseDeliverer {
    /// Replays until told to stop.
    pub fn run(self, signals: WakeReceiver<ToDeliverer>) {
        let socket = match link::connect(&self.ctx, &self.legacy) {
            Ok(s) => s,
            Err(e) => {
                error!(agent = %self.agent, "connecting the reverse deliverer to legacy: {e}");
                return;
            }
        };
        let mut r = Replaying {
            d: self,
            socket,
            out: None,
            token: 0,
            next_stats: Instant::now(),
            stop: None,
            paused_logged: false,
        };
        loop {
            let now = Instant::now();
            if r.finished(now) {
                break;
            }
            r.expire(now);
            r.send_next(now);
            r.tick(now);
            let Some((answers, woken)) = r.poll(&signals, now) else {
                continue;
            };
            if answers {
                r.on_answers();
            }
            if woken {
                r.on_signals(&signals);
            }
        }
        r.finish();
    }
}

/// A running reverse deliverer: at most one replay out at a time.
struct Replaying {
    d: ReverseDeliverer,
    socket: zmq::Socket,
    out: Option<Out>,
    token: u64,
    next_stats: Instant,
    /// Set once told to stop: exit when nothing is out, or at this time.
    stop: Option<Instant>,
    paused_logged: bool,
}

impl Replaying {
    fn finished(&self, now: Instant) -> bool {
        self.stop
            .is_some_and(|deadline| self.out.is_none() || now >= deadline)
    }

    /// A replay unanswered in time is tried again, later, on a fresh socket.
    fn expire(&mut self, now: Instant) {
        let Some(o) = self.out.take_if(|o| o.deadline <= now) else {
            return;
        };
        warn!(agent = %self.d.agent, entry = o.entry.id, "legacy did not answer a replayed write in time; it will be tried again");
        self.settle(o.entry, None);
        // A fresh socket: the old one's late answer must not be taken for the next.
        match link::connect(&self.d.ctx, &self.d.legacy) {
            Ok(s) => self.socket = s,
            Err(e) => error!(agent = %self.d.agent, "reconnecting to legacy: {e}"),
        }
    }

    /// Sends the oldest pending replay when none is out (and the stage delivers to legacy).
    fn send_next(&mut self, now: Instant) {
        let delivering = self.d.flags.load().delivers_to_legacy();
        if !delivering && !self.paused_logged {
            info!(agent = %self.d.agent, "complete: writes for legacy are kept, not delivered");
        }
        self.paused_logged = !delivering;
        if self.out.is_some() || !delivering || self.stop.is_some() {
            return;
        }
        let entry = match self.d.outbox.heads(Utc::now(), 1, |_| false) {
            Ok(heads) => heads.into_iter().next(),
            Err(e) => {
                error!(agent = %self.d.agent, "reading the reverse outbox: {e}");
                None
            }
        };
        let Some(entry) = entry else {
            return;
        };
        self.token += 1;
        let socket = &self.socket;
        let sent = socket
            .send(&self.token.to_le_bytes()[..], zmq::SNDMORE | zmq::DONTWAIT)
            .and_then(|()| socket.send("", zmq::SNDMORE | zmq::DONTWAIT))
            .and_then(|()| socket.send(entry.op.request.as_bytes(), zmq::DONTWAIT));
        // Not sent: no connection (ZMQ_IMMEDIATE); tried again at the next tick or wake-up.
        if sent.is_ok() {
            self.out = Some(Out {
                entry,
                token: self.token,
                deadline: now + self.d.settings.timeout,
            });
        }
    }

    fn tick(&mut self, now: Instant) {
        if now >= self.next_stats {
            self.next_stats = now + TICK;
            self.parts().refresh(&self.d.outbox);
        }
    }

    /// Waits for an answer, a wake-up or the next deadline: which of the first two came;
    /// `None` when polling failed (logged; after a pause, the loop goes on).
    fn poll(&self, signals: &WakeReceiver<ToDeliverer>, now: Instant) -> Option<(bool, bool)> {
        let until = [
            Some(self.next_stats),
            self.out.as_ref().map(|o| o.deadline),
            self.stop,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.next_stats);
        let timeout = until.saturating_duration_since(now).as_millis() as i64;
        let mut items = [
            self.socket.as_poll_item(zmq::POLLIN),
            zmq::PollItem::from_fd(signals.fd(), zmq::POLLIN),
        ];
        match zmq::poll(&mut items, timeout) {
            Ok(_) | Err(zmq::Error::EINTR) => {}
            Err(e) => {
                error!(agent = %self.d.agent, "polling the legacy socket: {e}");
                std::thread::sleep(Duration::from_millis(100));
                return None;
            }
        }
        Some((items[0].is_readable(), items[1].is_readable()))
    }

    fn on_answers(&mut self) {
        while let Ok(frames) = self.socket.recv_multipart(zmq::DONTWAIT) {
            let Some(o) = self.out.take_if(|o| answers(&frames, o.token)) else {
                continue;
            };
            let reply = frames.last().map(Vec::as_slice).unwrap_or_default();
            self.settle(o.entry, Some(reply));
        }
    }

    fn on_signals(&mut self, signals: &WakeReceiver<ToDeliverer>) {
        for signal in signals.drain() {
            if let ToDeliverer::Stop { grace } = signal {
                let deadline = Instant::now() + grace.min(self.d.settings.timeout);
                self.stop.get_or_insert(deadline);
            }
        }
    }

    fn settle(&mut self, entry: Entry<Replay>, reply: Option<&[u8]>) {
        let parts = Parts {
            agent: &self.d.agent,
            profile: self.d.profile,
            activity: &self.d.activity,
            metrics: &self.d.metrics,
            settings: &self.d.settings,
        };
        parts.settle(&mut self.d.outbox, entry, reply);
    }

    fn parts(&self) -> Parts<'_> {
        Parts {
            agent: &self.d.agent,
            profile: self.d.profile,
            activity: &self.d.activity,
            metrics: &self.d.metrics,
            settings: &self.d.settings,
        }
    }

    fn finish(self) {
        if let Some(o) = &self.out {
            info!(agent = %self.d.agent, entry = o.entry.id, "stopping with a replay unanswered; it stays in the reverse outbox");
        }
        self.parts().refresh(&self.d.outbox);
    }
}

/// Whether `frames` (`[token, "", reply]`) answer the replay sent with `token`.
fn answers(frames: &[Vec<u8>], token: u64) -> bool {
    frames.len() == 3 && frames[0] == token.to_le_bytes() && frames[1].is_empty()
}

/// What settling needs, borrowed from the deliverer.
struct Parts<'a> {
    agent: &'a str,
    profile: Profile,
    activity: &'a KeyActivity,
    metrics: &'a MirrorMetrics,
    settings: &'a MirrorSettings,
}

impl Parts<'_> {
    /// Records what became of a replay: `reply` is legacy's answer, `None` when there was
    /// none in time.
    fn settle(&self, outbox: &mut Outbox<Replay>, entry: Entry<Replay>, reply: Option<&[u8]>) {
        let settled = match reply {
            None => {
                self.metrics.reverse.replay(ReplayOutcome::Retried);
                let attempts = entry.attempts + 1;
                Settled::Retry {
                    id: entry.id,
                    attempts,
                    retry_at: Utc::now() + self.settings.backoff().delay(attempts),
                    error: "timeout: no answer from legacy".to_owned(),
                }
            }
            Some(reply) => {
                let why =
                    match translate::translate(self.profile, entry.op.request.as_bytes(), reply) {
                        Verdict::Mirror(_) => None,
                        Verdict::Failed(why) => Some(why),
                        Verdict::NotAWrite => Some("not_a_write"),
                    };
                match why {
                    None => {
                        self.metrics.reverse.replay(ReplayOutcome::Delivered);
                        Settled::Delivered { id: entry.id }
                    }
                    Some(why) => {
                        // The key and the reason's label only: the request is private.
                        warn!(agent = %self.agent, entry = entry.id, key = %entry.key, action = %entry.action,
                            reason = why, "legacy refused a replayed write (its store has drifted); kept as a dead letter");
                        self.metrics.reverse.replay(ReplayOutcome::Refused);
                        Settled::Dead {
                            id: entry.id,
                            attempts: entry.attempts + 1,
                            reason: format!("refused by legacy: {why}"),
                        }
                    }
                }
            }
        };
        let ends = !matches!(settled, Settled::Retry { .. });
        match outbox.settle(&[settled], Utc::now()) {
            Ok(()) => {
                if ends {
                    self.activity.settled(&entry.key);
                }
            }
            Err(e) => {
                error!(agent = %self.agent, "recording a replay in the reverse outbox failed; it will be repeated: {e}")
            }
        }
    }

    fn refresh(&self, outbox: &Outbox<Replay>) {
        let now = Utc::now();
        match outbox.stats(now) {
            Ok(stats) => {
                let r = &self.metrics.reverse;
                r.pending.set(stats.pending as i64);
                r.dead.set(stats.dead as i64);
                r.oldest_age.set(stats.oldest_pending.map_or(0.0, |t| {
                    (now - t).to_std().unwrap_or_default().as_secs_f64()
                }));
            }
            Err(e) => error!(agent = %self.agent, "reading the reverse outbox's counts: {e}"),
        }
    }
}
