use super::*;
use chrono::TimeZone;

fn at(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_790_000_000 + s, 250_000_000).unwrap()
}

fn stored(memory_type: &str, content: Value, s: i64) -> Stored {
    Stored {
        memory_type: memory_type.into(),
        content,
        created_at: at(s),
    }
}

fn fetch(profile: Profile, request: &Value) -> (String, Vec<Query>) {
    match prepare(profile, request) {
        Prepared::Fetch { key, queries } => (key, queries),
        other => panic!("expected a fetch, got {other:?}"),
    }
}

#[test]
fn session_context_keeps_the_newest_that_fit_and_stops_at_the_first_that_does_not() {
    let req = json!({"action": "get_context", "session_id": "s", "max_tokens": 3, "request_id": 7});
    let (key, queries) = fetch(Profile::SessionMemory, &req);
    assert_eq!(key, "s");
    assert_eq!(queries[0].filter["memory_type"], "conversation");
    assert_eq!(queries[0].filter["session_id"], "s");
    let turn = |text: &str, s| {
        stored(
            "conversation",
            json!({"text": text, "role": "user", "metadata": {}}),
            s,
        )
    };
    // Tokens: 1 ("abcd"), 2 ("12345678"), 0 ("ab"), 1 ("wxyz"), newest last.
    let data = vec![vec![
        turn("abcd", 1),
        turn("12345678", 2),
        turn("ab", 3),
        turn("wxyz", 4),
    ]];
    let reply = answer(Profile::SessionMemory, &req, &data).unwrap();
    let texts: Vec<&str> = reply["context"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["content"].as_str().unwrap())
        .collect();
    // 1 + 0 fit, 2 more would make 3 (fits), "abcd" would make 4: stop.
    assert_eq!(texts, ["12345678", "ab", "wxyz"]);
    assert_eq!(reply["status"], "success");
    assert_eq!(reply["request_id"], 7);
    assert_eq!(reply["context"][0]["role"], "user");
    assert!(
        reply["context"][0]["timestamp"]
            .as_str()
            .unwrap()
            .ends_with(".250000")
    );
}

#[test]
fn session_context_without_a_session_id_is_the_agents_error_at_once() {
    for req in [
        json!({"action": "get_context"}),
        json!({"action": "get_context", "session_id": ""}),
        json!({"action": "get_context", "session_id": null, "request_id": "r"}),
    ] {
        let rid = req.get("request_id").cloned().unwrap_or(json!(""));
        assert_eq!(
            prepare(Profile::SessionMemory, &req),
            Prepared::Immediate(
                json!({"status": "error", "message": "Missing session_id", "request_id": rid})
            )
        );
    }
    // An unhashable id: the agent's lookup raises and it answers an empty context.
    assert_eq!(
        prepare(
            Profile::SessionMemory,
            &json!({"action": "get_context", "session_id": ["s"], "request_id": "r"})
        ),
        Prepared::Immediate(json!({"status": "success", "context": [], "request_id": "r"}))
    );
    assert_eq!(
        prepare(
            Profile::SessionMemory,
            &json!({"action": "add_interaction"})
        ),
        Prepared::NotARead
    );
}

#[test]
fn jarvis_memories_are_every_memory_of_the_user_oldest_first() {
    let req = json!({"action": "get_memories"});
    let (key, queries) = fetch(Profile::JarvisMemory, &req);
    assert_eq!(key, "default");
    assert_eq!(queries[0].filter["user_id"], "default");
    let data = vec![vec![
        stored("interaction", json!({"memory": "tea", "text": "tea"}), 1),
        stored(
            "interaction",
            json!({"memory": {"type": "reminder", "text": "x"}, "text": "x"}),
            2,
        ),
    ]];
    let reply = answer(Profile::JarvisMemory, &req, &data).unwrap();
    assert_eq!(reply["status"], "ok");
    assert_eq!(reply["memories"][0]["memory"], "tea");
    assert_eq!(reply["memories"][1]["memory"]["type"], "reminder");
    assert_eq!(reply["memories"][0]["timestamp"], 1_790_000_001.25);
    let empty = answer(Profile::JarvisMemory, &req, &[vec![]]).unwrap();
    assert_eq!(empty, json!({"status": "ok", "memories": []}));
}

fn interaction(kind: &str, text: &str, s: i64) -> Stored {
    stored("context", json!({"text": text, "type": kind}), s)
}

#[test]
fn contextual_has_no_summary_until_a_decision_or_the_51st_interaction() {
    let req = json!({"action": "get_context", "session_id": "c"});
    let (key, queries) = fetch(Profile::ContextualMemory, &req);
    assert_eq!(key, "c");
    assert_eq!(queries[0].newest, Some(102));
    assert_eq!(queries[1].filter["memory_type"], "decision");
    let fifty: Vec<Stored> = (0..50).map(|i| interaction("code", "x = 1", i)).collect();
    assert_eq!(
        answer(Profile::ContextualMemory, &req, &[fifty.clone(), vec![]]).unwrap(),
        json!({"status": "error", "message": "'NoneType' object has no attribute 'get'"})
    );
    let decision = stored("decision", json!({"text": "use SQLite"}), 60);
    let reply = answer(Profile::ContextualMemory, &req, &[fifty, vec![decision]]).unwrap();
    assert_eq!(
        reply,
        json!({"key_decisions": [{"timestamp": 1_790_000_060.25, "decision": "use SQLite"}]})
    );
    // A missing session id is Python's None, another session than "null".
    assert_eq!(
        fetch(Profile::ContextualMemory, &json!({"action": "get_context"})).0,
        "json:null"
    );
}

#[test]
fn contextual_summary_is_rebuilt_from_the_newest_51_as_the_agent_does() {
    let mut items: Vec<Stored> = Vec::new();
    items.push(interaction(
        "user_query",
        "the oldest query, outside the window",
        0,
    ));
    for i in 1..=48 {
        items.push(interaction("system_response", "fine", i));
    }
    items.push(interaction("code", "SELECT * FROM t -- sqlite", 49));
    items.push(interaction("error", "Traceback: ValueError exception", 50));
    items.push(interaction("error", "a warning, not counted", 51));
    items.push(interaction("user_query", &"q".repeat(120), 52));
    // The answer gets the newest 51, oldest first.
    let window: Vec<Stored> = items[items.len() - 51..].to_vec();
    let req = json!({"action": "get_context", "session_id": "c"});
    let reply = answer(Profile::ContextualMemory, &req, &[window.clone(), vec![]]).unwrap();
    let keys: Vec<&String> = reply.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "last_updated",
            "code_context",
            "conversation_summary",
            "errors_encountered",
            "key_decisions"
        ]
    );
    assert_eq!(reply["last_updated"], 1_790_000_052.25);
    assert_eq!(
        reply["conversation_summary"],
        format!(
            "Conversation Summary:\nTotal queries: 1\nTotal responses: 47\n\nRecent Queries:\n- {}...\n",
            "q".repeat(100)
        )
    );
    assert_eq!(
        reply["errors_encountered"],
        json!(["Traceback: ValueError exception"])
    );
    assert_eq!(reply["key_decisions"], json!([]));
    // A small max_tokens cuts the texts to (max_tokens // 2) * 4 characters and "...".
    let small = json!({"action": "get_context", "session_id": "c", "max_tokens": 5});
    let cut = answer(Profile::ContextualMemory, &small, &[window, vec![]]).unwrap();
    assert_eq!(cut["conversation_summary"], "Conversa...");
    assert_eq!(cut["code_context"], "Code Sum...");
}

/// A backfilled session: the agent's own summary was built from interactions the
/// orchestrator never had. It is the answer until an interaction newer than it arrives.
#[test]
fn contextual_answers_the_imported_summary_until_the_next_add_rebuilds_it() {
    let req = json!({"action": "get_context", "session_id": "c", "max_tokens": 5});
    let (_, queries) = fetch(Profile::ContextualMemory, &req);
    assert_eq!(queries[2].filter["memory_type"], "summary");
    assert_eq!(queries[2].newest, Some(1));
    // The 50 interactions the agent kept, and the summary it built when the 51st came.
    let kept: Vec<Stored> = (0..50)
        .map(|i| interaction("user_query", "hi", i))
        .collect();
    let imported = stored(
        "summary",
        json!({"last_updated": 1_790_000_050.5, "conversation_summary": "Conversation Summary:\nTotal queries: 51\n",
            "errors_encountered": []}),
        50,
    );
    let decision = stored("decision", json!({"text": "use SQLite"}), 55);
    let data = [kept.clone(), vec![decision.clone()], vec![imported.clone()]];
    let reply = answer(Profile::ContextualMemory, &req, &data).unwrap();
    assert_eq!(
        reply,
        json!({"last_updated": 1_790_000_050.5, "conversation_summary": "Conversa...",
            "errors_encountered": [],
            "key_decisions": [{"timestamp": 1_790_000_055.25, "decision": "use SQLite"}]})
    );
    // An add after the import: the newest 51 are all in the orchestrator; rebuilt.
    let mut newer = kept;
    newer.push(interaction("user_query", "hi", 60));
    let data = [newer, vec![decision], vec![imported]];
    let reply = answer(Profile::ContextualMemory, &req, &data).unwrap();
    assert_eq!(reply["last_updated"], 1_790_000_060.25);
    assert_eq!(reply["conversation_summary"], "Conversa...");
}

#[test]
fn code_summaries_match_the_agents_text() {
    // Expected texts printed by the stand-in's own code_summary.
    assert_eq!(
        contextual::code_summary(&[
            "SELECT * FROM t -- sqlite",
            "def handler():\n    return flask.route(\"/api\")",
            "x = 1"
        ]),
        "Code Summary:\nTotal snippets: 3\nTotal lines: 6\n\nDETECTED DOMAINS: database operations, web functionality\n"
    );
    assert_eq!(
        contextual::code_summary(&["x = 1"]),
        "Code Summary:\nTotal snippets: 1\nTotal lines: 1\n\nNo specific domains detected\n"
    );
    assert_eq!(
        contextual::code_summary(&["spawn a Thread for the web server\nline2"]),
        "Code Summary:\nTotal snippets: 1\nTotal lines: 2\n\nWeb Functionality:\n- HTTP endpoints and web routes present\n\nConcurrency Features:\n- Threading and async operations present\n\nDETECTED DOMAINS: web functionality, concurrency features\n"
    );
}

#[test]
fn what_raises_in_the_session_agents_loop_is_an_empty_context() {
    let turn = |text: Value, s| {
        stored(
            "conversation",
            json!({"text": text, "role": "user", "metadata": {}}),
            s,
        )
    };
    let empty = json!({"status": "success", "context": [], "request_id": ""});
    let req = json!({"action": "get_context", "session_id": "s"});
    // A content that is not a string, reached by the loop (newest first).
    let odd = vec![vec![turn(json!(42), 1), turn(json!("fine"), 2)]];
    assert_eq!(
        answer(Profile::SessionMemory, &req, &odd),
        Ok(empty.clone())
    );
    // Not reached: the loop stopped at the newest, which does not fit.
    let small = json!({"action": "get_context", "session_id": "s", "max_tokens": 0});
    let unreached = vec![vec![turn(json!(42), 1), turn(json!("12345678"), 2)]];
    assert_eq!(
        answer(Profile::SessionMemory, &small, &unreached).unwrap()["context"],
        json!([])
    );
    let ok = vec![vec![turn(json!("abcd"), 1)]];
    for (max_tokens, fits) in [
        (json!("ten"), false),
        (json!(null), false),
        (json!([1]), false),
        (json!(1.5), true),
        (json!(true), true),
        (json!(false), false),
    ] {
        let req = json!({"action": "get_context", "session_id": "s", "max_tokens": max_tokens});
        let reply = answer(Profile::SessionMemory, &req, &ok).unwrap();
        assert_eq!(
            reply["context"].as_array().unwrap().len(),
            usize::from(fits),
            "max_tokens {max_tokens}"
        );
    }
}

fn window_of(kinds: &[(&str, Value)]) -> Vec<Stored> {
    // Fill up to 51 with plain responses, oldest first; `kinds` are the newest.
    let mut items: Vec<Stored> = (0..51 - kinds.len() as i64)
        .map(|i| interaction("system_response", "fine", i))
        .collect();
    for (i, (kind, text)) in kinds.iter().enumerate() {
        items.push(stored(
            "context",
            json!({"text": text, "type": kind}),
            100 + i as i64,
        ));
    }
    items
}

#[test]
fn contextual_summaries_of_contents_that_are_not_strings_fail_as_the_agent_fails() {
    let req = json!({"action": "get_context", "session_id": "c"});
    let ask = |data: Vec<Stored>| answer(Profile::ContextualMemory, &req, &[data, vec![]]);
    // A query that cannot be sliced: the conversation summary is the agent's fixed text.
    for odd in [json!(5), json!({"q": 1}), json!(null), json!(true)] {
        let reply = ask(window_of(&[("user_query", odd.clone())])).unwrap();
        assert_eq!(
            reply["conversation_summary"], "Error summarizing conversation",
            "{odd}"
        );
    }
    // A list slices, and prints as Python's str().
    let reply = ask(window_of(&[("user_query", json!(["a", 1, null]))])).unwrap();
    assert_eq!(
        reply["conversation_summary"],
        "Conversation Summary:\nTotal queries: 1\nTotal responses: 50\n\nRecent Queries:\n- ['a', 1, None]...\n"
    );
    // A list Python would print with text outside ASCII: not reproduced, declined.
    assert_eq!(
        ask(window_of(&[("user_query", json!(["é"]))])),
        Err(Unsupported::OddContent)
    );
    // An error content that is not a string empties the whole list.
    let reply = ask(window_of(&[
        ("error", json!("an error")),
        ("error", json!(7)),
    ]))
    .unwrap();
    assert_eq!(reply["errors_encountered"], json!([]));
    let reply = ask(window_of(&[("error", json!("an error"))])).unwrap();
    assert_eq!(reply["errors_encountered"], json!(["an error"]));
}

#[test]
fn a_code_content_that_is_not_a_string_keeps_the_previous_summary() {
    let req = json!({"action": "get_context", "session_id": "c"});
    // 51 adds built a summary; the 52nd is code that is not a string: every rebuild while
    // it is among the newest 51 raises, and the agent keeps the first one.
    let mut items = window_of(&[("code", json!("x = 1\n"))]);
    items.push(stored("context", json!({"text": 12, "type": "code"}), 200));
    let reply = answer(Profile::ContextualMemory, &req, &[items.clone(), vec![]]).unwrap();
    assert_eq!(reply["last_updated"], 1_790_000_100.25);
    assert!(
        reply["code_context"]
            .as_str()
            .unwrap()
            .starts_with("Code Summary:\nTotal snippets: 1\nTotal lines: 1\n")
    );
    // Fewer than 51 before it: no summary has ever been built.
    let young: Vec<Stored> = vec![stored("context", json!({"text": 12, "type": "code"}), 1)];
    let mut young_window = window_of(&[]);
    young_window.truncate(50);
    young_window.extend(young);
    assert_eq!(
        answer(Profile::ContextualMemory, &req, &[young_window, vec![]]).unwrap(),
        json!({"status": "error", "message": "'NoneType' object has no attribute 'get'"})
    );
    // All of a full fetch raises: the summary that holds is older than what was fetched.
    let stuck: Vec<Stored> = (0..102)
        .map(|i| stored("context", json!({"text": 12, "type": "code"}), i))
        .collect();
    assert_eq!(
        answer(Profile::ContextualMemory, &req, &[stuck, vec![]]),
        Err(Unsupported::TooLarge)
    );
}

#[test]
fn contextual_max_tokens_of_every_type() {
    let items = window_of(&[("user_query", json!("q".repeat(50)))]);
    let decisions = vec![stored("decision", json!({"text": "d"}), 300)];
    let ask = |max_tokens: Value, data: &[Vec<Stored>]| {
        let req = json!({"action": "get_context", "session_id": "c", "max_tokens": max_tokens});
        answer(Profile::ContextualMemory, &req, data).unwrap()
    };
    let data = [items.clone(), decisions.clone()];
    let full = ask(json!(null), &data);
    assert!(
        !full["conversation_summary"]
            .as_str()
            .unwrap()
            .ends_with("...")
    );
    assert_eq!(ask(json!(2.5), &data), full, "a float cuts nothing");
    assert_eq!(ask(json!(true), &data)["conversation_summary"], "...");
    assert_eq!(ask(json!(3), &data)["conversation_summary"], "Conv...");
    assert_eq!(
        ask(json!(-3), &data)["conversation_summary"],
        json!(format!(
            "{}...",
            &full["conversation_summary"].as_str().unwrap()
                [..full["conversation_summary"].as_str().unwrap().len() - 8]
        ))
    );
    // Not a number: the agent's error where there is a text to cut, else the summary.
    let error = json!({"status": "error", "message": "'NoneType' object has no attribute 'get'"});
    assert_eq!(ask(json!("ten"), &data), error);
    // An integer below i64::MIN is a float to serde_json: Python's int and float differ.
    let req = json!({"action": "get_context", "session_id": "c", "max_tokens": -1e20});
    assert_eq!(
        answer(Profile::ContextualMemory, &req, &data),
        Err(Unsupported::OddParameter)
    );
    let decisions_only = [vec![], decisions];
    let summary = ask(json!([1]), &decisions_only);
    assert_eq!(summary["key_decisions"][0]["decision"], "d");
}

#[test]
fn total_lines_are_pythons_splitlines() {
    // Expected counts are len(s.splitlines()) in CPython 3.11.
    for (text, lines) in [
        ("", 0),
        ("a", 1),
        ("a\n", 1),
        ("a\n\n", 2),
        ("a\r\nb", 2),
        ("a\rb\r", 2),
        ("a\x0bb\x0cc", 3),
        ("a\x1cb\x1dc\x1ed", 4),
        ("a\u{85}b", 2),
        ("a\u{2028}b\u{2029}", 2),
        ("\n", 1),
        ("\r\n\r\n", 2),
    ] {
        assert_eq!(contextual::splitlines(text), lines, "{text:?}");
    }
    // A snippet ending in a newline is not a line longer.
    assert!(contextual::code_summary(&["def f():\n    pass\n"]).contains("Total lines: 2\n"));
}

#[test]
fn jarvis_memories_keep_their_key_order() {
    let req = json!({"action": "get_memories", "user_id": "u"});
    let memory: Value = serde_json::from_str(r#"{"text": "t", "type": "note", "n": 1}"#).unwrap();
    let data = vec![vec![stored(
        "interaction",
        json!({"text": "t", "memory": memory}),
        1,
    )]];
    let reply = answer(Profile::JarvisMemory, &req, &data).unwrap();
    assert_eq!(
        crate::pyjson::dumps(&reply),
        r#"{"status": "ok", "memories": [{"timestamp": 1790000001.25, "memory": {"text": "t", "type": "note", "n": 1}}]}"#
    );
}

#[test]
fn ids_of_every_json_type_are_keyed_as_the_agent_keys_them() {
    let key = |profile, id: Option<Value>| {
        let mut req = json!({"action": if profile == Profile::JarvisMemory { "get_memories" } else { "get_context" }});
        let field = if profile == Profile::JarvisMemory {
            "user_id"
        } else {
            "session_id"
        };
        if let Some(id) = id {
            req[field] = id;
        }
        match prepare(profile, &req) {
            Prepared::Fetch { key, .. } => Some(key),
            _ => None,
        }
    };
    let c = Profile::ContextualMemory;
    assert_eq!(key(c, None).as_deref(), Some("json:null"));
    assert_eq!(key(c, Some(json!(null))).as_deref(), Some("json:null"));
    assert_eq!(key(c, Some(json!("null"))).as_deref(), Some("null"));
    assert_eq!(key(c, Some(json!(5))).as_deref(), Some("json:5"));
    assert_eq!(key(c, Some(json!(5.0))).as_deref(), Some("json:5"));
    assert_eq!(key(c, Some(json!("5"))).as_deref(), Some("5"));
    assert_eq!(key(c, Some(json!(true))).as_deref(), Some("json:1"));
    assert_eq!(
        key(c, Some(json!("json:x"))).as_deref(),
        Some("json:\"json:x\"")
    );
    assert_eq!(key(c, Some(json!(["x"]))), None);
    let j = Profile::JarvisMemory;
    assert_eq!(key(j, None).as_deref(), Some("default"));
    assert_eq!(key(j, Some(json!(null))).as_deref(), Some("json:null"));
    assert_eq!(key(j, Some(json!(1.5))).as_deref(), Some("json:1.5"));
}

#[test]
fn a_live_answer_forgets_a_session_as_the_agent_does() {
    let req = json!({"action": "get_context", "session_id": "s", "request_id": "r"});
    let (_, queries) = fetch(Profile::SessionMemory, &req);
    assert!(
        queries[0].with_session,
        "the session's creation is asked for"
    );
    let data = vec![vec![stored(
        "conversation",
        json!({"text": "hi", "role": "user", "metadata": {}}),
        1,
    )]];
    let hour = std::time::Duration::from_secs(3600);
    let created = at(0);
    let offset = i64::from(
        chrono::Local
            .offset_from_utc_datetime(&created.naive_utc())
            .local_minus_utc(),
    );
    let when = |s: i64| created + chrono::Duration::seconds(s + offset);
    let ask_pushed = |pushed_out, now| {
        let session = SessionFacts {
            created,
            pushed_out,
        };
        answer_forgetting(
            Profile::SessionMemory,
            &req,
            &data,
            Some(session),
            hour,
            now,
        )
    };
    let ask = |now| ask_pushed(None, now);
    let empty = json!({"status": "success", "context": [], "request_id": "r"});
    assert_eq!(ask(when(3599)).unwrap()["context"][0]["content"], "hi");
    assert_eq!(ask(when(3630)), Err(Unsupported::Forgetting));
    assert_eq!(ask(when(3661)).unwrap(), empty);
    // Pushed out of the 100 it keeps at 600 s: gone by the next cleanup.
    let pushed = Some(when(600));
    assert_eq!(
        ask_pushed(pushed, when(599)).unwrap()["context"][0]["content"],
        "hi"
    );
    assert_eq!(ask_pushed(pushed, when(630)), Err(Unsupported::Forgetting));
    assert_eq!(ask_pushed(pushed, when(661)).unwrap(), empty);
    // No session row (never created, or deleted): nothing to forget by time.
    assert_eq!(
        answer_forgetting(
            Profile::SessionMemory,
            &req,
            &data,
            None,
            hour,
            when(99_999)
        )
        .unwrap()["context"][0]["content"],
        "hi"
    );
}

/// The cuts recorded since the summary was built, in order, then the request's own: the
/// agent's summary after the same reads. Cuts from before the build are gone with it.
#[test]
fn contextual_cuts_since_the_build_are_applied_in_order() {
    let mut window: Vec<Stored> = (0..50)
        .map(|i| interaction("system_response", "ok", i))
        .collect();
    window.push(interaction("user_query", &"q".repeat(120), 50));
    let whole = answer(
        Profile::ContextualMemory,
        &json!({"action": "get_context", "session_id": "c"}),
        &[window.clone()],
    )
    .unwrap()["conversation_summary"]
        .as_str()
        .unwrap()
        .to_owned();
    let cut = |n: i64, s| stored("agent_state", CutState { max_tokens: n }.content(), s);
    let read = |max_tokens: Value, cuts: Vec<Stored>| {
        let req = json!({"action": "get_context", "session_id": "c", "max_tokens": max_tokens});
        answer(
            Profile::ContextualMemory,
            &req,
            &[window.clone(), vec![], vec![], cuts],
        )
        .map(|r| r["conversation_summary"].as_str().unwrap().to_owned())
    };
    let prefix = |n: usize| whole.chars().take(n).collect::<String>();
    // Before the build (at 50): forgotten. After it: kept, in order (20 chars, then 8).
    assert_eq!(read(json!(2000), vec![cut(5, 49)]), Ok(whole.clone()));
    assert_eq!(
        read(json!(2000), vec![cut(10, 51)]),
        Ok(format!("{}...", prefix(20)))
    );
    assert_eq!(
        read(json!(2000), vec![cut(10, 51), cut(4, 52)]),
        Ok(format!("{}...", prefix(8)))
    );
    // Order matters: a negative limit cuts from the end of what is left.
    assert_eq!(
        read(json!(2000), vec![cut(10, 51), cut(-3, 52)]),
        Ok(format!("{}...", prefix(15)))
    );
    assert_eq!(
        read(json!(2000), vec![cut(-3, 51), cut(10, 52)]),
        Ok(format!("{}...", prefix(20)))
    );
    assert_eq!(
        read(json!(11), vec![cut(10, 51)]),
        Ok(format!("{}...", prefix(20))),
        "the request's own cut comes last: 23 characters are longer than 22"
    );
    assert_eq!(
        read(json!(11), vec![cut(10, 51)]).map(|t| t.chars().count()),
        Ok(23)
    );
    // A negative limit cuts from the end, again each time.
    assert_eq!(
        read(json!(2000), vec![cut(-3, 51), cut(-3, 52)]).map(|t| t.chars().count()),
        Ok(whole.chars().count() - 8 + 3 - 8 + 3)
    );
    // As many cuts as are fetched, all since the build: older ones may be missing.
    let many: Vec<Stored> = (0..100).map(|i| cut(10, 51 + i)).collect();
    assert_eq!(read(json!(2000), many), Err(Unsupported::TooLarge));
}

/// A read cut the agent's summary exactly when a text in its reply is longer than the
/// limit (the cut leaves the limit plus "..."); errors and floats cut nothing.
#[test]
fn the_cut_a_read_made_is_read_off_its_reply() {
    let req = |m: Value| {
        json!({"action": "get_context", "session_id": "c", "max_tokens": m})
            .as_object()
            .unwrap()
            .clone()
    };
    let reply = |text: &str| json!({"last_updated": 1.0, "conversation_summary": text, "errors_encountered": [], "key_decisions": []});
    let made = |m: Value, r: Value| CutState::made_by(&req(m), &r);
    assert_eq!(
        made(json!(10), reply(&format!("{}...", "a".repeat(20)))),
        Some(CutState { max_tokens: 10 })
    );
    assert_eq!(made(json!(10), reply(&"a".repeat(20))), None);
    assert_eq!(
        made(json!(null), reply(&"a".repeat(4003))),
        Some(CutState { max_tokens: 2000 })
    );
    assert_eq!(
        made(json!(true), reply("...")),
        Some(CutState { max_tokens: 1 })
    );
    assert_eq!(made(json!(10.0), reply(&"a".repeat(50))), None);
    assert_eq!(made(json!("10"), reply(&"a".repeat(50))), None);
    assert_eq!(
        made(json!(-1), reply("x")),
        Some(CutState { max_tokens: -1 })
    );
    assert!(!CutState { max_tokens: -1 }.idempotent());
    assert!(CutState { max_tokens: 0 }.idempotent());
    let error = json!({"status": "error", "message": "'NoneType' object has no attribute 'get'"});
    assert_eq!(made(json!(0), error), None);
    let decisions_only =
        json!({"key_decisions": [{"timestamp": 1.0, "decision": "a long decision"}]});
    assert_eq!(made(json!(0), decisions_only), None);
}
