//! contextual_memory's `contextual_memory_store.json`:
//! `{"sessions": {"<sid>": [interaction, …newest first]}, "summaries": {"<sid>": summary}}`.
//! A missing session id is stored under `"null"`, and read back as that key.

use super::json_stream::{JsonFile, Members, finish, read_object};
use super::{Group, Kind, LegacyError, Position, Record, Section, epoch, request};
use serde_json::{Value, json};
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
    let mut group = Group::new(Section::Interactions, sid);
    group.push_timestamped(Kind::Interaction, list, |sid, item| {
        let mut request = request([
            ("action", json!("add_interaction")),
            ("session_id", json!(sid)),
        ]);
        for field in ["type", "content", "metadata"] {
            if let Some(v) = item.get(field) {
                request.insert(field.into(), v.clone());
            }
        }
        request
    });
    group
}

/// A summary: its key decisions, each as the `record_decision` that added it, and the rest
/// (what rebuilds produced: code and conversation summaries, errors) as one record.
fn summary_group(sid: String, summary: &Value) -> Group {
    let mut group = Group::new(Section::Summary, sid);
    let Some(summary) = summary.as_object() else {
        group.unreadable(Kind::Summary, "not_an_object");
        return group;
    };
    if let Some(decisions) = summary.get("key_decisions") {
        group.push_timestamped(Kind::Decision, decisions, |sid, d| {
            request([
                ("action", json!("record_decision")),
                ("session_id", json!(sid)),
                (
                    "decision",
                    d.get("decision").cloned().unwrap_or(Value::Null),
                ),
            ])
        });
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
        None => group.unreadable(Kind::Summary, "bad_timestamp"),
    }
    group
}
