//! The legacy agent restarting mid-traffic is survived: the proxy reconnects, counts what
//! failed, and serves again — with the agent's data intact.

mod common;

use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

fn port_of(endpoint: &str) -> &str {
    endpoint.rsplit(':').next().expect("port")
}

#[test]
fn legacy_restart_mid_traffic_is_survived() {
    let data = tempfile::TempDir::new().unwrap();
    let mut legacy = StandIn::spawn("jarvis_memory", data.path(), "tcp://127.0.0.1:*", &[]);
    let bind = format!("tcp://127.0.0.1:{}", port_of(&legacy.endpoint));
    let proxy = Proxy::start(
        "",
        &agent_toml(
            "jarvis",
            "jarvis_memory",
            &legacy.endpoint,
            "legacy_timeout = \"500ms\"",
        ),
    );
    let endpoint = proxy.endpoint("jarvis").to_owned();
    let ctx = zmq::Context::new();
    let client = req_socket(&ctx, &endpoint);
    let stored =
        br#"{"action": "add_memory", "user_id": "ana", "memory": {"text": "before the restart"}}"#;
    assert_eq!(request(&client, stored), br#"{"status": "ok"}"#);

    // Traffic that keeps going through the restart, the way real clients behave: a REQ with
    // a receive timeout, recreated after a timeout.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let traffic = {
        let (ctx, stop, answered, endpoint) = (
            ctx.clone(),
            stop.clone(),
            answered.clone(),
            endpoint.clone(),
        );
        std::thread::spawn(move || {
            let connect = || {
                let s = req_socket(&ctx, &endpoint);
                s.set_rcvtimeo(300).unwrap();
                s
            };
            let mut s = connect();
            while !stop.load(Ordering::Relaxed) {
                s.send(&br#"{"action": "get_memories", "user_id": "ana"}"#[..], 0)
                    .unwrap();
                match s.recv_bytes(0) {
                    Ok(reply) => {
                        assert!(
                            reply.starts_with(br#"{"status": "ok", "memories": ["#),
                            "{reply:?}"
                        );
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(zmq::Error::EAGAIN) => s = connect(),
                    Err(e) => panic!("client error {e}"),
                }
            }
        })
    };
    let connected = |v: f64| {
        metric(
            &proxy.metrics_text(),
            "memshift_legacy_connected",
            &[("agent", "jarvis")],
        ) == Some(v)
    };
    wait_for("traffic flowing", TIMEOUT, || {
        (answered.load(Ordering::Relaxed) > 20).then_some(())
    });

    legacy.kill();
    wait_for("the proxy to see the agent go", TIMEOUT, || {
        connected(0.0).then_some(())
    });
    let before_restart = answered.load(Ordering::Relaxed);
    let legacy = StandIn::spawn("jarvis_memory", data.path(), &bind, &[]);
    wait_for("the proxy to reconnect", TIMEOUT, || {
        connected(1.0).then_some(())
    });
    wait_for("traffic flowing again", TIMEOUT, || {
        (answered.load(Ordering::Relaxed) > before_restart + 20).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    traffic.join().expect("traffic thread");

    // Data written before the restart is served after it, through the same proxy.
    let after = request(
        &req_socket(&ctx, &endpoint),
        br#"{"action": "get_memories", "user_id": "ana"}"#,
    );
    assert!(String::from_utf8_lossy(&after).contains("before the restart"));
    let text = proxy.metrics_text();
    let events = |e| {
        metric(
            &text,
            "memshift_legacy_connection_events_total",
            &[("agent", "jarvis"), ("event", e)],
        )
    };
    assert!(events("disconnected") >= Some(1.0), "{text}");
    assert!(events("connected") >= Some(2.0), "{text}");
    drop(legacy);
}

#[test]
fn unanswered_requests_time_out_and_late_replies_are_dropped() {
    let ctx = zmq::Context::new();
    let legacy = ManualLegacy::bind(&ctx);
    let proxy = Proxy::start(
        "",
        &agent_toml(
            "session",
            "session_memory",
            &legacy.endpoint,
            "legacy_timeout = \"200ms\"",
        ),
    );
    let client = req_socket(&ctx, proxy.endpoint("session"));
    client.set_rcvtimeo(1000).unwrap();
    client
        .send(
            &br#"{"action": "get_context", "session_id": "slow"}"#[..],
            0,
        )
        .unwrap();
    legacy.recv();
    let text = wait_for("the timeout to be counted", TIMEOUT, || {
        let text = proxy.metrics_text();
        (metric(
            &text,
            "memshift_legacy_timeouts_total",
            &[("agent", "session")],
        ) == Some(1.0))
        .then_some(text)
    });
    let outcome = [
        ("action", "get_context"),
        ("class", "read"),
        ("outcome", "timeout"),
    ];
    assert_eq!(
        metric(&text, "memshift_requests_total", &outcome),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            "memshift_in_flight_requests",
            &[("agent", "session")]
        ),
        Some(0.0)
    );

    legacy.reply(b"too late");
    wait_for("the late reply to be counted", TIMEOUT, || {
        let text = proxy.metrics_text();
        (metric(
            &text,
            "memshift_legacy_late_replies_total",
            &[("agent", "session")],
        ) == Some(1.0))
        .then_some(())
    });
    assert_eq!(
        client.recv_bytes(0),
        Err(zmq::Error::EAGAIN),
        "a forgotten request gets no reply"
    );
}
