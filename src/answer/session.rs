//! session_memory `get_context`: the newest interactions that fit in `max_tokens`
//! (`len(content) // 4` each, stopping at the first that does not fit), in chronological
//! order, with the request id echoed. Whatever raises inside the agent's loop (a content
//! that is not a string, a `max_tokens` that is not a number) is caught by the agent, which
//! answers success with an empty context.

use super::{Prepared, Query, Stored, Unsupported, py_len, query, value_of};
use chrono::{DateTime, Local, Timelike, Utc};
use serde_json::{Map, Value, json};

pub fn prepare(req: &Map<String, Value>) -> Prepared {
    let request_id = req.get("request_id").cloned().unwrap_or(json!(""));
    let session_id = match req.get("session_id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        // Falsy in Python: the agent answers without looking.
        None | Some(Value::Null) | Some(Value::Bool(false)) => return missing(request_id),
        Some(Value::String(_)) => return missing(request_id),
        Some(Value::Number(n)) if n.as_f64() == Some(0.0) => return missing(request_id),
        Some(Value::Array(a)) if a.is_empty() => return missing(request_id),
        Some(Value::Object(o)) if o.is_empty() => return missing(request_id),
        // Unhashable: the agent's lookup raises, and it answers an empty context.
        Some(Value::Array(_) | Value::Object(_)) => {
            return Prepared::Immediate(empty(request_id));
        }
        // A number or `true`: the agent keeps it under the value in memory and as text in
        // SQLite, unlike anything the mirror writes.
        Some(_) => return Prepared::Unsupported(Unsupported::OddParameter),
    };
    // The session's creation too: the agent deletes a session an hour after it.
    let mut interactions = query("conversation", ("session_id", &session_id));
    interactions.with_session = true;
    let queries: Vec<Query> = vec![interactions];
    Prepared::Fetch {
        key: session_id,
        queries,
    }
}

fn empty(request_id: Value) -> Value {
    json!({"status": "success", "context": [], "request_id": request_id})
}

fn missing(request_id: Value) -> Prepared {
    Prepared::Immediate(
        json!({"status": "error", "message": "Missing session_id", "request_id": request_id}),
    )
}

pub fn answer(req: &Map<String, Value>, data: &[Vec<Stored>]) -> Result<Value, Unsupported> {
    let request_id = req.get("request_id").cloned().unwrap_or(json!(""));
    let interactions = data.first().map_or(&[][..], Vec::as_slice);
    // `total + tokens > max_tokens`: any number compares (a bool is an int); anything
    // else raises at the first interaction.
    let max_tokens = match req.get("max_tokens") {
        None => Some(2000.0),
        Some(Value::Bool(b)) => Some(f64::from(u8::from(*b))),
        Some(v) => v.as_f64(),
    };
    let mut context = Vec::new();
    let mut total: i64 = 0;
    for s in interactions.iter().rev() {
        let content = value_of(&s.content).clone();
        let (Some(len), Some(max_tokens)) = (py_len(&content), max_tokens) else {
            return Ok(empty(request_id));
        };
        let tokens = len as i64 / 4;
        if (total + tokens) as f64 > max_tokens {
            break;
        }
        total += tokens;
        context.push(json!({
            "role": s.content.get("role").cloned().unwrap_or(Value::Null),
            "content": content,
            "timestamp": local_iso(s.created_at),
        }));
    }
    context.reverse();
    Ok(json!({"status": "success", "context": context, "request_id": request_id}))
}

/// `datetime.fromtimestamp(t).isoformat()`: local time, no zone, microseconds only when
/// there are any.
pub fn local_iso(t: DateTime<Utc>) -> String {
    let local = t.with_timezone(&Local);
    if local.nanosecond() / 1000 == 0 {
        local.format("%Y-%m-%dT%H:%M:%S").to_string()
    } else {
        local.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
    }
}
