//! Translation: what a legacy write means for the orchestrator.
//!
//! Pure. Given one request and the legacy agent's reply, a profile decides whether the
//! write succeeded — by that agent's own success signal, quirks included — and, if it did,
//! which orchestrator operations mirror it ([`MirrorOp`]), all under one key (the session
//! or the user), so that a key's operations can be delivered in order.
//!
//! Ids: legacy writes mostly carry none (a session interaction's reply has no id, a jarvis
//! memory has only the agent's clock), so the ids of mirrored memories come from the
//! outbox entry that carries them: [`MirrorOp::to_call`] derives a uuid v5 from the entry's
//! unique, stable op id. A retried or replayed delivery of the same entry therefore sends
//! the same id, and the orchestrator's idempotent writes turn it into one row. Ids the
//! agent chose (a session uuid) are carried over as they are.

mod contextual;
mod jarvis;
mod plan;
mod session;

pub use plan::{Plan, Refusal, plan};

use crate::api::Action;
use crate::profile::Profile;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// One orchestrator operation standing for (part of) a legacy write.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MirrorOp {
    /// `create_session` unless the session exists (it may predate the mirror); with
    /// `exclusive`, a session that exists already is a conflict (a write the orchestrator
    /// takes first, where a duplicate must be refused as legacy would), and the session's
    /// `created_at` is the write's, so that a repeat of the same op is still recognised.
    EnsureSession {
        session_id: String,
        user_id: Option<String>,
        metadata: Value,
        session_type: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        exclusive: bool,
    },
    /// `create` with the id `memory_id`, or else one derived from the op id.
    CreateMemory {
        session_id: Option<String>,
        user_id: Option<String>,
        memory_type: String,
        content: Value,
        source_agent: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        memory_id: Option<String>,
    },
    /// `bulk_delete` of one memory type in a session or for a user.
    DeleteMemories {
        session_id: Option<String>,
        user_id: Option<String>,
        memory_type: String,
    },
    /// `end_session` with `archive`: the legacy session is gone.
    EndSession { session_id: String },
    /// `delete` of one memory: a row legacy does not have (a reconcile's repair).
    DeleteMemory { memory_id: String },
}

/// A successful legacy write and its mirror.
#[derive(Clone, Debug, PartialEq)]
pub struct Mirror {
    /// Orders delivery (a key's operations never overtake each other) and buckets
    /// `mirror_percent`.
    pub key: String,
    pub ops: Vec<MirrorOp>,
}

/// What one request and its reply mean for the mirror.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Not a write (a read, health, an unknown action, not JSON).
    NotAWrite,
    /// A write the legacy agent refused: never mirrored. The reason is a fixed label.
    Failed(&'static str),
    Mirror(Mirror),
}

/// One call of the orchestrator's API.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub action: Action,
    pub session_id: Option<String>,
    pub payload: Value,
}

impl Call {
    /// The request's JSON text, with `request_id` (to match the answer) and the time.
    pub fn body(self, request_id: &str) -> String {
        let mut request = Map::new();
        request.insert("action".into(), json!(self.action.name()));
        if let Some(sid) = self.session_id {
            request.insert("session_id".into(), json!(sid));
        }
        request.insert("payload".into(), self.payload);
        request.insert("request_id".into(), json!(request_id));
        request.insert("timestamp".into(), json!(crate::api::now()));
        Value::Object(request).to_string()
    }
}

/// Which writer sends an op: the proxy's mirror, or the backfill with how far apart in time
/// its copy of a legacy record and the mirror's may be. The orchestrator pairs the two
/// copies of one record into one row (see the migration `backfill`).
#[derive(Clone, Debug, PartialEq)]
pub enum Origin {
    Mirror,
    Backfill { match_window: std::time::Duration },
}

/// Namespace of the uuid v5 ids of mirrored memories.
const ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6d656d73_6869_6674_8000_6d6972726f72);

impl MirrorOp {
    /// The orchestrator action this op becomes.
    pub fn operation(&self) -> &'static str {
        match self {
            MirrorOp::EnsureSession { .. } => Action::CreateSession.name(),
            MirrorOp::CreateMemory { .. } => Action::Create.name(),
            MirrorOp::DeleteMemories { .. } => Action::BulkDelete.name(),
            MirrorOp::EndSession { .. } => Action::EndSession.name(),
            MirrorOp::DeleteMemory { .. } => Action::Delete.name(),
        }
    }

    /// The API call for this op. `op_id` is unique and stable per op (the outbox names
    /// each entry for good): memory ids are derived from it. `accepted_at`, when the legacy
    /// agent accepted the write, becomes a created memory's `created_at`, so that the
    /// orchestrator's chronology is the legacy one however late the delivery.
    pub fn to_call(&self, op_id: &str, accepted_at: DateTime<Utc>) -> Call {
        self.to_call_as(op_id, accepted_at, &Origin::Mirror)
    }

    /// [`MirrorOp::to_call`] for a writer of the given origin.
    pub fn to_call_as(&self, op_id: &str, accepted_at: DateTime<Utc>, origin: &Origin) -> Call {
        match self {
            MirrorOp::EnsureSession {
                session_id,
                user_id,
                metadata,
                session_type,
                exclusive,
            } => {
                let mut meta = metadata.as_object().cloned().unwrap_or_default();
                meta.insert("session_type".into(), json!(session_type));
                // The time: an exclusive create's fingerprint, the creation time of a
                // session made by its first mirrored write, and a backfilled session's
                // legacy time (an earlier one wins).
                Call {
                    action: Action::CreateSession,
                    session_id: None,
                    payload: json!({"session_id": session_id, "user_id": user_id,
                        "session_metadata": meta, "if_absent": !exclusive,
                        "created_at": micros(accepted_at)}),
                }
            }
            MirrorOp::CreateMemory {
                session_id,
                user_id,
                memory_type,
                content,
                source_agent,
                memory_id,
            } => {
                let id = memory_id.clone().unwrap_or_else(|| {
                    uuid::Uuid::new_v5(&ID_NAMESPACE, op_id.as_bytes()).to_string()
                });
                let mut payload = json!({"memory_id": id, "memory_type": memory_type,
                    "content": content, "user_id": user_id, "source_agent": source_agent,
                    "created_at": micros(accepted_at)});
                match origin {
                    Origin::Mirror => payload["origin"] = json!("mirror"),
                    Origin::Backfill { match_window } => {
                        payload["origin"] = json!("backfill");
                        payload["match_window"] = json!(match_window.as_secs_f64());
                    }
                }
                Call {
                    action: Action::Create,
                    session_id: session_id.clone(),
                    payload,
                }
            }
            MirrorOp::DeleteMemories {
                session_id,
                user_id,
                memory_type,
            } => {
                let mut filter = Map::new();
                filter.insert("memory_type".into(), json!(memory_type));
                if let Some(s) = session_id {
                    filter.insert("session_id".into(), json!(s));
                }
                if let Some(u) = user_id {
                    filter.insert("user_id".into(), json!(u));
                }
                Call {
                    action: Action::BulkDelete,
                    session_id: None,
                    payload: json!({"filter": filter}),
                }
            }
            MirrorOp::EndSession { session_id } => Call {
                action: Action::EndSession,
                session_id: Some(session_id.clone()),
                payload: json!({"archive": true}),
            },
            MirrorOp::DeleteMemory { memory_id } => Call {
                action: Action::Delete,
                session_id: None,
                payload: json!({"memory_id": memory_id}),
            },
        }
    }

    /// Whether the orchestrator refusing this op with `code` still leaves things as the
    /// legacy write did: ending a session that is not there (legacy deletes unknown
    /// sessions without complaint), deleting a memory that is gone.
    pub fn done_despite(&self, code: &str) -> bool {
        match self {
            MirrorOp::EndSession { .. } => code == "session_not_found",
            MirrorOp::DeleteMemory { .. } => code == "memory_not_found",
            _ => false,
        }
    }

    /// Gives the memories this op creates the ids `ids` hands out (in order), so that two
    /// deliveries of one write through different paths create one row each.
    pub fn pin_ids(&mut self, ids: &mut impl Iterator<Item = String>) {
        if let MirrorOp::CreateMemory { memory_id, .. } = self
            && let Some(id) = ids.next()
        {
            *memory_id = Some(id);
        }
    }

    /// The id this op gives the memory it creates, if it names one.
    pub fn memory_id(&self) -> Option<&str> {
        match self {
            MirrorOp::CreateMemory { memory_id, .. } => memory_id.as_deref(),
            _ => None,
        }
    }
}

/// A time as the orchestrator takes it: RFC 3339, UTC, to the microsecond.
pub fn micros(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The verdict on one request/reply pair of `profile`.
pub fn translate(profile: Profile, request: &[u8], reply: &[u8]) -> Verdict {
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(request) else {
        return Verdict::NotAWrite;
    };
    let Some(action) = req.get("action").and_then(Value::as_str) else {
        return Verdict::NotAWrite;
    };
    let reply: Value = serde_json::from_slice(reply).unwrap_or(Value::Null);
    match profile {
        Profile::SessionMemory => session::translate(action, &req, &reply),
        Profile::ContextualMemory => contextual::translate(action, &req, &reply),
        Profile::JarvisMemory => jarvis::translate(action, &req, &reply),
    }
}

/// A read that changed the legacy agent's own state, and the operations that keep the
/// change with its key.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadEffect {
    pub mirror: Mirror,
    /// Whether the same read again right after changes nothing more.
    pub idempotent: bool,
}

/// What a read did to the agent's state that later answers depend on: contextual_memory's
/// `get_context` cuts the summary it holds ([`crate::answer::CutState`]). `None` for every
/// other read, and for one that changed nothing.
pub fn read_effect(profile: Profile, request: &[u8], reply: &[u8]) -> Option<ReadEffect> {
    if !profile.reads_change_state() {
        return None;
    }
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(request) else {
        return None;
    };
    let reply: Value = serde_json::from_slice(reply).ok()?;
    match profile {
        Profile::ContextualMemory => contextual::read_effect(&req, &reply),
        Profile::SessionMemory | Profile::JarvisMemory => None,
    }
}

/// The verdict on a write the agent is known to have accepted: a record of its store, given
/// as the request that made it (see [`crate::legacy`]). The translation is the mirror's,
/// with the agent's own success reply.
pub fn accepted(profile: Profile, request: &Map<String, Value>) -> Verdict {
    let Some(action) = request.get("action").and_then(Value::as_str) else {
        return Verdict::NotAWrite;
    };
    match profile {
        Profile::SessionMemory => {
            let reply = json!({"status": "success",
                "session_id": request.get("session_id"), "request_id": ""});
            session::translate(action, request, &reply)
        }
        Profile::ContextualMemory => {
            let reply = json!({"status": "error", "message": contextual::SAVED});
            contextual::translate(action, request, &reply)
        }
        Profile::JarvisMemory => jarvis::translate(action, request, &json!({"status": "ok"})),
    }
}

/// A contextual session's summary — what the agent derived from interactions it may no
/// longer keep (`code_context`, `conversation_summary`, `errors_encountered`,
/// `last_updated`; the key decisions are imported as the decisions they were) — as one
/// `summary` memory of the session.
pub fn contextual_summary(session_id: &str, summary: &Map<String, Value>) -> Mirror {
    contextual::summary(session_id, summary)
}

/// The key a request of `profile` is bucketed and ordered by, from the request alone (the
/// mirror decision is taken before the reply exists). `None` for requests without one.
pub fn key(profile: Profile, request: &[u8]) -> Option<String> {
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(request) else {
        return None;
    };
    request_key(profile, &req)
}

/// [`key`] of a parsed request: the session or user it is about, as [`id_key`] writes it
/// (`None` when it has none the agent could keep anything under).
pub fn request_key(profile: Profile, req: &Map<String, Value>) -> Option<String> {
    match profile {
        Profile::SessionMemory => session::key(req),
        Profile::ContextualMemory => contextual::key(req),
        Profile::JarvisMemory => jarvis::key(req),
    }
}

/// Marks a key that stands for an id that is not a plain string.
const TYPED: &str = "json:";

/// The orchestrator's key for a legacy id of any JSON type, as the agent tells ids apart.
///
/// The JSON agents key their dicts by the id as parsed: `None` (a missing or `null` id) is
/// another session than the string `"null"`, and `5` another than `"5"`. Python's dicts
/// also make equal numbers one key (`True`, `1` and `1.0`). So a string is its own key, and
/// anything else is `json:` and its JSON text, numbers in one form per value (`json:null`,
/// `json:5`, `json:1.5`); a string that itself starts with `json:` is written as one too
/// (`json:"json:x"`), so no two ids share a key. `None` for a list or an object: Python
/// cannot use them as dict keys (the agent refuses or ignores the write).
pub fn id_key(id: &Value) -> Option<String> {
    let typed = |text: String| Some(format!("{TYPED}{text}"));
    match id {
        Value::String(s) if !s.starts_with(TYPED) => Some(s.clone()),
        Value::String(_) | Value::Null => typed(id.to_string()),
        Value::Bool(b) => typed(u8::from(*b).to_string()),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => typed(i.to_string()),
            (None, Some(u), _) => typed(u.to_string()),
            // An integral float is the int of the same value (`1.0 == 1`).
            (None, None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => {
                typed((f as i64).to_string())
            }
            (None, None, f) => typed(crate::pyjson::float_repr(f.unwrap_or(f64::NAN))),
        },
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// The key an [`id_key`] is written under in the agent's JSON store file: `json.dump`
/// writes a `None` key as `"null"` and a number as its text, so after a restart the agent
/// itself no longer tells `None` from `"null"`. (An id that was `1.0` or `True` is written
/// `"1.0"` or `"true"`; both share the key `json:1`, read back as `"1"`.)
pub fn file_key(key: &str) -> String {
    match key.strip_prefix(TYPED).map(serde_json::from_str::<Value>) {
        Some(Ok(Value::String(s))) => s,
        Some(Ok(other)) => other.to_string(),
        _ => key.to_owned(),
    }
}

/// A legacy value as a memory's content: under `text` when it is a string (the searchable
/// text, which the API takes only as a string), else under `value`, as it is. The agents
/// store whatever JSON they are sent (a decision that is an object, a content that is a
/// number) and answer it back. Read back by `answer::value_of`.
fn put_value(content: &mut Map<String, Value>, value: Value) {
    let key = if value.is_string() { "text" } else { "value" };
    content.insert(key.into(), value);
}

/// Python's truthiness: `None`, `False`, zero, and empty strings, lists and dicts are false.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// A string field, if present and a string.
fn string(req: &Map<String, Value>, key: &str) -> Option<String> {
    req.get(key).and_then(Value::as_str).map(str::to_owned)
}

#[cfg(test)]
mod tests;
