//! `create`, `read`, `update`, `delete`.

use super::service::{Service, fingerprint};
use crate::api::{ApiError, ErrorCode, Fields, Request};
use crate::store::{NewMemory, Update, WriteOutcome, entry_timestamp as ts};
use serde_json::{Map, Value, json};

/// The memory types of the spec, with memshift's extensions for the legacy data.
pub const MEMORY_TYPES: [&str; 7] = [
    "conversation",
    "context",
    "user_preference",
    "agent_state",
    "decision",
    "interaction",
    "entity",
];

/// TTLs up to 100 years.
const MAX_TTL_SECONDS: f64 = 100.0 * 365.0 * 86_400.0;

pub fn memory_type(f: &Fields, key: &str) -> Result<Option<String>, ApiError> {
    match f.str(key)? {
        None => Ok(None),
        Some(t) if MEMORY_TYPES.contains(&t) => Ok(Some(t.to_owned())),
        Some(_) => Err(ApiError::new(
            ErrorCode::ValidationError,
            format!("unknown memory_type (one of: {})", MEMORY_TYPES.join(", ")),
        )
        .with("field", format!("payload.{key}"))),
    }
}

fn content<'a>(f: &Fields<'a>) -> Result<Option<&'a Map<String, Value>>, ApiError> {
    let Some(content) = f.object("content")? else {
        return Ok(None);
    };
    if content
        .get("text")
        .is_some_and(|t| !t.is_string() && !t.is_null())
    {
        return Err(ApiError::new(
            ErrorCode::ValidationError,
            "payload.content.text must be a string",
        )
        .with("field", "payload.content.text"));
    }
    Ok(Some(content))
}

fn ttl(f: &Fields) -> Result<Option<f64>, ApiError> {
    match f.number("ttl", 0.0, MAX_TTL_SECONDS)? {
        Some(t) if t <= 0.0 => Err(ApiError::new(
            ErrorCode::ValidationError,
            "payload.ttl must be more than 0 seconds",
        )
        .with("field", "payload.ttl")),
        other => Ok(other),
    }
}

fn missing(field: &str) -> ApiError {
    ApiError::invalid(format!("missing field: {field}")).with("field", field)
}

pub async fn create(s: &Service, req: &Request) -> Result<Value, ApiError> {
    let m = new_memory(req)?;
    match s.store.create_memory(&m).await? {
        WriteOutcome::Created((id, at)) => {
            s.embedding_wake.notify_one();
            Ok(json!({"memory_id": id, "created_at": ts(at)}))
        }
        WriteOutcome::Repeated((id, at)) => Ok(json!({"memory_id": id, "created_at": ts(at)})),
        WriteOutcome::Conflict => Err(conflict("memory_id or idempotency_key")),
        WriteOutcome::SessionMissing => {
            Err(ApiError::new(ErrorCode::SessionNotFound, "no such session")
                .with("field", "session_id"))
        }
    }
}

/// A validated `create`, with its fingerprint. The orchestrator chooses a uuid when the
/// caller chose no `memory_id`.
fn new_memory(req: &Request) -> Result<NewMemory, ApiError> {
    let f = Fields::new(&req.payload, "payload");
    let memory_type =
        memory_type(&f, "memory_type")?.ok_or_else(|| missing("payload.memory_type"))?;
    let content = content(&f)?.ok_or_else(|| missing("payload.content"))?;
    let mut tags = f.id_list("tags", 64)?.unwrap_or_default();
    tags.sort();
    let ttl_seconds = ttl(&f)?;
    let priority = f.int("priority", 1, 10)?.unwrap_or(5) as i32;
    let memory_id = f.id("memory_id")?;
    let idempotency_key = match f.str("idempotency_key")? {
        Some(k) if !k.is_empty() && k.chars().count() <= 128 => Some(k.to_owned()),
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::ValidationError,
                "payload.idempotency_key must be a string of 1 to 128 characters",
            )
            .with("field", "payload.idempotency_key"));
        }
        None => None,
    };
    let user_id = f.id("user_id")?;
    let source_agent = f.id("source_agent")?;
    let created_at = f.time("created_at")?;
    let content = Value::Object(content.clone());
    let fingerprint = fingerprint(&json!({
        "memory_type": memory_type, "content": content, "tags": tags, "ttl": ttl_seconds,
        "priority": priority, "session_id": req.session_id, "user_id": user_id,
        "source_agent": source_agent, "created_at": created_at.map(ts),
    }));
    Ok(NewMemory {
        memory_id: memory_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        idempotency_key,
        session_id: req.session_id.clone(),
        user_id,
        memory_type,
        content,
        tags,
        ttl_seconds,
        priority,
        source_agent,
        created_at,
        fingerprint,
    })
}

/// A repeat of an id or key with different content: refused, never an overwrite.
pub fn conflict(what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::ValidationError,
        format!("a different write already used this {what}"),
    )
    .with("reason", "idempotency_conflict")
}

fn not_found() -> ApiError {
    ApiError::new(ErrorCode::MemoryNotFound, "no such memory").with("field", "payload.memory_id")
}

pub async fn read(s: &Service, req: &Request) -> Result<Value, ApiError> {
    let id = Fields::new(&req.payload, "payload").required_id("memory_id")?;
    let entry = s.store.read_memory(&id).await?.ok_or_else(not_found)?;
    Ok(entry.to_json())
}

pub async fn update(s: &Service, req: &Request) -> Result<Value, ApiError> {
    let f = Fields::new(&req.payload, "payload");
    let id = f.required_id("memory_id")?;
    let u = Update {
        content: content(&f)?.map(|c| Value::Object(c.clone())),
        tags: f.id_list("tags", 64)?,
        ttl_seconds: ttl(&f)?,
        priority: f.int("priority", 1, 10)?.map(|p| p as i32),
    };
    if u.content.is_none() && u.tags.is_none() && u.ttl_seconds.is_none() && u.priority.is_none() {
        return Err(ApiError::new(
            ErrorCode::ValidationError,
            "nothing to update: give content, tags, ttl or priority",
        ));
    }
    let (updated_at, expires_at) = s
        .store
        .update_memory(&id, &u)
        .await?
        .ok_or_else(not_found)?;
    if u.content.is_some() {
        s.embedding_wake.notify_one();
    }
    Ok(json!({"memory_id": id, "updated_at": ts(updated_at), "expires_at": expires_at.map(ts)}))
}

pub async fn delete(s: &Service, req: &Request) -> Result<Value, ApiError> {
    let id = Fields::new(&req.payload, "payload").required_id("memory_id")?;
    if s.store.delete_memory(&id).await? {
        Ok(json!({"deleted": true}))
    } else {
        Err(not_found())
    }
}
