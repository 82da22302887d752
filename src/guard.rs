//! The guard: requests known to kill or wedge a legacy agent are answered by memshift, in the
//! agent's own error shape, and never forwarded.
//!
//! Measured hazards (`specs/legacy-agents.md`): a multipart request kills the jarvis and
//! contextual agents and makes session_memory answer the wrong frame; a non-JSON request
//! wedges umra for good. Everything else an agent answers by itself — invalid JSON included,
//! whose exact error text clients may depend on — is forwarded untouched.

use crate::classify::{self, Classified, Kind};
use crate::profile::Profile;

/// Which hazards the guard keeps away from one agent (configurable per agent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuardPolicy {
    /// Answer multipart requests instead of forwarding them. On by default for every agent.
    pub multipart: bool,
    /// Answer requests that are not JSON instead of forwarding them. Off by default: the
    /// three built-in agents answer them themselves. For agents like umra that wedge.
    pub non_json: bool,
}

impl Default for GuardPolicy {
    fn default() -> Self {
        GuardPolicy {
            multipart: true,
            non_json: false,
        }
    }
}

crate::labels! {
    /// Why the guard refused a request.
    pub enum Refusal {
        Multipart = "multipart",
        NonJson = "non_json",
    }
}

impl Refusal {
    /// The error text put in the agent's error shape. It names memshift so that whoever
    /// reads it knows the agent never saw the request.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Multipart => {
                "memshift: multipart request refused (one JSON frame expected; it would crash the agent)"
            }
            Refusal::NonJson => "memshift: non-JSON request refused (it would wedge the agent)",
        }
    }
}

/// Decides whether a request with `frames` body frames, whose first frame classified as
/// `first`, may be forwarded.
pub fn check(policy: GuardPolicy, frames: usize, first: &Classified) -> Option<Refusal> {
    if policy.multipart && frames > 1 {
        Some(Refusal::Multipart)
    } else if policy.non_json && first.kind == Kind::NotJson {
        Some(Refusal::NonJson)
    } else {
        None
    }
}

/// The reply the client gets instead of the agent's: the agent's error shape, echoing the
/// first frame's `request_id` where the agent echoes it.
pub fn reply(profile: Profile, refusal: Refusal, first_frame: &[u8]) -> Vec<u8> {
    let request_id = classify::request_id(first_frame);
    profile.error_reply(refusal.message(), request_id.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Class;

    fn classified(kind: Kind) -> Classified {
        Classified {
            kind,
            class: Class::Other,
        }
    }

    #[test]
    fn refuses_only_what_the_policy_names() {
        let on = GuardPolicy {
            multipart: true,
            non_json: true,
        };
        let default = GuardPolicy::default();
        let off = GuardPolicy {
            multipart: false,
            non_json: false,
        };
        let cases = [
            (on, 2, Kind::Known(0), Some(Refusal::Multipart)),
            (on, 1, Kind::NotJson, Some(Refusal::NonJson)),
            (on, 3, Kind::NotJson, Some(Refusal::Multipart)),
            (on, 1, Kind::NotObject, None),
            (default, 2, Kind::Unknown, Some(Refusal::Multipart)),
            (default, 1, Kind::NotJson, None),
            (off, 5, Kind::NotJson, None),
            (on, 1, Kind::Known(1), None),
        ];
        for (policy, frames, kind, expected) in cases {
            assert_eq!(
                check(policy, frames, &classified(kind)),
                expected,
                "{policy:?} {frames} {kind:?}"
            );
        }
    }

    #[test]
    fn reply_echoes_request_id_for_session_only() {
        let first = br#"{"action": "get_context", "request_id": "r9"}"#;
        let session =
            String::from_utf8(reply(Profile::SessionMemory, Refusal::Multipart, first)).unwrap();
        assert!(
            session.starts_with(r#"{"status": "error", "message": "memshift: multipart"#),
            "{session}"
        );
        assert!(session.ends_with(r#", "request_id": "r9"}"#), "{session}");
        let jarvis =
            String::from_utf8(reply(Profile::JarvisMemory, Refusal::Multipart, first)).unwrap();
        assert!(
            jarvis.starts_with(r#"{"status": "error", "reason": "memshift: multipart"#),
            "{jarvis}"
        );
        assert!(!jarvis.contains("request_id"));
    }
}
