//! The Memory Orchestrator's wire protocol (`../shared/specs/orchestrator-api.md`): the
//! envelope, the actions, the error codes, and the payload field readers.
//!
//! Pure: no I/O. The orchestrator serves it; the proxy's mirror will speak it as a client.

mod fields;

pub use fields::Fields;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// Every action of the API; `(ext)` ones are memshift's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Create,
    Read,
    Update,
    Delete,
    BatchRead,
    Search,
    CreateSession,
    EndSession,
    BulkDelete,
    Summarize,
    /// (ext)
    Health,
    /// (ext) A proxy's sample of a shadow comparison that differed.
    RecordMismatch,
}

impl Action {
    pub const ALL: [Action; 12] = [
        Action::Create,
        Action::Read,
        Action::Update,
        Action::Delete,
        Action::BatchRead,
        Action::Search,
        Action::CreateSession,
        Action::EndSession,
        Action::BulkDelete,
        Action::Summarize,
        Action::Health,
        Action::RecordMismatch,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Read => "read",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::BatchRead => "batch_read",
            Action::Search => "search",
            Action::CreateSession => "create_session",
            Action::EndSession => "end_session",
            Action::BulkDelete => "bulk_delete",
            Action::Summarize => "summarize",
            Action::Health => "health",
            Action::RecordMismatch => "record_mismatch",
        }
    }

    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == name)
    }
}

crate::labels! {
    /// The API's error codes (closed set; also the `outcome` label of failed requests).
    pub enum ErrorCode {
        InvalidRequest = "invalid_request",
        MemoryNotFound = "memory_not_found",
        SessionNotFound = "session_not_found",
        PermissionDenied = "permission_denied",
        StorageError = "storage_error",
        SearchError = "search_error",
        ValidationError = "validation_error",
        RateLimitExceeded = "rate_limit_exceeded",
        InternalError = "internal_error",
    }
}

/// An error reply's `error` object. Messages name fields, never their values: requests
/// carry users' memories.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Map<String, Value>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            details: Map::new(),
        }
    }

    /// A malformed envelope or a missing field.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::InvalidRequest, message)
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> ApiError {
        self.details.insert(key.to_owned(), value.into());
        self
    }
}

/// A parsed request.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub action: Action,
    pub request_id: Option<String>,
    /// The envelope's session, if any (empty strings count as none).
    pub session_id: Option<String>,
    pub payload: Map<String, Value>,
}

/// What a reply echoes from its request, as it came (null when absent).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Echo {
    pub action: Value,
    pub request_id: Value,
}

/// A request refused while parsing: what the reply can echo, and why.
pub type Rejected = Box<(Echo, ApiError)>;

/// Parses one request body.
///
/// # Errors
/// `invalid_request` for anything but a JSON object with a known string `action`, a string
/// (or absent) `session_id` and an object (or absent) `payload`; with what the reply can
/// echo.
pub fn parse_request(body: &[u8]) -> Result<(Echo, Request), Rejected> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        let err = ApiError::invalid("request is not valid JSON")
            .with("line", e.line())
            .with("column", e.column());
        Box::new((Echo::default(), err))
    })?;
    let Value::Object(mut obj) = value else {
        let err = ApiError::invalid("request must be a JSON object");
        return Err(Box::new((Echo::default(), err)));
    };
    let echo = Echo {
        action: obj.get("action").cloned().unwrap_or(Value::Null),
        request_id: obj.get("request_id").cloned().unwrap_or(Value::Null),
    };
    let fail = |err: ApiError| Err(Box::new((echo.clone(), err)));
    let action = match obj.get("action") {
        None | Some(Value::Null) => {
            return fail(ApiError::invalid("missing field: action").with("field", "action"));
        }
        Some(Value::String(name)) => match Action::from_name(name) {
            Some(a) => a,
            None => {
                let shown: String = name.chars().take(64).collect();
                return fail(ApiError::invalid("unknown action").with("action", shown));
            }
        },
        Some(_) => {
            return fail(ApiError::invalid("action must be a string").with("field", "action"));
        }
    };
    let request_id = match obj.get("request_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    let session_id = match obj.get("session_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) if s.chars().count() <= 64 => Some(s.clone()),
        Some(Value::String(_)) => {
            return fail(
                ApiError::new(
                    ErrorCode::ValidationError,
                    "session_id is longer than 64 characters",
                )
                .with("field", "session_id"),
            );
        }
        Some(_) => {
            return fail(
                ApiError::invalid("session_id must be a string").with("field", "session_id"),
            );
        }
    };
    let payload = match obj.remove("payload") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p,
        Some(_) => {
            return fail(ApiError::invalid("payload must be an object").with("field", "payload"));
        }
    };
    Ok((
        echo,
        Request {
            action,
            request_id,
            session_id,
            payload,
        },
    ))
}

/// Only the echo of a body, for replies given without handling the request (queue full).
pub fn peek_echo(body: &[u8]) -> Echo {
    #[derive(serde::Deserialize)]
    struct Peek {
        action: Option<Value>,
        request_id: Option<Value>,
    }
    match serde_json::from_slice::<Peek>(body) {
        Ok(p) => Echo {
            action: p.action.unwrap_or(Value::Null),
            request_id: p.request_id.unwrap_or(Value::Null),
        },
        Err(_) => Echo::default(),
    }
}

/// The current time, as every API timestamp is written.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A success reply.
pub fn success(echo: &Echo, data: Value) -> Vec<u8> {
    let reply = json!({
        "status": "success",
        "action": echo.action,
        "request_id": echo.request_id,
        "data": data,
        "timestamp": now(),
    });
    serde_json::to_vec(&reply).expect("a Value always serializes")
}

/// An error reply.
pub fn error(echo: &Echo, err: &ApiError) -> Vec<u8> {
    let reply = json!({
        "status": "error",
        "action": echo.action,
        "request_id": echo.request_id,
        "error": {"code": err.code.as_label(), "message": err.message, "details": err.details},
        "timestamp": now(),
    });
    serde_json::to_vec(&reply).expect("a Value always serializes")
}

/// An error reply, as a client reads it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Failure<'r> {
    /// The error code (`bad_reply` for a reply that is not the API's).
    pub code: &'r str,
    pub message: &'r str,
    /// Whether trying again may succeed: the reply's `details.retryable`, or else whether
    /// the code is one that passes (a database that is down or slow, load shedding).
    pub retryable: bool,
}

/// Codes retried when a reply does not say whether it is retryable.
const RETRYABLE: [&str; 2] = ["storage_error", "rate_limit_exceeded"];

/// `None` for a success reply, the failure otherwise.
pub fn failure(reply: &Value) -> Option<Failure<'_>> {
    if reply.get("status").and_then(Value::as_str) == Some("success") {
        return None;
    }
    let error = reply.get("error");
    let code = error
        .and_then(|e| e.get("code"))
        .and_then(Value::as_str)
        .unwrap_or("bad_reply");
    Some(Failure {
        code,
        message: error
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .unwrap_or(""),
        retryable: error
            .and_then(|e| e.pointer("/details/retryable"))
            .and_then(Value::as_bool)
            .unwrap_or(RETRYABLE.contains(&code)),
    })
}

#[cfg(test)]
mod tests;

/// A write's fingerprint: SHA-256 of its canonical JSON (object keys sorted at every
/// level), so the same write sent again — keys in any order — matches, and any other write
/// does not.
pub fn fingerprint(write: &Value) -> String {
    let digest = Sha256::digest(canonical(write).to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), canonical(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}
