//! Sessions: idempotent creation, end and archive.

use super::memories::WriteOutcome;
use super::{Result, Store};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;

/// A validated `create_session`.
#[derive(Clone, Debug)]
pub struct NewSession {
    pub session_id: String,
    pub user_id: Option<String>,
    pub metadata: Value,
    pub session_type: String,
    /// The legacy time, when mirroring or backfilling.
    pub created_at: Option<DateTime<Utc>>,
    pub fingerprint: String,
    /// (ext) An existing session with this id is a success whatever it holds: "make sure
    /// it exists", for writes into sessions that may predate the mirror. It also completes
    /// the session with what this write knows and it lacks: a `user_id` where it has none,
    /// `metadata` keys it does not have, and an earlier `created_at` (a backfill brings the
    /// legacy session's own details to a session the mirror created bare).
    pub if_absent: bool,
}

/// A session after `end_session`.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct EndedSession {
    pub session_id: String,
    pub ended_at: DateTime<Utc>,
    pub is_archived: bool,
}

impl Store {
    /// When a session that is not archived was created; `None` when there is none.
    ///
    /// # Errors
    /// The database failed.
    pub async fn session_created_at(&self, session_id: &str) -> Result<Option<DateTime<Utc>>> {
        Ok(sqlx::query_scalar(
            "SELECT created_at FROM sessions WHERE session_id = $1 AND NOT is_archived",
        )
        .bind(session_id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// When the `kept`-th session of the same type created after `session_id` (and not
    /// deleted since) was created: a legacy agent that keeps its `kept` newest sessions has
    /// pushed this one out from then on. `None` when there are fewer, or no such session.
    ///
    /// # Errors
    /// The database failed.
    pub async fn session_pushed_out_at(
        &self,
        session_id: &str,
        kept: i64,
    ) -> Result<Option<DateTime<Utc>>> {
        Ok(sqlx::query_scalar(
            "SELECT n.created_at FROM sessions s
             JOIN sessions n ON n.session_type = s.session_type AND n.created_at > s.created_at
                AND NOT n.is_archived
             WHERE s.session_id = $1
             ORDER BY n.created_at OFFSET $2 LIMIT 1",
        )
        .bind(session_id)
        .bind(kept - 1)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Creates a session, or recognises a repeat of an earlier identical create (with
    /// `if_absent`, completes an existing one).
    ///
    /// # Errors
    /// The database failed.
    pub async fn create_session(
        &self,
        s: &NewSession,
    ) -> Result<WriteOutcome<(String, DateTime<Utc>)>> {
        // With `if_absent`, an existing session is completed in the same statement, and
        // only when something is missing, so that the mirror's "make sure it exists" before
        // every write into a session changes nothing. `xmax = 0` tells an insert from that.
        let written: Option<(DateTime<Utc>, bool)> = sqlx::query_as(
            "INSERT INTO sessions AS s (session_id, user_id, metadata, session_type, created_at,
                 updated_at, request_fingerprint)
             VALUES ($1, $2, $3, $4, COALESCE($5, now()), COALESCE($5, now()), $6)
             ON CONFLICT (session_id) DO UPDATE
                 SET user_id = COALESCE(s.user_id, $2), metadata = $3 || s.metadata,
                     created_at = LEAST(s.created_at, COALESCE($5, s.created_at)),
                     updated_at = now()
                 WHERE $7 AND ((s.user_id IS NULL AND $2 IS NOT NULL) OR $5 < s.created_at
                      OR EXISTS (SELECT 1 FROM jsonb_object_keys($3) k WHERE NOT s.metadata ? k))
             RETURNING created_at, (xmax = 0) AS inserted",
        )
        .bind(&s.session_id)
        .bind(&s.user_id)
        .bind(Json(&s.metadata))
        .bind(&s.session_type)
        .bind(s.created_at)
        .bind(&s.fingerprint)
        .bind(s.if_absent)
        .fetch_optional(self.pool())
        .await?;
        match written {
            Some((created_at, true)) => {
                return Ok(WriteOutcome::Created((s.session_id.clone(), created_at)));
            }
            Some((created_at, false)) => {
                return Ok(WriteOutcome::Repeated((s.session_id.clone(), created_at)));
            }
            None => {}
        }
        let existing: Option<(DateTime<Utc>, Option<String>)> = sqlx::query_as(
            "SELECT created_at, request_fingerprint FROM sessions WHERE session_id = $1",
        )
        .bind(&s.session_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(match existing {
            Some((created_at, fp)) if s.if_absent || fp.as_deref() == Some(&s.fingerprint) => {
                WriteOutcome::Repeated((s.session_id.clone(), created_at))
            }
            _ => WriteOutcome::Conflict,
        })
    }

    /// Ends a session (the first end's time stays, so a retried end changes nothing),
    /// records its summary and archives it if asked; `None` if there is no such session.
    ///
    /// # Errors
    /// The database failed.
    pub async fn end_session(
        &self,
        session_id: &str,
        summary: Option<&str>,
        archive: bool,
    ) -> Result<Option<EndedSession>> {
        Ok(sqlx::query_as(
            "UPDATE sessions SET
                 ended_at = COALESCE(ended_at, now()),
                 summary = COALESCE($2, summary),
                 is_archived = is_archived OR $3,
                 updated_at = now()
             WHERE session_id = $1
             RETURNING session_id, ended_at, is_archived",
        )
        .bind(session_id)
        .bind(summary)
        .bind(archive)
        .fetch_optional(self.pool())
        .await?)
    }
}
