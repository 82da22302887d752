//! Every stage × class × rollback, and the key states that change a decision. The expected
//! routes are written from the rules in the module's doc, not from the code.

use super::*;
use crate::classify;
use crate::flags::Stage;
use crate::guard::GuardPolicy;
use std::collections::HashSet;

/// What the mirror knows, as sets of keys.
#[derive(Default)]
struct Keys {
    legacy_behind: HashSet<&'static str>,
    orchestrator_behind: HashSet<&'static str>,
}

impl KeyState for Keys {
    fn legacy_behind_anywhere(&self) -> bool {
        !self.legacy_behind.is_empty()
    }
    fn legacy_behind(&self, key: &str) -> bool {
        self.legacy_behind.contains(key)
    }
    fn orchestrator_behind(&self, key: &str) -> bool {
        self.orchestrator_behind.contains(key)
    }
}

const READ: &str = r#"{"action": "get_context", "session_id": "s1"}"#;
const WRITE: &str =
    r#"{"action": "add_interaction", "session_id": "s1", "type": "code", "content": "x"}"#;
const OTHER: &str = r#"{"action": "health_check"}"#;
/// A write the agent refuses in a way memshift cannot predict: no key at all.
const KEYLESS: &str =
    r#"{"action": "add_interaction", "session_id": [1], "type": "code", "content": "x"}"#;

fn request(profile: Profile, body: &str, frames: usize) -> Request<'_> {
    let classified = classify::classify(profile, body.as_bytes());
    Request {
        profile,
        class: classified.class,
        frames,
        body: body.as_bytes(),
        guard: GuardPolicy::default(),
        classified,
    }
}

fn flags(stage: Stage, rollback: bool) -> AgentFlags {
    AgentFlags {
        stage,
        mirror_percent: Percent::ALL,
        shadow_percent: Percent::ALL,
        read_percent: Percent::ALL,
        rollback,
    }
}

/// A route in short, for tables.
#[derive(Debug, PartialEq)]
enum Short {
    Serve,
    TakeFirst,
    /// Legacy, with the mirror's copy: (mirrored, compared), or none.
    Legacy(Option<(bool, bool)>),
}

fn short(route: &Route) -> Short {
    match route {
        Route::Guard(_) => panic!("no guard rule applies here"),
        Route::Serve { .. } => Short::Serve,
        Route::TakeFirst { .. } => Short::TakeFirst,
        Route::Legacy(l) => Short::Legacy(
            l.copy
                .map(|s| (s.mirrored != Percent::NONE, s.compared.is_some())),
        ),
    }
}

/// contextual_memory: its reads change the agent's state, so they are mirrored for that
/// in every stage that mirrors writes.
#[test]
fn every_stage_class_and_rollback_when_no_key_lags() {
    use Short::*;
    let keys = Keys::default();
    let profile = Profile::ContextualMemory;
    // (stage, rollback) → (read, write, other)
    let table = [
        (
            Stage::Off,
            false,
            (Legacy(None), Legacy(None), Legacy(None)),
        ),
        (Stage::Off, true, (Legacy(None), Legacy(None), Legacy(None))),
        (
            Stage::DualWrite,
            false,
            (
                Legacy(Some((true, false))),
                Legacy(Some((true, false))),
                Legacy(None),
            ),
        ),
        (
            Stage::DualWrite,
            true,
            (
                Legacy(Some((true, false))),
                Legacy(Some((true, false))),
                Legacy(None),
            ),
        ),
        (
            Stage::Shadow,
            false,
            (
                Legacy(Some((true, true))),
                Legacy(Some((true, false))),
                Legacy(None),
            ),
        ),
        (
            Stage::Shadow,
            true,
            (
                Legacy(Some((true, true))),
                Legacy(Some((true, false))),
                Legacy(None),
            ),
        ),
        (
            Stage::Live,
            false,
            (Serve, Legacy(Some((true, false))), Legacy(None)),
        ),
        // A rollback takes reads back to legacy; they are still compared.
        (
            Stage::Live,
            true,
            (
                Legacy(Some((true, true))),
                Legacy(Some((true, false))),
                Legacy(None),
            ),
        ),
        (Stage::Rampdown, false, (Serve, TakeFirst, Legacy(None))),
        (
            Stage::Rampdown,
            true,
            (
                Legacy(Some((true, false))),
                Legacy(Some((true, false))),
                Legacy(None),
            ),
        ),
        (Stage::Complete, false, (Serve, TakeFirst, Legacy(None))),
        (
            Stage::Complete,
            true,
            (
                Legacy(Some((true, false))),
                Legacy(Some((true, false))),
                Legacy(None),
            ),
        ),
    ];
    assert_eq!(table.len(), Stage::ALL.len() * 2);
    for (stage, rollback, (read, write, other)) in table {
        let f = flags(stage, rollback);
        let at = |body| short(&route(&request(profile, body, 1), &f, Some(&keys)));
        assert_eq!(at(READ), read, "{stage} rollback={rollback}: read");
        assert_eq!(at(WRITE), write, "{stage} rollback={rollback}: write");
        assert_eq!(at(OTHER), other, "{stage} rollback={rollback}: other");
    }
}

/// session_memory's reads change nothing: outside the comparing stages they are not copied.
#[test]
fn reads_that_change_nothing_are_copied_only_to_be_compared() {
    let keys = Keys::default();
    let read = r#"{"action": "get_context", "session_id": "s1"}"#;
    for stage in Stage::ALL {
        let f = flags(stage, true);
        let got = short(&route(
            &request(Profile::SessionMemory, read, 1),
            &f,
            Some(&keys),
        ));
        let compared = stage.shadows_reads();
        let expected = Short::Legacy(compared.then_some((false, true)));
        assert_eq!(got, expected, "{stage}");
    }
}

#[test]
fn a_key_legacy_lags_on_goes_to_the_orchestrator_in_every_stage_even_under_rollback() {
    let keys = Keys {
        legacy_behind: HashSet::from(["s1"]),
        ..Keys::default()
    };
    let profile = Profile::ContextualMemory;
    for stage in Stage::ALL {
        for rollback in [false, true] {
            let f = flags(stage, rollback);
            let at = |body| short(&route(&request(profile, body, 1), &f, Some(&keys)));
            assert_eq!(at(READ), Short::Serve, "{stage} rollback={rollback}");
            assert_eq!(at(WRITE), Short::TakeFirst, "{stage} rollback={rollback}");
        }
    }
}

#[test]
fn a_key_the_orchestrator_lags_on_goes_to_legacy_and_says_why() {
    let keys = Keys {
        orchestrator_behind: HashSet::from(["s1"]),
        ..Keys::default()
    };
    let profile = Profile::ContextualMemory;
    let f = flags(Stage::Rampdown, false);
    let Route::Legacy(read) = route(&request(profile, READ, 1), &f, Some(&keys)) else {
        panic!("the read goes to legacy");
    };
    assert_eq!(read.fallback, Some(Fallback::PendingWrites));
    let Route::Legacy(write) = route(&request(profile, WRITE, 1), &f, Some(&keys)) else {
        panic!("the write goes to legacy");
    };
    assert_eq!(write.primary, Some(PrimaryOutcome::OrchestratorBehind));
    assert_eq!(write.announced.as_deref(), Some("s1"));
    assert_eq!(write.copy, Some(Shares::write(Percent::ALL)));
    // Both behind: legacy's writes come first (the reverse outbox), so the orchestrator.
    let both = Keys {
        legacy_behind: HashSet::from(["s1"]),
        orchestrator_behind: HashSet::from(["s1"]),
    };
    let got = route(&request(profile, WRITE, 1), &f, Some(&both));
    assert_eq!(short(&got), Short::TakeFirst);
}

#[test]
fn a_write_memshift_cannot_predict_goes_to_legacy_first() {
    let keys = Keys::default();
    let f = flags(Stage::Rampdown, false);
    let Route::Legacy(keyless) = route(
        &request(Profile::ContextualMemory, KEYLESS, 1),
        &f,
        Some(&keys),
    ) else {
        panic!("legacy");
    };
    assert_eq!(keyless.primary, Some(PrimaryOutcome::Unpredictable));
    assert_eq!(keyless.announced, None);
    // Not JSON at all: the agent's parser error, from the agent.
    let got = route(
        &request(Profile::ContextualMemory, "not json", 1),
        &f,
        Some(&keys),
    );
    assert_eq!(short(&got), Short::Legacy(None));
}

#[test]
fn multipart_requests_and_agents_without_a_mirror_go_to_legacy_uncopied() {
    let keys = Keys::default();
    let f = flags(Stage::Live, false);
    // With the guard's multipart rule off for the agent (it is on by default).
    let unguarded = Request {
        guard: GuardPolicy {
            multipart: false,
            non_json: false,
        },
        ..request(Profile::ContextualMemory, WRITE, 2)
    };
    let Route::Legacy(multipart) = route(&unguarded, &f, Some(&keys)) else {
        panic!("legacy");
    };
    assert!(multipart.multipart);
    assert_eq!(multipart.copy, None);
    for body in [READ, WRITE] {
        let got = route(&request(Profile::ContextualMemory, body, 1), &f, None);
        assert_eq!(short(&got), Short::Legacy(None));
    }
}

#[test]
fn the_guard_decides_first() {
    let keys = Keys::default();
    let f = flags(Stage::Rampdown, false);
    let got = route(
        &request(Profile::JarvisMemory, r#"{"action": "add_memory"}"#, 2),
        &f,
        Some(&keys),
    );
    assert!(matches!(got, Route::Guard(_)), "{got:?}");
}

#[test]
fn only_keys_in_read_percent_are_served_in_live() {
    let keys = Keys::default();
    let f = AgentFlags {
        read_percent: Percent::NONE,
        ..flags(Stage::Live, false)
    };
    let got = route(
        &request(Profile::ContextualMemory, READ, 1),
        &f,
        Some(&keys),
    );
    assert_eq!(short(&got), Short::Legacy(Some((true, true))));
    // From rampdown on, every key.
    let f = AgentFlags {
        read_percent: Percent::NONE,
        ..flags(Stage::Rampdown, false)
    };
    let got = route(
        &request(Profile::ContextualMemory, READ, 1),
        &f,
        Some(&keys),
    );
    assert_eq!(short(&got), Short::Serve);
}

/// A read served live that falls back later goes to legacy with its mirror copy for the
/// agent's state only (it was not compared, and is not now).
#[test]
fn a_served_read_keeps_its_copy_for_a_fallback() {
    let keys = Keys::default();
    let f = flags(Stage::Live, false);
    let Route::Serve { otherwise, .. } = route(
        &request(Profile::ContextualMemory, READ, 1),
        &f,
        Some(&keys),
    ) else {
        panic!("served");
    };
    assert_eq!(
        otherwise,
        Some(Shares {
            mirrored: Percent::ALL,
            compared: None
        })
    );
    let session_read = r#"{"action": "get_context", "session_id": "s1"}"#;
    let Route::Serve { otherwise, .. } = route(
        &request(Profile::SessionMemory, session_read, 1),
        &f,
        Some(&keys),
    ) else {
        panic!("served");
    };
    assert_eq!(otherwise, None);
}
