//! Gates: what must be true before an agent moves forward past a stage.
//!
//! Pure: the proxy decides with its own figures when a reload moves an agent forward, and
//! `memshift flags check` decides with the figures a running proxy reports. A move counts as
//! passing every stage between the two, so skipping a stage cannot skip its gate. Where a
//! gate stands:
//!
//! | gate | moving forward into |
//! |---|---|
//! | `not_rolled_back` | any stage |
//! | `outbox_caught_up` | `shadow` and later |
//! | `consistency` | past `shadow` (from `shadow` or earlier) |
//! | `serving_all` | `rampdown` and `complete` |
//! | `legacy_caught_up` | `complete` |
//! Moving
//! back, or changing percentages within a stage, is never gated: the way back must always
//! be open.

use super::triggers::{two_sided_z, wilson};
use crate::config::RolloutSettings;
use crate::flags::{AgentFlags, Stage};
use serde::{Deserialize, Serialize};

/// What a running proxy knows of one agent, as the gates need it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GateInputs {
    pub outbox_pending: u64,
    pub outbox_oldest_age_seconds: f64,
    pub dead_letters: u64,
    /// The reverse outbox (writes the orchestrator took first, on their way to legacy).
    #[serde(default)]
    pub reverse_pending: u64,
    #[serde(default)]
    pub reverse_oldest_age_seconds: f64,
    #[serde(default)]
    pub reverse_dead_letters: u64,
    /// Shadow comparisons since the proxy started.
    pub matches: u64,
    pub mismatches: u64,
    /// A rollback holds for the agent.
    pub rolled_back: bool,
}

crate::labels! {
    /// One gate (the `gate` label of `memshift_gate_open`).
    #[derive(Serialize)]
    #[serde(rename_all = "snake_case")]
    pub enum Gate {
        /// No rollback holds: clear it before moving forward again.
        NotRolledBack = "not_rolled_back",
        /// Mirrored writes are delivered: nothing older than `gate_max_outbox_age` pending and
        /// no dead letter waiting. Needed past `dualwrite`.
        OutboxCaughtUp = "outbox_caught_up",
        /// At least `gate_min_comparisons` comparisons, and the upper confidence bound of the
        /// inconsistency ratio below `max_inconsistency`. Needed to leave `shadow` (or an
        /// earlier stage) forward: later stages compare fewer reads, or none.
        Consistency = "consistency",
        /// The orchestrator answers every read already (`live` at `read_percent = 100`), so
        /// making it primary for writes moves no read. Needed for `rampdown` and `complete`.
        ServingAll = "serving_all",
        /// The reverse outbox is delivered: legacy holds every write. Needed for `complete`,
        /// which stops delivering it.
        LegacyCaughtUp = "legacy_caught_up",
    }
}

impl Gate {
    /// Whether the gate stands between stages `from` and `to`.
    fn guards(self, from: Stage, to: Stage) -> bool {
        to > from
            && match self {
                Gate::NotRolledBack => true,
                Gate::OutboxCaughtUp => to > Stage::DualWrite,
                Gate::Consistency => from <= Stage::Shadow && to > Stage::Shadow,
                Gate::ServingAll => to > Stage::Live,
                Gate::LegacyCaughtUp => to > Stage::Rampdown,
            }
    }
}

/// A gate's decision, with the figures behind it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GateResult {
    pub gate: Gate,
    pub open: bool,
    pub detail: String,
}

/// Every gate's state for an agent under `flags` with `inputs`, whatever the move (for
/// the metrics).
pub fn evaluate(
    flags: &AgentFlags,
    inputs: &GateInputs,
    settings: &RolloutSettings,
) -> Vec<GateResult> {
    Gate::ALL
        .into_iter()
        .map(|gate| check(gate, flags, inputs, settings))
        .collect()
}

/// The gates that stand between `from` and `to`, decided; empty when the move is not
/// forward.
pub fn decide(
    from: &AgentFlags,
    to: &AgentFlags,
    inputs: &GateInputs,
    settings: &RolloutSettings,
) -> Vec<GateResult> {
    Gate::ALL
        .into_iter()
        .filter(|gate| gate.guards(from.stage, to.stage))
        .map(|gate| check(gate, from, inputs, settings))
        .collect()
}

fn check(
    gate: Gate,
    from: &AgentFlags,
    inputs: &GateInputs,
    settings: &RolloutSettings,
) -> GateResult {
    let max_age = settings.gate_max_outbox_age.as_secs_f64();
    let (open, detail) = match gate {
        Gate::NotRolledBack => (
            !inputs.rolled_back,
            if inputs.rolled_back {
                "a rollback holds: resume first".to_owned()
            } else {
                "no rollback holds".to_owned()
            },
        ),
        Gate::OutboxCaughtUp => {
            let open = inputs.dead_letters == 0 && inputs.outbox_oldest_age_seconds <= max_age;
            let detail = format!(
                "{} pending, oldest {:.1} s (at most {max_age:.0} s), {} dead letters",
                inputs.outbox_pending, inputs.outbox_oldest_age_seconds, inputs.dead_letters
            );
            (open, detail)
        }
        Gate::Consistency => {
            let n = inputs.matches + inputs.mismatches;
            let z = two_sided_z(settings.auto.confidence);
            let upper = wilson(inputs.mismatches, n, z).1;
            let max = settings.auto.max_inconsistency;
            let open = n >= settings.gate_min_comparisons && upper <= max;
            let detail = format!(
                "{} mismatches in {n} comparisons (at least {}), upper bound {:.3} % (at most {:.3} %)",
                inputs.mismatches,
                settings.gate_min_comparisons,
                upper * 100.0,
                max * 100.0
            );
            (open, detail)
        }
        Gate::ServingAll => {
            let open = from.stage >= Stage::Rampdown
                || (from.stage == Stage::Live && from.read_percent == crate::flags::Percent::ALL);
            let detail = format!(
                "now {} with read_percent {} (needs live at 100 %, or later)",
                from.stage, from.read_percent
            );
            (open, detail)
        }
        Gate::LegacyCaughtUp => {
            let open =
                inputs.reverse_dead_letters == 0 && inputs.reverse_oldest_age_seconds <= max_age;
            let detail = format!(
                "{} writes on their way to legacy, oldest {:.1} s (at most {max_age:.0} s), {} dead letters",
                inputs.reverse_pending,
                inputs.reverse_oldest_age_seconds,
                inputs.reverse_dead_letters
            );
            (open, detail)
        }
    };
    GateResult { gate, open, detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(stage: Stage) -> AgentFlags {
        AgentFlags {
            stage,
            ..AgentFlags::default()
        }
    }

    fn healthy() -> GateInputs {
        GateInputs {
            matches: 10_000,
            ..GateInputs::default()
        }
    }

    fn closed(from: Stage, to: Stage, inputs: &GateInputs) -> Vec<&'static str> {
        decide(
            &flags(from),
            &flags(to),
            inputs,
            &RolloutSettings::default(),
        )
        .into_iter()
        .filter(|r| !r.open)
        .map(|r| r.gate.as_label())
        .collect()
    }

    #[test]
    fn backward_moves_and_same_stage_are_never_gated() {
        let awful = GateInputs {
            dead_letters: 5,
            mismatches: 500,
            rolled_back: true,
            ..GateInputs::default()
        };
        for (from, to) in [
            (Stage::Live, Stage::Shadow),
            (Stage::Live, Stage::Off),
            (Stage::Shadow, Stage::Shadow),
        ] {
            let gates = decide(
                &flags(from),
                &flags(to),
                &awful,
                &RolloutSettings::default(),
            );
            assert!(gates.is_empty(), "{from} → {to}: {gates:?}");
        }
    }

    #[test]
    fn each_stage_has_its_gates_and_skipping_a_stage_skips_none() {
        let ok = healthy();
        assert!(closed(Stage::Off, Stage::Live, &ok).is_empty());
        let stuck = GateInputs {
            outbox_oldest_age_seconds: 600.0,
            ..healthy()
        };
        assert!(closed(Stage::Off, Stage::DualWrite, &stuck).is_empty());
        assert_eq!(
            closed(Stage::DualWrite, Stage::Shadow, &stuck),
            ["outbox_caught_up"]
        );
        let few = GateInputs {
            matches: 10,
            ..GateInputs::default()
        };
        assert!(closed(Stage::DualWrite, Stage::Shadow, &few).is_empty());
        assert_eq!(closed(Stage::Shadow, Stage::Live, &few), ["consistency"]);
        assert_eq!(closed(Stage::Off, Stage::Live, &few), ["consistency"]);
    }

    #[test]
    fn rampdown_needs_every_read_served_and_complete_needs_legacy_caught_up() {
        let ok = healthy();
        let live = |read: &str| AgentFlags {
            stage: Stage::Live,
            read_percent: crate::flags::Percent::parse(read).unwrap(),
            ..AgentFlags::default()
        };
        let settings = RolloutSettings::default();
        let labels = |from: &AgentFlags, to: Stage, inputs: &GateInputs| -> Vec<&'static str> {
            decide(from, &flags(to), inputs, &settings)
                .into_iter()
                .filter(|r| !r.open)
                .map(|r| r.gate.as_label())
                .collect()
        };
        assert_eq!(labels(&live("99"), Stage::Rampdown, &ok), ["serving_all"]);
        assert_eq!(closed(Stage::Shadow, Stage::Rampdown, &ok), ["serving_all"]);
        // Comparisons are not needed again after `shadow`: live at 100 % makes none.
        let none = GateInputs::default();
        assert!(labels(&live("100"), Stage::Rampdown, &none).is_empty());
        let behind = GateInputs {
            reverse_pending: 40,
            reverse_oldest_age_seconds: 900.0,
            ..healthy()
        };
        assert!(labels(&live("100"), Stage::Rampdown, &behind).is_empty());
        assert_eq!(
            closed(Stage::Rampdown, Stage::Complete, &behind),
            ["legacy_caught_up"]
        );
        assert_eq!(
            labels(&live("100"), Stage::Complete, &behind),
            ["legacy_caught_up"]
        );
        assert!(closed(Stage::Rampdown, Stage::Complete, &ok).is_empty());
    }

    #[test]
    fn consistency_wants_the_upper_bound_below_the_target() {
        // 10 000 comparisons with 5 mismatches: 0.05 %, upper bound about 0.12 %: closed.
        let some = GateInputs {
            matches: 9_995,
            mismatches: 5,
            ..GateInputs::default()
        };
        assert_eq!(closed(Stage::Shadow, Stage::Live, &some), ["consistency"]);
        let clean = GateInputs {
            matches: 20_000,
            mismatches: 2,
            ..GateInputs::default()
        };
        assert!(closed(Stage::Shadow, Stage::Live, &clean).is_empty());
    }

    #[test]
    fn a_rollback_closes_every_forward_move() {
        let held = GateInputs {
            rolled_back: true,
            ..healthy()
        };
        assert_eq!(
            closed(Stage::Off, Stage::DualWrite, &held),
            ["not_rolled_back"]
        );
    }
}
