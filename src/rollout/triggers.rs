//! The plan's automatic rollback triggers over a sliding window of one agent's traffic.
//!
//! Every second the proxy adds what happened in that second (a [`Tally`]) and asks each
//! trigger whether it holds. Three rules keep the answer honest:
//! - **A minimum sample.** Fewer than `min_samples` samples decide nothing. When the recent
//!   `window` holds too few, it is stretched back (up to `max_window`) until it holds
//!   enough, so a quiet hour can neither trip a trigger on three unlucky reads nor hide a
//!   fault by never reaching the minimum.
//! - **A confidence bound.** A trigger breaches when the *lower* bound of its estimate is
//!   past the threshold (Wilson's interval for ratios, a binomial bound on the median for
//!   latency): a fault must be significant, not just visible.
//! - **Hysteresis.** A breach must hold for `hold` evaluations in a row to fire. The count
//!   resets only when the point estimate falls back below the threshold; in between (the
//!   estimate above the threshold, the bound not yet) it neither grows nor resets.
//!
//! Firing latches in [`super::Rollout`]; this module only measures.

use crate::config::AutoRollback;
use statrs::distribution::{ContinuousCDF, Normal};
use std::collections::VecDeque;

crate::labels! {
    /// One of the plan's three triggers.
    #[derive(PartialOrd, Ord)]
    pub enum Trigger {
        /// Mismatches over matches plus mismatches above 0.1 %.
        Inconsistency = "inconsistency",
        /// The orchestrator's median read time above legacy's by more than 100 ms.
        Latency = "latency",
        /// Failed orchestrator calls above 1 %.
        Errors = "errors",
    }
}

/// Latency samples in the buckets of [`crate::metrics::BACKEND_BUCKETS`] (plus one for
/// everything above the last bound), not cumulative.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Buckets(pub Vec<u64>);

impl Buckets {
    fn add(&mut self, other: &Buckets) {
        if self.0.len() < other.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a += b;
        }
    }

    pub fn count(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The `q` quantile, interpolated linearly inside its bucket (as PromQL's
    /// `histogram_quantile` does); `None` without samples.
    pub fn quantile(&self, bounds: &[f64], q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * n as f64;
        let mut seen = 0.0;
        for (i, &c) in self.0.iter().enumerate() {
            let c = c as f64;
            if c > 0.0 && seen + c >= rank {
                let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
                let Some(&upper) = bounds.get(i) else {
                    // Above the last bound: all that is known is that it is past it.
                    return Some(lower);
                };
                return Some(lower + (upper - lower) * ((rank - seen) / c));
            }
            seen += c;
        }
        bounds.last().copied()
    }
}

/// What one agent did in one second, as the triggers see it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    pub matches: u64,
    pub mismatches: u64,
    /// Calls to the orchestrator (reads asked, operations delivered) and how many failed
    /// (an error, a timeout, no answer).
    pub calls: u64,
    pub errors: u64,
    /// Read times of the orchestrator and of legacy.
    pub orchestrator: Buckets,
    pub legacy: Buckets,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.matches += other.matches;
        self.mismatches += other.mismatches;
        self.calls += other.calls;
        self.errors += other.errors;
        self.orchestrator.add(&other.orchestrator);
        self.legacy.add(&other.legacy);
    }
}

/// A trigger's figures at one evaluation, for the log and the metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    pub trigger: Trigger,
    /// Samples the estimate rests on (after stretching the window).
    pub samples: u64,
    /// The point estimate (a ratio, or seconds added), `None` below the minimum sample.
    pub value: Option<f64>,
    /// The lower confidence bound of the estimate.
    pub bound: Option<f64>,
    pub threshold: f64,
    /// The bound is past the threshold.
    pub breach: bool,
    /// The breach has held `hold` evaluations: the trigger fires.
    pub fired: bool,
}

impl Reading {
    /// `"inconsistency 1.20 % (lower bound 0.61 %, 2000 samples, threshold 0.10 %)"`.
    pub fn describe(&self) -> String {
        let show = |v: f64| match self.trigger {
            Trigger::Latency => format!("{:.1} ms", v * 1000.0),
            _ => format!("{:.2} %", v * 100.0),
        };
        match (self.value, self.bound) {
            (Some(v), Some(b)) => format!(
                "{} {} (lower bound {}, {} samples, threshold {})",
                self.trigger.as_label(),
                show(v),
                show(b),
                self.samples,
                show(self.threshold)
            ),
            _ => format!(
                "{}: {} samples, too few to decide",
                self.trigger.as_label(),
                self.samples
            ),
        }
    }
}

/// The sliding window and the triggers' hysteresis of one agent.
pub struct Evaluator {
    settings: AutoRollback,
    bounds: &'static [f64],
    /// One tally per evaluation (a second), newest last, at most `max_window` of them.
    seconds: VecDeque<Tally>,
    /// Consecutive breaches per trigger.
    held: [u32; 3],
    z: f64,
}

impl Evaluator {
    pub fn new(settings: AutoRollback, bounds: &'static [f64]) -> Evaluator {
        let z = two_sided_z(settings.confidence);
        Evaluator {
            settings,
            bounds,
            seconds: VecDeque::new(),
            held: [0; 3],
            z,
        }
    }

    /// Forgets everything seen: after an operator clears a rollback, the traffic that
    /// tripped it must not trip it again.
    pub fn reset(&mut self) {
        self.seconds.clear();
        self.held = [0; 3];
    }

    /// Adds one second of traffic and reads every trigger.
    pub fn push(&mut self, tally: Tally) -> Vec<Reading> {
        let capacity = self.settings.max_window.as_secs().max(1) as usize;
        if self.seconds.len() == capacity {
            self.seconds.pop_front();
        }
        self.seconds.push_back(tally);
        Trigger::ALL
            .into_iter()
            .enumerate()
            .map(|(i, trigger)| {
                let mut reading = self.read(trigger);
                self.held[i] = match (reading.breach, reading.value) {
                    (true, _) => self.held[i] + 1,
                    (false, Some(v)) if v >= reading.threshold => self.held[i],
                    _ => 0,
                };
                reading.fired = self.held[i] >= self.settings.hold;
                reading
            })
            .collect()
    }

    /// The newest seconds that cover `window`, stretched back until `trigger` has its
    /// minimum sample or `max_window` is reached.
    fn span(&self, trigger: Trigger) -> Tally {
        let window = self.settings.window.as_secs().max(1) as usize;
        let mut sum = Tally::default();
        for (taken, second) in self.seconds.iter().rev().enumerate() {
            if taken >= window && samples(trigger, &sum) >= self.settings.min_samples {
                break;
            }
            sum.add(second);
        }
        sum
    }

    fn read(&self, trigger: Trigger) -> Reading {
        let sum = self.span(trigger);
        let n = samples(trigger, &sum);
        let s = &self.settings;
        let threshold = match trigger {
            Trigger::Inconsistency => s.max_inconsistency,
            Trigger::Latency => s.max_added_latency.as_secs_f64(),
            Trigger::Errors => s.max_error_rate,
        };
        let estimate = if n < s.min_samples {
            None
        } else {
            match trigger {
                Trigger::Inconsistency => Some(ratio(sum.mismatches, n, self.z)),
                Trigger::Errors => Some(ratio(sum.errors, n, self.z)),
                Trigger::Latency => self.added_latency(&sum),
            }
        };
        Reading {
            trigger,
            samples: n,
            value: estimate.map(|(v, _)| v),
            bound: estimate.map(|(_, b)| b),
            threshold,
            breach: estimate.is_some_and(|(_, bound)| bound > threshold),
            fired: false,
        }
    }

    /// The orchestrator's median over legacy's, and its lower bound: the orchestrator's
    /// quantile at `0.5 − z·½/√n` (the binomial bound on a median) over legacy's median.
    /// Legacy answers few reads when the orchestrator serves most; then its median comes
    /// from the whole history kept, and without any, legacy counts as instant (which can
    /// only make the trigger more careful).
    fn added_latency(&self, sum: &Tally) -> Option<(f64, f64)> {
        let n = sum.orchestrator.count() as f64;
        let mut legacy = sum.legacy.clone();
        if legacy.count() < 30 {
            legacy = Buckets::default();
            for second in &self.seconds {
                legacy.add(&second.legacy);
            }
        }
        let baseline = legacy.quantile(self.bounds, 0.5).unwrap_or(0.0);
        let median = sum.orchestrator.quantile(self.bounds, 0.5)?;
        let low_q = 0.5 - self.z * 0.5 / n.sqrt();
        let low = sum.orchestrator.quantile(self.bounds, low_q)?;
        Some((median - baseline, low - baseline))
    }
}

fn samples(trigger: Trigger, tally: &Tally) -> u64 {
    match trigger {
        Trigger::Inconsistency => tally.matches + tally.mismatches,
        Trigger::Errors => tally.calls,
        Trigger::Latency => tally.orchestrator.count(),
    }
}

/// `(k/n, Wilson lower bound)`.
fn ratio(k: u64, n: u64, z: f64) -> (f64, f64) {
    (k as f64 / n as f64, wilson(k, n, z).0)
}

/// Wilson's score interval for `k` successes in `n` trials: `(lower, upper)`.
pub fn wilson(k: u64, n: u64, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n = n as f64;
    let p = k as f64 / n;
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n);
    let spread = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    let denominator = 1.0 + z2 / n;
    (
        ((centre - spread) / denominator).max(0.0),
        ((centre + spread) / denominator).min(1.0),
    )
}

/// The normal quantile of a two-sided `confidence` (0.95 → 1.96).
pub fn two_sided_z(confidence: f64) -> f64 {
    let normal = Normal::standard();
    normal.inverse_cdf(0.5 + confidence / 2.0)
}

#[cfg(test)]
mod tests;
