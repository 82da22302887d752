//! Plans for writes the orchestrator takes first (stages `rampdown` and `complete`).
//!
//! The client must get the very reply the legacy agent would have given, so a write is
//! taken first only when its profile can predict that reply for certain from the
//! orchestrator's outcome: accepted, or refused for a reason the agent has its own answer
//! for (an unknown session, a duplicate session id). Anything else (a malformed write, a
//! field of a type the agent would choke on) gets no plan and goes to legacy first, as in
//! the earlier stages.
//!
//! The operations are the mirror's own ([`super::translate`] of the predicted reply), with
//! two changes: every memory gets its id now (so that if the write falls back to legacy
//! after an ambiguous failure, the mirror's delivery of it creates the same rows, not
//! twins), and a session must be new (`create_session`) or must exist (`add_interaction`),
//! as it must in legacy.

use super::{MirrorOp, Verdict};
use crate::profile::Profile;
use crate::pyjson;
use serde_json::{Map, Value, json};

/// Why the orchestrator refused a write, among the reasons a legacy agent also refuses
/// writes for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `session_not_found`.
    NoSession,
    /// An idempotency conflict on the session id: the session exists.
    Duplicate,
}

impl Refusal {
    /// The refusal an orchestrator error reply stands for, if any.
    pub fn of(error: &Value) -> Option<Refusal> {
        match error.get("code").and_then(Value::as_str)? {
            "session_not_found" => Some(Refusal::NoSession),
            "validation_error"
                if error.pointer("/details/reason").and_then(Value::as_str)
                    == Some("idempotency_conflict") =>
            {
                Some(Refusal::Duplicate)
            }
            _ => None,
        }
    }
}

/// A write the orchestrator takes first.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The key (session or user) the write belongs to.
    pub key: String,
    /// What the orchestrator is asked, in order.
    pub ops: Vec<MirrorOp>,
    /// The request legacy is sent later (the client's bytes, unless memshift chose an id
    /// the agent would have chosen: then with that id).
    pub replay: Vec<u8>,
    /// The legacy reply when every op succeeded.
    pub accepted: Vec<u8>,
    /// The legacy reply for each refusal the agent has its own answer for.
    pub refused: Vec<(Refusal, Vec<u8>)>,
    /// The write goes into a session_memory session, which the agent forgets an hour
    /// after its creation and then refuses writes into: the orchestrator is asked to refuse
    /// it likewise (`legacy_session_expiry`, see [`crate::forgetting`]).
    pub into_forgetful_session: bool,
}

impl Plan {
    /// The reply for `refusal`, if the agent has one.
    pub fn refusal(&self, refusal: Refusal) -> Option<&[u8]> {
        self.refused
            .iter()
            .find(|(r, _)| *r == refusal)
            .map(|(_, reply)| reply.as_slice())
    }

    /// The ids of the memories the plan creates, in order.
    pub fn memory_ids(&self) -> Vec<String> {
        self.ops
            .iter()
            .filter_map(|op| op.memory_id().map(str::to_owned))
            .collect()
    }
}

/// The plan for `request` (its bytes, and `parsed` from them), or `None` when its legacy
/// reply cannot be predicted. A replay to legacy is the client's very bytes unless the plan
/// had to rewrite the request.
pub fn plan(profile: Profile, request: &[u8], parsed: &Value) -> Option<Plan> {
    let Value::Object(req) = parsed else {
        return None;
    };
    let mut req = req.clone();
    let action = req.get("action")?.as_str()?.to_owned();
    let predicted = match profile {
        Profile::SessionMemory => session(&action, &mut req)?,
        Profile::ContextualMemory => contextual(&action, &req)?,
        Profile::JarvisMemory => jarvis(&action, &req)?,
    };
    let verdict = match profile {
        Profile::SessionMemory => super::session::translate(&action, &req, &predicted.accepted),
        Profile::ContextualMemory => {
            super::contextual::translate(&action, &req, &predicted.accepted)
        }
        Profile::JarvisMemory => super::jarvis::translate(&action, &req, &predicted.accepted),
    };
    let Verdict::Mirror(mirror) = verdict else {
        return None;
    };
    let mut ops = mirror.ops;
    if profile == Profile::SessionMemory {
        match action.as_str() {
            // The session must exist: legacy refuses an interaction for an unknown one.
            "add_interaction" => ops.retain(|op| !matches!(op, MirrorOp::EnsureSession { .. })),
            "create_session" => ops.iter_mut().for_each(|op| {
                if let MirrorOp::EnsureSession { exclusive, .. } = op {
                    *exclusive = true;
                }
            }),
            _ => {}
        }
    }
    let mut ids = std::iter::repeat_with(|| uuid::Uuid::new_v4().to_string());
    ops.iter_mut().for_each(|op| op.pin_ids(&mut ids));
    let replay = if predicted.rewritten {
        serde_json::to_vec(&Value::Object(req)).expect("a JSON value always serializes")
    } else {
        request.to_vec()
    };
    Some(Plan {
        key: mirror.key,
        ops,
        replay,
        accepted: pyjson::dumps(&predicted.accepted).into_bytes(),
        refused: predicted
            .refused
            .into_iter()
            .map(|(r, v)| (r, pyjson::dumps(&v).into_bytes()))
            .collect(),
        into_forgetful_session: profile == Profile::SessionMemory && action == "add_interaction",
    })
}

struct Predicted {
    accepted: Value,
    refused: Vec<(Refusal, Value)>,
    /// The request was given a field legacy would have filled itself.
    rewritten: bool,
}

impl Predicted {
    fn accepted(accepted: Value) -> Option<Predicted> {
        Some(Predicted {
            accepted,
            refused: Vec::new(),
            rewritten: false,
        })
    }
}

/// A non-empty string (Python's truthiness, for the types memshift predicts).
fn filled(req: &Map<String, Value>, key: &str) -> bool {
    req.get(key)
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
}

/// Absent, or a string: the fields the agents use as dictionary keys or store as text,
/// where another type would be stored differently from what the mirror writes.
fn string_or_absent(req: &Map<String, Value>, key: &str) -> bool {
    matches!(req.get(key), None | Some(Value::String(_)))
}

fn session(action: &str, req: &mut Map<String, Value>) -> Option<Predicted> {
    // Echoed whatever it is; `""` when absent.
    let rid = req.get("request_id").cloned().unwrap_or_else(|| json!(""));
    let success = json!({"status": "success", "request_id": rid});
    match action {
        "create_session" => {
            if !string_or_absent(req, "user_id") {
                return None;
            }
            let mut rewritten = false;
            let sid = match req.get("session_id") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                // Absent: the agent picks a uuid4; memshift picks it instead, and tells legacy.
                None => {
                    let sid = uuid::Uuid::new_v4().to_string();
                    req.insert("session_id".into(), json!(sid));
                    rewritten = true;
                    sid
                }
                // Present but falsy: the agent reuses the last session id any request
                // touched, which only it knows. Other types are stored unlike the mirror.
                Some(_) => return None,
            };
            Some(Predicted {
                accepted: json!({"status": "success", "session_id": sid, "request_id": rid}),
                refused: vec![(
                    Refusal::Duplicate,
                    json!({"status": "error", "session_id": null, "request_id": rid}),
                )],
                rewritten,
            })
        }
        "add_interaction" => {
            if !(filled(req, "session_id") && filled(req, "role") && filled(req, "content")) {
                return None;
            }
            Some(Predicted {
                accepted: success,
                refused: vec![(
                    Refusal::NoSession,
                    json!({"status": "error", "request_id": rid}),
                )],
                rewritten: false,
            })
        }
        "clear_session" | "delete_session" if filled(req, "session_id") => {
            Predicted::accepted(success)
        }
        _ => None,
    }
}

fn contextual(action: &str, req: &Map<String, Value>) -> Option<Predicted> {
    // The agent saves, then fails on its own return value: this reply means saved. It is
    // the reply whatever the content and type (a summary that cannot be rebuilt from them
    // is caught and left as it was), for any id the agent can keep a session under.
    let saved = json!({"status": "error", "message": super::contextual::SAVED});
    super::contextual::key(req)?;
    match action {
        "add_interaction" | "record_decision" => Predicted::accepted(saved),
        _ => None,
    }
}

fn jarvis(action: &str, req: &Map<String, Value>) -> Option<Predicted> {
    super::jarvis::key(req)?;
    match action {
        "add_memory" => {
            let memory = req.get("memory").unwrap_or(&Value::Null);
            let reminder = memory.get("type").and_then(Value::as_str) == Some("reminder");
            Predicted::accepted(if reminder {
                json!({"status": "error", "reason": super::jarvis::REMINDER_SAVED})
            } else {
                json!({"status": "ok"})
            })
        }
        "clear_memories" => Predicted::accepted(json!({"status": "ok"})),
        _ => None,
    }
}
