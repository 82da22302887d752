//! Many clients at once each get their own reply; a client that vanishes disturbs no one.

use crate::common;

use common::*;
use std::sync::Arc;

#[test]
fn thirty_two_interleaved_clients_never_get_each_others_replies() {
    let ctx = zmq::Context::new();
    let (legacy, _stop) = echo_legacy(&ctx);
    let proxy = Proxy::start("", &agent_toml("jarvis", "jarvis_memory", &legacy, ""));
    let endpoint = Arc::new(proxy.endpoint("jarvis").to_owned());
    let threads: Vec<_> = (0..32)
        .map(|client| {
            let ctx = ctx.clone();
            let endpoint = endpoint.clone();
            std::thread::spawn(move || {
                // Half REQ, half DEALER; DEALERs pipeline 4 requests before reading replies.
                if client % 2 == 0 {
                    let s = req_socket(&ctx, &endpoint);
                    for i in 0..200 {
                        let body = format!(r#"{{"action": "get_memories", "user_id": "c{client}-{i}"}}"#);
                        assert_eq!(request(&s, body.as_bytes()), body.as_bytes(), "client {client} #{i}");
                    }
                } else {
                    let s = dealer_socket(&ctx, &endpoint);
                    for batch in 0..50 {
                        let bodies: Vec<String> = (0..4)
                            .map(|i| format!(r#"{{"action": "add_memory", "user_id": "c{client}-{batch}-{i}"}}"#))
                            .collect();
                        for b in &bodies {
                            s.send_multipart([&b""[..], b.as_bytes()], 0).unwrap();
                        }
                        for b in &bodies {
                            let frames = s.recv_multipart(0).expect("reply");
                            assert_eq!(frames, vec![vec![], b.as_bytes().to_vec()], "client {client}");
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    let answered_in = |text: &str, action| {
        metric(
            text,
            "memshift_requests_total",
            &[
                ("agent", "jarvis"),
                ("action", action),
                ("outcome", "answered"),
            ],
        )
    };
    let text = proxy.metrics_when("every request counted", |t| {
        answered_in(t, "get_memories").unwrap_or(0.0) + answered_in(t, "add_memory").unwrap_or(0.0)
            >= 2.0 * 16.0 * 200.0
    });
    let answered = |action| answered_in(&text, action);
    assert_eq!(answered("get_memories"), Some(16.0 * 200.0));
    assert_eq!(answered("add_memory"), Some(16.0 * 200.0));
}

#[test]
fn a_client_that_disappears_does_not_disturb_others() {
    let ctx = zmq::Context::new();
    let legacy = ManualLegacy::bind(&ctx);
    let proxy = Proxy::start(
        "",
        &agent_toml("jarvis", "jarvis_memory", &legacy.endpoint, ""),
    );

    let connections = || {
        metric(
            &proxy.metrics_text(),
            "memshift_client_connections",
            &[("agent", "jarvis")],
        )
    };
    let leaver = req_socket(&ctx, proxy.endpoint("jarvis"));
    leaver
        .send(
            &br#"{"action": "get_memories", "user_id": "leaver"}"#[..],
            0,
        )
        .unwrap();
    legacy.recv();
    // Connection events reach the gauge through the watcher thread, asynchronously.
    wait_for("the proxy to see the client", TIMEOUT, || {
        (connections() == Some(1.0)).then_some(())
    });
    drop(leaver); // gone before its reply exists
    wait_for("the proxy to see the client leave", TIMEOUT, || {
        (connections() == Some(0.0)).then_some(())
    });
    legacy.reply(br#"{"status": "ok", "memories": []}"#);
    let stayer = req_socket(&ctx, proxy.endpoint("jarvis"));
    stayer
        .send(
            &br#"{"action": "get_memories", "user_id": "stayer"}"#[..],
            0,
        )
        .unwrap();
    assert_eq!(
        legacy.recv(),
        vec![br#"{"action": "get_memories", "user_id": "stayer"}"#.to_vec()]
    );
    legacy.reply(b"for the stayer");
    assert_eq!(stayer.recv_bytes(0).unwrap(), b"for the stayer");

    let undeliverable = wait_for("the lost reply to be counted", TIMEOUT, || {
        let text = proxy.metrics_text();
        metric(
            &text,
            "memshift_requests_total",
            &[("action", "get_memories"), ("outcome", "undeliverable")],
        )
        .filter(|v| *v == 1.0)
    });
    assert_eq!(undeliverable, 1.0);
}
