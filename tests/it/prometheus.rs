//! The dashboards and alert rules against a real Prometheus (Debian's package): it scrapes a
//! running proxy and orchestrator under traffic, and every PromQL expression of every
//! dashboard panel, dashboard variable and alert rule must be valid and return series.
//! Also the rules' own checks: `promtool check rules`, `promtool test rules`, and the
//! dashboards' JSON matching their generator.

use crate::common;

use common::prometheus::{Prometheus, Stand};
use common::*;
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::Ordering;

fn dashboards() -> PathBuf {
    repo().join("dashboards")
}

fn run_ok(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{command:?} failed:\n{text}");
    text
}

#[test]
fn alert_rules_pass_promtool_and_the_dashboards_match_their_generator() {
    let rules = dashboards().join("prometheus");
    let checked = run_ok(
        Command::new("promtool")
            .arg("check")
            .arg("rules")
            .arg(rules.join("alerts.yml")),
    );
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = run_ok(
        Command::new("promtool")
            .arg("test")
            .arg("rules")
            .arg(rules.join("alerts.test.yml")),
    );
    assert!(tested.contains("SUCCESS"), "{tested}");
    run_ok(
        Command::new(python())
            .arg(dashboards().join("generate.py"))
            .arg("--check"),
    );
}

/// Every expression of the dashboards: panel targets, and the metric behind each
/// `label_values(metric, label)` variable. Grafana's variables become what they stand for
/// on the dashboard's "All" setting.
fn dashboard_expressions() -> Vec<(String, String)> {
    let mut found = Vec::new();
    let dir = dashboards().join("grafana");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("dashboards/grafana")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "{files:?}");
    for file in files {
        let board: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for variable in board["templating"]["list"].as_array().unwrap() {
            if let Some(definition) = variable["definition"].as_str() {
                let metric = definition
                    .strip_prefix("label_values(")
                    .and_then(|rest| rest.split(',').next())
                    .unwrap_or_else(|| panic!("{name}: unexpected variable query {definition}"));
                found.push((
                    format!("{name} variable {}", variable["name"]),
                    metric.to_owned(),
                ));
            }
        }
        for panel in board["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().expect("expr");
                let expr = expr
                    .replace("$__rate_interval", "15s")
                    .replace("$agent", ".*");
                found.push((format!("{name} panel {:?}", panel["title"]), expr));
            }
        }
    }
    found
}

/// `expr` with each comparison outside label matchers turned into its `bool` form: the
/// series an alert looks at, whether or not it fires now.
fn bool_form(expr: &str) -> String {
    let mut out = String::new();
    let (mut braces, mut quoted) = (0, false);
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        match c {
            '"' => quoted = !quoted,
            '{' if !quoted => braces += 1,
            '}' if !quoted => braces -= 1,
            '>' | '<' | '=' | '!' if !quoted && braces == 0 => {
                if chars.peek() == Some(&'=') {
                    out.push(chars.next().unwrap());
                } else if c == '=' || c == '!' {
                    continue; // not a comparison
                }
                out.push_str(" bool");
            }
            _ => {}
        }
    }
    out
}

#[test]
fn bool_form_rewrites_comparisons_only() {
    assert_eq!(
        bool_form(r#"a{x!="y",z=~"w"} > 0.1 and b >= on (k) c"#),
        r#"a{x!="y",z=~"w"} > bool 0.1 and b >= bool on (k) c"#
    );
    assert_eq!(bool_form("up == 0"), "up == bool 0");
}

#[test]
fn every_dashboard_and_alert_expression_returns_series_from_a_real_prometheus() {
    let mut stand = Stand::start();
    let prometheus = Prometheus::start(
        &[stand.proxy.metrics, stand.orchestrator.metrics],
        &[&dashboards().join("prometheus/alerts.yml")],
    );
    // An orchestrator error, so that the error panels have a series to show, and a
    // rollback (SIGUSR1), so that the panel of the reasons holding one has a series.
    let ctx = zmq::Context::new();
    let mut client = stand.orchestrator.client(&ctx);
    client.err("no_such_action", None, json!({}));
    stand.proxy.signal(Signal::SIGUSR1);
    prometheus.wait_scraped(8);
    wait_for("traffic through every agent", TIMEOUT, || {
        (stand.sent.load(Ordering::Relaxed) > 300).then_some(())
    });
    prometheus.wait_scraped(12);

    // The rules loaded, and Prometheus evaluates each without error.
    let rules = prometheus.get("/api/v1/rules", &[]).expect("rules");
    let rules: Vec<Value> = rules["data"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(rules.len(), 18, "every rule of alerts.yml loaded");
    let mut expressions = dashboard_expressions();
    for rule in &rules {
        assert_eq!(
            rule["health"], "ok",
            "rule {} evaluates: {rule}",
            rule["name"]
        );
        let query = rule["query"].as_str().expect("query");
        expressions.push((format!("alert {}", rule["name"]), bool_form(query)));
    }

    let mut failures = Vec::new();
    for (what, expr) in &expressions {
        match prometheus.query(expr) {
            Ok(series) if series.is_empty() => {
                failures.push(format!("{what}: no series for {expr}"))
            }
            Ok(_) => {}
            Err(e) => failures.push(format!("{what}: {e} for {expr}")),
        }
    }
    stand.stop_traffic();
    assert!(
        failures.is_empty(),
        "{} of {} expressions failed:\n{}",
        failures.len(),
        expressions.len(),
        failures.join("\n")
    );
}

/// `memshift report` over the same stand: a write that bypassed the proxy makes shadow
/// reads of one contextual key differ (the mismatch store), a rollback by signal comes and
/// goes, the outboxes deliver, a reconcile finds the bypassed write; the report has each of
/// them, in Markdown, HTML and JSON, without a word of the memories' contents. Without its
/// Prometheus the report is still written from the database, and says what is missing.
#[test]
fn the_daily_report_gathers_metrics_mismatch_patterns_and_reconcile_runs() {
    let mut stand = Stand::start();
    let prometheus = Prometheus::start(&[stand.proxy.metrics, stand.orchestrator.metrics], &[]);
    prometheus.wait_scraped(3);
    // Behind the proxy's back: legacy has a decision the orchestrator never saw, in a
    // session the traffic never writes (a read of a key with writes in flight is a race,
    // which a loaded machine makes of nearly every read of a busy key). A decision shows in
    // the next read at once; an interaction only in a summary, once the session has had 51.
    let ctx = zmq::Context::new();
    let contextual_store = stand.legacy[1].data_dir.clone();
    let direct = req_socket(&ctx, &stand.legacy[1].endpoint);
    let secret = "the door code is 4711";
    request(
        &direct,
        json!({"action": "record_decision", "session_id": "quiet-room", "decision": secret})
            .to_string()
            .as_bytes(),
    );
    stand.proxy.signal(Signal::SIGUSR1);
    prometheus.wait_scraped(6);
    stand.proxy.signal(Signal::SIGUSR2);
    let via = req_socket(&ctx, stand.proxy.endpoint("contextual_memory"));
    let read = json!({"action": "get_context", "session_id": "quiet-room"}).to_string();
    wait_for("a mismatch recorded", TIMEOUT, || {
        request(&via, read.as_bytes());
        (stand
            .db
            .scalar("SELECT count(*) FROM shadow_mismatches WHERE agent = 'contextual_memory'")
            > 0)
        .then_some(())
    });
    prometheus.wait_scraped(10);
    stand.stop_traffic();
    let toml = stand.toml.clone();
    let drained = memshift_cli(&["outbox", "drain", "--timeout", "30s"], &toml);
    assert!(drained.status.success(), "{drained:?}");
    let store = contextual_store.to_str().unwrap();
    let reconciled = memshift_cli(
        &["reconcile", "--agent", "contextual_memory", "--from", store],
        &toml,
    );
    assert_eq!(
        reconciled.status.code(),
        Some(2),
        "the bypassed write is found: {reconciled:?}"
    );
    prometheus.wait_scraped(14);

    let out = stand.data.path().join("reports");
    let url = prometheus.url();
    let run_report = || {
        let args = [
            "report",
            "--since",
            "10m",
            "--prometheus",
            &url,
            "--json",
            "--out",
        ];
        memshift_cli(&[&args[..], &[out.to_str().unwrap()]].concat(), &toml)
    };
    let report = run_report();
    assert!(report.status.success(), "{report:?}");
    let json: Value = serde_json::from_slice(&report.stdout).expect("report JSON");
    assert_eq!(json["unavailable"], json!([]));
    let row = |agent: &str, action: &str| {
        json["consistency"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["agent"] == agent && c["action"] == action)
            .unwrap_or_else(|| panic!("no consistency row for {agent} {action}: {json}"))
            .clone()
    };
    let contextual_reads = row("contextual_memory", "get_context");
    assert!(
        contextual_reads["outcomes"]["mismatch"].as_u64().unwrap() >= 1,
        "{contextual_reads}"
    );
    assert!(
        contextual_reads["outcomes"]["match"].as_u64().unwrap() >= 1,
        "{contextual_reads}"
    );
    assert!(
        row("session_memory", "get_context")["outcomes"]["match"]
            .as_u64()
            .unwrap()
            >= 1
    );
    let worst = &json["patterns"][0];
    assert_eq!(worst["agent"], "contextual_memory", "{json}");
    assert!(!worst["paths"].as_array().unwrap().is_empty());
    assert_eq!(
        json["mismatches_recorded"].as_u64().unwrap(),
        json["patterns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["count"].as_u64().unwrap())
            .sum::<u64>(),
        "every recorded mismatch is in one pattern"
    );
    for (agent, _) in common::prometheus::AGENTS {
        let outbox = json["outbox"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["agent"] == agent);
        let outbox = outbox.unwrap_or_else(|| panic!("no outbox row for {agent}: {json}"));
        assert!(
            outbox["deliveries"]["delivered"].as_u64().unwrap() > 0,
            "{outbox}"
        );
        let rollbacks = json["rollbacks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["agent"] == agent);
        let rollbacks = rollbacks.unwrap_or_else(|| panic!("no rollback row for {agent}: {json}"));
        assert_eq!(rollbacks["reasons"], json!(["signal"]), "{rollbacks}");
        let share = rollbacks["share_rolled_back"].as_f64().unwrap();
        assert!(
            share > 0.0 && share < 1.0,
            "rolled back for part of the period: {share}"
        );
    }
    let run = &json["reconcile"][0];
    assert_eq!(run["agent"], "contextual_memory", "{json}");
    assert_eq!(run["runs_in_period"], 1);
    assert!(
        run["counts"]["missing_in_orchestrator"].as_u64().unwrap() >= 1,
        "{run}"
    );

    let files: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("report-")
        })
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    let markdown = std::fs::read_to_string(
        files
            .iter()
            .find(|p| p.extension().unwrap() == "md")
            .unwrap(),
    )
    .unwrap();
    let html = std::fs::read_to_string(
        files
            .iter()
            .find(|p| p.extension().unwrap() == "html")
            .unwrap(),
    )
    .unwrap();
    for section in [
        "Consistency per agent and action",
        "Worst mismatch patterns",
        "Outbox health",
        "Rollbacks",
        "Last reconcile runs",
    ] {
        assert!(markdown.contains(&format!("## {section}")), "{markdown}");
        assert!(html.contains(&format!("<h2>{section}</h2>")), "{html}");
    }
    assert!(html.contains("<polyline"), "a consistency line is charted");
    for text in [
        &markdown,
        &html,
        &String::from_utf8_lossy(&report.stdout).into_owned(),
    ] {
        assert!(
            !text.contains(secret) && !text.contains("question "),
            "contents leaked"
        );
    }

    // Prometheus gone: the database's sections are still there; exit 2 says what is not.
    drop(prometheus);
    let partial = run_report();
    assert_eq!(partial.status.code(), Some(2), "{partial:?}");
    let json: Value = serde_json::from_slice(&partial.stdout).expect("report JSON");
    assert!(
        json["unavailable"][0]
            .as_str()
            .unwrap()
            .contains("Prometheus"),
        "{json}"
    );
    assert_eq!(json["consistency"], json!([]));
    assert_eq!(json["patterns"][0]["agent"], "contextual_memory");
    assert_eq!(json["reconcile"][0]["agent"], "contextual_memory");
}
