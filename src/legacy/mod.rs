//! The legacy agents' own stores, read (`specs/legacy-agents.md`, "Storage"): the session
//! agent's SQLite file, the contextual agent's JSON file and the jarvis agent's JSON file.
//!
//! A store is read one *group* at a time: the records of one key (a session or a user) in
//! one section of the store. A group is what the backfill sends and checkpoints as a unit
//! and what the reconciler compares, so memory stays bounded by the largest group however
//! large the store is: the JSON files are parsed as a stream, and the SQLite file is read
//! from a snapshot taken with SQLite's online backup (short read locks, so the live agent
//! keeps writing) in key order.
//!
//! Each record is given as the write that would have made it — the request a client sends
//! the agent — so that [`crate::translate`] turns it into orchestrator operations exactly as
//! the mirror turns the live write. What the agent derived and cannot rebuild (a contextual
//! session's summary) comes as a record of its own.

mod contextual;
mod jarvis;
mod json_stream;
mod session;

use crate::profile::Profile;
use chrono::{DateTime, Local, NaiveDateTime, TimeZone, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use std::path::Path;

crate::labels! {
    /// A part of a store: the unit, with the key, of what is sent and compared.
    #[derive(PartialOrd, Ord, Serialize)]
    #[serde(rename_all = "snake_case")]
    pub enum Section {
        /// session_memory: one session row and its interactions.
        Session = "session",
        /// contextual_memory: a session's interactions (`sessions` in the file).
        Interactions = "interactions",
        /// contextual_memory: a session's summary and its key decisions (`summaries`).
        Summary = "summary",
        /// jarvis_memory: one user's memories.
        Memories = "memories",
    }
}

impl Section {
    /// The orchestrator memory types this section's records become.
    pub fn memory_types(self) -> &'static [&'static str] {
        match self {
            Section::Session => &["conversation"],
            Section::Interactions => &["context"],
            Section::Summary => &["decision", "summary"],
            Section::Memories => &["interaction"],
        }
    }

    /// The sections of a profile's store.
    pub fn of(profile: Profile) -> &'static [Section] {
        match profile {
            Profile::SessionMemory => &[Section::Session],
            Profile::ContextualMemory => &[Section::Interactions, Section::Summary],
            Profile::JarvisMemory => &[Section::Memories],
        }
    }
}

crate::labels! {
    /// What kind of thing a record is (for counts in summaries and reports).
    #[derive(PartialOrd, Ord, Serialize)]
    #[serde(rename_all = "snake_case")]
    pub enum Kind {
        Session = "session",
        Interaction = "interaction",
        Decision = "decision",
        Summary = "summary",
        Memory = "memory",
    }
}

/// One record of a legacy store.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub kind: Kind,
    /// The write that made it, as a client sends it (for a summary: the stored summary).
    pub request: Map<String, Value>,
    /// When the agent stored it, by the agent's clock.
    pub at: DateTime<Utc>,
}

/// A record that could not be read, and why (a fixed label; never the record's content).
#[derive(Clone, Debug, PartialEq)]
pub struct Unreadable {
    pub kind: Kind,
    pub reason: &'static str,
}

/// The records of one key in one section.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub section: Section,
    pub key: String,
    pub records: Vec<Record>,
    pub unreadable: Vec<Unreadable>,
}

impl Group {
    fn new(section: Section, key: String) -> Group {
        Group {
            section,
            key,
            records: Vec::new(),
            unreadable: Vec::new(),
        }
    }

    fn unreadable(&mut self, kind: Kind, reason: &'static str) {
        self.unreadable.push(Unreadable { kind, reason });
    }

    /// The records of a JSON list of `{"timestamp": <epoch float>, …}` objects (how the
    /// JSON agents keep interactions, memories and key decisions), each made into the
    /// request that wrote it by `request` (given the group's key and the object).
    fn push_timestamped(
        &mut self,
        kind: Kind,
        list: &Value,
        request: impl Fn(&str, &Map<String, Value>) -> Map<String, Value>,
    ) {
        let Some(list) = list.as_array() else {
            return self.unreadable(kind, "not_a_list");
        };
        for item in list {
            let Some(item) = item.as_object() else {
                self.unreadable(kind, "not_an_object");
                continue;
            };
            match item
                .get("timestamp")
                .and_then(Value::as_f64)
                .and_then(epoch)
            {
                Some(at) => self.records.push(Record {
                    kind,
                    request: request(&self.key, item),
                    at,
                }),
                None => self.unreadable(kind, "bad_timestamp"),
            }
        }
    }
}

/// A request object from `(field, value)` pairs.
fn request<const N: usize>(fields: [(&str, Value); N]) -> Map<String, Value> {
    fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// How far through the store a reader is, in units of its own (bytes of a JSON file, rows
/// of a SQLite file).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    pub done: u64,
    pub total: u64,
}

/// Reading a store failed as a whole (a record that cannot be read is [`Unreadable`]).
#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a {what} store: {detail}")]
    Format {
        path: String,
        what: &'static str,
        detail: String,
    },
    #[error("reading {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    /// The caller's callback failed; reading stopped there.
    #[error(transparent)]
    Stopped(anyhow::Error),
}

/// Reads the store of `profile` at `path` (the session agent's `.db` file, or the directory
/// that holds it as `data/session_memory.db`; a JSON agent's file, or the directory that
/// holds it under the agent's file name), handing each group to `each` with the position
/// reached.
///
/// # Errors
/// The store cannot be opened or is not the agent's format, or `each` failed.
pub fn read(
    profile: Profile,
    path: &Path,
    each: impl FnMut(Group, Position) -> anyhow::Result<()>,
) -> Result<(), LegacyError> {
    let file = store_file(profile, path);
    match profile {
        Profile::SessionMemory => session::read(&file, each),
        Profile::ContextualMemory => contextual::read(&file, each),
        Profile::JarvisMemory => jarvis::read(&file, each),
    }
}

/// The store's file: `path` itself, or the agent's file name under the directory `path`.
pub fn store_file(profile: Profile, path: &Path) -> std::path::PathBuf {
    if !path.is_dir() {
        return path.to_owned();
    }
    path.join(match profile {
        Profile::SessionMemory => "data/session_memory.db",
        Profile::ContextualMemory => "contextual_memory_store.json",
        Profile::JarvisMemory => "jarvis_memory_store.json",
    })
}

/// A Python `time.time()` float as a UTC time (to the microsecond, as Python keeps it).
pub fn epoch(seconds: f64) -> Option<DateTime<Utc>> {
    if !seconds.is_finite() {
        return None;
    }
    let micros = (seconds * 1e6).round();
    DateTime::from_timestamp_micros(micros as i64)
}

/// A session agent's time: Python's `datetime.now().isoformat()`, local time without a
/// zone (read in this process's time zone: set `TZ` to the agent's if it differs). A time
/// that does not exist locally (skipped by a daylight-saving change) is `None`; one that
/// exists twice is taken as the earlier.
pub fn local_iso(text: &str) -> Option<DateTime<Utc>> {
    let naive: NaiveDateTime = text.parse().ok()?;
    Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

fn format_error(path: &Path, what: &'static str, detail: impl ToString) -> LegacyError {
    LegacyError::Format {
        path: path.display().to_string(),
        what,
        detail: detail.to_string(),
    }
}

#[cfg(test)]
mod tests;
