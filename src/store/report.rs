//! What `memshift report` reads of the orchestrator's database: the recorded shadow
//! mismatches, grouped into patterns, and the reconcile runs.

use super::{Result, Store};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// Mismatches of one agent and action with the same differing paths (list indices
/// folded: `context[3]` and `context[7]` are `context[]`).
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct MismatchPattern {
    pub agent: String,
    pub action: String,
    pub paths: Vec<String>,
    pub count: i64,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
}

/// An agent's latest reconcile run up to a period's end, with its runs in the period.
#[derive(Debug, sqlx::FromRow)]
pub struct ReconcileRunRow {
    pub agent: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub legacy_entities: i64,
    pub orchestrator_entities: i64,
    /// Differences by class, then entity.
    pub counts: sqlx::types::Json<BTreeMap<String, BTreeMap<String, u64>>>,
    pub repaired: i64,
    pub repair_failed: i64,
    pub runs_in_period: i64,
}

impl Store {
    /// The `top` most frequent mismatch patterns recorded from `from` to `until`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn mismatch_patterns(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        top: usize,
    ) -> Result<Vec<MismatchPattern>> {
        Ok(sqlx::query_as(
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
        .bind(from)
        .bind(until)
        .bind(i64::try_from(top).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await?)
    }

    /// Mismatches recorded from `from` to `until`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn mismatches_recorded(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM shadow_mismatches WHERE recorded_at >= $1 AND recorded_at <= $2",
        )
        .bind(from)
        .bind(until)
        .fetch_one(self.pool())
        .await?;
        Ok(n as u64)
    }

    /// Each agent's latest reconcile run up to `until`, with how many ran from `from`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn latest_reconcile_runs(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<ReconcileRunRow>> {
        Ok(sqlx::query_as(
            "SELECT DISTINCT ON (agent) agent, started_at, finished_at, legacy_entities,
                    orchestrator_entities, counts, repaired, repair_failed,
                    count(*) FILTER (WHERE started_at >= $1 AND started_at <= $2)
                        OVER (PARTITION BY agent) AS runs_in_period
             FROM reconcile_runs
             WHERE started_at <= $2
             ORDER BY agent, started_at DESC, id DESC",
        )
        .bind(from)
        .bind(until)
        .fetch_all(self.pool())
        .await?)
    }
}
