//! jarvis_memory's `jarvis_memory_store.json`:
//! `{"<user_id>": [{"timestamp": <epoch float>, "memory": <any JSON>}, …oldest first]}`.
//! A user whose memories were cleared keeps an empty list.

use super::json_stream::{JsonFile, Members, finish, read_object};
use super::{Group, Kind, LegacyError, Position, Record, Section, Unreadable, epoch};
use serde_json::{Map, Value, json};
use std::path::Path;

const WHAT: &str = "jarvis_memory";

pub fn read(
    path: &Path,
    mut each: impl FnMut(Group, Position) -> anyhow::Result<()>,
) -> Result<(), LegacyError> {
    let file = JsonFile::open(path)?;
    let position = file.position();
    let mut users = |user: String, list: Value| {
        let group = memories(user, &list);
        each(group, position())
    };
    let read = read_object(file.reader, Members::Each(&mut users));
    finish(read, path, WHAT)
}

fn memories(user: String, list: &Value) -> Group {
    let mut group = Group {
        section: Section::Memories,
        key: user,
        records: Vec::new(),
        unreadable: Vec::new(),
    };
    let Some(list) = list.as_array() else {
        group.unreadable.push(Unreadable {
            kind: Kind::Memory,
            reason: "not_a_list",
        });
        return group;
    };
    for item in list {
        let at = item
            .get("timestamp")
            .and_then(Value::as_f64)
            .and_then(epoch);
        match (item.as_object(), at) {
            (None, _) => group.unreadable.push(Unreadable {
                kind: Kind::Memory,
                reason: "not_an_object",
            }),
            (Some(_), None) => group.unreadable.push(Unreadable {
                kind: Kind::Memory,
                reason: "bad_timestamp",
            }),
            (Some(item), Some(at)) => {
                let mut request = Map::new();
                request.insert("action".into(), json!("add_memory"));
                request.insert("user_id".into(), json!(group.key));
                request.insert(
                    "memory".into(),
                    item.get("memory").cloned().unwrap_or(Value::Null),
                );
                group.records.push(Record {
                    kind: Kind::Memory,
                    request,
                    at,
                });
            }
        }
    }
    group
}
