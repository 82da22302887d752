//! The shadow reader: asks the orchestrator what a sampled legacy read needed, builds the
//! legacy-shape answer ([`crate::answer`]) and compares it with the legacy reply
//! ([`crate::compare`]). Its own thread and DEALER, off the primary path: the client had
//! the legacy reply before the sample was even taken.
//!
//! Each sample's queries are `batch_read` calls, one page at a time; up to
//! `shadow.max_in_flight` samples are fetched at once, the rest wait in a queue bounded by
//! `shadow.queue` (a full queue skips the sample, counted). A sample not answered within
//! `shadow.timeout` is a `shadow_timeout`.

use super::activity::{KeyActivity, Snapshot};
use crate::answer::{self, MAX_ENTRIES, Query, Stored};
use crate::compare::{self, Outcome};
use crate::config::ShadowSettings;
use crate::metrics::{MirrorMetrics, SkipReason};
use crate::profile::Profile;
use crate::wakeup::{WakeReceiver, WakeSender};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tracing::{debug, error, info};

/// Entries asked for per `batch_read` page.
const PAGE: usize = 1000;

/// A read to compare, with what answering it takes.
pub struct Sample {
    pub action: &'static str,
    pub key: String,
    pub request: Value,
    /// The legacy reply's bytes.
    pub legacy: Vec<u8>,
    pub queries: Vec<Query>,
    /// The key's write activity when the legacy agent answered.
    pub snapshot: Snapshot,
}

pub enum ShadowMessage {
    Sample(Box<Sample>),
    Stop,
}

/// The writer's end of the shadow queue.
pub struct ShadowSender {
    tx: WakeSender<ShadowMessage>,
    queued: Arc<AtomicUsize>,
    capacity: usize,
}

impl ShadowSender {
    /// Queues a sample; `false` (nothing queued) when the queue is full.
    pub fn offer(&self, sample: Sample) -> bool {
        if self.queued.fetch_add(1, Ordering::SeqCst) >= self.capacity {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        self.tx.send(ShadowMessage::Sample(Box::new(sample)))
    }
}

struct Fetching {
    sample: Box<Sample>,
    query: usize,
    offset: usize,
    results: Vec<Vec<Stored>>,
    started: Instant,
    deadline: Instant,
}

pub struct ShadowReader {
    agent: String,
    profile: Profile,
    socket: zmq::Socket,
    settings: ShadowSettings,
    activity: Arc<KeyActivity>,
    metrics: Arc<MirrorMetrics>,
    waiting: VecDeque<Box<Sample>>,
    queued: Arc<AtomicUsize>,
    fetching: HashMap<String, Fetching>,
    next_request: u64,
}

impl ShadowReader {
    /// # Errors
    /// The DEALER cannot be created or connected.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ctx: &zmq::Context,
        agent: &str,
        profile: Profile,
        orchestrator: &str,
        settings: ShadowSettings,
        activity: Arc<KeyActivity>,
        metrics: Arc<MirrorMetrics>,
        signals: WakeSender<ShadowMessage>,
    ) -> anyhow::Result<(ShadowReader, ShadowSender)> {
        let socket = ctx.socket(zmq::DEALER)?;
        socket.set_linger(0)?;
        socket.set_immediate(true)?;
        socket.set_heartbeat_ivl(1_000)?;
        socket.set_heartbeat_timeout(3_000)?;
        socket.connect(orchestrator)?;
        let queued = Arc::new(AtomicUsize::new(0));
        let sender = ShadowSender {
            tx: signals,
            queued: queued.clone(),
            capacity: settings.queue,
        };
        Ok((
            ShadowReader {
                agent: agent.to_owned(),
                profile,
                socket,
                settings,
                activity,
                metrics,
                waiting: VecDeque::new(),
                queued,
                fetching: HashMap::new(),
                next_request: 0,
            },
            sender,
        ))
    }

    /// Compares samples until told to stop.
    pub fn run(mut self, signals: WakeReceiver<ShadowMessage>) {
        loop {
            let now = Instant::now();
            self.expire(now);
            self.start_waiting(now);
            let timeout = self
                .fetching
                .values()
                .map(|f| f.deadline)
                .min()
                .map_or(-1, |d| {
                    d.saturating_duration_since(now).as_millis() as i64 + 1
                });
            let mut items = [
                self.socket.as_poll_item(zmq::POLLIN),
                zmq::PollItem::from_fd(signals.fd(), zmq::POLLIN),
            ];
            match zmq::poll(&mut items, timeout) {
                Ok(_) | Err(zmq::Error::EINTR) => {}
                Err(e) => {
                    error!(agent = %self.agent, "polling the shadow socket: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            }
            let (replies, woken) = (items[0].is_readable(), items[1].is_readable());
            if replies {
                self.receive();
            }
            if woken {
                for message in signals.drain() {
                    match message {
                        ShadowMessage::Sample(s) => {
                            self.queued.fetch_sub(1, Ordering::SeqCst);
                            self.waiting.push_back(s);
                        }
                        ShadowMessage::Stop => {
                            info!(agent = %self.agent, unfinished = self.fetching.len() + self.waiting.len(),
                                "shadow reader stopped");
                            return;
                        }
                    }
                }
            }
        }
    }

    fn start_waiting(&mut self, now: Instant) {
        while self.fetching.len() < self.settings.max_in_flight {
            let Some(sample) = self.waiting.pop_front() else {
                return;
            };
            let fetching = Fetching {
                results: vec![Vec::new(); sample.queries.len()],
                sample,
                query: 0,
                offset: 0,
                started: now,
                deadline: now + self.settings.timeout,
            };
            self.ask(fetching);
        }
    }

    /// Sends the next page request of `f`, or finishes it when every query is done.
    fn ask(&mut self, f: Fetching) {
        let Some(query) = f.sample.queries.get(f.query) else {
            return self.finish(f);
        };
        let mut filter = query.filter.clone();
        match query.newest {
            Some(n) => {
                filter.insert(
                    "sort".into(),
                    json!({"field": "created_at", "order": "desc"}),
                );
                filter.insert("limit".into(), json!(n));
            }
            None => {
                filter.insert("limit".into(), json!(PAGE));
                filter.insert("offset".into(), json!(f.offset));
            }
        }
        self.next_request += 1;
        let request_id = format!("shadow/{}/{}", self.agent, self.next_request);
        let body = json!({"action": "batch_read", "payload": {"filter": filter}, "request_id": request_id});
        let sent = self
            .socket
            .send("", zmq::SNDMORE | zmq::DONTWAIT)
            .and_then(|()| self.socket.send(body.to_string().as_bytes(), zmq::DONTWAIT));
        match sent {
            Ok(()) => {
                self.fetching.insert(request_id, f);
            }
            // No connection (ZMQ_IMMEDIATE) or a full queue: the orchestrator cannot be asked.
            Err(_) => self.outcome(&f, Outcome::ShadowError, &[]),
        }
    }

    fn receive(&mut self) {
        loop {
            let frames = match self.socket.recv_multipart(zmq::DONTWAIT) {
                Ok(frames) => frames,
                Err(zmq::Error::EAGAIN) => return,
                Err(e) => {
                    error!(agent = %self.agent, "receiving shadow answers: {e}");
                    return;
                }
            };
            let Some(reply) = frames
                .last()
                .and_then(|b| serde_json::from_slice::<Value>(b).ok())
            else {
                continue;
            };
            let Some(f) = reply
                .get("request_id")
                .and_then(Value::as_str)
                .and_then(|rid| self.fetching.remove(rid))
            else {
                continue;
            };
            self.page(f, &reply);
        }
    }

    fn page(&mut self, mut f: Fetching, reply: &Value) {
        if reply.get("status").and_then(Value::as_str) != Some("success") {
            return self.outcome(&f, Outcome::ShadowError, &[]);
        }
        let entries = reply.pointer("/data/memories").and_then(Value::as_array);
        let stored: Option<Vec<Stored>> =
            entries.and_then(|e| e.iter().map(Stored::from_entry).collect());
        let Some(mut stored) = stored else {
            return self.outcome(&f, Outcome::ShadowError, &[]);
        };
        let newest = f.sample.queries[f.query].newest.is_some();
        let got = stored.len();
        if newest {
            stored.reverse();
        }
        f.results[f.query].extend(stored);
        let more = !newest
            && reply
                .pointer("/data/page_info/has_more")
                .and_then(Value::as_bool)
                .unwrap_or(false);
        if more {
            if f.results[f.query].len() >= MAX_ENTRIES {
                self.metrics
                    .skipped(f.sample.action, SkipReason::Unsupported);
                return;
            }
            f.offset += got;
        } else {
            f.query += 1;
            f.offset = 0;
        }
        self.ask(f);
    }

    fn finish(&mut self, f: Fetching) {
        self.metrics
            .shadow_latency(f.sample.action, f.started.elapsed().as_secs_f64());
        match answer::answer(self.profile, &f.sample.request, &f.results) {
            Ok(shadow) => {
                let raced = self.activity.raced(f.sample.snapshot);
                let verdict = compare::compare(self.profile, &f.sample.legacy, &shadow, raced);
                self.outcome(&f, verdict.outcome, &verdict.paths);
                if verdict.outcome == Outcome::Mismatch {
                    self.record(&f.sample, &verdict.paths, &shadow);
                }
            }
            Err(_) => self
                .metrics
                .skipped(f.sample.action, SkipReason::Unsupported),
        }
    }

    fn outcome(&self, f: &Fetching, outcome: Outcome, paths: &[String]) {
        self.metrics.comparison(f.sample.action, outcome);
        match outcome {
            // Field paths and the key (a session or user id), never contents.
            Outcome::Mismatch => info!(agent = %self.agent, action = f.sample.action,
                key = %f.sample.key, ?paths, "shadow read differs from legacy"),
            Outcome::Match => {}
            other => debug!(agent = %self.agent, action = f.sample.action,
                key = %f.sample.key, outcome = other.as_label(), ?paths, "shadow comparison"),
        }
    }

    /// Sends a mismatch sample to the orchestrator's store (fire and forget: its answer is
    /// not waited for, and a sample that cannot be sent is only counted).
    fn record(&mut self, sample: &Sample, paths: &[String], shadow: &Value) {
        let legacy = serde_json::from_slice::<Value>(&sample.legacy).unwrap_or(Value::Null);
        let keep = self.settings.record_contents;
        let shown = |v: &Value| if keep { v.clone() } else { compare::redact(v) };
        let paths: Vec<String> = paths.iter().map(|p| p.chars().take(64).collect()).collect();
        self.next_request += 1;
        let body = json!({
            "action": "record_mismatch",
            "request_id": format!("record/{}/{}", self.agent, self.next_request),
            "payload": {
                "agent": self.agent, "action": sample.action, "key": sample.key,
                "paths": paths, "request": shown(&sample.request),
                "legacy_reply": shown(&legacy), "shadow_reply": shown(shadow), "redacted": !keep,
            },
        });
        let sent = self
            .socket
            .send("", zmq::SNDMORE | zmq::DONTWAIT)
            .and_then(|()| self.socket.send(body.to_string().as_bytes(), zmq::DONTWAIT));
        if let Err(e) = sent {
            debug!(agent = %self.agent, "mismatch sample not recorded: {e}");
        }
    }

    fn expire(&mut self, now: Instant) {
        let late: Vec<String> = self
            .fetching
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(rid, _)| rid.clone())
            .collect();
        for rid in late {
            if let Some(f) = self.fetching.remove(&rid) {
                self.outcome(&f, Outcome::ShadowTimeout, &[]);
            }
        }
    }
}
