//! Stage `shadow`: reads go to legacy as always, and on a sample the proxy also asks the
//! orchestrator, builds the legacy-shape answer and compares. Real stand-ins, the real
//! orchestrator and PostgreSQL; the outcomes read back from the proxy's metrics and logs.

use crate::common;

use common::pg::{Orchestrator, TestDb};
use common::rig::*;
use common::*;
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use tempfile::TempDir;

const SHADOW: &str = "stage = \"shadow\"\nshadow_percent = 100\n";

fn comparisons(m: &str, agent: &str, outcome: &str) -> f64 {
    metric_sum(
        m,
        "memshift_comparisons_total",
        &[("agent", agent), ("outcome", outcome)],
    )
}

fn all_comparisons(m: &str, agent: &str) -> f64 {
    metric_sum(m, "memshift_comparisons_total", &[("agent", agent)])
}

/// Sends every request through the proxy; returns the replies.
fn send_all(rig: &Rig, requests: &[Value]) -> Vec<Value> {
    let ctx = zmq::Context::new();
    let s = rig.socket(&ctx);
    requests
        .iter()
        .map(|r| serde_json::from_slice(&request(&s, r.to_string().as_bytes())).unwrap())
        .collect()
}

/// Sends `reads` once the outbox has drained, and checks every one of them matched.
fn reads_after_drain_all_match(rig: &Rig, reads: &[Value]) {
    assert_eq!(rig.drain(), 0);
    let before = rig.proxy.metrics_text();
    let (matched, total) = (
        comparisons(&before, rig.agent, "match"),
        all_comparisons(&before, rig.agent),
    );
    send_all(rig, reads);
    let after = rig.proxy.metrics_when("every read compared", |m| {
        all_comparisons(m, rig.agent) >= total + reads.len() as f64
    });
    assert_eq!(
        comparisons(&after, rig.agent, "match") - matched,
        reads.len() as f64,
        "{after}"
    );
}

fn no_mismatch(rig: &Rig) {
    let m = rig.proxy.metrics_text();
    assert_eq!(comparisons(&m, rig.agent, "mismatch"), 0.0, "{m}");
    assert_eq!(comparisons(&m, rig.agent, "shadow_error"), 0.0, "{m}");
    assert_eq!(comparisons(&m, rig.agent, "shadow_timeout"), 0.0, "{m}");
}

#[test]
fn a_mixed_session_workload_in_shadow_has_no_mismatch() {
    let (_db, _orch, rig) = fresh_rig("session_memory", SHADOW);
    let mut requests = vec![
        json!({"action": "create_session", "session_id": "long", "user_id": "ana"}),
        json!({"action": "create_session", "session_id": "cleared"}),
        json!({"action": "create_session", "session_id": "deleted"}),
        json!({"action": "get_context"}),
        json!({"action": "get_context", "session_id": "never-created", "request_id": "x"}),
    ];
    let texts = [
        "Guten Morgen ☀",
        "你好，世界",
        "ok",
        "a much longer message about the weather and the garden",
        "🎉🎉",
    ];
    for i in 0..60 {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        let text = format!("{} #{i}", texts[i % texts.len()]);
        requests.push(json!({"action": "add_interaction", "session_id": "long", "role": role, "content": text, "metadata": {"n": i}}));
        if i % 7 == 0 {
            requests.push(json!({"action": "get_context", "session_id": "long", "request_id": format!("r{i}")}));
            requests.push(json!({"action": "get_context", "session_id": "long", "max_tokens": 25}));
        }
    }
    for i in 0..5 {
        requests.push(json!({"action": "add_interaction", "session_id": "cleared", "role": "user", "content": format!("before {i}")}));
        requests.push(json!({"action": "add_interaction", "session_id": "deleted", "role": "user", "content": format!("doomed {i}")}));
    }
    requests.push(json!({"action": "clear_session", "session_id": "cleared"}));
    requests.push(json!({"action": "get_context", "session_id": "cleared"}));
    requests.push(json!({"action": "add_interaction", "session_id": "cleared", "role": "user", "content": "after"}));
    requests.push(json!({"action": "delete_session", "session_id": "deleted"}));
    requests.push(json!({"action": "get_context", "session_id": "deleted"}));
    send_all(&rig, &requests);
    reads_after_drain_all_match(
        &rig,
        &[
            json!({"action": "get_context", "session_id": "long"}),
            json!({"action": "get_context", "session_id": "long", "max_tokens": 7}),
            json!({"action": "get_context", "session_id": "long", "max_tokens": 0}),
            json!({"action": "get_context", "session_id": "cleared", "request_id": 5}),
            json!({"action": "get_context", "session_id": "deleted"}),
            json!({"action": "get_context", "session_id": ""}),
        ],
    );
    no_mismatch(&rig);
}

#[test]
fn a_mixed_contextual_workload_in_shadow_has_no_mismatch() {
    let (_db, _orch, rig) = fresh_rig("contextual_memory", SHADOW);
    let mut requests = vec![
        json!({"action": "get_context", "session_id": "c1"}),
        json!({"action": "record_decision", "session_id": "only-decisions", "decision": "use SQLite"}),
        json!({"action": "get_context", "session_id": "only-decisions"}),
    ];
    for i in 0..70 {
        let (kind, text) = match i % 5 {
            0 => (
                "code",
                format!("SELECT * FROM database_table_{i}; -- sqlite"),
            ),
            1 => (
                "user_query",
                format!("¿Cómo está el tiempo hoy, número {i}? {}", "x".repeat(i)),
            ),
            2 => ("system_response", format!("Il fait beau #{i}")),
            3 => (
                "error",
                format!("Traceback: ValueError exception at step {i}"),
            ),
            _ => ("note", format!("something else {i}")),
        };
        requests.push(json!({"action": "add_interaction", "session_id": "c1", "type": kind, "content": text, "metadata": {"i": i}}));
        if i % 9 == 0 {
            requests.push(json!({"action": "record_decision", "session_id": "c1", "decision": format!("decision {i} ✓")}));
            requests.push(json!({"action": "get_context", "session_id": "c1"}));
        }
    }
    // A small max_tokens cuts the stored summary until the next rebuild.
    requests.push(json!({"action": "get_context", "session_id": "c1", "max_tokens": 30}));
    requests
        .push(json!({"action": "add_interaction", "type": "user_query", "content": "no session"}));
    send_all(&rig, &requests);
    reads_after_drain_all_match(
        &rig,
        &[
            json!({"action": "get_context", "session_id": "c1"}),
            json!({"action": "get_context", "session_id": "c1", "max_tokens": 50}),
            json!({"action": "get_context", "session_id": "c1"}),
            json!({"action": "get_context", "session_id": "only-decisions"}),
            json!({"action": "get_context", "session_id": "unknown"}),
        ],
    );
    no_mismatch(&rig);
}

#[test]
fn a_mixed_jarvis_workload_in_shadow_has_no_mismatch() {
    let (_db, _orch, rig) = fresh_rig("jarvis_memory", SHADOW);
    let mut requests = vec![json!({"action": "get_memories", "user_id": "nobody"})];
    for i in 0..30 {
        let user = ["bo", "cy", "dee"][i % 3];
        let memory = match i % 4 {
            0 => json!(format!("likes tea #{i} 🍵")),
            1 => json!({"type": "reminder", "text": format!("call mum #{i}")}),
            2 => json!({"note": [1, 2.5, null, {"deep": "ü"}]}),
            _ => json!(null),
        };
        requests.push(json!({"action": "add_memory", "user_id": user, "memory": memory}));
        if i % 6 == 0 {
            requests.push(json!({"action": "get_memories", "user_id": user}));
        }
        if i == 20 {
            requests.push(json!({"action": "clear_memories", "user_id": "cy"}));
        }
    }
    requests.push(json!({"action": "add_memory", "memory": "default user"}));
    send_all(&rig, &requests);
    reads_after_drain_all_match(
        &rig,
        &["bo", "cy", "dee", "nobody"]
            .map(|u| json!({"action": "get_memories", "user_id": u}))
            .into_iter()
            .chain([json!({"action": "get_memories"})])
            .collect::<Vec<_>>(),
    );
    no_mismatch(&rig);
}

#[test]
fn a_row_altered_in_postgres_is_a_mismatch_at_the_right_path() {
    let (mut db, _orch, rig) = fresh_rig("session_memory", SHADOW);
    let mut requests = vec![json!({"action": "create_session", "session_id": "s"})];
    for i in 0..3 {
        requests.push(json!({"action": "add_interaction", "session_id": "s", "role": "user", "content": format!("line {i}")}));
    }
    send_all(&rig, &requests);
    assert_eq!(rig.drain(), 0);
    db.exec(
        "UPDATE memory_entries SET content = jsonb_set(content_doc, '{text}', '\"altered\"')::json
         WHERE memory_id = (SELECT memory_id FROM memory_entries ORDER BY created_at LIMIT 1 OFFSET 1)",
    );
    send_all(&rig, &[json!({"action": "get_context", "session_id": "s"})]);
    rig.proxy.metrics_when("the mismatch", |m| {
        comparisons(m, "session_memory", "mismatch") == 1.0
    });
    rig.proxy.wait_for_log("shadow read differs from legacy");
    let line = rig
        .proxy
        .logs()
        .into_iter()
        .find(|l| l.contains("shadow read differs"))
        .unwrap();
    assert!(line.contains("context[1].content"), "{line}");
    assert!(
        !line.contains("altered") && !line.contains("line 1"),
        "no contents in logs: {line}"
    );
    // The sample is in PostgreSQL, redacted: its shape and the paths, not the contents.
    wait_for("the mismatch sample", TIMEOUT, || {
        (db.scalar("SELECT count(*) FROM shadow_mismatches") == 1).then_some(())
    });
    let row = db.texts(
        "SELECT json_build_array(agent, action, key, paths, redacted, request, legacy_reply, shadow_reply)::text
         FROM shadow_mismatches",
    );
    let row: Value = serde_json::from_str(&row[0]).unwrap();
    assert_eq!(row[0], "session_memory");
    assert_eq!(row[1], "get_context");
    assert_eq!(row[2], "s");
    assert_eq!(row[3], json!(["context[1].content"]));
    assert_eq!(row[4], true);
    assert_eq!(row[5]["action"], "get_context");
    assert_eq!(row[5]["session_id"], "<redacted>");
    assert_eq!(row[6]["context"][1]["content"], "<redacted>");
    assert_eq!(row[7]["status"], "success");
    let text = row.to_string();
    assert!(
        !text.contains("altered") && !text.contains("line "),
        "{text}"
    );
}

#[test]
fn mismatch_samples_are_kept_within_their_retention() {
    let mut db = TestDb::new();
    let orch = Orchestrator::start(&db, "mismatch_max_rows = 2", "");
    let ctx = zmq::Context::new();
    let mut c = orch.client(&ctx);
    for i in 0..4 {
        let id = c.ok(
            "record_mismatch",
            None,
            json!({"agent": "a", "action": "get_context", "key": format!("k{i}"), "paths": ["x"], "request": {}}),
        );
        assert!(id["id"].as_i64().is_some());
    }
    let err = c.err(
        "record_mismatch",
        None,
        json!({"agent": "a", "action": "x"}),
    );
    assert_eq!(err, "invalid_request");
    wait_for("the oldest samples pruned", TIMEOUT, || {
        (db.scalar("SELECT count(*) FROM shadow_mismatches") == 2).then_some(())
    });
    assert_eq!(
        db.texts("SELECT key FROM shadow_mismatches ORDER BY id"),
        ["k2", "k3"]
    );
}

#[test]
fn a_read_racing_its_own_pending_write_is_a_race() {
    let (mut db, _orch, rig) = fresh_rig("jarvis_memory", SHADOW);
    // Deliveries crawl; reads do not.
    db.exec("CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.4); RETURN NEW; END $$");
    db.exec(
        "CREATE TRIGGER slow BEFORE INSERT ON memory_entries FOR EACH ROW EXECUTE FUNCTION slow()",
    );
    for i in 0..3 {
        send_all(
            &rig,
            &[
                json!({"action": "add_memory", "user_id": "eve", "memory": format!("m{i}")}),
                json!({"action": "get_memories", "user_id": "eve"}),
            ],
        );
    }
    let m = rig.proxy.metrics_when("three comparisons", |m| {
        all_comparisons(m, "jarvis_memory") >= 3.0
    });
    assert!(comparisons(&m, "jarvis_memory", "race") >= 1.0, "{m}");
    assert_eq!(comparisons(&m, "jarvis_memory", "mismatch"), 0.0, "{m}");
}

#[test]
fn a_session_the_legacy_agent_expired_is_legacy_drift() {
    let db = TestDb::new();
    let orch = Orchestrator::start(&db, "", "");
    let dir = TempDir::new().unwrap();
    let legacy = StandIn::spawn(
        "session_memory",
        dir.path(),
        "tcp://127.0.0.1:*",
        &["--idle-expiry", "1", "--expiry-interval", "0.2"],
    );
    let rig = Rig::start("session_memory", legacy, &orch.endpoint, SHADOW);
    send_all(
        &rig,
        &[
            json!({"action": "create_session", "session_id": "idle"}),
            json!({"action": "add_interaction", "session_id": "idle", "role": "user", "content": "remember me"}),
        ],
    );
    assert_eq!(rig.drain(), 0);
    // Asked directly, so that only the read through the proxy is compared.
    let ctx = zmq::Context::new();
    let direct = req_socket(&ctx, &rig.legacy.endpoint);
    let read = json!({"action": "get_context", "session_id": "idle"}).to_string();
    wait_for("the legacy agent to expire the session", TIMEOUT, || {
        let reply: Value = serde_json::from_slice(&request(&direct, read.as_bytes())).unwrap();
        (reply["context"] == json!([])).then_some(())
    });
    let reply = &send_all(
        &rig,
        &[json!({"action": "get_context", "session_id": "idle"})],
    )[0];
    assert_eq!(
        reply["context"],
        json!([]),
        "the legacy agent expired the session"
    );
    let m = rig.proxy.metrics_when("the drift", |m| {
        comparisons(m, "session_memory", "legacy_drift") == 1.0
    });
    assert_eq!(comparisons(&m, "session_memory", "mismatch"), 0.0);
}

#[test]
fn an_orchestrator_that_is_gone_is_a_shadow_error_and_clients_never_notice() {
    let (_db, mut orch, rig) = fresh_rig("jarvis_memory", SHADOW);
    orch.signal(Signal::SIGKILL);
    orch.wait_exit(TIMEOUT);
    for _ in 0..3 {
        let reply = &send_all(&rig, &[json!({"action": "get_memories", "user_id": "zed"})])[0];
        assert_eq!(reply, &json!({"status": "ok", "memories": []}));
    }
    rig.proxy.metrics_when("three failed comparisons", |m| {
        comparisons(m, "jarvis_memory", "shadow_error")
            + comparisons(m, "jarvis_memory", "shadow_timeout")
            == 3.0
    });
}
