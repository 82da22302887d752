//! A real Prometheus (Debian's `prometheus` package) scraping memshift processes, and the
//! whole migration stand it scrapes: PostgreSQL, the orchestrator, the three stand-ins and
//! one proxy in front of them, under traffic.

use super::pg::{Orchestrator, TestDb, config_with_database};
use super::rig::write_flags;
use super::*;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    _dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` every second and evaluating the rule files.
    pub fn start(targets: &[SocketAddr], rule_files: &[&Path]) -> Prometheus {
        let dir = TempDir::new().expect("tempdir");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let rules: Vec<String> = rule_files
            .iter()
            .map(|r| format!("'{}'", r.display()))
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: [{}]\n\
             scrape_configs:\n  - job_name: memshift\n    static_configs:\n      - targets: [{}]\n",
            rules.join(", "),
            targets.join(", ")
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).expect("write config");
        let addr = super::pg::free_addr();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("prometheus starts (Debian package `prometheus`, installed by bootstrap)");
        let prometheus = Prometheus {
            child,
            addr,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            client: reqwest::Client::new(),
            _dir: dir,
        };
        wait_for("Prometheus to be ready", TIMEOUT, || {
            prometheus.get("/-/ready", &[]).ok()
        });
        prometheus
    }

    /// The base URL, for `memshift report --prometheus`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `GET path?query`; the body as JSON (or as a string when it is not JSON).
    pub fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, String> {
        let url = format!("http://{}{path}", self.addr);
        self.runtime.block_on(async {
            let response = self
                .client
                .get(&url)
                .query(query)
                .timeout(TIMEOUT)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let body = response.text().await.map_err(|e| e.to_string())?;
            let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
            if status.is_success() {
                Ok(value)
            } else {
                Err(format!("{status}: {value}"))
            }
        })
    }

    /// An instant query: its result vector, or Prometheus's error.
    pub fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let body = self.get("/api/v1/query", &[("query", expr)])?;
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Waits until every target has been scraped successfully `n` times at least.
    pub fn wait_scraped(&self, n: usize) {
        let deadline = Instant::now() + TIMEOUT * 3;
        let query = format!("count_over_time(up[1m]) >= {n} and up == 1");
        loop {
            let targets = self.get("/api/v1/targets", &[]);
            let done = self.query(&query);
            if let Ok(series) = &done {
                let total = targets
                    .as_ref()
                    .ok()
                    .and_then(|t| t["data"]["activeTargets"].as_array().map(|a| a.len()));
                if total.is_some_and(|t| t > 0 && series.len() == t) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {n} scrapes of every target: {done:?}; targets: {targets:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The three legacy agents behind one proxy, mirroring to an orchestrator on a fresh
/// database: session_memory live at 50 %, contextual_memory in shadow, jarvis_memory live
/// at 100 % (gates warn only: the traffic is too small for them).
pub struct Stand {
    pub db: TestDb,
    pub orchestrator: Orchestrator,
    pub proxy: Proxy,
    /// The proxy's configuration, with `[database]`.
    pub toml: String,
    pub legacy: Vec<StandIn>,
    pub data: TempDir,
    stop: Arc<AtomicBool>,
    pub sent: Arc<AtomicU64>,
    traffic: Vec<JoinHandle<()>>,
}

pub const AGENTS: [(&str, &str); 3] = [
    ("session_memory", "stage = \"live\"\nread_percent = 50\n"),
    ("contextual_memory", "stage = \"shadow\"\n"),
    ("jarvis_memory", "stage = \"live\"\nread_percent = 100\n"),
];

impl Stand {
    pub fn start() -> Stand {
        let db = TestDb::new();
        let orchestrator = Orchestrator::start(&db, "", "");
        let data = TempDir::new().expect("tempdir");
        let legacy: Vec<StandIn> = AGENTS.iter().map(|(a, _)| StandIn::start(a)).collect();
        write_flags(data.path(), &AGENTS);
        let agents: String = AGENTS
            .iter()
            .zip(&legacy)
            .map(|((a, _), l)| agent_toml(a, a, &l.endpoint, ""))
            .collect();
        // The database too: the one-shot commands (reconcile, report) read it.
        let toml = config_with_database(
            &proxy_toml(
                "",
                &format!(
                    "{agents}[mirror]\norchestrator = \"{orch}\"\ndata_dir = \"{data}\"\n\
                 timeout = \"500ms\"\n[rollout]\nflags = \"{data}/flags.toml\"\ngates = \"warn\"\n",
                    orch = orchestrator.endpoint,
                    data = data.path().display()
                ),
            ),
            &db,
        );
        let proxy = Proxy::start_toml(&toml);
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let traffic = AGENTS
            .iter()
            .map(|(agent, _)| {
                let endpoint = proxy.endpoint(agent).to_owned();
                let (agent, stop, sent) = (*agent, stop.clone(), sent.clone());
                std::thread::spawn(move || traffic(agent, &endpoint, &stop, &sent))
            })
            .collect();
        Stand {
            db,
            orchestrator,
            proxy,
            toml,
            legacy,
            data,
            stop,
            sent,
            traffic,
        }
    }

    /// Stops the traffic and waits for it.
    pub fn stop_traffic(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.traffic.drain(..) {
            t.join().expect("traffic thread");
        }
    }
}

impl Drop for Stand {
    fn drop(&mut self) {
        self.stop_traffic();
    }
}

/// Writes and reads of `agent` through the proxy until `stop`, over a handful of keys so
/// that reads find what was written. Each read asks for another key than the write before
/// it, one whose mirrored writes have had time to land (a read racing its key's writes is
/// compared as a `race`, not a match).
fn traffic(agent: &str, endpoint: &str, stop: &AtomicBool, sent: &AtomicU64) {
    let ctx = zmq::Context::new();
    let socket = req_socket(&ctx, endpoint);
    let call = |request: Value| {
        let reply = request_json(&socket, &request);
        sent.fetch_add(1, Ordering::Relaxed);
        reply
    };
    let mut sessions = Vec::new();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let (key, other) = ((i % 6) as usize, ((i + 3) % 6) as usize);
        match agent {
            "session_memory" => {
                if sessions.len() < 6 {
                    let reply =
                        call(json!({"action": "create_session", "user_id": format!("u{key}")}));
                    sessions.push(reply["session_id"].as_str().expect("session id").to_owned());
                }
                let (written, read) = (
                    &sessions[key % sessions.len()],
                    &sessions[other % sessions.len()],
                );
                call(
                    json!({"action": "add_interaction", "session_id": written, "role": "user",
                    "content": format!("turn {i}")}),
                );
                call(json!({"action": "get_context", "session_id": read}));
            }
            "contextual_memory" => {
                let sid = format!("room-{key}");
                call(
                    json!({"action": "add_interaction", "session_id": sid, "type": "user_query",
                    "content": format!("question {i}")}),
                );
                if i.is_multiple_of(10) {
                    call(json!({"action": "record_decision", "session_id": sid,
                        "decision": format!("decision {i}")}));
                }
                call(json!({"action": "get_context", "session_id": format!("room-{other}")}));
            }
            _ => {
                call(
                    json!({"action": "add_memory", "user_id": format!("user-{key}"),
                    "memory": {"text": format!("memory {i}")}}),
                );
                call(json!({"action": "get_memories", "user_id": format!("user-{other}")}));
            }
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn request_json(socket: &zmq::Socket, request: &Value) -> Value {
    let reply = super::request(socket, request.to_string().as_bytes());
    serde_json::from_slice(&reply).expect("JSON reply")
}
