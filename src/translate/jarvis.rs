//! jarvis_memory: `{"status": "ok"}` means success — and so does the reminder reply, the
//! `send_proactive_event()` error the agent gives after saving a reminder. Memories belong
//! to a user (default `"default"`).

use super::{Mirror, MirrorOp, Verdict, string};
use serde_json::{Map, Value, json};

const SOURCE: &str = "jarvis_memory";
pub(super) const REMINDER_SAVED: &str =
    "send_proactive_event() got an unexpected keyword argument 'text'";

pub fn key(req: &Map<String, Value>) -> String {
    string(req, "user_id").unwrap_or_else(|| "default".into())
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
    let user = key(req);
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
