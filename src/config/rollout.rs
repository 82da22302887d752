//! `[rollout]` and `[rollout.auto]`: where the hot flags live and how they are guarded.
//! Every key here needs a restart; what the flags file says applies live.

use super::reader::{Errors, Table};
use super::{parse_count, parse_duration};
use figment::value::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a gate that is not passed does to a reload that moves an agent forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateMode {
    /// The reload is refused: the previous flags stay, a reload failure is counted.
    Enforce,
    /// The reload applies; the closed gate is logged as a warning and shown in the metrics.
    Warn,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RolloutSettings {
    /// The flags file (stages, percentages, rollback), watched and hot-reloaded. Without
    /// one, every agent stays `off`: a pure passthrough, nothing mirrored.
    pub flags: Option<PathBuf>,
    /// The panic file: while it exists, every agent is rolled back. Defaults to
    /// `memshift.panic` next to the flags file, so the same directory watch sees it.
    pub panic_file: Option<PathBuf>,
    /// How often the flags and panic files are looked at even without a file-system event
    /// (a network file system, a missed event).
    pub poll_interval: Duration,
    /// A file holding the bearer token of the admin endpoint (`POST /admin/rollback`,
    /// `POST /admin/resume`); without one the admin endpoint is disabled.
    pub admin_token_file: Option<PathBuf>,
    pub gates: GateMode,
    /// Shadow comparisons (matches plus mismatches) needed before an agent may go `live`.
    pub gate_min_comparisons: u64,
    /// The oldest pending outbox entry may be at most this old for an agent to move past
    /// `dualwrite` (and no dead letter may be waiting).
    pub gate_max_outbox_age: Duration,
    pub auto: AutoRollback,
}

/// `[rollout.auto]`: the plan's rollback triggers, evaluated by every proxy on its own
/// traffic.
#[derive(Clone, Debug, PartialEq)]
pub struct AutoRollback {
    pub enabled: bool,
    /// The most recent traffic the triggers look at.
    pub window: Duration,
    /// When `window` holds fewer than `min_samples`, it is stretched back up to this long
    /// to find them: a quiet period can neither trip a trigger nor hide a fault.
    pub max_window: Duration,
    /// Samples a trigger needs before it may fire.
    pub min_samples: u64,
    /// Mismatches over matches plus mismatches (the plan: 0.1 %).
    pub max_inconsistency: f64,
    /// The orchestrator's median read time over legacy's (the plan: 100 ms).
    pub max_added_latency: Duration,
    /// Failed orchestrator calls over all orchestrator calls (the plan: 1 %).
    pub max_error_rate: f64,
    /// A trigger fires only when its lower confidence bound is past the threshold, and the
    /// gates want the upper bound of inconsistency below it (0.95: two-sided 95 %).
    pub confidence: f64,
    /// Consecutive evaluations (one a second) a trigger must hold before it fires.
    pub hold: u32,
}

impl Default for AutoRollback {
    fn default() -> Self {
        AutoRollback {
            enabled: true,
            window: Duration::from_secs(300),
            max_window: Duration::from_secs(3600),
            min_samples: 1000,
            max_inconsistency: 0.001,
            max_added_latency: Duration::from_millis(100),
            max_error_rate: 0.01,
            confidence: 0.95,
            hold: 3,
        }
    }
}

impl Default for RolloutSettings {
    fn default() -> Self {
        RolloutSettings {
            flags: None,
            panic_file: None,
            poll_interval: Duration::from_secs(1),
            admin_token_file: None,
            gates: GateMode::Enforce,
            gate_min_comparisons: 1000,
            gate_max_outbox_age: Duration::from_secs(60),
            auto: AutoRollback::default(),
        }
    }
}

impl RolloutSettings {
    /// The panic file in use: the configured one, or `memshift.panic` next to the flags.
    pub fn panic_path(&self) -> Option<PathBuf> {
        self.panic_file.clone().or_else(|| {
            let flags = self.flags.as_ref()?;
            let dir = flags.parent().unwrap_or(Path::new("."));
            Some(dir.join("memshift.panic"))
        })
    }
}

fn parse_path(s: &str) -> Result<Option<PathBuf>, String> {
    if s.is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(Some(PathBuf::from(s)))
    }
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r > 0.0 && r < 1.0 => Ok(r),
        _ => Err(format!(
            "expected a ratio between 0 and 1 (0.001 is 0.1 %), got {s:?}"
        )),
    }
}

pub(super) fn read_rollout(value: Option<&Value>, errors: &mut Errors) -> RolloutSettings {
    let d = RolloutSettings::default();
    let mut t = Table::new("rollout", value, errors);
    let settings = RolloutSettings {
        flags: t.parse("flags", d.flags, errors, parse_path),
        panic_file: t.parse("panic_file", d.panic_file, errors, parse_path),
        poll_interval: t.parse("poll_interval", d.poll_interval, errors, parse_duration),
        admin_token_file: t.parse("admin_token_file", d.admin_token_file, errors, parse_path),
        gates: t.parse("gates", d.gates, errors, |s| match s {
            "enforce" => Ok(GateMode::Enforce),
            "warn" => Ok(GateMode::Warn),
            _ => Err(format!("unknown gate mode {s:?} (enforce, warn)")),
        }),
        gate_min_comparisons: t.parse(
            "gate_min_comparisons",
            d.gate_min_comparisons,
            errors,
            |s| parse_count(s, 0, 1_000_000_000).map(|n| n as u64),
        ),
        gate_max_outbox_age: t.parse(
            "gate_max_outbox_age",
            d.gate_max_outbox_age,
            errors,
            parse_duration,
        ),
        auto: read_auto(t.value("auto"), errors),
    };
    if settings.poll_interval.is_zero() {
        errors.push("rollout.poll_interval", value, "must be above zero");
    }
    t.finish(errors);
    settings
}

fn read_auto(value: Option<&Value>, errors: &mut Errors) -> AutoRollback {
    let d = AutoRollback::default();
    let mut t = Table::new("rollout.auto", value, errors);
    let auto = AutoRollback {
        enabled: t.get("enabled", errors).unwrap_or(d.enabled),
        window: t.parse("window", d.window, errors, parse_duration),
        max_window: t.parse("max_window", d.max_window, errors, parse_duration),
        min_samples: t.parse("min_samples", d.min_samples, errors, |s| {
            parse_count(s, 1, 1_000_000_000).map(|n| n as u64)
        }),
        max_inconsistency: t.parse(
            "max_inconsistency",
            d.max_inconsistency,
            errors,
            parse_ratio,
        ),
        max_added_latency: t.parse(
            "max_added_latency",
            d.max_added_latency,
            errors,
            parse_duration,
        ),
        max_error_rate: t.parse("max_error_rate", d.max_error_rate, errors, parse_ratio),
        confidence: t.parse("confidence", d.confidence, errors, parse_ratio),
        hold: t.parse("hold", d.hold, errors, |s| {
            parse_count(s, 1, 3600).map(|n| n as u32)
        }),
    };
    if auto.window.as_secs() < 1 || auto.max_window < auto.window {
        errors.push(
            "rollout.auto.max_window",
            value,
            "rollout.auto.window must be at least 1s and at most rollout.auto.max_window",
        );
    }
    t.finish(errors);
    auto
}
