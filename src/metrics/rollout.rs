//! The rollout's metrics (proxy process): each agent's flags, the flags file's reloads,
//! rollbacks and their reasons, the triggers' figures and the gates.

use super::{counter_vec, float_gauge_vec, gauge_vec};
use crate::flags::{AgentFlags, Stage};
use prometheus::{Gauge, GaugeVec, IntCounterVec, IntGauge, IntGaugeVec, Registry};

crate::labels! {
    /// Why a rollback holds (the `reason` label of `memshift_rollback_reason`).
    #[derive(serde::Serialize)]
    #[serde(rename_all = "snake_case")]
    pub enum RollbackReason {
        /// The flags file says `rollback = true` (for every agent or for this one).
        FlagsFile = "flags_file",
        /// The panic file exists.
        PanicFile = "panic_file",
        /// SIGUSR1.
        Signal = "signal",
        /// `POST /admin/rollback`.
        Admin = "admin",
        Inconsistency = "inconsistency",
        Latency = "latency",
        Errors = "errors",
    }
}

crate::labels! {
    /// Why a reload of the flags file was refused.
    pub enum ReloadFailure {
        Unreadable = "unreadable",
        Invalid = "invalid",
        Gated = "gated",
    }
}

/// What [`RolloutMetrics::trigger`] shows of one trigger's reading.
pub struct TriggerFigures {
    /// The estimate over the window (0 below the minimum sample).
    pub value: f64,
    /// Its lower confidence bound (0 below the minimum sample).
    pub bound: f64,
    pub threshold: f64,
    pub samples: u64,
}

pub struct RolloutMetrics {
    stage: IntGaugeVec,
    mirror_percent: GaugeVec,
    shadow_percent: GaugeVec,
    read_percent: GaugeVec,
    pub generation: IntGauge,
    pub checksum: Gauge,
    pub reloads: prometheus::IntCounter,
    reload_failures: IntCounterVec,
    rollback: IntGaugeVec,
    reason: IntGaugeVec,
    trips: IntCounterVec,
    trigger_value: GaugeVec,
    trigger_bound: GaugeVec,
    trigger_samples: IntGaugeVec,
    trigger_threshold: GaugeVec,
    gate: IntGaugeVec,
}

impl RolloutMetrics {
    pub(super) fn new(registry: &Registry) -> RolloutMetrics {
        let gauge =
            |name: &str, help: &str, labels: &[&str]| float_gauge_vec(registry, name, help, labels);
        let plain = |family: IntGaugeVec| family.with_label_values(&[] as &[&str]);
        RolloutMetrics {
            stage: gauge_vec(
                registry,
                "memshift_stage",
                "1 for each agent's current stage (from the flags file).",
                &["agent", "stage"],
            ),
            mirror_percent: gauge(
                "memshift_mirror_percent",
                "Share of keys whose writes are mirrored, in percent.",
                &["agent"],
            ),
            shadow_percent: gauge(
                "memshift_shadow_percent",
                "Share of keys whose reads are compared, in percent.",
                &["agent"],
            ),
            read_percent: gauge(
                "memshift_read_percent",
                "Share of keys whose reads the orchestrator answers in stage live, in percent (0 while a rollback holds).",
                &["agent"],
            ),
            generation: plain(gauge_vec(
                registry,
                "memshift_flags_generation",
                "Flags files applied by this process since it started (1 at start-up).",
                &[],
            )),
            checksum: gauge("memshift_flags_checksum", "The first 48 bits of the SHA-256 of the flags file in force: the same value on every proxy that took the same file.", &[])
                .with_label_values(&[] as &[&str]),
            reloads: counter_vec(
                registry,
                "memshift_flags_reloads_total",
                "Flags files read and applied after start-up.",
                &[],
            )
            .with_label_values(&[] as &[&str]),
            reload_failures: counter_vec(
                registry,
                "memshift_flags_reload_failures_total",
                "Flags files refused (the previous flags stay), by reason: unreadable, invalid, gated.",
                &["reason"],
            ),
            rollback: gauge_vec(
                registry,
                "memshift_rollback_active",
                "1 while a rollback holds for the agent: every read goes to legacy.",
                &["agent"],
            ),
            reason: gauge_vec(
                registry,
                "memshift_rollback_reason",
                "1 for each reason a rollback holds: flags_file, panic_file, signal, admin, or a trigger.",
                &["agent", "reason"],
            ),
            trips: counter_vec(
                registry,
                "memshift_rollback_trips_total",
                "Automatic rollbacks, by the trigger that fired.",
                &["agent", "trigger"],
            ),
            trigger_value: gauge(
                "memshift_rollback_trigger_value",
                "Each trigger's estimate over its window (a ratio, or seconds added for latency); 0 below the minimum sample.",
                &["agent", "trigger"],
            ),
            trigger_bound: gauge(
                "memshift_rollback_trigger_bound",
                "The lower confidence bound of each trigger's estimate: the trigger breaches when it passes the threshold.",
                &["agent", "trigger"],
            ),
            trigger_samples: gauge_vec(
                registry,
                "memshift_rollback_trigger_samples",
                "Samples behind each trigger's estimate (after stretching a quiet window).",
                &["agent", "trigger"],
            ),
            trigger_threshold: gauge(
                "memshift_rollback_trigger_threshold",
                "Each trigger's threshold from [rollout.auto] (a ratio, or seconds added for latency): the alert rules compare the bound with it.",
                &["agent", "trigger"],
            ),
            gate: gauge_vec(
                registry,
                "memshift_gate_open",
                "1 when the gate would let the agent move forward past its stage.",
                &["agent", "gate"],
            ),
        }
    }

    /// Shows an agent's flags in force.
    pub fn flags(&self, agent: &str, flags: &AgentFlags) {
        for stage in Stage::ALL {
            self.stage
                .with_label_values(&[agent, stage.name()])
                .set(i64::from(stage == flags.stage));
        }
        self.mirror_percent
            .with_label_values(&[agent])
            .set(flags.mirror_percent.as_f64());
        self.shadow_percent
            .with_label_values(&[agent])
            .set(flags.shadow_percent.as_f64());
        let serving = if flags.serves_reads() {
            flags.read_percent.as_f64()
        } else {
            0.0
        };
        self.read_percent.with_label_values(&[agent]).set(serving);
    }

    /// Shows which reasons hold a rollback of `agent` (each of [`RollbackReason`]).
    pub fn rollback(&self, agent: &str, holding: &[RollbackReason]) {
        self.rollback
            .with_label_values(&[agent])
            .set(i64::from(!holding.is_empty()));
        for reason in RollbackReason::ALL {
            self.reason
                .with_label_values(&[agent, reason.as_label()])
                .set(i64::from(holding.contains(&reason)));
        }
    }

    pub fn reload_failed(&self, reason: ReloadFailure) {
        self.reload_failures
            .with_label_values(&[reason.as_label()])
            .inc();
    }

    /// Creates the failure series at zero.
    pub fn init_failures(&self) {
        for reason in ReloadFailure::LABELS {
            self.reload_failures.with_label_values(&[reason]);
        }
    }

    pub fn tripped(&self, agent: &str, trigger: &str) {
        self.trips.with_label_values(&[agent, trigger]).inc();
    }

    pub fn trigger(&self, agent: &str, trigger: &str, reading: TriggerFigures) {
        let TriggerFigures {
            value,
            bound,
            threshold,
            samples,
        } = reading;
        self.trigger_threshold
            .with_label_values(&[agent, trigger])
            .set(threshold);
        // The trips counter exists at zero from the first evaluation on, so that
        // `increase()` sees an agent's first automatic rollback too.
        self.trips.with_label_values(&[agent, trigger]);
        self.trigger_value
            .with_label_values(&[agent, trigger])
            .set(value);
        self.trigger_bound
            .with_label_values(&[agent, trigger])
            .set(bound);
        self.trigger_samples
            .with_label_values(&[agent, trigger])
            .set(samples as i64);
    }

    pub fn gate(&self, agent: &str, gate: &str, open: bool) {
        self.gate
            .with_label_values(&[agent, gate])
            .set(i64::from(open));
    }
}
