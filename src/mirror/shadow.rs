//! The shadow reader: asks the orchestrator what a read needs and builds the legacy-shape
//! answer ([`crate::answer`]), for two purposes:
//! - **compare** (stages `shadow`, `live`): a sampled read the legacy agent already
//!   answered; the answer is compared with the legacy reply ([`crate::compare`]). The
//!   client had the legacy reply before the sample was even taken.
//! - **serve** (stage `live`): a read the orchestrator answers in the agent's place; the
//!   answer's bytes (written as the agents write JSON) go back to the forwarder through a
//!   callback, or the reason there are none, and the forwarder asks legacy instead.
//!   Served reads go ahead of comparisons in the queue.
//!
//! Its own thread and DEALER, never the forwarder's.
//!
//! Each sample's queries are `batch_read` calls, one page at a time; up to
//! `shadow.max_in_flight` samples are fetched at once, the rest wait in a queue bounded by
//! `shadow.queue` (a full queue skips the sample, counted). A sample not answered within
//! `shadow.timeout` is a `shadow_timeout`.

use super::activity::{KeyActivity, Snapshot};
use super::messages::{Fallback, Served};
use crate::answer::{self, MAX_ENTRIES, Query, Stored};
use crate::compare::{self, Outcome};
use crate::config::{LiveSettings, ShadowSettings};
use crate::forgetting::SessionFacts;
use crate::link;
use crate::metrics::{MirrorMetrics, SkipReason};
use crate::profile::Profile;
use crate::wakeup::{Backlog, Job, WakeReceiver, WakeSender, WorkSender};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info};

/// Entries asked for per `batch_read` page.
const PAGE: usize = 1000;

/// A read, with what answering it takes and what the answer is for.
pub struct Sample {
    pub action: &'static str,
    pub key: String,
    pub request: Value,
    pub queries: Vec<Query>,
    pub purpose: Purpose,
}

pub enum Purpose {
    Compare {
        /// The legacy reply's bytes.
        legacy: Vec<u8>,
        /// The key's write activity when the legacy agent answered.
        snapshot: Snapshot,
    },
    Serve {
        budget: Duration,
        reply: Box<dyn FnOnce(Served) + Send>,
    },
}

/// The writer's (and the forwarders') end of the shadow queue.
pub type ShadowSender = WorkSender<Sample>;

/// What a mismatch sample holds.
struct Mismatch<'a> {
    action: &'a str,
    key: &'a str,
    request: &'a Value,
    legacy: &'a [u8],
    paths: &'a [String],
    shadow: &'a Value,
}

struct Fetching {
    sample: Box<Sample>,
    query: usize,
    offset: usize,
    results: Vec<Vec<Stored>>,
    /// What the orchestrator knows of the session the read is about, when a query asked.
    session: Option<SessionFacts>,
    started: Instant,
    deadline: Instant,
}

pub struct ShadowReader {
    agent: String,
    profile: Profile,
    socket: zmq::Socket,
    settings: ShadowSettings,
    /// What a served read makes of legacy's own forgetting (`[live]`).
    live: LiveSettings,
    activity: Arc<KeyActivity>,
    metrics: Arc<MirrorMetrics>,
    waiting: VecDeque<Box<Sample>>,
    queued: Backlog,
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
        live: LiveSettings,
        activity: Arc<KeyActivity>,
        metrics: Arc<MirrorMetrics>,
        signals: WakeSender<Job<Sample>>,
    ) -> anyhow::Result<(ShadowReader, ShadowSender)> {
        let socket = link::connect(ctx, orchestrator)?;
        let (sender, queued) = WorkSender::new(signals, settings.queue);
        Ok((
            ShadowReader {
                agent: agent.to_owned(),
                profile,
                socket,
                settings,
                live,
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
    pub fn run(mut self, signals: WakeReceiver<Job<Sample>>) {
        loop {
            let now = Instant::now();
            self.expire(now);
            self.start_waiting(now);
            let until = self.fetching.values().map(|f| f.deadline).min();
            let ready = link::wait(&self.socket, signals.fd(), until, &self.agent, "shadow");
            if ready.replies {
                self.receive();
            }
            if ready.woken {
                for message in signals.drain() {
                    match message {
                        Job::Work(s) => {
                            self.queued.taken();
                            if matches!(s.purpose, Purpose::Serve { .. }) {
                                self.waiting.push_front(s);
                            } else {
                                self.waiting.push_back(s);
                            }
                        }
                        Job::Stop => {
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
            let budget = match &sample.purpose {
                Purpose::Compare { .. } => self.settings.timeout,
                Purpose::Serve { budget, .. } => *budget,
            };
            let fetching = Fetching {
                results: vec![Vec::new(); sample.queries.len()],
                session: None,
                sample,
                query: 0,
                offset: 0,
                started: now,
                deadline: now + budget,
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
        if query.with_session && f.offset == 0 && self.forgets(&f.sample) {
            filter.insert("with_session".into(), json!(true));
            filter.insert(
                "legacy_sessions_kept".into(),
                json!(crate::forgetting::SESSIONS_KEPT),
            );
        }
        self.next_request += 1;
        let request_id = format!("shadow/{}/{}", self.agent, self.next_request);
        let body = json!({"action": "batch_read", "payload": {"filter": filter}, "request_id": request_id});
        match link::send(&self.socket, body.to_string().as_bytes()) {
            Ok(()) => {
                self.fetching.insert(request_id, f);
            }
            // No connection (ZMQ_IMMEDIATE) or a full queue: the orchestrator cannot be asked.
            Err(_) => self.failed(f, Outcome::ShadowError),
        }
    }

    fn receive(&mut self) {
        // Not JSON: no request id to match it with.
        for (request_id, reply) in link::answers(&self.socket, &self.agent, "shadow")
            .into_iter()
            .flatten()
        {
            let Some(f) = self.fetching.remove(&request_id) else {
                continue;
            };
            self.page(f, &reply);
        }
    }

    fn page(&mut self, mut f: Fetching, reply: &Value) {
        if reply.get("status").and_then(Value::as_str) != Some("success") {
            return self.failed(f, Outcome::ShadowError);
        }
        let entries = reply.pointer("/data/memories").and_then(Value::as_array);
        let stored: Option<Vec<Stored>> =
            entries.and_then(|e| e.iter().map(Stored::from_entry).collect());
        let Some(mut stored) = stored else {
            return self.failed(f, Outcome::ShadowError);
        };
        let time = |pointer: &str| {
            reply
                .pointer(pointer)
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<DateTime<Utc>>().ok())
        };
        if let Some(created) = time("/data/session/created_at") {
            f.session = Some(SessionFacts {
                created,
                pushed_out: time("/data/session/pushed_out_at"),
            });
        }
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
                return self.unsupported(f);
            }
            f.offset += got;
        } else {
            f.query += 1;
            f.offset = 0;
        }
        self.ask(f);
    }

    /// Whether `sample`'s answer forgets what the agent forgets: a served read, unless
    /// `live.serve_forgotten` (a comparison always renders the whole history).
    fn forgets(&self, sample: &Sample) -> bool {
        matches!(sample.purpose, Purpose::Serve { .. }) && !self.live.serve_forgotten
    }

    fn finish(&mut self, f: Fetching) {
        self.metrics
            .shadow_latency(f.sample.action, f.started.elapsed().as_secs_f64());
        // A served read is the agent's answer now, forgetting included (unless
        // `live.serve_forgotten`); a comparison renders the orchestrator's whole history,
        // and a session legacy forgot is `legacy_drift`.
        let rendered = if self.forgets(&f.sample) {
            answer::answer_forgetting(
                self.profile,
                &f.sample.request,
                &f.results,
                f.session,
                self.live.session_lifetime,
                Utc::now(),
            )
        } else {
            answer::answer(self.profile, &f.sample.request, &f.results)
        };
        let Ok(shadow) = rendered else {
            return self.unsupported(f);
        };
        let Sample {
            action,
            key,
            request,
            purpose,
            ..
        } = *f.sample;
        match purpose {
            Purpose::Serve { reply, .. } => reply(Ok(crate::pyjson::dumps(&shadow).into_bytes())),
            Purpose::Compare { legacy, snapshot } => {
                let raced = self.activity.raced(snapshot);
                let verdict = compare::compare(self.profile, &legacy, &shadow, raced);
                self.outcome(action, &key, verdict.outcome, &verdict.paths);
                if verdict.outcome == Outcome::Mismatch {
                    let sample = Mismatch {
                        action,
                        key: &key,
                        request: &request,
                        legacy: &legacy,
                        paths: &verdict.paths,
                        shadow: &shadow,
                    };
                    self.record(&sample);
                }
            }
        }
    }

    /// The orchestrator could not answer: a failed comparison, or a read for legacy.
    fn failed(&self, f: Fetching, outcome: Outcome) {
        let Sample {
            action,
            key,
            purpose,
            ..
        } = *f.sample;
        match purpose {
            Purpose::Serve { reply, .. } => reply(Err(match outcome {
                Outcome::ShadowTimeout => Fallback::Timeout,
                _ => Fallback::Error,
            })),
            Purpose::Compare { .. } => self.outcome(action, &key, outcome, &[]),
        }
    }

    fn unsupported(&self, f: Fetching) {
        let Sample {
            action, purpose, ..
        } = *f.sample;
        match purpose {
            Purpose::Serve { reply, .. } => reply(Err(Fallback::Unsupported)),
            Purpose::Compare { .. } => self.metrics.skipped(action, SkipReason::Unsupported),
        }
    }

    fn outcome(&self, action: &'static str, key: &str, outcome: Outcome, paths: &[String]) {
        self.metrics.comparison(action, outcome);
        match outcome {
            // Field paths and the key (a session or user id), never contents.
            Outcome::Mismatch => {
                info!(agent = %self.agent, action, key, ?paths, "shadow read differs from legacy");
            }
            Outcome::Match => {}
            other => debug!(agent = %self.agent, action, key, outcome = other.as_label(),
                ?paths, "shadow comparison"),
        }
    }

    /// Sends a mismatch sample to the orchestrator's store (fire and forget: its answer is
    /// not waited for, and a sample that cannot be sent is only logged).
    fn record(&mut self, m: &Mismatch<'_>) {
        let legacy = serde_json::from_slice::<Value>(m.legacy).unwrap_or(Value::Null);
        let keep = self.settings.record_contents;
        let shown = |v: &Value| if keep { v.clone() } else { compare::redact(v) };
        let paths: Vec<String> = m
            .paths
            .iter()
            .map(|p| p.chars().take(64).collect())
            .collect();
        self.next_request += 1;
        let body = json!({
            "action": "record_mismatch",
            "request_id": format!("record/{}/{}", self.agent, self.next_request),
            "payload": {
                "agent": self.agent, "action": m.action, "key": m.key,
                "paths": paths, "request": shown(m.request),
                "legacy_reply": shown(&legacy), "shadow_reply": shown(m.shadow), "redacted": !keep,
            },
        });
        if let Err(e) = link::send(&self.socket, body.to_string().as_bytes()) {
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
                self.failed(f, Outcome::ShadowTimeout);
            }
        }
    }
}
