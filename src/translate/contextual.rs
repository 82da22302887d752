//! contextual_memory: a write succeeded exactly when the agent answers with the `'bool'`
//! error (its reply path crashes after the write is saved). A session is keyed by its id
//! as the agent holds it ([`super::id_key`]): a missing id is Python's `None`, another
//! session than the string `"null"`.

use super::{Mirror, MirrorOp, ReadEffect, Verdict, id_key, put_value, truthy};
use crate::answer::CutState;
use serde_json::{Map, Value, json};

const SOURCE: &str = "contextual_memory";
/// The reply that means the write was saved.
pub(super) const SAVED: &str = "'bool' object has no attribute 'get'";

/// `None` for a list or object id, which the agent cannot keep anything under.
pub fn key(req: &Map<String, Value>) -> Option<String> {
    id_key(req.get("session_id").unwrap_or(&Value::Null))
}

pub fn translate(action: &str, req: &Map<String, Value>, reply: &Value) -> Verdict {
    if action != "add_interaction" && action != "record_decision" {
        return Verdict::NotAWrite;
    }
    let saved = reply.get("status").and_then(Value::as_str) == Some("error")
        && reply.get("message").and_then(Value::as_str) == Some(SAVED)
        && reply.as_object().is_some_and(|o| o.len() == 2);
    if !saved {
        return Verdict::Failed("legacy_error");
    }
    // The agent answers its 'bool' reply to a decision for a list or object id, having
    // recorded nothing (an add for one fails with `unhashable type`).
    let Some(sid) = key(req) else {
        return Verdict::Failed("not_recorded");
    };
    let (memory_type, content) = if action == "add_interaction" {
        let mut content = Map::new();
        put_value(
            &mut content,
            req.get("content").cloned().unwrap_or(Value::Null),
        );
        content.insert(
            "type".into(),
            req.get("type").cloned().unwrap_or(Value::Null),
        );
        // The agent keeps metadata only when it is truthy (`{}`, `""`, `0` are dropped).
        if let Some(m) = req.get("metadata").filter(|m| truthy(m)) {
            content.insert("metadata".into(), m.clone());
        }
        ("context", Value::Object(content))
    } else {
        let mut content = Map::new();
        put_value(
            &mut content,
            req.get("decision").cloned().unwrap_or(Value::Null),
        );
        ("decision", Value::Object(content))
    };
    Verdict::Mirror(in_session(sid, memory_type, content))
}

/// The cut a `get_context` made to the session's summary, kept with the session.
pub fn read_effect(req: &Map<String, Value>, reply: &Value) -> Option<ReadEffect> {
    if req.get("action").and_then(Value::as_str) != Some("get_context") {
        return None;
    }
    let cut = CutState::made_by(req, reply)?;
    let sid = key(req)?;
    Some(ReadEffect {
        mirror: in_session(sid, CutState::MEMORY_TYPE, cut.content()),
        idempotent: cut.idempotent(),
    })
}

pub fn summary(sid: &str, summary: &Map<String, Value>) -> Mirror {
    let mut content = summary.clone();
    content.remove("key_decisions");
    in_session(sid.to_owned(), "summary", Value::Object(content))
}

/// One memory in a contextual session, which may not exist yet.
fn in_session(sid: String, memory_type: &str, content: Value) -> Mirror {
    let ops = vec![
        MirrorOp::EnsureSession {
            session_id: sid.clone(),
            user_id: None,
            metadata: json!({}),
            session_type: "context".into(),
            exclusive: false,
        },
        MirrorOp::CreateMemory {
            session_id: Some(sid.clone()),
            user_id: None,
            memory_type: memory_type.into(),
            content,
            source_agent: SOURCE.into(),
            memory_id: None,
        },
    ];
    Mirror { key: sid, ops }
}
