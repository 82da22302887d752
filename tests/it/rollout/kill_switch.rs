//! Operators take reads back: editing the flags file, and every kill-switch route (the
//! flags file, the panic file, SIGUSR1, the admin endpoint), each within a second.

use super::*;

#[test]
fn editing_the_flags_file_moves_reads_within_a_second_and_a_bad_edit_changes_nothing() {
    let (_db, _orch, rig) = fresh_rig(AGENT, "stage = \"shadow\"\n[rollout]\ngates = \"warn\"\n");
    seed(&rig);
    let load = Load::start(rig.proxy.endpoint(AGENT), 2, Duration::ZERO, None);
    let generation = || value(&rig, "memshift_flags_generation", &[]);
    assert_eq!(generation(), 1.0);
    assert_eq!(served(&rig, "orchestrator"), 0.0);

    // An editor's atomic replace (write a temporary file, rename it over the old one).
    rig.set_flags("stage = \"live\"\nread_percent = 100\n");
    let took = time_until("reads served by the orchestrator", TIMEOUT, || {
        served(&rig, "orchestrator") > 0.0
    });
    assert!(took < Duration::from_secs(1), "the edit took {took:?}");
    assert_eq!(generation(), 2.0);

    // A typo: refused, counted, logged once; traffic goes on under the flags in force.
    rig.set_flags("stage = \"liv\"\nread_percent = 100\n");
    time_until("the invalid file refused", TIMEOUT, || {
        value(
            &rig,
            "memshift_flags_reload_failures_total",
            &[("reason", "invalid")],
        ) == 1.0
    });
    let still = served(&rig, "orchestrator");
    time_until("live reads going on", TIMEOUT, || {
        served(&rig, "orchestrator") > still + 20.0
    });
    assert_eq!(generation(), 2.0);
    // Polling sees the same bad file every second: it is not counted or logged again.
    let invalid = || {
        metric_sum(
            &rig.proxy.metrics_text(),
            "memshift_flags_reload_failures_total",
            &[("reason", "invalid")],
        )
    };
    holds(
        "the bad file counted once over a poll",
        Duration::from_millis(1500),
        || invalid() == 1.0,
    );
    let logged = rig
        .proxy
        .logs()
        .iter()
        .filter(|l| l.contains("flags file invalid"))
        .count();
    assert_eq!(logged, 1, "{:?}", rig.proxy.logs());

    // An edit in place (truncate and write), back to shadow: reads return to legacy.
    std::fs::write(
        rig.flags_dir().join("flags.toml"),
        format!("[agents.{AGENT}]\nstage = \"shadow\"\n"),
    )
    .unwrap();
    let took = time_until("the stage back to shadow", TIMEOUT, || {
        value(
            &rig,
            "memshift_stage",
            &[("agent", AGENT), ("stage", "shadow")],
        ) == 1.0
    });
    assert!(took < Duration::from_secs(1), "the edit took {took:?}");
    assert_eq!(generation(), 3.0);

    // SIGHUP re-reads and re-applies the same file: a new generation.
    rig.proxy.signal(Signal::SIGHUP);
    time_until("generation 4", TIMEOUT, || generation() == 4.0);
    assert_eq!(load.finish(), 0, "clients saw errors");
}

#[test]
fn every_kill_switch_route_returns_reads_to_legacy_within_a_second_and_loses_no_write() {
    let dir = tempfile::TempDir::new().unwrap();
    let token = "kill-switch-token-0123456789";
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let (mut db, _orch, rig) = fresh_rig(
        AGENT,
        &format!(
            "stage = \"live\"\nread_percent = 100\n[rollout]\nadmin_token_file = \"{}\"\n",
            token_file.display()
        ),
    );
    seed(&rig);
    let load = Load::start(
        rig.proxy.endpoint(AGENT),
        CLIENTS - 1,
        Duration::ZERO,
        Some(Duration::from_millis(5)),
    );
    let addr = rig.proxy.metrics;

    // 1. The flags file says rollback = true.
    rolls_back_within_a_second(&rig, "flags file", || {
        rig.set_flags("stage = \"live\"\nread_percent = 100\nrollback = true\n");
    });
    rig.set_flags("stage = \"live\"\nread_percent = 100\n");
    resumed(&rig);

    // 2. The panic file, by its mere presence.
    let panic = rig.flags_dir().join("memshift.panic");
    rolls_back_within_a_second(&rig, "panic file", || {
        std::fs::write(&panic, "").unwrap();
    });
    let m = rig.proxy.metrics_text();
    assert_eq!(
        metric(
            &m,
            "memshift_rollback_reason",
            &[("agent", AGENT), ("reason", "panic_file")]
        ),
        Some(1.0)
    );
    std::fs::remove_file(&panic).unwrap();
    resumed(&rig);

    // 3. SIGUSR1, latched until SIGUSR2.
    rolls_back_within_a_second(&rig, "SIGUSR1", || rig.proxy.signal(Signal::SIGUSR1));
    holds(
        "a signal rollback latched over a poll",
        Duration::from_millis(1200),
        || rolled_back(&rig),
    );
    rig.proxy.signal(Signal::SIGUSR2);
    resumed(&rig);

    // 4. The admin endpoint: no token, a wrong token, then the right one.
    assert_eq!(post(addr, "/admin/rollback", None), 401);
    assert_eq!(
        post(addr, "/admin/rollback", Some("not-the-token-at-all")),
        401
    );
    assert!(!rolled_back(&rig));
    rolls_back_within_a_second(&rig, "admin endpoint", || {
        assert_eq!(post(addr, "/admin/rollback", Some(token)), 200);
    });
    let (status, body) = rig.proxy.http_get("/flags");
    assert_eq!(status, 200);
    let flags: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(flags["agents"][0]["rollback_reasons"], json!(["admin"]));
    assert_eq!(post(addr, "/admin/resume", Some(token)), 200);
    resumed(&rig);

    // Nothing lost: every write the clients made is in both stores, in order.
    assert_eq!(load.finish(), 0, "clients saw errors");
    assert_eq!(rig.drain(), 0);
    assert_eq!(jarvis_store(&rig.legacy), jarvis_mirrored(&mut db));
    no_duplicates(&mut db);
}
