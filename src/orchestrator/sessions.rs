//! `create_session`, `end_session`.

use super::memories::conflict;
use super::service::{Service, fingerprint};
use crate::api::{ApiError, ErrorCode, Fields, Request};
use crate::store::{NewSession, WriteOutcome, entry_timestamp as ts};
use serde_json::{Map, Value, json};

const DEFAULT_SESSION_TYPE: &str = "conversation";

pub async fn create(s: &Service, req: &Request) -> Result<Value, ApiError> {
    let f = Fields::new(&req.payload, "payload");
    let user_id = f.id("user_id")?;
    let metadata = f
        .object("session_metadata")?
        .cloned()
        .unwrap_or_else(Map::new);
    let session_type = match metadata
        .get("session_type")
        .or_else(|| req.payload.get("session_type"))
    {
        None | Some(Value::Null) => DEFAULT_SESSION_TYPE.to_owned(),
        Some(Value::String(t)) if !t.is_empty() && t.chars().count() <= 32 => t.clone(),
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::ValidationError,
                "session_type must be a string of 1 to 32 characters",
            )
            .with("field", "payload.session_metadata.session_type"));
        }
    };
    let session_id = f.id("session_id")?;
    let created_at = f.time("created_at")?;
    let if_absent = f.bool("if_absent")?.unwrap_or(false);
    let metadata = Value::Object(metadata);
    let fingerprint = fingerprint(&json!({
        "user_id": user_id, "metadata": metadata, "session_type": session_type,
        "created_at": created_at.map(ts),
    }));
    let new = NewSession {
        session_id: session_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        user_id,
        metadata,
        session_type,
        created_at,
        fingerprint,
        if_absent,
    };
    match s.store.create_session(&new).await? {
        WriteOutcome::Created((id, at)) | WriteOutcome::Repeated((id, at)) => {
            Ok(json!({"session_id": id, "created_at": ts(at)}))
        }
        WriteOutcome::Conflict | WriteOutcome::SessionMissing => Err(conflict("session_id")),
    }
}

pub async fn end(s: &Service, req: &Request) -> Result<Value, ApiError> {
    let Some(session_id) = &req.session_id else {
        return Err(ApiError::invalid("missing field: session_id").with("field", "session_id"));
    };
    let f = Fields::new(&req.payload, "payload");
    let summary = f.str("summary")?;
    let archive = f.bool("archive")?.unwrap_or(false);
    let ended = s
        .store
        .end_session(session_id, summary, archive)
        .await?
        .ok_or_else(|| {
            ApiError::new(ErrorCode::SessionNotFound, "no such session").with("field", "session_id")
        })?;
    Ok(json!({
        "session_id": ended.session_id,
        "ended_at": ts(ended.ended_at),
        "is_archived": ended.is_archived,
    }))
}
