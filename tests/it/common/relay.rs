//! A faulty line between the proxy and the real orchestrator: every request is relayed
//! unchanged, and the replies to `batch_read` (the reads the proxy asks for) can be made
//! wrong, slow or failed — the plan's three rollback triggers, provoked in a real system —
//! or the replies to everything else (writes) slow: applied, but too late.
//!
//! ROUTER toward the proxy; one DEALER per request in flight toward the orchestrator (taken
//! from a pool), so each reply finds its way back without parsing ids.

use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What happens to the replies of reads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    None,
    /// Every `nth` read's first memory is changed.
    Corrupt {
        every: u64,
    },
    /// Every read's reply waits this long.
    Delay(Duration),
    /// Every `nth` read is answered `storage_error` instead.
    Fail {
        every: u64,
    },
    /// Every reply to anything but a read waits this long (the write is applied at once).
    DelayWrites(Duration),
}

pub struct Relay {
    pub endpoint: String,
    fault: Arc<Mutex<Fault>>,
    /// Replies altered (corrupted or failed).
    pub altered: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct Busy {
    dealer: zmq::Socket,
    client: Vec<u8>,
    /// The read's number (from 1), or 0 for anything else.
    read: u64,
    request_id: Value,
}

impl Relay {
    pub fn start(orchestrator: &str, fault: Fault) -> Relay {
        let ctx = zmq::Context::new();
        let front = ctx.socket(zmq::ROUTER).unwrap();
        front.set_linger(0).unwrap();
        front.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = front.get_last_endpoint().unwrap().unwrap();
        let fault = Arc::new(Mutex::new(fault));
        let (reads, altered) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let state = Line {
            ctx,
            front,
            orchestrator: orchestrator.to_owned(),
            fault: fault.clone(),
            reads,
            altered: altered.clone(),
            idle: Vec::new(),
            busy: Vec::new(),
            later: VecDeque::new(),
        };
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || state.run(&stopping));
        Relay {
            endpoint,
            fault,
            altered,
            stop,
            thread: Some(thread),
        }
    }

    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Line {
    ctx: zmq::Context,
    front: zmq::Socket,
    orchestrator: String,
    fault: Arc<Mutex<Fault>>,
    reads: Arc<AtomicU64>,
    altered: Arc<AtomicU64>,
    idle: Vec<zmq::Socket>,
    busy: Vec<Busy>,
    later: VecDeque<(Instant, Vec<Vec<u8>>)>,
}

impl Line {
    fn run(mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            let mut items = vec![self.front.as_poll_item(zmq::POLLIN)];
            items.extend(self.busy.iter().map(|b| b.dealer.as_poll_item(zmq::POLLIN)));
            zmq::poll(&mut items, 2).unwrap();
            let ready: Vec<bool> = items.iter().map(|i| i.is_readable()).collect();
            drop(items);
            for i in (0..self.busy.len()).rev() {
                if ready[i + 1] {
                    let busy = self.busy.swap_remove(i);
                    self.on_reply(busy);
                }
            }
            if ready[0] {
                while let Ok(frames) = self.front.recv_multipart(zmq::DONTWAIT) {
                    self.on_request(frames);
                }
            }
            let now = Instant::now();
            while self.later.front().is_some_and(|(at, _)| *at <= now) {
                let (_, frames) = self.later.pop_front().unwrap();
                self.front.send_multipart(frames, 0).unwrap();
            }
        }
    }

    fn on_request(&mut self, mut frames: Vec<Vec<u8>>) {
        let client = frames.remove(0);
        let body: Value = serde_json::from_slice(frames.last().unwrap()).unwrap_or(Value::Null);
        let read = if body["action"] == "batch_read" {
            self.reads.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            0
        };
        let dealer = self.idle.pop().unwrap_or_else(|| {
            let d = self.ctx.socket(zmq::DEALER).unwrap();
            d.set_linger(0).unwrap();
            d.connect(&self.orchestrator).unwrap();
            d
        });
        dealer.send_multipart(frames, 0).unwrap();
        self.busy.push(Busy {
            dealer,
            client,
            read,
            request_id: body["request_id"].clone(),
        });
    }

    fn on_reply(&mut self, busy: Busy) {
        let mut frames = busy.dealer.recv_multipart(0).unwrap();
        self.idle.push(busy.dealer);
        let fault = *self.fault.lock().unwrap();
        let last = frames.len() - 1;
        let mut delay = Duration::ZERO;
        if busy.read > 0 {
            match fault {
                Fault::None => {}
                Fault::Corrupt { every } if busy.read.is_multiple_of(every) => {
                    if let Some(body) = corrupt(&frames[last]) {
                        frames[last] = body;
                        self.altered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Fault::Fail { every } if busy.read.is_multiple_of(every) => {
                    frames[last] = failure(&busy.request_id);
                    self.altered.fetch_add(1, Ordering::Relaxed);
                }
                Fault::Delay(d) => delay = d,
                Fault::Corrupt { .. } | Fault::Fail { .. } | Fault::DelayWrites(_) => {}
            }
        } else if let Fault::DelayWrites(d) = fault {
            delay = d;
        }
        frames.insert(0, busy.client);
        if delay.is_zero() {
            self.front.send_multipart(frames, 0).unwrap();
        } else {
            self.later.push_back((Instant::now() + delay, frames));
        }
    }
}

/// The reply with its first memory's content changed; `None` when it holds no memory.
fn corrupt(reply: &[u8]) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(reply).ok()?;
    let first = v["data"]["memories"].get_mut(0)?;
    first["content"] = json!({"memory": "not what legacy holds", "text": "not what legacy holds"});
    Some(v.to_string().into_bytes())
}

fn failure(request_id: &Value) -> Vec<u8> {
    json!({
        "status": "error",
        "action": "batch_read",
        "request_id": request_id,
        "error": {"code": "storage_error", "message": "injected by the test relay", "details": {"retryable": true}},
        "timestamp": "2026-11-24T00:00:00Z"
    })
    .to_string()
    .into_bytes()
}
