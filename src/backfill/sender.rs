//! Sends batches of backfill operations to the orchestrator: pipelined (up to `window`
//! requests in flight over one DEALER), a batch's sessions first and one at a time, then
//! its memories all at once; retryable failures and timeouts tried again with backoff, on a
//! fresh socket after a timeout (the orchestrator may have restarted).

use super::prepare::Batch;
use crate::link;
use crate::translate::Origin;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// 200 ms before the first retry, doubling, at most 10 s.
const RETRY: crate::backoff::Backoff = crate::backoff::Backoff {
    base: Duration::from_millis(100),
    max: Duration::from_secs(10),
};

/// How the sender behaves.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The agent whose store is sent (for logs).
    pub agent: String,
    pub endpoint: String,
    /// Requests in flight at most.
    pub window: usize,
    /// An answer is given up on after this long, and tried again.
    pub timeout: Duration,
    /// Tries of one operation before it counts as failed.
    pub max_attempts: u32,
    /// With no answer at all for this long, the run stops (its progress is kept).
    pub give_up: Duration,
    pub origin: Origin,
}

/// What became of one operation.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A new row (or a session made sure of).
    Imported,
    /// The mirror had brought this record already: stored as its twin.
    AlreadyMirrored,
    /// An earlier backfill had imported it.
    AlreadyImported,
    /// The orchestrator refused it (its error code).
    Rejected(String),
    /// Still failing after every try (the last error).
    Failed(String),
}

/// A batch and the outcome of each of its operations, in [`Batch::ops`] order.
pub struct Finished {
    pub batch: Batch,
    pub outcomes: Vec<Outcome>,
}

struct Job {
    batch: Batch,
    outcomes: Vec<Option<Outcome>>,
    /// Operations not settled yet.
    open: usize,
}

struct Flight {
    job: u64,
    op: usize,
    attempts: u32,
    deadline: Instant,
}

/// The orchestrator stopped answering; the run cannot go on.
#[derive(Debug, thiserror::Error)]
#[error("the orchestrator at {endpoint} has not answered for {}s", silent.as_secs())]
pub struct Unreachable {
    pub endpoint: String,
    pub silent: Duration,
}

pub struct Sender {
    ctx: zmq::Context,
    socket: zmq::Socket,
    settings: Settings,
    jobs: HashMap<u64, Job>,
    next_job: u64,
    /// Operations ready to go: (job, op, tries so far).
    ready: VecDeque<(u64, usize, u32)>,
    /// Operations waiting out a backoff.
    later: Vec<(Instant, u64, usize, u32)>,
    flights: HashMap<String, Flight>,
    sent: u64,
    /// Since when nothing has been answered while something was waiting.
    silent_since: Option<Instant>,
    finished: Vec<Finished>,
}

impl Sender {
    /// # Errors
    /// The socket cannot be created or the endpoint is invalid.
    pub fn new(settings: Settings) -> zmq::Result<Sender> {
        let ctx = zmq::Context::new();
        let socket = link::connect(&ctx, &settings.endpoint)?;
        Ok(Sender {
            ctx,
            socket,
            settings,
            jobs: HashMap::new(),
            next_job: 0,
            ready: VecDeque::new(),
            later: Vec::new(),
            flights: HashMap::new(),
            sent: 0,
            silent_since: None,
            finished: Vec::new(),
        })
    }

    /// Whether another batch may be admitted (a bound on the memory held).
    pub fn has_room(&self) -> bool {
        self.jobs.len() < self.settings.window * 4
    }

    /// Whether every admitted batch is finished.
    pub fn is_idle(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Takes a batch on.
    pub fn admit(&mut self, batch: Batch) {
        let id = self.next_job;
        self.next_job += 1;
        let n = batch.ensures.len() + batch.creates.len();
        let job = Job {
            outcomes: vec![None; n],
            open: n,
            batch,
        };
        if n == 0 {
            self.finished.push(Finished {
                batch: job.batch,
                outcomes: Vec::new(),
            });
            return;
        }
        let has_ensures = !job.batch.ensures.is_empty();
        self.jobs.insert(id, job);
        if has_ensures {
            self.ready.push_back((id, 0, 0));
        } else {
            self.release_creates(id);
        }
    }

    /// The batches finished since the last call.
    pub fn take_finished(&mut self) -> Vec<Finished> {
        std::mem::take(&mut self.finished)
    }

    /// Sends what may go, waits up to `wait` for answers and settles them.
    ///
    /// # Errors
    /// The orchestrator has not answered for [`Settings::give_up`].
    pub fn turn(&mut self, wait: Duration) -> Result<(), Unreachable> {
        let now = Instant::now();
        self.later.retain(|&(at, job, op, tries)| {
            if at <= now {
                self.ready.push_back((job, op, tries));
                false
            } else {
                true
            }
        });
        self.send_ready(now);
        let mut until = now + wait;
        for f in self.flights.values() {
            until = until.min(f.deadline);
        }
        for &(at, ..) in &self.later {
            until = until.min(at);
        }
        let mut items = [self.socket.as_poll_item(zmq::POLLIN)];
        let timeout = until.saturating_duration_since(now).as_millis() as i64 + 1;
        match zmq::poll(&mut items, timeout) {
            Ok(_) | Err(zmq::Error::EINTR) => {}
            Err(e) => tracing::error!("polling the orchestrator socket: {e}"),
        }
        if items[0].is_readable() {
            self.receive();
        }
        self.expire(Instant::now());
        let waiting = !self.flights.is_empty() || !self.ready.is_empty();
        match (waiting, self.silent_since) {
            (false, _) => self.silent_since = None,
            (true, None) => self.silent_since = Some(Instant::now()),
            (true, Some(since)) if since.elapsed() >= self.settings.give_up => {
                return Err(Unreachable {
                    endpoint: self.settings.endpoint.clone(),
                    silent: since.elapsed(),
                });
            }
            (true, Some(_)) => {}
        }
        Ok(())
    }

    fn send_ready(&mut self, now: Instant) {
        while self.flights.len() < self.settings.window {
            let Some((job_id, op, tries)) = self.ready.pop_front() else {
                return;
            };
            let Some(job) = self.jobs.get(&job_id) else {
                continue;
            };
            let prepared = job.batch.op(op).expect("op index within the batch");
            self.sent += 1;
            let request_id = format!("backfill/{}", self.sent);
            let op_id = format!("backfill/{}/{}/{op}", job.batch.key, job.batch.fingerprint);
            let call = prepared
                .op
                .to_call_as(&op_id, prepared.at, &self.settings.origin);
            match link::send(&self.socket, call.body(&request_id).as_bytes()) {
                Ok(()) => {
                    self.flights.insert(
                        request_id,
                        Flight {
                            job: job_id,
                            op,
                            attempts: tries + 1,
                            deadline: now + self.settings.timeout,
                        },
                    );
                }
                Err(e) => {
                    // EAGAIN under ZMQ_IMMEDIATE: not connected (yet, or any more).
                    if e != zmq::Error::EAGAIN {
                        tracing::error!("sending to the orchestrator: {e}");
                    }
                    self.later
                        .push((now + Duration::from_millis(200), job_id, op, tries));
                    return;
                }
            }
        }
    }

    fn receive(&mut self) {
        for answer in link::answers(&self.socket, &self.settings.agent, "backfill") {
            let Ok((request_id, reply)) = answer else {
                tracing::warn!("the orchestrator answered something that is not JSON");
                continue;
            };
            self.silent_since = None;
            let Some(flight) = self.flights.remove(&request_id) else {
                continue; // the answer to a try already given up on
            };
            let op = self
                .jobs
                .get(&flight.job)
                .and_then(|j| j.batch.op(flight.op))
                .map(|p| &p.op);
            let failure = crate::api::failure(&reply)
                .filter(|f| op.is_none_or(|op| !op.done_despite(f.code)));
            match failure {
                None => {
                    let data = &reply["data"];
                    let outcome = if data.get("twin_of").is_some() {
                        Outcome::AlreadyMirrored
                    } else if data.get("repeated").is_some() {
                        Outcome::AlreadyImported
                    } else {
                        Outcome::Imported
                    };
                    self.settle(flight.job, flight.op, outcome);
                }
                Some(f) if f.retryable => {
                    let why = format!("{}: {}", f.code, f.message);
                    self.again(flight, why);
                }
                Some(f) => self.settle(flight.job, flight.op, Outcome::Rejected(f.code.into())),
            }
        }
    }

    /// Gives up on the answers past their deadline, and on the socket they went out on:
    /// every try in flight goes again on a fresh one.
    fn expire(&mut self, now: Instant) {
        if !self.flights.values().any(|f| f.deadline <= now) {
            return;
        }
        match link::connect(&self.ctx, &self.settings.endpoint) {
            Ok(socket) => self.socket = socket,
            Err(e) => tracing::error!("reconnecting to the orchestrator: {e}"),
        }
        for (_, flight) in std::mem::take(&mut self.flights) {
            if flight.deadline <= now {
                self.again(flight, "timeout: no answer".into());
            } else {
                self.ready
                    .push_front((flight.job, flight.op, flight.attempts - 1));
            }
        }
    }

    fn again(&mut self, flight: Flight, why: String) {
        if flight.attempts >= self.settings.max_attempts {
            self.settle(flight.job, flight.op, Outcome::Failed(why));
            return;
        }
        let backoff = RETRY.delay(flight.attempts + 1);
        self.later.push((
            Instant::now() + backoff,
            flight.job,
            flight.op,
            flight.attempts,
        ));
    }

    fn settle(&mut self, job_id: u64, op: usize, outcome: Outcome) {
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return;
        };
        if job.outcomes[op].replace(outcome).is_none() {
            job.open -= 1;
        }
        let ensures = job.batch.ensures.len();
        if op + 1 < ensures {
            self.ready.push_back((job_id, op + 1, 0));
        } else if op + 1 == ensures {
            self.release_creates(job_id);
        }
        if self.jobs.get(&job_id).is_some_and(|j| j.open == 0)
            && let Some(job) = self.jobs.remove(&job_id)
        {
            self.finished.push(Finished {
                batch: job.batch,
                outcomes: job.outcomes.into_iter().flatten().collect(),
            });
        }
    }

    /// The memories go once the sessions they belong to are made sure of (or refused:
    /// then they are refused in turn, and the reason is reported).
    fn release_creates(&mut self, job_id: u64) {
        let Some(job) = self.jobs.get(&job_id) else {
            return;
        };
        let ensures = job.batch.ensures.len();
        for op in ensures..ensures + job.batch.creates.len() {
            self.ready.push_back((job_id, op, 0));
        }
    }
}
