//! Clients cannot tell the proxy from the agent: the same requests get the same bytes.
//!
//! Two stand-ins with deterministic clocks and uuids get the same script, one directly and
//! one through `memshift proxy`; every reply must be byte-identical. The script covers every
//! action of the agent, its error replies, invalid JSON and non-ASCII text.

use crate::common;

use common::*;
use serde_json::json;

fn session_script() -> Vec<Vec<u8>> {
    let big = "x".repeat(5000);
    let script: Vec<serde_json::Value> = vec![
        json!({"action": "create_session", "user_id": "u1", "request_id": "r1"}),
        json!({"action": "create_session", "session_id": "s1", "user_id": "u1", "metadata": {"lang": "fr", "nom": "Zoë"}}),
        json!({"action": "create_session", "session_id": "s1", "request_id": "dup"}),
        json!({"action": "add_interaction", "session_id": "s1", "role": "user", "content": "hello", "request_id": "a1"}),
        json!({"action": "add_interaction", "session_id": "s1", "role": "assistant", "content": "日本語 🎉 ü — “quotes”", "metadata": {"k": [1, 2.5]}}),
        json!({"action": "add_interaction", "session_id": "s1", "role": "user", "content": big}),
        json!({"action": "add_interaction", "session_id": "s1", "role": "user"}),
        json!({"action": "add_interaction", "session_id": "nope", "role": "user", "content": "x"}),
        json!({"action": "get_context", "session_id": "s1"}),
        json!({"action": "get_context", "session_id": "s1", "max_tokens": 10}),
        json!({"action": "get_context", "session_id": "s1", "max_tokens": 0}),
        json!({"action": "get_context", "request_id": "no-sid"}),
        json!({"action": "get_context", "session_id": "unknown"}),
        json!({"action": "clear_session", "session_id": "s1"}),
        json!({"action": "get_context", "session_id": "s1"}),
        json!({"action": "clear_session"}),
        json!({"action": "delete_session", "session_id": "s1"}),
        json!({"action": "delete_session", "session_id": "never-existed"}),
        json!({"action": "delete_session"}),
        json!({"action": "health_check"}),
        json!({"action": "launch_rockets", "request_id": "r9"}),
        json!({"session_id": "s1"}),
    ];
    with_malformed(script)
}

fn contextual_script() -> Vec<Vec<u8>> {
    let mut script = vec![
        json!({"action": "get_context", "session_id": "c1"}),
        json!({"action": "record_decision", "session_id": "c1", "decision": "use PostgreSQL — décidé"}),
        json!({"action": "get_context", "session_id": "c1"}),
        json!({"action": "add_interaction", "type": "user_query", "content": "no session id"}),
        json!({"action": "health_check"}),
        json!({"action": "unknown_thing"}),
    ];
    // 53 interactions: the summary is rebuilt on the 51st and every one after.
    let kinds = ["code", "user_query", "system_response", "error"];
    for i in 0..53 {
        let content = format!(
            "step {i}: SELECT * FROM t; http thread Exception ✓ {}",
            "ab".repeat(i)
        );
        script.push(json!({"action": "add_interaction", "session_id": "c2", "type": kinds[i % 4], "content": content, "metadata": {"i": i}}));
    }
    script.push(json!({"action": "record_decision", "session_id": "c2", "decision": "ship it"}));
    script.push(json!({"action": "get_context", "session_id": "c2", "max_tokens": 30}));
    script.push(json!({"action": "get_context", "session_id": "c2"}));
    script.push(json!({"action": "health_check"}));
    with_malformed(script)
}

fn jarvis_script() -> Vec<Vec<u8>> {
    let script = vec![
        json!({"action": "get_memories", "user_id": "nobody"}),
        json!({"action": "add_memory", "user_id": "ana", "memory": {"text": "likes jazz 🎷", "tags": ["music"]}}),
        json!({"action": "add_memory", "user_id": "ana", "memory": "plain string memory"}),
        json!({"action": "add_memory", "user_id": "ana", "memory": {"type": "reminder", "text": "call mum", "at": "18:00"}}),
        json!({"action": "add_memory", "user_id": "ana"}),
        json!({"action": "add_memory", "memory": [1, 2, {"nested": 3.25}]}),
        json!({"action": "get_memories", "user_id": "ana"}),
        json!({"action": "get_memories"}),
        json!({"action": "clear_memories", "user_id": "ana"}),
        json!({"action": "get_memories", "user_id": "ana"}),
        json!({"action": "clear_memories", "user_id": "ghost"}),
        json!({"action": "nope"}),
    ];
    with_malformed(script)
}

/// The script's requests as bytes, followed by the malformed ones.
fn with_malformed(script: Vec<serde_json::Value>) -> Vec<Vec<u8>> {
    let mut raw: Vec<Vec<u8>> = script.iter().map(|v| v.to_string().into_bytes()).collect();
    raw.extend(malformed());
    raw
}

/// Requests every agent answers with an error of its own, which clients may depend on.
fn malformed() -> Vec<Vec<u8>> {
    vec![
        b"not json".to_vec(),
        b"{\"action\": ".to_vec(),
        b"".to_vec(),
        b"\xff\xfe garbage".to_vec(),
        b"[1, 2]".to_vec(),
        b"\"get_memories\"".to_vec(),
        // Raw UTF-8 in the request, not escaped.
        "{\"action\": \"add_interaction\", \"content\": \"ça va? 🙂\"}"
            .as_bytes()
            .to_vec(),
    ]
}

fn assert_identical_through_proxy(agent: &str, script: Vec<Vec<u8>>) {
    let direct = StandIn::start_frozen(agent);
    let behind = StandIn::start_frozen(agent);
    let proxy = Proxy::start("", &agent_toml(agent, agent, &behind.endpoint, ""));
    let ctx = zmq::Context::new();
    let direct_client = req_socket(&ctx, &direct.endpoint);
    let proxied_req = req_socket(&ctx, proxy.endpoint(agent));
    let proxied_dealer = dealer_socket(&ctx, proxy.endpoint(agent));
    for (i, body) in script.iter().enumerate() {
        let expected = request(&direct_client, body);
        // Alternate REQ and DEALER clients: both must see the agent's bytes.
        let got = if i % 2 == 0 {
            request(&proxied_req, body)
        } else {
            dealer_request(&proxied_dealer, body)
        };
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&expected),
            "{agent}: request #{i} {:?}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(got, expected, "{agent}: request #{i}: bytes differ");
    }
}

#[test]
fn session_memory_replies_are_byte_identical() {
    assert_identical_through_proxy("session_memory", session_script());
}

#[test]
fn contextual_memory_replies_are_byte_identical() {
    assert_identical_through_proxy("contextual_memory", contextual_script());
}

#[test]
fn jarvis_memory_replies_are_byte_identical() {
    assert_identical_through_proxy("jarvis_memory", jarvis_script());
}

#[test]
fn arbitrary_bytes_pass_untouched_both_ways() {
    let ctx = zmq::Context::new();
    let legacy = ManualLegacy::bind(&ctx);
    let proxy = Proxy::start(
        "",
        &agent_toml("jarvis", "jarvis_memory", &legacy.endpoint, ""),
    );
    let client = req_socket(&ctx, proxy.endpoint("jarvis"));

    let odd_request = b"\x00\xff{\"action\": \"get_memories\"}\r\n\xc3\x28".to_vec();
    client.send(&odd_request, 0).unwrap();
    assert_eq!(
        legacy.recv(),
        vec![odd_request],
        "the agent gets the client's bytes"
    );
    let odd_reply = b"\xfe\x00 not json, not UTF-8 \xe2\x82".to_vec();
    legacy.reply(&odd_reply);
    assert_eq!(client.recv_bytes(0).unwrap(), odd_reply);

    // A large reply and a multipart reply are relayed as they are.
    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    client.send(&b"{}"[..], 0).unwrap();
    legacy.recv();
    legacy.reply(&big);
    assert_eq!(client.recv_bytes(0).unwrap(), big);
    client.send(&b"{}"[..], 0).unwrap();
    legacy.recv();
    legacy
        .socket
        .send_multipart([&b"part1"[..], b"", b"part3"], 0)
        .unwrap();
    assert_eq!(
        client.recv_multipart(0).unwrap(),
        vec![b"part1".to_vec(), vec![], b"part3".to_vec()]
    );
}
