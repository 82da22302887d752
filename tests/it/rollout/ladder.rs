//! The whole ladder of stages under load, and rampdown's fallbacks to legacy.

use super::*;

#[test]
fn the_whole_ladder_to_complete_and_back_to_dualwrite_under_load_keeps_both_stores_equal() {
    // Gates enforced, as deployed. Writes before dualwrite would need a backfill, so the
    // clients only read while the agent is off.
    let (mut db, _orch, rig) = fresh_rig(AGENT, "stage = \"off\"\n");
    let endpoint = rig.proxy.endpoint(AGENT).to_owned();
    // Paced: a shadow side saturated by reads lags by up to a second, and then every
    // comparison of a key written within that second is a race, which proves nothing.
    let readers = Load::start(&endpoint, 2, Duration::from_millis(2), None);
    read_for(&readers, 300);
    assert_eq!(
        value(&rig, "memshift_outbox_pending", &[("agent", AGENT)]),
        0.0
    );

    move_to(&rig, "stage = \"dualwrite\"\n", "dualwrite");
    // Ten writes a second over 20 users: a shadow read lagging under the readers' load
    // seldom finds its user written since (a race, which proves nothing either way).
    let writer = Load::start(
        &endpoint,
        0,
        Duration::ZERO,
        Some(Duration::from_millis(100)),
    );
    rig.wait_queued(20);
    move_to(&rig, "stage = \"shadow\"\n", "shadow");

    // Too early for live: the consistency gate refuses the whole file.
    rig.set_flags("stage = \"live\"\nread_percent = 25\n");
    time_until("the early move refused", TIMEOUT, || {
        value(
            &rig,
            "memshift_flags_reload_failures_total",
            &[("reason", "gated")],
        ) == 1.0
    });
    assert!(stage_is(&rig, "shadow"));
    assert!(
        rig.proxy
            .logs()
            .iter()
            .any(|l| l.contains("refused by a gate") && l.contains("consistency"))
    );
    // Once enough reads matched, the same file goes through on SIGHUP (a refused file is
    // not retried by itself: a move must not happen hours after the operator saw it
    // refused).
    let deadline = Instant::now() + Duration::from_secs(60);
    while value(
        &rig,
        "memshift_gate_open",
        &[("agent", AGENT), ("gate", "consistency")],
    ) != 1.0
    {
        assert!(
            Instant::now() < deadline,
            "the consistency gate stayed closed: {}\n{}",
            rig.proxy.http_get("/flags").1,
            rig.proxy
                .metrics_text()
                .lines()
                .filter(|l| l.starts_with("memshift_comparisons_total") && !l.ends_with(" 0"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    rig.proxy.signal(Signal::SIGHUP);
    time_until("stage live", TIMEOUT, || stage_is(&rig, "live"));
    let served_before = served(&rig, "orchestrator");
    time_until("reads served by the orchestrator", TIMEOUT, || {
        served(&rig, "orchestrator") > served_before + 50.0
    });
    rig.set_flags("stage = \"live\"\nread_percent = 100\n");
    time_until("every read at the orchestrator", TIMEOUT, || {
        value(&rig, "memshift_read_percent", &[("agent", AGENT)]) == 100.0
    });
    read_for(&readers, 500);

    // Rampdown: the orchestrator takes every write first, and legacy gets it replayed.
    let primary = |outcome: &str| {
        value(
            &rig,
            "memshift_primary_writes_total",
            &[("agent", AGENT), ("outcome", outcome)],
        )
    };
    let replayed = || {
        value(
            &rig,
            "memshift_reverse_deliveries_total",
            &[("agent", AGENT), ("outcome", "delivered")],
        )
    };
    let for_legacy = || value(&rig, "memshift_reverse_pending", &[("agent", AGENT)]);
    move_to(&rig, "stage = \"rampdown\"\n", "rampdown");
    time_until("writes taken first and replayed", TIMEOUT, || {
        primary("applied") >= 20.0 && replayed() >= 20.0
    });
    read_for(&readers, 300);
    // A rollback in rampdown hands reads and writes back to legacy (which has every write
    // the orchestrator took, or gets it first); removing the panic file resumes.
    let panic = rig.flags_dir().join("memshift.panic");
    std::fs::write(&panic, "").unwrap();
    time_until("rolled back", TIMEOUT, || rolled_back(&rig));
    let (from_legacy, taken) = (served(&rig, "legacy"), primary("applied"));
    read_for(&readers, 300);
    assert!(served(&rig, "legacy") >= from_legacy + 250.0);
    // (A write already at the orchestrator when the rollback came may still finish.)
    assert!(
        primary("applied") <= taken + 1.0,
        "writes still taken first under a rollback"
    );
    std::fs::remove_file(&panic).unwrap();
    time_until("resumed", TIMEOUT, || !rolled_back(&rig));
    time_until("writes taken first again", TIMEOUT, || {
        primary("applied") >= taken + 10.0
    });

    // Complete: legacy is left alone while the writes go on; they are kept for it.
    move_to(&rig, "stage = \"complete\"\n", "complete");
    let untouched = jarvis_store(&rig.legacy);
    let replayed_before = replayed();
    time_until("writes kept for legacy", TIMEOUT, || for_legacy() >= 10.0);
    read_for(&readers, 300);
    assert_eq!(
        replayed(),
        replayed_before,
        "legacy was written in complete"
    );
    assert_eq!(jarvis_store(&rig.legacy), untouched);

    // A step back from complete loses nothing: legacy catches up first.
    move_to(&rig, "stage = \"rampdown\"\n", "rampdown");
    let took = time_until("legacy caught up", TIMEOUT, || for_legacy() == 0.0);
    eprintln!("legacy caught up {took:?} after leaving complete");
    move_to(&rig, "stage = \"live\"\nread_percent = 100\n", "live");
    read_for(&readers, 300);

    // And back down, never gated.
    move_to(&rig, "stage = \"shadow\"\n", "shadow");
    move_to(&rig, "stage = \"dualwrite\"\n", "dualwrite");
    read_for(&readers, 300);
    assert_eq!(writer.finish(), 0, "writes failed");
    assert_eq!(readers.finish(), 0, "reads failed");
    let m = rig.proxy.metrics_text();
    assert_eq!(
        metric_sum(
            &m,
            "memshift_comparisons_total",
            &[("agent", AGENT), ("outcome", "mismatch")]
        ),
        0.0
    );
    assert_eq!(rig.drain(), 0);
    time_until("every write replayed to legacy", TIMEOUT, || {
        for_legacy() == 0.0
    });
    eprintln!(
        "writes taken first: {} applied, {} fell back to legacy, {} unanswered",
        primary("applied"),
        primary("fallback"),
        primary("unanswered")
    );
    assert_eq!(primary("unanswered"), 0.0);
    let legacy = jarvis_store(&rig.legacy);
    assert!(legacy.values().map(Vec::len).sum::<usize>() > 50);
    assert_eq!(legacy, jarvis_mirrored(&mut db));
    no_duplicates(&mut db);
}

/// Rampdown with the orchestrator slower than the time budget for writes (it applies them,
/// too late), then gone, then back: every write is answered (by legacy while the
/// orchestrator cannot), and at the end both stores hold each write once. The slow case is
/// the ambiguous one: the orchestrator did apply the writes that fell back, and the mirror
/// repeats them with the same ids.
#[test]
fn rampdown_falls_back_to_legacy_when_the_orchestrator_is_slow_or_gone_and_creates_no_twins() {
    let mut db = common::pg::TestDb::new();
    let listen = format!("listen = \"{}\"\n", common::pg::free_endpoint());
    let orch = common::pg::Orchestrator::start(&db, &listen, "");
    let relay = Relay::start(&orch.endpoint, Fault::None);
    let rig = Rig::start(
        AGENT,
        StandIn::start(AGENT),
        &relay.endpoint,
        "stage = \"rampdown\"\n[rollout.auto]\nenabled = false\n[live]\ntimeout = \"150ms\"\n",
    );
    let primary = |outcome: &str| {
        value(
            &rig,
            "memshift_primary_writes_total",
            &[("agent", AGENT), ("outcome", outcome)],
        )
    };
    let load = Load::start(
        rig.proxy.endpoint(AGENT),
        2,
        Duration::from_millis(5),
        Some(Duration::from_millis(20)),
    );
    time_until("writes taken first", TIMEOUT, || primary("applied") >= 20.0);

    relay.set(Fault::DelayWrites(Duration::from_millis(400)));
    time_until("slow writes fall back to legacy", TIMEOUT, || {
        primary("fallback") >= 10.0
    });
    relay.set(Fault::None);

    drop(orch);
    let before = primary("fallback");
    time_until("writes fall back while it is gone", TIMEOUT, || {
        primary("fallback") >= before + 10.0
    });
    let orch = common::pg::Orchestrator::start(&db, &listen, "");
    let applied = primary("applied");
    time_until("writes taken first again", Duration::from_secs(60), || {
        primary("applied") >= applied + 20.0
    });
    assert_eq!(load.finish(), 0, "clients saw errors");
    assert_eq!(rig.drain(), 0);
    time_until("every write replayed to legacy", TIMEOUT, || {
        value(&rig, "memshift_reverse_pending", &[("agent", AGENT)]) == 0.0
    });
    eprintln!(
        "writes taken first: {} applied, {} fell back, {} behind the orchestrator's outbox, {} unanswered",
        primary("applied"),
        primary("fallback"),
        primary("orchestrator_behind"),
        primary("unanswered")
    );
    assert_eq!(primary("unanswered"), 0.0);
    let legacy = jarvis_store(&rig.legacy);
    assert_eq!(legacy, jarvis_mirrored(&mut db));
    no_duplicates(&mut db);
    drop(orch);
}
