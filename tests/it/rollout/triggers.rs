//! The automatic rollback triggers (inconsistency, latency, errors): each trips on the
//! plan's figure and not below it, through a relay that alters the orchestrator's replies.

use super::*;

#[test]
fn one_read_in_a_hundred_wrong_trips_inconsistency_one_in_two_thousand_or_too_few_do_not() {
    let (_db, _orch, relay, rig) = rig_behind_relay("stage = \"shadow\"\n");
    seed(&rig);
    let load = Load::start(rig.proxy.endpoint(AGENT), 4, Duration::ZERO, None);
    // Below the threshold: 0.05 % wrong, with the minimum sample reached.
    relay.set(Fault::Corrupt { every: 2000 });
    read_for(&load, 2500);
    time_until("a decision on inconsistency", TIMEOUT, || {
        samples(&rig, "inconsistency") >= 300.0
    });
    assert_eq!(trips(&rig, "inconsistency"), 0.0);
    // Above: 1 % wrong.
    relay.set(Fault::Corrupt { every: 100 });
    fired(&rig, "inconsistency");
    let readers = load.finish();
    assert_eq!(readers, 0, "clients saw errors");

    // Resumed, the window starts afresh; 1 % wrong again, but fewer reads than the
    // minimum sample: nothing fires, however bad they look. (First the shadow side works
    // off the reads it queued while the clients outran it.)
    // Every read answered gets exactly one comparison outcome, so the backlog is gone when
    // the two counts agree.
    time_until(
        "the shadow backlog worked off",
        Duration::from_secs(30),
        || {
            let m = rig.proxy.metrics_text();
            metric_sum(&m, "memshift_comparisons_total", &[("agent", AGENT)])
                == metric_sum(&m, "memshift_served_total", &[("agent", AGENT)])
        },
    );
    rig.proxy.signal(Signal::SIGUSR2);
    resumed(&rig);
    let ctx = zmq::Context::new();
    let s = rig.socket(&ctx);
    for i in 0..200 {
        let body = json!({"action": "get_memories", "user_id": format!("u{}", i % USERS)});
        request(&s, body.to_string().as_bytes());
    }
    time_until("the 200 reads compared", TIMEOUT, || {
        let m = rig.proxy.metrics_text();
        metric_sum(&m, "memshift_comparisons_total", &[("agent", AGENT)])
            == metric_sum(&m, "memshift_served_total", &[("agent", AGENT)])
    });
    // The triggers are evaluated every second: over more than one evaluation, nothing fires.
    holds(
        "no trip below the minimum sample",
        Duration::from_millis(1500),
        || trips(&rig, "inconsistency") == 1.0 && !rolled_back(&rig),
    );
    let n = samples(&rig, "inconsistency");
    assert!(n < 300.0, "{n} samples");
    assert_eq!(trips(&rig, "inconsistency"), 1.0);
    assert!(!rolled_back(&rig));
    assert!(relay.altered.load(Ordering::Relaxed) > 0);
}

#[test]
fn an_orchestrator_150_ms_slower_trips_latency_and_50_ms_slower_does_not() {
    // Half the keys are served by the orchestrator; the other half by legacy, which gives
    // the baseline.
    let (_db, _orch, relay, rig) =
        rig_behind_relay("stage = \"live\"\nread_percent = 50\nshadow_percent = 0\n");
    seed(&rig);
    let load = Load::start(rig.proxy.endpoint(AGENT), 16, Duration::ZERO, None);
    relay.set(Fault::Delay(Duration::from_millis(50)));
    read_for(&load, 1200);
    time_until("a decision on latency", TIMEOUT, || {
        samples(&rig, "latency") >= 300.0
    });
    assert_eq!(trips(&rig, "latency"), 0.0);
    relay.set(Fault::Delay(Duration::from_millis(150)));
    fired(&rig, "latency");
    // Rolled back: every read answered by legacy again, but for those in flight at the
    // switch (one per client at most).
    let before = served(&rig, "orchestrator");
    holds(
        "only reads in flight at the switch served by the orchestrator",
        Duration::from_millis(1000),
        || served(&rig, "orchestrator") <= before + 16.0,
    );
    assert_eq!(load.finish(), 0, "clients saw errors");
}

#[test]
fn two_percent_failed_reads_trip_errors_half_a_percent_does_not() {
    let (_db, _orch, relay, rig) = rig_behind_relay("stage = \"shadow\"\n");
    seed(&rig);
    let load = Load::start(rig.proxy.endpoint(AGENT), 4, Duration::ZERO, None);
    relay.set(Fault::Fail { every: 200 });
    read_for(&load, 2500);
    time_until("a decision on errors", TIMEOUT, || {
        samples(&rig, "errors") >= 300.0
    });
    assert_eq!(trips(&rig, "errors"), 0.0);
    relay.set(Fault::Fail { every: 50 });
    fired(&rig, "errors");
    assert_eq!(load.finish(), 0, "clients saw errors");
}
