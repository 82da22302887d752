//! Where one request goes: decided once, in one place, from the request's class, one
//! snapshot of the agent's flags and what the mirror knows of the request's key. Pure: the
//! forwarder carries the decision out (frames, sockets, the mirror's queues), and a
//! decision that cannot be carried out (a full queue) falls back to legacy as
//! [`legacy`] says.
//!
//! The rules, from `DESIGN.md` and `src/mirror/mod.rs`:
//! - The guard's refusals never reach the agent.
//! - A read is answered by the orchestrator when the flags serve its key (`live` for
//!   `read_percent` of keys, every key from `rampdown` on), or in any stage when legacy is
//!   behind on its key; never while the orchestrator is behind on it (`pending_writes`).
//! - A write is taken by the orchestrator first from `rampdown` on (unless a rollback
//!   holds), and in any stage for a key legacy is behind on; never while the orchestrator
//!   is behind on it, nor when memshift cannot predict the agent's reply.
//! - Everything else goes to legacy, with what the mirror gets of it once legacy has
//!   answered ([`Shares`]).

use crate::answer::{self, Prepared, Query};
use crate::flags::{AgentFlags, Percent, Shares};
use crate::guard::{self, GuardPolicy, Refusal};
use crate::metrics::PrimaryOutcome;
use crate::mirror::Fallback;
use crate::profile::{Class, Profile};
use crate::translate::{self, Plan};
use serde_json::Value;

/// What the mirror knows of keys: which side lacks some of a key's writes.
pub trait KeyState {
    /// Whether legacy may lack a write of any key (cheap: no key needed).
    fn legacy_behind_anywhere(&self) -> bool;
    /// Whether legacy may lack some of `key`'s writes.
    fn legacy_behind(&self, key: &str) -> bool;
    /// Whether the orchestrator may lack some of `key`'s writes.
    fn orchestrator_behind(&self, key: &str) -> bool;
}

/// One request, as far as routing needs it.
pub struct Request<'a> {
    pub profile: Profile,
    pub class: Class,
    /// The body's frames (the agents speak one-frame messages).
    pub frames: usize,
    /// The first frame of the body.
    pub body: &'a [u8],
    /// Whether a guard rule applies to it (see [`guard::check`]).
    pub guard: GuardPolicy,
    /// The request is of a known action (else the guard looks at nothing but frames).
    pub classified: crate::classify::Classified,
}

/// Where a request goes.
#[derive(Debug)]
pub enum Route {
    /// Refused in the agent's own error shape; it never reaches the agent.
    Guard(Refusal),
    /// The orchestrator answers the read in the agent's place.
    Serve {
        key: String,
        request: Value,
        queries: Vec<Query>,
        /// If it has to go to legacy after all: what the mirror then gets.
        otherwise: Option<Shares>,
    },
    /// The orchestrator takes the write first; the agent's reply is predicted.
    TakeFirst { key: String, plan: Box<Plan> },
    /// Legacy answers it.
    Legacy(Legacy),
}

/// A request for legacy, and what comes with it.
#[derive(Debug, Default, PartialEq)]
pub struct Legacy {
    /// What the mirror gets once legacy has answered; `None`: nothing.
    pub copy: Option<Shares>,
    /// A write's key, announced to the mirror as the request goes to legacy (writes of
    /// other keys may go to the orchestrator first).
    pub announced: Option<String>,
    /// The mirror wanted a copy, but the request is not one frame: counted, not copied.
    pub multipart: bool,
    /// Why a write the orchestrator could have taken first went to legacy.
    pub primary: Option<PrimaryOutcome>,
    /// Why a read the orchestrator could have answered went to legacy.
    pub fallback: Option<Fallback>,
}

/// Decides where `req` goes, given the agent's flags now and the mirror's key state
/// (`None` when the agent has no mirror).
pub fn route(req: &Request, flags: &AgentFlags, mirror: Option<&dyn KeyState>) -> Route {
    if let Some(refusal) = guard::check(req.guard, req.frames, &req.classified) {
        return Route::Guard(refusal);
    }
    let Some(mirror) = mirror else {
        return Route::Legacy(Legacy::default());
    };
    let taken = match req.class {
        Class::Read if req.frames == 1 => serve(req, flags, mirror),
        Class::Write if req.frames == 1 => take_first(req, flags, mirror),
        _ => None,
    };
    taken.unwrap_or_else(|| Route::Legacy(legacy(req, flags)))
}

/// What the mirror gets of a request legacy answers (no announced key): by the flags, and
/// nothing of a multipart one.
pub fn legacy(req: &Request, flags: &AgentFlags) -> Legacy {
    let Some(shares) = flags.shares(req.class, req.profile.reads_change_state()) else {
        return Legacy::default();
    };
    if req.frames != 1 {
        return Legacy {
            multipart: true,
            ..Legacy::default()
        };
    }
    Legacy {
        copy: Some(shares),
        ..Legacy::default()
    }
}

/// A read the orchestrator answers, or `None` (with the fallback counted in a
/// [`Route::Legacy`]) when legacy answers it.
fn serve(req: &Request, flags: &AgentFlags, mirror: &dyn KeyState) -> Option<Route> {
    let behind_anywhere = mirror.legacy_behind_anywhere();
    if !flags.serves_reads() && !behind_anywhere {
        return None;
    }
    let request: Value = serde_json::from_slice(req.body).ok()?;
    let Prepared::Fetch { key, queries } = answer::prepare(req.profile, &request) else {
        return None;
    };
    if !(flags.serves_key(&key) || (behind_anywhere && mirror.legacy_behind(&key))) {
        return None;
    }
    let otherwise = legacy(req, flags).copy.map(|s| Shares {
        // A read that falls back was not compared, and is not now.
        compared: None,
        ..s
    });
    if mirror.orchestrator_behind(&key) {
        return Some(Route::Legacy(Legacy {
            fallback: Some(Fallback::PendingWrites),
            ..legacy(req, flags)
        }));
    }
    Some(Route::Serve {
        key,
        request,
        queries,
        otherwise: otherwise.filter(|s| s.mirrored != Percent::NONE),
    })
}

/// A write the orchestrator takes first, or `None` when legacy takes it first without
/// anything more to say.
fn take_first(req: &Request, flags: &AgentFlags, mirror: &dyn KeyState) -> Option<Route> {
    let primary = flags.orchestrator_primary();
    if !(primary || mirror.legacy_behind_anywhere()) {
        return None;
    }
    let request: Value = serde_json::from_slice(req.body).ok().unwrap_or(Value::Null);
    let plan = translate::plan(req.profile, req.body, &request);
    let key = match &plan {
        Some(plan) => Some(plan.key.clone()),
        None => request
            .as_object()
            .and_then(|r| translate::request_key(req.profile, r)),
    };
    let Some(key) = key else {
        // No key: not a write legacy accepts.
        return primary.then(|| {
            Route::Legacy(Legacy {
                primary: Some(PrimaryOutcome::Unpredictable),
                ..legacy(req, flags)
            })
        });
    };
    let legacy_behind = mirror.legacy_behind(&key);
    if !primary && !legacy_behind {
        return None;
    }
    let outcome = match plan {
        // Follow the side with the latest writes.
        _ if mirror.orchestrator_behind(&key) && !legacy_behind => {
            PrimaryOutcome::OrchestratorBehind
        }
        None => PrimaryOutcome::Unpredictable,
        Some(plan) => {
            return Some(Route::TakeFirst {
                key,
                plan: Box::new(plan),
            });
        }
    };
    Some(Route::Legacy(announced(key, outcome)))
}

/// A write going to legacy first while writes may go to the orchestrator first: its key
/// announced, and every such write mirrored.
pub fn announced(key: String, outcome: PrimaryOutcome) -> Legacy {
    Legacy {
        copy: Some(Shares::write(Percent::ALL)),
        announced: Some(key),
        primary: Some(outcome),
        ..Legacy::default()
    }
}

#[cfg(test)]
mod tests;
