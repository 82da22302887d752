//! The legacy agent restarting mid-traffic is survived: the proxy reconnects, counts what
//! failed, and serves again — with the agent's data intact.

use crate::common;

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

#[test]
fn a_frozen_legacy_agent_is_noticed_by_heartbeats() {
    use nix::sys::signal::{Signal, kill};
    let legacy = StandIn::start("jarvis_memory");
    let proxy = Proxy::start(
        "heartbeat_interval = \"100ms\"\nheartbeat_timeout = \"400ms\"",
        &agent_toml("jarvis", "jarvis_memory", &legacy.endpoint, ""),
    );
    let connected = |v: f64| {
        (metric(
            &proxy.metrics_text(),
            "memshift_legacy_connected",
            &[("agent", "jarvis")],
        ) == Some(v))
        .then_some(())
    };
    wait_for("the link to come up", TIMEOUT, || connected(1.0));
    // SIGSTOP: the process is alive and its TCP connection open, but it answers nothing,
    // not even ZMTP heartbeats. Only the heartbeat timeout can tell.
    let events = |event| {
        let text = proxy.metrics_text();
        let labels = [("agent", "jarvis"), ("event", event)];
        metric(&text, "memshift_legacy_connection_events_total", &labels).expect("series exists")
    };
    let connections_before = events("connected");
    let pid = nix::unistd::Pid::from_raw(legacy.pid() as i32);
    kill(pid, Signal::SIGSTOP).unwrap();
    // First the heartbeats go unanswered; then a reconnect reaches the frozen process's
    // kernel (TCP connects) but its handshake times out: a second disconnect.
    wait_for("a reconnect to the frozen agent to fail", TIMEOUT, || {
        (events("disconnected") >= 2.0).then_some(())
    });
    assert_eq!(
        events("connected"),
        connections_before,
        "a frozen agent must never count as connected"
    );
    assert_eq!(connected(0.0), Some(()));
    kill(pid, Signal::SIGCONT).unwrap();
    wait_for("the link to come back", TIMEOUT, || connected(1.0));
    let ctx = zmq::Context::new();
    let client = req_socket(&ctx, proxy.endpoint("jarvis"));
    assert_eq!(
        request(&client, br#"{"action": "get_memories"}"#),
        br#"{"status": "ok", "memories": []}"#
    );
}

#[test]
fn max_in_flight_applies_backpressure_without_losing_requests() {
    let ctx = zmq::Context::new();
    // The legacy side is a ROUTER here, so the test can see how many requests reached it
    // without answering any (a REP would only show one at a time).
    let legacy = ctx.socket(zmq::ROUTER).unwrap();
    legacy.set_linger(0).unwrap();
    legacy.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = legacy.get_last_endpoint().unwrap().unwrap();
    let proxy = Proxy::start(
        "max_in_flight = 2",
        &agent_toml("jarvis", "jarvis_memory", &endpoint, ""),
    );
    let client = dealer_socket(&ctx, proxy.endpoint("jarvis"));
    for i in 0..3 {
        let body = format!(r#"{{"action": "get_memories", "user_id": "u{i}"}}"#);
        client
            .send_multipart([&b""[..], body.as_bytes()], 0)
            .unwrap();
    }
    legacy.set_rcvtimeo(TIMEOUT.as_millis() as i32).unwrap();
    let first = legacy.recv_multipart(0).expect("first request forwarded");
    let second = legacy.recv_multipart(0).expect("second request forwarded");
    // The third waits in the proxy while two are in flight.
    legacy.set_rcvtimeo(300).unwrap();
    assert_eq!(
        legacy.recv_multipart(0),
        Err(zmq::Error::EAGAIN),
        "a third request was forwarded"
    );
    let in_flight = metric(
        &proxy.metrics_text(),
        "memshift_in_flight_requests",
        &[("agent", "jarvis")],
    );
    assert_eq!(in_flight, Some(2.0));

    // Answering one lets the third through; every client request is answered in the end.
    let answer = |request: &[Vec<u8>]| {
        let mut reply = request[..request.len() - 1].to_vec();
        reply.push(
            format!(
                "reply to {}",
                String::from_utf8_lossy(request.last().unwrap())
            )
            .into_bytes(),
        );
        legacy.send_multipart(reply, 0).unwrap();
    };
    answer(&first);
    legacy.set_rcvtimeo(TIMEOUT.as_millis() as i32).unwrap();
    let third = legacy
        .recv_multipart(0)
        .expect("third request forwarded after a reply");
    answer(&second);
    answer(&third);
    let mut replies: Vec<String> = (0..3)
        .map(|_| {
            String::from_utf8(client.recv_multipart(0).expect("reply").pop().unwrap()).unwrap()
        })
        .collect();
    replies.sort();
    for (i, reply) in replies.iter().enumerate() {
        assert!(reply.contains(&format!("\"user_id\": \"u{i}\"")), "{reply}");
    }
}
