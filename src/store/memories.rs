//! Single-memory writes and reads: create (idempotent), read, update, delete, expiry.

use super::entry::{ENTRY_COLUMNS, Entry, VISIBLE};
use super::{Result, Store, StoreError};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{Postgres, Transaction};

/// A validated `create`.
#[derive(Clone, Debug)]
pub struct NewMemory {
    pub memory_id: String,
    pub idempotency_key: Option<String>,
    pub session_id: Option<String>,
    pub user_id: Option<String>,
    pub memory_type: String,
    pub content: Value,
    pub tags: Vec<String>,
    /// Seconds from `created_at` (or now) to `expires_at`.
    pub ttl_seconds: Option<f64>,
    pub priority: i32,
    pub source_agent: Option<String>,
    /// The legacy time, when mirroring or backfilling; now otherwise.
    pub created_at: Option<DateTime<Utc>>,
    /// A hash of everything above but the id: tells a retry from a conflicting write.
    pub fingerprint: String,
}

/// What an idempotent write did.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteOutcome<T> {
    /// A new row.
    Created(T),
    /// The same write had been made before: nothing changed, the original row's values.
    Repeated(T),
    /// A different write already used this id or idempotency key; nothing changed.
    Conflict,
    /// The write names a session that does not exist.
    SessionMissing,
}

/// A validated `update`: `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct Update {
    pub content: Option<Value>,
    pub tags: Option<Vec<String>>,
    pub ttl_seconds: Option<f64>,
    pub priority: Option<i32>,
}

/// SQLSTATE foreign_key_violation.
const FK_VIOLATION: &str = "23503";

impl Store {
    /// Creates a memory, or recognises a repeat of an earlier identical create.
    ///
    /// # Errors
    /// The database failed.
    pub async fn create_memory(
        &self,
        m: &NewMemory,
    ) -> Result<WriteOutcome<(String, DateTime<Utc>)>> {
        // One statement, so one round trip and atomic without a transaction: the entry,
        // its tags and its place on the embedding queue.
        let inserted: Option<(DateTime<Utc>,)> = match sqlx::query_as(
            "WITH ins AS (
                 INSERT INTO memory_entries (memory_id, session_id, user_id, memory_type, content,
                     source_agent, created_at, updated_at, expires_at, priority, idempotency_key,
                     request_fingerprint)
                 VALUES ($1, $2, $3, $4, $5, $6, COALESCE($7, now()), COALESCE($7, now()),
                     COALESCE($7, now()) + make_interval(secs => $8), $9, $10, $11)
                 ON CONFLICT DO NOTHING
                 RETURNING memory_id, created_at, text_content),
             tags AS (
                 INSERT INTO memory_tags (memory_id, tag)
                 SELECT ins.memory_id, tag FROM ins, unnest($12::text[]) AS tag
                 ON CONFLICT (memory_id, tag) DO NOTHING),
             queued AS (
                 INSERT INTO embedding_queue (memory_id)
                 SELECT memory_id FROM ins WHERE COALESCE(text_content, '') <> ''
                 ON CONFLICT (memory_id) DO NOTHING)
             SELECT created_at FROM ins",
        )
        .bind(&m.memory_id)
        .bind(&m.session_id)
        .bind(&m.user_id)
        .bind(&m.memory_type)
        .bind(Json(&m.content))
        .bind(&m.source_agent)
        .bind(m.created_at)
        .bind(m.ttl_seconds)
        .bind(m.priority)
        .bind(&m.idempotency_key)
        .bind(&m.fingerprint)
        .bind(&m.tags)
        .fetch_optional(self.pool())
        .await
        {
            Ok(row) => row,
            Err(e) => {
                let e = StoreError::from(e);
                if e.sqlstate() == Some(FK_VIOLATION) {
                    return Ok(WriteOutcome::SessionMissing);
                }
                return Err(e);
            }
        };
        match inserted {
            Some((created_at,)) => Ok(WriteOutcome::Created((m.memory_id.clone(), created_at))),
            None => self.existing_memory(m).await,
        }
    }

    /// After an insert that conflicted: the earlier row, if it was made by the same write.
    async fn existing_memory(
        &self,
        m: &NewMemory,
    ) -> Result<WriteOutcome<(String, DateTime<Utc>)>> {
        let row: Option<(String, DateTime<Utc>, Option<String>)> = sqlx::query_as(
            "SELECT memory_id, created_at, request_fingerprint FROM memory_entries
             WHERE memory_id = $1 OR idempotency_key = $2 LIMIT 1",
        )
        .bind(&m.memory_id)
        .bind(&m.idempotency_key)
        .fetch_optional(self.pool())
        .await?;
        Ok(match row {
            Some((id, created_at, Some(fp))) if fp == m.fingerprint => {
                WriteOutcome::Repeated((id, created_at))
            }
            _ => WriteOutcome::Conflict,
        })
    }

    /// A visible (active, unexpired) memory.
    ///
    /// # Errors
    /// The database failed.
    pub async fn read_memory(&self, memory_id: &str) -> Result<Option<Entry>> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM memory_entries e WHERE e.memory_id = $1 AND {VISIBLE}"
        );
        Ok(sqlx::query_as(&sql)
            .bind(memory_id)
            .fetch_optional(self.pool())
            .await?)
    }

    /// Updates a visible memory; `None` when there is none. A new content drops the old
    /// embedding and queues a new one, so search never ranks by text that is gone.
    ///
    /// # Errors
    /// The database failed.
    pub async fn update_memory(
        &self,
        memory_id: &str,
        u: &Update,
    ) -> Result<Option<(DateTime<Utc>, Option<DateTime<Utc>>)>> {
        let mut tx = self.pool().begin().await?;
        let sql = format!(
            "UPDATE memory_entries e SET
                 content = COALESCE($2, e.content),
                 priority = COALESCE($3, e.priority),
                 expires_at = CASE WHEN $4::float8 IS NULL THEN e.expires_at
                                   ELSE now() + make_interval(secs => $4) END,
                 updated_at = now()
             WHERE e.memory_id = $1 AND {VISIBLE}
             RETURNING e.updated_at, e.expires_at"
        );
        let row: Option<(DateTime<Utc>, Option<DateTime<Utc>>)> = sqlx::query_as(&sql)
            .bind(memory_id)
            .bind(u.content.as_ref().map(Json))
            .bind(u.priority)
            .bind(u.ttl_seconds)
            .fetch_optional(&mut *tx)
            .await?;
        if row.is_none() {
            tx.rollback().await?;
            return Ok(None);
        }
        if let Some(tags) = &u.tags {
            sqlx::query("DELETE FROM memory_tags WHERE memory_id = $1")
                .bind(memory_id)
                .execute(&mut *tx)
                .await?;
            set_tags(&mut tx, memory_id, tags).await?;
        }
        if u.content.is_some() {
            sqlx::query("DELETE FROM vector_embeddings WHERE memory_id = $1")
                .bind(memory_id)
                .execute(&mut *tx)
                .await?;
            queue_embedding(&mut tx, memory_id).await?;
        }
        tx.commit().await?;
        Ok(row)
    }

    /// Soft-deletes a memory. `true` if it existed (deleting it again is a success too, so
    /// a retried delete is harmless); `false` if there is no such unexpired memory.
    ///
    /// # Errors
    /// The database failed.
    pub async fn delete_memory(&self, memory_id: &str) -> Result<bool> {
        let row = sqlx::query(
            "UPDATE memory_entries
             SET is_active = false, updated_at = CASE WHEN is_active THEN now() ELSE updated_at END
             WHERE memory_id = $1 AND (expires_at IS NULL OR expires_at > now())
             RETURNING 1",
        )
        .bind(memory_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.is_some())
    }

    /// Deletes for good up to `batch` entries whose time has passed; returns how many.
    ///
    /// # Errors
    /// The database failed.
    pub async fn delete_expired(&self, batch: i64) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM memory_entries WHERE memory_id IN (
                 SELECT memory_id FROM memory_entries WHERE expires_at <= now() LIMIT $1)",
        )
        .bind(batch)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }
}

async fn set_tags(
    tx: &mut Transaction<'_, Postgres>,
    memory_id: &str,
    tags: &[String],
) -> Result<()> {
    if tags.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO memory_tags (memory_id, tag) SELECT $1, unnest($2::text[])
         ON CONFLICT (memory_id, tag) DO NOTHING",
    )
    .bind(memory_id)
    .bind(tags)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Queues the entry for an embedding if it has text (restarting the retries of an earlier
/// attempt, whose text may be gone).
async fn queue_embedding(tx: &mut Transaction<'_, Postgres>, memory_id: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO embedding_queue (memory_id)
         SELECT memory_id FROM memory_entries
         WHERE memory_id = $1 AND COALESCE(text_content, '') <> ''
         ON CONFLICT (memory_id) DO UPDATE
             SET enqueued_at = now(), attempts = 0, next_attempt_at = now(), last_error = NULL",
    )
    .bind(memory_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
