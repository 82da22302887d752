//! `make bench`: the primary path's throughput and latency, next to its yardstick.
//!
//! In one run on one machine, closed-loop REQ clients send 1 KiB JSON requests to a fast
//! echo REP (Rust, zero-copy, so the proxies rather than a Python agent are what is
//! measured) by three routes:
//! - `direct`: clients → echo;
//! - `zmq_proxy`: clients → libzmq's own `zmq_proxy` (ROUTER/DEALER) → echo, the
//!   yardstick; in a process of its own, as memshift is, so both pay the same hops;
//! - `memshift`: clients → the real `memshift proxy` binary → echo.
//!
//! Each (route, client count) is run several rounds, interleaved and in rotating order, so
//! machine noise falls on all routes alike; the figures are medians over rounds. Prints a
//! table and writes `target/bench/proxy.json`.
//!
//! Knobs (environment): `BENCH_SECONDS` per run (default 3), `BENCH_ROUNDS` (default 5),
//! `BENCH_CLIENTS` (default "1,16").

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
    Memshift,
}

impl Route {
    const ALL: [Route; 3] = [Route::Direct, Route::ZmqProxy, Route::Memshift];

    fn name(self) -> &'static str {
        match self {
            Route::Direct => "direct",
            Route::ZmqProxy => "zmq_proxy",
            Route::Memshift => "memshift",
        }
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

    let ctx = zmq::Context::new();
    let echo = start_echo(&ctx);
    let yardstick = Sidecar::yardstick(&echo);
    let memshift = Sidecar::memshift(&echo);
    let endpoint = |route: Route| match route {
        Route::Direct => echo.clone(),
        Route::ZmqProxy => yardstick.endpoint.clone(),
        Route::Memshift => memshift.endpoint.clone(),
    };
    let payload = request_payload();

    eprintln!(
        "bench: {} s per run, {rounds} rounds, clients {clients:?}, {} cores",
        seconds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut results = Vec::new();
    for &n in &clients {
        let mut runs: Vec<Vec<Run>> = Route::ALL.iter().map(|_| Vec::new()).collect();
        for round in 0..rounds {
            for k in 0..Route::ALL.len() {
                let i = (k + round) % Route::ALL.len();
                let run = load(&ctx, &endpoint(Route::ALL[i]), n, duration, &payload);
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
            results.push(summarise(*route, n, &runs[i]));
        }
    }
    drop(memshift);
    drop(yardstick);
    report(&results, seconds, rounds);
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

fn report(results: &[Summary], seconds: f64, rounds: usize) {
    println!();
    println!(
        "Primary path, 1 KiB JSON requests, echo REP legacy; medians of {rounds} runs of {seconds} s"
    );
    println!(
        "{:>7}  {:<10} {:>11} {:>9} {:>9}   {:>16} {:>12}",
        "clients", "route", "req/s", "p50 µs", "p99 µs", "tput vs zmq_proxy", "p99 vs zmq_proxy"
    );
    let mut json = Vec::new();
    for s in results {
        let base = results
            .iter()
            .find(|b| b.clients == s.clients && b.route == Route::ZmqProxy)
            .expect("yardstick measured");
        let tput_ratio = s.throughput / base.throughput;
        let p99_ratio = s.p99_us / base.p99_us;
        println!(
            "{:>7}  {:<10} {:>11.0} {:>9.1} {:>9.1}   {:>16.2}x {:>11.2}x",
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
        }));
    }
    println!("targets: memshift throughput >= 0.90x and p99 <= 1.20x zmq_proxy");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&out).expect("create target/bench");
    let doc = serde_json::json!({
        "payload_bytes": PAYLOAD_BYTES,
        "seconds_per_run": seconds,
        "rounds": rounds,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "results": json,
    });
    let path = out.join("proxy.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).expect("write results");
    println!("written to {}", path.display());
}

/// A 1 KiB request shaped like a jarvis `get_memories` call.
fn request_payload() -> Vec<u8> {
    let head = r#"{"action": "get_memories", "user_id": "bench-user", "pad": ""#;
    let tail = r#""}"#;
    let pad = "p".repeat(PAYLOAD_BYTES - head.len() - tail.len());
    let body = format!("{head}{pad}{tail}");
    assert_eq!(body.len(), PAYLOAD_BYTES);
    body.into_bytes()
}

/// `n` closed-loop REQ clients for `duration` after a warm-up; latencies of every request.
fn load(ctx: &zmq::Context, endpoint: &str, n: usize, duration: Duration, payload: &[u8]) -> Run {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (ctx, endpoint, payload) = (ctx.clone(), endpoint.to_owned(), payload.to_vec());
            let (measuring, stop) = (measuring.clone(), stop.clone());
            std::thread::spawn(move || {
                let s = ctx.socket(zmq::REQ).unwrap();
                s.set_linger(0).unwrap();
                s.set_rcvtimeo(10_000).unwrap();
                s.connect(&endpoint).unwrap();
                let mut latencies = Vec::with_capacity(200_000);
                let mut reply = zmq::Message::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    s.send(&payload[..], 0).unwrap();
                    s.recv(&mut reply, 0).expect("reply within 10 s");
                    assert_eq!(reply.len(), payload.len());
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

/// The stand-in legacy agent: an echo REP on its own thread, zero-copy.
fn start_echo(ctx: &zmq::Context) -> String {
    let s = ctx.socket(zmq::REP).unwrap();
    s.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = s.get_last_endpoint().unwrap().unwrap();
    std::thread::Builder::new()
        .name("echo-rep".into())
        .spawn(move || {
            let mut msg = zmq::Message::new();
            loop {
                s.recv(&mut msg, 0).unwrap();
                let reply = std::mem::replace(&mut msg, zmq::Message::new());
                s.send(reply, 0).unwrap();
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

/// A proxy in a child process, in front of the echo; killed on drop.
struct Sidecar {
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Sidecar {
    /// The real memshift binary, as deployed.
    fn memshift(echo: &str) -> Sidecar {
        let dir = tempfile::TempDir::new().unwrap();
        let config = dir.path().join("bench.toml");
        std::fs::write(
            &config,
            format!(
                "[metrics]\nlisten = \"127.0.0.1:0\"\n[log]\nlevel = \"warn\"\n[[agents]]\nname = \"bench\"\nprofile = \"jarvis_memory\"\nlisten = \"tcp://127.0.0.1:*\"\nlegacy = \"{echo}\"\n"
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
        let endpoint = ready["agents"][0]["endpoint"].as_str().unwrap().to_owned();
        Sidecar {
            child,
            endpoint,
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
