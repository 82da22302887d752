//! One memory entry as the API returns it.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use sqlx::types::Json;

/// The columns every query selects for an entry (`e` is `memory_entries`), tags included.
pub const ENTRY_COLUMNS: &str = "e.memory_id, e.session_id, e.user_id, e.memory_type, e.content, \
     e.source_agent, e.created_at, e.updated_at, e.expires_at, e.priority, \
     COALESCE((SELECT array_agg(t.tag ORDER BY t.tag) FROM memory_tags t \
               WHERE t.memory_id = e.memory_id), '{}') AS tags";

/// What makes an entry visible: active and not expired. Every read path includes it.
pub const VISIBLE: &str = "e.is_active AND (e.expires_at IS NULL OR e.expires_at > now())";

/// A memory entry, as stored.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Entry {
    pub memory_id: String,
    pub session_id: Option<String>,
    pub user_id: Option<String>,
    pub memory_type: String,
    pub content: Json<Value>,
    pub source_agent: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub priority: i32,
    pub tags: Vec<String>,
}

/// UTC ISO-8601 with microseconds and a `Z`, the format of every timestamp in the API.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl Entry {
    /// The entry in the API's shape.
    pub fn to_json(&self) -> Value {
        json!({
            "memory_id": self.memory_id,
            "memory_type": self.memory_type,
            "content": self.content.0,
            "tags": self.tags,
            "created_at": timestamp(self.created_at),
            "updated_at": timestamp(self.updated_at),
            "expires_at": self.expires_at.map(timestamp),
            "priority": self.priority,
            "session_id": self.session_id,
            "user_id": self.user_id,
            "source_agent": self.source_agent,
        })
    }
}
