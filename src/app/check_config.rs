//! `memshift check-config`: validates the configuration and the flags file and prints what
//! would run.

use crate::config::{Config, EmbeddingProvider};
use std::path::Path;
use std::process::ExitCode;

/// Prints every agent and setting that would be used; exit 64 when the flags file is
/// invalid.
pub fn execute(path: &Path, config: &Config) -> ExitCode {
    match flags_file(config) {
        Ok(flags) => {
            print!("{}{flags}", describe(path, config));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("memshift: {e:#}");
            ExitCode::from(super::EXIT_USAGE)
        }
    }
}

/// What `check-config` prints: every agent and setting that would be used.
fn describe(path: &Path, config: &Config) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let p = &config.proxy;
    let _ = writeln!(out, "configuration {} is valid", path.display());
    let _ = writeln!(out, "metrics: http://{}/metrics", config.metrics.listen);
    let _ = writeln!(
        out,
        "log: level {:?}, format {:?}",
        config.log.level, config.log.format
    );
    let _ = writeln!(
        out,
        "proxy: shutdown_grace {:?}, max_in_flight {}, linger {:?}, heartbeat {:?}/{:?}",
        p.shutdown_grace, p.max_in_flight, p.linger, p.heartbeat_interval, p.heartbeat_timeout
    );
    for a in &config.agents {
        let _ = writeln!(
            out,
            "agent {} ({}): {} -> {}, legacy_timeout {:?}, guard multipart={} non_json={}",
            a.name,
            a.profile.name(),
            a.listen,
            a.legacy,
            a.legacy_timeout,
            a.guard.multipart,
            a.guard.non_json
        );
    }
    let m = &config.mirror;
    let _ = writeln!(
        out,
        "mirror: to {}, outboxes in {}, timeout {:?}, max_in_flight {}, queue {}, max_pending {}, max_attempts {}, max_age {:?}, backoff {:?}..{:?}, durability {:?}, nice {}",
        m.orchestrator,
        m.data_dir.display(),
        m.timeout,
        m.max_in_flight,
        m.queue,
        m.max_pending,
        m.max_attempts,
        m.max_age,
        m.backoff_base,
        m.backoff_max,
        m.durability,
        m.nice
    );
    let (o, d, e) = (&config.orchestrator, &config.database, &config.embedding);
    let database = match d.resolve_url() {
        Ok(url) => url.to_string(),
        Err(why) => why,
    };
    let _ = writeln!(
        out,
        "orchestrator: {} (metrics http://{}/metrics), max_concurrent {}, max_queued {}, deadline {:?}, max_request_bytes {}, access_log {}, migrate_on_start {}",
        o.listen,
        o.metrics_listen,
        o.max_concurrent,
        o.max_queued,
        o.request_deadline,
        o.max_request_bytes,
        o.access_log,
        o.migrate_on_start
    );
    let _ = writeln!(
        out,
        "database: {database}, max_connections {}, acquire_timeout {:?}, statement_timeout {:?}",
        d.max_connections, d.acquire_timeout, d.statement_timeout
    );
    let provider = match &e.provider {
        EmbeddingProvider::Local => "local (built in, lexical)".to_owned(),
        EmbeddingProvider::OpenAi { url, api_key_env } => format!(
            "openai-compatible {url}/v1/embeddings, key from {}",
            api_key_env.as_deref().unwrap_or("(none)")
        ),
    };
    let _ = writeln!(
        out,
        "embedding: {provider}, model {}, dimension {}, batch {}",
        e.model, e.dimension, e.batch_size
    );
    out
}

/// The flags file, validated, described for `check-config`; empty without one.
pub(super) fn flags_file(config: &Config) -> anyhow::Result<String> {
    use std::fmt::Write;
    let r = &config.rollout;
    let Some(path) = &r.flags else {
        return Ok("flags: no flags file ([rollout] flags): every agent stays off\n".to_owned());
    };
    let file = crate::rollout::load_file(path)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "flags: {} (poll {:?}, panic file {}), rollback {}",
        path.display(),
        r.poll_interval,
        r.panic_path()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        file.rollback
    );
    for a in &config.agents {
        let f = file.agent(&a.name);
        let _ = writeln!(
            out,
            "  {}: stage {}, mirror {}, shadow {}, read {}{}",
            a.name,
            f.stage,
            f.mirror_percent,
            f.shadow_percent,
            f.read_percent,
            if f.rollback { ", rolled back" } else { "" }
        );
    }
    let auto = &r.auto;
    let _ = writeln!(
        out,
        "rollout: gates {:?} (min comparisons {}, outbox age {:?}); auto-rollback {} (window {:?}..{:?}, min samples {}, inconsistency {}, latency {:?}, errors {}, confidence {}, hold {})",
        r.gates,
        r.gate_min_comparisons,
        r.gate_max_outbox_age,
        if auto.enabled { "on" } else { "off" },
        auto.window,
        auto.max_window,
        auto.min_samples,
        auto.max_inconsistency,
        auto.max_added_latency,
        auto.max_error_rate,
        auto.confidence,
        auto.hold
    );
    Ok(out)
}
