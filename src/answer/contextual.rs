//! contextual_memory `get_context`: the stored summary, rebuilt exactly as the agent builds
//! it. Once a session has had 51 interactions, every add rebuilds the summary from the
//! newest 51 (`code_context`, `conversation_summary`, `errors_encountered`), carrying the
//! key decisions over; before that the summary exists only if a decision was recorded
//! (`{"key_decisions": […]}`), and without one the agent answers its `'NoneType'` error.
//! The request's `max_tokens` cuts the two texts to `(max_tokens // 2) * 4` characters plus
//! `"..."` when longer.
//!
//! Contents that are not strings follow the agent's own failures (`specs/legacy-agents.md`,
//! revised): a `code` content that is not a string makes the rebuild raise, so the agent
//! keeps its previous summary; the answer then is the newest window whose rebuild worked,
//! which is why twice the window is fetched.
//!
//! A backfilled session brings the agent's own summary (a `summary` memory, see
//! `translate::contextual_summary`): it was built from interactions the agent may no longer
//! keep, so the orchestrator cannot rebuild it. While no interaction is newer than that
//! summary, it is the answer (with the key decisions recorded since); the next add rebuilds
//! it from the newest 51, all of which the orchestrator then has.
//!
//! The agent keeps that cut in its summary until the next rebuild, so a later read with a
//! larger `max_tokens` still sees the cut text. The mirror keeps each cut the agent made
//! (seen in its reply) with the session, as an `agent_state` memory ([`CutState`]); an
//! answer applies the cuts recorded since the summary was built, in order, then the
//! request's own. Reads the orchestrator answers in live record none: the agent never saw
//! them, and the answers follow the agent's summary. A restart of the agent before its next
//! write brings the whole text back (it saves the cut with a write); comparisons tolerate
//! that (a legacy text that is a cut of the rebuilt one matches).

use super::{Prepared, Stored, Unsupported, epoch, query, value_of};
use crate::profile::Profile;
use crate::pyjson;
use crate::translate::request_key;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

/// Interactions a summary is built from.
pub const WINDOW: usize = 51;

/// Interactions fetched: enough to find the newest window whose rebuild worked when the
/// newest ones hold a `code` content that is not a string (it stays in 51 windows).
const FETCHED: usize = 2 * WINDOW;

const NO_SUMMARY: &str = "'NoneType' object has no attribute 'get'";

/// The summary's texts `get_context` cuts.
const TEXTS: [&str; 2] = ["code_context", "conversation_summary"];

/// Cuts fetched: more recorded since the summary was built, and the read is declined.
const CUTS_FETCHED: usize = 100;

/// A cut the agent made to a session's stored summary, as the mirror keeps it: an
/// `agent_state` memory `{"state": "context_cut", "max_tokens": n}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CutState {
    pub max_tokens: i64,
}

impl CutState {
    pub const MEMORY_TYPE: &str = "agent_state";
    const STATE: &str = "context_cut";

    /// The cut a `get_context` made to the summary the agent holds, judged from the request
    /// and the agent's reply (the summary after the cut): `None` when it cut nothing.
    pub fn made_by(req: &Map<String, Value>, reply: &Value) -> Option<CutState> {
        let Value::Object(summary) = reply else {
            return None;
        };
        let MaxTokens::Cut(max_tokens) = max_tokens(req) else {
            return None;
        };
        // The agent's error replies carry a `status`; its summaries never do.
        if summary.contains_key("status") {
            return None;
        }
        let limit = cut_limit(max_tokens);
        // A text longer than the limit after the cut was cut (it is the limit plus "...");
        // one no longer was not.
        let cut = TEXTS.iter().any(|field| {
            summary
                .get(*field)
                .and_then(Value::as_str)
                .is_some_and(|text| limit < 0 || text.chars().count() as i64 > limit)
        });
        cut.then_some(CutState { max_tokens })
    }

    /// Whether the same cut made again right after changes nothing (a negative limit cuts
    /// from the end, again each time).
    pub fn idempotent(self) -> bool {
        cut_limit(self.max_tokens) >= 0
    }

    pub fn content(self) -> Value {
        json!({"state": Self::STATE, "max_tokens": self.max_tokens})
    }

    fn from_content(content: &Value) -> Option<CutState> {
        if content.get("state")?.as_str()? != Self::STATE {
            return None;
        }
        Some(CutState {
            max_tokens: content.get("max_tokens")?.as_i64()?,
        })
    }
}

pub fn prepare(req: &Map<String, Value>) -> Prepared {
    let session_id = match request_key(Profile::ContextualMemory, req) {
        Some(key) => key,
        None => return Prepared::Unsupported(Unsupported::OddParameter),
    };
    let mut interactions = query("context", ("session_id", &session_id));
    interactions.newest = Some(FETCHED);
    let mut imported = query("summary", ("session_id", &session_id));
    imported.newest = Some(1);
    let mut cuts = query(CutState::MEMORY_TYPE, ("session_id", &session_id));
    cuts.newest = Some(CUTS_FETCHED);
    Prepared::Fetch {
        queries: vec![
            interactions,
            query("decision", ("session_id", &session_id)),
            imported,
            cuts,
        ],
        key: session_id,
    }
}

/// What the agent makes of `max_tokens` (`request.get("max_tokens", 2000)`).
enum MaxTokens {
    /// An int (Python's bools are ints): cut to `(n // 2) * 4` characters.
    Cut(i64),
    /// `null` is 2000 (the agent's `or 2000`); a float cuts nothing.
    NoCut,
    /// Anything else makes the cut raise: the agent answers its `'NoneType'` error when the
    /// summary has a text to cut, else the summary as it is.
    Odd,
    /// An integral number below `i64::MIN`: an int to Python (the whole text cut away) if
    /// it was written as one, a float (no cut) if not; serde_json holds both as a float.
    Unknown,
}

fn max_tokens(req: &Map<String, Value>) -> MaxTokens {
    match req.get("max_tokens") {
        None | Some(Value::Null) => MaxTokens::Cut(2000),
        Some(Value::Bool(b)) => MaxTokens::Cut(i64::from(*b)),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => MaxTokens::Cut(i),
            // Above i64: the cut is longer than any text.
            (None, Some(_)) => MaxTokens::NoCut,
            (None, None) if n.as_f64().is_some_and(|f| f < 0.0 && f.fract() == 0.0) => {
                MaxTokens::Unknown
            }
            (None, None) => MaxTokens::NoCut,
        },
        Some(_) => MaxTokens::Odd,
    }
}

pub fn answer(req: &Map<String, Value>, data: &[Vec<Stored>]) -> Result<Value, Unsupported> {
    let interactions = data.first().map_or(&[][..], Vec::as_slice);
    let decisions = data.get(1).map_or(&[][..], Vec::as_slice);
    let imported = data.get(2).and_then(|s| s.last());
    let cuts = data.get(3).map_or(&[][..], Vec::as_slice);
    let key_decisions: Vec<Value> = decisions
        .iter()
        .map(|d| {
            json!({
                "timestamp": epoch(d.created_at),
                "decision": value_of(&d.content),
            })
        })
        .collect();
    let complete = interactions.len() < FETCHED;
    let summary = match stored_summary(interactions, imported, complete)? {
        Some(held) => {
            let mut summary = cut_since(held, cuts)?;
            summary.insert("key_decisions".into(), json!(key_decisions));
            summary
        }
        None if key_decisions.is_empty() => return Ok(no_summary()),
        None => Map::from_iter([("key_decisions".to_owned(), json!(key_decisions))]),
    };
    match max_tokens(req) {
        MaxTokens::Unknown => Err(Unsupported::OddParameter),
        max_tokens => Ok(cut(summary, max_tokens)),
    }
}

fn no_summary() -> Value {
    json!({"status": "error", "message": NO_SUMMARY})
}

/// A summary as the agent holds it, and when it was built (by the add that rebuilt it, or
/// the backfill that imported it).
pub struct Held {
    pub summary: Map<String, Value>,
    pub built_at: DateTime<Utc>,
}

/// The held summary with the cuts recorded since it was built, oldest first.
///
/// # Errors
/// As many cuts were fetched as are fetched, all since: older ones may be missing.
fn cut_since(held: Held, cuts: &[Stored]) -> Result<Map<String, Value>, Unsupported> {
    let since: Vec<CutState> = cuts
        .iter()
        .filter(|c| c.created_at > held.built_at)
        .filter_map(|c| CutState::from_content(&c.content))
        .collect();
    if cuts.len() >= CUTS_FETCHED && since.len() == cuts.len() {
        return Err(Unsupported::TooLarge);
    }
    let mut summary = held.summary;
    for c in since {
        cut_texts(&mut summary, cut_limit(c.max_tokens));
    }
    Ok(summary)
}

/// The summary the agent built (without its key decisions, before any cut): the newest
/// rebuild that worked, or the imported one when no interaction is newer; `None` when there
/// is neither.
/// `interactions` are oldest first; `complete` says whether they are all of the session's
/// (else the newest of them).
///
/// # Errors
/// The rebuild that worked is older than the interactions given.
pub fn stored_summary(
    interactions: &[Stored],
    imported: Option<&Stored>,
    complete: bool,
) -> Result<Option<Held>, Unsupported> {
    // Every add from the 51st on rebuilt from the newest 51 at its time: try them newest
    // first. Each fetched interaction is newer than the imported summary, or not.
    for end in (0..=interactions.len()).rev() {
        let newest = end.checked_sub(1).map(|i| &interactions[i]);
        if let Some(imported) = imported
            && newest.is_none_or(|n| n.created_at <= imported.created_at)
        {
            let Value::Object(stored) = &imported.content else {
                return Err(Unsupported::OddContent);
            };
            return Ok(Some(Held {
                summary: stored.clone(),
                built_at: imported.created_at,
            }));
        }
        if end < WINDOW {
            return if complete {
                Ok(None)
            } else {
                Err(Unsupported::TooLarge)
            };
        }
        // Newest first, as the agent keeps them.
        let window: Vec<&Stored> = interactions[end - WINDOW..end].iter().rev().collect();
        if let Some(summary) = rebuild(&window)? {
            return Ok(Some(Held {
                summary,
                built_at: window[0].created_at,
            }));
        }
    }
    Ok(None)
}

/// The agent's `_update_summary` of one window (newest first); `None` where it raises (a
/// `code` content that is not a string).
///
/// # Errors
/// A query prints in a way memshift cannot reproduce (see [`conversation_summary`]).
fn rebuild(window: &[&Stored]) -> Result<Option<Map<String, Value>>, Unsupported> {
    let of_type = |t: &str| -> Vec<&Value> {
        window
            .iter()
            .filter(|s| s.content.get("type").and_then(Value::as_str) == Some(t))
            .map(|s| value_of(&s.content))
            .collect()
    };
    let mut summary = Map::new();
    summary.insert("last_updated".into(), epoch(window[0].created_at));
    let code = of_type("code");
    if !code.is_empty() {
        let code: Option<Vec<&str>> = code.iter().map(|c| c.as_str()).collect();
        let Some(code) = code else {
            return Ok(None);
        };
        summary.insert("code_context".into(), json!(code_summary(&code)));
    }
    let queries = of_type("user_query");
    let responses = of_type("system_response");
    if !queries.is_empty() || !responses.is_empty() {
        summary.insert(
            "conversation_summary".into(),
            json!(conversation_summary(&queries, responses.len())?),
        );
    }
    summary.insert("errors_encountered".into(), errors(&of_type("error")));
    Ok(Some(summary))
}

/// The conversation summary; the agent's `except` turns a query it cannot slice (a number,
/// an object, `null`, a bool) into a fixed text. A list slices, and prints as Python's
/// `str(list)`.
///
/// # Errors
/// A list that `pyjson::repr` cannot print as Python does (text outside ASCII, a float
/// that may have been an integer beyond 64 bits).
fn conversation_summary(queries: &[&Value], responses: usize) -> Result<String, Unsupported> {
    let mut text = format!(
        "Conversation Summary:\nTotal queries: {}\nTotal responses: {responses}\n",
        queries.len(),
    );
    if !queries.is_empty() {
        text.push_str("\nRecent Queries:\n");
        for q in queries.iter().take(3) {
            let shown = match q {
                Value::String(s) => py_prefix(s, 100),
                Value::Array(items) => {
                    let head = Value::Array(items.iter().take(100).cloned().collect());
                    pyjson::repr(&head).ok_or(Unsupported::OddContent)?
                }
                _ => return Ok("Error summarizing conversation".to_owned()),
            };
            text.push_str(&format!("- {shown}...\n"));
        }
    }
    Ok(text)
}

/// Errors worth keeping, cut to 200 characters; `[]` when one is not a string (the agent's
/// `.lower()` raises and its `except` gives up on all of them).
fn errors(contents: &[&Value]) -> Value {
    let Some(texts) = contents
        .iter()
        .map(|c| c.as_str())
        .collect::<Option<Vec<_>>>()
    else {
        return json!([]);
    };
    let kept: Vec<Value> = texts
        .into_iter()
        .filter(|e| {
            let lower = e.to_lowercase();
            lower.contains("error") || lower.contains("exception")
        })
        .map(|e| json!(py_prefix(e, 200)))
        .collect();
    json!(kept)
}

/// `get_context`'s cut of the two texts to `(max_tokens // 2) * 4` characters plus `"..."`.
fn cut(mut summary: Map<String, Value>, max_tokens: MaxTokens) -> Value {
    let limit = match max_tokens {
        MaxTokens::Cut(n) => cut_limit(n),
        MaxTokens::NoCut => return Value::Object(summary),
        MaxTokens::Odd if TEXTS.iter().any(|t| summary.contains_key(*t)) => {
            return no_summary();
        }
        MaxTokens::Odd | MaxTokens::Unknown => return Value::Object(summary),
    };
    cut_texts(&mut summary, limit);
    Value::Object(summary)
}

/// `(max_tokens // 2) * 4`, Python's floor division.
fn cut_limit(max_tokens: i64) -> i64 {
    max_tokens.div_euclid(2).saturating_mul(4)
}

fn cut_texts(summary: &mut Map<String, Value>, limit: i64) {
    for field in TEXTS {
        if let Some(Value::String(text)) = summary.get_mut(field)
            && text.chars().count() as i64 > limit
        {
            *text = format!("{}...", py_prefix(text, limit));
        }
    }
}

/// The agent's `code_summary` of code contents, newest first.
pub(super) fn code_summary(code: &[&str]) -> String {
    let all = code.join("\n\n");
    let mut text = format!(
        "Code Summary:\nTotal snippets: {}\nTotal lines: {}\n",
        code.len(),
        splitlines(&all)
    );
    let lowered = all.to_lowercase();
    if lowered.contains("database") {
        text.push_str("\nDatabase Operations:\n- SQL queries and database interactions present\n");
    }
    if lowered.contains("web") || lowered.contains("http") {
        text.push_str("\nWeb Functionality:\n- HTTP endpoints and web routes present\n");
    }
    if lowered.contains("concurrency") || lowered.contains("thread") {
        text.push_str("\nConcurrency Features:\n- Threading and async operations present\n");
    }
    let haystack = format!("{all}\n\n{text}").to_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| haystack.contains(w));
    let mut domains = Vec::new();
    if any(&["database", "sql", "sqlite"]) {
        domains.push("database operations");
    }
    if any(&["web", "http", "flask", "api", "route"]) {
        domains.push("web functionality");
    }
    if any(&["concurrency", "thread", "async"]) {
        domains.push("concurrency features");
    }
    if domains.is_empty() {
        text.push_str("\nNo specific domains detected\n");
    } else if !text.contains("DETECTED DOMAINS") {
        text.push_str(&format!("\nDETECTED DOMAINS: {}\n", domains.join(", ")));
    }
    text
}

/// `len(s.splitlines())`: Python's line boundaries are `\n`, `\r`, `\r\n` (one), `\v`, `\f`,
/// `\x1c`–`\x1e`, `\x85`, `\u2028` and `\u2029`; a boundary at the very end adds no line,
/// and `""` has none.
pub(super) fn splitlines(s: &str) -> usize {
    let mut lines = 0;
    let mut open = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n'
            | '\u{0b}'
            | '\u{0c}'
            | '\u{1c}'..='\u{1e}'
            | '\u{85}'
            | '\u{2028}'
            | '\u{2029}' => {
                lines += 1;
                open = false;
            }
            '\r' => {
                chars.next_if_eq(&'\n');
                lines += 1;
                open = false;
            }
            _ => open = true,
        }
    }
    lines + usize::from(open)
}

/// Python's `s[:n]` on code points, negative `n` included.
fn py_prefix(s: &str, n: i64) -> String {
    let len = s.chars().count() as i64;
    let end = if n < 0 { (len + n).max(0) } else { n.min(len) };
    s.chars().take(end as usize).collect()
}
