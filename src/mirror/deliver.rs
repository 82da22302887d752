//! The deliverer: outbox heads to the orchestrator, answers settled back into the outbox.
//!
//! One thread, one DEALER, `zmq::poll` on it and on a wake pipe. Each key's oldest pending
//! entry is sent as one API call whose ids derive from the entry ([`MirrorOp::to_call`]),
//! so a repeat is recognised by the orchestrator and changes nothing. At most one entry per
//! key is out at a time, and at most `max_in_flight` in all.
//!
//! What an answer means:
//! - success → delivered (deleted). So is `session_not_found` for `end_session`: the
//!   session is gone either way.
//! - an error the orchestrator marks `retryable` (a database that is down or slow, load
//!   shedding: `storage_error`, `rate_limit_exceeded`) → retried after a backoff, and
//!   dead-lettered after `max_attempts`.
//! - any other error (`validation_error`, a constraint the database enforces, a revoked
//!   permission, …) → dead-lettered at once with the orchestrator's code and message:
//!   trying again would give the same answer until someone fixes the cause, and then
//!   `memshift outbox retry-dead` puts it back.
//! - no answer within `timeout` → the orchestrator is taken to be down: the socket is
//!   replaced (what it still queued is dropped, so a stale request can never arrive after a
//!   newer one of its key), everything out is retried, and deliveries pause for a backoff
//!   and then resume with one probe at a time until an answer comes back. Silence counts
//!   toward `max_age`, not `max_attempts`, so an outage of hours dead-letters nothing.
//!
//! Settlements are written to the outbox in one transaction per loop turn.

use super::activity::KeyActivity;
use super::messages::ToDeliverer;
use crate::config::MirrorSettings;
use crate::link;
use crate::metrics::{DeliveryOutcome, MirrorMetrics};
use crate::outbox::{Entry, Outbox, Settled};
use crate::wakeup::WakeReceiver;
use chrono::Utc;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

/// How often the gauges are refreshed from the outbox file, and the longest the deliverer
/// sleeps before looking for work again (it also picks up `retry-dead` from other
/// processes this way).
const TICK: Duration = Duration::from_secs(1);

/// Repeated failures are logged at most this often (they are counted every time).
const LOG_EVERY: Duration = Duration::from_secs(10);

/// What one drain (`memshift outbox drain` delivering by itself) did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    pub delivered: u64,
    pub retried: u64,
    pub dead_lettered: u64,
}

/// One agent's delivery loop and its state.
pub struct Deliverer {
    agent: String,
    ctx: zmq::Context,
    socket: zmq::Socket,
    outbox: Outbox,
    settings: MirrorSettings,
    pending: Arc<AtomicU64>,
    metrics: Arc<MirrorMetrics>,
    /// Deliveries sent and not yet answered, by request id.
    out: HashMap<String, Out>,
    /// The keys of `out`.
    busy: HashSet<String>,
    tries: u64,
    outage: Option<Outage>,
    /// When to look for eligible entries again without being woken.
    next_check: Instant,
    next_stats: Instant,
    settled: Vec<Settled>,
    /// The keys of the settlements of `settled` that end an entry (delivered, dead).
    ended: Vec<String>,
    activity: Option<Arc<KeyActivity>>,
    report: DeliveryReport,
    last_log: Option<Instant>,
    unlogged_failures: u64,
}

struct Out {
    entry: Entry,
    sent: Instant,
    deadline: Instant,
}

/// The orchestrator stopped answering: deliveries wait until `until`, then probe.
struct Outage {
    failures: u32,
    until: Instant,
}

impl Deliverer {
    /// # Errors
    /// The DEALER cannot be created or connected (an invalid endpoint).
    pub fn new(
        ctx: &zmq::Context,
        agent: &str,
        outbox: Outbox,
        settings: MirrorSettings,
        pending: Arc<AtomicU64>,
        metrics: Arc<MirrorMetrics>,
    ) -> anyhow::Result<Deliverer> {
        let socket = link::connect(ctx, settings.orchestrator.as_str())?;
        let now = Instant::now();
        Ok(Deliverer {
            agent: agent.to_owned(),
            ctx: ctx.clone(),
            socket,
            outbox,
            settings,
            pending,
            metrics,
            out: HashMap::new(),
            busy: HashSet::new(),
            tries: 0,
            outage: None,
            next_check: now,
            next_stats: now,
            settled: Vec::new(),
            ended: Vec::new(),
            activity: None,
            report: DeliveryReport::default(),
            last_log: None,
            unlogged_failures: 0,
        })
    }

    /// Delivers until told to stop (the proxy's deliverer thread).
    pub fn run(mut self, signals: WakeReceiver<ToDeliverer>) {
        let mut stop: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if let Some(deadline) = stop
                && (self.out.is_empty() || now >= deadline)
            {
                break;
            }
            self.turn(now, stop.is_none());
            let wake = self.sleep(Some(signals.fd()), stop);
            if wake {
                for signal in signals.drain() {
                    match signal {
                        ToDeliverer::Appended => self.next_check = Instant::now(),
                        ToDeliverer::Stop { grace } => {
                            let grace = grace.min(self.settings.timeout);
                            stop.get_or_insert(Instant::now() + grace);
                        }
                    }
                }
            }
        }
        self.finish();
    }

    /// Delivers until nothing is pending (dead letters aside) or `deadline` passes; for
    /// `memshift outbox drain` when no proxy is delivering. `true` when drained.
    pub fn drain(&mut self, deadline: Instant) -> bool {
        loop {
            let now = Instant::now();
            self.turn(now, now < deadline);
            if self.out.is_empty() && self.pending.load(Ordering::Relaxed) == 0 {
                self.refresh_stats();
                if self.pending.load(Ordering::Relaxed) == 0 {
                    return true;
                }
            }
            if now >= deadline && self.out.is_empty() {
                return false;
            }
            self.sleep(None, Some(deadline));
        }
    }

    /// Reports settled keys to `activity` (the proxy's shadow comparisons need them).
    pub fn with_activity(mut self, activity: Arc<KeyActivity>) -> Deliverer {
        self.activity = Some(activity);
        self
    }

    pub fn report(&self) -> &DeliveryReport {
        &self.report
    }

    /// One turn of the loop: time out, record what was settled, send what may be sent.
    /// (Settling first: a delivered entry still in the outbox would be its key's head and
    /// be sent again.)
    fn turn(&mut self, now: Instant, sending: bool) {
        self.expire(now);
        self.flush();
        if sending {
            self.send_heads(now);
        }
        if now >= self.next_stats {
            self.refresh_stats();
        }
    }

    /// Polls the socket (and `wake`) until the next thing to do; handles replies. Returns
    /// whether `wake` is readable.
    fn sleep(&mut self, wake: Option<std::os::fd::RawFd>, stop: Option<Instant>) -> bool {
        let now = Instant::now();
        let mut until = self.next_stats.min(self.next_check);
        if let Some(o) = &self.outage {
            until = until.max(o.until.min(self.next_stats));
        }
        if let Some(t) = self.out.values().map(|o| o.deadline).min() {
            until = until.min(t);
        }
        if let Some(t) = stop {
            until = until.min(t);
        }
        let timeout = until.saturating_duration_since(now).as_millis().min(60_000) as i64;
        let mut items = vec![self.socket.as_poll_item(zmq::POLLIN)];
        if let Some(fd) = wake {
            items.push(zmq::PollItem::from_fd(fd, zmq::POLLIN));
        }
        match zmq::poll(&mut items, timeout) {
            Ok(_) | Err(zmq::Error::EINTR) => {}
            Err(e) => {
                error!(agent = %self.agent, "polling the orchestrator socket: {e}");
                std::thread::sleep(Duration::from_millis(100));
                return false;
            }
        }
        let (replies, woken) = (
            items[0].is_readable(),
            items.get(1).is_some_and(|i| i.is_readable()),
        );
        if replies {
            self.receive();
        }
        woken
    }

    fn send_heads(&mut self, now: Instant) {
        let capacity = match &self.outage {
            Some(o) if now < o.until => return,
            // Probing: one delivery at a time until the orchestrator answers.
            Some(_) => 1usize.saturating_sub(self.out.len()),
            None => self.settings.max_in_flight.saturating_sub(self.out.len()),
        };
        if capacity == 0 || now < self.next_check {
            return;
        }
        let utc = Utc::now();
        let heads = match self.outbox.heads(utc, capacity, |k| self.busy.contains(k)) {
            Ok(heads) => heads,
            Err(e) => {
                error!(agent = %self.agent, "reading the outbox: {e}");
                self.next_check = now + TICK;
                return;
            }
        };
        self.next_check = now + TICK;
        if heads.len() < capacity
            && let Ok(Some(at)) = self.outbox.next_retry(utc)
        {
            let wait = (at - utc).to_std().unwrap_or_default();
            self.next_check = self.next_check.min(now + wait);
        }
        for entry in heads {
            if !self.send(entry, now) {
                break;
            }
        }
    }

    /// Sends one entry; `false` when the orchestrator cannot be reached (no connection).
    fn send(&mut self, entry: Entry, now: Instant) -> bool {
        self.tries += 1;
        let op_id = self.outbox.op_id(entry.id);
        let call = entry.op.to_call(&op_id, entry.accepted_at);
        let request_id = format!("mirror/{}/{op_id}/{}", self.agent, self.tries);
        let body = call.body(&request_id);
        match link::send(&self.socket, body.as_bytes()) {
            Ok(()) => {
                self.busy.insert(entry.key.clone());
                self.out.insert(
                    request_id,
                    Out {
                        entry,
                        sent: now,
                        deadline: now + self.settings.timeout,
                    },
                );
                true
            }
            Err(e) => {
                // EAGAIN under ZMQ_IMMEDIATE: no connection to the orchestrator.
                if e != zmq::Error::EAGAIN {
                    error!(agent = %self.agent, "sending to the orchestrator: {e}");
                }
                self.metrics.failure("unreachable");
                self.note_failure("unreachable");
                self.enter_outage(now);
                false
            }
        }
    }

    fn receive(&mut self) {
        for answer in link::answers(&self.socket, &self.agent, "deliverer") {
            let Ok((request_id, reply)) = answer else {
                self.metrics.failure("bad_reply");
                self.note_failure("bad_reply");
                continue;
            };
            let now = Instant::now();
            let Some(out) = self.out.remove(&request_id) else {
                // The answer to a try already given up on.
                continue;
            };
            self.busy.remove(&out.entry.key);
            self.outage = None;
            self.metrics.outage.set(0);
            self.answered(out, &reply, now);
        }
    }

    fn answered(&mut self, out: Out, reply: &Value, now: Instant) {
        let rtt = Some((now - out.sent).as_secs_f64());
        let entry = out.entry;
        let failure = crate::api::failure(reply).filter(|f| !entry.op.done_despite(f.code));
        let Some(crate::api::Failure {
            code,
            message,
            retryable,
        }) = failure
        else {
            self.metrics
                .delivery(&entry.action, DeliveryOutcome::Delivered, rtt);
            let lag = (Utc::now() - entry.accepted_at)
                .to_std()
                .unwrap_or_default();
            self.metrics.lag.observe(lag.as_secs_f64());
            self.report.delivered += 1;
            self.settled.push(Settled::Delivered { id: entry.id });
            self.ended.push(entry.key);
            return;
        };
        self.metrics.failure(code);
        let why = format!("{code}: {message}");
        let attempts = entry.attempts + 1;
        if !retryable {
            self.dead(
                entry,
                attempts,
                format!("rejected by the orchestrator: {why}"),
                rtt,
            );
        } else if attempts >= self.settings.max_attempts {
            let reason = format!("gave up after {attempts} attempts, last: {why}");
            self.dead(entry, attempts, reason, rtt);
        } else {
            self.note_failure(code);
            self.retry(entry, attempts, why, rtt);
        }
    }

    /// Gives up on deliveries past their deadline, and on the socket they went out on.
    fn expire(&mut self, now: Instant) {
        if !self.out.values().any(|o| o.deadline <= now) {
            return;
        }
        self.metrics.failure("timeout");
        self.note_failure("timeout");
        for (_, out) in std::mem::take(&mut self.out) {
            self.busy.remove(&out.entry.key);
            let timed_out = out.deadline <= now;
            // Only the tries that timed out count; the others are resent as they were.
            let attempts = out.entry.attempts + u32::from(timed_out);
            let rtt = timed_out.then(|| (now - out.sent).as_secs_f64());
            self.retry(out.entry, attempts, "timeout: no answer".to_owned(), rtt);
        }
        match link::connect(&self.ctx, self.settings.orchestrator.as_str()) {
            Ok(socket) => self.socket = socket,
            Err(e) => error!(agent = %self.agent, "reconnecting to the orchestrator: {e:#}"),
        }
        self.enter_outage(now);
    }

    /// Retries `entry` later, unless it is older than `max_age`.
    fn retry(&mut self, entry: Entry, attempts: u32, why: String, rtt: Option<f64>) {
        let age = (Utc::now() - entry.accepted_at)
            .to_std()
            .unwrap_or_default();
        if age > self.settings.max_age {
            let reason = format!(
                "undelivered after {}, last: {why}",
                humantime::format_duration(self.settings.max_age)
            );
            return self.dead(entry, attempts, reason, rtt);
        }
        self.metrics
            .delivery(&entry.action, DeliveryOutcome::Retried, rtt);
        self.report.retried += 1;
        let backoff = self.settings.backoff().delay(attempts);
        self.settled.push(Settled::Retry {
            id: entry.id,
            attempts,
            retry_at: Utc::now() + backoff,
            error: why,
        });
    }

    fn dead(&mut self, entry: Entry, attempts: u32, reason: String, rtt: Option<f64>) {
        warn!(agent = %self.agent, entry = entry.id, key = %entry.key, action = %entry.action,
            operation = entry.op.operation(), %reason, "dead-lettered a mirrored operation");
        self.metrics
            .delivery(&entry.action, DeliveryOutcome::DeadLettered, rtt);
        self.report.dead_lettered += 1;
        self.settled.push(Settled::Dead {
            id: entry.id,
            attempts,
            reason,
        });
        self.ended.push(entry.key);
    }

    fn enter_outage(&mut self, now: Instant) {
        let failures = self.outage.as_ref().map_or(0, |o| o.failures) + 1;
        let until = now + self.settings.backoff().delay(failures);
        if self.outage.is_none() {
            warn!(agent = %self.agent, orchestrator = %self.settings.orchestrator,
                "the orchestrator does not answer: deliveries paused, probing with one at a time");
        }
        self.outage = Some(Outage { failures, until });
        self.metrics.outage.set(1);
    }

    /// Writes the settlements of this turn to the outbox.
    fn flush(&mut self) {
        if self.settled.is_empty() {
            return;
        }
        match self.outbox.settle(&self.settled, Utc::now()) {
            Ok(()) => {
                let gone = self
                    .settled
                    .iter()
                    .filter(|s| !matches!(s, Settled::Retry { .. }))
                    .count() as u64;
                // Saturating: the writer's count can lag behind a refresh.
                let _ = self
                    .pending
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                        Some(p.saturating_sub(gone))
                    });
                self.next_check = Instant::now();
                if let Some(activity) = &self.activity {
                    self.ended.iter().for_each(|k| activity.settled(k));
                }
            }
            // The entries stay as they were and are delivered again (idempotently).
            Err(e) => error!(agent = %self.agent, entries = self.settled.len(),
                "recording deliveries in the outbox failed; they will be repeated: {e}"),
        }
        self.settled.clear();
        self.ended.clear();
    }

    fn refresh_stats(&mut self) {
        self.next_stats = Instant::now() + TICK;
        let now = Utc::now();
        match self.outbox.stats(now) {
            Ok(stats) => {
                self.pending.store(stats.pending, Ordering::Relaxed);
                self.metrics.pending.set(stats.pending as i64);
                self.metrics.retrying.set(stats.retrying as i64);
                self.metrics.dead.set(stats.dead as i64);
                let age = stats.oldest_pending.map_or(0.0, |t| {
                    (now - t).to_std().unwrap_or_default().as_secs_f64()
                });
                self.metrics.oldest_age.set(age);
            }
            Err(e) => error!(agent = %self.agent, "reading the outbox's counts: {e}"),
        }
    }

    /// Logs failed deliveries, at most every [`LOG_EVERY`].
    fn note_failure(&mut self, reason: &str) {
        self.unlogged_failures += 1;
        if self.last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            warn!(agent = %self.agent, reason, failures = self.unlogged_failures,
                "mirrored deliveries failing; they will be retried");
            self.last_log = Some(Instant::now());
            self.unlogged_failures = 0;
        }
    }

    fn finish(mut self) {
        self.flush();
        if !self.out.is_empty() {
            info!(agent = %self.agent, unanswered = self.out.len(),
                "stopping with deliveries unanswered; they stay in the outbox");
        }
        self.refresh_stats();
    }
}
