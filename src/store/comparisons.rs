//! `shadow_mismatches`: samples of shadow comparisons that differed.

use super::{Result, Store};
use serde_json::Value;
use sqlx::types::Json;
use std::time::Duration;

/// One sample, as a proxy reports it (contents already redacted unless it was told not to).
pub struct MismatchRecord {
    pub agent: String,
    pub action: String,
    pub key: Option<String>,
    pub paths: Vec<String>,
    pub request: Value,
    pub legacy_reply: Option<Value>,
    pub shadow_reply: Option<Value>,
    pub redacted: bool,
}

impl Store {
    /// # Errors
    /// The database failed.
    pub async fn record_mismatch(&self, r: &MismatchRecord) -> Result<i64> {
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO shadow_mismatches
                 (agent, action, key, paths, request, legacy_reply, shadow_reply, redacted)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(&r.agent)
        .bind(&r.action)
        .bind(&r.key)
        .bind(&r.paths)
        .bind(Json(&r.request))
        .bind(r.legacy_reply.as_ref().map(Json))
        .bind(r.shadow_reply.as_ref().map(Json))
        .bind(r.redacted)
        .fetch_one(self.pool())
        .await?;
        Ok(id)
    }

    /// Deletes samples older than `max_age`, then all but the newest `max_rows`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn prune_mismatches(&self, max_age: Duration, max_rows: u64) -> Result<u64> {
        let old = sqlx::query(
            "DELETE FROM shadow_mismatches WHERE recorded_at < now() - make_interval(secs => $1)",
        )
        .bind(max_age.as_secs_f64())
        .execute(self.pool())
        .await?;
        let over = sqlx::query(
            "DELETE FROM shadow_mismatches WHERE id <= (
                 SELECT id FROM shadow_mismatches ORDER BY id DESC OFFSET $1 LIMIT 1)",
        )
        .bind(max_rows as i64)
        .execute(self.pool())
        .await?;
        Ok(old.rows_affected() + over.rows_affected())
    }
}
