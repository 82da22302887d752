//! contextual_memory's `contextual_memory_store.json`:
//! `{"sessions": {"<sid>": [interaction, …newest first]}, "summaries": {"<sid>": summary}}`.
//! A missing session id is stored under `"null"`, and read back as that key.

use super::json_stream::{JsonFile, Members, finish, read_object};
use super::{Group, Kind, LegacyError, Position, Record, Section, Unreadable, epoch};
use serde_json::{Map, Value, json};
use std::path::Path;

const WHAT: &str = "contextual_memory";

pub fn read(
    path: &Path,
    mut each: impl FnMut(Group, Position) -> anyhow::Result<()>,
) -> Result<(), LegacyError> {
    let file = JsonFile::open(path)?;
    let position = file.position();
    // Both sections hand their groups to the one callback.
    let each = std::cell::RefCell::new(&mut each);
    let mut sessions = |sid: String, list: Value| {
        let group = interactions(sid, &list);
        (each.borrow_mut())(group, position())
    };
    let mut summaries = |sid: String, summary: Value| {
        let group = summary_group(sid, &summary);
        (each.borrow_mut())(group, position())
    };
    let read = read_object(
        file.reader,
        Members::Sections(vec![
            ("sessions", Members::Each(&mut sessions)),
            ("summaries", Members::Each(&mut summaries)),
        ]),
    );
    finish(read, path, WHAT)
}

fn interactions(sid: String, list: &Value) -> Group {
    let mut group = Group {
        section: Section::Interactions,
        key: sid,
        records: Vec::new(),
        unreadable: Vec::new(),
    };
    let Some(list) = list.as_array() else {
        group.unreadable.push(Unreadable {
            kind: Kind::Interaction,
            reason: "not_a_list",
        });
        return group;
    };
    for item in list {
        let Some(item) = item.as_object() else {
            group.unreadable.push(Unreadable {
                kind: Kind::Interaction,
                reason: "not_an_object",
            });
            continue;
        };
        let Some(at) = item
            .get("timestamp")
            .and_then(Value::as_f64)
            .and_then(epoch)
        else {
            group.unreadable.push(Unreadable {
                kind: Kind::Interaction,
                reason: "bad_timestamp",
            });
            continue;
        };
        let mut request = Map::new();
        request.insert("action".into(), json!("add_interaction"));
        request.insert("session_id".into(), json!(group.key));
        for field in ["type", "content", "metadata"] {
            if let Some(v) = item.get(field) {
                request.insert(field.into(), v.clone());
            }
        }
        group.records.push(Record {
            kind: Kind::Interaction,
            request,
            at,
        });
    }
    group
}

/// A summary: its key decisions, each as the `record_decision` that added it, and the rest
/// (what rebuilds produced: code and conversation summaries, errors) as one record.
fn summary_group(sid: String, summary: &Value) -> Group {
    let mut group = Group {
        section: Section::Summary,
        key: sid,
        records: Vec::new(),
        unreadable: Vec::new(),
    };
    let Some(summary) = summary.as_object() else {
        group.unreadable.push(Unreadable {
            kind: Kind::Summary,
            reason: "not_an_object",
        });
        return group;
    };
    let decisions = summary.get("key_decisions").and_then(Value::as_array);
    for d in decisions.into_iter().flatten() {
        match d.get("timestamp").and_then(Value::as_f64).and_then(epoch) {
            Some(at) => group.records.push(Record {
                kind: Kind::Decision,
                request: json!({"action": "record_decision", "session_id": group.key,
                    "decision": d.get("decision").cloned().unwrap_or(Value::Null)})
                .as_object()
                .cloned()
                .unwrap_or_default(),
                at,
            }),
            None => group.unreadable.push(Unreadable {
                kind: Kind::Decision,
                reason: "bad_timestamp",
            }),
        }
    }
    let mut derived = summary.clone();
    derived.remove("key_decisions");
    if derived.is_empty() {
        return group;
    }
    match derived
        .get("last_updated")
        .and_then(Value::as_f64)
        .and_then(epoch)
    {
        Some(at) => group.records.push(Record {
            kind: Kind::Summary,
            request: derived,
            at,
        }),
        None => group.unreadable.push(Unreadable {
            kind: Kind::Summary,
            reason: "bad_timestamp",
        }),
    }
    group
}
