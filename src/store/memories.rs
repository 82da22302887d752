//! Single-memory writes and reads: create (idempotent), read, update, delete, expiry.

use super::entry::{ENTRY_COLUMNS, Entry, VISIBLE};
use super::{Result, Store, StoreError};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, Postgres, Transaction};

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
    /// (ext) Pair this write with its twin from the other origin, if there is one.
    pub pairing: Option<Pairing>,
}

/// Which writer a memory comes from, and how far apart in time twins may be: the proxy's
/// mirror stamps a write with the time legacy accepted it, the backfill with the time the
/// agent stored it, and the two clocks differ by the agent's processing time (or by the
/// skew between the proxy's host and the agent's).
#[derive(Clone, Debug, PartialEq)]
pub struct Pairing {
    pub origin: String,
    pub window_seconds: f64,
}

/// A created (or repeated) memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Written {
    pub memory_id: String,
    pub created_at: DateTime<Utc>,
    /// The memory this write was found to duplicate (it is stored inactive, as its twin).
    pub twin_of: Option<String>,
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

/// A content as the text a `json` column keeps: its key order is the order the writer sent
/// (see the migration `content_order`). Bound as text and cast to `json` in SQL; a `jsonb`
/// parameter would already have lost the order.
fn json_text(content: &Value) -> String {
    content.to_string()
}

/// SQLSTATE foreign_key_violation.
const FK_VIOLATION: &str = "23503";

impl Store {
    /// Creates a memory, or recognises a repeat of an earlier identical create. A write
    /// with a [`Pairing`] is stored as the inactive twin of the row it duplicates, if any
    /// (see the migration `backfill`): under a per-owner lock, so that two writers of the
    /// same record never both find no twin.
    ///
    /// # Errors
    /// The database failed.
    pub async fn create_memory(&self, m: &NewMemory) -> Result<WriteOutcome<Written>> {
        let Some(pairing) = &m.pairing else {
            let mut conn = self.pool().acquire().await?;
            return insert_memory(&mut conn, m, None).await;
        };
        let mut tx = self.pool().begin().await?;
        let owner = match (&m.session_id, &m.user_id) {
            (Some(s), _) => format!("session:{s}"),
            (None, Some(u)) => format!("user:{u}"),
            (None, None) => "none".to_owned(),
        };
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("memshift.pairing:{owner}"))
            .execute(&mut *tx)
            .await?;
        // Plain equalities, so that the owner's index finds the candidates (IS NOT DISTINCT
        // FROM cannot use one: a backfill of 100 000 jarvis memories slowed as it went).
        let owned = match (&m.session_id, &m.user_id) {
            (Some(_), _) => "c.session_id = $1",
            (None, Some(_)) => "c.session_id IS NULL AND c.user_id = $2",
            (None, None) => "c.session_id IS NULL AND c.user_id IS NULL",
        };
        let sql = format!(
            "SELECT c.memory_id FROM memory_entries c
             WHERE {owned} AND c.memory_type = $3 AND c.content_doc = $4::jsonb
               AND c.origin IS NOT NULL AND c.origin <> $5 AND c.twin_of IS NULL
               AND c.memory_id <> $8
               AND c.created_at BETWEEN COALESCE($6, now()) - make_interval(secs => $7)
                                    AND COALESCE($6, now()) + make_interval(secs => $7)
               AND NOT EXISTS (SELECT 1 FROM memory_entries t WHERE t.twin_of = c.memory_id)
             ORDER BY abs(extract(epoch FROM c.created_at - COALESCE($6, now()))), c.memory_id
             LIMIT 1"
        );
        let twin: Option<(String,)> = sqlx::query_as(&sql)
            .bind(&m.session_id)
            .bind(&m.user_id)
            .bind(&m.memory_type)
            .bind(json_text(&m.content))
            .bind(&pairing.origin)
            .bind(m.created_at)
            .bind(pairing.window_seconds)
            .bind(&m.memory_id)
            .fetch_optional(&mut *tx)
            .await?;
        let outcome = insert_memory(&mut tx, m, twin.map(|(id,)| id)).await?;
        tx.commit().await?;
        Ok(outcome)
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
                 content = COALESCE($2::json, e.content),
                 priority = COALESCE($3, e.priority),
                 expires_at = CASE WHEN $4::float8 IS NULL THEN e.expires_at
                                   ELSE now() + make_interval(secs => $4) END,
                 updated_at = now()
             WHERE e.memory_id = $1 AND {VISIBLE}
             RETURNING e.updated_at, e.expires_at"
        );
        let row: Option<(DateTime<Utc>, Option<DateTime<Utc>>)> = sqlx::query_as(&sql)
            .bind(memory_id)
            .bind(u.content.as_ref().map(json_text))
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

/// Inserts the entry (as `twin`'s twin, inactive, if given), its tags and its place on the
/// embedding queue in one statement; or, when the id or key is taken, recognises a repeat.
async fn insert_memory(
    conn: &mut PgConnection,
    m: &NewMemory,
    twin: Option<String>,
) -> Result<WriteOutcome<Written>> {
    let inserted: Option<(DateTime<Utc>,)> = match sqlx::query_as(
        "WITH ins AS (
             INSERT INTO memory_entries (memory_id, session_id, user_id, memory_type, content,
                 source_agent, created_at, updated_at, expires_at, priority, idempotency_key,
                 request_fingerprint, origin, twin_of, is_active)
             VALUES ($1, $2, $3, $4, $5::json, $6, COALESCE($7, now()), COALESCE($7, now()),
                 COALESCE($7, now()) + make_interval(secs => $8), $9, $10, $11, $13, $14,
                 $14 IS NULL)
             ON CONFLICT DO NOTHING
             RETURNING memory_id, created_at, text_content, is_active),
         tags AS (
             INSERT INTO memory_tags (memory_id, tag)
             SELECT ins.memory_id, tag FROM ins, unnest($12::text[]) AS tag
             ON CONFLICT (memory_id, tag) DO NOTHING),
         queued AS (
             INSERT INTO embedding_queue (memory_id)
             SELECT memory_id FROM ins WHERE ins.is_active AND COALESCE(text_content, '') <> ''
             ON CONFLICT (memory_id) DO NOTHING)
         SELECT created_at FROM ins",
    )
    .bind(&m.memory_id)
    .bind(&m.session_id)
    .bind(&m.user_id)
    .bind(&m.memory_type)
    .bind(json_text(&m.content))
    .bind(&m.source_agent)
    .bind(m.created_at)
    .bind(m.ttl_seconds)
    .bind(m.priority)
    .bind(&m.idempotency_key)
    .bind(&m.fingerprint)
    .bind(&m.tags)
    .bind(m.pairing.as_ref().map(|p| &p.origin))
    .bind(&twin)
    .fetch_optional(&mut *conn)
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
    if let Some((created_at,)) = inserted {
        return Ok(WriteOutcome::Created(Written {
            memory_id: m.memory_id.clone(),
            created_at,
            twin_of: twin,
        }));
    }
    // The id or key is taken: the earlier row, if it was made by the same write.
    /// The taken row: id, time, fingerprint, twin.
    type Taken = (String, DateTime<Utc>, Option<String>, Option<String>);
    let row: Option<Taken> = sqlx::query_as(
        "SELECT memory_id, created_at, request_fingerprint, twin_of FROM memory_entries
         WHERE memory_id = $1 OR idempotency_key = $2 LIMIT 1",
    )
    .bind(&m.memory_id)
    .bind(&m.idempotency_key)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        Some((memory_id, created_at, Some(fp), twin_of)) if fp == m.fingerprint => {
            WriteOutcome::Repeated(Written {
                memory_id,
                created_at,
                twin_of,
            })
        }
        _ => WriteOutcome::Conflict,
    })
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
