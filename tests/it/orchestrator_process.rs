//! The `memshift orchestrator` and `memshift migrate` processes: concurrency, metrics and
//! health, graceful shutdown on real signals, configuration.

use crate::common;

use common::pg::{self, Orchestrator, TestDb};
use common::*;
use nix::sys::signal::Signal;
use serde_json::json;
use std::time::Duration;

#[test]
fn sixteen_concurrent_clients_are_served_at_once() {
    let (mut db, orch, ctx) = pg::fresh("", "");
    std::thread::scope(|s| {
        for t in 0..16 {
            let (ctx, orch) = (&ctx, &orch);
            s.spawn(move || {
                let mut c = orch.client(ctx);
                for i in 0..25 {
                    let id = format!("t{t}-{i}");
                    c.ok("create", None, json!({"memory_id": id, "memory_type": "context", "content": {"text": format!("thread {t} note {i}")}}));
                    assert_eq!(c.ok("read", None, json!({"memory_id": id}))["memory_id"], id.as_str());
                }
            });
        }
    });
    assert_eq!(db.scalar("SELECT count(*) FROM memory_entries"), 400);
    orch.wait_embedded(&mut db);
    let m = orch.metrics_text();
    assert_eq!(pg::requests(&m, "create", "success"), Some(400.0));
    assert_eq!(
        metric(
            &m,
            "memshift_orchestrator_request_duration_seconds_count",
            &[("action", "read"), ("outcome", "success")]
        ),
        Some(400.0)
    );
}

#[test]
fn metrics_and_health_describe_the_orchestrator() {
    let mut db = TestDb::new();
    let orch = Orchestrator::start(&db, "", "");
    let m = orch.metrics_text();
    // Every series exists at zero before the first request.
    for action in ["create", "read", "search", "health"] {
        assert_eq!(
            metric(
                &m,
                "memshift_orchestrator_requests_total",
                &[("action", action), ("outcome", "success")]
            ),
            Some(0.0),
            "{action}"
        );
        assert_eq!(
            metric(
                &m,
                "memshift_orchestrator_requests_total",
                &[("action", action), ("outcome", "storage_error")]
            ),
            Some(0.0)
        );
    }
    for name in [
        "memshift_embedding_backlog",
        "memshift_db_pool_max_connections",
        "memshift_database_up",
        "memshift_orchestrator_in_flight_requests",
    ] {
        assert!(metric(&m, name, &[]).is_some(), "{name}");
    }
    assert_eq!(
        metric(&m, "memshift_db_pool_max_connections", &[]),
        Some(16.0)
    );
    let ctx = zmq::Context::new();
    let mut c = orch.client(&ctx);
    for i in 0..5 {
        c.ok(
            "create",
            None,
            json!({"memory_type": "context", "content": {"text": format!("n{i}")}}),
        );
    }
    c.err("read", None, json!({"memory_id": "nope"}));
    orch.wait_embedded(&mut db);
    let m = wait_for("the backlog gauge to reach zero", TIMEOUT, || {
        let m = orch.metrics_text();
        (metric(&m, "memshift_embeddings_total", &[("outcome", "stored")]) == Some(5.0)
            && metric(&m, "memshift_embedding_backlog", &[]) == Some(0.0))
        .then_some(m)
    });
    assert_eq!(pg::requests(&m, "read", "memory_not_found"), Some(1.0));
    assert_eq!(
        metric(&m, "memshift_embedding_latency_seconds_count", &[]),
        Some(5.0)
    );
    assert!(metric(&m, "memshift_db_pool_connections", &[("state", "idle")]).unwrap() >= 1.0);
    assert_eq!(metric(&m, "memshift_database_up", &[]), Some(1.0));
    assert!(m.contains("memshift_build_info{version="));
    let (status, body) = orch.http_get("/healthz");
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["database"], "ok");
}

#[test]
fn sigterm_answers_the_request_in_flight_then_exits_zero() {
    let (mut db, mut orch, ctx) = pg::fresh("", "");
    let mut c = orch.client(&ctx);
    c.ok("health", None, json!({}));
    db.exec("CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.7); RETURN NEW; END $$");
    db.exec(
        "CREATE TRIGGER slow BEFORE INSERT ON memory_entries FOR EACH ROW EXECUTE FUNCTION slow()",
    );
    let body = json!({"action": "create", "request_id": "last", "payload": {"memory_id": "last", "memory_type": "context", "content": {}}});
    c.socket.send(body.to_string().as_bytes(), 0).unwrap();
    wait_for("the request to be in flight", TIMEOUT, || {
        (metric(
            &orch.metrics_text(),
            "memshift_orchestrator_in_flight_requests",
            &[],
        ) == Some(1.0))
        .then_some(())
    });
    orch.signal(Signal::SIGTERM);
    orch.wait_for_log("draining");
    let (status, _) = orch.http_get("/healthz");
    assert_eq!(status, 503, "draining");
    let reply: serde_json::Value =
        serde_json::from_slice(&c.socket.recv_bytes(0).unwrap()).unwrap();
    assert_eq!(reply["status"], "success", "{reply}");
    assert_eq!(reply["request_id"], "last");
    let status = orch.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    orch.wait_for_log("memshift orchestrator stopped");
    assert_eq!(
        db.scalar("SELECT count(*) FROM memory_entries WHERE memory_id = 'last'"),
        1
    );
}

#[test]
fn check_config_describes_the_orchestrator_and_masks_the_password() {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("o.toml");
    std::fs::write(&path, "[database]\nurl = \"postgres://memshift:hunter2@db:5432/memory\"\n[embedding]\ndimension = 1536\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_memshift"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("orchestrator: tcp://*:5570"), "{text}");
    assert!(
        text.contains("postgres://memshift:****@db:5432/memory"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("dimension 1536"), "{text}");
    // The proxy needs agents; the orchestrator does not.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_memshift"))
        .args(["proxy", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least one [[agents]]"));
}

#[test]
fn migrate_applies_the_schema_with_the_configured_dimension_twice_harmlessly() {
    let mut db = TestDb::new();
    let toml = format!(
        "[database]\nurl = \"{}\"\n[embedding]\nmodel = \"small-model\"\ndimension = 64\n",
        db.url
    );
    for _ in 0..2 {
        let out = run_memshift("migrate", &toml, None);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("migrations applied"));
    }
    let indexes = db.texts("SELECT indexdef FROM pg_indexes WHERE tablename = 'vector_embeddings' AND indexdef LIKE '%hnsw%'");
    assert_eq!(indexes.len(), 1, "{indexes:?}");
    assert!(
        indexes[0].contains("vector(64)") && indexes[0].contains("'small-model'"),
        "{indexes:?}"
    );
    let migrations = std::fs::read_dir(repo().join("migrations"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("sql".as_ref()))
        .count() as i64;
    assert_eq!(
        db.scalar("SELECT count(*) FROM _sqlx_migrations WHERE success"),
        migrations,
        "each migration applied once"
    );
    // No database: a clear error, exit 1.
    let out = run_memshift("migrate", "", None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("set database.url or DATABASE_URL"));
}
