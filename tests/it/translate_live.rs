//! The translation against the real thing: each write goes to a legacy stand-in, its actual
//! reply bytes decide the verdict, the mirror ops go to a real orchestrator — and replaying
//! every op again (a retried delivery) changes nothing.

use crate::common;

use common::pg;
use common::*;
use memshift::profile::Profile;
use memshift::translate::{Verdict, translate};
use serde_json::json;

/// Sends `requests` to the stand-in, mirrors every successful write, and returns the
/// calls made (for the replay) and how many writes failed on the legacy side.
fn drive(
    profile: Profile,
    agent: &str,
    requests: &[serde_json::Value],
    orch: &mut pg::Client,
) -> (Vec<memshift::translate::Call>, usize) {
    let legacy = StandIn::start(agent);
    let ctx = zmq::Context::new();
    let socket = req_socket(&ctx, &legacy.endpoint);
    let (mut calls, mut failed) = (Vec::new(), 0);
    for (n, req) in requests.iter().enumerate() {
        let body = req.to_string();
        let reply = request(&socket, body.as_bytes());
        match translate(profile, body.as_bytes(), &reply) {
            Verdict::Mirror(m) => {
                for (i, op) in m.ops.iter().enumerate() {
                    calls.push(
                        op.to_call(&format!("test-epoch/{}/{n}/{i}", m.key), chrono::Utc::now()),
                    );
                }
            }
            Verdict::Failed(_) => failed += 1,
            Verdict::NotAWrite => panic!("{body} is a write"),
        }
    }
    for call in &calls {
        orch.ok(
            call.action.name(),
            call.session_id.as_deref(),
            call.payload.clone(),
        );
    }
    (calls, failed)
}

fn replay(calls: &[memshift::translate::Call], orch: &mut pg::Client) {
    for call in calls {
        orch.ok(
            call.action.name(),
            call.session_id.as_deref(),
            call.payload.clone(),
        );
    }
}

#[test]
fn session_memory_writes_mirror_exactly_once() {
    let (mut db, orch, ctx) = pg::fresh("", "");
    let mut c = orch.client(&ctx);
    let requests = [
        json!({"action": "create_session", "session_id": "s1", "user_id": "ana", "metadata": {"room": "kitchen"}}),
        json!({"action": "create_session", "session_id": "s1"}),
        json!({"action": "add_interaction", "session_id": "s1", "role": "user", "content": "Guten Morgen ☀"}),
        json!({"action": "add_interaction", "session_id": "s1", "role": "assistant", "content": "Morning!"}),
        json!({"action": "add_interaction", "session_id": "s1", "role": "user", "content": "Morning!"}),
        json!({"action": "add_interaction", "session_id": "nope", "role": "user", "content": "lost"}),
        json!({"action": "add_interaction", "session_id": "s1"}),
        json!({"action": "create_session", "session_id": "s2"}),
        json!({"action": "add_interaction", "session_id": "s2", "role": "user", "content": "bye"}),
        json!({"action": "clear_session", "session_id": "s2"}),
    ];
    let (calls, failed) = drive(Profile::SessionMemory, "session_memory", &requests, &mut c);
    assert_eq!(
        failed, 3,
        "duplicate session, unknown session, missing fields"
    );
    let count = |db: &mut pg::TestDb, sid: &str| {
        db.scalar(&format!(
            "SELECT count(*) FROM memory_entries WHERE session_id = '{sid}' AND is_active"
        ))
    };
    assert_eq!(count(&mut db, "s1"), 3, "identical texts are two memories");
    assert_eq!(count(&mut db, "s2"), 0, "cleared");
    assert_eq!(
        db.texts("SELECT user_id FROM sessions WHERE session_id = 's1'"),
        ["ana"]
    );
    replay(&calls, &mut c);
    assert_eq!(count(&mut db, "s1"), 3);
    assert_eq!(db.scalar("SELECT count(*) FROM memory_entries"), 4);
}

#[test]
fn contextual_memory_writes_mirror_exactly_once() {
    let (mut db, orch, ctx) = pg::fresh("", "");
    let mut c = orch.client(&ctx);
    let requests = [
        json!({"action": "add_interaction", "session_id": "c1", "type": "code", "content": "SELECT 1"}),
        json!({"action": "add_interaction", "session_id": "c1", "type": "user_query", "content": "¿Qué tal?", "metadata": {"lang": "es"}}),
        json!({"action": "record_decision", "session_id": "c1", "decision": "use SQLite"}),
        json!({"action": "add_interaction", "type": "user_query", "content": "no session"}),
    ];
    let (calls, failed) = drive(
        Profile::ContextualMemory,
        "contextual_memory",
        &requests,
        &mut c,
    );
    assert_eq!(failed, 0, "the 'bool' reply is success");
    assert_eq!(db.scalar("SELECT count(*) FROM memory_entries WHERE session_id = 'c1' AND memory_type = 'context'"), 2);
    assert_eq!(
        db.texts("SELECT text_content FROM memory_entries WHERE memory_type = 'decision'"),
        ["use SQLite"]
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM memory_entries WHERE session_id = 'json:null'"),
        1
    );
    replay(&calls, &mut c);
    assert_eq!(db.scalar("SELECT count(*) FROM memory_entries"), 4);
}

#[test]
fn jarvis_memory_writes_mirror_exactly_once() {
    let (mut db, orch, ctx) = pg::fresh("", "");
    let mut c = orch.client(&ctx);
    let requests = [
        json!({"action": "add_memory", "user_id": "bo", "memory": "likes green tea"}),
        json!({"action": "add_memory", "user_id": "bo", "memory": {"type": "reminder", "text": "call mum"}}),
        json!({"action": "add_memory", "memory": {"note": "no user"}}),
        json!({"action": "add_memory", "user_id": "cy", "memory": "gone soon"}),
        json!({"action": "clear_memories", "user_id": "cy"}),
    ];
    let (calls, failed) = drive(Profile::JarvisMemory, "jarvis_memory", &requests, &mut c);
    assert_eq!(failed, 0, "the reminder reply is success");
    let mut texts = db.texts(
        "SELECT text_content FROM memory_entries WHERE user_id = 'bo' AND is_active ORDER BY 1",
    );
    texts.sort();
    assert_eq!(texts, ["call mum", "likes green tea"]);
    assert_eq!(
        db.scalar("SELECT count(*) FROM memory_entries WHERE user_id = 'default'"),
        1
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM memory_entries WHERE user_id = 'cy' AND is_active"),
        0
    );
    replay(&calls, &mut c);
    assert_eq!(db.scalar("SELECT count(*) FROM memory_entries"), 4);
}

/// Writes the orchestrator takes first (stage `rampdown`) answer the client with the reply
/// memshift predicts: here each prediction is checked byte for byte against what the
/// stand-in actually answers for the same write (sent as it would be replayed), in the
/// same order, so that the stand-in's state (an unknown session, a duplicate id) is the
/// one the prediction assumed.
fn predictions_match(profile: Profile, agent: &str, cases: &[(serde_json::Value, Expect)]) {
    use memshift::translate::plan;
    let legacy = StandIn::start(agent);
    let ctx = zmq::Context::new();
    let socket = req_socket(&ctx, &legacy.endpoint);
    for (req, expect) in cases {
        let body = req.to_string();
        let plan = plan(profile, body.as_bytes(), req);
        let (sent, predicted) = match (expect, &plan) {
            (Expect::Unpredictable, None) => (body.clone().into_bytes(), None),
            (Expect::Unpredictable, Some(_)) => panic!("{body}: predicted, but should not be"),
            (_, None) => panic!("{body}: no prediction"),
            (Expect::Accepted, Some(p)) => (p.replay.clone(), Some(p.accepted.clone())),
            (Expect::Refused(r), Some(p)) => (
                p.replay.clone(),
                Some(p.refusal(*r).expect("a refusal reply").to_vec()),
            ),
        };
        let actual = request(&socket, &sent);
        if let Some(predicted) = predicted {
            assert_eq!(
                String::from_utf8_lossy(&predicted),
                String::from_utf8_lossy(&actual),
                "{body}"
            );
        }
    }
}

#[derive(Clone, Copy)]
enum Expect {
    Accepted,
    Refused(memshift::translate::Refusal),
    Unpredictable,
}

#[test]
fn predicted_write_replies_are_the_legacy_agents_own() {
    use Expect::*;
    use memshift::translate::Refusal::*;
    predictions_match(
        Profile::SessionMemory,
        "session_memory",
        &[
            (
                json!({"action": "create_session", "session_id": "s1", "user_id": "ana", "request_id": "r1"}),
                Accepted,
            ),
            (
                json!({"action": "create_session", "session_id": "s1", "request_id": "r2"}),
                Refused(Duplicate),
            ),
            (
                json!({"action": "create_session", "request_id": "çà☀😀"}),
                Accepted,
            ),
            // Falsy: the agent reuses the last session id any request touched.
            (
                json!({"action": "create_session", "session_id": ""}),
                Unpredictable,
            ),
            (
                json!({"action": "create_session", "session_id": 7}),
                Unpredictable,
            ),
            (
                json!({"action": "add_interaction", "session_id": "s1", "role": "user", "content": "Guten Morgen ☀", "request_id": 5}),
                Accepted,
            ),
            (
                json!({"action": "add_interaction", "session_id": "nope", "role": "user", "content": "lost", "request_id": "r3"}),
                Refused(NoSession),
            ),
            (
                json!({"action": "add_interaction", "session_id": "s1", "role": "user"}),
                Unpredictable,
            ),
            (
                json!({"action": "clear_session", "session_id": "s1"}),
                Accepted,
            ),
            (
                json!({"action": "delete_session", "session_id": "never-was", "request_id": null}),
                Accepted,
            ),
            (json!({"action": "delete_session"}), Unpredictable),
            (
                json!({"action": "get_context", "session_id": "s1"}),
                Unpredictable,
            ),
        ],
    );
    predictions_match(
        Profile::ContextualMemory,
        "contextual_memory",
        &[
            (
                json!({"action": "add_interaction", "session_id": "c1", "type": "code", "content": "SELECT 1"}),
                Accepted,
            ),
            (
                json!({"action": "add_interaction", "type": "user_query", "content": "no session ☀"}),
                Accepted,
            ),
            (
                json!({"action": "record_decision", "session_id": "c1", "decision": {"use": "sqlite"}}),
                Accepted,
            ),
            (
                json!({"action": "record_decision", "session_id": "fresh", "decision": "x"}),
                Accepted,
            ),
            // Whatever the content, the agent saves it and answers its 'bool' reply.
            (
                json!({"action": "add_interaction", "session_id": "c1", "content": 5}),
                Accepted,
            ),
            (
                json!({"action": "add_interaction", "session_id": 5, "type": "code", "content": "x"}),
                Accepted,
            ),
        ],
    );
    predictions_match(
        Profile::JarvisMemory,
        "jarvis_memory",
        &[
            (
                json!({"action": "add_memory", "user_id": "ana", "memory": "likes tea"}),
                Accepted,
            ),
            (
                json!({"action": "add_memory", "memory": {"type": "reminder", "text": "call mum"}}),
                Accepted,
            ),
            (json!({"action": "add_memory", "user_id": "ana"}), Accepted),
            (
                json!({"action": "clear_memories", "user_id": "ana"}),
                Accepted,
            ),
            (
                json!({"action": "add_memory", "user_id": 3, "memory": "x"}),
                Accepted,
            ),
            (
                json!({"action": "add_memory", "user_id": [3], "memory": "x"}),
                Unpredictable,
            ),
        ],
    );
}
