//! jarvis_memory `get_memories`: every memory of the user, oldest first, as stored.

use super::{MAX_ENTRIES, Prepared, Stored, Unsupported, epoch, query};
use serde_json::{Map, Value, json};

pub fn prepare(req: &Map<String, Value>) -> Prepared {
    match user(req) {
        Some(user) => Prepared::Fetch {
            queries: vec![query("interaction", ("user_id", &user))],
            key: user,
        },
        None => Prepared::Unsupported(Unsupported::OddParameter),
    }
}

/// `request.get("user_id", "default")`; a user id that is not a string is never mirrored.
fn user(req: &Map<String, Value>) -> Option<String> {
    match req.get("user_id") {
        None => Some("default".to_owned()),
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => None,
    }
}

pub fn answer(_req: &Map<String, Value>, data: &[Vec<Stored>]) -> Result<Value, Unsupported> {
    let memories = data.first().map_or(&[][..], Vec::as_slice);
    if memories.len() > MAX_ENTRIES {
        return Err(Unsupported::TooLarge);
    }
    let memories: Vec<Value> = memories
        .iter()
        .map(|s| {
            json!({
                "timestamp": epoch(s.created_at),
                "memory": s.content.get("memory").cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    Ok(json!({"status": "ok", "memories": memories}))
}
