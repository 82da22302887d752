//! `memshift flags check`: what a flags file would do if a running proxy loaded it now.
//!
//! The file is validated here (every mistake at once); then the proxy's `GET /flags` gives
//! the flags in force and the gates' inputs, and [`crate::rollout::decide`] — the same
//! function the proxy applies at reload — says which gates each agent's move would meet.

use crate::config::{Config, FlagsFile};
use crate::flags::{AgentFlags, Percent, Stage};
use crate::rollout::{self, GateInputs, GateResult};
use anyhow::{Context as _, anyhow};
use serde::Deserialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// `memshift flags …`.
// The doc comments are the command line's help text: `[[agents]]` is TOML, not a link.
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Clone, Debug, clap::Subcommand)]
pub enum Command {
    /// Validate a flags file and say what a running proxy's gates would decide for it.
    /// Exit 0: valid and every gate open; 2: a gate would refuse it; 64: invalid; 1: no
    /// proxy answered.
    Check {
        /// The file to check (default: [rollout] flags).
        #[arg(long)]
        flags: Option<PathBuf>,
        /// The proxy's HTTP address (default: http://<[metrics] listen>).
        #[arg(long)]
        proxy: Option<String>,
    },
}

/// Runs one `memshift flags` command and prints what it found.
pub fn execute(config: &Config, command: &Command) -> ExitCode {
    let Command::Check { flags, proxy } = command;
    let Some(runtime) = super::runtime(tokio::runtime::Builder::new_current_thread()) else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(check(config, flags.as_deref(), proxy.as_deref())) {
        Ok(Verdict::Open(text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Ok(Verdict::Closed(text)) => {
            print!("{text}");
            ExitCode::from(2)
        }
        Err(e) if e.downcast_ref::<crate::config::ConfigErrors>().is_some() => {
            eprintln!("memshift: {e:#}");
            ExitCode::from(super::EXIT_USAGE)
        }
        Err(e) => {
            eprintln!("memshift: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What the check found.
pub enum Verdict {
    /// Every move is allowed (or nothing moves forward).
    Open(String),
    /// At least one gate would refuse the file.
    Closed(String),
}

/// The flags in force for one agent, as `GET /flags` shows them.
#[derive(Deserialize)]
struct Current {
    name: String,
    stage: String,
    mirror_percent: f64,
    shadow_percent: f64,
    read_percent: f64,
    rollback_reasons: Vec<String>,
    gate_inputs: GateInputs,
}

#[derive(Deserialize)]
struct Status {
    generation: u64,
    agents: Vec<Current>,
}

/// Checks `flags` (or the configured flags file) against the proxy at `proxy` (or the
/// configured metrics address).
///
/// # Errors
/// The file is invalid (the message lists every mistake), or the proxy did not answer.
pub async fn check(
    config: &Config,
    flags: Option<&Path>,
    proxy: Option<&str>,
) -> anyhow::Result<Verdict> {
    let path = flags
        .or(config.rollout.flags.as_deref())
        .ok_or_else(|| anyhow!("no flags file: pass --flags or set [rollout] flags"))?;
    let file = rollout::load_file(path)?;
    let base = proxy.map_or_else(
        || format!("http://{}", config.metrics.listen),
        str::to_owned,
    );
    let url = format!("{}/flags", base.trim_end_matches('/'));
    let status: Status = reqwest::Client::new()
        .get(&url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| {
            format!(
                "{} is valid, but no proxy answered at {url}: gates not decided",
                path.display()
            )
        })?
        .json()
        .await
        .with_context(|| format!("reading {url}"))?;
    Ok(report(path, &file, &status, config))
}

fn report(path: &Path, file: &FlagsFile, status: &Status, config: &Config) -> Verdict {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} is valid; the proxy runs flags generation {}",
        path.display(),
        status.generation
    );
    let mut closed = false;
    for current in &status.agents {
        let from = match to_flags(current) {
            Ok(f) => f,
            Err(e) => {
                let _ = writeln!(out, "{}: cannot read the flags in force: {e}", current.name);
                closed = true;
                continue;
            }
        };
        let to = file.agent(&current.name);
        let _ = writeln!(out, "{}: {} → {}", current.name, from.stage, to.stage);
        if !current.rollback_reasons.is_empty() {
            let _ = writeln!(
                out,
                "  rollback holds: {}",
                current.rollback_reasons.join(", ")
            );
        }
        let gates: Vec<GateResult> =
            rollout::decide(&from, &to, &current.gate_inputs, &config.rollout);
        if gates.is_empty() {
            let _ = writeln!(out, "  not a forward move: no gate applies");
        }
        for g in gates {
            closed |= !g.open;
            let state = if g.open { "open  " } else { "CLOSED" };
            let _ = writeln!(out, "  {state} {}: {}", g.gate.as_label(), g.detail);
        }
    }
    for name in file.agents.keys() {
        if !status.agents.iter().any(|a| &a.name == name) {
            let _ = writeln!(out, "{name}: not fronted by this proxy");
        }
    }
    if closed {
        Verdict::Closed(out)
    } else {
        Verdict::Open(out)
    }
}

fn to_flags(c: &Current) -> Result<AgentFlags, String> {
    let percent = |v: f64| Percent::parse(&v.to_string());
    Ok(AgentFlags {
        stage: Stage::parse(&c.stage)?,
        mirror_percent: percent(c.mirror_percent)?,
        shadow_percent: percent(c.shadow_percent)?,
        read_percent: percent(c.read_percent)?,
        rollback: !c.rollback_reasons.is_empty(),
    })
}
