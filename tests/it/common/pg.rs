//! PostgreSQL for the tests: a fresh, migrated database per test on the server at
//! `DATABASE_URL` (scripts/test.sh provides one), a private cluster for tests that stop
//! the server, and the real `memshift orchestrator` on top.

use super::{Process, TIMEOUT, wait_for};
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use tempfile::TempDir;

/// A database of its own for one test, dropped afterwards.
pub struct TestDb {
    pub url: String,
    name: String,
    admin_url: String,
    rt: tokio::runtime::Runtime,
    pool: Option<PgPool>,
}

fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .expect("DATABASE_URL is not set: run the tests with scripts/test.sh (make test)")
}

/// `postgres://…/old` → `postgres://…/name`.
fn with_database(url: &str, name: &str) -> String {
    let mut u = url::Url::parse(url).expect("DATABASE_URL is a URL");
    u.set_path(name);
    u.to_string()
}

impl TestDb {
    /// A new empty database on the `DATABASE_URL` server (not migrated: the orchestrator or
    /// `memshift migrate` does that, as in production).
    pub fn new() -> TestDb {
        TestDb::on_server(&server_url())
    }

    /// A new empty database on the server at `server`.
    pub fn on_server(server: &str) -> TestDb {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "memshift_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let admin_url = server.to_owned();
        rt.block_on(async {
            let admin = PgPoolOptions::new()
                .max_connections(1)
                .connect(&admin_url)
                .await
                .expect("connect to the test server");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&admin)
                .await
                .expect("create the test database");
            admin.close().await;
        });
        TestDb {
            url: with_database(server, &name),
            name,
            admin_url,
            rt,
            pool: None,
        }
    }

    fn pool(&mut self) -> PgPool {
        if self.pool.is_none() {
            let url = self.url.clone();
            let pool = self.rt.block_on(async {
                PgPoolOptions::new()
                    .max_connections(2)
                    .connect(&url)
                    .await
                    .expect("connect to the test database")
            });
            self.pool = Some(pool);
        }
        self.pool.clone().unwrap()
    }

    /// Runs a statement; returns the rows affected.
    pub fn exec(&mut self, sql: &str) -> u64 {
        let pool = self.pool();
        self.rt
            .block_on(sqlx::query(sql).execute(&pool))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .rows_affected()
    }

    /// The first column of the first row, as a bigint.
    pub fn scalar(&mut self, sql: &str) -> i64 {
        let pool = self.pool();
        self.rt
            .block_on(sqlx::query(sql).fetch_one(&pool))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get::<i64, _>(0)
    }

    /// The first column of every row, as text.
    pub fn texts(&mut self, sql: &str) -> Vec<String> {
        let pool = self.pool();
        self.rt
            .block_on(sqlx::query(sql).fetch_all(&pool))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            self.rt.block_on(pool.close());
        }
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Best effort: the server may be gone (a test stopped its private cluster).
        let _ = self.rt.block_on(async move {
            let admin = PgPoolOptions::new()
                .max_connections(1)
                .connect(&admin_url)
                .await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&admin)
                .await?;
            admin.close().await;
            Ok::<_, sqlx::Error>(())
        });
    }
}

/// A PostgreSQL cluster of the test's own, for tests that stop and restart the server.
pub struct PgCluster {
    pub url: String,
    dir: TempDir,
}

fn pg_script() -> PathBuf {
    std::env::var_os("MEMSHIFT_PG_SCRIPT")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::repo().join("scripts/pg.sh"))
}

impl PgCluster {
    pub fn start() -> PgCluster {
        let dir = TempDir::new().expect("tempdir");
        let url = PgCluster::run("start", &dir);
        PgCluster { url, dir }
    }

    fn run(verb: &str, dir: &TempDir) -> String {
        let out = Command::new("bash")
            .arg(pg_script())
            .arg(verb)
            .arg(dir.path().join("pg"))
            .output()
            .expect("run scripts/pg.sh");
        assert!(
            out.status.success(),
            "pg.sh {verb}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Stops the server (fast shutdown: connections are cut).
    pub fn stop(&self) {
        PgCluster::run("stop", &self.dir);
    }

    /// Starts it again, on the same port, with its data.
    pub fn restart(&self) {
        let url = PgCluster::run("start", &self.dir);
        assert_eq!(url, self.url, "the cluster came back on another port");
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `memshift orchestrator` on a free port.
pub struct Orchestrator {
    pub process: Process,
    pub endpoint: String,
}

impl std::ops::Deref for Orchestrator {
    type Target = Process;
    fn deref(&self) -> &Process {
        &self.process
    }
}

impl std::ops::DerefMut for Orchestrator {
    fn deref_mut(&mut self) -> &mut Process {
        &mut self.process
    }
}

/// The configuration of a test orchestrator on `database_url`, plus `extra` TOML (whole
/// sections, e.g. `[embedding]\nprovider = …`; `[orchestrator]` keys go in `orchestrator`).
/// `orchestrator` may set its own `listen` (a fixed port, to restart on the same endpoint).
pub fn orchestrator_toml(database_url: &str, orchestrator: &str, extra: &str) -> String {
    let listen = if orchestrator.contains("listen =") {
        ""
    } else {
        "listen = \"tcp://127.0.0.1:*\"\n"
    };
    format!(
        "[database]\nurl = \"{database_url}\"\n\
         [orchestrator]\n{listen}metrics_listen = \"127.0.0.1:0\"\n\
         expiry_sweep_interval = \"200ms\"\n{orchestrator}\n{extra}\n"
    )
}

/// A `tcp://127.0.0.1:PORT` endpoint on a port that was free a moment ago, for a process
/// that must come back on the same endpoint after a restart.
pub fn free_endpoint() -> String {
    format!("tcp://{}", free_addr())
}

/// A 127.0.0.1 address on a port that was free a moment ago.
pub fn free_addr() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// `toml` with a `[database]` section naming `db`, for the one-shot commands that read it
/// (backfill's reconcile, report).
pub fn config_with_database(toml: &str, db: &TestDb) -> String {
    format!(
        "{toml}
[database]
url = \"{}\"\n",
        db.url
    )
}

impl Orchestrator {
    /// Starts an orchestrator on `db` with extra `[orchestrator]` keys and extra sections
    /// (an `[embedding]` section defaults to a fast-polling local embedder).
    pub fn start(db: &TestDb, orchestrator: &str, extra: &str) -> Orchestrator {
        Orchestrator::start_on(&db.url, orchestrator, extra)
    }

    pub fn start_on(url: &str, orchestrator: &str, extra: &str) -> Orchestrator {
        Orchestrator::start_with_env(url, orchestrator, extra, &[])
    }

    /// As [`Orchestrator::start_on`], with extra environment variables for the process.
    pub fn start_with_env(
        url: &str,
        orchestrator: &str,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Orchestrator {
        let extra = if extra.contains("[embedding]") {
            extra.to_owned()
        } else {
            format!("[embedding]\npoll_interval = \"50ms\"\n{extra}")
        };
        let toml = orchestrator_toml(url, orchestrator, &extra);
        let process =
            Process::try_start("orchestrator", &toml, env).unwrap_or_else(|e| panic!("{e}"));
        let endpoint = process.ready["endpoint"]
            .as_str()
            .expect("endpoint")
            .to_owned();
        Orchestrator { process, endpoint }
    }

    /// A REQ client with a receive timeout.
    pub fn client(&self, ctx: &zmq::Context) -> Client {
        Client {
            socket: super::req_socket(ctx, &self.endpoint),
            next: 0,
        }
    }

    /// Waits until the embedding queue is empty (every entry searchable semantically).
    pub fn wait_embedded(&self, db: &mut TestDb) {
        wait_for("the embedding backlog to drain", TIMEOUT, || {
            (db.scalar("SELECT count(*) FROM embedding_queue") == 0).then_some(())
        });
    }
}

/// A fresh database, an orchestrator on it (extra `[orchestrator]` keys and sections as in
/// [`Orchestrator::start`]), and a ZMQ context for its clients.
pub fn fresh(orchestrator: &str, extra: &str) -> (TestDb, Orchestrator, zmq::Context) {
    let db = TestDb::new();
    let orch = Orchestrator::start(&db, orchestrator, extra);
    (db, orch, zmq::Context::new())
}

/// `memshift_orchestrator_requests_total{action, outcome}` in a metrics text.
pub fn requests(metrics: &str, action: &str, outcome: &str) -> Option<f64> {
    super::metric(
        metrics,
        "memshift_orchestrator_requests_total",
        &[("action", action), ("outcome", outcome)],
    )
}

/// A REQ client of the orchestrator.
pub struct Client {
    pub socket: zmq::Socket,
    next: u64,
}

impl Client {
    /// Sends one request with a fresh request id; returns the parsed reply after checking
    /// the envelope echoes action and request id.
    pub fn call(&mut self, action: &str, session_id: Option<&str>, payload: Value) -> Value {
        self.next += 1;
        let rid = format!("req-{}", self.next);
        let request = json!({
            "action": action, "session_id": session_id, "payload": payload,
            "request_id": rid, "timestamp": "2026-11-24T00:00:00Z",
        });
        let reply = self.raw(request.to_string().as_bytes());
        assert_eq!(reply["action"], action, "{reply}");
        assert_eq!(reply["request_id"], rid.as_str(), "{reply}");
        reply
    }

    /// `call` that must succeed; returns `data`.
    pub fn ok(&mut self, action: &str, session_id: Option<&str>, payload: Value) -> Value {
        let reply = self.call(action, session_id, payload);
        assert_eq!(reply["status"], "success", "{action}: {reply}");
        reply["data"].clone()
    }

    /// `call` that must fail; returns the error code.
    pub fn err(&mut self, action: &str, session_id: Option<&str>, payload: Value) -> String {
        let reply = self.call(action, session_id, payload);
        assert_eq!(reply["status"], "error", "{action}: {reply}");
        reply["error"]["code"].as_str().expect("code").to_owned()
    }

    /// Any bytes; the parsed reply.
    pub fn raw(&mut self, body: &[u8]) -> Value {
        let reply = super::request(&self.socket, body);
        serde_json::from_slice(&reply).expect("the orchestrator answers JSON")
    }
}
