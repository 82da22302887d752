//! Legacy-shape answers: the reply a legacy agent would give to a read, built from the
//! orchestrator's data. Pure.
//!
//! One code path serves both uses: shadow comparison (is the orchestrator's data what the
//! legacy agent holds?) and live reads (the orchestrator answers in the agent's place). A
//! read is answered in two steps: [`prepare`] says what to fetch (or answers at once when
//! the legacy agent would not look at its store, e.g. a missing session id), then
//! [`answer`] builds the reply from what was fetched, following the agent's algorithm to
//! the letter (`specs/legacy-agents.md`): session_memory's token trimming, contextual's
//! summary of the newest 51 interactions, jarvis's list.
//!
//! Odd inputs are answered as the agent answers them (`specs/legacy-agents.md`, revised): a
//! `max_tokens` that is not a number, contents that are not strings, ids of other JSON
//! types. A request whose legacy answer depends on something memshift cannot know (a
//! session id that is a number, a summary older than what was fetched) is
//! [`Unsupported`]: it is skipped in comparisons and answered by legacy in live reads.

mod contextual;
mod jarvis;
mod session;

pub use contextual::{CutState, Held, stored_summary as contextual_summary};

use crate::forgetting::SessionFacts;
use crate::profile::Profile;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

/// Entries fetched per read at most; a larger answer is not built (the read is skipped or
/// served by legacy).
pub const MAX_ENTRIES: usize = 10_000;

/// One `batch_read` filter. Its results are handed to [`answer`] oldest first: all of
/// them (every page), or only the newest `newest` when that is set.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    pub filter: Map<String, Value>,
    pub newest: Option<usize>,
    /// Ask for the session the filter names too (`with_session`, with
    /// `legacy_sessions_kept`): its creation, and when newer sessions pushed it out, for
    /// [`answer_forgetting`].
    pub with_session: bool,
}

/// What a read needs.
#[derive(Clone, Debug, PartialEq)]
pub enum Prepared {
    /// Not a read of this profile.
    NotARead,
    /// The legacy agent answers without its store: here is the reply.
    Immediate(Value),
    /// Fetch these, in order, then call [`answer`] with the results.
    Fetch {
        key: String,
        queries: Vec<Query>,
    },
    Unsupported(Unsupported),
}

crate::labels! {
    /// Why a read is not answered from the orchestrator (a closed set: a metric label).
    pub enum Unsupported {
        /// A parameter of a type the agent would choke on (`max_tokens` not a number).
        OddParameter = "odd_parameter",
        /// Stored contents the agent's algorithm could not process (not strings).
        OddContent = "odd_content",
        /// More than [`MAX_ENTRIES`] entries.
        TooLarge = "too_large",
        /// The agent may or may not have forgotten it yet (its cleanup runs once a minute).
        Forgetting = "forgetting",
    }
}

/// An entry as fetched from the orchestrator.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    pub memory_type: String,
    pub content: Value,
    pub created_at: DateTime<Utc>,
}

impl Stored {
    /// From one entry of a `batch_read` reply; `None` if it lacks a field.
    pub fn from_entry(entry: &Value) -> Option<Stored> {
        Some(Stored {
            memory_type: entry.get("memory_type")?.as_str()?.to_owned(),
            content: entry.get("content")?.clone(),
            created_at: entry
                .get("created_at")?
                .as_str()?
                .parse::<DateTime<Utc>>()
                .ok()?,
        })
    }
}

/// What `request` (a parsed legacy request) needs to be answered.
pub fn prepare(profile: Profile, request: &Value) -> Prepared {
    let Some(req) = request.as_object() else {
        return Prepared::NotARead;
    };
    let action = req.get("action").and_then(Value::as_str).unwrap_or("");
    match (profile, action) {
        (Profile::SessionMemory, "get_context") => session::prepare(req),
        (Profile::ContextualMemory, "get_context") => contextual::prepare(req),
        (Profile::JarvisMemory, "get_memories") => jarvis::prepare(req),
        _ => Prepared::NotARead,
    }
}

/// The legacy reply to `request`, from the results of the queries [`prepare`] asked for
/// (one list per query, oldest first).
///
/// # Errors
/// The data holds something the agent's algorithm could not process.
pub fn answer(
    profile: Profile,
    request: &Value,
    data: &[Vec<Stored>],
) -> Result<Value, Unsupported> {
    let empty = Map::new();
    let req = request.as_object().unwrap_or(&empty);
    match profile {
        Profile::SessionMemory => session::answer(req, data),
        Profile::ContextualMemory => contextual::answer(req, data),
        Profile::JarvisMemory => jarvis::answer(req, data),
    }
}

/// [`answer`] as the agent gives it at `now`, having forgotten what it forgets on its own:
/// session_memory deletes a session `lifetime` (plus the UTC offset) after its creation,
/// however active, or once 100 newer sessions have pushed it out, and then answers an empty
/// context (see [`crate::forgetting`]). `session`: what the orchestrator knows of the
/// session, if a query asked and it exists.
///
/// # Errors
/// As [`answer`]; and [`Unsupported::Forgetting`] in the minute in which the agent's
/// cleanup may or may not have deleted the session (the agent knows: ask it).
pub fn answer_forgetting(
    profile: Profile,
    request: &Value,
    data: &[Vec<Stored>],
    session: Option<SessionFacts>,
    lifetime: std::time::Duration,
    now: DateTime<Utc>,
) -> Result<Value, Unsupported> {
    if profile == Profile::SessionMemory
        && let Some(session) = session
    {
        match crate::forgetting::session_deleted(session, lifetime, now) {
            Some(true) => return answer(profile, request, &[Vec::new()]),
            None => return Err(Unsupported::Forgetting),
            Some(false) => {}
        }
    }
    answer(profile, request, data)
}

/// A `batch_read` filter for one memory type of one session or user.
fn query(memory_type: &str, scope: (&str, &str)) -> Query {
    let mut filter = Map::new();
    filter.insert("memory_type".into(), json!(memory_type));
    filter.insert(scope.0.into(), json!(scope.1));
    filter.insert(
        "sort".into(),
        json!({"field": "created_at", "order": "asc"}),
    );
    Query {
        filter,
        newest: None,
        with_session: false,
    }
}

/// The legacy value a memory holds: its `text`, or its `value` when it was not a string
/// (see `translate::put_value`); `null` when it has neither.
fn value_of(content: &Value) -> &Value {
    content
        .get("text")
        .or_else(|| content.get("value"))
        .unwrap_or(&Value::Null)
}

/// A time as Python's `time.time()` gives it: epoch seconds as a float.
fn epoch(t: DateTime<Utc>) -> Value {
    json!(t.timestamp_micros() as f64 / 1e6)
}

/// Python's `len()` of a JSON value as the agent holds it: code points of a string,
/// items of a list or an object; `None` where Python would raise.
fn py_len(v: &Value) -> Option<usize> {
    match v {
        Value::String(s) => Some(s.chars().count()),
        Value::Array(a) => Some(a.len()),
        Value::Object(o) => Some(o.len()),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
