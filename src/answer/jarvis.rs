//! jarvis_memory `get_memories`: every memory of the user, oldest first, as stored (key
//! order included). The user is keyed as the mirror keys it (`translate::id_key`).

use super::{MAX_ENTRIES, Prepared, Stored, Unsupported, epoch, query};
use crate::profile::Profile;
use crate::translate::request_key;
use serde_json::{Map, Value, json};

pub fn prepare(req: &Map<String, Value>) -> Prepared {
    match request_key(Profile::JarvisMemory, req) {
        Some(user) => Prepared::Fetch {
            queries: vec![query("interaction", ("user_id", &user))],
            key: user,
        },
        None => Prepared::Unsupported(Unsupported::OddParameter),
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
