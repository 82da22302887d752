//! The metrics endpoint counts what was sent, and /healthz tells the truth.

use crate::common;

use common::*;

#[test]
fn metrics_count_what_was_sent() {
    let session = StandIn::start("session_memory");
    let proxy = Proxy::start(
        "",
        &agent_toml("session", "session_memory", &session.endpoint, ""),
    );
    let ctx = zmq::Context::new();
    let client = req_socket(&ctx, proxy.endpoint("session"));
    let text = proxy.metrics_text();
    // Every series exists at zero before the first request.
    let create = [
        ("agent", "session"),
        ("action", "create_session"),
        ("class", "write"),
        ("outcome", "answered"),
    ];
    assert_eq!(metric(&text, "memshift_requests_total", &create), Some(0.0));

    request(
        &client,
        br#"{"action": "create_session", "session_id": "m1"}"#,
    );
    for i in 0..5 {
        let body = format!(
            r#"{{"action": "add_interaction", "session_id": "m1", "role": "user", "content": "n{i}"}}"#
        );
        request(&client, body.as_bytes());
    }
    for _ in 0..3 {
        request(&client, br#"{"action": "get_context", "session_id": "m1"}"#);
    }
    request(&client, br#"{"action": "health_check"}"#);
    request(&client, br#"{"action": "teleport"}"#);
    request(&client, b"not json");

    // The in-flight gauge is set once per turn of the forwarder's loop, after the replies
    // of the turn: wait for both.
    let text = proxy.metrics_when("all 12 requests counted and none in flight", |t| {
        metric(
            t,
            "memshift_proxy_added_seconds_count",
            &[("agent", "session")],
        ) == Some(12.0)
            && metric(t, "memshift_in_flight_requests", &[("agent", "session")]) == Some(0.0)
    });
    let count = |action: &str, class: &str| {
        let labels = [
            ("agent", "session"),
            ("action", action),
            ("class", class),
            ("outcome", "answered"),
        ];
        metric(&text, "memshift_requests_total", &labels)
    };
    assert_eq!(count("create_session", "write"), Some(1.0));
    assert_eq!(count("add_interaction", "write"), Some(5.0));
    assert_eq!(count("get_context", "read"), Some(3.0));
    assert_eq!(count("health_check", "other"), Some(1.0));
    assert_eq!(count("unknown", "other"), Some(1.0));
    assert_eq!(count("not_json", "other"), Some(1.0));
    let latency = [
        ("agent", "session"),
        ("backend", "legacy"),
        ("action", "add_interaction"),
    ];
    assert_eq!(
        metric(
            &text,
            "memshift_backend_request_duration_seconds_count",
            &latency
        ),
        Some(5.0)
    );
    assert_eq!(
        metric(
            &text,
            "memshift_proxy_added_seconds_count",
            &[("agent", "session")]
        ),
        Some(12.0)
    );
    assert_eq!(
        metric(
            &text,
            "memshift_in_flight_requests",
            &[("agent", "session")]
        ),
        Some(0.0)
    );
    assert_eq!(
        metric(&text, "memshift_legacy_connected", &[("agent", "session")]),
        Some(1.0)
    );
    assert!(
        metric(
            &text,
            "memshift_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ) == Some(1.0)
    );
    assert!(text.contains("# TYPE memshift_requests_total counter"));
}

#[test]
fn healthz_reports_each_agent() {
    let jarvis = StandIn::start("jarvis_memory");
    let proxy = Proxy::start(
        "",
        &agent_toml("jarvis", "jarvis_memory", &jarvis.endpoint, ""),
    );
    let body = wait_for("the legacy link to be up", TIMEOUT, || {
        let (status, body) = proxy.http_get("/healthz");
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        (v["agents"][0]["legacy_connected"] == true).then_some(v)
    });
    assert_eq!(body["status"], "ok");
    assert_eq!(body["agents"][0]["name"], "jarvis");
    assert_eq!(body["agents"][0]["in_flight"], 0);
    assert_eq!(proxy.http_get("/nope").0, 404);
}
