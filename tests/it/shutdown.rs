//! Graceful shutdown of the real binary: SIGTERM/SIGINT stop new requests, finish in-flight
//! ones within the grace period and exit 0; a second signal exits at once; nothing hangs.

use crate::common;

use common::*;
use nix::sys::signal::Signal;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

fn proxy_in_front_of(legacy: &ManualLegacy, grace: &str) -> Proxy {
    Proxy::start(
        &format!("shutdown_grace = \"{grace}\""),
        &agent_toml("jarvis", "jarvis_memory", &legacy.endpoint, ""),
    )
}

fn in_flight_request_is_answered_during_shutdown(signal: Signal) {
    let ctx = zmq::Context::new();
    let legacy = ManualLegacy::bind(&ctx);
    let mut proxy = proxy_in_front_of(&legacy, "30s");
    let client = req_socket(&ctx, proxy.endpoint("jarvis"));
    client
        .send(&br#"{"action": "get_memories", "user_id": "u"}"#[..], 0)
        .unwrap();
    legacy.recv();

    proxy.signal(signal);
    proxy.wait_for_log("draining");
    assert_eq!(
        proxy.http_get("/healthz").0,
        503,
        "a draining proxy is not ready"
    );
    // A request arriving now is not taken.
    let late = req_socket(&ctx, proxy.endpoint("jarvis"));
    late.send(&br#"{"action": "get_memories", "user_id": "late"}"#[..], 0)
        .unwrap();

    legacy.reply(br#"{"status": "ok", "memories": []}"#);
    assert_eq!(
        client.recv_bytes(0).unwrap(),
        br#"{"status": "ok", "memories": []}"#
    );
    let status = proxy.wait_exit(TIMEOUT);
    assert_eq!(
        status.code(),
        Some(0),
        "graceful shutdown exits 0; logs: {:?}",
        proxy.logs()
    );
    legacy.socket.set_rcvtimeo(300).unwrap();
    assert_eq!(
        legacy.socket.recv_bytes(0),
        Err(zmq::Error::EAGAIN),
        "the late request was not forwarded"
    );
}

#[test]
fn sigterm_lets_the_in_flight_request_finish() {
    in_flight_request_is_answered_during_shutdown(Signal::SIGTERM);
}

#[test]
fn sigint_lets_the_in_flight_request_finish() {
    in_flight_request_is_answered_during_shutdown(Signal::SIGINT);
}

#[test]
fn a_second_signal_exits_at_once() {
    let ctx = zmq::Context::new();
    let legacy = ManualLegacy::bind(&ctx);
    let mut proxy = proxy_in_front_of(&legacy, "60s");
    let client = req_socket(&ctx, proxy.endpoint("jarvis"));
    client.send(&b"{}"[..], 0).unwrap();
    legacy.recv(); // never answered

    proxy.signal(Signal::SIGTERM);
    proxy.wait_for_log("draining");
    let start = Instant::now();
    proxy.signal(Signal::SIGTERM);
    let status = proxy.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(130));
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn the_grace_period_bounds_shutdown_when_the_agent_never_answers() {
    let ctx = zmq::Context::new();
    let legacy = ManualLegacy::bind(&ctx);
    let mut proxy = proxy_in_front_of(&legacy, "300ms");
    let client = req_socket(&ctx, proxy.endpoint("jarvis"));
    client.send(&b"{}"[..], 0).unwrap();
    legacy.recv(); // never answered

    let start = Instant::now();
    proxy.signal(Signal::SIGTERM);
    let status = proxy.wait_exit(TIMEOUT);
    assert_eq!(status.code(), Some(0), "logs: {:?}", proxy.logs());
    assert!(status.signal().is_none());
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    assert!(
        proxy.logs().iter().any(|l| l.contains("left unanswered")),
        "{:?}",
        proxy.logs()
    );
}

#[test]
fn an_idle_proxy_stops_promptly_even_with_the_agent_down() {
    // The legacy endpoint has nobody behind it; clients are connected; nothing in flight.
    let ctx = zmq::Context::new();
    let nobody = ManualLegacy::bind(&ctx);
    let endpoint = nobody.endpoint.clone();
    drop(nobody);
    let mut proxy = Proxy::start("", &agent_toml("jarvis", "jarvis_memory", &endpoint, ""));
    let _client = req_socket(&ctx, proxy.endpoint("jarvis"));
    let start = Instant::now();
    proxy.signal(Signal::SIGTERM);
    assert_eq!(proxy.wait_exit(TIMEOUT).code(), Some(0));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
}
