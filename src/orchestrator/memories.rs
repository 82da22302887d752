//! `create`, `read`, `update`, `delete`.

use super::service::{Service, fingerprint};
use crate::api::{ApiError, ErrorCode, Fields, Request};
use crate::store::{NewMemory, Pairing, Update, WriteOutcome, Written, entry_timestamp as ts};
use serde_json::{Map, Value, json};

/// The memory types of the spec, with memshift's extensions for the legacy data
/// (`summary`: what a legacy agent derived and cannot rebuild, such as a contextual
/// session's summary).
pub const MEMORY_TYPES: [&str; 8] = [
    "conversation",
    "context",
    "user_preference",
    "agent_state",
    "decision",
    "interaction",
    "entity",
    "summary",
];

/// The writers a `create` may name as its `origin` (see [`crate::store::Pairing`]).
pub const ORIGINS: [&str; 2] = ["mirror", "backfill"];

/// Twins further apart than this are not twins: an hour covers any clock skew worth
/// pairing across.
const MAX_MATCH_WINDOW_SECONDS: f64 = 3600.0;

/// How far apart a mirrored and a backfilled copy of one legacy record may be, unless the
/// write says otherwise.
pub const DEFAULT_MATCH_WINDOW_SECONDS: f64 = 5.0;

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
    legacy_session_alive(s, req, &m).await?;
    let written = |w: Written| {
        let mut reply = json!({"memory_id": w.memory_id, "created_at": ts(w.created_at)});
        if let Some(twin) = w.twin_of {
            reply["twin_of"] = json!(twin);
        }
        reply
    };
    match s.store.create_memory(&m).await? {
        WriteOutcome::Created(w) => {
            if w.twin_of.is_none() {
                s.embedding_wake.notify_one();
            }
            Ok(written(w))
        }
        WriteOutcome::Repeated(w) => {
            let mut reply = written(w);
            reply["repeated"] = json!(true);
            Ok(reply)
        }
        WriteOutcome::Conflict => Err(conflict("memory_id or idempotency_key")),
        WriteOutcome::SessionMissing => {
            Err(ApiError::new(ErrorCode::SessionNotFound, "no such session")
                .with("field", "session_id"))
        }
    }
}

/// (ext) `legacy_session_expiry` {`after_seconds`, `within_seconds`, `kept`?}: the write
/// goes into a session of a legacy agent that deletes its sessions that long after their
/// creation (at the latest `within_seconds` later), and, with `kept`, the oldest past its
/// `kept` newest at the same pace; it refuses writes into them from then on. A write the
/// orchestrator takes first must be refused likewise: `session_not_found` once the agent
/// has certainly deleted it, and `validation_error` (`reason: session_expiring`) while it
/// may have, so that the agent decides.
async fn legacy_session_alive(s: &Service, req: &Request, m: &NewMemory) -> Result<(), ApiError> {
    let p = Fields::new(&req.payload, "payload");
    let Some(expiry) = p.nested("legacy_session_expiry", "payload.legacy_session_expiry")? else {
        return Ok(());
    };
    let seconds = |key| -> Result<chrono::Duration, ApiError> {
        let n = expiry
            .number(key, 0.0, 1e9)?
            .ok_or_else(|| missing(&format!("payload.legacy_session_expiry.{key}")))?;
        Ok(chrono::Duration::microseconds((n * 1e6) as i64))
    };
    let (after, within) = (seconds("after_seconds")?, seconds("within_seconds")?);
    let kept = expiry.int("kept", 1, 1_000_000)?;
    let Some(session) = &m.session_id else {
        return Ok(());
    };
    let Some(created) = s.store.session_created_at(session).await? else {
        return Ok(()); // the insert itself finds the session missing
    };
    // From when the agent may delete it: its hour, or the session that pushed it out.
    let mut due = created + after;
    if let Some(kept) = kept
        && let Some(pushed_out) = s.store.session_pushed_out_at(session, kept).await?
    {
        due = due.min(pushed_out);
    }
    let now = chrono::Utc::now();
    if now >= due + within {
        Err(ApiError::new(ErrorCode::SessionNotFound, "no such session")
            .with("field", "session_id"))
    } else if now >= due {
        Err(ApiError::new(
            ErrorCode::ValidationError,
            "the legacy agent may be deleting this session",
        )
        .with("field", "session_id")
        .with("reason", "session_expiring"))
    } else {
        Ok(())
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
    let pairing = pairing(&f)?;
    let content = Value::Object(content.clone());
    let fingerprint = fingerprint(&json!({
        "memory_type": memory_type, "content": content, "tags": tags, "ttl": ttl_seconds,
        "priority": priority, "session_id": req.session_id, "user_id": user_id,
        "source_agent": source_agent, "created_at": created_at.map(ts),
        "origin": pairing.as_ref().map(|p| &p.origin),
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
        pairing,
    })
}

/// (ext) `origin` (one of [`ORIGINS`]) and `match_window` (seconds): pair the write with
/// its twin from the other origin.
fn pairing(f: &Fields) -> Result<Option<Pairing>, ApiError> {
    let window = f.number("match_window", 0.0, MAX_MATCH_WINDOW_SECONDS)?;
    match f.str("origin")? {
        None if window.is_some() => Err(ApiError::new(
            ErrorCode::ValidationError,
            "payload.match_window needs payload.origin",
        )
        .with("field", "payload.match_window")),
        None => Ok(None),
        Some(o) if ORIGINS.contains(&o) => Ok(Some(Pairing {
            origin: o.to_owned(),
            window_seconds: window.unwrap_or(DEFAULT_MATCH_WINDOW_SECONDS),
        })),
        Some(_) => Err(ApiError::new(
            ErrorCode::ValidationError,
            format!("unknown origin (one of: {})", ORIGINS.join(", ")),
        )
        .with("field", "payload.origin")),
    }
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
