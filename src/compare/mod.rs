//! Comparing a legacy reply with the orchestrator's legacy-shape answer. Pure.
//!
//! Both are compared as parsed JSON, never as bytes (the agents escape non-ASCII text, the
//! orchestrator's answers need not), key order included (`serde_json` keeps it; Python
//! dicts keep it and clients see it), after the profile's normalisation: volatile values
//! (every timestamp) are masked, and where the spec says the legacy side is lossy the
//! comparison is tolerant (contextual's stored summary keeps an earlier read's cut). Each
//! comparison gets exactly one [`Outcome`]; a difference is reported as the paths of the
//! fields that differ, never their values (they are users' memories).

use crate::profile::Profile;
use serde_json::Value;

crate::labels! {
    /// The outcome of one shadow comparison (DESIGN.md, "Comparisons that mean something").
    pub enum Outcome {
        Match = "match",
        Mismatch = "mismatch",
        /// The key had mirrored writes not yet applied (or applied since the legacy read): a
        /// difference says nothing.
        Race = "race",
        /// The legacy store dropped data by itself (a session expired).
        LegacyDrift = "legacy_drift",
        /// The orchestrator answered with an error, or could not be asked.
        ShadowError = "shadow_error",
        ShadowTimeout = "shadow_timeout",
        /// The legacy reply was not JSON, or the legacy agent did not answer.
        LegacyError = "legacy_error",
        /// Not compared: outside the sample, a full queue, or a read the answer builder does
        /// not emulate.
        Skipped = "skipped",
    }
}

/// A comparison's outcome and, when they differ, where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: Outcome,
    /// Paths of the differing fields (`context[3].content`), at most [`MAX_PATHS`].
    pub paths: Vec<String>,
}

/// The path segment that reports an object whose keys come in another order.
pub const ORDER: &str = "<key order>";

/// Differing paths reported per comparison at most.
pub const MAX_PATHS: usize = 20;

/// Compares the legacy reply bytes with the orchestrator's answer. `raced`: the key had
/// mirrored writes pending when the legacy agent answered, or got new ones since.
pub fn compare(profile: Profile, legacy: &[u8], shadow: &Value, raced: bool) -> Verdict {
    let Ok(mut legacy) = serde_json::from_slice::<Value>(legacy) else {
        return verdict(Outcome::LegacyError, Vec::new());
    };
    let mut shadow = shadow.clone();
    mask_volatile(profile, &mut legacy);
    mask_volatile(profile, &mut shadow);
    if profile == Profile::ContextualMemory {
        tolerate_cuts(&mut legacy, &shadow);
    }
    let mut paths = Vec::new();
    diff(&legacy, &shadow, String::new(), &mut paths);
    if paths.is_empty() {
        return verdict(Outcome::Match, paths);
    }
    let outcome = if drifted(profile, &legacy, &shadow) {
        Outcome::LegacyDrift
    } else if raced {
        Outcome::Race
    } else {
        Outcome::Mismatch
    };
    verdict(outcome, paths)
}

fn verdict(outcome: Outcome, paths: Vec<String>) -> Verdict {
    Verdict { outcome, paths }
}

/// Replaces `profile`'s volatile values in a reply (timestamps, the agent's clock) by one
/// marker, in place: what is left must be the same bytes on both sides.
pub fn mask_volatile(profile: Profile, reply: &mut Value) {
    for pattern in volatile(profile) {
        mask(reply, pattern);
    }
}

/// Paths of volatile values, `*` standing for every index of an array.
fn volatile(profile: Profile) -> &'static [&'static [&'static str]] {
    match profile {
        Profile::SessionMemory => &[&["context", "*", "timestamp"]],
        Profile::ContextualMemory => &[&["last_updated"], &["key_decisions", "*", "timestamp"]],
        Profile::JarvisMemory => &[&["memories", "*", "timestamp"]],
    }
}

/// Replaces the value at `pattern` (when there) by a marker, so that only its presence is
/// compared.
fn mask(v: &mut Value, pattern: &[&str]) {
    let Some((head, rest)) = pattern.split_first() else {
        *v = Value::String("<volatile>".to_owned());
        return;
    };
    match (v, *head) {
        (Value::Array(items), "*") => items.iter_mut().for_each(|i| mask(i, rest)),
        (Value::Object(map), key) => {
            if let Some(child) = map.get_mut(key) {
                mask(child, rest);
            }
        }
        _ => {}
    }
}

/// contextual_memory keeps a read's cut in its stored summary: a legacy text that is the
/// rebuilt one cut short (a prefix plus `"..."`) is what the agent would hold.
fn tolerate_cuts(legacy: &mut Value, shadow: &Value) {
    for field in ["code_context", "conversation_summary"] {
        let (Some(Value::String(l)), Some(Value::String(s))) =
            (legacy.get(field), shadow.get(field))
        else {
            continue;
        };
        if let Some(prefix) = l.strip_suffix("...")
            && s.starts_with(prefix)
            && s.len() > prefix.len()
        {
            legacy[field] = Value::String(s.clone());
        }
    }
}

/// The legacy agent lost data by itself: session_memory expired the session (its context
/// is empty where the orchestrator, which only ever gets what the agent accepted, has some).
fn drifted(profile: Profile, legacy: &Value, shadow: &Value) -> bool {
    let empty = |v: &Value| {
        v.get("context")
            .and_then(Value::as_array)
            .map(Vec::is_empty)
    };
    profile == Profile::SessionMemory && empty(legacy) == Some(true) && empty(shadow) == Some(false)
}

/// The paths where `a` and `b` differ (at most a few dozen), such as `content.text`, key
/// order included.
pub fn paths(a: &Value, b: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff(a, b, String::new(), &mut out);
    out
}

/// [`paths`], for values no client sees as bytes (a session's metadata, which no legacy
/// read returns): the order of keys is not a difference.
pub fn paths_in_any_order(a: &Value, b: &Value) -> Vec<String> {
    paths(a, b)
        .into_iter()
        .filter(|p| !p.ends_with(ORDER))
        .collect()
}

/// Appends the paths where `a` and `b` differ.
fn diff(a: &Value, b: &Value, path: String, out: &mut Vec<String>) {
    if out.len() >= MAX_PATHS {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                let p = join(&path, k);
                match y.get(k) {
                    Some(w) => diff(v, w, p, out),
                    None => out.push(p),
                }
            }
            for k in y.keys().filter(|k| !x.contains_key(*k)) {
                out.push(join(&path, k));
            }
            // Python dicts keep insertion order and clients see the bytes: the same keys
            // in another order are a difference of their own.
            let common = |m: &serde_json::Map<String, Value>,
                          other: &serde_json::Map<String, Value>| {
                m.keys()
                    .filter(|k| other.contains_key(*k))
                    .cloned()
                    .collect::<Vec<_>>()
            };
            if common(x, y) != common(y, x) {
                out.push(join(&path, ORDER));
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                diff(v, w, format!("{path}[{i}]"), out);
            }
            if x.len() != y.len() {
                out.push(format!("{path}.length"));
            }
        }
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => {}
        _ if a == b => {}
        _ => out.push(if path.is_empty() {
            "$".to_owned()
        } else {
            path
        }),
    }
    out.truncate(MAX_PATHS);
}

/// `v` with every string and number replaced by a marker: the shape of a reply without its
/// contents, for mismatch samples. `status` and `action` values (the protocol's own words)
/// are kept.
pub fn redact(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let keep = matches!(k.as_str(), "status" | "action") && v.is_string();
                    (k.clone(), if keep { v.clone() } else { redact(v) })
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        Value::String(_) | Value::Number(_) => Value::String("<redacted>".to_owned()),
        other => other.clone(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests;
