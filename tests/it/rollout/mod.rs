//! Rollout control with the real binary: the hot-reloaded flags file, the four routes of
//! the kill switch under load, and the automatic rollback triggers provoked through a
//! faulty line to the real orchestrator (`common::relay`).

use crate::common;

use common::relay::{Fault, Relay};
use common::rig::*;
use common::*;
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const AGENT: &str = "jarvis_memory";
const USERS: usize = 20;

/// Traffic through the proxy on its own threads until dropped: `readers` clients reading
/// every user in turn (pausing `read_pause` between reads) and, with `writes`, one client
/// adding a memory every that often.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Replies that were not `ok` (the client would have seen an error).
    errors: Arc<AtomicU64>,
    reads: Arc<AtomicU64>,
}

impl Load {
    fn start(
        endpoint: &str,
        readers: usize,
        read_pause: Duration,
        writes: Option<Duration>,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(AtomicU64::new(0));
        let reads = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        for r in 0..readers + usize::from(writes.is_some()) {
            let (stop, errors, reads) = (stop.clone(), errors.clone(), reads.clone());
            let endpoint = endpoint.to_owned();
            let writer = r == readers;
            threads.push(std::thread::spawn(move || {
                let ctx = zmq::Context::new();
                let s = req_socket(&ctx, &endpoint);
                let mut i = r;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let user = format!("u{}", i % USERS);
                    let body = if writer {
                        json!({"action": "add_memory", "user_id": user, "memory": {"note": format!("w{i}")}})
                    } else {
                        json!({"action": "get_memories", "user_id": user})
                    };
                    let reply: Value =
                        serde_json::from_slice(&request(&s, body.to_string().as_bytes())).unwrap();
                    if reply["status"] != "ok" {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    if let (true, Some(pause)) = (writer, writes) {
                        std::thread::sleep(pause);
                    } else {
                        reads.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(read_pause);
                    }
                }
            }));
        }
        Load {
            stop,
            threads,
            errors,
            reads,
        }
    }

    fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Stops the clients; returns how many errors they saw.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().expect("client thread");
        }
        self.errors.load(Ordering::Relaxed)
    }
}

/// Every user gets two memories, through the proxy, and the outbox is drained.
fn seed(rig: &Rig) {
    let ctx = zmq::Context::new();
    let s = rig.socket(&ctx);
    for i in 0..USERS * 2 {
        let body = json!({"action": "add_memory", "user_id": format!("u{}", i % USERS), "memory": {"note": format!("seed {i}")}});
        request(&s, body.to_string().as_bytes());
    }
    assert_eq!(rig.drain(), 0);
}

fn value(rig: &Rig, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_sum(&rig.proxy.metrics_text(), name, labels)
}

fn served(rig: &Rig, backend: &str) -> f64 {
    value(
        rig,
        "memshift_served_total",
        &[("agent", AGENT), ("backend", backend)],
    )
}

fn rolled_back(rig: &Rig) -> bool {
    value(rig, "memshift_rollback_active", &[("agent", AGENT)]) == 1.0
}

/// Polls every 10 ms until `check` holds; the time it took.
fn time_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    wait_for(what, timeout, || check().then_some(()));
    start.elapsed()
}

/// Reads go to the orchestrator again (after a resume), then stop going there once
/// `trigger` runs: returns how long until the proxy showed the rollback.
/// The clients of [`rolls_back_within_a_second`]'s load: three readers and a writer.
const CLIENTS: usize = 4;

fn rolls_back_within_a_second(rig: &Rig, route: &str, trigger: impl FnOnce()) {
    let before = served(rig, "orchestrator");
    time_until("reads served by the orchestrator", TIMEOUT, || {
        served(rig, "orchestrator") > before + 20.0
    });
    trigger();
    let took = time_until("the rollback", TIMEOUT, || rolled_back(rig));
    eprintln!("{route}: rolled back after {took:?}");
    assert!(
        took < Duration::from_secs(1),
        "{route}: rollback took {took:?}"
    );
    // Reads in flight at the switch (one per client at most: they wait for their replies)
    // may still be answered by the orchestrator, up to `[live] timeout` later on a loaded
    // machine; no other read is, while reads keep flowing to legacy.
    let (orchestrator, legacy) = (served(rig, "orchestrator"), served(rig, "legacy"));
    holds(
        &format!("{route}: only reads in flight at the switch served by the orchestrator"),
        Duration::from_millis(700),
        || served(rig, "orchestrator") <= orchestrator + CLIENTS as f64,
    );
    assert!(
        served(rig, "legacy") > legacy + 20.0,
        "{route}: reads stopped"
    );
}

fn resumed(rig: &Rig) {
    time_until("the rollback to clear", TIMEOUT, || !rolled_back(rig));
}

/// A minimal HTTP/1.1 POST with an optional bearer token.
fn post(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> u16 {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status")
}

/// A rig whose mirror and shadow reads go through `relay`, with quick triggers: a 5 s
/// window (stretched to 60 s), 300 samples at least, two evaluations to fire.
fn rig_behind_relay(flags: &str) -> (common::pg::TestDb, common::pg::Orchestrator, Relay, Rig) {
    let db = common::pg::TestDb::new();
    let orch = common::pg::Orchestrator::start(&db, "", "");
    let relay = Relay::start(&orch.endpoint, Fault::None);
    let rig = Rig::start(
        AGENT,
        StandIn::start(AGENT),
        &relay.endpoint,
        &format!(
            "{flags}[rollout.auto]\nwindow = \"5s\"\nmax_window = \"60s\"\nmin_samples = 300\nhold = 2\n"
        ),
    );
    (db, orch, relay, rig)
}

fn trips(rig: &Rig, trigger: &str) -> f64 {
    value(
        rig,
        "memshift_rollback_trips_total",
        &[("agent", AGENT), ("trigger", trigger)],
    )
}

fn samples(rig: &Rig, trigger: &str) -> f64 {
    value(
        rig,
        "memshift_rollback_trigger_samples",
        &[("agent", AGENT), ("trigger", trigger)],
    )
}

/// Runs `load` until `reads` more reads have been made.
fn read_for(load: &Load, reads: u64) {
    let until = load.reads() + reads;
    wait_for("reads", Duration::from_secs(60), || {
        (load.reads() >= until).then_some(())
    });
}

/// The trigger fires: rollback, the trigger as the reason, its figures in the log.
fn fired(rig: &Rig, trigger: &str) {
    time_until(
        &format!("the {trigger} trigger"),
        Duration::from_secs(30),
        || trips(rig, trigger) == 1.0,
    );
    assert!(rolled_back(rig));
    let m = rig.proxy.metrics_text();
    assert_eq!(
        metric(
            &m,
            "memshift_rollback_reason",
            &[("agent", AGENT), ("reason", trigger)]
        ),
        Some(1.0)
    );
    let line = rig
        .proxy
        .logs()
        .into_iter()
        .find(|l| l.contains("automatic rollback"))
        .expect("logged");
    assert!(
        line.contains(trigger) && line.contains("threshold"),
        "{line}"
    );
}

fn stage_is(rig: &Rig, stage: &str) -> bool {
    value(rig, "memshift_stage", &[("agent", AGENT), ("stage", stage)]) == 1.0
}

/// Edits the flags file and waits until the proxy shows `stage`.
fn move_to(rig: &Rig, flags: &str, stage: &str) {
    rig.set_flags(flags);
    let took = time_until(&format!("stage {stage}"), TIMEOUT, || stage_is(rig, stage));
    assert!(took < Duration::from_secs(1), "{stage} took {took:?}");
}

mod kill_switch;
mod ladder;
mod triggers;
