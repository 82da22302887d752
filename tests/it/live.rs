//! Stage `live`: the orchestrator answers reads in the legacy shape, with the legacy agent
//! as the fallback. Every answer is checked against what the legacy agent itself says to
//! the same request, asked directly.

use crate::common;

use common::rig::*;
use common::*;
use memshift::compare::{Outcome, compare};
use memshift::profile::Profile;
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const LIVE: &str = "stage = \"live\"\nread_percent = 100\nshadow_percent = 0\n";

fn served(m: &str, agent: &str, backend: &str) -> f64 {
    metric_sum(
        m,
        "memshift_served_total",
        &[("agent", agent), ("backend", backend)],
    )
}

/// Waits until the orchestrator has served `n` reads of `agent` in all, and says so: the
/// reply reaches the client just before the read is counted.
fn served_by_orchestrator(rig: &Rig, agent: &str, n: f64) {
    rig.proxy
        .metrics_when(&format!("{n} reads served by the orchestrator"), |m| {
            served(m, agent, "orchestrator") >= n
        });
    assert_eq!(served(&rig.proxy.metrics_text(), agent, "orchestrator"), n);
}

/// Sends `requests` through the proxy (writes and reads in order); each read's reply must
/// equal, volatile fields aside, what the legacy agent answers when asked directly right
/// after.
fn check_reads(rig: &Rig, profile: Profile, requests: &[Value]) -> usize {
    let ctx = zmq::Context::new();
    let via = rig.socket(&ctx);
    let direct = req_socket(&ctx, &rig.legacy.endpoint);
    let mut reads = 0;
    for r in requests {
        let body = r.to_string();
        let reply = request(&via, body.as_bytes());
        let action = r["action"].as_str().unwrap();
        if matches!(action, "get_context" | "get_memories") {
            reads += 1;
            let legacy = request(&direct, body.as_bytes());
            let answered: Value = serde_json::from_slice(&reply).unwrap();
            let verdict = compare(profile, &legacy, &answered, false);
            assert_eq!(
                verdict.outcome,
                Outcome::Match,
                "{body}: {:?}\nlegacy {}\nproxy  {}",
                verdict.paths,
                String::from_utf8_lossy(&legacy),
                answered
            );
        }
    }
    reads
}

#[test]
fn in_live_every_session_read_equals_the_legacy_reply() {
    let (_db, _orch, rig) = fresh_rig("session_memory", LIVE);
    let mut writes = vec![json!({"action": "create_session", "session_id": "s", "user_id": "u"})];
    for i in 0..30 {
        writes.push(json!({"action": "add_interaction", "session_id": "s", "role": "user", "content": format!("Grüße ☀ #{i} {}", "w".repeat(i))}));
    }
    writes.push(json!({"action": "create_session", "session_id": "empty"}));
    check_reads(&rig, Profile::SessionMemory, &writes);
    assert_eq!(rig.drain(), 0);
    let reads = [
        json!({"action": "get_context", "session_id": "s", "request_id": "r1"}),
        json!({"action": "get_context", "session_id": "s", "max_tokens": 40}),
        json!({"action": "get_context", "session_id": "empty"}),
        json!({"action": "get_context", "session_id": "unknown"}),
    ];
    let n = check_reads(&rig, Profile::SessionMemory, &reads);
    served_by_orchestrator(&rig, "session_memory", n as f64);
    // Read your writes: a read right after a write is answered correctly (by legacy while
    // the write is on its way, by the orchestrator after).
    let mut mixed = Vec::new();
    for i in 0..10 {
        mixed.push(json!({"action": "add_interaction", "session_id": "s", "role": "assistant", "content": format!("reply {i}")}));
        mixed.push(json!({"action": "get_context", "session_id": "s"}));
    }
    check_reads(&rig, Profile::SessionMemory, &mixed);
}

#[test]
fn in_live_every_contextual_read_equals_the_legacy_reply() {
    let (_db, _orch, rig) = fresh_rig("contextual_memory", LIVE);
    let mut writes =
        vec![json!({"action": "record_decision", "session_id": "c", "decision": "first ✓"})];
    for i in 0..60 {
        let kind = ["code", "user_query", "system_response", "error"][i % 4];
        writes.push(json!({"action": "add_interaction", "session_id": "c", "type": kind, "content": format!("{kind} {i}: thread exception in the web database")}));
    }
    writes.push(json!({"action": "record_decision", "session_id": "c", "decision": "second"}));
    writes.push(json!({"action": "record_decision", "session_id": "d", "decision": "only this"}));
    check_reads(&rig, Profile::ContextualMemory, &writes);
    assert_eq!(rig.drain(), 0);
    let reads = [
        json!({"action": "get_context", "session_id": "c"}),
        json!({"action": "get_context", "session_id": "d"}),
        json!({"action": "get_context", "session_id": "none"}),
        json!({"action": "get_context", "session_id": "c", "max_tokens": 20}),
    ];
    let n = check_reads(&rig, Profile::ContextualMemory, &reads);
    served_by_orchestrator(&rig, "contextual_memory", n as f64);
}

#[test]
fn in_live_every_jarvis_read_equals_the_legacy_reply() {
    let (_db, _orch, rig) = fresh_rig("jarvis_memory", LIVE);
    let mut requests = Vec::new();
    for i in 0..12 {
        let memory = if i % 3 == 0 {
            json!({"type": "reminder", "text": format!("r{i}")})
        } else {
            json!(format!("m{i} 🍵"))
        };
        requests.push(json!({"action": "add_memory", "user_id": "u", "memory": memory}));
        requests.push(json!({"action": "get_memories", "user_id": "u"}));
    }
    requests.push(json!({"action": "clear_memories", "user_id": "u"}));
    requests.push(json!({"action": "get_memories", "user_id": "u"}));
    requests.push(json!({"action": "get_memories"}));
    check_reads(&rig, Profile::JarvisMemory, &requests);
    assert_eq!(rig.drain(), 0);
    let reads = [
        json!({"action": "add_memory", "user_id": "v", "memory": "x"}),
        json!({"action": "get_memories", "user_id": "u"}),
        json!({"action": "get_memories", "user_id": "nobody"}),
    ];
    check_reads(&rig, Profile::JarvisMemory, &reads);
    rig.proxy
        .metrics_when("2 reads served by the orchestrator", |m| {
            served(m, "jarvis_memory", "orchestrator") >= 2.0
        });
}

#[test]
fn with_the_orchestrator_stopped_live_reads_come_from_legacy_within_the_budget() {
    let (_db, mut orch, rig) = fresh_rig("jarvis_memory", &format!("{LIVE}[mirror]\n"));
    check_reads(
        &rig,
        Profile::JarvisMemory,
        &[json!({"action": "add_memory", "user_id": "w", "memory": "kept"})],
    );
    assert_eq!(rig.drain(), 0);
    orch.signal(Signal::SIGKILL);
    orch.wait_exit(TIMEOUT);
    let read = [json!({"action": "get_memories", "user_id": "w"})];
    for _ in 0..5 {
        let started = Instant::now();
        check_reads(&rig, Profile::JarvisMemory, &read);
        // The live budget is 250 ms; the legacy answer comes on top of at most that.
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "{:?}",
            started.elapsed()
        );
    }
    let m = rig.proxy.metrics_text();
    let fallbacks = metric_sum(
        &m,
        "memshift_live_fallbacks_total",
        &[("agent", "jarvis_memory")],
    );
    assert_eq!(fallbacks, 5.0, "{m}");
    assert_eq!(served(&m, "jarvis_memory", "orchestrator"), 0.0);
}

/// session_memory deletes a session its "hour" after its creation, however active (here the
/// stand-in's hour is 2 s, and memshift is told so). A live read is the agent's answer:
/// the history while the session lives; in the minute in which the agent's cleanup may or
/// may not have run, the agent itself answers (fallback `unsupported`), and says `[]`.
/// With `serve_forgotten`, the orchestrator's fuller history is served instead.
fn expiring_rig(serve_forgotten: bool) -> (common::pg::TestDb, common::pg::Orchestrator, Rig) {
    expiring_rig_in(LIVE, serve_forgotten)
}

fn expiring_rig_in(
    flags: &str,
    serve_forgotten: bool,
) -> (common::pg::TestDb, common::pg::Orchestrator, Rig) {
    let db = common::pg::TestDb::new();
    let orch = common::pg::Orchestrator::start(&db, "", "");
    let legacy = StandIn::start_with(
        "session_memory",
        &["--idle-expiry", "2", "--expiry-interval", "0.1"],
    );
    let extra =
        format!("{flags}[live]\nsession_lifetime = \"2s\"\nserve_forgotten = {serve_forgotten}\n");
    let rig = Rig::start("session_memory", legacy, &orch.endpoint, &extra);
    (db, orch, rig)
}

fn expiring_session(rig: &Rig) -> (zmq::Socket, zmq::Socket, Instant) {
    let ctx = zmq::Context::new();
    let via = rig.socket(&ctx);
    let direct = req_socket(&ctx, &rig.legacy.endpoint);
    let created = Instant::now();
    for r in [
        json!({"action": "create_session", "session_id": "brief", "user_id": "u"}),
        json!({"action": "add_interaction", "session_id": "brief", "role": "user", "content": "remember me"}),
    ] {
        request(&via, r.to_string().as_bytes());
    }
    assert_eq!(rig.drain(), 0);
    (via, direct, created)
}

const READ_BRIEF: &[u8] = br#"{"action": "get_context", "session_id": "brief"}"#;

#[test]
fn a_live_read_of_a_session_the_agent_expired_is_the_agents_empty_context() {
    let (_db, _orch, rig) = expiring_rig(false);
    let (via, direct, created) = expiring_session(&rig);
    // Alive: the orchestrator answers with the history.
    let alive: Value = serde_json::from_slice(&request(&via, READ_BRIEF)).unwrap();
    assert!(
        created.elapsed() < Duration::from_secs(2),
        "too slow to see it alive"
    );
    assert_eq!(alive["context"][0]["content"], "remember me");
    served_by_orchestrator(&rig, "session_memory", 1.0);
    // Past its hour: the agent forgot it, and so does the answer.
    wait_for("the agent's cleanup", TIMEOUT, || {
        let legacy: Value = serde_json::from_slice(&request(&direct, READ_BRIEF)).unwrap();
        (legacy["context"] == json!([])).then_some(())
    });
    let gone = request(&via, READ_BRIEF);
    assert_eq!(gone, request(&direct, READ_BRIEF));
    assert_eq!(
        String::from_utf8_lossy(&gone),
        r#"{"status": "success", "context": [], "request_id": ""}"#
    );
    let m = rig.proxy.metrics_text();
    assert_eq!(
        metric_sum(
            &m,
            "memshift_live_fallbacks_total",
            &[("agent", "session_memory"), ("reason", "unsupported")]
        ),
        1.0,
        "within the cleanup's minute the agent answers: {m}"
    );
    // A write into it is the agent's unknown-session error, and is not mirrored.
    let add = json!({"action": "add_interaction", "session_id": "brief", "role": "user", "content": "late"});
    let refused: Value =
        serde_json::from_slice(&request(&via, add.to_string().as_bytes())).unwrap();
    assert_eq!(refused, json!({"status": "error", "request_id": ""}));
}

#[test]
fn serve_forgotten_answers_from_the_orchestrators_fuller_history() {
    let (_db, _orch, rig) = expiring_rig(true);
    let (via, direct, _) = expiring_session(&rig);
    wait_for("the agent's cleanup", TIMEOUT, || {
        let legacy: Value = serde_json::from_slice(&request(&direct, READ_BRIEF)).unwrap();
        (legacy["context"] == json!([])).then_some(())
    });
    let kept: Value = serde_json::from_slice(&request(&via, READ_BRIEF)).unwrap();
    assert_eq!(kept["context"][0]["content"], "remember me");
    served_by_orchestrator(&rig, "session_memory", 1.0);
}

/// In `rampdown` the orchestrator takes writes first, and must refuse one into a session
/// the agent has forgotten as the agent does: the client gets the agent's unknown-session
/// error, and nothing is stored.
#[test]
fn in_rampdown_a_write_into_a_session_the_agent_expired_is_refused_as_the_agent_refuses_it() {
    let flags =
        "stage = \"rampdown\"\n[rollout]\ngates = \"warn\"\n[rollout.auto]\nenabled = false\n";
    let (mut db, _orch, rig) = expiring_rig_in(flags, false);
    let ctx = zmq::Context::new();
    let via = rig.socket(&ctx);
    let direct = req_socket(&ctx, &rig.legacy.endpoint);
    let send = |r: Value| -> Value {
        serde_json::from_slice(&request(&via, r.to_string().as_bytes())).unwrap()
    };
    assert_eq!(
        send(json!({"action": "create_session", "session_id": "brief", "user_id": "u"}))["status"],
        "success"
    );
    let add = |content: &str| json!({"action": "add_interaction", "session_id": "brief", "role": "user", "content": content});
    assert_eq!(
        send(add("remember me")),
        json!({"status": "success", "request_id": ""})
    );
    let stored = |db: &mut common::pg::TestDb| {
        db.scalar("SELECT count(*) FROM memory_entries WHERE session_id = 'brief' AND is_active")
    };
    assert_eq!(stored(&mut db), 1);
    // The agent (its hour is 2 s) forgets the session.
    wait_for("the agent's cleanup", TIMEOUT, || {
        let legacy: Value = serde_json::from_slice(&request(&direct, READ_BRIEF)).unwrap();
        (legacy["context"] == json!([])).then_some(())
    });
    assert_eq!(
        send(add("too late")),
        json!({"status": "error", "request_id": ""}),
        "the agent's reply to a write into a session it does not know"
    );
    assert_eq!(stored(&mut db), 1, "nothing stored for a refused write");
}

/// session_memory keeps its 100 newest sessions: a cleanup after the 101st deletes the
/// oldest. A live read of it is then the agent's empty context, never the orchestrator's
/// fuller history (in the cleanup's minute the agent answers it: a fallback).
#[test]
fn a_live_read_of_a_session_the_agent_pushed_out_of_its_100_is_the_agents_answer() {
    let db = common::pg::TestDb::new();
    let orch = common::pg::Orchestrator::start(&db, "", "");
    let legacy = StandIn::start_with("session_memory", &["--expiry-interval", "0.2"]);
    let rig = Rig::start("session_memory", legacy, &orch.endpoint, LIVE);
    let ctx = zmq::Context::new();
    let via = rig.socket(&ctx);
    let direct = req_socket(&ctx, &rig.legacy.endpoint);
    let send = |r: Value| request(&via, r.to_string().as_bytes());
    send(json!({"action": "create_session", "session_id": "oldest", "user_id": "u"}));
    send(
        json!({"action": "add_interaction", "session_id": "oldest", "role": "user", "content": "remember me"}),
    );
    let read = |sid: &str| json!({"action": "get_context", "session_id": sid}).to_string();
    let read_oldest = read("oldest");
    let alive: Value = serde_json::from_slice(&request(&via, read_oldest.as_bytes())).unwrap();
    assert_eq!(alive["context"][0]["content"], "remember me");
    for s in 0..100 {
        send(json!({"action": "create_session", "session_id": format!("s-{s:03}")}));
    }
    assert_eq!(rig.drain(), 0);
    wait_for("the agent's cleanup", TIMEOUT, || {
        let legacy: Value =
            serde_json::from_slice(&request(&direct, read_oldest.as_bytes())).unwrap();
        (legacy["context"] == json!([])).then_some(())
    });
    let before = rig.proxy.metrics_text();
    let gone = request(&via, read_oldest.as_bytes());
    assert_eq!(gone, request(&direct, read_oldest.as_bytes()));
    assert_eq!(
        String::from_utf8_lossy(&gone),
        r#"{"status": "success", "context": [], "request_id": ""}"#
    );
    let after = rig.proxy.metrics_text();
    let unsupported = |m: &str| {
        metric_sum(
            m,
            "memshift_live_fallbacks_total",
            &[("agent", "session_memory"), ("reason", "unsupported")],
        )
    };
    assert_eq!(
        unsupported(&after) - unsupported(&before),
        1.0,
        "within the cleanup's minute the agent answers: {after}"
    );
    // A session it keeps is still answered by the orchestrator.
    let kept = read("s-000");
    let served_before = served(&after, "session_memory", "orchestrator");
    assert_eq!(
        request(&via, kept.as_bytes()),
        request(&direct, kept.as_bytes())
    );
    served_by_orchestrator(&rig, "session_memory", served_before + 1.0);
}
