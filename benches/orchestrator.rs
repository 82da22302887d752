//! `make bench-orchestrator`: the orchestrator against one PostgreSQL with pgvector, each
//! figure next to a yardstick measured in the same run on the same database.
//!
//! 1. `create` throughput, 16 concurrent REQ clients, through the real `memshift
//!    orchestrator` (embedding worker off, so it measures the API) — yardstick: the same
//!    database work (entry, tag and queue rows in one statement) by 16 plain sqlx
//!    connections: no ZMQ, JSON, validation or fingerprint.
//! 2. Embedding backlog drain rate: a second orchestrator with the worker on embeds the
//!    whole backlog (local embedder, 384 dimensions, HNSW maintained) — yardstick: the same
//!    vectors, computed beforehand, inserted in batches of the same size by plain SQL into a
//!    copy of the table with the same HNSW index. The embedder's own speed is printed too.
//! 3. `read` and `search` (semantic, keyword, hybrid) latency p50/p99 at the full corpus,
//!    one client — yardsticks: the same read as one plain SQL query, semantic search by
//!    exact scan (no index), and keyword search as plain PostgreSQL full-text search
//!    (`plainto_tsquery`, every match ranked); the HNSW results' recall@10 against the
//!    exact ones.
//!
//! Needs `DATABASE_URL` (the Makefile starts a throwaway server). Knobs: `BENCH_ENTRIES`
//! (default 100000), `BENCH_QUERIES` (default 300). Writes `target/bench/orchestrator.json`.

use memshift::embed::local::LocalEmbedder;
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CLIENTS: usize = 16;
const DIMENSION: usize = 384;

fn main() {
    let entries: usize = env_or("BENCH_ENTRIES", 100_000);
    let queries: usize = env_or("BENCH_QUERIES", 300);
    let server = std::env::var("DATABASE_URL").expect("DATABASE_URL (use make bench-orchestrator)");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = format!("memshift_bench_{}", std::process::id());
    let url = rt.block_on(create_database(&server, &db));
    let texts = corpus(entries);
    println!(
        "memshift orchestrator benchmark: {entries} entries, {DIMENSION}-dimension local embeddings, {CLIENTS} clients; database {db}"
    );

    // 1. create throughput, worker off.
    let api = Orchestrator::start(&url, false);
    let started = Instant::now();
    create_all(&api.endpoint, &texts);
    let create_secs = started.elapsed().as_secs_f64();
    let create_rate = entries as f64 / create_secs;
    drop(api);
    let raw_n = entries.min(20_000);
    let raw_rate = rt.block_on(raw_creates(&url, &texts[..raw_n]));
    println!(
        "create: {create_rate:.0}/s through memshift ({create_secs:.1} s for {entries}); yardstick: the same statement by plain SQL {raw_rate:.0}/s -> {:.2}x",
        create_rate / raw_rate
    );

    // 2. drain the embedding backlog.
    let local = LocalEmbedder::new(DIMENSION);
    let started = Instant::now();
    for t in &texts {
        std::hint::black_box(local.embed(t));
    }
    let embed_rate = entries as f64 / started.elapsed().as_secs_f64();
    let raw_vectors_rate = rt.block_on(raw_vectors(&url, &local, &texts[..raw_n]));
    let started = Instant::now();
    let worker = Orchestrator::start(&url, true);
    // The first raw_n vectors, from an empty index as the yardstick's, then all of them
    // (HNSW insertion slows as the graph grows).
    rt.block_on(wait_backlog_at_most(&url, (entries - raw_n) as i64));
    let first_rate = raw_n as f64 / started.elapsed().as_secs_f64();
    rt.block_on(wait_backlog_at_most(&url, 0));
    let drain_secs = started.elapsed().as_secs_f64();
    let drain_rate = entries as f64 / drain_secs;
    println!(
        "embedding drain, first {raw_n}: {first_rate:.0} entries/s; yardstick: the same vectors inserted by plain SQL into the same HNSW index {raw_vectors_rate:.0}/s -> {:.2}x",
        first_rate / raw_vectors_rate
    );
    println!(
        "embedding drain, all {entries}: {drain_rate:.0} entries/s ({drain_secs:.1} s); the local embedder alone: {embed_rate:.0} texts/s"
    );

    // 3. latency at the full corpus.
    let ctx = zmq::Context::new();
    let socket = ctx.socket(zmq::REQ).unwrap();
    socket.set_rcvtimeo(30_000).unwrap();
    socket.connect(&worker.endpoint).unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    let ids: Vec<String> = (0..queries * 4)
        .map(|_| format!("bench-{}", rng.usize(..entries)))
        .collect();
    let read = time_each(&ids, |id| {
        let r = call(
            &socket,
            json!({"action": "read", "payload": {"memory_id": id}}),
        );
        assert_eq!(r["status"], "success", "{r}");
    });
    let read_sql = rt.block_on(sql_reads(&url, &ids));
    let query_texts: Vec<String> = (0..queries).map(|_| query(&mut rng)).collect();
    let mut rows = vec![row("read", &read, Some(("plain SQL read", &read_sql)))];
    let mut hnsw_ids = Vec::new();
    for kind in ["semantic", "keyword", "hybrid"] {
        let mut got = Vec::new();
        let lat = time_each(&query_texts, |q| {
            let r = call(
                &socket,
                json!({"action": "search", "payload": {"query": q, "search_type": kind, "filters": {"limit": 10}}}),
            );
            got.push(
                r["data"]["results"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["memory_id"].as_str().unwrap().to_owned())
                    .collect::<Vec<_>>(),
            );
        });
        if kind == "semantic" {
            hnsw_ids = got;
        }
        rows.push(row(kind, &lat, None));
    }
    let (exact_lat, exact_ids) = rt.block_on(exact_search(&url, &local, &query_texts));
    let recall = recall_at_10(&hnsw_ids, &exact_ids);
    let plain_fts = rt.block_on(plain_keyword(&url, &query_texts));
    rows[2].yardstick = Some((
        "plain full-text search".into(),
        percentile(&plain_fts, 50.0),
        percentile(&plain_fts, 99.0),
    ));
    rows[1].yardstick = Some((
        "exact scan, no index".into(),
        percentile(&exact_lat, 50.0),
        percentile(&exact_lat, 99.0),
    ));
    drop(worker);

    println!("\n| operation | p50 ms | p99 ms | yardstick | yardstick p50 ms | yardstick p99 ms |");
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        let yardstick = r
            .yardstick
            .as_ref()
            .map_or("— | — | —".to_owned(), |(n, p50, p99)| {
                format!("{n} | {p50:.2} | {p99:.2}")
            });
        println!("| {} | {:.2} | {:.2} | {yardstick} |", r.name, r.p50, r.p99);
    }
    println!("\nsemantic search recall@10 (HNSW vs exact): {recall:.3}");
    let report = json!({
        "entries": entries, "dimension": DIMENSION, "clients": CLIENTS,
        "create_per_s": create_rate, "create_yardstick_per_s": raw_rate,
        "drain_first_per_s": first_rate, "drain_first_yardstick_per_s": raw_vectors_rate,
        "drain_all_per_s": drain_rate, "local_embedder_per_s": embed_rate,
        "latency_ms": rows.iter().map(|r| json!({"op": r.name, "p50": r.p50, "p99": r.p99,
            "yardstick": r.yardstick.as_ref().map(|y| json!({"name": y.0, "p50": y.1, "p99": y.2}))})).collect::<Vec<_>>(),
        "semantic_recall_at_10": recall,
    });
    std::fs::create_dir_all("target/bench").unwrap();
    std::fs::write(
        "target/bench/orchestrator.json",
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
    rt.block_on(drop_database(&server, &db));
}

struct Row {
    name: String,
    p50: f64,
    p99: f64,
    yardstick: Option<(String, f64, f64)>,
}

fn row(name: &str, lat: &[f64], yardstick: Option<(&str, &[f64])>) -> Row {
    Row {
        name: name.into(),
        p50: percentile(lat, 50.0),
        p99: percentile(lat, 99.0),
        yardstick: yardstick.map(|(n, l)| (n.to_owned(), percentile(l, 50.0), percentile(l, 99.0))),
    }
}

const WORDS: &[&str] = &[
    "remind",
    "call",
    "mum",
    "dentist",
    "appointment",
    "tuesday",
    "friday",
    "milk",
    "eggs",
    "grocery",
    "store",
    "weather",
    "tomorrow",
    "blue",
    "colour",
    "favourite",
    "music",
    "jazz",
    "play",
    "kitchen",
    "lights",
    "turn",
    "off",
    "alarm",
    "seven",
    "morning",
    "meeting",
    "work",
    "project",
    "deadline",
    "birthday",
    "sister",
    "gift",
    "book",
    "flight",
    "paris",
    "hotel",
    "train",
    "ticket",
    "pizza",
    "order",
    "dinner",
    "recipe",
    "pasta",
    "garden",
    "water",
    "plants",
    "dog",
    "walk",
    "park",
    "run",
    "gym",
    "doctor",
    "medicine",
    "pharmacy",
    "bank",
    "bill",
    "rent",
    "email",
    "boss",
    "holiday",
    "beach",
    "summer",
    "winter",
    "snow",
    "car",
    "service",
    "garage",
    "tyres",
    "insurance",
    "renew",
    "passport",
    "visa",
    "language",
    "spanish",
    "lesson",
    "guitar",
    "piano",
    "concert",
    "movie",
    "cinema",
    "friday",
    "news",
];

fn sentence(rng: &mut fastrand::Rng, words: usize) -> String {
    (0..words)
        .map(|_| WORDS[rng.usize(..WORDS.len())])
        .collect::<Vec<_>>()
        .join(" ")
}

fn corpus(n: usize) -> Vec<String> {
    let mut rng = fastrand::Rng::with_seed(42);
    (0..n)
        .map(|_| {
            let w = rng.usize(6..20);
            sentence(&mut rng, w)
        })
        .collect()
}

fn query(rng: &mut fastrand::Rng) -> String {
    let w = rng.usize(2..5);
    sentence(rng, w)
}

fn create_all(endpoint: &str, texts: &[String]) {
    let ctx = zmq::Context::new();
    std::thread::scope(|s| {
        for t in 0..CLIENTS {
            let ctx = &ctx;
            s.spawn(move || {
                let socket = ctx.socket(zmq::REQ).unwrap();
                socket.set_rcvtimeo(30_000).unwrap();
                socket.connect(endpoint).unwrap();
                for (i, text) in texts.iter().enumerate().skip(t).step_by(CLIENTS) {
                    let r = call(&socket, json!({"action": "create", "session_id": null, "payload": {
                        "memory_id": format!("bench-{i}"), "memory_type": "context",
                        "content": {"text": text}, "tags": ["bench"], "user_id": format!("user-{}", i % 100)}}));
                    assert_eq!(r["status"], "success", "{r}");
                }
            });
        }
    });
}

fn call(socket: &zmq::Socket, request: Value) -> Value {
    socket.send(request.to_string().as_bytes(), 0).unwrap();
    serde_json::from_slice(&socket.recv_bytes(0).expect("reply")).unwrap()
}

fn time_each<T>(items: &[T], mut f: impl FnMut(&T)) -> Vec<f64> {
    items
        .iter()
        .map(|i| {
            let t = Instant::now();
            f(i);
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect()
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((p / 100.0) * (v.len() - 1) as f64).round() as usize]
}

async fn create_database(server: &str, name: &str) -> String {
    let admin = connect(server, 1).await;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    let mut u = url::Url::parse(server).unwrap();
    u.set_path(name);
    u.to_string()
}

async fn drop_database(server: &str, name: &str) {
    let admin = connect(server, 1).await;
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();
}

/// The database work of `create`, without memshift: the same statement shape (entry, tag,
/// queue row) from 16 connections. The rows are removed afterwards.
async fn raw_creates(url: &str, texts: &[String]) -> f64 {
    let pool = connect(url, CLIENTS as u32).await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..CLIENTS {
        let pool = pool.clone();
        let mine: Vec<(usize, String)> = texts
            .iter()
            .cloned()
            .enumerate()
            .skip(t)
            .step_by(CLIENTS)
            .collect();
        tasks.push(tokio::spawn(async move {
            for (i, text) in mine {
                sqlx::query(
                    "WITH ins AS (INSERT INTO memory_entries (memory_id, memory_type, content, user_id)
                         VALUES ($1, 'context', $2, $3) RETURNING memory_id),
                     tags AS (INSERT INTO memory_tags (memory_id, tag) SELECT memory_id, 'bench' FROM ins)
                     INSERT INTO embedding_queue (memory_id) SELECT memory_id FROM ins")
                    .bind(format!("raw-{i}")).bind(sqlx::types::Json(json!({"text": text}))).bind(format!("user-{}", i % 100))
                    .execute(&pool).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rate = texts.len() as f64 / started.elapsed().as_secs_f64();
    sqlx::query("DELETE FROM memory_entries WHERE memory_id LIKE 'raw-%'")
        .execute(&pool)
        .await
        .unwrap();
    rate
}

/// Storing vectors without memshift: computed beforehand, inserted 256 at a time into a
/// copy of `vector_embeddings` with the same HNSW index.
async fn raw_vectors(url: &str, local: &LocalEmbedder, texts: &[String]) -> f64 {
    let pool = connect(url, 1).await;
    sqlx::query(
        "CREATE TABLE bench_vectors (memory_id text PRIMARY KEY, embedding vector NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(&format!("CREATE INDEX ON bench_vectors USING hnsw ((embedding::vector({DIMENSION})) vector_cosine_ops)")).execute(&pool).await.unwrap();
    let vectors: Vec<pgvector::Vector> = texts
        .iter()
        .map(|t| pgvector::Vector::from(local.embed(t).unwrap()))
        .collect();
    let started = Instant::now();
    for (n, chunk) in vectors.chunks(256).enumerate() {
        let ids: Vec<String> = (0..chunk.len()).map(|i| format!("v{n}-{i}")).collect();
        sqlx::query("INSERT INTO bench_vectors SELECT * FROM unnest($1::text[], $2::vector[])")
            .bind(&ids)
            .bind(chunk)
            .execute(&pool)
            .await
            .unwrap();
    }
    let rate = texts.len() as f64 / started.elapsed().as_secs_f64();
    sqlx::query("DROP TABLE bench_vectors")
        .execute(&pool)
        .await
        .unwrap();
    rate
}

async fn wait_backlog_at_most(url: &str, left: i64) {
    let pool = connect(url, 1).await;
    loop {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM embedding_queue")
            .fetch_one(&pool)
            .await
            .unwrap();
        if n <= left {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sql_reads(url: &str, ids: &[String]) -> Vec<f64> {
    let pool = connect(url, 1).await;
    let mut out = Vec::new();
    for id in ids {
        let t = Instant::now();
        sqlx::query("SELECT * FROM memory_entries WHERE memory_id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
        out.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    out
}

async fn exact_search(
    url: &str,
    local: &LocalEmbedder,
    queries: &[String],
) -> (Vec<f64>, Vec<Vec<String>>) {
    let pool = connect(url, 1).await;
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SET enable_indexscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    let (mut lat, mut ids) = (Vec::new(), Vec::new());
    for q in queries {
        let v = pgvector::Vector::from(local.embed(q).unwrap());
        let t = Instant::now();
        let rows: Vec<(String,)> = sqlx::query_as(&format!(
            "SELECT e.memory_id FROM vector_embeddings v JOIN memory_entries e ON e.memory_id = v.memory_id
             WHERE v.embedding_model = 'memshift-local-hash-v1' AND e.is_active
             ORDER BY v.embedding::vector({DIMENSION}) <=> $1 LIMIT 10"))
            .bind(v).fetch_all(&mut *conn).await.unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        ids.push(rows.into_iter().map(|r| r.0).collect());
    }
    (lat, ids)
}

/// Keyword search as plain SQL would do it: every word required, every match ranked.
async fn plain_keyword(url: &str, queries: &[String]) -> Vec<f64> {
    let pool = connect(url, 1).await;
    let mut lat = Vec::new();
    for q in queries {
        let t = Instant::now();
        sqlx::query(
            "SELECT memory_id FROM memory_entries, plainto_tsquery('english', $1) q
             WHERE text_search @@ q AND is_active
             ORDER BY ts_rank_cd(text_search, q, 32) DESC LIMIT 10",
        )
        .bind(q)
        .fetch_all(&pool)
        .await
        .unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    lat
}

fn recall_at_10(got: &[Vec<String>], exact: &[Vec<String>]) -> f64 {
    let (mut hit, mut total) = (0, 0);
    for (g, e) in got.iter().zip(exact) {
        total += e.len();
        hit += e.iter().filter(|id| g.contains(id)).count();
    }
    hit as f64 / total.max(1) as f64
}

struct Orchestrator {
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Orchestrator {
    fn start(url: &str, worker: bool) -> Orchestrator {
        let dir = tempfile::TempDir::new().unwrap();
        let config = dir.path().join("o.toml");
        std::fs::write(&config, format!(
            "[database]\nurl = \"{url}\"\nmax_connections = 24\n[orchestrator]\nlisten = \"tcp://127.0.0.1:*\"\n\
             metrics_listen = \"127.0.0.1:0\"\naccess_log = false\n[embedding]\nworker = {worker}\nbatch_size = 256\npoll_interval = \"100ms\"\n\
             [log]\nlevel = \"warn\"\n")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_memshift"))
            .args(["orchestrator", "--config"])
            .arg(&config)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ready: Value = serde_json::from_str(&line).expect("ready line");
        Orchestrator {
            child,
            endpoint: ready["endpoint"].as_str().unwrap().to_owned(),
            _dir: dir,
        }
    }
}

impl Drop for Orchestrator {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// A pool of `n` connections to `url`.
async fn connect(url: &str, n: u32) -> sqlx::PgPool {
    PgPoolOptions::new()
        .max_connections(n)
        .connect(url)
        .await
        .unwrap()
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
