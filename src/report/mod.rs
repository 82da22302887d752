//! `memshift report`: the daily reconciliation report.
//!
//! Three sources, each for what it keeps:
//! - **Prometheus** (the proxies' comparison, outbox and rollback metrics, over the period):
//!   consistency per agent and action, consistency over time, outbox health, rollbacks.
//! - **`shadow_mismatches`** (the mismatch store): the worst mismatch patterns, grouped by the
//!   field paths that differ (list indices folded, so `history[3].content` and
//!   `history[7].content` are one pattern).
//! - **`reconcile_runs`**: the last reconcile of each agent.
//!
//! A source that cannot be read leaves its sections empty with the reason in
//! [`Report::unavailable`]; the rest of the report is still written. Nothing here carries
//! memory contents: agents, actions, counts, times and field paths.

mod metrics;
mod render;

pub use metrics::Prometheus;

use crate::store::Store;
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// The outcomes of `memshift_comparisons_total`, in the report's column order.
pub const OUTCOMES: [&str; crate::compare::Outcome::LABELS.len()] = crate::compare::Outcome::LABELS;

#[derive(Clone, Debug)]
pub struct Options {
    pub until: DateTime<Utc>,
    pub since: Duration,
    /// Mismatch patterns listed at most.
    pub top: usize,
}

impl Options {
    pub fn start(&self) -> DateTime<Utc> {
        self.until - chrono::Duration::from_std(self.since).unwrap_or(chrono::TimeDelta::MAX)
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Comparisons per agent and action over the period.
    pub consistency: Vec<Consistency>,
    /// Consistency (matches over matches plus mismatches) over time, per agent.
    pub timeline: Vec<Timeline>,
    /// Mismatch patterns, most frequent first.
    pub patterns: Vec<Pattern>,
    /// Mismatches recorded in the period, in every pattern.
    pub mismatches_recorded: u64,
    pub outbox: Vec<Outbox>,
    pub rollbacks: Vec<Rollbacks>,
    /// The last reconcile of each agent, and how many ran in the period.
    pub reconcile: Vec<ReconcileRun>,
    /// Sources that could not be read, with the reason.
    pub unavailable: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Consistency {
    pub agent: String,
    pub action: String,
    /// Comparisons by outcome (every one of [`OUTCOMES`]).
    pub outcomes: BTreeMap<String, u64>,
}

impl Consistency {
    pub fn count(&self, outcome: &str) -> u64 {
        self.outcomes.get(outcome).copied().unwrap_or(0)
    }

    /// Matches over matches plus mismatches; `None` without either.
    pub fn ratio(&self) -> Option<f64> {
        let (m, n) = (self.count("match"), self.count("mismatch"));
        (m + n > 0).then(|| m as f64 / (m + n) as f64)
    }
}

#[derive(Debug, Serialize)]
pub struct Timeline {
    pub agent: String,
    /// (unix seconds, ratio); periods without comparisons are left out.
    pub points: Vec<(i64, f64)>,
}

pub use crate::store::report::MismatchPattern as Pattern;

#[derive(Debug, Default, Serialize)]
pub struct Outbox {
    pub agent: String,
    pub max_pending: f64,
    pub max_oldest_age_seconds: f64,
    /// Dead letters at the end of the period.
    pub dead_letters: f64,
    /// Delivery attempts by outcome (`delivered`, `retried`, `dead_lettered`).
    pub deliveries: BTreeMap<String, u64>,
    /// Accepted writes not put in the outbox.
    pub dropped: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Rollbacks {
    pub agent: String,
    /// Automatic rollbacks by trigger.
    pub automatic: BTreeMap<String, u64>,
    /// Every reason that held a rollback at some point of the period.
    pub reasons: Vec<String>,
    /// The share of the period the agent spent rolled back (on the proxy that spent most).
    pub share_rolled_back: f64,
}

#[derive(Debug, Serialize)]
pub struct ReconcileRun {
    pub agent: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub legacy_entities: i64,
    pub orchestrator_entities: i64,
    /// Differences by class (summed over entities).
    pub counts: BTreeMap<String, u64>,
    pub repaired: i64,
    pub repair_failed: i64,
    /// Runs of this agent that started in the period.
    pub runs_in_period: i64,
}

impl ReconcileRun {
    /// Differences other than known legacy drift.
    pub fn inconsistencies(&self) -> u64 {
        self.counts
            .iter()
            .filter(|(class, _)| *class != "legacy_drift")
            .map(|(_, n)| n)
            .sum()
    }
}

impl Report {
    /// Builds the report from `prometheus` (when given) and the database.
    ///
    /// # Errors
    /// The database failing; a Prometheus that fails is recorded in `unavailable` instead.
    pub async fn build(
        options: &Options,
        prometheus: Option<&Prometheus>,
        store: &Store,
    ) -> anyhow::Result<Report> {
        let mut report = Report {
            from: options.start(),
            until: options.until,
            consistency: Vec::new(),
            timeline: Vec::new(),
            patterns: Vec::new(),
            mismatches_recorded: 0,
            outbox: Vec::new(),
            rollbacks: Vec::new(),
            reconcile: Vec::new(),
            unavailable: Vec::new(),
        };
        match prometheus {
            Some(p) => {
                if let Err(e) = metrics::fill(&mut report, p, options).await {
                    report
                        .unavailable
                        .push(format!("metrics from Prometheus at {}: {e:#}", p.base()));
                }
            }
            None => report.unavailable.push(
                "metrics: no Prometheus given (--prometheus or MEMSHIFT_PROMETHEUS)".to_owned(),
            ),
        }
        report.patterns = store
            .mismatch_patterns(report.from, report.until, options.top)
            .await
            .context("reading shadow_mismatches")?;
        report.mismatches_recorded = store
            .mismatches_recorded(report.from, report.until)
            .await
            .context("counting shadow_mismatches")?;
        report.reconcile = reconcile_runs(store, &report).await?;
        Ok(report)
    }

    /// True when every source could be read.
    pub fn is_complete(&self) -> bool {
        self.unavailable.is_empty()
    }

    pub fn markdown(&self) -> String {
        render::markdown(self)
    }

    pub fn html(&self) -> String {
        render::html(self)
    }
}

async fn reconcile_runs(store: &Store, report: &Report) -> anyhow::Result<Vec<ReconcileRun>> {
    let rows = store
        .latest_reconcile_runs(report.from, report.until)
        .await
        .context("reading reconcile_runs")?;
    Ok(rows
        .into_iter()
        .map(|r| ReconcileRun {
            agent: r.agent,
            started_at: r.started_at,
            finished_at: r.finished_at,
            legacy_entities: r.legacy_entities,
            orchestrator_entities: r.orchestrator_entities,
            counts: r
                .counts
                .0
                .into_iter()
                .map(|(class, entities)| (class, entities.values().sum()))
                .collect(),
            repaired: r.repaired,
            repair_failed: r.repair_failed,
            runs_in_period: r.runs_in_period,
        })
        .collect())
}
