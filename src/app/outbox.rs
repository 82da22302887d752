//! `memshift outbox status | retry-dead | drain`: the operator's view of the outboxes.
//!
//! They read the outbox files directly (SQLite in WAL mode allows it while the proxy runs),
//! so they work whether or not a proxy is up. `drain` waits for the proxy that delivers an
//! outbox; when none does, it delivers the outbox itself, holding the same lock a proxy
//! would, so that there is never more than one deliverer.

use crate::config::{AgentConfig, Config, Durability};
use crate::metrics::Metrics;
use crate::mirror::Deliverer;
use crate::outbox::{DeadLetter, DeliveryLock, Dropped, Outbox, Stats};
use crate::translate::MirrorOp;
use anyhow::{Context as _, bail};
use chrono::Utc;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

/// `memshift outbox …`.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum Command {
    /// Pending operations, dead letters with their reasons, and dropped writes, per agent.
    Status {
        /// Only this agent.
        #[arg(long)]
        agent: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Dead letters and dropped keys listed per agent at most.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Put dead letters back in the queue, in their original place (after fixing the cause).
    RetryDead {
        /// Only this agent.
        #[arg(long)]
        agent: Option<String>,
        /// Only these entries (needs --agent); all dead letters otherwise.
        #[arg(long = "id")]
        ids: Vec<i64>,
    },
    /// Wait until everything pending is delivered or dead-lettered: the gate before moving
    /// reads over. Delivers by itself when no proxy is delivering. Exit 0: drained; 2:
    /// drained but dead letters remain; 1: timed out or failed.
    Drain {
        /// Only this agent.
        #[arg(long)]
        agent: Option<String>,
        /// Give up after this long.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

/// Runs one `memshift outbox` command and prints what it found.
///
/// # Errors
/// An unknown agent, an outbox that cannot be read or written.
pub fn execute(config: &Config, command: &Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Status { agent, json, limit } => {
            let statuses = status(config, agent.as_deref(), *limit)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&statuses)?);
            } else {
                print!("{}", render_status(&statuses));
            }
        }
        Command::RetryDead { agent, ids } => {
            for (agent, n) in retry_dead(config, agent.as_deref(), ids)? {
                println!("{agent}: {n} dead letter(s) re-queued");
            }
        }
        Command::Drain { agent, timeout } => {
            let drained = drain(config, agent.as_deref(), *timeout, |agent, pending| {
                eprintln!("{agent}: {pending} pending");
            })?;
            return Ok(match drained {
                Drained::Clean => {
                    println!("drained: nothing pending, no dead letters");
                    ExitCode::SUCCESS
                }
                Drained::WithDeadLetters(n) => {
                    println!("drained, but {n} dead letter(s) wait: see memshift outbox status");
                    ExitCode::from(2)
                }
                Drained::TimedOut => {
                    println!("timed out with operations still pending");
                    ExitCode::FAILURE
                }
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What `drain` found at the end.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    /// Nothing pending and no dead letters.
    Clean,
    /// Nothing pending, but dead letters wait for an operator.
    WithDeadLetters(u64),
    /// Still pending when the timeout passed.
    TimedOut,
}

/// One agent's outbox, as `status` reports it.
#[derive(Serialize)]
pub struct AgentStatus {
    pub agent: String,
    pub outbox: PathBuf,
    /// Whether a process (a proxy, or a `drain`) is delivering it now.
    pub delivering: bool,
    /// `None` when the agent has never mirrored (no outbox file).
    pub stats: Option<Stats>,
    pub dead_letters: Vec<DeadLetter>,
    pub dropped: Vec<Dropped>,
}

/// The agents named by `--agent` (all configured ones when `None`).
fn agents<'c>(config: &'c Config, agent: Option<&str>) -> anyhow::Result<Vec<&'c AgentConfig>> {
    match agent {
        None => Ok(config.agents.iter().collect()),
        Some(name) => match config.agents.iter().find(|a| a.name == name) {
            Some(a) => Ok(vec![a]),
            None => bail!("no agent named {name:?} in the configuration"),
        },
    }
}

fn path(config: &Config, agent: &AgentConfig) -> PathBuf {
    Outbox::path(&config.mirror.data_dir, &agent.name)
}

/// The status of each selected agent's outbox, with up to `limit` dead letters and
/// dropped keys each.
///
/// # Errors
/// An unknown agent, or an outbox that cannot be read.
pub fn status(
    config: &Config,
    agent: Option<&str>,
    limit: usize,
) -> anyhow::Result<Vec<AgentStatus>> {
    agents(config, agent)?
        .into_iter()
        .map(|a| {
            let path = path(config, a);
            let delivering = DeliveryLock::is_held(&path);
            if !path.exists() {
                return Ok(AgentStatus {
                    agent: a.name.clone(),
                    outbox: path,
                    delivering,
                    stats: None,
                    dead_letters: Vec::new(),
                    dropped: Vec::new(),
                });
            }
            let outbox = Outbox::<MirrorOp>::open_existing(&path)?;
            Ok(AgentStatus {
                agent: a.name.clone(),
                stats: Some(outbox.stats(Utc::now())?),
                dead_letters: outbox.dead_letters(limit)?,
                dropped: outbox.dropped(limit)?,
                outbox: path,
                delivering,
            })
        })
        .collect()
}

/// `status` for a terminal.
pub fn render_status(statuses: &[AgentStatus]) -> String {
    let mut out = String::new();
    let now = Utc::now();
    for s in statuses {
        let who = if s.delivering {
            "being delivered"
        } else {
            "no deliverer running"
        };
        let _ = writeln!(out, "{}: {} ({who})", s.agent, s.outbox.display());
        let Some(stats) = &s.stats else {
            let _ = writeln!(out, "  no outbox yet: this agent has not mirrored a write");
            continue;
        };
        let oldest = stats.oldest_pending.map_or(String::new(), |t| {
            let age = (now - t).to_std().unwrap_or_default();
            format!(", oldest accepted {} ago", format_age(age))
        });
        let _ = writeln!(
            out,
            "  pending {} ({} retrying){oldest}; dead letters {}; dropped writes {}",
            stats.pending, stats.retrying, stats.dead, stats.dropped
        );
        for d in &s.dead_letters {
            let _ = writeln!(
                out,
                "  dead #{} {} of {} (key {}), {} attempt(s), at {}: {}",
                d.id,
                d.operation,
                d.action,
                d.key,
                d.attempts,
                d.dead_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                d.reason
            );
        }
        for d in &s.dropped {
            let _ = writeln!(
                out,
                "  dropped {}x ({}) for key {}, last at {}",
                d.count,
                d.reason,
                d.key,
                d.last_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
        }
    }
    out
}

fn format_age(age: Duration) -> String {
    humantime::format_duration(Duration::from_secs(age.as_secs().max(1))).to_string()
}

/// Re-queues the dead letters of the selected agents (all of them, or `ids`); returns how
/// many per agent.
///
/// # Errors
/// An unknown agent, `ids` without exactly one agent, or an outbox that cannot be written.
pub fn retry_dead(
    config: &Config,
    agent: Option<&str>,
    ids: &[i64],
) -> anyhow::Result<Vec<(String, usize)>> {
    let selected = agents(config, agent)?;
    if !ids.is_empty() && selected.len() != 1 {
        bail!("--id needs --agent: entry ids are per outbox");
    }
    let mut requeued = Vec::new();
    for a in selected {
        let path = path(config, a);
        if !path.exists() {
            continue;
        }
        let mut outbox = Outbox::<MirrorOp>::open_existing(&path)?;
        let n = outbox.retry_dead((!ids.is_empty()).then_some(ids))?;
        requeued.push((a.name.clone(), n));
    }
    Ok(requeued)
}

/// Waits until nothing is pending in the selected outboxes, or `timeout` passes;
/// `progress` is called about once a second with each agent's pending count.
///
/// # Errors
/// An unknown agent, or an outbox that cannot be read or delivered.
pub fn drain(
    config: &Config,
    agent: Option<&str>,
    timeout: Duration,
    mut progress: impl FnMut(&str, u64),
) -> anyhow::Result<Drained> {
    let deadline = Instant::now() + timeout;
    let mut dead = 0;
    for a in agents(config, agent)? {
        let path = path(config, a);
        if !path.exists() {
            continue;
        }
        let drained = match DeliveryLock::acquire(&path) {
            Ok(lock) => deliver_here(config, a, lock, deadline, &mut progress)?,
            // A proxy is delivering: watch it.
            Err(_) => watch(&path, &a.name, deadline, &mut progress)?,
        };
        if !drained {
            return Ok(Drained::TimedOut);
        }
        dead += Outbox::<MirrorOp>::open_existing(&path)?
            .stats(Utc::now())?
            .dead;
    }
    Ok(if dead == 0 {
        Drained::Clean
    } else {
        Drained::WithDeadLetters(dead)
    })
}

fn watch(
    path: &std::path::Path,
    agent: &str,
    deadline: Instant,
    progress: &mut impl FnMut(&str, u64),
) -> anyhow::Result<bool> {
    let outbox = Outbox::<MirrorOp>::open_existing(path)?;
    let mut last_report: Option<Instant> = None;
    loop {
        let pending = outbox.stats(Utc::now())?.pending;
        if pending == 0 {
            progress(agent, 0);
            return Ok(true);
        }
        if last_report.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            progress(agent, pending);
            last_report = Some(Instant::now());
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn deliver_here(
    config: &Config,
    agent: &AgentConfig,
    lock: DeliveryLock,
    deadline: Instant,
    progress: &mut impl FnMut(&str, u64),
) -> anyhow::Result<bool> {
    let path = path(config, agent);
    let outbox = Outbox::<MirrorOp>::open(&path, Durability::Normal)?;
    let pending = outbox.stats(Utc::now())?.pending;
    progress(&agent.name, pending);
    if pending == 0 {
        return Ok(true);
    }
    tracing::info!(agent = %agent.name, pending, "no proxy is delivering this outbox: delivering it here");
    let ctx = zmq::Context::new();
    let metrics = Arc::new(Metrics::new().mirror(agent));
    let mut deliverer = Deliverer::new(
        &ctx,
        &agent.name,
        outbox,
        config.mirror.clone(),
        Arc::new(AtomicU64::new(pending)),
        metrics,
    )
    .context("connecting to the orchestrator")?;
    let drained = deliverer.drain(deadline);
    let report = deliverer.report().clone();
    drop(deliverer);
    drop(lock);
    tracing::info!(agent = %agent.name, delivered = report.delivered, retried = report.retried,
        dead_lettered = report.dead_lettered, drained, "drain finished");
    Ok(drained)
}
