//! Failures provoked in the real systems: bad input, a database that stops and comes back,
//! one slower than the deadline, overload, a revoked permission. The orchestrator answers
//! each with the right error code and keeps serving.

use crate::common;

use common::pg::{self, Orchestrator, PgCluster, TestDb};
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

fn healthy(c: &mut pg::Client) {
    assert_eq!(c.ok("health", None, json!({}))["status"], "ok");
}

#[test]
fn bad_input_gets_the_right_code_and_the_service_keeps_serving() {
    let (_db, orch, ctx) = pg::fresh("", "");
    let mut c = orch.client(&ctx);
    let cases: &[(&[u8], &str)] = &[
        (b"{\"action\": \"create\", ", "invalid_request"),
        (b"\xff\xfe not utf-8", "invalid_request"),
        (b"42", "invalid_request"),
        (br#"{"payload": {}}"#, "invalid_request"),
        (br#"{"action": ["read"]}"#, "invalid_request"),
        (br#"{"action": "teleport"}"#, "invalid_request"),
        (br#"{"action": "read", "payload": "m1"}"#, "invalid_request"),
        (br#"{"action": "read", "payload": {"memory_id": 17}}"#, "validation_error"),
        (br#"{"action": "create", "payload": {"memory_type": "context", "content": {}, "tags": "a,b"}}"#, "validation_error"),
        (br#"{"action": "search", "payload": {"query": "x", "filters": {"limit": "ten"}}}"#, "validation_error"),
    ];
    for (body, code) in cases {
        let reply = c.raw(body);
        assert_eq!(reply["status"], "error", "{reply}");
        assert_eq!(
            reply["error"]["code"],
            *code,
            "{}: {reply}",
            String::from_utf8_lossy(body)
        );
        assert!(reply["timestamp"].is_string());
        healthy(&mut c);
    }
    // 10 MiB: refused unread, with the limit in the details.
    let big = format!(
        r#"{{"action": "create", "request_id": "big", "payload": {{"memory_type": "context", "content": {{"text": "{}"}}}}}}"#,
        "x".repeat(10 * 1024 * 1024)
    );
    let reply = c.raw(big.as_bytes());
    assert_eq!(
        reply["error"]["code"],
        "invalid_request",
        "{}",
        &reply.to_string()[..200.min(reply.to_string().len())]
    );
    assert_eq!(reply["error"]["details"]["max_request_bytes"], 1024 * 1024);
    healthy(&mut c);
    // A multipart request (a REQ sends it as one message of two frames).
    c.socket
        .send_multipart([&b"{\"action\": \"health\"}"[..], b"{}"], 0)
        .unwrap();
    let reply: serde_json::Value =
        serde_json::from_slice(&c.socket.recv_bytes(0).unwrap()).unwrap();
    assert_eq!(reply["error"]["code"], "invalid_request");
    healthy(&mut c);
    let m = orch.metrics_text();
    assert!(pg::requests(&m, "unknown", "invalid_request").unwrap() >= 5.0);
    assert!(pg::requests(&m, "create", "validation_error").unwrap() >= 1.0);
}

#[test]
fn postgres_stopped_mid_traffic_gives_storage_errors_then_full_service_without_a_restart() {
    let cluster = PgCluster::start();
    let mut db = TestDb::on_server(&cluster.url);
    // The pool's wait, through an environment override.
    let mut orch = Orchestrator::start_with_env(
        &db.url,
        "request_deadline = \"3s\"",
        "",
        &[("MEMSHIFT_DATABASE__ACQUIRE_TIMEOUT", "500ms")],
    );
    let ctx = zmq::Context::new();
    let mut c = orch.client(&ctx);
    let create = |c: &mut pg::Client, i: usize| {
        c.call("create", None, json!({"memory_id": format!("m{i}"), "memory_type": "context", "content": {"text": format!("note {i}")}}))
    };
    for i in 0..20 {
        assert_eq!(create(&mut c, i)["status"], "success");
    }
    cluster.stop();
    let mut codes = Vec::new();
    for i in 20..25 {
        let started = Instant::now();
        let reply = create(&mut c, i);
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "answered within the deadline"
        );
        codes.push(
            reply["error"]["code"]
                .as_str()
                .unwrap_or("success")
                .to_owned(),
        );
        assert_eq!(reply["error"]["details"]["retryable"], true, "{reply}");
    }
    assert!(codes.iter().all(|c| c == "storage_error"), "{codes:?}");
    let health = c.ok("health", None, json!({}));
    assert_eq!(health["database"], "unavailable");
    assert_eq!(health["status"], "degraded");
    assert_eq!(orch.wait_exit_or_none(), None, "still running");

    cluster.restart();
    wait_for("service to come back", TIMEOUT, || {
        (create(&mut c, 100)["status"] == "success").then_some(())
    });
    for i in 101..120 {
        assert_eq!(create(&mut c, i)["status"], "success");
    }
    assert_eq!(db.scalar("SELECT count(*) FROM memory_entries"), 40);
    c.ok("read", None, json!({"memory_id": "m3"}));
    healthy(&mut c);
    orch.wait_embedded(&mut db);
}

#[test]
fn a_database_slower_than_the_deadline_is_a_retryable_storage_error() {
    let (mut db, orch, ctx) = pg::fresh("request_deadline = \"300ms\"", "");
    let mut c = orch.client(&ctx);
    c.ok("health", None, json!({}));
    db.exec("CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(2); RETURN NEW; END $$");
    db.exec(
        "CREATE TRIGGER slow BEFORE INSERT ON memory_entries FOR EACH ROW EXECUTE FUNCTION slow()",
    );
    let started = Instant::now();
    let reply = c.call(
        "create",
        None,
        json!({"memory_id": "slow", "memory_type": "context", "content": {}}),
    );
    let took = started.elapsed();
    assert_eq!(reply["error"]["code"], "storage_error", "{reply}");
    assert_eq!(reply["error"]["details"]["reason"], "deadline_exceeded");
    assert_eq!(reply["error"]["details"]["retryable"], true);
    assert!(
        took < Duration::from_millis(1500),
        "answered at the deadline, took {took:?}"
    );
    // Reads are not slowed; once the database is fast again, the retry lands once.
    c.ok("batch_read", None, json!({"filter": {}}));
    db.exec("DROP TRIGGER slow ON memory_entries");
    c.ok(
        "create",
        None,
        json!({"memory_id": "slow", "memory_type": "context", "content": {}}),
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM memory_entries WHERE memory_id = 'slow'"),
        1
    );
}

#[test]
fn overload_is_shed_with_rate_limit_exceeded_and_every_request_is_answered() {
    let mut db = TestDb::new();
    let orch = Orchestrator::start(
        &db,
        "max_concurrent = 1\nmax_queued = 2\nrequest_deadline = \"10s\"",
        "",
    );
    let ctx = zmq::Context::new();
    orch.client(&ctx).ok("health", None, json!({}));
    db.exec("CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.3); RETURN NEW; END $$");
    db.exec(
        "CREATE TRIGGER slow BEFORE INSERT ON memory_entries FOR EACH ROW EXECUTE FUNCTION slow()",
    );
    let dealer = dealer_socket(&ctx, &orch.endpoint);
    for i in 0..12 {
        let body = json!({"action": "create", "request_id": format!("r{i}"),
            "payload": {"memory_id": format!("m{i}"), "memory_type": "context", "content": {}}});
        dealer
            .send_multipart([&b""[..], body.to_string().as_bytes()], 0)
            .unwrap();
    }
    let mut outcomes = std::collections::BTreeMap::new();
    for _ in 0..12 {
        let frames = dealer.recv_multipart(0).expect("every request is answered");
        let reply: serde_json::Value = serde_json::from_slice(&frames[1]).unwrap();
        let outcome = reply["error"]["code"]
            .as_str()
            .unwrap_or("success")
            .to_owned();
        *outcomes.entry(outcome).or_insert(0) += 1;
    }
    assert!(
        outcomes.get("rate_limit_exceeded").copied().unwrap_or(0) >= 1,
        "{outcomes:?}"
    );
    assert!(
        outcomes.get("success").copied().unwrap_or(0) >= 2,
        "{outcomes:?}"
    );
    assert_eq!(outcomes.values().sum::<i32>(), 12);
    let accepted = outcomes["success"] as i64;
    assert_eq!(db.scalar("SELECT count(*) FROM memory_entries"), accepted);
}

#[test]
fn a_revoked_permission_is_permission_denied() {
    let mut db = TestDb::new();
    // Migrate as the owner, then run as a role that may read but not insert entries.
    // `memshift migrate` with the database from DATABASE_URL and an otherwise empty file.
    let out = run_memshift("migrate", "", Some(&db.url));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let role = format!("limited_{}", std::process::id());
    db.exec(&format!("DROP ROLE IF EXISTS {role}"));
    db.exec(&format!("CREATE ROLE {role} LOGIN"));
    db.exec(&format!(
        "GRANT SELECT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"
    ));
    db.exec(&format!(
        "GRANT INSERT ON sessions, memory_access_logs, embedding_queue TO {role}"
    ));
    db.exec(&format!(
        "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}"
    ));
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_username(&role).unwrap();
    let orch = Orchestrator::start_on(url.as_str(), "migrate_on_start = false", "");
    let ctx = zmq::Context::new();
    let mut c = orch.client(&ctx);
    let reply = c.call(
        "create",
        None,
        json!({"memory_type": "context", "content": {}}),
    );
    assert_eq!(reply["error"]["code"], "permission_denied", "{reply}");
    assert_eq!(reply["error"]["details"]["retryable"], false);
    c.ok("create_session", None, json!({"session_id": "still-works"}));
    drop(orch);
    db.exec(&format!("DROP OWNED BY {role}"));
    db.exec(&format!("DROP ROLE {role}"));
}
