//! `memshift backfill` and `memshift reconcile` on stores the stand-in agents wrote (a
//! 10 000-write store per agent with the spec's quirks), against a real orchestrator on a
//! real PostgreSQL: everything imported with its legacy time, nothing twice, and a
//! reconcile that finds nothing; then differences injected on each side, found, repaired.

use crate::common;

use common::pg::{Orchestrator, TestDb};
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

struct Rig {
    db: TestDb,
    _orch: Orchestrator,
    dir: TempDir,
    config: PathBuf,
}

impl Rig {
    fn new() -> Rig {
        let db = TestDb::new();
        let orch = Orchestrator::start(&db, "", "");
        let dir = TempDir::new().unwrap();
        let mut toml = format!(
            "[database]\nurl = \"{}\"\n[mirror]\ndata_dir = \"{}\"\norchestrator = \"{}\"\n",
            db.url,
            dir.path().join("data").display(),
            orch.endpoint
        );
        // No proxy runs: the agents are named for their profile and store.
        for agent in ["session_memory", "contextual_memory", "jarvis_memory"] {
            toml.push_str(&agent_toml(agent, agent, "tcp://127.0.0.1:1", ""));
        }
        let config = dir.path().join("memshift.toml");
        std::fs::write(&config, toml).unwrap();
        Rig {
            db,
            _orch: orch,
            dir,
            config,
        }
    }

    fn memshift(&self, args: &[&str]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_memshift"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .expect("run memshift");
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        out
    }

    /// `backfill --json`: its exit status and summary.
    fn backfill(&self, agent: &str, store: &Path, extra: &[&str]) -> (i32, Value) {
        let mut args = vec!["backfill", "--agent", agent, "--from"];
        args.push(store.to_str().unwrap());
        args.push("--json");
        args.extend(extra);
        let out = self.memshift(&args);
        let summary = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        (out.status.code().unwrap(), summary)
    }

    /// `reconcile --json`: its exit status and report.
    fn reconcile(&self, agent: &str, store: &Path, extra: &[&str]) -> (i32, Value) {
        let out_dir = self.dir.path().join("reports");
        let mut args = vec!["reconcile", "--agent", agent, "--from"];
        args.push(store.to_str().unwrap());
        args.extend(["--json", "--out", out_dir.to_str().unwrap()]);
        args.extend(extra);
        let out = self.memshift(&args);
        let report = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        (out.status.code().unwrap(), report)
    }

    fn active(&mut self, source: &str) -> i64 {
        self.db.scalar(&format!(
            "SELECT count(*) FROM memory_entries WHERE source_agent = '{source}' AND is_active"
        ))
    }

    fn rows(&mut self, source: &str) -> i64 {
        self.db.scalar(&format!(
            "SELECT count(*) FROM memory_entries WHERE source_agent = '{source}'"
        ))
    }
}

/// Writes `agent`'s store under `dir` through the stand-in; returns what it holds.
fn generate(agent: &str, dir: &Path, writes: usize) -> Value {
    let out = Command::new(python())
        .arg(repo().join("tests/standins/generate_store.py"))
        .args([agent, "--data-dir", dir.to_str().unwrap()])
        .args(["--interactions", &writes.to_string()])
        .output()
        .expect("run generate_store.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn count(summary: &Value, field: &str, entity: &str) -> i64 {
    summary[field][entity].as_i64().unwrap_or(0)
}

/// The first difference of `class` a report lists.
fn first_of<'a>(report: &'a Value, class: &str) -> &'a Value {
    report["differences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["class"] == class)
        .unwrap_or_else(|| panic!("no {class} difference in {report}"))
}

fn class(report: &Value, class: &str) -> i64 {
    report["counts"][class]
        .as_object()
        .map_or(0, |m| m.values().map(|v| v.as_i64().unwrap()).sum())
}

/// Imports a store, reconciles it clean, and imports it twice more (resumed, then from
/// scratch) without a single new row.
fn imported_whole_and_once(agent: &str, memories: &[(&str, &str)]) {
    let mut rig = Rig::new();
    let store = rig.dir.path().join("legacy");
    let held = generate(agent, &store, 10_000);

    let (code, summary) = rig.backfill(agent, &store, &[]);
    assert_eq!(code, 0, "{summary}");
    for (entity, held_as) in memories {
        let n = held[held_as].as_i64().unwrap();
        assert!(n > 0, "{held}");
        assert_eq!(count(&summary, "read", entity), n, "{summary}");
        assert_eq!(count(&summary, "imported", entity), n, "{summary}");
    }
    assert_eq!(summary["skipped"], serde_json::json!({}), "{summary}");
    let rows = rig.rows(agent);
    assert_eq!(rig.active(agent), rows);

    let (code, report) = rig.reconcile(agent, &store, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["differences"], serde_json::json!([]), "{report}");
    assert_eq!(
        report["legacy_entities"], report["orchestrator_entities"],
        "{report}"
    );

    // Run again: every group is known to be done.
    let (code, again) = rig.backfill(agent, &store, &[]);
    assert_eq!(code, 0, "{again}");
    assert_eq!(again["groups_unchanged"], again["groups"], "{again}");
    assert_eq!(again["imported"], serde_json::json!({}), "{again}");
    // From scratch: every write is recognised as a repeat.
    let (code, restarted) = rig.backfill(agent, &store, &["--restart"]);
    assert_eq!(code, 0, "{restarted}");
    for (entity, held_as) in memories {
        assert_eq!(count(&restarted, "imported", entity), 0, "{restarted}");
        assert_eq!(
            count(&restarted, "already_imported", entity),
            held[held_as].as_i64().unwrap(),
            "{restarted}"
        );
    }
    assert_eq!(rig.rows(agent), rows, "no new rows");
}

#[test]
fn a_session_store_is_imported_whole_and_once() {
    imported_whole_and_once("session_memory", &[("interaction", "interactions")]);
}

#[test]
fn a_contextual_store_is_imported_whole_and_once() {
    imported_whole_and_once(
        "contextual_memory",
        &[
            ("interaction", "interactions"),
            ("decision", "decisions"),
            ("summary", "rebuilt_summaries"),
        ],
    );
}

#[test]
fn a_jarvis_store_is_imported_whole_and_once() {
    imported_whole_and_once("jarvis_memory", &[("memory", "memories")]);
}

/// A difference on each side is found and classified; `--repair` fixes them and the
/// reconcile after it finds nothing. What the legacy agent forgets on its own is drift,
/// and left alone.
#[test]
fn injected_differences_are_found_and_repaired() {
    let mut rig = Rig::new();
    let store = rig.dir.path().join("legacy");
    generate("jarvis_memory", &store, 500);
    assert_eq!(rig.backfill("jarvis_memory", &store, &[]).0, 0);

    // Legacy: one memory more, one changed. The orchestrator: one memory legacy never had.
    let file = store.join("jarvis_memory_store.json");
    let mut data: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    data["user-0001"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"timestamp": 1790000000.5, "memory": "only in legacy ✓"}));
    data["user-0002"][1]["memory"] = serde_json::json!({"text": "changed in legacy"});
    std::fs::write(&file, serde_json::to_string(&data).unwrap()).unwrap();
    rig.db.exec(
        "INSERT INTO memory_entries (memory_id, user_id, memory_type, content, source_agent,
             origin)
         VALUES ('stray-1', 'user-0003', 'interaction', '{\"memory\": \"only here\"}',
             'jarvis_memory', 'mirror')",
    );

    let (code, report) = rig.reconcile("jarvis_memory", &store, &[]);
    assert_eq!(code, 2, "{report}");
    assert_eq!(class(&report, "missing_in_orchestrator"), 1, "{report}");
    assert_eq!(class(&report, "missing_in_legacy"), 1, "{report}");
    assert_eq!(class(&report, "different"), 1, "{report}");
    let different = first_of(&report, "different");
    assert_eq!(different["key"], "user-0002");
    assert!(
        different["paths"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().starts_with("content.")),
        "{different}"
    );
    let stray = first_of(&report, "missing_in_legacy");
    assert_eq!(stray["memory_id"], "stray-1");
    assert!(
        !report.to_string().contains("only in legacy") && !report.to_string().contains("only here"),
        "no contents in reports"
    );

    let (code, repaired) = rig.reconcile("jarvis_memory", &store, &["--repair"]);
    assert_eq!(code, 0, "{repaired}");
    assert_eq!(repaired["repaired"], 4, "{repaired}");
    assert_eq!(
        repaired["differences"],
        serde_json::json!([]),
        "verified after the repair"
    );
    assert_eq!(rig.reconcile("jarvis_memory", &store, &[]).0, 0);
    assert_eq!(
        rig.db
            .scalar("SELECT count(*) FROM reconcile_runs WHERE agent = 'jarvis_memory'"),
        4,
        "every run recorded"
    );
}

/// A backfill run while the proxy mirrors live writes of the same agent: each write is in
/// the orchestrator once, whichever copy arrived first (the other is its inactive twin),
/// and a reconcile afterwards finds nothing.
#[test]
fn a_backfill_alongside_dual_write_keeps_each_write_once() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let (mut db, _orch, rig) = common::rig::fresh_rig("jarvis_memory", "");
    let ctx = zmq::Context::new();
    let write = |socket: &zmq::Socket, i: usize| {
        let body = serde_json::json!({"action": "add_memory", "user_id": format!("user-{}", i % 7),
            "memory": {"text": format!("note {i}"), "n": i}});
        request(socket, body.to_string().as_bytes());
    };
    let socket = rig.socket(&ctx);
    for i in 0..200 {
        write(&socket, i);
    }
    rig.wait_queued(200);
    // Writes go on through the proxy while the backfill reads the store and sends it.
    let stop = AtomicBool::new(false);
    let toml = common::pg::config_with_database(&rig.toml, &db);
    let store = rig.legacy.data_dir.to_str().unwrap().to_owned();
    let (backfilled, live_writes) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let socket = rig.socket(&ctx);
            let mut i = 200;
            while !stop.load(Ordering::Relaxed) {
                write(&socket, i);
                i += 1;
            }
            i - 200
        });
        let out = memshift_cli(
            &[
                "backfill",
                "--agent",
                "jarvis_memory",
                "--from",
                &store,
                "--json",
            ],
            &toml,
        );
        stop.store(true, Ordering::Relaxed);
        (out, writer.join().unwrap())
    });
    assert!(live_writes > 0, "writes went on during the backfill");
    assert_eq!(rig.drain(), 0);
    assert_eq!(backfilled.status.code(), Some(0), "{backfilled:?}");
    let summary: Value = serde_json::from_slice(&backfilled.stdout).unwrap();
    assert!(
        count(&summary, "already_mirrored", "memory") > 0,
        "the backfill met the mirror's copies: {summary}"
    );

    let total = 200 + live_writes;
    let active = db.scalar("SELECT count(*) FROM memory_entries WHERE is_active");
    assert_eq!(active, total as i64, "each write once");
    assert_eq!(
        db.scalar("SELECT count(*) FROM memory_entries WHERE NOT is_active AND twin_of IS NULL"),
        0,
        "every inactive row is a twin"
    );
    assert_eq!(
        common::rig::jarvis_store(&rig.legacy),
        common::rig::jarvis_mirrored(&mut db)
    );
    let reconciled = memshift_cli(
        &[
            "reconcile",
            "--agent",
            "jarvis_memory",
            "--from",
            &store,
            "--json",
        ],
        &toml,
    );
    assert_eq!(reconciled.status.code(), Some(0), "{reconciled:?}");
}

/// A contextual history (sessions past the cap, summaries built from interactions the
/// agent no longer keeps) backfilled under a proxy in shadow: every read of every session
/// compares equal, the agent's own summary standing in for what the orchestrator cannot
/// rebuild; and a burst of identical writes past the cap, closer together than the match
/// window, reconciles as the agent's own forgetting, not as differences.
#[test]
fn a_backfilled_contextual_history_reads_and_reconciles_like_legacy() {
    let data = TempDir::new().unwrap();
    generate("contextual_memory", data.path(), 1_000);
    let legacy = StandIn::spawn("contextual_memory", data.path(), "tcp://127.0.0.1:*", &[]);
    let mut db = TestDb::new();
    let orch = Orchestrator::start(&db, "", "");
    let rig = common::rig::Rig::start(
        "contextual_memory",
        legacy,
        &orch.endpoint,
        "stage = \"shadow\"\n",
    );
    let ctx = zmq::Context::new();
    let socket = rig.socket(&ctx);
    for _ in 0..60 {
        let body = serde_json::json!({"action": "add_interaction", "session_id": "burst",
            "type": "user_query", "content": "the same words"});
        request(&socket, body.to_string().as_bytes());
    }
    rig.wait_queued(60);
    let toml = common::pg::config_with_database(&rig.toml, &db);
    let store = data.path().to_str().unwrap();
    let backfilled = memshift_cli(
        &["backfill", "--agent", "contextual_memory", "--from", store],
        &toml,
    );
    assert_eq!(backfilled.status.code(), Some(0), "{backfilled:?}");
    assert_eq!(rig.drain(), 0);

    let reconciled = memshift_cli(
        &[
            "reconcile",
            "--agent",
            "contextual_memory",
            "--from",
            store,
            "--json",
        ],
        &toml,
    );
    let report: Value = serde_json::from_slice(&reconciled.stdout).expect("report");
    assert_eq!(reconciled.status.code(), Some(0), "{report}");
    assert_eq!(
        report["counts"]["legacy_drift"]["interaction"], 10,
        "{report}"
    );

    let sessions: Vec<String> = {
        let file: Value = serde_json::from_slice(
            &std::fs::read(data.path().join("contextual_memory_store.json")).unwrap(),
        )
        .unwrap();
        file["sessions"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    assert!(sessions.len() > 10);
    for sid in &sessions {
        let body =
            serde_json::json!({"action": "get_context", "session_id": sid, "max_tokens": 400});
        request(&socket, body.to_string().as_bytes());
    }
    let metrics = rig.proxy.metrics_when("every read compared", |m| {
        let compared = |o: &str| {
            metric_sum(
                m,
                "memshift_comparisons_total",
                &[("agent", "contextual_memory"), ("outcome", o)],
            )
        };
        compared("match") + compared("mismatch") + compared("race") >= sessions.len() as f64
    });
    let outcome = |o: &str| {
        metric_sum(
            &metrics,
            "memshift_comparisons_total",
            &[("agent", "contextual_memory"), ("outcome", o)],
        )
    };
    let mismatched =
        db.texts("SELECT key || ': ' || array_to_string(paths, ',') FROM shadow_mismatches");
    assert_eq!(outcome("mismatch"), 0.0, "{mismatched:?}");
    assert_eq!(outcome("match"), sessions.len() as f64);
}
