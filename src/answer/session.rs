//! session_memory `get_context`: the newest interactions that fit in `max_tokens`
//! (`len(content) // 4` each, stopping at the first that does not fit), in chronological
//! order, with the request id echoed.

use super::{Prepared, Query, Stored, Unsupported, int_param, py_len, query};
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
        // A session id that is not a string is never mirrored.
        Some(_) => return Prepared::Unsupported(Unsupported::OddParameter),
    };
    if int_param(req, "max_tokens", 2000).is_none() {
        return Prepared::Unsupported(Unsupported::OddParameter);
    }
    let queries: Vec<Query> = vec![query("conversation", ("session_id", &session_id))];
    Prepared::Fetch {
        key: session_id,
        queries,
    }
}

fn missing(request_id: Value) -> Prepared {
    Prepared::Immediate(
        json!({"status": "error", "message": "Missing session_id", "request_id": request_id}),
    )
}

pub fn answer(req: &Map<String, Value>, data: &[Vec<Stored>]) -> Result<Value, Unsupported> {
    let request_id = req.get("request_id").cloned().unwrap_or(json!(""));
    let max_tokens = int_param(req, "max_tokens", 2000).ok_or(Unsupported::OddParameter)?;
    let interactions = data.first().map_or(&[][..], Vec::as_slice);
    let mut context = Vec::new();
    let mut total: i64 = 0;
    for s in interactions.iter().rev() {
        let content = s.content.get("text").cloned().unwrap_or(Value::Null);
        let tokens = py_len(&content).ok_or(Unsupported::OddContent)? as i64 / 4;
        if total + tokens > max_tokens {
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
