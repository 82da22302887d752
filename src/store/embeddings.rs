//! The embedding queue: lease, complete, fail. See the `embedding_queue` migration.

use super::{Result, Store};
use chrono::{DateTime, Utc};
use pgvector::Vector;
use std::time::Duration;

/// One leased queue row.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct QueueItem {
    pub memory_id: String,
    /// Identifies this version of the entry's text: an update re-queues it with a new time,
    /// and a stale result is then discarded.
    pub enqueued_at: DateTime<Utc>,
    pub attempts: i32,
    /// `None` when the entry lost its text or was deleted: nothing to embed.
    pub text: Option<String>,
}

/// Rows taken from the queue for a while: other workers skip them until `lease` passes.
#[derive(Debug)]
pub struct Lease {
    pub items: Vec<QueueItem>,
}

impl Store {
    /// Leases up to `batch` due rows for `lease`. Concurrent workers (several orchestrators)
    /// never take the same row: `FOR UPDATE SKIP LOCKED`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn lease_embeddings(&self, batch: i64, lease: Duration) -> Result<Lease> {
        let items = sqlx::query_as(
            "WITH picked AS (
                 SELECT memory_id FROM embedding_queue
                 WHERE next_attempt_at <= now()
                 ORDER BY next_attempt_at, memory_id
                 LIMIT $1 FOR UPDATE SKIP LOCKED)
             UPDATE embedding_queue q
             SET attempts = q.attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
             FROM picked, memory_entries e
             WHERE q.memory_id = picked.memory_id AND e.memory_id = q.memory_id
             RETURNING q.memory_id, q.enqueued_at, q.attempts,
                 CASE WHEN e.is_active THEN NULLIF(e.text_content, '') END AS text",
        )
        .bind(batch)
        .bind(lease.as_secs_f64())
        .fetch_all(self.pool())
        .await?;
        Ok(Lease { items })
    }

    /// Stores the vectors of leased rows and takes them off the queue, in one statement. A
    /// row re-queued since it was leased (its text changed) keeps its place, and its stale
    /// vector is dropped. Returns the ids stored.
    ///
    /// # Errors
    /// The database failed.
    pub async fn complete_embeddings(&self, done: &[(QueueItem, Vec<f32>)]) -> Result<Vec<String>> {
        let ids: Vec<&str> = done.iter().map(|(i, _)| i.memory_id.as_str()).collect();
        let times: Vec<DateTime<Utc>> = done.iter().map(|(i, _)| i.enqueued_at).collect();
        let vectors: Vec<Vector> = done.iter().map(|(_, v)| Vector::from(v.clone())).collect();
        let stored: Vec<(String,)> = sqlx::query_as(
            "WITH current AS (
                 DELETE FROM embedding_queue q
                 USING unnest($1::text[], $2::timestamptz[]) AS d(memory_id, enqueued_at)
                 WHERE q.memory_id = d.memory_id AND q.enqueued_at = d.enqueued_at
                 RETURNING q.memory_id)
             INSERT INTO vector_embeddings (memory_id, embedding, embedding_model)
             SELECT v.memory_id, v.embedding, $4
             FROM unnest($1::text[], $3::vector[]) AS v(memory_id, embedding)
             JOIN current ON current.memory_id = v.memory_id
             ON CONFLICT (memory_id, embedding_model)
             DO UPDATE SET embedding = excluded.embedding, created_at = now()
             RETURNING memory_id",
        )
        .bind(&ids)
        .bind(&times)
        .bind(&vectors)
        .bind(self.vectors().model())
        .fetch_all(self.pool())
        .await?;
        Ok(stored.into_iter().map(|(id,)| id).collect())
    }

    /// Takes rows with nothing to embed off the queue (unless re-queued since).
    ///
    /// # Errors
    /// The database failed.
    pub async fn discard_embeddings(&self, items: &[QueueItem]) -> Result<()> {
        let ids: Vec<&str> = items.iter().map(|i| i.memory_id.as_str()).collect();
        let times: Vec<DateTime<Utc>> = items.iter().map(|i| i.enqueued_at).collect();
        sqlx::query(
            "DELETE FROM embedding_queue q
             USING unnest($1::text[], $2::timestamptz[]) AS d(memory_id, enqueued_at)
             WHERE q.memory_id = d.memory_id AND q.enqueued_at = d.enqueued_at",
        )
        .bind(&ids)
        .bind(&times)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records a failed attempt: the rows come due again after an exponential backoff
    /// (1 s, 2 s, 4 s … capped at `max_backoff`) with the reason kept in `last_error`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn fail_embeddings(
        &self,
        items: &[QueueItem],
        reason: &str,
        max_backoff: Duration,
    ) -> Result<()> {
        let ids: Vec<&str> = items.iter().map(|i| i.memory_id.as_str()).collect();
        sqlx::query(
            "UPDATE embedding_queue
             SET next_attempt_at = now() + make_interval(secs =>
                     least($3, power(2, least(attempts, 30) - 1))),
                 last_error = $2
             WHERE memory_id = ANY($1)",
        )
        .bind(&ids)
        .bind(reason)
        .bind(max_backoff.as_secs_f64())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Rows waiting on the queue, and when the oldest was queued.
    ///
    /// # Errors
    /// The database failed.
    pub async fn embedding_backlog(&self) -> Result<(i64, Option<DateTime<Utc>>)> {
        Ok(
            sqlx::query_as("SELECT count(*), min(enqueued_at) FROM embedding_queue")
                .fetch_one(self.pool())
                .await?,
        )
    }
}
