//! session_memory: `"status": "success"` means success. Sessions keep the agent's ids.

use super::{Mirror, MirrorOp, Verdict, put_value, string, truthy};
use serde_json::{Map, Value, json};

const SOURCE: &str = "session_memory";

pub fn key(req: &Map<String, Value>) -> Option<String> {
    string(req, "session_id")
}

pub fn translate(action: &str, req: &Map<String, Value>, reply: &Value) -> Verdict {
    let writes = [
        "create_session",
        "add_interaction",
        "clear_session",
        "delete_session",
    ];
    if !writes.contains(&action) {
        return Verdict::NotAWrite;
    }
    if reply.get("status").and_then(Value::as_str) != Some("success") {
        return Verdict::Failed("legacy_error");
    }
    match action {
        // The agent's choice (a uuid4 when the client gave none) is in the reply.
        "create_session" => match reply.get("session_id").and_then(Value::as_str) {
            Some(sid) => mirror(sid, vec![ensure(sid, req)]),
            None => Verdict::Failed("no_session_id"),
        },
        "add_interaction" => {
            let Some(sid) = string(req, "session_id") else {
                return Verdict::Failed("no_session_id");
            };
            let mut content = Map::new();
            put_value(
                &mut content,
                req.get("content").cloned().unwrap_or(Value::Null),
            );
            content.insert(
                "role".into(),
                req.get("role").cloned().unwrap_or(Value::Null),
            );
            content.insert("metadata".into(), metadata(req));
            let create = MirrorOp::CreateMemory {
                session_id: Some(sid.clone()),
                user_id: None,
                memory_type: "conversation".into(),
                content: Value::Object(content),
                source_agent: SOURCE.into(),
                memory_id: None,
            };
            mirror(&sid, vec![ensure_bare(&sid), create])
        }
        "clear_session" => with_session(req, |sid| vec![delete_all(sid)]),
        _ => with_session(req, |sid| {
            vec![
                delete_all(sid),
                MirrorOp::EndSession {
                    session_id: sid.to_owned(),
                },
            ]
        }),
    }
}

fn mirror(key: &str, ops: Vec<MirrorOp>) -> Verdict {
    Verdict::Mirror(Mirror {
        key: key.to_owned(),
        ops,
    })
}

fn with_session(req: &Map<String, Value>, ops: impl FnOnce(&str) -> Vec<MirrorOp>) -> Verdict {
    match string(req, "session_id") {
        Some(sid) => mirror(&sid, ops(&sid)),
        None => Verdict::Failed("no_session_id"),
    }
}

fn ensure(sid: &str, req: &Map<String, Value>) -> MirrorOp {
    MirrorOp::EnsureSession {
        session_id: sid.to_owned(),
        user_id: Some(string(req, "user_id").unwrap_or_else(|| "default".into())),
        metadata: metadata(req),
        session_type: "conversation".into(),
        exclusive: false,
    }
}

/// The agent stores `json.dumps(metadata or {})`: a falsy metadata (`null`, `""`, `0`) is
/// `{}`.
fn metadata(req: &Map<String, Value>) -> Value {
    req.get("metadata")
        .filter(|m| truthy(m))
        .cloned()
        .unwrap_or_else(|| json!({}))
}

/// For writes into a session the mirror may never have seen created.
fn ensure_bare(sid: &str) -> MirrorOp {
    MirrorOp::EnsureSession {
        session_id: sid.to_owned(),
        user_id: None,
        metadata: json!({}),
        session_type: "conversation".into(),
        exclusive: false,
    }
}

fn delete_all(sid: &str) -> MirrorOp {
    MirrorOp::DeleteMemories {
        session_id: Some(sid.to_owned()),
        user_id: None,
        memory_type: "conversation".into(),
    }
}
