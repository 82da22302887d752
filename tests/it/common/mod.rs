//! Shared test harness: the real `memshift` binary, the Python legacy stand-ins, and ZMQ
//! clients on 127.0.0.1 with `*` ports read back. Every wait has a deadline; every socket a
//! receive timeout; every child process is killed on drop.

pub mod pg;
pub mod prometheus;
pub mod relay;
pub mod rig;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Long enough for a slow shared machine, short enough that a hang fails fast.
pub const TIMEOUT: Duration = Duration::from_secs(10);

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn python() -> PathBuf {
    std::env::var_os("MEMSHIFT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"))
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Asserts that `check` holds throughout `period` (polled every 10 ms): for what must not
/// happen, which no deadline can show. Fails as soon as it does not hold.
pub fn holds(what: &str, period: Duration, mut check: impl FnMut() -> bool) {
    let end = Instant::now() + period;
    loop {
        assert!(check(), "{what} did not hold");
        if Instant::now() >= end {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A Python stand-in of one legacy agent.
pub struct StandIn {
    child: Child,
    pub endpoint: String,
    pub data_dir: PathBuf,
    _tmp: Option<TempDir>,
}

impl StandIn {
    /// A stand-in with a fresh data directory on a free port, real clock.
    pub fn start(agent: &str) -> StandIn {
        let tmp = TempDir::new().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut s = StandIn::spawn(agent, &dir, "tcp://127.0.0.1:*", &[]);
        s._tmp = Some(tmp);
        s
    }

    /// A stand-in with a fresh data directory on a free port, real clock, and the stand-in
    /// options `extra`.
    pub fn start_with(agent: &str, extra: &[&str]) -> StandIn {
        let tmp = TempDir::new().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut s = StandIn::spawn(agent, &dir, "tcp://127.0.0.1:*", extra);
        s._tmp = Some(tmp);
        s
    }

    /// A stand-in whose clock and uuids are deterministic, so two of them fed the same
    /// requests answer with the same bytes.
    pub fn start_frozen(agent: &str) -> StandIn {
        let tmp = TempDir::new().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        // The frozen clock lies in the past: keep the idle-session expiry out of the way.
        let args = [
            "--frozen-clock",
            "1763934484.5",
            "--seed",
            "7",
            "--idle-expiry",
            "1e9",
        ];
        let mut s = StandIn::spawn(agent, &dir, "tcp://127.0.0.1:*", &args);
        s._tmp = Some(tmp);
        s
    }

    pub fn spawn(agent: &str, data_dir: &std::path::Path, bind: &str, extra: &[&str]) -> StandIn {
        let script = repo().join("tests/standins/legacy_agents.py");
        let mut child = Command::new(python())
            .arg(script)
            .arg(agent)
            .args(["--bind", bind, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python stand-in starts (run scripts/bootstrap.sh first)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("stand-in announces READY");
        let endpoint = line
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("unexpected stand-in output {line:?}"))
            .trim()
            .to_owned();
        StandIn {
            child,
            endpoint,
            data_dir: data_dir.to_path_buf(),
            _tmp: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `None` while running, the exit status once it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `memshift` child process (any long-running subcommand) with its own config file,
/// started and waited for through its ready line.
pub struct Process {
    child: Child,
    /// The ready line.
    pub ready: serde_json::Value,
    pub metrics: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
    _dir: TempDir,
}

impl Process {
    /// Writes `toml` to a fresh config file, starts `memshift <subcommand>` on it and waits
    /// for its ready line.
    pub fn start(subcommand: &str, toml: &str) -> Process {
        Process::try_start(subcommand, toml, &[]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// As [`Process::start`], but a process that exits instead of announcing readiness is
    /// an `Err` with its stderr.
    pub fn try_start(
        subcommand: &str,
        toml: &str,
        env: &[(&str, &str)],
    ) -> Result<Process, String> {
        let dir = TempDir::new().expect("tempdir");
        let config = dir.path().join("memshift.toml");
        std::fs::write(&config, toml).expect("write config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_memshift"))
            .args([subcommand, "--config"])
            .arg(&config)
            .env("RUST_LOG", "memshift=debug")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("memshift starts");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read ready line");
        let Ok(ready) = serde_json::from_str::<serde_json::Value>(&line) else {
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
            return Err(format!(
                "no ready line: {line:?}; stderr: {:?}",
                stderr.lock().unwrap()
            ));
        };
        let metrics = ready["metrics"]
            .as_str()
            .expect("metrics")
            .parse()
            .expect("addr");
        Ok(Process {
            child,
            ready,
            metrics,
            stderr,
            _dir: dir,
        })
    }

    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), signal).expect("signal memshift");
    }

    /// Waits for a log line containing `needle`.
    pub fn wait_for_log(&self, needle: &str) {
        wait_for(&format!("log line {needle:?}"), TIMEOUT, || {
            self.stderr
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(needle))
                .then_some(())
        });
    }

    pub fn logs(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// The exit status if the process has exited, without waiting.
    pub fn wait_exit_or_none(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        wait_for("memshift to exit", timeout, || {
            self.child.try_wait().expect("try_wait")
        })
    }

    pub fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.metrics, path)
    }

    pub fn metrics_text(&self) -> String {
        let (status, body) = self.http_get("/metrics");
        assert_eq!(status, 200);
        body
    }

    /// The metrics text once `settled` holds for it. The proxy counts a request just after
    /// handing its reply to libzmq (only then is the outcome known), so a client holding
    /// its reply can read `/metrics` a moment before the count moves.
    pub fn metrics_when(&self, what: &str, settled: impl Fn(&str) -> bool) -> String {
        wait_for(what, TIMEOUT, || {
            let text = self.metrics_text();
            settled(&text).then_some(text)
        })
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `memshift proxy` child process.
pub struct Proxy {
    process: Process,
    /// Bound listen endpoint per agent name.
    pub endpoints: HashMap<String, String>,
}

impl std::ops::Deref for Proxy {
    type Target = Process;
    fn deref(&self) -> &Process {
        &self.process
    }
}

impl std::ops::DerefMut for Proxy {
    fn deref_mut(&mut self) -> &mut Process {
        &mut self.process
    }
}

/// An `[[agents]]` table for `legacy`, listening on a free port.
pub fn agent_toml(name: &str, profile: &str, legacy: &str, extra: &str) -> String {
    format!(
        "[[agents]]\nname = \"{name}\"\nprofile = \"{profile}\"\nlisten = \"tcp://127.0.0.1:*\"\nlegacy = \"{legacy}\"\n{extra}\n"
    )
}

impl Proxy {
    /// Starts the proxy with `[metrics] listen` on a free port, the given `[proxy]` keys
    /// and agent tables, and waits for its ready line.
    pub fn start(proxy_keys: &str, agents: &str) -> Proxy {
        Proxy::start_toml(&proxy_toml(proxy_keys, agents))
    }

    /// Starts the proxy on a whole configuration (see [`proxy_toml`]).
    pub fn start_toml(toml: &str) -> Proxy {
        let process = Process::start("proxy", toml);
        let endpoints = process.ready["agents"]
            .as_array()
            .expect("agents")
            .iter()
            .map(|a| {
                (
                    a["agent"].as_str().unwrap().to_owned(),
                    a["endpoint"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        Proxy { process, endpoints }
    }

    pub fn endpoint(&self, agent: &str) -> &str {
        &self.endpoints[agent]
    }
}

/// A proxy configuration: `[metrics] listen` on a free port, the given `[proxy]` keys, then
/// `rest` (agent tables, other sections).
pub fn proxy_toml(proxy_keys: &str, rest: &str) -> String {
    format!("[metrics]\nlisten = \"127.0.0.1:0\"\n[proxy]\n{proxy_keys}\n{rest}")
}

/// Runs `memshift ARGS… --config FILE` with `toml` in FILE and returns its output.
pub fn memshift_cli(args: &[&str], toml: &str) -> std::process::Output {
    let dir = TempDir::new().expect("tempdir");
    let config = dir.path().join("memshift.toml");
    std::fs::write(&config, toml).expect("write config");
    Command::new(env!("CARGO_BIN_EXE_memshift"))
        .args(args)
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run memshift")
}

/// Runs a one-shot `memshift <subcommand>` on a config file holding `toml`, with
/// `DATABASE_URL` set to `database_url` (or removed), and returns its output.
pub fn run_memshift(
    subcommand: &str,
    toml: &str,
    database_url: Option<&str>,
) -> std::process::Output {
    let dir = TempDir::new().expect("tempdir");
    let config = dir.path().join("memshift.toml");
    std::fs::write(&config, toml).expect("write config");
    let mut command = Command::new(env!("CARGO_BIN_EXE_memshift"));
    command.args([subcommand, "--config"]).arg(&config);
    match database_url {
        Some(url) => command.env("DATABASE_URL", url),
        None => command.env_remove("DATABASE_URL"),
    };
    command.output().expect("run memshift")
}

/// A minimal HTTP/1.1 GET (no client library needed for two endpoints).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect to HTTP");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("HTTP response");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, body.to_owned())
}

/// The value of one series in a Prometheus text exposition; `None` if it is absent.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric_name, rest) = series.split_once('{').unwrap_or((series, "}"));
            if metric_name != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            all.then(|| value.parse().expect("numeric metric value"))
        })
}

/// The sum of every series of `name` that has all of `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric_name, rest) = series.split_once('{').unwrap_or((series, "}"));
            let all = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            (metric_name == name && all).then(|| value.parse::<f64>().expect("numeric"))
        })
        .sum()
}

/// A REQ client with a receive timeout.
pub fn req_socket(ctx: &zmq::Context, endpoint: &str) -> zmq::Socket {
    client(ctx, zmq::REQ, endpoint)
}

/// A DEALER client (it must send the empty delimiter itself) with a receive timeout.
pub fn dealer_socket(ctx: &zmq::Context, endpoint: &str) -> zmq::Socket {
    client(ctx, zmq::DEALER, endpoint)
}

fn client(ctx: &zmq::Context, kind: zmq::SocketType, endpoint: &str) -> zmq::Socket {
    let s = ctx.socket(kind).expect("socket");
    s.set_rcvtimeo(TIMEOUT.as_millis() as i32).unwrap();
    s.set_sndtimeo(TIMEOUT.as_millis() as i32).unwrap();
    s.set_linger(0).unwrap();
    s.connect(endpoint).expect("connect");
    s
}

/// One request, one reply, through a REQ socket.
pub fn request(socket: &zmq::Socket, body: &[u8]) -> Vec<u8> {
    socket.send(body, 0).expect("send");
    socket.recv_bytes(0).expect("reply within the timeout")
}

/// One request, one reply, through a DEALER socket (delimiter handled here).
pub fn dealer_request(socket: &zmq::Socket, body: &[u8]) -> Vec<u8> {
    socket.send_multipart([&b""[..], body], 0).expect("send");
    let mut frames = socket.recv_multipart(0).expect("reply within the timeout");
    assert_eq!(frames.len(), 2, "a DEALER reply is [\"\", body]");
    assert!(frames[0].is_empty());
    frames.pop().unwrap()
}

/// A legacy agent played by the test itself: a REP socket whose replies the test controls.
pub struct ManualLegacy {
    pub socket: zmq::Socket,
    pub endpoint: String,
}

impl ManualLegacy {
    pub fn bind(ctx: &zmq::Context) -> ManualLegacy {
        let socket = ctx.socket(zmq::REP).expect("socket");
        socket.set_rcvtimeo(TIMEOUT.as_millis() as i32).unwrap();
        socket.set_linger(0).unwrap();
        socket.bind("tcp://127.0.0.1:*").expect("bind");
        let endpoint = socket.get_last_endpoint().unwrap().unwrap();
        ManualLegacy { socket, endpoint }
    }

    pub fn recv(&self) -> Vec<Vec<u8>> {
        self.socket
            .recv_multipart(0)
            .expect("request reaches the legacy agent")
    }

    pub fn reply(&self, body: &[u8]) {
        self.socket.send(body, 0).expect("reply");
    }
}

/// An echo REP on its own thread, answering every request with its own bytes until
/// `stop` is dropped.
pub fn echo_legacy(ctx: &zmq::Context) -> (String, std::sync::mpsc::Sender<()>) {
    let socket = ctx.socket(zmq::REP).expect("socket");
    socket.set_linger(0).unwrap();
    socket.set_rcvtimeo(50).unwrap();
    socket.bind("tcp://127.0.0.1:*").expect("bind");
    let endpoint = socket.get_last_endpoint().unwrap().unwrap();
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        while matches!(
            stopped.try_recv(),
            Err(std::sync::mpsc::TryRecvError::Empty)
        ) {
            if let Ok(msg) = socket.recv_bytes(0) {
                socket.send(msg, 0).expect("echo");
            }
        }
    });
    (endpoint, stop)
}
