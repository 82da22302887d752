//! session_memory's `data/session_memory.db`: `sessions(session_id, user_id, created_at,
//! last_active, metadata)` and `interactions(id, session_id, timestamp, role, content,
//! metadata)`, times in local ISO-8601 without a zone, metadata as JSON text.
//!
//! The live agent writes this file while it is read, with Python's default five-second
//! lock timeout: a long read transaction would make its writes fail. So the file is first
//! copied with SQLite's online backup, a few pages at a time (each step holds the read
//! lock briefly, and the copy restarts by itself if the agent writes meanwhile), and the
//! copy is read at leisure: sessions and interactions, each in key order, merged.

use super::{Group, Kind, LegacyError, Position, Record, Section, local_iso};
use rusqlite::{Connection, OpenFlags};
use serde_json::{Map, Value, json};
use std::iter::Peekable;
use std::path::Path;
use std::time::Duration;

/// Pages copied per backup step, and the pause between steps that lets the agent write.
const PAGES_PER_STEP: std::ffi::c_int = 512;
const STEP_PAUSE: Duration = Duration::from_millis(2);

struct SessionRow {
    session_id: String,
    user_id: Option<String>,
    created_at: Option<String>,
    metadata: Option<String>,
}

struct InteractionRow {
    session_id: String,
    timestamp: Option<String>,
    role: Option<String>,
    content: Option<String>,
    metadata: Option<String>,
}

pub fn read(
    path: &Path,
    mut each: impl FnMut(Group, Position) -> anyhow::Result<()>,
) -> Result<(), LegacyError> {
    let sqlite = |source| LegacyError::Sqlite {
        path: path.display().to_string(),
        source,
    };
    let snapshot = tempfile::Builder::new()
        .prefix("memshift-session-snapshot-")
        .suffix(".db")
        .tempfile()
        .map_err(|source| LegacyError::Io {
            path: std::env::temp_dir().display().to_string(),
            source,
        })?;
    {
        let live =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sqlite)?;
        live.busy_timeout(Duration::from_secs(5)).map_err(sqlite)?;
        let mut copy = Connection::open(snapshot.path()).map_err(sqlite)?;
        rusqlite::backup::Backup::new(&live, &mut copy)
            .and_then(|b| b.run_to_completion(PAGES_PER_STEP, STEP_PAUSE, None))
            .map_err(sqlite)?;
    }
    let db = Connection::open_with_flags(snapshot.path(), OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(sqlite)?;
    let total: i64 = db
        .query_row(
            "SELECT (SELECT count(*) FROM sessions) + (SELECT count(*) FROM interactions)",
            [],
            |r| r.get(0),
        )
        .map_err(|e| super::format_error(path, "session_memory", e))?;
    let mut sessions_stmt = db
        .prepare(
            "SELECT COALESCE(session_id, ''), user_id, created_at, metadata FROM sessions
             ORDER BY session_id",
        )
        .map_err(sqlite)?;
    let mut interactions_stmt = db
        .prepare(
            "SELECT COALESCE(session_id, ''), timestamp, role, content, metadata
             FROM interactions ORDER BY session_id, id",
        )
        .map_err(sqlite)?;
    let mut sessions = sessions_stmt
        .query_map([], |r| {
            Ok(SessionRow {
                session_id: r.get(0)?,
                user_id: r.get(1)?,
                created_at: r.get(2)?,
                metadata: r.get(3)?,
            })
        })
        .map_err(sqlite)?
        .peekable();
    let mut interactions = interactions_stmt
        .query_map([], |r| {
            Ok(InteractionRow {
                session_id: r.get(0)?,
                timestamp: r.get(1)?,
                role: r.get(2)?,
                content: r.get(3)?,
                metadata: r.get(4)?,
            })
        })
        .map_err(sqlite)?
        .peekable();
    let mut position = Position {
        done: 0,
        total: total as u64,
    };
    loop {
        // The next key: the smaller of the two streams' heads.
        let next_session = peek_key(&mut sessions, |s| &s.session_id).map_err(sqlite)?;
        let next_interaction = peek_key(&mut interactions, |i| &i.session_id).map_err(sqlite)?;
        let key = match (next_session, next_interaction) {
            (None, None) => return Ok(()),
            (Some(s), None) => s,
            (None, Some(i)) => i,
            (Some(s), Some(i)) => s.min(i),
        };
        let mut group = Group::new(Section::Session, key.clone());
        // At most one session row per key (the primary key).
        if let Some(Ok(row)) = sessions.next_if(|r| r.as_ref().is_ok_and(|r| r.session_id == key)) {
            position.done += 1;
            session_record(row, &mut group);
        }
        while let Some(row) =
            interactions.next_if(|r| r.as_ref().is_ok_and(|r| r.session_id == key))
        {
            position.done += 1;
            interaction_record(row.map_err(sqlite)?, &mut group);
        }
        each(group, position).map_err(LegacyError::Stopped)?;
    }
}

/// The key at the head of a stream; an error at the head is returned (and stays there).
fn peek_key<T, I: Iterator<Item = rusqlite::Result<T>>>(
    rows: &mut Peekable<I>,
    key: impl Fn(&T) -> &String,
) -> rusqlite::Result<Option<String>> {
    match rows.peek() {
        None => Ok(None),
        Some(Ok(row)) => Ok(Some(key(row).clone())),
        Some(Err(_)) => match rows.next() {
            Some(Err(e)) => Err(e),
            _ => unreachable!("peeked an error"),
        },
    }
}

/// A row's time and metadata, or why it cannot be read.
fn time_and_metadata(
    time: Option<&str>,
    metadata: Option<&str>,
) -> Result<(chrono::DateTime<chrono::Utc>, Value), &'static str> {
    let at = time.and_then(local_iso).ok_or("bad_timestamp")?;
    let metadata = match metadata {
        None => json!({}),
        Some(t) => serde_json::from_str(t).map_err(|_| "bad_metadata")?,
    };
    Ok((at, metadata))
}

/// The record of a row, as the request that made it, with `fields` besides the metadata.
fn push(
    group: &mut Group,
    kind: Kind,
    action: &str,
    time: Option<&str>,
    metadata: Option<&str>,
    fields: Vec<(&str, Value)>,
) {
    match time_and_metadata(time, metadata) {
        Ok((at, metadata)) => {
            let mut request = Map::new();
            request.insert("action".into(), json!(action));
            for (name, value) in fields {
                request.insert(name.into(), value);
            }
            request.insert("metadata".into(), metadata);
            group.records.push(Record { kind, request, at });
        }
        Err(reason) => group.unreadable(kind, reason),
    }
}

fn session_record(row: SessionRow, group: &mut Group) {
    push(
        group,
        Kind::Session,
        "create_session",
        row.created_at.as_deref(),
        row.metadata.as_deref(),
        vec![
            ("session_id", json!(row.session_id)),
            ("user_id", json!(row.user_id)),
        ],
    );
}

fn interaction_record(row: InteractionRow, group: &mut Group) {
    push(
        group,
        Kind::Interaction,
        "add_interaction",
        row.timestamp.as_deref(),
        row.metadata.as_deref(),
        vec![
            ("session_id", json!(row.session_id)),
            ("role", json!(row.role)),
            ("content", json!(row.content)),
        ],
    );
}
