//! jarvis_memory: `{"status": "ok"}` means success — and so does the reminder reply, the
//! `send_proactive_event()` error the agent gives after saving a reminder. Memories belong
//! to a user: `"default"` when the request names none, else the id as the agent keeps it
//! ([`super::id_key`]: a `null` or a number is kept under that value).

use super::{Mirror, MirrorOp, Verdict, id_key};
use serde_json::{Map, Value, json};

const SOURCE: &str = "jarvis_memory";
pub(super) const REMINDER_SAVED: &str =
    "send_proactive_event() got an unexpected keyword argument 'text'";

/// `None` for a list or object id (the agent fails on it).
pub fn key(req: &Map<String, Value>) -> Option<String> {
    match req.get("user_id") {
        None => Some("default".to_owned()),
        Some(id) => id_key(id),
    }
}

pub fn translate(action: &str, req: &Map<String, Value>, reply: &Value) -> Verdict {
    if action != "add_memory" && action != "clear_memories" {
        return Verdict::NotAWrite;
    }
    let ok = *reply == json!({"status": "ok"});
    let memory = req.get("memory").cloned().unwrap_or(Value::Null);
    let reminder = memory.get("type").and_then(Value::as_str) == Some("reminder")
        && *reply == json!({"status": "error", "reason": REMINDER_SAVED});
    let saved = ok || (action == "add_memory" && reminder);
    if !saved {
        return Verdict::Failed("legacy_error");
    }
    let Some(user) = key(req) else {
        return Verdict::Failed("legacy_error");
    };
    let op = if action == "add_memory" {
        let mut content = Map::new();
        if let Some(text) = text_of(&memory) {
            content.insert("text".into(), json!(text));
        }
        content.insert("memory".into(), memory);
        MirrorOp::CreateMemory {
            session_id: None,
            user_id: Some(user.clone()),
            memory_type: "interaction".into(),
            content: Value::Object(content),
            source_agent: SOURCE.into(),
            memory_id: None,
        }
    } else {
        MirrorOp::DeleteMemories {
            session_id: None,
            user_id: Some(user.clone()),
            memory_type: "interaction".into(),
        }
    };
    Verdict::Mirror(Mirror {
        key: user,
        ops: vec![op],
    })
}

/// The searchable text of a memory: the memory itself if it is a string, else its `text`
/// (or `content`) field.
fn text_of(memory: &Value) -> Option<&str> {
    memory
        .as_str()
        .or_else(|| memory.get("text").and_then(Value::as_str))
        .or_else(|| memory.get("content").and_then(Value::as_str))
}
