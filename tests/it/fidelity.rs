//! The fidelity drill: for each agent, a mixed workload written through the proxy in
//! `dualwrite` (more than 50 interactions per contextual session, code snippets that end in
//! a newline, memories with many keys in no sorted order, unicode, ids of every JSON type
//! the agents accept), then:
//! 1. `shadow`: every read compared, and not one mismatch;
//! 2. `live` at 100 %: every read answered by the orchestrator, and each answer the same
//!    bytes as the stand-in's own answer to the same request, key order included (the
//!    agent's clock masked: it stamps its own times, which no proxy can know);
//! 3. `memshift reconcile` of the stand-in's store: 0 inconsistencies.

use crate::common;

use common::pg::{TestDb, config_with_database};
use common::rig::*;
use common::*;
use memshift::compare::mask_volatile;
use memshift::profile::Profile;
use serde_json::{Value, json};

const SHADOW: &str = "stage = \"shadow\"\nshadow_percent = 100\n";
const LIVE: &str = "stage = \"live\"\nread_percent = 100\nshadow_percent = 0\n";

/// A JSON text kept as written (key order included).
fn raw(text: &str) -> Value {
    serde_json::from_str(text).expect("valid JSON")
}

fn send(socket: &zmq::Socket, body: &Value) -> Vec<u8> {
    request(socket, body.to_string().as_bytes())
}

fn metric_of(rig: &Rig, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_sum(&rig.proxy.metrics_text(), name, labels)
}

fn stage_is(rig: &Rig, stage: &str) -> bool {
    metric_of(
        rig,
        "memshift_stage",
        &[("agent", rig.agent), ("stage", stage)],
    ) == 1.0
}

fn move_to(rig: &Rig, flags: &str, stage: &str) {
    rig.set_flags(flags);
    wait_for(&format!("stage {stage}"), TIMEOUT, || {
        stage_is(rig, stage).then_some(())
    });
}

/// The reply as the client sees it, with the agent's clock masked: `json.dumps` bytes.
fn masked(profile: Profile, reply: &[u8]) -> String {
    let mut v: Value = serde_json::from_slice(reply).expect("a JSON reply");
    // What memshift parses and writes again is the agent's very bytes.
    assert_eq!(
        memshift::pyjson::dumps(&v).as_bytes(),
        reply,
        "re-encoding changed the reply"
    );
    mask_volatile(profile, &mut v);
    memshift::pyjson::dumps(&v)
}

/// Runs the drill for one agent: `writes` through the proxy, then `reads` in shadow and
/// in live, then a reconcile of `store` (the file or directory the agent keeps).
fn drill(agent: &'static str, writes: &[Value], reads: &[Value], store: &str) {
    let profile = Profile::from_name(agent).expect("a built-in profile");
    let db = TestDb::new();
    let orch = common::pg::Orchestrator::start(&db, "", "");
    // The gates want a thousand comparisons; the drill asserts its own (none differ).
    // The live and shadow budgets are generous: the drill asks whether the orchestrator's
    // answers are the agent's, not how fast a loaded machine gives them (a read past the
    // budget would go to legacy, or be a shadow_timeout, and prove nothing).
    let rig = Rig::start(
        agent,
        StandIn::start(agent),
        &orch.endpoint,
        "[rollout]\ngates = \"warn\"\n[live]\ntimeout = \"10s\"\n[shadow]\ntimeout = \"10s\"\n",
    );
    let ctx = zmq::Context::new();
    let via = rig.socket(&ctx);
    let direct = req_socket(&ctx, &rig.legacy.endpoint);
    for w in writes {
        send(&via, w);
    }
    let drained = rig.drain();
    assert_eq!(
        drained,
        0,
        "every mirrored write delivered: {}",
        rig.status()
    );

    // 1. Shadow: the legacy agent answers, the orchestrator's answer is compared.
    move_to(&rig, SHADOW, "shadow");
    for r in reads {
        send(&via, r);
    }
    let outcome = |o: &str| {
        metric_of(
            &rig,
            "memshift_comparisons_total",
            &[("agent", agent), ("outcome", o)],
        )
    };
    let n = reads.len() as f64;
    wait_for("every read compared", TIMEOUT, || {
        let settled: f64 = ["match", "mismatch", "race", "legacy_drift", "skipped"]
            .iter()
            .map(|o| outcome(o))
            .sum();
        (settled >= n).then_some(())
    });
    assert_eq!(
        (outcome("match"), outcome("mismatch")),
        (n, 0.0),
        "{}",
        rig.proxy.metrics_text()
    );

    // 2. Live: the orchestrator answers; legacy, asked directly after, says the same.
    move_to(&rig, LIVE, "live");
    let legacy_before = metric_of(
        &rig,
        "memshift_served_total",
        &[("agent", agent), ("backend", "legacy")],
    );
    for r in reads {
        let answered = send(&via, r);
        let legacy = send(&direct, r);
        assert_eq!(
            masked(profile, &answered),
            masked(profile, &legacy),
            "{r}: the orchestrator's answer is not the agent's"
        );
    }
    // A reply reaches the client just before its read is counted: wait for every read to be
    // counted, by one backend or the other.
    let count = |backend: &str| {
        metric_of(
            &rig,
            "memshift_served_total",
            &[("agent", agent), ("backend", backend)],
        )
    };
    wait_for("every live read counted", TIMEOUT, || {
        (count("orchestrator") + count("legacy") - legacy_before >= n).then_some(())
    });
    let served = count("orchestrator");
    assert_eq!(
        served,
        n,
        "every read answered by the orchestrator: {}",
        rig.proxy
            .metrics_text()
            .lines()
            .filter(|l| l.starts_with("memshift_live_fallbacks_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // 3. Reconcile: the store against the orchestrator.
    let (code, report) = reconcile(&rig, &db, store);
    let inconsistencies: Vec<&Value> = report["differences"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["class"] != "legacy_drift")
        .collect();
    assert!(inconsistencies.is_empty(), "{inconsistencies:#?}");
    assert_eq!(code, Some(0), "{report}");
}

/// `memshift reconcile --json` of the rig's agent against its stand-in's `store` (a path
/// under the stand-in's data directory): the exit code and the report.
fn reconcile(rig: &Rig, db: &TestDb, store: &str) -> (Option<i32>, Value) {
    let dir = rig.legacy.data_dir.join(store);
    let config = config_with_database(&rig.toml, db);
    let args = [
        "reconcile",
        "--agent",
        rig.agent,
        "--from",
        dir.to_str().unwrap(),
        "--json",
    ];
    let out = memshift_cli(&args, &config);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), report)
}

/// A code snippet that ends in a newline, with other line ends inside.
fn snippet(i: usize) -> String {
    match i % 4 {
        0 => format!("def handler_{i}():\n    return db.query('SELECT 1')\n"),
        1 => format!("x = {i}\r\ny = x\x0bz = y\u{2028}# web thread\n\n"),
        2 => format!("// Grüße ☀ {i}\u{85}fetch('/api')\n"),
        _ => format!("print({i})"),
    }
}

#[test]
fn contextual_memory_through_dualwrite_shadow_live_and_reconcile() {
    // Sessions: plain, Python's None (no id), the string "null", a number, a string that
    // looks typed. Each past 50 interactions; decisions, one an object of several keys.
    // (Not also the string "null": the agent writes None's key as "null" too, and a file
    // with the key twice cannot be read back as two sessions, by the agent or by anyone.)
    let sessions = [json!("room-1"), Value::Null, json!(5), json!("json:odd")];
    let types = [
        "code",
        "user_query",
        "system_response",
        "error",
        "user_query",
    ];
    let mut writes = Vec::new();
    for (s, sid) in sessions.iter().enumerate() {
        for i in 0..(52 + s * 3) {
            let kind = types[(i + s) % types.len()];
            let content = match kind {
                "code" => snippet(i),
                "error" => format!("ValueError exception in step {i} — ünïcode"),
                _ => format!("{kind} {i} 🎉 {}", "w".repeat(i % 7)),
            };
            let mut w = json!({"action": "add_interaction", "type": kind, "content": content});
            if !sid.is_null() {
                w["session_id"] = sid.clone();
            }
            if i % 9 == 0 {
                w["metadata"] = raw(r#"{"z": 1, "a": {"y": 2, "b": 3}}"#);
            } else if i % 9 == 1 {
                w["metadata"] = json!({});
            }
            writes.push(w);
            if i % 20 == 7 {
                let mut d = json!({"action": "record_decision",
                    "decision": raw(r#"{"use": "sqlite", "because": "small", "at": 1}"#)});
                if !sid.is_null() {
                    d["session_id"] = sid.clone();
                }
                writes.push(d);
            }
        }
    }
    // A session with a decision only, and one with too few interactions for a summary.
    writes.push(json!({"action": "record_decision", "session_id": "decided", "decision": "ok ✓"}));
    writes.push(json!({"action": "add_interaction", "session_id": "young", "type": "code", "content": "x\n"}));
    let mut reads = Vec::new();
    for sid in sessions
        .iter()
        .chain(&[json!("decided"), json!("young"), json!("unknown")])
    {
        let mut r = json!({"action": "get_context"});
        if !sid.is_null() {
            r["session_id"] = sid.clone();
        }
        reads.push(r.clone());
        r["max_tokens"] = json!(null);
        reads.push(r.clone());
        r["max_tokens"] = json!(2500.5);
        reads.push(r);
    }
    drill(
        "contextual_memory",
        &writes,
        &reads,
        "contextual_memory_store.json",
    );
}

#[test]
fn jarvis_memory_through_dualwrite_shadow_live_and_reconcile() {
    // As in contextual, not both `null` and "null": the file would name both "null".
    let users = [json!("ana"), Value::Null, json!(7), json!("ünï")];
    let mut writes = Vec::new();
    for (u, user) in users.iter().enumerate() {
        for i in 0..12 {
            let memory = match i % 4 {
                0 => json!(format!("likes tea #{i} ☕")),
                1 => raw(&format!(
                    r#"{{"text": "call mum {i}", "type": "note", "n": {i}, "tags": ["b", "a"], "meta": {{"z": 1, "a": 2}}}}"#
                )),
                2 => raw(r#"{"zeta": "last key first", "alpha": [1, 2.5, null, true]}"#),
                _ => json!({"type": "reminder", "text": format!("stretch {u}")}),
            };
            writes.push(json!({"action": "add_memory", "user_id": user, "memory": memory}));
        }
    }
    // The default user: no user_id at all.
    writes.push(json!({"action": "add_memory", "memory": raw(r#"{"b": 1, "a": 2}"#)}));
    writes.push(json!({"action": "clear_memories", "user_id": "ünï"}));
    writes.push(json!({"action": "add_memory", "user_id": "ünï", "memory": "again"}));
    let mut reads: Vec<Value> = users
        .iter()
        .map(|u| json!({"action": "get_memories", "user_id": u}))
        .collect();
    reads.push(json!({"action": "get_memories"}));
    reads.push(json!({"action": "get_memories", "user_id": "nobody"}));
    drill("jarvis_memory", &writes, &reads, "jarvis_memory_store.json");
}

#[test]
fn session_memory_through_dualwrite_shadow_live_and_reconcile() {
    let mut writes = Vec::new();
    for s in 0..4 {
        let sid = format!("s-{s}");
        writes.push(
            json!({"action": "create_session", "session_id": sid, "user_id": "u",
            "metadata": if s == 0 { json!(null) } else { raw(r#"{"z": 1, "a": 2}"#) }}),
        );
        for i in 0..30 {
            writes.push(json!({"action": "add_interaction", "session_id": sid,
                "role": if i % 2 == 0 { "user" } else { "assistant" },
                "content": format!("Grüße ☀ {i} {}", "w".repeat(i * 3)),
                "metadata": if i % 5 == 0 { json!("") } else { json!({"i": i}) }}));
        }
    }
    writes.push(json!({"action": "clear_session", "session_id": "s-3"}));
    let mut reads = Vec::new();
    for s in 0..4 {
        for max_tokens in [json!(2000), json!(40), json!(7.5), json!(true)] {
            reads.push(
                json!({"action": "get_context", "session_id": format!("s-{s}"),
                "max_tokens": max_tokens, "request_id": format!("r{s}")}),
            );
        }
    }
    reads.push(json!({"action": "get_context", "session_id": "unknown"}));
    drill("session_memory", &writes, &reads, "data/session_memory.db");
}

/// session_memory keeps 100 sessions in memory; its cleanup deletes the oldest past them,
/// from its database too. The orchestrator keeps them all: reconcile calls the missing one
/// `legacy_drift`, rule `evicted`, not an inconsistency.
#[test]
fn sessions_the_agent_evicted_past_100_reconcile_as_drift() {
    let db = TestDb::new();
    let orch = common::pg::Orchestrator::start(&db, "", "");
    let legacy = StandIn::start_with("session_memory", &["--expiry-interval", "0.2"]);
    let rig = Rig::start("session_memory", legacy, &orch.endpoint, "");
    let ctx = zmq::Context::new();
    let via = rig.socket(&ctx);
    for s in 0..102 {
        send(
            &via,
            &json!({"action": "create_session", "session_id": format!("s-{s:03}")}),
        );
    }
    assert_eq!(rig.drain(), 0);
    let store = session_store(&rig.legacy);
    wait_for("the agent's cleanup", TIMEOUT, || {
        let n: i64 = store
            .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
            .unwrap();
        (n == 100).then_some(())
    });
    let (code, report) = reconcile(&rig, &db, "data/session_memory.db");
    let differences = report["differences"].as_array().unwrap();
    let evicted: Vec<&str> = differences
        .iter()
        .filter(|d| d["class"] == "legacy_drift" && d["reason"] == "evicted")
        .map(|d| d["key"].as_str().unwrap())
        .collect();
    assert_eq!(evicted, ["s-000", "s-001"], "{report}");
    assert_eq!(differences.len(), 2, "{report}");
    assert_eq!(code, Some(0), "drift only: {report}");
}

/// contextual_memory's `get_context` cuts the summary the agent holds, and the cut stays
/// until the next rebuild: a later read with a larger `max_tokens` sees the cut text. The
/// mirror keeps the cut with the session, so a live answer is the agent's; the next add
/// rebuilds the whole text, on both sides.
#[test]
fn a_cut_made_by_a_read_stays_until_the_next_add_in_live_answers_too() {
    let mut db = TestDb::new();
    let orch = common::pg::Orchestrator::start(&db, "", "");
    let rig = Rig::start(
        "contextual_memory",
        StandIn::start("contextual_memory"),
        &orch.endpoint,
        "[rollout]\ngates = \"warn\"\n[live]\ntimeout = \"10s\"\n[shadow]\ntimeout = \"10s\"\n",
    );
    let ctx = zmq::Context::new();
    let via = rig.socket(&ctx);
    let direct = req_socket(&ctx, &rig.legacy.endpoint);
    let add = |i: usize| {
        json!({"action": "add_interaction", "session_id": "cut", "type": "user_query",
            "content": format!("question {i} {}", "q".repeat(120))})
    };
    for i in 0..53 {
        send(&via, &add(i));
    }
    let read = |max_tokens: Value| json!({"action": "get_context", "session_id": "cut", "max_tokens": max_tokens});
    let summary_of = |reply: &[u8]| -> String {
        let v: Value = serde_json::from_slice(reply).unwrap();
        v["conversation_summary"].as_str().unwrap().to_owned()
    };
    let whole = summary_of(&send(&direct, &read(json!(2000))));
    assert!(whole.chars().count() > 300, "{whole}");

    // dualwrite: legacy answers; its cut to 20 characters stays for the larger read.
    let cut = summary_of(&send(&via, &read(json!(10))));
    assert_eq!(cut, format!("{}...", &whole[..20]));
    assert_eq!(summary_of(&send(&via, &read(json!(2000)))), cut);
    // The same cut again changes nothing: it is not kept twice.
    assert_eq!(summary_of(&send(&via, &read(json!(10)))), cut);
    let queued = |rig: &Rig| {
        metric_of(
            rig,
            "memshift_mirror_writes_total",
            &[("action", "get_context"), ("outcome", "queued")],
        )
    };
    wait_for("the cut queued", TIMEOUT, || {
        (queued(&rig) >= 1.0).then_some(())
    });
    assert_eq!(queued(&rig), 1.0, "the same cut again is not kept twice");
    assert_eq!(rig.drain(), 0);

    // shadow: the orchestrator's answers are the agent's, cut included.
    move_to(&rig, SHADOW, "shadow");
    for max_tokens in [json!(10), json!(2000)] {
        assert_eq!(summary_of(&send(&via, &read(max_tokens))), cut);
    }
    let outcome = |o: &str| {
        metric_of(
            &rig,
            "memshift_comparisons_total",
            &[("agent", "contextual_memory"), ("outcome", o)],
        )
    };
    let settled = [
        "match",
        "mismatch",
        "race",
        "shadow_error",
        "shadow_timeout",
    ];
    wait_for("both reads compared", TIMEOUT, || {
        (settled.iter().map(|o| outcome(o)).sum::<f64>() >= 2.0).then_some(())
    });
    assert_eq!(
        (outcome("match"), outcome("mismatch")),
        (2.0, 0.0),
        "{}",
        rig.proxy.metrics_text()
    );

    // live: the orchestrator answers with the agent's cut text, as the agent does.
    move_to(&rig, LIVE, "live");
    let served = |rig: &Rig| {
        metric_of(
            rig,
            "memshift_served_total",
            &[("agent", "contextual_memory"), ("backend", "orchestrator")],
        )
    };
    for max_tokens in [json!(2000), json!(null), json!(1e3)] {
        let answered = send(&via, &read(max_tokens.clone()));
        let legacy = send(&direct, &read(max_tokens));
        assert_eq!(
            masked(Profile::ContextualMemory, &answered),
            masked(Profile::ContextualMemory, &legacy)
        );
        assert_eq!(summary_of(&answered), cut);
    }
    wait_for("3 reads counted", TIMEOUT, || {
        (served(&rig) >= 3.0).then_some(())
    });
    assert_eq!(served(&rig), 3.0);

    // The next add rebuilds the summary, and the whole text is back.
    send(&via, &add(53));
    assert_eq!(rig.drain(), 0);
    let answered = send(&via, &read(json!(2000)));
    let legacy = send(&direct, &read(json!(2000)));
    assert_eq!(
        masked(Profile::ContextualMemory, &answered),
        masked(Profile::ContextualMemory, &legacy)
    );
    assert!(summary_of(&answered).chars().count() > 300);
    wait_for("4 reads counted", TIMEOUT, || {
        (served(&rig) >= 4.0).then_some(())
    });
    assert_eq!(served(&rig), 4.0, "answered by the orchestrator");
    // One cut kept: the repeat and the shadow reads' same cut were not; reads the
    // orchestrator answered cut nothing the agent holds.
    let kept = db.scalar("SELECT count(*) FROM memory_entries WHERE memory_type = 'agent_state'");
    assert_eq!(kept, 1);
}
