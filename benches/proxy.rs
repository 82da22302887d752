//! `make bench`: the primary path's throughput and latency, next to its yardstick.
//!
//! In one run on one machine, closed-loop REQ clients (each its own user) send 1 KiB
//! jarvis `add_memory` writes to a fast legacy REP that accepts every one with
//! `{"status": "ok"}` (Rust, so the proxies rather than a Python agent are what is
//! measured), by these routes:
//! - `direct`: clients → legacy;
//! - `zmq_proxy`: clients → libzmq's own `zmq_proxy` (ROUTER/DEALER) → legacy, the
//!   yardstick; in a process of its own, as memshift is, so both pay the same hops;
//! - `off`: clients → the real `memshift proxy` binary, stage `off` → legacy;
//! - `sink`: stage `dualwrite`, mirroring through the outbox (fsynced) to an orchestrator
//!   stand-in that acknowledges at once (a thread of this process): the proxy's whole
//!   mirror cost, without an orchestrator and a database on the same two cores;
//! - `shadow` / `shadow_sink` (reads): stage `shadow` at 100 %, every read also asked of the
//!   real orchestrator / of the instant stand-in, and compared;
//! - `live` (reads): stage `live` at 100 %, the real orchestrator answers every read;
//! - `dualwrite`: the same in stage `dualwrite`, every write mirrored through the outbox
//!   (fsynced) to a real `memshift orchestrator` on PostgreSQL (`DATABASE_URL`; `make
//!   bench` provides one; without it this route is skipped). All on the same two cores;
//! - `orch_down`: `dualwrite` with nothing listening where the orchestrator should be, so
//!   the outbox only grows.
//!
//! Two measurements, each printed as a table with ratios to zmq_proxy and to `off`, and
//! written to `target/bench/proxy-{paced,saturation}.json`:
//! - **paced** (first, on fresh outboxes): 16 clients sending `BENCH_RATE` writes/s in all
//!   (default 2000, several times what the legacy agents sustain), open loop: the latency a
//!   client sees at a realistic load, where the mirror keeps up;
//! - **saturation**: closed-loop clients sending as fast as answers come back (tens of
//!   thousands of writes/s on two cores): throughput, and what the mirror's own CPU work
//!   costs when there is no idle CPU left.
//!
//! Each (route, client count) is run several rounds, interleaved and in rotating order, so
//! machine noise falls on all routes alike; the figures are medians over rounds.
//!
//! Knobs (environment): `BENCH_SECONDS` per run (default 3), `BENCH_ROUNDS` (default 5),
//! `BENCH_CLIENTS` (default "1,16"), `BENCH_RATE` (writes/s of the paced measurement, 0
//! skips it), `BENCH_ROUTES` (a comma-separated subset of the route
//! names; default all), `BENCH_MIRROR` (extra `[mirror]` keys for the dualwrite routes,
//! e.g. `durability = "normal"`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const PAYLOAD_BYTES: usize = 1024;
const WARMUP: Duration = Duration::from_millis(300);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Route {
    Direct,
    ZmqProxy,
    Off,
    Sink,
    DualWrite,
    OrchestratorDown,
    Shadow,
    ShadowSink,
    Live,
}

impl Route {
    const ALL: [Route; 9] = [
        Route::Direct,
        Route::ZmqProxy,
        Route::Off,
        Route::Sink,
        Route::DualWrite,
        Route::OrchestratorDown,
        Route::Shadow,
        Route::ShadowSink,
        Route::Live,
    ];

    fn name(self) -> &'static str {
        match self {
            Route::Direct => "direct",
            Route::ZmqProxy => "zmq_proxy",
            Route::Off => "off",
            Route::Sink => "sink",
            Route::DualWrite => "dualwrite",
            Route::OrchestratorDown => "orch_down",
            Route::Shadow => "shadow",
            Route::ShadowSink => "shadow_sink",
            Route::Live => "live",
        }
    }

    /// Whether the route is measured with `workload`.
    fn runs(self, workload: Workload) -> bool {
        match self {
            Route::Sink | Route::DualWrite | Route::OrchestratorDown => {
                workload == Workload::Writes
            }
            Route::Shadow | Route::ShadowSink | Route::Live => workload == Workload::Reads,
            Route::Direct | Route::ZmqProxy | Route::Off => true,
        }
    }

    fn is_memshift(self) -> bool {
        matches!(
            self,
            Route::Off
                | Route::Sink
                | Route::DualWrite
                | Route::OrchestratorDown
                | Route::Shadow
                | Route::ShadowSink
                | Route::Live
        )
    }
}

struct Run {
    throughput: f64,
    p50_us: f64,
    p99_us: f64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--yardstick") {
        run_yardstick(&args[i + 1]);
        return;
    }
    // `cargo bench` passes `--bench`; a filter argument would also land here. Neither applies.
    let seconds: f64 = env_or("BENCH_SECONDS", 3.0);
    let rounds: usize = env_or("BENCH_ROUNDS", 5.0) as usize;
    let clients: Vec<usize> = std::env::var("BENCH_CLIENTS")
        .unwrap_or_else(|_| "1,16".to_owned())
        .split(',')
        .map(|c| c.trim().parse().expect("BENCH_CLIENTS: numbers"))
        .collect();
    let duration = Duration::from_secs_f64(seconds);
    let rate: f64 = env_or("BENCH_RATE", 2000.0);

    let ctx = zmq::Context::new();
    let echo = start_legacy(&ctx);
    let yardstick = Sidecar::yardstick(&echo);
    let off = Sidecar::memshift(&echo, None, "");
    let orchestrator = match std::env::var("DATABASE_URL") {
        Ok(url) => Some(Sidecar::orchestrator(&url)),
        Err(_) => {
            eprintln!(
                "bench: DATABASE_URL is not set: the dualwrite route is skipped (make bench sets it)"
            );
            None
        }
    };
    let on_orchestrator = |flags: &str| {
        orchestrator
            .as_ref()
            .map(|o| Sidecar::memshift(&echo, Some(&o.endpoint), flags))
    };
    let dualwrite = on_orchestrator("stage = \"dualwrite\"");
    let shadow = on_orchestrator("stage = \"shadow\"\nshadow_percent = 100");
    let live = on_orchestrator("stage = \"live\"\nread_percent = 100\nshadow_percent = 0");
    let sink_endpoint = start_sink(&ctx);
    let sink = Sidecar::memshift(&echo, Some(&sink_endpoint), "stage = \"dualwrite\"");
    let shadow_sink = Sidecar::memshift(
        &echo,
        Some(&sink_endpoint),
        "stage = \"shadow\"\nshadow_percent = 100",
    );
    let nowhere = free_endpoint();
    let orch_down = Sidecar::memshift(&echo, Some(&nowhere), "stage = \"dualwrite\"");
    let selected: Option<Vec<String>> = std::env::var("BENCH_ROUTES")
        .ok()
        .map(|r| r.split(',').map(|s| s.trim().to_owned()).collect());
    let endpoint = |route: Route| -> Option<String> {
        if selected
            .as_ref()
            .is_some_and(|s| !s.iter().any(|r| r == route.name()))
        {
            return None;
        }
        match route {
            Route::Direct => Some(echo.clone()),
            Route::ZmqProxy => Some(yardstick.endpoint.clone()),
            Route::Off => Some(off.endpoint.clone()),
            Route::Sink => Some(sink.endpoint.clone()),
            Route::DualWrite => dualwrite.as_ref().map(|d| d.endpoint.clone()),
            Route::OrchestratorDown => Some(orch_down.endpoint.clone()),
            Route::Shadow => shadow.as_ref().map(|d| d.endpoint.clone()),
            Route::ShadowSink => Some(shadow_sink.endpoint.clone()),
            Route::Live => live.as_ref().map(|d| d.endpoint.clone()),
        }
    };

    eprintln!(
        "bench: {} s per run, {rounds} rounds, clients {clients:?}, {} cores",
        seconds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    // Paced first, on fresh outboxes, so that the saturation below leaves no backlog
    // behind to be delivered meanwhile.
    if rate > 0.0 {
        let paced = measure(
            &endpoint,
            Workload::Writes,
            &[PACED_CLIENTS],
            rounds,
            duration,
            Some(rate),
        );
        report(
            &paced,
            &format!(
                "Paced writes: {rate:.0} add_memory/s from {PACED_CLIENTS} clients (open loop; latency from each write's scheduled time)"
            ),
            seconds,
            rounds,
        );
    }
    // BENCH_CLIENTS=0: the paced measurement only.
    let clients: Vec<usize> = clients.into_iter().filter(|&n| n > 0).collect();
    let results = measure(
        &endpoint,
        Workload::Writes,
        &clients,
        rounds,
        duration,
        None,
    );
    if !results.is_empty() {
        report(
            &results,
            "Saturation writes (add_memory): closed-loop clients, each sending its next write as soon as the last is answered",
            seconds,
            rounds,
        );
    }
    // What the mirror did meanwhile: proof that the dualwrite routes mirrored for real.
    for (name, sidecar) in [
        ("sink", Some(&sink)),
        ("dualwrite", dualwrite.as_ref()),
        ("orch_down", Some(&orch_down)),
    ] {
        if let Some(sidecar) = sidecar {
            println!("{name}: {}", sidecar.mirror_summary());
        }
    }
    // Reads: shadow compares each with the orchestrator's answer, live has the
    // orchestrator answer it (users never written: both sides hold nothing, so every
    // comparison is a match and every live answer has the legacy agent's bytes).
    if rate > 0.0 {
        let paced = measure(
            &endpoint,
            Workload::Reads,
            &[PACED_CLIENTS],
            rounds,
            duration,
            Some(rate),
        );
        report(
            &paced,
            &format!(
                "Paced reads: {rate:.0} get_memories/s from {PACED_CLIENTS} clients (open loop)"
            ),
            seconds,
            rounds,
        );
    }
    let reads = measure(&endpoint, Workload::Reads, &clients, rounds, duration, None);
    if !reads.is_empty() {
        report(
            &reads,
            "Saturation reads: closed-loop clients",
            seconds,
            rounds,
        );
    }
    for (name, sidecar) in [
        ("shadow", shadow.as_ref()),
        ("shadow_sink", Some(&shadow_sink)),
        ("live", live.as_ref()),
    ] {
        if let Some(sidecar) = sidecar {
            println!("{name}: {}", sidecar.read_summary());
        }
    }
    drop((
        off,
        sink,
        dualwrite,
        orch_down,
        shadow,
        shadow_sink,
        live,
        orchestrator,
        yardstick,
    ));
}

/// Clients of the paced measurement.
const PACED_CLIENTS: usize = 16;

/// What the clients send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    /// 1 KiB `add_memory`, each client its own user.
    Writes,
    /// 1 KiB `get_memories` (padded), each client its own user, never written.
    Reads,
}

/// Every selected route at every client count, several rounds in rotating order; medians.
fn measure(
    endpoint: &dyn Fn(Route) -> Option<String>,
    workload: Workload,
    clients: &[usize],
    rounds: usize,
    duration: Duration,
    rate: Option<f64>,
) -> Vec<Summary> {
    let ctx = zmq::Context::new();
    let mut results = Vec::new();
    for &n in clients {
        let mut runs: Vec<Vec<Run>> = Route::ALL.iter().map(|_| Vec::new()).collect();
        for round in 0..rounds {
            for k in 0..Route::ALL.len() {
                let i = (k + round) % Route::ALL.len();
                if !Route::ALL[i].runs(workload) {
                    continue;
                }
                let Some(endpoint) = endpoint(Route::ALL[i]) else {
                    continue;
                };
                let run = load(&ctx, &endpoint, workload, n, duration, rate);
                eprintln!(
                    "  {:>2} clients  round {round}  {:<10} {:>9.0} req/s  p50 {:>7.1} µs  p99 {:>7.1} µs",
                    n,
                    Route::ALL[i].name(),
                    run.throughput,
                    run.p50_us,
                    run.p99_us
                );
                runs[i].push(run);
            }
        }
        for (i, route) in Route::ALL.iter().enumerate() {
            if !runs[i].is_empty() {
                results.push(summarise(*route, n, &runs[i]));
            }
        }
    }
    results
}

struct Summary {
    route: Route,
    clients: usize,
    throughput: f64,
    p50_us: f64,
    p99_us: f64,
}

fn summarise(route: Route, clients: usize, runs: &[Run]) -> Summary {
    Summary {
        route,
        clients,
        throughput: median(runs.iter().map(|r| r.throughput).collect()),
        p50_us: median(runs.iter().map(|r| r.p50_us).collect()),
        p99_us: median(runs.iter().map(|r| r.p99_us).collect()),
    }
}

fn report(results: &[Summary], title: &str, seconds: f64, rounds: usize) {
    println!();
    println!("{title}");
    println!(
        "Primary path, 1 KiB jarvis requests to a fast legacy REP; medians of {rounds} runs of {seconds} s"
    );
    println!(
        "{:>7}  {:<10} {:>11} {:>9} {:>9}   {:>16} {:>12}   {:>12} {:>11}",
        "clients",
        "route",
        "req/s",
        "p50 µs",
        "p99 µs",
        "tput vs zmq_proxy",
        "p99 vs zmq_proxy",
        "tput vs off",
        "p99 vs off"
    );
    let mut json = Vec::new();
    for s in results {
        let base = results
            .iter()
            .find(|b| b.clients == s.clients && b.route == Route::ZmqProxy)
            .unwrap_or(s);
        let tput_ratio = s.throughput / base.throughput;
        let p99_ratio = s.p99_us / base.p99_us;
        let off = results
            .iter()
            .find(|b| b.clients == s.clients && b.route == Route::Off)
            .filter(|_| s.route.is_memshift())
            .map(|off| (s.throughput / off.throughput, s.p99_us / off.p99_us));
        let vs_off = off.map_or(String::new(), |(t, p)| format!("{t:>11.2}x {p:>10.2}x"));
        println!(
            "{:>7}  {:<10} {:>11.0} {:>9.1} {:>9.1}   {:>16.2}x {:>11.2}x   {vs_off}",
            s.clients,
            s.route.name(),
            s.throughput,
            s.p50_us,
            s.p99_us,
            tput_ratio,
            p99_ratio
        );
        json.push(serde_json::json!({
            "clients": s.clients,
            "route": s.route.name(),
            "throughput_rps": s.throughput,
            "p50_us": s.p50_us,
            "p99_us": s.p99_us,
            "throughput_vs_zmq_proxy": tput_ratio,
            "p99_vs_zmq_proxy": p99_ratio,
            "throughput_vs_off": off.map(|o| o.0),
            "p99_vs_off": off.map(|o| o.1),
        }));
    }
    println!(
        "targets: off >= 0.90x throughput and <= 1.20x p99 of zmq_proxy; dualwrite, orch_down and shadow within 5 % of off; live reported next to off (legacy)"
    );
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&out).expect("create target/bench");
    let doc = serde_json::json!({
        "payload_bytes": PAYLOAD_BYTES,
        "seconds_per_run": seconds,
        "rounds": rounds,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "results": json,
    });
    let kind = match (title.starts_with("Paced"), title.contains("reads")) {
        (true, false) => "paced",
        (false, false) => "saturation",
        (true, true) => "paced-reads",
        (false, true) => "saturation-reads",
    };
    let path = out.join(format!("proxy-{kind}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).expect("write results");
    println!("written to {}", path.display());
}

/// A 1 KiB jarvis `add_memory` of client `client` (each client is its own user, so the
/// mirror has as many keys as there are clients).
fn request_payload(workload: Workload, client: usize) -> Vec<u8> {
    let head = match workload {
        Workload::Writes => format!(
            r#"{{"action": "add_memory", "user_id": "bench-user-{client:02}", "memory": {{"text": ""#
        ),
        Workload::Reads => format!(
            r#"{{"action": "get_memories", "user_id": "bench-reader-{client:02}", "pad": {{"text": ""#
        ),
    };
    let tail = r#""}}"#;
    let pad = "p".repeat(PAYLOAD_BYTES - head.len() - tail.len());
    let body = format!("{head}{pad}{tail}");
    assert_eq!(body.len(), PAYLOAD_BYTES);
    body.into_bytes()
}

/// What the legacy agent answers to every write: jarvis's success.
const ACCEPTED: &[u8] = br#"{"status": "ok"}"#;

/// What it answers to every read: a user without memories.
const NO_MEMORIES: &[u8] = br#"{"status": "ok", "memories": []}"#;

fn expected(workload: Workload) -> &'static [u8] {
    match workload {
        Workload::Writes => ACCEPTED,
        Workload::Reads => NO_MEMORIES,
    }
}

/// `n` REQ clients for `duration` after a warm-up; latencies of every request. Closed loop
/// without a `rate`; with one, each client sends on a fixed schedule (`rate / n` per
/// second) and a write's latency counts from its scheduled time, so a stall shows in full.
fn load(
    ctx: &zmq::Context,
    endpoint: &str,
    workload: Workload,
    n: usize,
    duration: Duration,
    rate: Option<f64>,
) -> Run {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..n)
        .map(|client| {
            let (ctx, endpoint) = (ctx.clone(), endpoint.to_owned());
            let payload = request_payload(workload, client);
            let (measuring, stop) = (measuring.clone(), stop.clone());
            let interval = rate.map(|r| Duration::from_secs_f64(n as f64 / r));
            std::thread::spawn(move || {
                let s = ctx.socket(zmq::REQ).unwrap();
                s.set_linger(0).unwrap();
                s.set_rcvtimeo(10_000).unwrap();
                s.connect(&endpoint).unwrap();
                let mut latencies = Vec::with_capacity(200_000);
                let mut reply = zmq::Message::new();
                // Clients start spread over one interval.
                let mut next = Instant::now()
                    + interval.map_or(Duration::ZERO, |i| i * client as u32 / n as u32);
                while !stop.load(Ordering::Relaxed) {
                    let t = match interval {
                        None => Instant::now(),
                        Some(interval) => {
                            let scheduled = next;
                            next += interval;
                            std::thread::sleep(scheduled.saturating_duration_since(Instant::now()));
                            scheduled
                        }
                    };
                    s.send(&payload[..], 0).unwrap();
                    s.recv(&mut reply, 0).expect("reply within 10 s");
                    assert_eq!(&reply[..], expected(workload));
                    if measuring.load(Ordering::Relaxed) {
                        latencies.push(t.elapsed().as_nanos() as u32);
                    }
                }
                latencies
            })
        })
        .collect();
    std::thread::sleep(WARMUP);
    measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    std::thread::sleep(duration);
    measuring.store(false, Ordering::Relaxed);
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut all: Vec<u32> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)] as f64 / 1000.0;
    Run {
        throughput: all.len() as f64 / elapsed.as_secs_f64(),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    }
}

/// The stand-in legacy agent: a REP on its own thread that accepts every write.
fn start_legacy(ctx: &zmq::Context) -> String {
    let s = ctx.socket(zmq::REP).unwrap();
    s.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = s.get_last_endpoint().unwrap().unwrap();
    std::thread::Builder::new()
        .name("echo-rep".into())
        .spawn(move || {
            let mut msg = zmq::Message::new();
            loop {
                s.recv(&mut msg, 0).unwrap();
                let read = msg.windows(14).any(|w| w == b"\"get_memories\"");
                s.send(if read { NO_MEMORIES } else { ACCEPTED }, 0)
                    .unwrap();
            }
        })
        .unwrap();
    endpoint
}

/// An orchestrator stand-in that acknowledges every request at once: a ROUTER on its own
/// thread answering `success` with the request's id.
fn start_sink(ctx: &zmq::Context) -> String {
    let s = ctx.socket(zmq::ROUTER).unwrap();
    s.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = s.get_last_endpoint().unwrap().unwrap();
    std::thread::Builder::new()
        .name("sink".into())
        .spawn(move || {
            loop {
                let frames = s.recv_multipart(0).unwrap();
                let body: serde_json::Value =
                    serde_json::from_slice(frames.last().unwrap()).unwrap();
                // Enough for a delivery (success) and for a read (an empty page).
                let reply = serde_json::json!({"status": "success", "request_id": body["request_id"],
                    "data": {"memories": [], "total_count": 0, "page_info": {"has_more": false}}});
                s.send(&frames[0][..], zmq::SNDMORE).unwrap();
                s.send("", zmq::SNDMORE).unwrap();
                s.send(reply.to_string().as_bytes(), 0).unwrap();
            }
        })
        .unwrap();
    endpoint
}

/// The yardstick, run in a process of its own like memshift (`bench --yardstick ECHO`):
/// libzmq's built-in proxy, ROUTER toward clients, DEALER toward the echo.
fn run_yardstick(echo: &str) {
    let ctx = zmq::Context::new();
    let frontend = ctx.socket(zmq::ROUTER).unwrap();
    frontend.bind("tcp://127.0.0.1:*").unwrap();
    let backend = ctx.socket(zmq::DEALER).unwrap();
    backend.connect(echo).unwrap();
    let endpoint = frontend.get_last_endpoint().unwrap().unwrap();
    println!(
        "{}",
        serde_json::json!({"agents": [{"endpoint": endpoint}]})
    );
    let _ = zmq::proxy(&frontend, &backend);
}

/// A port nobody listens on.
fn free_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("tcp://{}", listener.local_addr().unwrap())
}

/// A proxy (or the orchestrator) in a child process; killed on drop.
struct Sidecar {
    child: Child,
    endpoint: String,
    metrics: Option<String>,
    _dir: tempfile::TempDir,
}

impl Sidecar {
    /// The real memshift binary, as deployed: stage `off`, or `dualwrite` to `mirror_to`
    /// with its outbox on the same disk as `target/` (not a tmpfs), fsynced.
    fn memshift(legacy: &str, mirror_to: Option<&str>, flags: &str) -> Sidecar {
        let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
        std::fs::create_dir_all(&target).unwrap();
        let dir = match std::env::var("BENCH_OUTBOX_DIR") {
            Ok(d) => tempfile::TempDir::new_in(d).unwrap(),
            Err(_) => tempfile::TempDir::new_in(&target).unwrap(),
        };
        let mirror = match mirror_to {
            None => String::new(),
            Some(orchestrator) => {
                let flags_file = dir.path().join("flags.toml");
                std::fs::write(&flags_file, format!("[agents.bench]\n{flags}\n")).unwrap();
                format!(
                    "[rollout]\nflags = \"{}\"\n[mirror]\norchestrator = \"{orchestrator}\"\ndata_dir = \"{}\"\nmax_pending = 100000000\n{}\n",
                    flags_file.display(),
                    dir.path().display(),
                    std::env::var("BENCH_MIRROR")
                        .unwrap_or_default()
                        .replace("\\n", "\n")
                )
            }
        };
        let config = dir.path().join("bench.toml");
        std::fs::write(
            &config,
            format!(
                "[metrics]\nlisten = \"127.0.0.1:0\"\n[log]\nlevel = \"warn\"\n[[agents]]\nname = \"bench\"\nprofile = \"jarvis_memory\"\nlisten = \"tcp://127.0.0.1:*\"\nlegacy = \"{legacy}\"\n{mirror}"
            ),
        )
        .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_memshift"));
        command
            .args(["proxy", "--config"])
            .arg(&config)
            .env_remove("RUST_LOG");
        Sidecar::spawn(command, dir)
    }

    /// A real orchestrator on `database_url`. Its embedding worker is off: embedding is the
    /// orchestrator's own cost (`make bench-orchestrator`), and on a two-core machine it
    /// would compete with the path being measured.
    fn orchestrator(database_url: &str) -> Sidecar {
        let dir = tempfile::TempDir::new().unwrap();
        let config = dir.path().join("orchestrator.toml");
        std::fs::write(
            &config,
            format!(
                "[log]\nlevel = \"warn\"\n[database]\nurl = \"{database_url}\"\n[orchestrator]\nlisten = \"tcp://127.0.0.1:*\"\nmetrics_listen = \"127.0.0.1:0\"\naccess_log = false\n[embedding]\nworker = false\n"
            ),
        )
        .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_memshift"));
        command
            .args(["orchestrator", "--config"])
            .arg(&config)
            .env_remove("RUST_LOG");
        Sidecar::spawn(command, dir)
    }

    /// The sum of the series of `name` whose labels contain `filter`, from `/metrics`.
    fn metric_sum(&self, name: &str, filter: &str) -> f64 {
        let Some(addr) = &self.metrics else {
            return f64::NAN;
        };
        http_get(addr, "/metrics")
            .lines()
            .filter(|l| l.starts_with(name) && l.contains(filter))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }

    /// What shadow and live did with the reads: proof that they compared and served.
    fn read_summary(&self) -> String {
        let sum = |name: &str, filter: &str| self.metric_sum(name, filter);
        format!(
            "comparisons match {:.0}, mismatch {:.0}, skipped {:.0}, errors {:.0}; served by the orchestrator {:.0}, fallbacks {:.0}",
            sum("memshift_comparisons_total", "outcome=\"match\""),
            sum("memshift_comparisons_total", "outcome=\"mismatch\""),
            sum("memshift_comparisons_total", "outcome=\"skipped\""),
            sum("memshift_comparisons_total", "outcome=\"shadow_")
                + sum("memshift_comparisons_total", "outcome=\"legacy_error"),
            sum("memshift_served_total", "backend=\"orchestrator\""),
            sum("memshift_live_fallbacks_total", ""),
        )
    }

    /// The mirror's counters from the proxy's `/metrics`.
    fn mirror_summary(&self) -> String {
        let sum = |name: &str, filter: &str| self.metric_sum(name, filter);
        format!(
            "writes queued {:.0}, dropped {:.0}; deliveries {:.0}; outbox pending {:.0}",
            sum("memshift_mirror_writes_total", "outcome=\"queued\""),
            sum("memshift_mirror_writes_total", "outcome=\"dropped\""),
            sum("memshift_mirror_deliveries_total", "outcome=\"delivered\""),
            sum("memshift_outbox_pending", ""),
        )
    }

    /// This benchmark binary again, in yardstick mode.
    fn yardstick(echo: &str) -> Sidecar {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command.args(["--yardstick", echo]);
        Sidecar::spawn(command, tempfile::TempDir::new().unwrap())
    }

    /// Starts `command` and reads the endpoint from its ready line.
    fn spawn(mut command: Command, dir: tempfile::TempDir) -> Sidecar {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the proxy");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ready: serde_json::Value = serde_json::from_str(&line).expect("ready line");
        let endpoint = ready["agents"][0]["endpoint"]
            .as_str()
            .or(ready["endpoint"].as_str())
            .unwrap()
            .to_owned();
        Sidecar {
            child,
            endpoint,
            metrics: ready["metrics"].as_str().map(str::to_owned),
            _dir: dir,
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bare HTTP/1.0 GET, for one scrape.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    body
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn env_or(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
