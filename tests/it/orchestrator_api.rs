//! Every action of the orchestrator's API against a real PostgreSQL with pgvector: success
//! and error paths, the envelope, idempotent repeats.

use crate::common;

use common::pg::{self, Orchestrator, TestDb};
use common::*;
use serde_json::json;

fn setup() -> (TestDb, Orchestrator, zmq::Context) {
    pg::fresh("", "")
}

#[test]
fn memories_live_through_create_read_update_delete() {
    let (mut db, orch, ctx) = setup();
    let mut c = orch.client(&ctx);
    c.ok(
        "create_session",
        None,
        json!({"user_id": "u1", "session_id": "s1",
        "session_metadata": {"session_type": "conversation", "device": "kitchen"}}),
    );
    let created = c.ok(
        "create",
        Some("s1"),
        json!({
            "memory_type": "conversation", "priority": 7, "tags": ["b", "a"],
            "content": {"text": "Grüße aus Köln 🎉", "role": "user"},
            "source_agent": "session_memory", "user_id": "u1",
        }),
    );
    let id = created["memory_id"].as_str().unwrap().to_owned();
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));

    let entry = c.ok("read", None, json!({"memory_id": id}));
    assert_eq!(entry["content"]["text"], "Grüße aus Köln 🎉");
    assert_eq!(entry["tags"], json!(["a", "b"]));
    assert_eq!(entry["priority"], 7);
    assert_eq!(entry["session_id"], "s1");
    assert_eq!(entry["user_id"], "u1");
    assert_eq!(entry["source_agent"], "session_memory");
    assert_eq!(entry["expires_at"], json!(null));
    assert_eq!(entry["memory_type"], "conversation");

    let updated = c.ok(
        "update",
        None,
        json!({"memory_id": id, "content": {"text": "new"},
        "tags": ["c"], "ttl": 3600, "priority": 2}),
    );
    assert!(updated["expires_at"].is_string());
    let entry = c.ok("read", None, json!({"memory_id": id}));
    assert_eq!(entry["content"], json!({"text": "new"}));
    assert_eq!(entry["tags"], json!(["c"]));
    assert_eq!(entry["priority"], 2);
    assert_ne!(entry["updated_at"], entry["created_at"]);

    assert_eq!(
        c.ok("delete", None, json!({"memory_id": id})),
        json!({"deleted": true})
    );
    assert_eq!(
        c.err("read", None, json!({"memory_id": id})),
        "memory_not_found"
    );
    // A retried delete is harmless; the row stays, soft-deleted.
    assert_eq!(
        c.ok("delete", None, json!({"memory_id": id})),
        json!({"deleted": true})
    );
    assert_eq!(
        db.scalar(&format!(
            "SELECT count(*) FROM memory_entries WHERE memory_id = '{id}' AND NOT is_active"
        )),
        1
    );
    // Every access was logged, without content. (Rows are written after the reply has
    // gone, so back-to-back requests may log in either order.)
    let ops = wait_for("the access log", TIMEOUT, || {
        let ops = db.texts(&format!(
            "SELECT operation FROM memory_access_logs WHERE memory_id = '{id}' ORDER BY operation"
        ));
        (ops.len() == 7).then_some(ops)
    });
    assert_eq!(
        ops,
        [
            "create", "delete", "delete", "read", "read", "read", "update"
        ]
    );
    assert_eq!(
        db.scalar(&format!(
            "SELECT count(*) FROM memory_access_logs WHERE memory_id = '{id}' AND NOT success"
        )),
        1,
        "the read after the delete failed"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM memory_access_logs WHERE request_data::text LIKE '%Köln%'"),
        0
    );
}

#[test]
fn single_memory_errors() {
    let (_db, orch, ctx) = setup();
    let mut c = orch.client(&ctx);
    for (action, payload, code) in [
        ("read", json!({"memory_id": "nope"}), "memory_not_found"),
        (
            "update",
            json!({"memory_id": "nope", "priority": 3}),
            "memory_not_found",
        ),
        ("delete", json!({"memory_id": "nope"}), "memory_not_found"),
        ("read", json!({}), "invalid_request"),
        (
            "create",
            json!({"content": {"text": "x"}}),
            "invalid_request",
        ),
        (
            "create",
            json!({"memory_type": "context"}),
            "invalid_request",
        ),
        (
            "create",
            json!({"memory_type": "dream", "content": {}}),
            "validation_error",
        ),
        (
            "create",
            json!({"memory_type": "context", "content": "text"}),
            "validation_error",
        ),
        (
            "create",
            json!({"memory_type": "context", "content": {"text": 5}}),
            "validation_error",
        ),
        (
            "create",
            json!({"memory_type": "context", "content": {}, "priority": 11}),
            "validation_error",
        ),
        (
            "create",
            json!({"memory_type": "context", "content": {}, "priority": "high"}),
            "validation_error",
        ),
        (
            "create",
            json!({"memory_type": "context", "content": {}, "ttl": -5}),
            "validation_error",
        ),
        (
            "create",
            json!({"memory_type": "context", "content": {}, "tags": [1]}),
            "validation_error",
        ),
        (
            "create",
            json!({"memory_type": "context", "content": {}, "memory_id": "x".repeat(65)}),
            "validation_error",
        ),
        (
            "create",
            json!({"memory_type": "context", "content": {}, "created_at": "yesterday"}),
            "validation_error",
        ),
        ("update", json!({"memory_id": "nope"}), "validation_error"),
    ] {
        assert_eq!(
            c.err(action, None, payload.clone()),
            code,
            "{action} {payload}"
        );
    }
    assert_eq!(
        c.err(
            "create",
            Some("no-such-session"),
            json!({"memory_type": "context", "content": {}})
        ),
        "session_not_found"
    );
}

#[test]
fn caller_chosen_ids_and_keys_make_writes_idempotent() {
    let (mut db, orch, ctx) = setup();
    let mut c = orch.client(&ctx);
    let write = json!({"memory_type": "interaction", "memory_id": "jarvis-1", "user_id": "u9",
        "content": {"text": "water the plants", "memory": {"text": "water the plants"}},
        "tags": ["reminder"], "created_at": "2025-01-02T03:04:05.123456Z"});
    let first = c.ok("create", None, write.clone());
    assert_eq!(
        first["created_at"], "2025-01-02T03:04:05.123456Z",
        "legacy time kept"
    );
    // The same write again, keys in another order: success, same answer (marked as a
    // repeat), one row.
    let reordered: serde_json::Value = serde_json::from_str(
        r#"{"tags": ["reminder"], "created_at": "2025-01-02T03:04:05.123456Z", "content": {"memory": {"text": "water the plants"}, "text": "water the plants"}, "user_id": "u9", "memory_id": "jarvis-1", "memory_type": "interaction"}"#,
    )
    .unwrap();
    let mut repeated = first.clone();
    repeated["repeated"] = json!(true);
    assert_eq!(c.ok("create", None, reordered), repeated);
    assert_eq!(
        db.scalar("SELECT count(*) FROM memory_entries WHERE memory_id = 'jarvis-1'"),
        1
    );
    // Different content under the same id: refused, not overwritten.
    let mut other = write.clone();
    other["content"]["text"] = json!("feed the cat");
    let reply = c.call("create", None, other);
    assert_eq!(reply["error"]["code"], "validation_error");
    assert_eq!(reply["error"]["details"]["reason"], "idempotency_conflict");
    assert!(
        !reply.to_string().contains("feed the cat"),
        "no content in errors: {reply}"
    );
    assert_eq!(
        c.ok("read", None, json!({"memory_id": "jarvis-1"}))["content"]["text"],
        "water the plants"
    );

    // An idempotency key without an id: the orchestrator's id, returned again on a repeat.
    let keyed =
        json!({"memory_type": "context", "idempotency_key": "mirror:42", "content": {"text": "k"}});
    let a = c.ok("create", None, keyed.clone());
    let b = c.ok("create", None, keyed.clone());
    assert_eq!(
        (&a["memory_id"], &a["created_at"]),
        (&b["memory_id"], &b["created_at"])
    );
    assert_eq!(b["repeated"], true);
    assert_eq!(
        db.scalar("SELECT count(*) FROM memory_entries WHERE idempotency_key = 'mirror:42'"),
        1
    );
    let mut changed = keyed;
    changed["priority"] = json!(9);
    assert_eq!(c.err("create", None, changed), "validation_error");

    // Sessions too.
    let s = json!({"session_id": "sess-a", "user_id": "u9", "session_metadata": {"session_type": "voice"}});
    let s1 = c.ok("create_session", None, s.clone());
    assert_eq!(c.ok("create_session", None, s), s1);
    assert_eq!(
        c.err(
            "create_session",
            None,
            json!({"session_id": "sess-a", "user_id": "someone-else"})
        ),
        "validation_error"
    );
    // `if_absent`: "make sure it exists" succeeds on the existing session, changing nothing.
    let ensured = c.ok(
        "create_session",
        None,
        json!({"session_id": "sess-a", "if_absent": true}),
    );
    assert_eq!(ensured, s1);
    assert_eq!(
        db.texts("SELECT session_type FROM sessions WHERE session_id = 'sess-a'"),
        ["voice"]
    );
}

/// The mirror and the backfill can each bring the same legacy record, with different ids
/// and slightly different times: the second copy becomes the first one's inactive twin.
/// Identical records stay distinct: each row has at most one twin, and a writer never pairs
/// with itself.
#[test]
fn copies_from_the_mirror_and_the_backfill_pair_into_one_row() {
    let (mut db, orch, ctx) = setup();
    let mut c = orch.client(&ctx);
    c.ok(
        "create_session",
        None,
        json!({"session_id": "s1", "if_absent": true}),
    );
    let create = |id: &str, origin: &str, at: &str, text: &str| {
        json!({"memory_id": id, "memory_type": "conversation", "origin": origin,
            "content": {"text": text, "role": "user"}, "created_at": at})
    };
    // The user says "yes" twice within a second; the mirror saw both, the backfill then
    // finds both in the legacy store, stamped a few milliseconds earlier.
    c.ok(
        "create",
        Some("s1"),
        create("m1", "mirror", "2026-01-01T10:00:00.010Z", "yes"),
    );
    c.ok(
        "create",
        Some("s1"),
        create("m2", "mirror", "2026-01-01T10:00:00.810Z", "yes"),
    );
    let b2 = c.ok(
        "create",
        Some("s1"),
        create("b2", "backfill", "2026-01-01T10:00:00.800Z", "yes"),
    );
    assert_eq!(b2["twin_of"], "m2", "the nearest in time: {b2}");
    let b1 = c.ok(
        "create",
        Some("s1"),
        create("b1", "backfill", "2026-01-01T10:00:00.001Z", "yes"),
    );
    assert_eq!(b1["twin_of"], "m1", "m2 is taken: {b1}");
    // A record the mirror never saw (it predates dual-write) is imported.
    let b0 = c.ok(
        "create",
        Some("s1"),
        create("b0", "backfill", "2026-01-01T09:59:59.000Z", "yes"),
    );
    assert_eq!(b0.get("twin_of"), None, "{b0}");
    // Repeating a twin's write is a repeat, still a twin.
    let again = c.ok(
        "create",
        Some("s1"),
        create("b1", "backfill", "2026-01-01T10:00:00.001Z", "yes"),
    );
    assert_eq!(
        (&again["twin_of"], &again["repeated"]),
        (&json!("m1"), &json!(true))
    );
    // The mirror delivering late pairs with the backfilled copy.
    let m3 = c.ok(
        "create",
        Some("s1"),
        create("m3", "mirror", "2026-01-01T09:59:59.004Z", "yes"),
    );
    assert_eq!(m3["twin_of"], "b0", "{m3}");
    // Outside the window, or different content: not a twin.
    let far = c.ok(
        "create",
        Some("s1"),
        create("b9", "backfill", "2026-01-01T10:00:30Z", "yes"),
    );
    assert_eq!(far.get("twin_of"), None);
    let other = c.ok(
        "create",
        Some("s1"),
        create("b8", "backfill", "2026-01-01T10:00:00.010Z", "no"),
    );
    assert_eq!(other.get("twin_of"), None);

    assert_eq!(
        db.texts(
            "SELECT memory_id FROM memory_entries WHERE is_active AND session_id = 's1'
             ORDER BY memory_id"
        ),
        ["b0", "b8", "b9", "m1", "m2"]
    );
    let page = c.ok(
        "batch_read",
        None,
        json!({"filter": {"session_id": "s1", "limit": 100}}),
    );
    assert_eq!(page["total_count"], 5, "twins are never returned");
    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM embedding_queue q JOIN memory_entries e USING (memory_id)
             WHERE NOT e.is_active"
        ),
        0,
        "twins are not embedded"
    );
    // An unknown origin, or a window without one, is refused.
    let mut bad = create("x", "import", "2026-01-01T10:00:00Z", "yes");
    assert_eq!(c.err("create", Some("s1"), bad.clone()), "validation_error");
    bad["origin"] = json!(null);
    bad["match_window"] = json!(2);
    assert_eq!(c.err("create", Some("s1"), bad), "validation_error");
}

/// `if_absent` completes a session the mirror created bare with what a backfill knows: the
/// user, metadata keys, an earlier creation time; it never overwrites what is there.
#[test]
fn ensuring_a_session_fills_in_what_it_lacks() {
    let (mut db, orch, ctx) = setup();
    let mut c = orch.client(&ctx);
    c.ok(
        "create_session",
        None,
        json!({"session_id": "s1", "if_absent": true, "created_at": "2026-01-01T10:00:00Z",
            "session_metadata": {"session_type": "conversation"}}),
    );
    let ensured = c.ok(
        "create_session",
        None,
        json!({"session_id": "s1", "if_absent": true, "user_id": "alice",
            "created_at": "2026-01-01T09:00:00Z",
            "session_metadata": {"session_type": "other", "device": "kitchen"}}),
    );
    assert_eq!(ensured["created_at"], "2026-01-01T09:00:00.000000Z");
    c.ok(
        "create_session",
        None,
        json!({"session_id": "s1", "if_absent": true, "user_id": "bob",
            "created_at": "2026-01-01T11:00:00Z", "session_metadata": {"device": "car"}}),
    );
    assert_eq!(
        db.texts(
            "SELECT concat_ws(' ', user_id, metadata::text, session_type,
                 to_char(created_at AT TIME ZONE 'UTC', 'HH24:MI'))
             FROM sessions WHERE session_id = 's1'"
        ),
        [r#"alice {"device": "kitchen", "session_type": "conversation"} conversation 09:00"#]
    );
}

#[test]
fn sessions_end_and_archive_once() {
    let (mut db, orch, ctx) = setup();
    let mut c = orch.client(&ctx);
    let created = c.ok("create_session", None, json!({"user_id": "u1"}));
    let sid = created["session_id"].as_str().unwrap().to_owned();
    assert_eq!(sid.len(), 36, "a uuid when the caller chooses none");
    assert_eq!(
        db.texts(&format!(
            "SELECT session_type FROM sessions WHERE session_id = '{sid}'"
        )),
        ["conversation"]
    );
    let ended = c.ok(
        "end_session",
        Some(&sid),
        json!({"summary": "talked about plants", "archive": true}),
    );
    assert_eq!(ended["session_id"], sid.as_str());
    assert_eq!(ended["is_archived"], true);
    let again = c.ok("end_session", Some(&sid), json!({}));
    assert_eq!(
        again["ended_at"], ended["ended_at"],
        "the first end's time stays"
    );
    assert_eq!(again["is_archived"], true);
    assert_eq!(
        db.texts(&format!(
            "SELECT summary FROM sessions WHERE session_id = '{sid}'"
        )),
        ["talked about plants"]
    );
    assert_eq!(
        c.err("end_session", Some("nope"), json!({})),
        "session_not_found"
    );
    assert_eq!(c.err("end_session", None, json!({})), "invalid_request");
    assert_eq!(
        c.err("end_session", Some(&sid), json!({"archive": "yes"})),
        "validation_error"
    );
    assert_eq!(
        c.err("create_session", None, json!({"user_id": 5})),
        "validation_error"
    );
}

#[test]
fn batch_read_pages_sorts_and_filters() {
    let (_db, orch, ctx) = setup();
    let mut c = orch.client(&ctx);
    c.ok("create_session", None, json!({"session_id": "s1"}));
    for i in 0..7 {
        c.ok(
            "create",
            Some(if i < 5 { "s1" } else { "" }),
            json!({
                "memory_type": if i % 2 == 0 { "conversation" } else { "decision" },
                "memory_id": format!("m{i}"), "priority": i + 1,
                "content": {"text": format!("entry {i}")},
                "tags": if i < 3 { json!(["early"]) } else { json!([]) },
                "created_at": format!("2026-01-0{}T00:00:00Z", i + 1),
            }),
        );
    }
    let ids = |d: &serde_json::Value| -> Vec<String> {
        d["memories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["memory_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let page = c.ok("batch_read", None, json!({"filter": {"limit": 3, "offset": 0, "sort": {"field": "created_at", "order": "asc"}}}));
    assert_eq!(ids(&page), ["m0", "m1", "m2"]);
    assert_eq!(page["total_count"], 7);
    assert_eq!(
        page["page_info"],
        json!({"limit": 3, "offset": 0, "has_more": true})
    );
    let last = c.ok("batch_read", None, json!({"filter": {"limit": 3, "offset": 6, "sort": {"field": "created_at", "order": "asc"}}}));
    assert_eq!(ids(&last), ["m6"]);
    assert_eq!(last["page_info"]["has_more"], false);
    let by_priority = c.ok(
        "batch_read",
        None,
        json!({"filter": {"limit": 2, "sort": {"field": "priority", "order": "desc"}}}),
    );
    assert_eq!(ids(&by_priority), ["m6", "m5"]);
    let decisions = c.ok("batch_read", None, json!({"filter": {"memory_type": "decision", "session_id": "s1", "sort": {"order": "asc"}}}));
    assert_eq!(ids(&decisions), ["m1", "m3"]);
    let tagged = c.ok("batch_read", None, json!({"filter": {"tags": ["early"], "time_range": {"start": "2026-01-02T00:00:00Z", "end": "2026-01-03T00:00:00Z"}, "sort": {"order": "asc"}}}));
    assert_eq!(ids(&tagged), ["m1", "m2"]);
    let by_id = c.ok(
        "batch_read",
        None,
        json!({"memory_ids": ["m4", "m0", "gone"]}),
    );
    assert_eq!(ids(&by_id), ["m4", "m0"]);
    assert_eq!(by_id["total_count"], 2);
    assert_eq!(c.err("batch_read", None, json!({})), "invalid_request");
    assert_eq!(
        c.err("batch_read", None, json!({"filter": {"limit": 0}})),
        "validation_error"
    );
    assert_eq!(
        c.err(
            "batch_read",
            None,
            json!({"filter": {"sort": {"field": "content"}}})
        ),
        "validation_error"
    );
    let reply = c.call(
        "batch_read",
        None,
        json!({"filter": {"time_range": {"start": "soon"}}}),
    );
    assert_eq!(reply["error"]["code"], "validation_error");
    assert_eq!(
        reply["error"]["details"]["field"], "payload.filter.time_range.start",
        "the error names the field by its whole path"
    );
}

#[test]
fn bulk_delete_and_summarize() {
    let (_db, orch, ctx) = setup();
    let mut c = orch.client(&ctx);
    c.ok("create_session", None, json!({"session_id": "s1"}));
    for (i, t) in ["decision", "decision", "context"].iter().enumerate() {
        c.ok("create", Some("s1"), json!({"memory_type": t, "memory_id": format!("m{i}"),
            "content": {"text": format!("note {i}")}, "created_at": format!("2026-02-0{}T00:00:00Z", i + 1)}));
    }
    let summary = c.ok("summarize", Some("s1"), json!({"memory_type": "decision"}));
    assert_eq!(summary["memory_count"], 2);
    let text = summary["summary"].as_str().unwrap();
    assert!(text.starts_with("2 memories of type decision"), "{text}");
    assert!(
        text.find("note 0").unwrap() < text.find("note 1").unwrap(),
        "chronological: {text}"
    );
    assert!(!text.contains("note 2"));
    assert_eq!(
        c.ok("summarize", Some("other"), json!({}))["memory_count"],
        0
    );

    assert_eq!(c.err("bulk_delete", None, json!({})), "invalid_request");
    assert_eq!(
        c.err("bulk_delete", None, json!({"filter": {}})),
        "validation_error"
    );
    let done = c.ok(
        "bulk_delete",
        None,
        json!({"filter": {"memory_type": "decision", "older_than": "2026-02-02T12:00:00Z"}}),
    );
    assert_eq!(done["deleted_count"], 2);
    assert_eq!(
        c.ok(
            "bulk_delete",
            None,
            json!({"filter": {"memory_type": "decision"}})
        )["deleted_count"],
        0
    );
    assert_eq!(
        c.err("read", None, json!({"memory_id": "m1"})),
        "memory_not_found"
    );
    c.ok("read", None, json!({"memory_id": "m2"}));
}

#[test]
fn health_and_unknown_action() {
    let (_db, orch, ctx) = setup();
    let mut c = orch.client(&ctx);
    let health = c.ok("health", None, json!({}));
    assert_eq!(health["status"], "ok");
    assert_eq!(health["database"], "ok");
    assert_eq!(health["embedding_backlog"], 0);
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    let reply = c.call("forget_everything", None, json!({}));
    assert_eq!(reply["error"]["code"], "invalid_request");
}

#[test]
fn dealer_clients_with_and_without_delimiter_are_answered() {
    let (_db, orch, ctx) = setup();
    let dealer = dealer_socket(&ctx, &orch.endpoint);
    let reply = dealer_request(&dealer, br#"{"action": "health", "request_id": "d1"}"#);
    let reply: serde_json::Value = serde_json::from_slice(&reply).unwrap();
    assert_eq!(reply["request_id"], "d1");
    assert_eq!(reply["status"], "success");
    // No delimiter: the reply comes back the same way, one frame.
    dealer
        .send(&br#"{"action": "health", "request_id": "d2"}"#[..], 0)
        .unwrap();
    let frames = dealer.recv_multipart(0).unwrap();
    assert_eq!(frames.len(), 1);
    let reply: serde_json::Value = serde_json::from_slice(&frames[0]).unwrap();
    assert_eq!(reply["request_id"], "d2");
}

/// (ext) A legacy agent that keeps its newest sessions: `batch_read` tells when newer
/// sessions pushed one out (`legacy_sessions_kept`), and a `create` into one is refused as
/// the agent would refuse it (`legacy_session_expiry.kept`).
#[test]
fn sessions_pushed_out_by_newer_ones_are_told_and_refused() {
    let (_db, orch, ctx) = setup();
    let mut c = orch.client(&ctx);
    let session = |c: &mut common::pg::Client, sid: &str| {
        c.ok(
            "create_session",
            None,
            json!({"session_id": sid, "session_metadata": {"session_type": "conversation"}}),
        )
    };
    session(&mut c, "oldest");
    let mut third = json!(null);
    for s in 0..3 {
        let created = session(&mut c, &format!("s-{s}"));
        third = created["created_at"].clone();
    }
    let told = |c: &mut common::pg::Client, kept: i64| {
        c.ok(
            "batch_read",
            None,
            json!({"filter": {"session_id": "oldest", "with_session": true,
                "legacy_sessions_kept": kept}}),
        )["session"]
            .clone()
    };
    assert_eq!(told(&mut c, 3)["pushed_out_at"], third);
    assert_eq!(told(&mut c, 4)["pushed_out_at"], json!(null));
    let without = c.ok(
        "batch_read",
        None,
        json!({"filter": {"session_id": "oldest", "with_session": true}}),
    );
    assert!(without["session"].get("pushed_out_at").is_none());

    let create = |kept: i64, within: f64| {
        json!({"memory_type": "conversation", "content": {"text": "late"},
            "legacy_session_expiry": {"after_seconds": 3600, "within_seconds": within,
                "kept": kept}})
    };
    assert_eq!(
        c.err("create", Some("oldest"), create(3, 0.0)),
        "session_not_found"
    );
    let reply = c.call("create", Some("oldest"), create(3, 60.0));
    assert_eq!(
        reply["error"]["details"]["reason"], "session_expiring",
        "{reply}"
    );
    c.ok("create", Some("oldest"), create(4, 0.0));
    c.ok("create", Some("s-0"), create(3, 0.0));
}
