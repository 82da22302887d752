//! Classification of one request body with its profile's action table.
//!
//! This runs on the forwarding thread for every request, so it parses only what it needs:
//! the top-level `action` key, borrowing the string where the JSON has no escapes. The rest
//! of the document is still validated (a request that is not JSON must be told apart), which
//! costs about a microsecond per KiB — measured by `make bench`, well inside the budget of a
//! loopback round trip.

use crate::profile::{Class, Profile};
use serde::Deserialize;
use serde_json::error::Category;
use std::borrow::Cow;

/// What kind of request a body is, as far as the proxy is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A JSON object whose `action` is in the profile's table (the index into it).
    Known(usize),
    /// A JSON object with a missing or unrecognised `action`: the agent answers it with its
    /// "Unknown action" error.
    Unknown,
    /// Valid JSON that is not an object (`[]`, `"x"`, `3`): the agent answers with an error.
    NotObject,
    /// Not JSON at all (or not UTF-8): the agent answers with its parser's error.
    NotJson,
}

/// The classification of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classified {
    pub kind: Kind,
    pub class: Class,
}

impl Classified {
    /// A dense index for per-action metric handles: the action table's indices, then
    /// `unknown`, `not_an_object`, `not_json`. See [`action_labels`].
    pub fn slot(&self, profile: Profile) -> usize {
        let n = profile.actions().len();
        match self.kind {
            Kind::Known(i) => i,
            Kind::Unknown => n,
            Kind::NotObject => n + 1,
            Kind::NotJson => n + 2,
        }
    }
}

/// The `action` label of every slot of a profile, in slot order, with its class.
pub fn action_labels(profile: Profile) -> impl Iterator<Item = (&'static str, Class)> {
    profile.actions().iter().map(|a| (a.name, a.class)).chain([
        ("unknown", Class::Other),
        ("not_an_object", Class::Other),
        ("not_json", Class::Other),
    ])
}

#[derive(Deserialize)]
struct ActionProbe<'a> {
    #[serde(borrow, default)]
    action: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RequestIdProbe<'a> {
    #[serde(borrow, default)]
    request_id: Option<Cow<'a, str>>,
}

/// Classifies one request body.
pub fn classify(profile: Profile, body: &[u8]) -> Classified {
    let kind = match serde_json::from_slice::<ActionProbe>(body) {
        Ok(probe) => match probe.action {
            Some(name) => profile
                .actions()
                .iter()
                .position(|a| a.name == name)
                .map_or(Kind::Unknown, Kind::Known),
            None => Kind::Unknown,
        },
        Err(e) if e.classify() == Category::Data => {
            // Valid JSON of the wrong shape: an object whose `action` is not a string is
            // still an "Unknown action" to the agent; anything else is not an object.
            if first_non_space(body) == Some(b'{') {
                Kind::Unknown
            } else {
                Kind::NotObject
            }
        }
        Err(_) => Kind::NotJson,
    };
    let class = match kind {
        Kind::Known(i) => profile.actions()[i].class,
        _ => Class::Other,
    };
    Classified { kind, class }
}

/// The request's string `request_id`, if it has one. Used off the hot path only.
pub fn request_id(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<RequestIdProbe>(body)
        .ok()
        .and_then(|p| p.request_id)
        .map(Cow::into_owned)
}

fn first_non_space(body: &[u8]) -> Option<u8> {
    body.iter().copied().find(|b| !b.is_ascii_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_the_profiles_table() {
        use Profile::*;
        let cases: &[(Profile, &str, Kind, Class)] = &[
            (
                SessionMemory,
                r#"{"action": "create_session"}"#,
                Kind::Known(0),
                Class::Write,
            ),
            (
                SessionMemory,
                r#"{"action":"get_context","session_id":"s"}"#,
                Kind::Known(2),
                Class::Read,
            ),
            (
                SessionMemory,
                r#"{"action": "health_check"}"#,
                Kind::Known(5),
                Class::Other,
            ),
            (
                ContextualMemory,
                r#"{"action": "record_decision"}"#,
                Kind::Known(1),
                Class::Write,
            ),
            (
                ContextualMemory,
                r#"{"action": "get_context"}"#,
                Kind::Known(2),
                Class::Read,
            ),
            (
                JarvisMemory,
                r#"{"memory": {"x": [1]}, "action": "add_memory"}"#,
                Kind::Known(0),
                Class::Write,
            ),
            (
                JarvisMemory,
                r#"{"action": "get_memories"}"#,
                Kind::Known(1),
                Class::Read,
            ),
            (
                JarvisMemory,
                r#"{"action": "clear_memories"}"#,
                Kind::Known(2),
                Class::Write,
            ),
            // An escaped action name still matches (serde unescapes into an owned string).
            (
                JarvisMemory,
                r#"{"action": "get_memorie\u0073"}"#,
                Kind::Known(1),
                Class::Read,
            ),
            // Another agent's action is unknown here.
            (
                JarvisMemory,
                r#"{"action": "create_session"}"#,
                Kind::Unknown,
                Class::Other,
            ),
            (
                SessionMemory,
                r#"{"session_id": "s"}"#,
                Kind::Unknown,
                Class::Other,
            ),
            (
                SessionMemory,
                r#"{"action": 5}"#,
                Kind::Unknown,
                Class::Other,
            ),
            (
                SessionMemory,
                r#" {"action": null}"#,
                Kind::Unknown,
                Class::Other,
            ),
            (
                JarvisMemory,
                r#"[{"action": "add_memory"}]"#,
                Kind::NotObject,
                Class::Other,
            ),
            (
                JarvisMemory,
                r#""add_memory""#,
                Kind::NotObject,
                Class::Other,
            ),
            (SessionMemory, "hello", Kind::NotJson, Class::Other),
            (SessionMemory, "", Kind::NotJson, Class::Other),
            (
                SessionMemory,
                r#"{"action": "get_context""#,
                Kind::NotJson,
                Class::Other,
            ),
        ];
        for (profile, body, kind, class) in cases {
            let c = classify(*profile, body.as_bytes());
            assert_eq!((c.kind, c.class), (*kind, *class), "{profile:?} {body}");
        }
        let invalid_utf8 = classify(SessionMemory, b"{\"action\": \"\xff\"}");
        assert_eq!(invalid_utf8.kind, Kind::NotJson);
    }

    #[test]
    fn slots_are_dense_and_labelled() {
        for profile in Profile::ALL {
            let labels: Vec<_> = action_labels(profile).collect();
            let n = profile.actions().len();
            assert_eq!(labels.len(), n + 3);
            for kind in [
                Kind::Known(0),
                Kind::Unknown,
                Kind::NotObject,
                Kind::NotJson,
            ] {
                let c = Classified {
                    kind,
                    class: Class::Other,
                };
                assert!(c.slot(profile) < labels.len());
            }
            assert_eq!(
                labels[Classified {
                    kind: Kind::NotJson,
                    class: Class::Other
                }
                .slot(profile)]
                .0,
                "not_json"
            );
        }
    }

    #[test]
    fn request_id_is_read_when_present() {
        assert_eq!(
            request_id(br#"{"request_id": "abc"}"#).as_deref(),
            Some("abc")
        );
        assert_eq!(request_id(br#"{"request_id": 7}"#), None);
        assert_eq!(request_id(b"nope"), None);
    }
}
