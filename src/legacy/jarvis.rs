//! jarvis_memory's `jarvis_memory_store.json`:
//! `{"<user_id>": [{"timestamp": <epoch float>, "memory": <any JSON>}, …oldest first]}`.
//! A user whose memories were cleared keeps an empty list.

use super::json_stream::{JsonFile, Members, finish, read_object};
use super::{Group, Kind, LegacyError, Position, Section, request};
use serde_json::{Value, json};
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
    let mut group = Group::new(Section::Memories, user);
    group.push_timestamped(Kind::Memory, list, |user, item| {
        request([
            ("action", json!("add_memory")),
            ("user_id", json!(user)),
            ("memory", item.get("memory").cloned().unwrap_or(Value::Null)),
        ])
    });
    group
}
