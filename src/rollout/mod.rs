//! Rollout control: the flags in force for every agent, and everything that changes them.
//!
//! One [`Rollout`] per proxy process owns each agent's [`SharedFlags`]; the forwarders only
//! read them. What it folds together:
//! - **the flags file** (`[rollout] flags`), reloaded when it changes ([`watch`]: a watch on
//!   its directory, a slow poll, SIGHUP). A reload is read → validate → gate → swap; a
//!   file that is unreadable, invalid or refused by a gate keeps the previous flags, logs
//!   one error and counts a failure. Each applied file bumps the generation;
//! - **the kill switch**: `rollback = true` in the file (all agents, or one), the panic
//!   file's mere presence, SIGUSR1, or `POST /admin/rollback`. Each sets `rollback` in the
//!   agents' flags, which sends every read to legacy at the next request while writes stay
//!   mirrored. SIGUSR1 and the admin endpoint latch until SIGUSR2 or `POST /admin/resume`;
//!   the file and the panic file hold while they say so;
//! - **automatic rollback**: every second each agent's traffic goes through the plan's
//!   [`triggers`]; one that fires latches a rollback, with its figures in the log and the
//!   metrics, until an operator resumes.
//!
//! Latched rollbacks are kept in `<data_dir>/rollback.json`, so a restart does not undo them.

mod admin;
mod gates;
mod latch;
pub mod triggers;
mod watch;

pub use admin::router;
pub use gates::{Gate, GateInputs, GateResult, decide, evaluate};
pub use latch::Latch;
pub use watch::Watch;

use crate::config::{AgentConfig, FlagsFile, GateMode, RolloutSettings, parse_flags};
use crate::flags::{self, AgentFlags, SharedFlags};
use crate::metrics::{
    AgentMetrics, BACKEND_BUCKETS, Metrics, MirrorMetrics, ReloadFailure, RollbackReason, Totals,
};
use anyhow::Context as _;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use tracing::{error, info, warn};
use triggers::{Buckets, Evaluator, Tally};

/// One agent under rollout control.
struct Agent {
    name: String,
    flags: SharedFlags,
    mirror: MirrorMetrics,
    legacy: AgentMetrics,
}

/// Why the last flags file was refused, so that polling the same file again does not
/// repeat the error.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Refused {
    Unreadable,
    Content(u64),
}

struct State {
    /// The flags file in force.
    file: FlagsFile,
    checksum: Option<u64>,
    refused: Option<Refused>,
    generation: u64,
    panic: bool,
    /// Per agent (same order as `Rollout::agents`).
    latches: Vec<BTreeSet<Latch>>,
    evaluators: Vec<Evaluator>,
    /// The totals at the previous evaluation, per agent.
    last: Vec<Option<(Totals, Vec<u64>)>>,
}

/// The flags in force for every agent of one proxy, and the switches that change them.
pub struct Rollout {
    settings: RolloutSettings,
    panic_path: Option<PathBuf>,
    latch_path: Option<PathBuf>,
    agents: Vec<Agent>,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
}

/// Reads and validates a flags file, for start-up and `memshift flags check`.
///
/// # Errors
/// The file cannot be read, or is invalid (every mistake listed).
pub fn load_file(path: &Path) -> anyhow::Result<FlagsFile> {
    Ok(read_file(path)?.0)
}

/// The file, validated, and the checksum of its bytes.
fn read_file(path: &Path) -> anyhow::Result<(FlagsFile, u64)> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("reading the flags file {}", path.display()))?;
    let sum = checksum(&bytes);
    let origin = path.display().to_string();
    let file = parse_bytes(bytes, &origin).map_err(|e| match e {
        Unparsed::NotText => anyhow::anyhow!("{origin}: not UTF-8 text"),
        Unparsed::Invalid(e) => anyhow::Error::new(e),
    })?;
    Ok((file, sum))
}

/// Why a flags file's bytes are no flags file.
enum Unparsed {
    NotText,
    Invalid(crate::config::ConfigErrors),
}

/// A flags file's bytes, validated; `origin` names it in the errors.
fn parse_bytes(bytes: Vec<u8>, origin: &str) -> Result<FlagsFile, Unparsed> {
    let text = String::from_utf8(bytes).map_err(|_| Unparsed::NotText)?;
    parse_flags(&text, origin).map_err(Unparsed::Invalid)
}

/// What the rollout has made of earlier versions of the flags file.
#[derive(Clone, Copy)]
struct Seen {
    /// The checksum of the file in force.
    applied: Option<u64>,
    refused: Option<Refused>,
}

/// What a look at the flags file decided.
enum Reload {
    /// Nothing to do: the file in force, or one refused already (unless forced).
    Unchanged,
    /// Empty: being written by an edit in place, not an order to turn every agent off.
    Empty,
    /// It cannot be read; `report` unless that was reported already (or forced).
    Unreadable {
        error: String,
        report: bool,
    },
    Invalid {
        sum: u64,
        error: String,
    },
    /// Valid, but a gate refuses it.
    Gated {
        sum: u64,
        closed: String,
    },
    Apply {
        file: Box<FlagsFile>,
        sum: u64,
    },
}

/// Decides what to make of the flags file's bytes (or why they could not be read), given
/// what was made of earlier versions and the gates. Pure but for `gates`.
fn judge(
    bytes: Result<Vec<u8>, String>,
    seen: Seen,
    force: bool,
    origin: &str,
    gates: impl FnOnce(&FlagsFile) -> Result<(), String>,
) -> Reload {
    let bytes = match bytes {
        Ok(bytes) => bytes,
        Err(error) => {
            let report = force || seen.refused != Some(Refused::Unreadable);
            return Reload::Unreadable { error, report };
        }
    };
    // An edit in place truncates the file before it writes it: an empty file is one being
    // written (turning every agent off would stop mirroring for as long as it lasted). The
    // write that follows is a change of its own.
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Reload::Empty;
    }
    let sum = checksum(&bytes);
    let known = seen.applied == Some(sum) || seen.refused == Some(Refused::Content(sum));
    if known && !force {
        return Reload::Unchanged;
    }
    let file = match parse_bytes(bytes, origin) {
        Ok(file) => file,
        Err(e) => {
            let error = match e {
                Unparsed::NotText => "not UTF-8 text".to_owned(),
                Unparsed::Invalid(e) => e.to_string(),
            };
            return Reload::Invalid { sum, error };
        }
    };
    match gates(&file) {
        Ok(()) => Reload::Apply {
            file: Box::new(file),
            sum,
        },
        Err(closed) => Reload::Gated { sum, closed },
    }
}

impl Rollout {
    /// Loads the flags file (if one is configured), the panic file and the latched
    /// rollbacks, and sets every agent's flags from them.
    ///
    /// # Errors
    /// The flags file cannot be read or is invalid.
    pub fn new(
        settings: &RolloutSettings,
        data_dir: &Path,
        agents: &[AgentConfig],
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Rollout> {
        let (file, checksum) = match &settings.flags {
            Some(path) => {
                let (file, sum) = read_file(path)?;
                (file, Some(sum))
            }
            None => (FlagsFile::default(), None),
        };
        let latch_path = settings
            .flags
            .as_ref()
            .map(|_| data_dir.join("rollback.json"));
        let latches = latch::load(latch_path.as_deref(), agents);
        let agents: Vec<Agent> = agents
            .iter()
            .map(|a| Agent {
                name: a.name.clone(),
                flags: flags::shared(AgentFlags::default()),
                mirror: metrics.mirror(a),
                legacy: metrics.agent(a),
            })
            .collect();
        metrics.rollout().init_failures();
        let n = agents.len();
        let rollout = Rollout {
            settings: settings.clone(),
            panic_path: settings.panic_path(),
            latch_path,
            metrics,
            state: Mutex::new(State {
                file,
                checksum,
                refused: None,
                generation: 1,
                panic: false,
                latches,
                evaluators: (0..n)
                    .map(|_| Evaluator::new(settings.auto.clone(), BACKEND_BUCKETS))
                    .collect(),
                last: vec![None; n],
            }),
            agents,
        };
        let mut state = rollout.lock();
        state.panic = rollout.panic_present();
        if state.panic {
            warn!(panic_file = %rollout.panic_path.as_ref().map_or(String::new(), |p| p.display().to_string()),
                "the panic file exists: every agent starts rolled back");
        }
        rollout.apply(&state);
        drop(state);
        Ok(rollout)
    }

    /// The flags an agent's forwarder and mirror read.
    ///
    /// # Panics
    /// `agent` is not configured (a programming error).
    pub fn flags_of(&self, agent: &str) -> SharedFlags {
        self.agents
            .iter()
            .find(|a| a.name == agent)
            .map(|a| a.flags.clone())
            .expect("every configured agent has flags")
    }

    pub fn settings(&self) -> &RolloutSettings {
        &self.settings
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn panic_present(&self) -> bool {
        self.panic_path.as_ref().is_some_and(|p| p.exists())
    }

    /// Looks at the panic file and the flags file, and applies what changed. `force`
    /// (SIGHUP) re-reads and re-applies the flags file even when its bytes are the same.
    pub fn refresh(&self, force: bool) {
        let mut state = self.lock();
        let mut changed = false;
        let panic = self.panic_present();
        if panic != state.panic {
            state.panic = panic;
            changed = true;
            if panic {
                warn!("panic file present: every agent rolled back");
            } else {
                info!("panic file removed");
            }
        }
        if let Some(path) = &self.settings.flags {
            changed |= self.reload(&mut state, path, force);
        }
        if changed {
            self.apply(&state);
        }
    }

    /// Reads the flags file and swaps it in if it is new, valid and passes the gates: the
    /// file is read here, [`judge`] decides, and this carries the decision out (logs,
    /// metrics, the state).
    fn reload(&self, state: &mut State, path: &Path, force: bool) -> bool {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| e.to_string());
        let seen = Seen {
            applied: state.checksum,
            refused: state.refused,
        };
        let decision = judge(bytes, seen, force, &origin, |file| {
            self.check_gates(state, file)
        });
        let rollout = self.metrics.rollout();
        match decision {
            Reload::Unchanged => false,
            Reload::Empty => {
                if force {
                    warn!(flags = %origin, "flags file empty, keeping the flags in force");
                }
                false
            }
            Reload::Unreadable { error, report } => {
                if report {
                    error!(flags = %origin, "flags file unreadable, keeping the flags in force: {error}");
                    rollout.reload_failed(ReloadFailure::Unreadable);
                    state.refused = Some(Refused::Unreadable);
                }
                false
            }
            Reload::Invalid { sum, error } => {
                error!(flags = %origin, "flags file invalid, keeping the flags in force: {error}");
                rollout.reload_failed(ReloadFailure::Invalid);
                state.refused = Some(Refused::Content(sum));
                false
            }
            Reload::Gated { sum, closed } => {
                state.refused = Some(Refused::Content(sum));
                error!(flags = %origin, "flags file refused by a gate, keeping the flags in force: {closed}");
                rollout.reload_failed(ReloadFailure::Gated);
                false
            }
            Reload::Apply { file, sum } => {
                for agent in &self.agents {
                    let (old, new) = (state.file.agent(&agent.name), file.agent(&agent.name));
                    if old != new {
                        info!(agent = %agent.name, from = %describe(&old), to = %describe(&new), "flags changed");
                    }
                }
                state.file = *file;
                state.checksum = Some(sum);
                state.refused = None;
                state.generation += 1;
                rollout.reloads.inc();
                info!(generation = state.generation, flags = %origin, "flags file applied");
                true
            }
        }
    }

    /// `Err` with every closed gate when the enforcing gates refuse `file`.
    fn check_gates(&self, state: &State, file: &FlagsFile) -> Result<(), String> {
        let mut closed = Vec::new();
        for (i, agent) in self.agents.iter().enumerate() {
            let inputs = self.gate_inputs(state, i, &agent.mirror.totals());
            let (old, new) = (state.file.agent(&agent.name), file.agent(&agent.name));
            for r in decide(&old, &new, &inputs, &self.settings) {
                if !r.open {
                    closed.push(format!(
                        "{}: {} ({})",
                        agent.name,
                        r.gate.as_label(),
                        r.detail
                    ));
                }
            }
        }
        match (closed.is_empty(), self.settings.gates) {
            (true, _) => Ok(()),
            (false, GateMode::Enforce) => Err(closed.join("; ")),
            (false, GateMode::Warn) => {
                warn!(
                    "moving forward with gates closed (gates = \"warn\"): {}",
                    closed.join("; ")
                );
                Ok(())
            }
        }
    }

    /// The gates' inputs for agent `i`, with its running `totals` (already read).
    fn gate_inputs(&self, state: &State, i: usize, totals: &Totals) -> GateInputs {
        let m = &self.agents[i].mirror;
        GateInputs {
            outbox_pending: m.pending.get().max(0) as u64,
            outbox_oldest_age_seconds: m.oldest_age.get(),
            dead_letters: m.dead.get().max(0) as u64,
            reverse_pending: m.reverse.pending.get().max(0) as u64,
            reverse_oldest_age_seconds: m.reverse.oldest_age.get(),
            reverse_dead_letters: m.reverse.dead.get().max(0) as u64,
            matches: totals.matches,
            mismatches: totals.mismatches,
            rolled_back: state.panic || !state.latches[i].is_empty(),
        }
    }

    /// Why a rollback holds for agent `i`.
    fn reasons(&self, state: &State, i: usize) -> Vec<RollbackReason> {
        let name = &self.agents[i].name;
        let mut reasons = Vec::new();
        if state.file.rollback || state.file.agents.get(name).is_some_and(|f| f.rollback) {
            reasons.push(RollbackReason::FlagsFile);
        }
        if state.panic {
            reasons.push(RollbackReason::PanicFile);
        }
        reasons.extend(state.latches[i].iter().map(|l| l.reason()));
        reasons
    }

    /// Swaps every agent's flags for the ones `state` gives, and shows them.
    fn apply(&self, state: &State) {
        let m = self.metrics.rollout();
        for (i, agent) in self.agents.iter().enumerate() {
            let reasons = self.reasons(state, i);
            let mut flags = state.file.agent(&agent.name);
            flags.rollback = !reasons.is_empty();
            agent.flags.store(Arc::new(flags));
            m.flags(&agent.name, &flags);
            m.rollback(&agent.name, &reasons);
        }
        m.generation.set(state.generation as i64);
        m.checksum.set(state.checksum.unwrap_or(0) as f64);
    }

    /// Latches a rollback of every agent (SIGUSR1, the admin endpoint).
    pub fn roll_back(&self, latch: Latch) {
        let mut state = self.lock();
        for set in &mut state.latches {
            set.insert(latch);
        }
        warn!(
            reason = latch.as_label(),
            "rollback: every read goes to legacy, writes stay mirrored"
        );
        self.persist(&state);
        self.apply(&state);
    }

    /// Clears every latched rollback (SIGUSR2, the admin endpoint) and forgets the
    /// triggers' windows. The flags file and the panic file keep holding while they say so.
    pub fn resume(&self, by: &str) {
        let mut state = self.lock();
        let cleared: BTreeSet<&str> = state
            .latches
            .iter()
            .flatten()
            .map(|l| l.as_label())
            .collect();
        for set in &mut state.latches {
            set.clear();
        }
        for (i, agent) in self.agents.iter().enumerate() {
            state.evaluators[i].reset();
            // Counted from now: what happened since the last evaluation is the past too.
            state.last[i] = Some((agent.mirror.totals(), agent.legacy.read_latency()));
        }
        info!(by, cleared = ?cleared, "latched rollbacks cleared");
        if state.panic || state.file.rollback {
            warn!("a rollback still holds: the panic file or the flags file says so");
        }
        self.persist(&state);
        self.apply(&state);
    }

    fn persist(&self, state: &State) {
        let names: Vec<&str> = self.agents.iter().map(|a| a.name.as_str()).collect();
        if let Some(path) = &self.latch_path
            && let Err(e) = latch::save(path, &names, &state.latches)
        {
            error!(path = %path.display(), "could not keep the rollback latches: {e:#}");
        }
    }

    /// One second of every agent's traffic through the triggers; a trigger that fires
    /// latches a rollback of its agent. Also refreshes the gates' metrics.
    pub fn evaluate(&self) {
        let mut state = self.lock();
        let mut tripped = false;
        for (i, agent) in self.agents.iter().enumerate() {
            let now = (agent.mirror.totals(), agent.legacy.read_latency());
            let tally = state.last[i]
                .as_ref()
                .map_or_else(Tally::default, |prev| difference(prev, &now));
            state.last[i] = Some(now);
            let readings = state.evaluators[i].push(tally);
            let m = self.metrics.rollout();
            let active = state.file.agent(&agent.name).stage != crate::flags::Stage::Off;
            for r in readings {
                let label = r.trigger.as_label();
                m.trigger(
                    &agent.name,
                    label,
                    crate::metrics::TriggerFigures {
                        value: r.value.unwrap_or(0.0),
                        bound: r.bound.unwrap_or(0.0),
                        threshold: r.threshold,
                        samples: r.samples,
                    },
                );
                let latch = Latch::from(r.trigger);
                if r.fired && active && self.settings.auto.enabled && state.latches[i].insert(latch)
                {
                    error!(agent = %agent.name, trigger = label, figures = %r.describe(),
                        "automatic rollback: every read goes to legacy until an operator resumes");
                    m.tripped(&agent.name, label);
                    tripped = true;
                }
            }
            let totals = &state.last[i].as_ref().expect("set above").0;
            let flags = agent.flags.load();
            for g in evaluate(&flags, &self.gate_inputs(&state, i, totals), &self.settings) {
                m.gate(&agent.name, g.gate.as_label(), g.open);
            }
        }
        if tripped {
            self.persist(&state);
            self.apply(&state);
        }
    }

    /// What `GET /flags` shows: the file in force, each agent's flags and rollback reasons,
    /// and the gates' inputs (which `memshift flags check` decides with).
    pub fn status(&self) -> serde_json::Value {
        let state = self.lock();
        let agents: Vec<_> = self
            .agents
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let f = a.flags.load();
                json!({
                    "name": a.name,
                    "stage": f.stage.name(),
                    "mirror_percent": f.mirror_percent.as_f64(),
                    "shadow_percent": f.shadow_percent.as_f64(),
                    "read_percent": f.read_percent.as_f64(),
                    "rollback": f.rollback,
                    "rollback_reasons": self.reasons(&state, i),
                    "gate_inputs": self.gate_inputs(&state, i, &a.mirror.totals()),
                })
            })
            .collect();
        json!({
            "generation": state.generation,
            "checksum": state.checksum.map(|c| format!("{c:012x}")),
            "flags_file": self.settings.flags,
            "panic_file": self.panic_path,
            "panic": state.panic,
            "agents": agents,
        })
    }
}

/// `live, mirror 100%, shadow 100%, read 25%`.
fn describe(f: &AgentFlags) -> String {
    format!(
        "{}, mirror {}, shadow {}, read {}{}",
        f.stage,
        f.mirror_percent,
        f.shadow_percent,
        f.read_percent,
        if f.rollback { ", rollback" } else { "" }
    )
}

/// The first 48 bits of the SHA-256 of `bytes`: exact in a Prometheus gauge (an f64).
fn checksum(bytes: &[u8]) -> u64 {
    let digest = Sha256::digest(bytes);
    digest[..6]
        .iter()
        .fold(0, |acc, b| (acc << 8) | u64::from(*b))
}

/// What happened between two snapshots of the running totals.
fn difference(prev: &(Totals, Vec<u64>), now: &(Totals, Vec<u64>)) -> Tally {
    let buckets = |a: &[u64], b: &[u64]| {
        Buckets(
            b.iter()
                .enumerate()
                .map(|(i, n)| n.saturating_sub(a.get(i).copied().unwrap_or(0)))
                .collect(),
        )
    };
    let (p, n) = (&prev.0, &now.0);
    Tally {
        matches: n.matches.saturating_sub(p.matches),
        mismatches: n.mismatches.saturating_sub(p.mismatches),
        calls: n.calls.saturating_sub(p.calls),
        errors: n.errors.saturating_sub(p.errors),
        orchestrator: buckets(&p.read_latency, &n.read_latency),
        legacy: buckets(&prev.1, &now.1),
    }
}

#[cfg(test)]
mod tests;
