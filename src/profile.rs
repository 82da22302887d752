//! Profiles: what memshift knows about one legacy wire protocol.
//!
//! A profile names the agent's actions and their class (read, write, other), and the shape
//! of the agent's own error replies. Later issues add success detection, translation into
//! orchestrator writes and legacy-shape answers; they all hang off [`Profile`]. The tables
//! follow `specs/legacy-agents.md` to the letter.

use crate::pyjson;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One of the built-in legacy protocols.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// SessionMemoryAgent (main PC, port 5574): SQLite sessions and interactions.
    SessionMemory,
    /// ContextualMemoryAgent (PC2, port 5596): interactions, summaries, decisions.
    ContextualMemory,
    /// JarvisMemoryAgent (PC2, port 5598): per-user memories.
    JarvisMemory,
}

crate::labels! {
    /// What an action does to the agent's store; drives mirroring and shadow reads.
    pub enum Class {
        Read = "read",
        Write = "write",
        Other = "other",
    }
}

/// One action of a profile's action table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Action {
    pub name: &'static str,
    pub class: Class,
}

const fn action(name: &'static str, class: Class) -> Action {
    Action { name, class }
}

const SESSION_ACTIONS: &[Action] = &[
    action("create_session", Class::Write),
    action("add_interaction", Class::Write),
    // get_context updates `last_active`, but that is bookkeeping, not data: it is a read.
    action("get_context", Class::Read),
    action("clear_session", Class::Write),
    action("delete_session", Class::Write),
    action("health_check", Class::Other),
];

const CONTEXTUAL_ACTIONS: &[Action] = &[
    action("add_interaction", Class::Write),
    action("record_decision", Class::Write),
    // get_context truncates the stored summary as a side effect; the data it returns is
    // what a read returns, so it is classified as a read, and the mirror keeps the cut
    // (`translate::read_effect`).
    action("get_context", Class::Read),
    action("health_check", Class::Other),
];

const JARVIS_ACTIONS: &[Action] = &[
    action("add_memory", Class::Write),
    action("get_memories", Class::Read),
    action("clear_memories", Class::Write),
];

impl Profile {
    pub const ALL: [Profile; 3] = [
        Profile::SessionMemory,
        Profile::ContextualMemory,
        Profile::JarvisMemory,
    ];

    /// Whether some reads change what later reads answer (contextual's `get_context` cuts
    /// the summary it holds): such reads are mirrored for that change, whatever the stage
    /// compares.
    pub fn reads_change_state(self) -> bool {
        self == Profile::ContextualMemory
    }

    /// The name used in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            Profile::SessionMemory => "session_memory",
            Profile::ContextualMemory => "contextual_memory",
            Profile::JarvisMemory => "jarvis_memory",
        }
    }

    /// Parses a configuration name; `None` for anything not built in.
    pub fn from_name(name: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The agent's action table, in a fixed order (metric label slots depend on it).
    pub fn actions(self) -> &'static [Action] {
        match self {
            Profile::SessionMemory => SESSION_ACTIONS,
            Profile::ContextualMemory => CONTEXTUAL_ACTIONS,
            Profile::JarvisMemory => JARVIS_ACTIONS,
        }
    }

    /// The key under which the agent puts its error text.
    pub fn error_key(self) -> &'static str {
        match self {
            Profile::SessionMemory | Profile::ContextualMemory => "message",
            Profile::JarvisMemory => "reason",
        }
    }

    /// Whether the agent echoes `request_id` in its error replies (session_memory does, with
    /// `""` when the request had none).
    fn echoes_request_id(self) -> bool {
        matches!(self, Profile::SessionMemory)
    }

    /// An error reply in the agent's own shape and byte format, for replies memshift gives
    /// in the agent's place. `request_id` is echoed where the agent would echo it.
    pub fn error_reply(self, message: &str, request_id: Option<&str>) -> Vec<u8> {
        let mut reply = Map::new();
        reply.insert("status".into(), Value::from("error"));
        reply.insert(self.error_key().into(), Value::from(message));
        if self.echoes_request_id() {
            reply.insert("request_id".into(), Value::from(request_id.unwrap_or("")));
        }
        pyjson::dumps(&Value::Object(reply)).into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_replies_take_each_agents_shape() {
        let cases = [
            (
                Profile::SessionMemory,
                Some("r-1"),
                r#"{"status": "error", "message": "boom", "request_id": "r-1"}"#,
            ),
            (
                Profile::SessionMemory,
                None,
                r#"{"status": "error", "message": "boom", "request_id": ""}"#,
            ),
            (
                Profile::ContextualMemory,
                Some("r-1"),
                r#"{"status": "error", "message": "boom"}"#,
            ),
            (
                Profile::JarvisMemory,
                Some("r-1"),
                r#"{"status": "error", "reason": "boom"}"#,
            ),
        ];
        for (profile, rid, expected) in cases {
            let reply = profile.error_reply("boom", rid);
            assert_eq!(String::from_utf8(reply).unwrap(), expected, "{profile:?}");
        }
    }

    #[test]
    fn names_round_trip_and_tables_are_unique() {
        for profile in Profile::ALL {
            assert_eq!(Profile::from_name(profile.name()), Some(profile));
            let actions = profile.actions();
            for (i, a) in actions.iter().enumerate() {
                assert!(
                    actions[i + 1..].iter().all(|b| b.name != a.name),
                    "{} listed twice in {}",
                    a.name,
                    profile.name()
                );
            }
        }
        assert_eq!(Profile::from_name("umra"), None);
    }
}
