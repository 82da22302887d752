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

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
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

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct Pattern {
    pub agent: String,
    pub action: String,
    pub paths: Vec<String>,
    pub count: i64,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
}

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
        pool: &PgPool,
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
        report.patterns = patterns(pool, &report, options.top).await?;
        report.mismatches_recorded = sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM shadow_mismatches WHERE recorded_at >= $1 AND recorded_at <= $2",
        )
        .bind(report.from)
        .bind(report.until)
        .fetch_one(pool)
        .await
        .context("counting shadow_mismatches")? as u64;
        report.reconcile = reconcile_runs(pool, &report).await?;
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

async fn patterns(pool: &PgPool, report: &Report, top: usize) -> anyhow::Result<Vec<Pattern>> {
    sqlx::query_as(
        r"SELECT agent, action, pattern AS paths, count(*) AS count,
                 min(recorded_at) AS first, max(recorded_at) AS last
              FROM (SELECT agent, action, recorded_at,
                           ARRAY(SELECT DISTINCT regexp_replace(p, '\[[0-9]+\]', '[]', 'g')
                                 FROM unnest(paths) AS p ORDER BY 1) AS pattern
                    FROM shadow_mismatches
                    WHERE recorded_at >= $1 AND recorded_at <= $2) m
              GROUP BY agent, action, pattern
              ORDER BY count(*) DESC, agent, action, pattern
              LIMIT $3",
    )
    .bind(report.from)
    .bind(report.until)
    .bind(i64::try_from(top).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await
    .context("reading shadow_mismatches")
}

/// One `reconcile_runs` row, with the agent's runs in the period.
#[derive(sqlx::FromRow)]
struct RunRow {
    agent: String,
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
    legacy_entities: i64,
    orchestrator_entities: i64,
    /// Differences by class, then entity.
    counts: sqlx::types::Json<BTreeMap<String, BTreeMap<String, u64>>>,
    repaired: i64,
    repair_failed: i64,
    runs_in_period: i64,
}

async fn reconcile_runs(pool: &PgPool, report: &Report) -> anyhow::Result<Vec<ReconcileRun>> {
    let rows: Vec<RunRow> = sqlx::query_as(
        "SELECT DISTINCT ON (agent) agent, started_at, finished_at, legacy_entities,
                orchestrator_entities, counts, repaired, repair_failed,
                count(*) FILTER (WHERE started_at >= $1 AND started_at <= $2)
                    OVER (PARTITION BY agent) AS runs_in_period
         FROM reconcile_runs
         WHERE started_at <= $2
         ORDER BY agent, started_at DESC, id DESC",
    )
    .bind(report.from)
    .bind(report.until)
    .fetch_all(pool)
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
