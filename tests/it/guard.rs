//! The guard keeps requests that would crash or wedge an agent away from it, and answers in
//! the agent's own error shape.

use crate::common;

use common::*;

const MULTIPART_JARVIS: &str = r#"{"status": "error", "reason": "memshift: multipart request refused (one JSON frame expected; it would crash the agent)"}"#;

#[test]
fn the_hazard_is_real_a_multipart_request_kills_the_jarvis_stand_in() {
    let mut jarvis = StandIn::start("jarvis_memory");
    let ctx = zmq::Context::new();
    let client = req_socket(&ctx, &jarvis.endpoint);
    client
        .send_multipart([&br#"{"action": "get_memories"}"#[..], b"{}"], 0)
        .unwrap();
    let status = wait_for("the stand-in to die", TIMEOUT, || jarvis.exited());
    assert!(!status.success());
}

#[test]
fn multipart_requests_never_reach_jarvis_and_get_its_error_shape() {
    let mut jarvis = StandIn::start("jarvis_memory");
    let proxy = Proxy::start(
        "",
        &agent_toml("jarvis", "jarvis_memory", &jarvis.endpoint, ""),
    );
    let ctx = zmq::Context::new();
    let client = req_socket(&ctx, proxy.endpoint("jarvis"));
    client
        .send_multipart(
            [
                &br#"{"action": "add_memory", "user_id": "u"}"#[..],
                b"second frame",
            ],
            0,
        )
        .unwrap();
    assert_eq!(
        String::from_utf8(client.recv_bytes(0).unwrap()).unwrap(),
        MULTIPART_JARVIS
    );

    // A DEALER client's multipart request too.
    let dealer = dealer_socket(&ctx, proxy.endpoint("jarvis"));
    dealer
        .send_multipart([&b""[..], b"{}", b"{}", b"{}"], 0)
        .unwrap();
    assert_eq!(
        dealer.recv_multipart(0).unwrap(),
        vec![vec![], MULTIPART_JARVIS.as_bytes().to_vec()]
    );

    // The agent never saw them: it is alive and stored nothing.
    assert!(jarvis.exited().is_none(), "jarvis must still be running");
    let reply = request(&client, br#"{"action": "get_memories", "user_id": "u"}"#);
    assert_eq!(reply, br#"{"status": "ok", "memories": []}"#);
    let text = proxy.metrics_text();
    let refused = metric(
        &text,
        "memshift_guard_rejections_total",
        &[("agent", "jarvis"), ("reason", "multipart")],
    );
    assert_eq!(refused, Some(2.0));
    let outcome = [("action", "add_memory"), ("outcome", "refused")];
    assert_eq!(
        metric(&text, "memshift_requests_total", &outcome),
        Some(1.0)
    );
}

#[test]
fn each_agent_gets_its_own_error_shape() {
    let session = StandIn::start("session_memory");
    let contextual = StandIn::start("contextual_memory");
    let agents = agent_toml("session", "session_memory", &session.endpoint, "")
        + &agent_toml("contextual", "contextual_memory", &contextual.endpoint, "");
    let proxy = Proxy::start("", &agents);
    let ctx = zmq::Context::new();
    let two_frames = [
        &br#"{"action": "get_context", "request_id": "r-7"}"#[..],
        b"{}",
    ];

    let client = req_socket(&ctx, proxy.endpoint("session"));
    client.send_multipart(two_frames, 0).unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&client.recv_bytes(0).unwrap()).unwrap();
    assert_eq!(reply["status"], "error");
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .starts_with("memshift: multipart")
    );
    assert_eq!(
        reply["request_id"], "r-7",
        "session_memory echoes request_id"
    );

    let client = req_socket(&ctx, proxy.endpoint("contextual"));
    client.send_multipart(two_frames, 0).unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&client.recv_bytes(0).unwrap()).unwrap();
    assert_eq!(
        reply.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["status", "message"]
    );
    // And the contextual agent is still there to answer.
    let reply = request(&client, br#"{"action": "get_context", "session_id": "x"}"#);
    assert_eq!(
        reply,
        br#"{"status": "error", "message": "'NoneType' object has no attribute 'get'"}"#
    );
}

#[test]
fn the_guard_is_configurable_per_agent() {
    let mut unguarded = StandIn::start("contextual_memory");
    let jarvis = StandIn::start("jarvis_memory");
    let agents = agent_toml(
        "contextual",
        "contextual_memory",
        &unguarded.endpoint,
        "[agents.guard]\nmultipart = false",
    ) + &agent_toml(
        "jarvis",
        "jarvis_memory",
        &jarvis.endpoint,
        "[agents.guard]\nnon_json = true",
    );
    let proxy = Proxy::start("", &agents);
    let ctx = zmq::Context::new();

    // non_json on: memshift answers instead of the agent.
    let client = req_socket(&ctx, proxy.endpoint("jarvis"));
    let reply = request(&client, b"not json");
    assert_eq!(reply, br#"{"status": "error", "reason": "memshift: non-JSON request refused (it would wedge the agent)"}"#);
    // Valid JSON of another shape is still the agent's to answer.
    let reply = request(&client, b"[1]");
    assert_eq!(
        reply,
        br#"{"status": "error", "reason": "'list' object has no attribute 'get'"}"#
    );

    // multipart off: the request is forwarded, and the agent dies of it as it would directly.
    let client = req_socket(&ctx, proxy.endpoint("contextual"));
    client.send_multipart([&b"{}"[..], b"{}"], 0).unwrap();
    wait_for("the unguarded agent to die", TIMEOUT, || unguarded.exited());
}
