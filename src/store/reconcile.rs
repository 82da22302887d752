//! What `memshift reconcile` reads of the orchestrator's database, and its record of each
//! run (read back by `memshift report`, see [`super::report`]).

use super::entry::VISIBLE;
use super::{Result, Store};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::time::Duration;

/// A memory as the orchestrator holds it (visible: active, unexpired, and so not a twin).
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct MemoryRow {
    pub memory_id: String,
    pub memory_type: String,
    pub content: sqlx::types::Json<Value>,
    pub created_at: DateTime<Utc>,
}

/// A session as the orchestrator holds it.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct SessionRow {
    pub user_id: Option<String>,
    pub metadata: sqlx::types::Json<Value>,
    pub is_archived: bool,
    /// When legacy created it: session_memory deletes a session an hour (plus the UTC
    /// offset) after its creation, however active it is.
    pub created_at: DateTime<Utc>,
    /// Sessions of its type created after it within its hour: past 100, the agent evicts
    /// it.
    pub newer: i64,
}

/// Who a legacy store's records belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// A user, outside any session (jarvis_memory).
    User,
    /// A session.
    Session,
}

/// A finished reconcile run, as recorded.
pub struct RunRecord<'a> {
    pub agent: &'a str,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub legacy_entities: u64,
    pub orchestrator_entities: u64,
    /// Differences by class, then entity (a JSON object).
    pub counts: Value,
    pub repaired: u64,
    pub repair_failed: u64,
}

impl Store {
    /// The visible memories of `types` from `source` owned by `keys`, oldest first.
    ///
    /// # Errors
    /// The database failed.
    pub async fn held_memories(
        &self,
        owner: Owner,
        keys: &[String],
        source: &str,
        types: &[&str],
    ) -> Result<Vec<MemoryRow>> {
        let owned = match owner {
            Owner::User => "e.session_id IS NULL AND e.user_id = ANY($1)",
            Owner::Session => "e.session_id = ANY($1)",
        };
        let sql = format!(
            "SELECT e.memory_id, e.memory_type, e.content, e.created_at FROM memory_entries e
             WHERE {owned} AND e.source_agent = $2 AND e.memory_type = ANY($3) AND {VISIBLE}
             ORDER BY e.created_at, e.memory_id"
        );
        Ok(sqlx::query_as(&sql)
            .bind(keys)
            .bind(source)
            .bind(types)
            .fetch_all(self.pool())
            .await?)
    }

    /// The session `key`, with the sessions of its type created after it within `window`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn held_session(&self, key: &str, window: Duration) -> Result<Option<SessionRow>> {
        Ok(sqlx::query_as(
            "SELECT s.user_id, s.metadata, s.is_archived, s.created_at,
                 (SELECT count(*) FROM sessions n
                  WHERE n.session_type = s.session_type AND n.created_at > s.created_at
                    AND n.created_at < s.created_at + make_interval(secs => $2)) AS newer
             FROM sessions s WHERE s.session_id = $1",
        )
        .bind(key)
        .bind(window.as_secs_f64())
        .fetch_optional(self.pool())
        .await?)
    }

    /// The owners of visible memories of `types` from `source`; with `conversations`, also
    /// every unarchived session of type `conversation` (session_memory's, which may hold
    /// no memory yet).
    ///
    /// # Errors
    /// The database failed.
    pub async fn held_owners(
        &self,
        owner: Owner,
        conversations: bool,
        source: &str,
        types: &[&str],
    ) -> Result<Vec<String>> {
        let sql = match (owner, conversations) {
            (Owner::User, _) => format!(
                "SELECT DISTINCT e.user_id FROM memory_entries e
                 WHERE e.session_id IS NULL AND e.user_id IS NOT NULL AND e.source_agent = $1
                   AND e.memory_type = ANY($2) AND {VISIBLE}"
            ),
            (Owner::Session, true) => format!(
                "SELECT session_id FROM sessions
                 WHERE session_type = 'conversation' AND NOT is_archived
                 UNION
                 SELECT e.session_id FROM memory_entries e
                 WHERE e.session_id IS NOT NULL AND e.source_agent = $1
                   AND e.memory_type = ANY($2) AND {VISIBLE}"
            ),
            (Owner::Session, false) => format!(
                "SELECT DISTINCT e.session_id FROM memory_entries e
                 WHERE e.session_id IS NOT NULL AND e.source_agent = $1
                   AND e.memory_type = ANY($2) AND {VISIBLE}"
            ),
        };
        Ok(sqlx::query_scalar(&sql)
            .bind(source)
            .bind(types)
            .fetch_all(self.pool())
            .await?)
    }

    /// Records a finished reconcile run for `memshift report`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn record_reconcile_run(&self, run: &RunRecord<'_>) -> Result<()> {
        sqlx::query(
            "INSERT INTO reconcile_runs (agent, started_at, finished_at, legacy_entities,
                 orchestrator_entities, counts, repaired, repair_failed)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(run.agent)
        .bind(run.started_at)
        .bind(run.finished_at)
        .bind(run.legacy_entities as i64)
        .bind(run.orchestrator_entities as i64)
        .bind(sqlx::types::Json(&run.counts))
        .bind(run.repaired as i64)
        .bind(run.repair_failed as i64)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
