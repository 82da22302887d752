//! The primary writer: writes the orchestrator takes first (stages `rampdown` and
//! `complete`, and any key legacy is behind on).
//!
//! The forwarder hands over a write with its [`Plan`]; this thread runs the plan's
//! operations against the orchestrator in order, within the live time budget, and then:
//! - **applied**: the write goes into the reverse outbox (one transaction per loop turn),
//!   and only then the client gets the legacy-shape reply, so a write the client saw
//!   accepted is on its way to legacy;
//! - **refused** for a reason the agent has its own reply for (an unknown session, a
//!   duplicate session id) while legacy is behind on the key: that reply;
//! - otherwise (an error, no answer in time, a refusal legacy may judge differently): the
//!   forwarder sends the write to legacy after all, and the mirror carries it to the
//!   orchestrator with the memory ids the plan chose, so that a write the orchestrator did
//!   apply before going silent is not created twice. If legacy is behind on the key it
//!   cannot take the write without reordering it: no reply, as when an agent times out.
//!
//! One write per key at a time; a key's later writes wait behind it here, and when it falls
//! back to legacy they follow it there, in order. Each outcome is decided once: the write's
//! `claim` is taken either here or by the forwarder giving up on this thread, never both.

use super::activity::KeyActivity;
use super::messages::{Fallback, ToDeliverer};
use super::reverse::Replay;
use crate::link;
use crate::metrics::{DropReason, MirrorMetrics, PrimaryOutcome};
use crate::outbox::{NewEntry, Outbox};
use crate::translate::{MirrorOp, Plan, Refusal};
use crate::wakeup::{Backlog, Job, WakeReceiver, WakeSender, WorkSender};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tracing::{error, info, warn};

/// A write for the orchestrator to take first.
pub struct Write {
    pub action: &'static str,
    pub plan: Plan,
    pub accepted_at: DateTime<Utc>,
    /// Taken by whoever decides the outcome: this thread, or the forwarder giving up.
    pub claim: Arc<AtomicBool>,
    /// When the write is given up on (received + `live.timeout`), however long it waited
    /// behind the key's earlier writes: always before the forwarder gives up.
    pub deadline: Instant,
    pub reply: Box<dyn FnOnce(Written) + Send>,
}

/// What became of a write taken first.
#[derive(Debug)]
pub enum Written {
    /// These bytes are the client's reply.
    Reply(Vec<u8>),
    /// Legacy takes it after all (and the mirror gives its memories the plan's ids).
    Fallback(Fallback),
    /// Nobody can take it without reordering the key's writes: no reply.
    Unanswered,
}

/// The forwarder's end of the primary writer's queue.
pub type PrimarySender = WorkSender<Write>;

/// A key's write in progress: its next operation, and when it is given up on.
struct Running {
    write: Box<Write>,
    op: usize,
    deadline: Instant,
}

pub struct PrimaryWriter {
    agent: String,
    socket: zmq::Socket,
    /// session_memory's "hour", for writes into its sessions.
    session_lifetime: std::time::Duration,
    outbox: Outbox<Replay>,
    max_pending: u64,
    /// Keys with a write queued or running here.
    taking: Arc<KeyActivity>,
    /// Keys with writes in the reverse outbox: legacy is behind on them.
    reverse: Arc<KeyActivity>,
    metrics: Arc<MirrorMetrics>,
    wake_reverse: WakeSender<ToDeliverer>,
    backlog: Backlog,
    /// The keys with a write running, or applied and not yet in the reverse outbox, each
    /// with the writes waiting behind it.
    keys: HashMap<String, VecDeque<Box<Write>>>,
    running: HashMap<String, Running>,
    /// Request id → key.
    out: HashMap<String, String>,
    next_request: u64,
    /// Applied writes of this turn, appended to the reverse outbox together.
    applied: Vec<Write>,
}

/// What [`PrimaryWriter::new`] needs besides its socket.
pub struct PrimaryParts {
    pub agent: String,
    pub orchestrator: String,
    pub queue: usize,
    pub outbox: Outbox<Replay>,
    pub max_pending: u64,
    pub taking: Arc<KeyActivity>,
    pub reverse: Arc<KeyActivity>,
    pub metrics: Arc<MirrorMetrics>,
    pub wake_reverse: WakeSender<ToDeliverer>,
    /// session_memory's "hour" (`live.session_lifetime`).
    pub session_lifetime: std::time::Duration,
}

impl PrimaryWriter {
    /// # Errors
    /// The DEALER cannot be created or connected.
    pub fn new(
        ctx: &zmq::Context,
        parts: PrimaryParts,
        signals: WakeSender<Job<Write>>,
    ) -> anyhow::Result<(PrimaryWriter, PrimarySender)> {
        let socket = link::connect(ctx, &parts.orchestrator)?;
        let (sender, backlog) = WorkSender::new(signals, parts.queue);
        Ok((
            PrimaryWriter {
                agent: parts.agent,
                socket,
                session_lifetime: parts.session_lifetime,
                outbox: parts.outbox,
                max_pending: parts.max_pending,
                taking: parts.taking,
                reverse: parts.reverse,
                metrics: parts.metrics,
                wake_reverse: parts.wake_reverse,
                backlog,
                keys: HashMap::new(),
                running: HashMap::new(),
                out: HashMap::new(),
                next_request: 0,
                applied: Vec::new(),
            },
            sender,
        ))
    }

    /// Takes writes until told to stop; what is still running then falls back to legacy.
    pub fn run(mut self, signals: WakeReceiver<Job<Write>>) {
        loop {
            let now = Instant::now();
            self.expire(now);
            self.flush();
            let until = self.running.values().map(|r| r.deadline).min();
            let ready = link::wait(&self.socket, signals.fd(), until, &self.agent, "primary");
            if ready.replies {
                self.receive();
            }
            if ready.woken {
                for message in signals.drain() {
                    match message {
                        Job::Work(w) => {
                            self.backlog.taken();
                            self.enqueue(w);
                        }
                        Job::Stop => {
                            // After the forwarder has gone: nobody is left to answer.
                            self.flush();
                            info!(agent = %self.agent, unfinished = self.running.len(), "primary writer stopped");
                            return;
                        }
                    }
                }
            }
            self.flush();
        }
    }

    fn enqueue(&mut self, write: Box<Write>) {
        let key = write.plan.key.clone();
        match self.keys.get_mut(&key) {
            Some(waiting) => waiting.push_back(write),
            None => {
                self.keys.insert(key.clone(), VecDeque::new());
                self.start(&key, write);
            }
        }
    }

    /// Starts one of the key's writes (a fresh budget: it may have waited behind another).
    fn start(&mut self, key: &str, write: Box<Write>) {
        let deadline = write.deadline;
        self.running.insert(
            key.to_owned(),
            Running {
                write,
                op: 0,
                deadline,
            },
        );
        if deadline <= Instant::now() {
            // It waited out its budget behind the key's earlier writes.
            return self.fail(key, Fallback::Timeout, None);
        }
        self.ask(key);
    }

    /// Sends the running write's next op, or finishes it when none is left.
    fn ask(&mut self, key: &str) {
        let Some(r) = self.running.get(key) else {
            return;
        };
        let Some(op) = r.write.plan.ops.get(r.op) else {
            // The key's next write waits until this one is in the reverse outbox: if it
            // fell back to legacy before that, legacy would get the two out of order.
            let r = self.running.remove(key).expect("looked up above");
            self.applied.push(*r.write);
            return;
        };
        self.next_request += 1;
        let request_id = format!("primary/{}/{}", self.agent, self.next_request);
        // The op id only names the op for ids it does not carry itself (a plan's memories
        // carry theirs).
        let mut call = op.to_call(&request_id, r.write.accepted_at);
        if r.write.plan.into_forgetful_session && matches!(op, MirrorOp::CreateMemory { .. }) {
            // (ext) Refused as the agent refuses a write into a session it has forgotten.
            let (after, within) = crate::forgetting::session_expiry_window(self.session_lifetime);
            call.payload["legacy_session_expiry"] = serde_json::json!({
                "after_seconds": after.as_secs_f64(), "within_seconds": within.as_secs_f64(),
                "kept": crate::forgetting::SESSIONS_KEPT});
        }
        let body = call.body(&request_id);
        match link::send(&self.socket, body.as_bytes()) {
            Ok(()) => {
                self.out.insert(request_id, key.to_owned());
            }
            // No connection (ZMQ_IMMEDIATE): the orchestrator cannot be asked.
            Err(_) => self.fail(key, Fallback::Error, None),
        }
    }

    /// Starts the key's next write, if one is waiting; else the key is free.
    fn next(&mut self, key: &str) {
        match self.keys.get_mut(key).and_then(VecDeque::pop_front) {
            Some(write) => self.start(key, write),
            None => {
                self.keys.remove(key);
            }
        }
    }

    fn receive(&mut self) {
        // Not JSON: no request id to match it with.
        for (request_id, reply) in link::answers(&self.socket, &self.agent, "primary")
            .into_iter()
            .flatten()
        {
            let Some(key) = self.out.remove(&request_id) else {
                // The answer to a write already given up on.
                continue;
            };
            let Some(r) = self.running.get_mut(&key) else {
                continue;
            };
            let ok = reply.get("status").and_then(Value::as_str) == Some("success");
            let error = reply.get("error").cloned().unwrap_or(Value::Null);
            let code = error.get("code").and_then(Value::as_str).unwrap_or("");
            if ok || r.write.plan.ops[r.op].done_despite(code) {
                r.op += 1;
                self.ask(&key);
            } else {
                let reason = if code == "timeout" {
                    Fallback::Timeout
                } else {
                    Fallback::Error
                };
                self.fail(&key, reason, Refusal::of(&error));
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        let late: Vec<String> = self
            .running
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in late {
            self.fail(&key, Fallback::Timeout, None);
        }
    }

    /// The key's running write failed. Legacy decides it, unless legacy is behind on the
    /// key; when it goes to legacy, the key's waiting writes go with it, in order.
    fn fail(&mut self, key: &str, reason: Fallback, refusal: Option<Refusal>) {
        self.out.retain(|_, k| k != key);
        let Some(r) = self.running.remove(key) else {
            return;
        };
        let behind = self.reverse.busy(key);
        let write = r.write;
        if behind {
            let reply = refusal
                .and_then(|r| write.plan.refusal(r))
                .map(<[u8]>::to_vec);
            let (outcome, written) = match reply {
                Some(bytes) => (PrimaryOutcome::Refused, Written::Reply(bytes)),
                None => {
                    warn!(agent = %self.agent, key, reason = reason.as_label(),
                        "the orchestrator failed a write while legacy is behind on its key: left unanswered");
                    (PrimaryOutcome::Unanswered, Written::Unanswered)
                }
            };
            self.decide(*write, outcome, written);
            return self.next(key);
        }
        let mut falling = vec![write];
        falling.extend(self.keys.remove(key).unwrap_or_default());
        for write in falling {
            self.decide(*write, PrimaryOutcome::Fallback, Written::Fallback(reason));
        }
    }

    /// Hands `written` to the forwarder, if this thread holds the write's claim.
    fn decide(&self, write: Write, outcome: PrimaryOutcome, written: Written) {
        self.taking.absorbed(&write.plan.key);
        if write.claim.swap(true, Ordering::SeqCst) {
            // The forwarder gave up on this thread first and sent the write to legacy.
            return;
        }
        self.metrics.primary(write.action, outcome);
        (write.reply)(written);
    }

    /// Appends this turn's applied writes to the reverse outbox, then answers their
    /// clients.
    fn flush(&mut self) {
        if self.applied.is_empty() {
            return;
        }
        let applied = std::mem::take(&mut self.applied);
        let keys: Vec<String> = applied.iter().map(|w| w.plan.key.clone()).collect();
        // Claimed first: a write the forwarder already sent to legacy must not be
        // replayed there too.
        let (mine, lost): (Vec<_>, Vec<_>) = applied
            .into_iter()
            .partition(|w| !w.claim.swap(true, Ordering::SeqCst));
        for w in &lost {
            self.taking.absorbed(&w.plan.key);
        }
        let pending = self.metrics.reverse.pending.get().max(0) as u64;
        let room = self.max_pending.saturating_sub(pending) as usize;
        let entries: Vec<NewEntry<Replay>> = mine
            .iter()
            .take(room)
            .map(|w| NewEntry {
                key: w.plan.key.clone(),
                action: w.action,
                op: Replay {
                    request: String::from_utf8_lossy(&w.plan.replay).into_owned(),
                },
                accepted_at: w.accepted_at,
            })
            .collect();
        let mut dropped: Vec<(String, &str)> = mine
            .iter()
            .skip(entries.len())
            .map(|w| (w.plan.key.clone(), DropReason::OutboxFull.as_label()))
            .collect();
        if !entries.is_empty() {
            match self.outbox.append(&entries) {
                Ok(()) => {
                    for e in &entries {
                        self.reverse.appended(&e.key, 1);
                    }
                    self.wake_reverse.send(ToDeliverer::Appended);
                }
                Err(e) => {
                    error!(agent = %self.agent, writes = entries.len(),
                        "reverse outbox append failed: legacy will miss these writes (keys recorded if possible): {e}");
                    dropped.extend(
                        entries
                            .iter()
                            .map(|e| (e.key.clone(), DropReason::OutboxError.as_label())),
                    );
                }
            }
        }
        if !dropped.is_empty() {
            warn!(agent = %self.agent, writes = dropped.len(),
                "writes taken by the orchestrator not kept for legacy; their keys are recorded for reconcile");
            if let Err(e) = self.outbox.record_dropped(&dropped, Utc::now()) {
                error!(agent = %self.agent, "could not record the keys of dropped writes: {e}");
            }
        }
        // The orchestrator holds every one of them: the clients' writes succeeded.
        for w in mine {
            self.taking.absorbed(&w.plan.key);
            self.metrics.primary(w.action, PrimaryOutcome::Applied);
            let reply = w.plan.accepted;
            (w.reply)(Written::Reply(reply));
        }
        for key in keys {
            self.next(&key);
        }
    }
}
