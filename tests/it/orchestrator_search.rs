//! Search over a hand-checkable corpus (semantic, keyword, hybrid), filters, expiry, soft
//! deletes, and the OpenAI-compatible embedding provider with its retries.

use crate::common;

use common::pg::{self, Orchestrator, TestDb};
use common::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// id, type, tags, user, text, day of January 2026.
type Doc = (
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static str,
    &'static str,
    u32,
);

const CORPUS: &[Doc] = &[
    (
        "a",
        "context",
        &["health"],
        "u1",
        "dentist appointment on tuesday at nine",
        1,
    ),
    (
        "b",
        "decision",
        &["health", "todo"],
        "u1",
        "remind me to call the dentist",
        2,
    ),
    ("c", "context", &[], "u2", "my favourite colour is blue", 3),
    (
        "d",
        "context",
        &["todo"],
        "u2",
        "buy milk and eggs at the grocery store",
        4,
    ),
    (
        "e",
        "entity",
        &[],
        "u1",
        "the blue whale is the largest animal",
        5,
    ),
];

fn load(c: &mut pg::Client) {
    c.ok(
        "create_session",
        None,
        json!({"session_id": "s1", "user_id": "u1"}),
    );
    for (id, kind, tags, user, text, day) in CORPUS {
        let session = if *user == "u1" { Some("s1") } else { None };
        c.ok(
            "create",
            session,
            json!({"memory_id": id, "memory_type": kind, "tags": tags,
            "user_id": user, "content": {"text": text},
            "created_at": format!("2026-01-{day:02}T12:00:00Z")}),
        );
    }
}

fn ids(data: &Value) -> Vec<String> {
    data["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["memory_id"].as_str().unwrap().to_owned())
        .collect()
}

fn search(c: &mut pg::Client, query: &str, kind: &str, filters: Value) -> Value {
    let data = c.ok(
        "search",
        None,
        json!({"query": query, "search_type": kind, "filters": filters}),
    );
    let scores: Vec<f64> = data["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["similarity_score"].as_f64().unwrap())
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "{kind} {query}: scores descend {scores:?}"
    );
    assert_eq!(
        data["total_count"],
        data["results"].as_array().unwrap().len()
    );
    assert_eq!(data["search_metadata"]["search_type"], kind);
    data
}

#[test]
fn the_three_search_types_rank_the_corpus_as_expected() {
    let (mut db, orch, ctx) = pg::fresh("", "");
    let mut c = orch.client(&ctx);
    load(&mut c);
    orch.wait_embedded(&mut db);
    assert_eq!(db.scalar("SELECT count(*) FROM vector_embeddings WHERE embedding_model = 'memshift-local-hash-v1'"), 5);

    // Both words beat one word beats none.
    let sem = search(
        &mut c,
        "dentist appointment",
        "semantic",
        json!({"limit": 5}),
    );
    assert_eq!(ids(&sem)[..2], ["a", "b"]);
    assert_eq!(
        sem["search_metadata"]["embedding_model"],
        "memshift-local-hash-v1"
    );
    assert_eq!(sem["search_metadata"]["query_embedding_dimension"], 384);
    let key = search(&mut c, "dentist appointment", "keyword", json!({}));
    assert_eq!(ids(&key), ["a", "b"], "only entries with a query word");
    assert_eq!(key["search_metadata"]["query_embedding_dimension"], 0);
    let hyb = search(&mut c, "dentist appointment", "hybrid", json!({"limit": 3}));
    assert_eq!(ids(&hyb)[..2], ["a", "b"]);
    assert_eq!(ids(&hyb).len(), 3);
    // Stemming: "colours" finds "colour".
    assert_eq!(
        ids(&search(&mut c, "blue colours", "keyword", json!({}))),
        ["c", "e"]
    );
    assert_eq!(
        ids(&search(
            &mut c,
            "blue colour",
            "semantic",
            json!({"limit": 2})
        )),
        ["c", "e"]
    );
    // The default is hybrid.
    let default = c.ok("search", None, json!({"query": "grocery milk"}));
    assert_eq!(default["search_metadata"]["search_type"], "hybrid");
    assert_eq!(ids(&default)[0], "d");
    let entry = &default["results"][0];
    for field in [
        "memory_id",
        "memory_type",
        "content",
        "tags",
        "created_at",
        "updated_at",
        "expires_at",
        "priority",
        "similarity_score",
    ] {
        assert!(entry.get(field).is_some(), "{field} in {entry}");
    }
}

#[test]
fn every_filter_restricts_every_search_type() {
    let (mut db, orch, ctx) = pg::fresh("", "");
    let mut c = orch.client(&ctx);
    load(&mut c);
    orch.wait_embedded(&mut db);
    for kind in ["semantic", "keyword", "hybrid"] {
        let q = "dentist blue milk whale colour";
        let mut only = |filters: Value| -> Vec<String> {
            let mut got = ids(&search(&mut c, q, kind, filters));
            got.sort();
            got
        };
        assert_eq!(
            only(json!({"memory_types": ["entity", "decision"]})),
            ["b", "e"],
            "{kind}"
        );
        assert_eq!(only(json!({"tags": ["health", "todo"]})), ["b"], "{kind}");
        assert_eq!(only(json!({"user_id": "u2"})), ["c", "d"], "{kind}");
        assert_eq!(only(json!({"session_id": "s1"})), ["a", "b", "e"], "{kind}");
        assert_eq!(
            only(
                json!({"time_range": {"start": "2026-01-02T00:00:00Z", "end": "2026-01-04T00:00:00Z"}})
            ),
            ["b", "c"],
            "{kind}"
        );
        assert_eq!(only(json!({"limit": 1})).len(), 1, "{kind}");
    }
    // min_similarity: an exact text is similar to itself, nothing else is that close.
    let exact = search(
        &mut c,
        "my favourite colour is blue",
        "semantic",
        json!({"min_similarity": 0.99}),
    );
    assert_eq!(ids(&exact), ["c"]);
    assert!(exact["results"][0]["similarity_score"].as_f64().unwrap() > 0.99);
    // Bad input.
    assert_eq!(c.err("search", None, json!({})), "invalid_request");
    assert_eq!(
        c.err("search", None, json!({"query": "  "})),
        "validation_error"
    );
    assert_eq!(
        c.err(
            "search",
            None,
            json!({"query": "x", "search_type": "psychic"})
        ),
        "validation_error"
    );
    assert_eq!(
        c.err(
            "search",
            None,
            json!({"query": "x", "filters": {"limit": 1000}})
        ),
        "validation_error"
    );
    assert_eq!(
        c.err(
            "search",
            None,
            json!({"query": "x", "filters": {"min_similarity": 2}})
        ),
        "validation_error"
    );
}

#[test]
fn expired_and_deleted_entries_are_never_returned_and_expired_ones_are_swept() {
    let (mut db, orch, ctx) = pg::fresh("", "");
    let mut c = orch.client(&ctx);
    load(&mut c);
    c.ok(
        "create",
        None,
        json!({"memory_id": "brief", "memory_type": "context", "ttl": 1,
        "content": {"text": "dentist dentist dentist"}}),
    );
    orch.wait_embedded(&mut db);
    assert!(ids(&search(&mut c, "dentist", "keyword", json!({}))).contains(&"brief".to_owned()));
    c.ok("delete", None, json!({"memory_id": "b"}));
    wait_for("the entry to expire", TIMEOUT, || {
        (c.call("read", None, json!({"memory_id": "brief"}))["status"] == "error").then_some(())
    });
    for kind in ["semantic", "keyword", "hybrid"] {
        assert_eq!(
            ids(&search(&mut c, "dentist", kind, json!({"limit": 10})))[0],
            "a",
            "{kind}"
        );
        let all = ids(&search(&mut c, "dentist", kind, json!({"limit": 10})));
        assert!(
            !all.contains(&"brief".to_owned()) && !all.contains(&"b".to_owned()),
            "{kind}: {all:?}"
        );
    }
    let listed = c.ok("batch_read", None, json!({"filter": {"limit": 100}}));
    assert_eq!(listed["total_count"], 4);
    assert_eq!(
        c.err("update", None, json!({"memory_id": "brief", "priority": 1})),
        "memory_not_found"
    );
    // The sweeper deletes it for good (its embedding and tags with it); the soft-deleted
    // entry stays for audit.
    wait_for("the sweeper", TIMEOUT, || {
        (db.scalar("SELECT count(*) FROM memory_entries WHERE memory_id = 'brief'") == 0)
            .then_some(())
    });
    assert_eq!(
        db.scalar("SELECT count(*) FROM vector_embeddings WHERE memory_id = 'brief'"),
        0
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM memory_entries WHERE memory_id = 'b'"),
        1
    );
    // Counted once the sweep is over, a moment after the row is gone.
    orch.metrics_when("the sweep to be counted", |m| {
        metric(m, "memshift_expired_entries_deleted_total", &[]).unwrap() >= 1.0
    });
}

#[test]
fn an_updated_text_is_embedded_again() {
    let (mut db, orch, ctx) = pg::fresh("", "");
    let mut c = orch.client(&ctx);
    load(&mut c);
    orch.wait_embedded(&mut db);
    c.ok(
        "update",
        None,
        json!({"memory_id": "d", "content": {"text": "dentist appointment moved to friday"}}),
    );
    orch.wait_embedded(&mut db);
    let got = ids(&search(
        &mut c,
        "dentist appointment friday",
        "semantic",
        json!({"limit": 1}),
    ));
    assert_eq!(got, ["d"]);
}

struct EmbeddingServer {
    child: std::process::Child,
    url: String,
}

impl EmbeddingServer {
    fn start(args: &[&str]) -> EmbeddingServer {
        let python = std::env::var("MEMSHIFT_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(python)
            .arg(repo().join("tests/standins/embedding_server.py"))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("embedding server starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .strip_prefix("READY ")
            .expect("READY line")
            .trim()
            .to_owned();
        EmbeddingServer { child, url }
    }
}

impl Drop for EmbeddingServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_openai_compatible_provider_is_retried_until_it_answers() {
    let server = EmbeddingServer::start(&[
        "--dimension",
        "16",
        "--fail-first",
        "3",
        "--api-key",
        "k-123",
    ]);
    let mut db = TestDb::new();
    let embedding = format!(
        "[embedding]\nprovider = \"openai\"\nurl = \"{}\"\nmodel = \"test-model\"\ndimension = 16\n\
         api_key_env = \"MEMSHIFT_TEST_EMBEDDING_KEY\"\nbatch_size = 2\npoll_interval = \"50ms\"\nmax_backoff = \"200ms\"\n",
        server.url
    );
    // The key comes from the environment, never from the file.
    let orch = Orchestrator::start_with_env(
        &db.url,
        "",
        &embedding,
        &[("MEMSHIFT_TEST_EMBEDDING_KEY", "k-123")],
    );
    let ctx = zmq::Context::new();
    let mut c = orch.client(&ctx);
    for (id, text) in [
        ("x", "red apple pie"),
        ("y", "green apple tart"),
        ("z", "blue sky today"),
    ] {
        c.ok(
            "create",
            None,
            json!({"memory_id": id, "memory_type": "context", "content": {"text": text}}),
        );
    }
    wait_for(
        "the provider to recover and the backlog to drain",
        TIMEOUT,
        || (db.scalar("SELECT count(*) FROM embedding_queue") == 0).then_some(()),
    );
    assert_eq!(db.scalar("SELECT count(*) FROM vector_embeddings WHERE embedding_model = 'test-model' AND vector_dims(embedding) = 16"), 3);
    let r = c.ok(
        "search",
        None,
        json!({"query": "apple", "search_type": "semantic", "filters": {"limit": 2}}),
    );
    let mut got = ids(&r);
    got.sort();
    assert_eq!(got, ["x", "y"], "{r}");
    assert_eq!(r["search_metadata"]["embedding_model"], "test-model");
    // The configured dimension has its own HNSW index.
    assert_eq!(db.scalar("SELECT count(*) FROM pg_indexes WHERE tablename = 'vector_embeddings' AND indexdef LIKE '%hnsw%vector(16)%test-model%'"), 1);
    // The worker counts a batch just after storing it.
    let metrics = orch.metrics_when("the stored batch to be counted", |m| {
        metric(m, "memshift_embeddings_total", &[("outcome", "stored")]) == Some(3.0)
    });
    assert!(
        metric(
            &metrics,
            "memshift_embeddings_total",
            &[("outcome", "failed")]
        )
        .unwrap()
            >= 2.0,
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "memshift_embeddings_total",
            &[("outcome", "stored")]
        ),
        Some(3.0)
    );
    assert!(
        metric(
            &metrics,
            "memshift_embedding_request_duration_seconds_count",
            &[("provider", "openai")]
        )
        .unwrap()
            >= 4.0
    );
    // The failures' reason is kept on the queue while retrying, and never quotes the texts.
    let logs = orch.logs().join("\n");
    assert!(logs.contains("HTTP 503"), "{logs}");
    assert!(!logs.contains("apple"), "no memory text in logs");
}

#[test]
fn a_query_that_cannot_be_embedded_is_a_search_error_and_keyword_search_still_works() {
    // A provider nobody listens on: writes still succeed (they only queue), semantic search
    // fails with search_error, keyword search needs no model.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let db = TestDb::new();
    let embedding = format!(
        "[embedding]\nprovider = \"openai\"\nurl = \"http://127.0.0.1:{port}\"\nmodel = \"absent\"\n\
         dimension = 8\ntimeout = \"1s\"\npoll_interval = \"50ms\"\n"
    );
    let orch = Orchestrator::start(&db, "", &embedding);
    let ctx = zmq::Context::new();
    let mut c = orch.client(&ctx);
    c.ok("create", None, json!({"memory_id": "k", "memory_type": "context", "content": {"text": "kettle descaling"}}));
    let reply = c.call(
        "search",
        None,
        json!({"query": "kettle", "search_type": "semantic"}),
    );
    assert_eq!(reply["error"]["code"], "search_error", "{reply}");
    assert_eq!(reply["error"]["details"]["reason"], "unavailable");
    assert_eq!(
        c.err(
            "search",
            None,
            json!({"query": "kettle", "search_type": "hybrid"})
        ),
        "search_error"
    );
    assert_eq!(ids(&search(&mut c, "kettle", "keyword", json!({}))), ["k"]);
    let health = c.ok("health", None, json!({}));
    assert_eq!(
        health["embedding_backlog"], 1,
        "queued, waiting for the model"
    );
}

#[test]
fn the_access_log_can_be_switched_off() {
    let (mut db, orch, ctx) = pg::fresh("access_log = false", "");
    let mut c = orch.client(&ctx);
    c.ok(
        "create",
        None,
        json!({"memory_id": "q", "memory_type": "context", "content": {"text": "quiet"}}),
    );
    c.ok("read", None, json!({"memory_id": "q"}));
    c.ok("delete", None, json!({"memory_id": "q"}));
    assert_eq!(db.scalar("SELECT count(*) FROM memory_access_logs"), 0);
}
