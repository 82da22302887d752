//! One agent's forwarding thread: ROUTER toward clients, DEALER toward the legacy agent.
//!
//! The thread owns its sockets for their whole life and sleeps in `zmq::poll` on the two
//! sockets and the control pipe (connection events go to a watcher thread, see `watch`). Frames move as
//! `zmq::Message`s, never copied. The client's routing envelope (everything up to the empty
//! delimiter, so REQ, DEALER and REQ_CORRELATE clients all work) stays here in the
//! in-flight table; the legacy agent sees `[token, "", body]` and its REP socket returns
//! the token with the reply.
//!
//! Backpressure on the primary path, never loss: the frontend is read only while fewer than
//! `max_in_flight` requests are out and the legacy socket accepted the last one. Replies to
//! a client that has gone are counted and dropped, as libzmq's own proxy would drop them.

mod orchestrated;

use super::frames;
use super::inflight::{InFlight, MirrorCopy, Pending};
use super::live::{LivePending, LiveTable};
use super::route::{self, Route};
use super::watch::{self, MonitorEndpoints};
use crate::classify;
use crate::config::{AgentConfig, ProxySettings};
use crate::flags::SharedFlags;
use crate::guard;
use crate::metrics::{AgentMetrics, Outcome, PrimaryOutcome};
use crate::mirror::{Exchange, Fallback, MirrorSender, Served, Written};
use crate::profile::Class;
use crate::profile::Profile;
use crate::wakeup::WakeReceiver;
use crate::wakeup::WakeSender;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};
use zmq::{Message, Socket};

/// At most this many messages are taken from one socket per wake-up, so that a flood on
/// one side cannot starve the other.
const BATCH: usize = 256;

/// What other threads tell a forwarding thread.
#[derive(Debug)]
pub enum Command {
    /// Stop reading new requests, answer the ones in flight, and exit when none are left
    /// or `grace` has passed, whichever comes first.
    Drain { grace: Duration },
    /// The orchestrator's answer to a live read, or why there is none.
    Served { token: u64, served: Served },
    /// What became of a write the orchestrator was to take first.
    Written { token: u64, written: Written },
}

/// The sockets and state of one forwarder. Built on its own thread by [`Forwarder::open`].
pub struct Forwarder {
    name: String,
    profile: Profile,
    guard: guard::GuardPolicy,
    max_in_flight: usize,
    frontend: Socket,
    backend: Socket,
    control: WakeReceiver<Command>,
    pending: InFlight<Vec<Message>>,
    /// A request the legacy socket would not take (its queue was full): retried when it
    /// becomes writable; meanwhile no new request is read.
    stalled: Option<(u64, Vec<Message>, Pending<Vec<Message>>)>,
    next_token: u64,
    /// Set once a drain starts: no new requests; exit when in-flight is empty or at this time.
    drain_deadline: Option<Instant>,
    metrics: Arc<AgentMetrics>,
    flags: SharedFlags,
    /// Where accepted writes go when the stage mirrors them; `None` when this agent has no
    /// mirror running.
    mirror: Option<MirrorSender>,
    /// Requests the orchestrator is answering (reads from `live`, writes from `rampdown`).
    live: LiveTable,
    /// This forwarder's own control pipe, for the live reads' callbacks.
    control_tx: WakeSender<Command>,
}

/// What a forwarder shares with the rest of the process.
pub struct Links {
    pub control: WakeReceiver<Command>,
    pub control_tx: WakeSender<Command>,
    pub metrics: Arc<AgentMetrics>,
    pub flags: SharedFlags,
    pub mirror: Option<MirrorSender>,
}

/// What [`Forwarder::open`] reports once bound.
pub struct Bound {
    /// The listen endpoint as bound (a `*` port resolved to the real one).
    pub endpoint: String,
}

impl Forwarder {
    /// Creates, configures, binds and connects the sockets.
    ///
    /// # Errors
    /// A socket option or the bind failed (the port is taken, the address is invalid).
    pub fn open(
        ctx: &zmq::Context,
        agent: &AgentConfig,
        settings: &ProxySettings,
        monitors: &MonitorEndpoints,
        links: Links,
    ) -> zmq::Result<(Forwarder, Bound)> {
        let Links {
            control,
            control_tx,
            metrics,
            flags,
            mirror,
        } = links;
        let linger = frames::millis(settings.linger);
        let frontend = ctx.socket(zmq::ROUTER)?;
        frontend.set_linger(linger)?;
        // Report a reply to a vanished client instead of dropping it silently.
        frontend.set_router_mandatory(true)?;
        frames::set_heartbeat(&frontend, settings)?;
        frontend.monitor(&monitors.frontend, watch::FRONTEND_EVENTS)?;
        frontend.bind(agent.listen.as_str())?;
        let endpoint = frontend
            .get_last_endpoint()?
            .unwrap_or_else(|_| agent.listen.to_string());

        let backend = ctx.socket(zmq::DEALER)?;
        backend.set_linger(linger)?;
        frames::set_heartbeat(&backend, settings)?;
        backend.monitor(&monitors.backend, watch::BACKEND_EVENTS)?;
        backend.connect(agent.legacy.as_str())?;

        let forwarder = Forwarder {
            name: agent.name.clone(),
            profile: agent.profile,
            guard: agent.guard,
            max_in_flight: settings.max_in_flight,
            frontend,
            backend,
            control,
            pending: InFlight::new(agent.legacy_timeout),
            stalled: None,
            next_token: 0,
            drain_deadline: None,
            metrics,
            flags,
            mirror,
            live: LiveTable::default(),
            control_tx,
        };
        Ok((forwarder, Bound { endpoint }))
    }

    /// Forwards until a drain completes. Sockets close (with their bounded linger) when
    /// `self` drops at the end, on this thread.
    ///
    /// # Errors
    /// Only an unexpected ZMQ failure (not EINTR, not EAGAIN), which ends the forwarder.
    pub fn run(mut self) -> zmq::Result<()> {
        info!(agent = %self.name, "forwarding");
        loop {
            let now = Instant::now();
            self.expire(now)?;
            self.metrics.in_flight.set(self.pending.len() as i64);
            if self.finished(now) {
                break;
            }
            let accepting = self.drain_deadline.is_none()
                && self.stalled.is_none()
                && self.in_flight() < self.max_in_flight;
            let ready = match self.poll(accepting, now) {
                Ok(ready) => ready,
                Err(zmq::Error::EINTR) => continue,
                Err(e) => return Err(e),
            };
            if ready.control {
                self.on_control()?;
            }
            if ready.backend_in {
                self.on_legacy_replies()?;
            }
            if ready.backend_out {
                self.retry_stalled()?;
            }
            if ready.frontend_in {
                self.on_client_requests()?;
            }
        }
        self.log_abandoned();
        Ok(())
    }

    /// Requests awaiting an answer, from the legacy agent or (live) the orchestrator.
    fn in_flight(&self) -> usize {
        self.pending.len() + self.live.len()
    }

    fn poll(&mut self, accepting: bool, now: Instant) -> zmq::Result<Ready> {
        let timeout = self.poll_timeout(now);
        let backend_events = if self.stalled.is_some() {
            zmq::POLLIN | zmq::POLLOUT
        } else {
            zmq::POLLIN
        };
        let frontend_events = if accepting {
            zmq::POLLIN
        } else {
            zmq::PollEvents::empty()
        };
        let mut items = [
            zmq::PollItem::from_fd(self.control.fd(), zmq::POLLIN),
            self.backend.as_poll_item(backend_events),
            self.frontend.as_poll_item(frontend_events),
        ];
        zmq::poll(&mut items, timeout)?;
        Ok(Ready {
            control: items[0].is_readable(),
            backend_in: items[1].is_readable(),
            backend_out: items[1].is_writable(),
            frontend_in: items[2].is_readable(),
        })
    }

    /// Until the next deadline (a request timing out, the drain ending), or forever.
    fn poll_timeout(&mut self, now: Instant) -> i64 {
        let next = [
            self.pending.next_deadline(),
            self.live.next_deadline(),
            self.drain_deadline,
        ]
        .into_iter()
        .flatten()
        .min();
        match next {
            // Round up so that the deadline has passed when poll returns.
            Some(t) => (t.saturating_duration_since(now).as_micros().div_ceil(1000)) as i64,
            None => -1,
        }
    }

    fn finished(&self, now: Instant) -> bool {
        match self.drain_deadline {
            None => false,
            Some(deadline) => {
                (self.pending.is_empty() && self.live.is_empty() && self.stalled.is_none())
                    || now >= deadline
            }
        }
    }

    fn on_control(&mut self) -> zmq::Result<()> {
        for command in self.control.drain() {
            match command {
                Command::Drain { grace } => {
                    if self.drain_deadline.is_none() {
                        info!(agent = %self.name, in_flight = self.pending.len(), "draining");
                        self.drain_deadline = Some(Instant::now() + grace);
                    }
                }
                Command::Served { token, served } => self.on_served(token, served)?,
                Command::Written { token, written } => self.on_written(token, written)?,
            }
        }
        Ok(())
    }

    fn on_client_requests(&mut self) -> zmq::Result<()> {
        for _ in 0..BATCH {
            if self.stalled.is_some() || self.in_flight() >= self.max_in_flight {
                break;
            }
            let Some(frames) = frames::recv(&self.frontend)? else {
                break;
            };
            self.on_client_request(frames, Instant::now())?;
        }
        Ok(())
    }

    /// Routes one request ([`route::route`], with one snapshot of the flags) and carries
    /// the decision out.
    fn on_client_request(
        &mut self,
        mut frames: Vec<Message>,
        received: Instant,
    ) -> zmq::Result<()> {
        // The envelope ends at the first empty frame; a REP agent silently drops a message
        // without one, and so do we (counted).
        let Some(delimiter) = frames.iter().position(|f| f.is_empty()) else {
            self.metrics.malformed.inc();
            return Ok(());
        };
        let body = frames.split_off(delimiter + 1);
        let envelope = frames;
        if body.is_empty() {
            self.metrics.malformed.inc();
            return Ok(());
        }
        let classified = classify::classify(self.profile, &body[0]);
        let request = route::Request {
            profile: self.profile,
            class: classified.class,
            frames: body.len(),
            body: &body[0],
            guard: self.guard,
            classified,
        };
        let flags = self.flags.load();
        let keys = self.mirror.as_ref().map(|m| m as &dyn route::KeyState);
        let decided = route::route(&request, &flags, keys);
        let slot = classified.slot(self.profile);
        // The action's label is looked up only where it is used (not in stage off).
        let profile = self.profile;
        let action = move || action_at(profile, slot).0;
        let legacy = match decided {
            Route::Guard(refusal) => return self.refuse(envelope, &body, slot, refusal),
            Route::Serve {
                key,
                request: parsed,
                queries,
                otherwise,
            } => {
                let token = self.next_token();
                let control = self.control_tx.clone();
                let reply = Box::new(move |served| {
                    control.send(Command::Served { token, served });
                });
                let mirror = self.mirror.as_ref().expect("routed with a mirror");
                match mirror.serve(action(), key, parsed, queries, reply) {
                    Ok(()) => {
                        let budget = mirror.live_budget();
                        let p = LivePending::read(envelope, body, slot, received, budget)
                            .otherwise(otherwise);
                        self.live.insert(token, p);
                        return Ok(());
                    }
                    Err(reason) => route::Legacy {
                        fallback: Some(reason),
                        ..route::legacy(&request, &flags)
                    },
                }
            }
            Route::TakeFirst { key, plan } => match self.take_first(action(), key, *plan, received)
            {
                Ok((token, taken)) => {
                    let budget = self
                        .mirror
                        .as_ref()
                        .expect("routed with a mirror")
                        .live_budget();
                    let p = LivePending::write(envelope, body, slot, received, budget, taken);
                    self.live.insert(token, p);
                    return Ok(());
                }
                Err(key) => route::announced(key, PrimaryOutcome::Fallback),
            },
            Route::Legacy(legacy) => legacy,
        };
        self.send_to_legacy(envelope, body, slot, received, legacy)
    }

    /// Sends a request to the legacy agent, with what the mirror gets once it has answered
    /// (and the counts of why the orchestrator did not take it).
    fn send_to_legacy(
        &mut self,
        envelope: Vec<Message>,
        body: Vec<Message>,
        slot: usize,
        received: Instant,
        legacy: route::Legacy,
    ) -> zmq::Result<()> {
        let mut copy = None;
        if let Some(mirror) = &self.mirror {
            let (action, class) = action_at(self.profile, slot);
            if let Some(reason) = legacy.fallback {
                mirror.metrics().fallback(reason);
            }
            if let Some(outcome) = legacy.primary {
                mirror.metrics().primary(action, outcome);
            }
            if let Some(key) = &legacy.announced {
                mirror.announce_key(key);
            }
            if legacy.multipart {
                mirror.multipart(action, class);
            }
            copy = legacy.copy.map(|shares| MirrorCopy {
                request: body[0].to_vec(),
                shares,
                announced: legacy.announced,
                pinned: None,
            });
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            // Ids and the action only: request bodies are users' private data.
            let request_id = classify::request_id(&body[0]);
            let action = action_at(self.profile, slot).0;
            debug!(agent = %self.name, action, request_id, "forwarding request");
        }
        let pending = Pending {
            envelope,
            slot,
            received,
            forwarded: received,
            mirror: copy,
        };
        self.forward(body, pending)
    }

    fn next_token(&mut self) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        token
    }

    fn refuse(
        &mut self,
        envelope: Vec<Message>,
        body: &[Message],
        slot: usize,
        refusal: guard::Refusal,
    ) -> zmq::Result<()> {
        let reply = guard::reply(self.profile, refusal, &body[0]);
        warn!(agent = %self.name, reason = refusal.as_label(), frames = body.len(), "guard refused a request");
        self.metrics.guard_rejection(refusal);
        let outcome = match frames::reply(&self.frontend, envelope, vec![Message::from(reply)])? {
            true => Outcome::Refused,
            false => Outcome::Undeliverable,
        };
        self.metrics.request(slot, outcome);
        Ok(())
    }

    /// Sends `[token, "", body…]` to the legacy agent, or stalls it if the socket is full.
    fn forward(&mut self, body: Vec<Message>, pending: Pending<Vec<Message>>) -> zmq::Result<()> {
        let token = self.next_token();
        let mut frames = Vec::with_capacity(body.len() + 2);
        frames.push(Message::from(&token.to_le_bytes()[..]));
        frames.push(Message::new());
        frames.extend(body);
        self.hand_off(token, frames, pending)
    }

    fn retry_stalled(&mut self) -> zmq::Result<()> {
        match self.stalled.take() {
            Some((token, frames, pending)) => self.hand_off(token, frames, pending),
            None => Ok(()),
        }
    }

    /// Hands a request to the legacy socket: in flight from now on, or stalled if the
    /// socket's queue is full.
    fn hand_off(
        &mut self,
        token: u64,
        frames: Vec<Message>,
        mut pending: Pending<Vec<Message>>,
    ) -> zmq::Result<()> {
        // Stamped before the send: waking libzmq's I/O thread can preempt this one on a
        // small machine, and that time is not memshift's.
        pending.forwarded = Instant::now();
        match frames::send(&self.backend, frames)? {
            None => self.pending.insert(token, pending),
            Some(frames) => self.stalled = Some((token, frames, pending)),
        }
        Ok(())
    }

    fn on_legacy_replies(&mut self) -> zmq::Result<()> {
        for _ in 0..BATCH {
            let Some(frames) = frames::recv(&self.backend)? else {
                break;
            };
            self.on_legacy_reply(frames, Instant::now())?;
        }
        Ok(())
    }

    fn on_legacy_reply(&mut self, mut frames: Vec<Message>, received: Instant) -> zmq::Result<()> {
        let token = match frames.first().map(|f| <[u8; 8]>::try_from(&f[..])) {
            Some(Ok(bytes)) if frames.len() >= 3 && frames[1].is_empty() => {
                u64::from_le_bytes(bytes)
            }
            _ => {
                warn!(agent = %self.name, frames = frames.len(), "unexpected message from the legacy agent");
                return Ok(());
            }
        };
        let Some(pending) = self.pending.take(token) else {
            self.metrics.late_replies.inc();
            return Ok(());
        };
        let reply = frames.split_off(2);
        // The reply goes to the client before anything else happens to it.
        let mirrored = pending.mirror.map(|copy| (copy, frames::single(&reply)));
        let handed_off = Instant::now();
        let delivered = frames::reply(&self.frontend, pending.envelope, reply)?;
        let outcome = if delivered {
            Outcome::Answered
        } else {
            Outcome::Undeliverable
        };
        self.metrics.request(pending.slot, outcome);
        self.metrics
            .legacy_latency(pending.slot, (received - pending.forwarded).as_secs_f64());
        let added = (pending.forwarded - pending.received) + (handed_off - received);
        debug!(agent = %self.name, token, legacy_us = (received - pending.forwarded).as_micros() as u64, delivered, "reply");
        self.metrics.proxy_added.observe(added.as_secs_f64());
        let Some(mirror) = &self.mirror else {
            return Ok(());
        };
        let (action, class) = action_at(self.profile, pending.slot);
        if class == Class::Read {
            mirror.metrics().served(action, "legacy");
        }
        if let Some((copy, reply)) = mirrored {
            match reply {
                Some(reply) => {
                    // In the serving stages a write's key is announced, so that its reads
                    // go to legacy until the orchestrator has it. Also while a rollback
                    // holds: a resume must not serve a read the write has not reached.
                    // (A write that went to legacy first after the orchestrator was
                    // asked, or while it could have been, was announced already.) The
                    // stage is the one now, not the request's: a write answered after a
                    // move into `live` must hold its key's reads back too.
                    let announced = copy.announced.is_some()
                        || (class == Class::Write
                            && self.flags.load().stage.is_serving()
                            && mirror.announce(&copy.request));
                    let (pinned, at) = match copy.pinned {
                        Some(p) => (p.ids, p.at),
                        None => (Vec::new(), chrono::Utc::now()),
                    };
                    mirror.offer(Exchange {
                        class,
                        action,
                        request: copy.request,
                        reply,
                        at,
                        shares: copy.shares,
                        announced,
                        pinned,
                    });
                }
                None => {
                    if let Some(key) = &copy.announced {
                        mirror.withdraw_key(key);
                    }
                    mirror.multipart(action, class);
                }
            }
        }
        Ok(())
    }

    fn expire(&mut self, now: Instant) -> zmq::Result<()> {
        for p in self.live.expire(now) {
            if p.write.is_some()
                && let Some(mirror) = &self.mirror
            {
                // The primary writer never answered: this thread decided for it.
                let (action, _) = action_at(self.profile, p.slot);
                mirror.metrics().primary(action, PrimaryOutcome::Fallback);
            }
            self.fall_back(p, Fallback::Timeout)?;
        }
        let timed_out = self.pending.expire(now);
        for p in &timed_out {
            self.metrics.request(p.slot, Outcome::Timeout);
            self.metrics.legacy_timeouts.inc();
            // No reply, so nothing for the mirror: the announcement ends here.
            if let (Some(mirror), Some(key)) = (
                &self.mirror,
                p.mirror.as_ref().and_then(|c| c.announced.as_ref()),
            ) {
                mirror.withdraw_key(key);
            }
        }
        if !timed_out.is_empty() {
            warn!(agent = %self.name, count = timed_out.len(), "legacy agent did not answer in time");
        }
        Ok(())
    }

    fn log_abandoned(&self) {
        let left = self.pending.len() + usize::from(self.stalled.is_some());
        if left > 0 {
            warn!(agent = %self.name, requests = left, "grace period over: requests left unanswered");
        }
        info!(agent = %self.name, "forwarder stopped");
    }
}

struct Ready {
    control: bool,
    backend_in: bool,
    backend_out: bool,
    frontend_in: bool,
}

/// The action label and class of a metric slot.
fn action_at(profile: Profile, slot: usize) -> (&'static str, Class) {
    classify::action_labels(profile)
        .nth(slot)
        .unwrap_or(("?", Class::Other))
}
