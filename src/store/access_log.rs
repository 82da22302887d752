//! `memory_access_logs`: who touched which memory. Never the memory's content.

use super::{Result, Store};
use serde_json::json;
use sqlx::types::Json;

/// One access to one memory.
#[derive(Clone, Debug)]
pub struct AccessLogRecord<'a> {
    pub memory_id: &'a str,
    pub session_id: Option<&'a str>,
    /// The writing agent (`source_agent`), when the request names one.
    pub agent_id: Option<&'a str>,
    pub operation: &'static str,
    pub request_id: Option<&'a str>,
    pub success: bool,
    /// The error code, never a message that could quote data.
    pub error_code: Option<&'static str>,
    pub ip_address: Option<&'a str>,
}

impl Store {
    /// Appends one access record.
    ///
    /// # Errors
    /// The database failed.
    pub async fn log_access(&self, r: &AccessLogRecord<'_>) -> Result<()> {
        sqlx::query(
            "INSERT INTO memory_access_logs (memory_id, session_id, agent_id, operation,
                 request_data, success, error_message, ip_address)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(r.memory_id)
        .bind(r.session_id)
        .bind(r.agent_id)
        .bind(r.operation)
        .bind(Json(
            json!({"request_id": r.request_id, "action": r.operation}),
        ))
        .bind(r.success)
        .bind(r.error_code)
        .bind(r.ip_address)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
