//! contextual_memory `get_context`: the stored summary, rebuilt exactly as the agent builds
//! it. Once a session has had 51 interactions, every add rebuilds the summary from the
//! newest 51 (`code_context`, `conversation_summary`, `errors_encountered`), carrying the
//! key decisions over; before that the summary exists only if a decision was recorded
//! (`{"key_decisions": […]}`), and without one the agent answers its `'NoneType'` error.
//! The request's `max_tokens` cuts the two texts to `(max_tokens // 2) * 4` characters plus
//! `"..."` when longer.
//!
//! A backfilled session brings the agent's own summary (a `summary` memory, see
//! `translate::contextual_summary`): it was built from interactions the agent may no longer
//! keep, so the orchestrator cannot rebuild it. While no interaction is newer than that
//! summary, it is the answer (with the key decisions recorded since); the next add rebuilds
//! it from the newest 51, all of which the orchestrator then has.
//!
//! Not emulated: the agent keeps that cut in its store until the next rebuild, so a later
//! read with a larger `max_tokens` still sees the cut text. Comparisons tolerate it (a
//! legacy text that is a cut of the rebuilt one matches); a live read returns the whole
//! text.

use super::{Prepared, Stored, Unsupported, epoch, int_param, query};
use serde_json::{Map, Value, json};

/// Interactions a summary is built from.
const WINDOW: usize = 51;

const NO_SUMMARY: &str = "'NoneType' object has no attribute 'get'";

pub fn prepare(req: &Map<String, Value>) -> Prepared {
    // A missing id is stored (and mirrored) under "null".
    let session_id = match req.get("session_id") {
        None | Some(Value::Null) => "null".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Prepared::Unsupported(Unsupported::OddParameter),
    };
    if int_param(req, "max_tokens", 2000).is_none() {
        return Prepared::Unsupported(Unsupported::OddParameter);
    }
    let mut interactions = query("context", ("session_id", &session_id));
    interactions.newest = Some(WINDOW);
    let mut imported = query("summary", ("session_id", &session_id));
    imported.newest = Some(1);
    Prepared::Fetch {
        queries: vec![
            interactions,
            query("decision", ("session_id", &session_id)),
            imported,
        ],
        key: session_id,
    }
}

pub fn answer(req: &Map<String, Value>, data: &[Vec<Stored>]) -> Result<Value, Unsupported> {
    let max_tokens = int_param(req, "max_tokens", 2000).ok_or(Unsupported::OddParameter)?;
    let interactions = data.first().map_or(&[][..], Vec::as_slice);
    let decisions = data.get(1).map_or(&[][..], Vec::as_slice);
    let key_decisions: Vec<Value> = decisions
        .iter()
        .map(|d| {
            json!({
                "timestamp": epoch(d.created_at),
                "decision": d.content.get("text").cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    let newest = interactions.last().map(|s| s.created_at);
    let imported = data
        .get(2)
        .and_then(|s| s.last())
        .filter(|s| newest.is_none_or(|t| s.created_at >= t));
    if let Some(imported) = imported {
        let Value::Object(stored) = &imported.content else {
            return Err(Unsupported::OddContent);
        };
        let mut summary = stored.clone();
        summary.insert("key_decisions".into(), json!(key_decisions));
        cut(&mut summary, max_tokens);
        return Ok(Value::Object(summary));
    }
    if interactions.len() < WINDOW {
        if key_decisions.is_empty() {
            return Ok(json!({"status": "error", "message": NO_SUMMARY}));
        }
        return Ok(json!({ "key_decisions": key_decisions }));
    }
    // Newest first, as the agent keeps them.
    let window: Vec<&Stored> = interactions.iter().rev().take(WINDOW).collect();
    let of_type = |t: &str| -> Result<Vec<&str>, Unsupported> {
        window
            .iter()
            .filter(|s| s.content.get("type").and_then(Value::as_str) == Some(t))
            .map(|s| {
                s.content
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or(Unsupported::OddContent)
            })
            .collect()
    };
    let mut summary = Map::new();
    summary.insert("last_updated".into(), epoch(window[0].created_at));
    let code = of_type("code")?;
    if !code.is_empty() {
        summary.insert("code_context".into(), json!(code_summary(&code)));
    }
    let queries = of_type("user_query")?;
    let responses = of_type("system_response")?;
    if !queries.is_empty() || !responses.is_empty() {
        let mut text = format!(
            "Conversation Summary:\nTotal queries: {}\nTotal responses: {}\n",
            queries.len(),
            responses.len()
        );
        if !queries.is_empty() {
            text.push_str("\nRecent Queries:\n");
            for q in queries.iter().take(3) {
                text.push_str(&format!("- {}...\n", py_prefix(q, 100)));
            }
        }
        summary.insert("conversation_summary".into(), json!(text));
    }
    let errors: Vec<Value> = of_type("error")?
        .into_iter()
        .filter(|e| {
            let lower = e.to_lowercase();
            lower.contains("error") || lower.contains("exception")
        })
        .map(|e| json!(py_prefix(e, 200)))
        .collect();
    summary.insert("errors_encountered".into(), json!(errors));
    summary.insert("key_decisions".into(), json!(key_decisions));
    cut(&mut summary, max_tokens);
    Ok(Value::Object(summary))
}

/// `get_context`'s cut of the two texts to `(max_tokens // 2) * 4` characters plus `"..."`.
fn cut(summary: &mut Map<String, Value>, max_tokens: i64) {
    let limit = max_tokens.div_euclid(2) * 4;
    for field in ["code_context", "conversation_summary"] {
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
        all.split('\n').count()
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

/// Python's `s[:n]` on code points, negative `n` included.
fn py_prefix(s: &str, n: i64) -> String {
    let len = s.chars().count() as i64;
    let end = if n < 0 { (len + n).max(0) } else { n.min(len) };
    s.chars().take(end as usize).collect()
}
