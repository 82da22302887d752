//! jarvis_memory's `jarvis_memory_store.json`:
//! `{"<user_id>": [{"timestamp": <epoch float>, "memory": <any JSON>}, …oldest first]}`.
//! A user whose memories were cleared keeps an empty list.

use super::json_stream::{Counting, Members, read_object};
use super::{Group, Kind, LegacyError, Position, Record, Section, Unreadable, epoch, format_error};
use serde_json::{Map, Value, json};
use std::io::BufReader;
use std::path::Path;
use std::sync::atomic::Ordering;

const WHAT: &str = "jarvis_memory";

pub fn read(
    path: &Path,
    mut each: impl FnMut(Group, Position) -> anyhow::Result<()>,
) -> Result<(), LegacyError> {
    let io = |source| LegacyError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let total = file.metadata().map_err(io)?.len();
    let (counting, done) = Counting::new(file);
    let mut users = |user: String, list: Value| {
        let group = memories(user, &list);
        let position = Position {
            done: done.load(Ordering::Relaxed),
            total,
        };
        each(group, position)
    };
    read_object(BufReader::new(counting), Members::Each(&mut users)).map_err(|e| match e {
        Ok(stopped) => LegacyError::Stopped(stopped),
        Err(syntax) => format_error(path, WHAT, syntax),
    })
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
