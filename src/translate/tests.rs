use super::*;

fn verdict(profile: Profile, request: &str, reply: &str) -> Verdict {
    translate(profile, request.as_bytes(), reply.as_bytes())
}

fn ops(v: Verdict) -> (String, Vec<MirrorOp>) {
    match v {
        Verdict::Mirror(m) => (m.key, m.ops),
        other => panic!("expected a mirror, got {other:?}"),
    }
}

#[test]
fn each_agent_success_signal_and_failures_are_recognised() {
    use Profile::*;
    let table: &[(Profile, &str, &str, bool)] = &[
        // session_memory: "success", with the agent's quirks.
        (
            SessionMemory,
            r#"{"action": "create_session", "user_id": "u"}"#,
            r#"{"status": "success", "session_id": "abc", "request_id": ""}"#,
            true,
        ),
        (
            SessionMemory,
            r#"{"action": "create_session", "session_id": "dup"}"#,
            r#"{"status": "error", "session_id": null, "request_id": ""}"#,
            false,
        ),
        (
            SessionMemory,
            r#"{"action": "add_interaction", "session_id": "s", "role": "user", "content": "hi"}"#,
            r#"{"status": "success", "request_id": ""}"#,
            true,
        ),
        (
            SessionMemory,
            r#"{"action": "add_interaction", "session_id": "s"}"#,
            r#"{"status": "error", "message": "Missing required parameters", "request_id": ""}"#,
            false,
        ),
        (
            SessionMemory,
            r#"{"action": "add_interaction", "session_id": "gone", "role": "user", "content": "hi"}"#,
            r#"{"status": "error", "request_id": ""}"#,
            false,
        ),
        (
            SessionMemory,
            r#"{"action": "clear_session", "session_id": "s"}"#,
            r#"{"status": "success", "request_id": ""}"#,
            true,
        ),
        (
            SessionMemory,
            r#"{"action": "delete_session", "session_id": "s"}"#,
            r#"{"status": "success", "request_id": ""}"#,
            true,
        ),
        (
            SessionMemory,
            r#"{"action": "delete_session"}"#,
            r#"{"status": "error", "message": "Missing session_id", "request_id": ""}"#,
            false,
        ),
        // contextual_memory: the 'bool' error *is* success; a real error is not.
        (
            ContextualMemory,
            r#"{"action": "add_interaction", "session_id": "c", "type": "code", "content": "x = 1"}"#,
            r#"{"status": "error", "message": "'bool' object has no attribute 'get'"}"#,
            true,
        ),
        (
            ContextualMemory,
            r#"{"action": "record_decision", "session_id": "c", "decision": "use SQLite"}"#,
            r#"{"status": "error", "message": "'bool' object has no attribute 'get'"}"#,
            true,
        ),
        (
            ContextualMemory,
            r#"{"action": "add_interaction", "session_id": "c"}"#,
            r#"{"status": "error", "message": "'NoneType' object has no attribute 'get'"}"#,
            false,
        ),
        (
            ContextualMemory,
            r#"{"action": "add_interaction", "session_id": "c"}"#,
            r#"{"status": "ok"}"#,
            false,
        ),
        // jarvis_memory: "ok", and the reminder error after a saved reminder.
        (
            JarvisMemory,
            r#"{"action": "add_memory", "user_id": "u", "memory": "tea"}"#,
            r#"{"status": "ok"}"#,
            true,
        ),
        (
            JarvisMemory,
            r#"{"action": "add_memory", "user_id": "u", "memory": {"type": "reminder", "text": "call mum"}}"#,
            r#"{"status": "error", "reason": "send_proactive_event() got an unexpected keyword argument 'text'"}"#,
            true,
        ),
        (
            JarvisMemory,
            r#"{"action": "add_memory", "user_id": "u", "memory": "tea"}"#,
            r#"{"status": "error", "reason": "send_proactive_event() got an unexpected keyword argument 'text'"}"#,
            false,
        ),
        (
            JarvisMemory,
            r#"{"action": "clear_memories", "user_id": "u"}"#,
            r#"{"status": "ok"}"#,
            true,
        ),
        (
            JarvisMemory,
            r#"{"action": "add_memory"}"#,
            "not json at all",
            false,
        ),
    ];
    for (profile, request, reply, success) in table {
        let v = verdict(*profile, request, reply);
        match (success, &v) {
            (true, Verdict::Mirror(_)) | (false, Verdict::Failed(_)) => {}
            _ => panic!("{profile:?} {request} -> {reply}: {v:?}"),
        }
    }
}

#[test]
fn reads_and_other_requests_are_not_writes() {
    for (profile, request) in [
        (
            Profile::SessionMemory,
            r#"{"action": "get_context", "session_id": "s"}"#,
        ),
        (Profile::SessionMemory, r#"{"action": "health_check"}"#),
        (
            Profile::ContextualMemory,
            r#"{"action": "get_context", "session_id": "s"}"#,
        ),
        (
            Profile::JarvisMemory,
            r#"{"action": "get_memories", "user_id": "u"}"#,
        ),
        (Profile::JarvisMemory, r#"{"action": "teleport"}"#),
        (Profile::JarvisMemory, "[1, 2]"),
        (Profile::JarvisMemory, "not json"),
    ] {
        assert_eq!(
            verdict(profile, request, r#"{"status": "ok"}"#),
            Verdict::NotAWrite,
            "{request}"
        );
    }
}

#[test]
fn session_writes_map_to_sessions_and_conversation_memories() {
    let (key, o) = ops(verdict(
        Profile::SessionMemory,
        r#"{"action": "create_session", "metadata": {"device": "kitchen"}}"#,
        r#"{"status": "success", "session_id": "agent-chose-this", "request_id": ""}"#,
    ));
    assert_eq!(key, "agent-chose-this", "the agent's uuid is carried over");
    assert_eq!(
        o,
        [MirrorOp::EnsureSession {
            session_id: "agent-chose-this".into(),
            user_id: Some("default".into()),
            metadata: json!({"device": "kitchen"}),
            session_type: "conversation".into(),
            exclusive: false,
        }]
    );
    let (key, o) = ops(verdict(
        Profile::SessionMemory,
        r#"{"action": "add_interaction", "session_id": "s1", "role": "user", "content": "Grüße 🎉"}"#,
        r#"{"status": "success", "request_id": ""}"#,
    ));
    assert_eq!(key, "s1");
    assert!(matches!(&o[0], MirrorOp::EnsureSession { session_id, .. } if session_id == "s1"));
    let call = o[1].to_call("e1/0", at());
    assert_eq!(call.action, Action::Create);
    assert_eq!(call.session_id.as_deref(), Some("s1"));
    assert_eq!(call.payload["memory_type"], "conversation");
    assert_eq!(
        call.payload["content"],
        json!({"text": "Grüße 🎉", "role": "user", "metadata": {}})
    );
    assert_eq!(call.payload["source_agent"], "session_memory");
    let (_, o) = ops(verdict(
        Profile::SessionMemory,
        r#"{"action": "delete_session", "session_id": "s1"}"#,
        r#"{"status": "success", "request_id": ""}"#,
    ));
    assert_eq!(o[0].to_call("x", at()).action, Action::BulkDelete);
    assert_eq!(
        o[0].to_call("x", at()).payload["filter"],
        json!({"memory_type": "conversation", "session_id": "s1"})
    );
    assert_eq!(o[1].to_call("x", at()).action, Action::EndSession);
}

#[test]
fn contextual_and_jarvis_writes_keep_their_quirks() {
    let (key, o) = ops(verdict(
        Profile::ContextualMemory,
        r#"{"action": "add_interaction", "type": "user_query", "content": "why?"}"#,
        r#"{"status": "error", "message": "'bool' object has no attribute 'get'"}"#,
    ));
    assert_eq!(
        key, "json:null",
        "a missing session id is the agent's None session, not the string \"null\""
    );
    assert_eq!(
        o[1].to_call("e", at()).payload["content"],
        json!({"text": "why?", "type": "user_query"})
    );
    let (_, o) = ops(verdict(
        Profile::ContextualMemory,
        r#"{"action": "record_decision", "session_id": "c", "decision": "use SQLite"}"#,
        r#"{"status": "error", "message": "'bool' object has no attribute 'get'"}"#,
    ));
    let call = o[1].to_call("e", at());
    assert_eq!(call.payload["memory_type"], "decision");
    assert_eq!(call.payload["content"], json!({"text": "use SQLite"}));
    // The agent keeps metadata only when it is truthy.
    for (metadata, kept) in [
        ("{}", false),
        ("\"\"", false),
        ("0", false),
        ("{\"a\": 1}", true),
    ] {
        let (_, o) = ops(verdict(
            Profile::ContextualMemory,
            &format!(
                r#"{{"action": "add_interaction", "session_id": "c", "type": "code", "content": "x", "metadata": {metadata}}}"#
            ),
            r#"{"status": "error", "message": "'bool' object has no attribute 'get'"}"#,
        ));
        let content = &o[1].to_call("e", at()).payload["content"];
        assert_eq!(content.get("metadata").is_some(), kept, "{metadata}");
    }
    // A decision for a list id: the agent's usual reply, and nothing recorded.
    assert_eq!(
        verdict(
            Profile::ContextualMemory,
            r#"{"action": "record_decision", "session_id": ["c"], "decision": "d"}"#,
            r#"{"status": "error", "message": "'bool' object has no attribute 'get'"}"#,
        ),
        Verdict::Failed("not_recorded")
    );
    // jarvis keeps a null or number user under that value.
    let (user, _) = ops(verdict(
        Profile::JarvisMemory,
        r#"{"action": "add_memory", "user_id": null, "memory": "m"}"#,
        r#"{"status": "ok"}"#,
    ));
    assert_eq!(user, "json:null");

    let (key, o) = ops(verdict(
        Profile::JarvisMemory,
        r#"{"action": "add_memory", "memory": {"type": "reminder", "text": "call mum"}}"#,
        r#"{"status": "error", "reason": "send_proactive_event() got an unexpected keyword argument 'text'"}"#,
    ));
    assert_eq!(key, "default");
    let call = o[0].to_call("e", at());
    assert_eq!(call.payload["user_id"], "default");
    assert_eq!(
        call.payload["content"],
        json!({"text": "call mum", "memory": {"type": "reminder", "text": "call mum"}})
    );
    let (_, o) = ops(verdict(
        Profile::JarvisMemory,
        r#"{"action": "add_memory", "user_id": "u", "memory": [1, 2]}"#,
        r#"{"status": "ok"}"#,
    ));
    assert_eq!(
        o[0].to_call("e", at()).payload["content"],
        json!({"memory": [1, 2]}),
        "no text, kept as sent"
    );
}

#[test]
fn memory_ids_are_stable_per_op_id_and_distinct_across_ops() {
    let (_, o) = ops(verdict(
        Profile::JarvisMemory,
        r#"{"action": "add_memory", "user_id": "u", "memory": "tea"}"#,
        r#"{"status": "ok"}"#,
    ));
    let id = |op_id: &str| {
        o[0].to_call(op_id, at()).payload["memory_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        id("epoch-1/u/7/0"),
        id("epoch-1/u/7/0"),
        "a retry sends the same id"
    );
    assert_ne!(id("epoch-1/u/7/0"), id("epoch-1/u/8/0"));
    assert_eq!(id("epoch-1/u/7/0").len(), 36);
}

#[test]
fn keys_come_from_the_request_alone() {
    assert_eq!(
        key(
            Profile::SessionMemory,
            br#"{"action": "get_context", "session_id": "s"}"#
        )
        .as_deref(),
        Some("s")
    );
    assert_eq!(
        key(Profile::SessionMemory, br#"{"action": "create_session"}"#),
        None
    );
    assert_eq!(
        key(Profile::ContextualMemory, br#"{"action": "get_context"}"#).as_deref(),
        Some("json:null")
    );
    assert_eq!(
        key(
            Profile::ContextualMemory,
            br#"{"action": "get_context", "session_id": 5}"#
        )
        .as_deref(),
        Some("json:5")
    );
    assert_eq!(
        key(Profile::JarvisMemory, br#"{"action": "get_memories"}"#).as_deref(),
        Some("default")
    );
    assert_eq!(key(Profile::JarvisMemory, b"nope"), None);
}

fn at() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_micros(1_790_000_000_123_456).unwrap()
}

#[test]
fn created_memories_carry_the_time_the_legacy_agent_accepted_them() {
    let (_, o) = ops(verdict(
        Profile::JarvisMemory,
        r#"{"action": "add_memory", "memory": "tea"}"#,
        r#"{"status": "ok"}"#,
    ));
    assert_eq!(
        o[0].to_call("e", at()).payload["created_at"],
        "2026-09-21T14:13:20.123456Z"
    );
}

#[test]
fn typed_keys_are_written_to_the_store_file_as_python_writes_dict_keys() {
    for (id, key, file) in [
        (json!("s"), "s", "s"),
        (json!("null"), "null", "null"),
        (json!(null), "json:null", "null"),
        (json!(5), "json:5", "5"),
        (json!(1.5), "json:1.5", "1.5"),
        (json!("json:x"), "json:\"json:x\"", "json:x"),
    ] {
        let k = id_key(&id).unwrap();
        assert_eq!(k, key, "{id}");
        assert_eq!(file_key(&k), file, "{id}");
    }
    assert_eq!(id_key(&json!({"a": 1})), None);
}
