//! One group compared: what the legacy store holds (as the backfill would import it)
//! against what the orchestrator holds, entity by entity.

use super::{Class, Difference};
use crate::backfill::{Batch, Prepared};
use crate::legacy::{Kind, Section};
use crate::translate::{MirrorOp, micros};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

use crate::forgetting::{self, CONTEXTUAL_KEPT, Rule};

pub use crate::store::reconcile::{MemoryRow as Row, SessionRow};

/// What one comparison found, and the operations that make the orchestrator match legacy.
#[derive(Debug, Default)]
pub struct Found {
    pub differences: Vec<Difference>,
    pub repairs: Vec<Prepared>,
    /// Entities compared on each side.
    pub legacy: u64,
    pub orchestrator: u64,
}

impl Found {
    fn differ(&mut self, d: Difference) {
        self.differences.push(d);
    }
}

/// A memory legacy holds, as it would be imported.
struct Expected<'b> {
    prepared: &'b Prepared,
    memory_type: &'b str,
    content: &'b Value,
}

/// Compares a legacy group with the orchestrator's session (when the group has a session
/// row of its own) and memories for the same key and section. `interactions`: the
/// session's contextual interactions, which a summary is derived from.
pub fn group(
    batch: &Batch,
    session: Option<&SessionRow>,
    rows: Vec<Row>,
    interactions: &[Row],
    window: Duration,
) -> Found {
    let mut found = Found::default();
    let at = |p: &Prepared| Some(micros(p.at));
    let base = |class, entity: &'static str| Difference {
        class,
        section: batch.section,
        key: batch.key.clone(),
        entity,
        legacy_time: None,
        memory_id: None,
        paths: Vec::new(),
        reason: None,
        repairable: true,
    };

    // The session row, for the agent whose sessions are entities of their own.
    if let Some(row_ensure) = batch.ensures.iter().find(|e| e.kind == Kind::Session) {
        found.legacy += 1;
        match session {
            None => {
                found.differ(Difference {
                    legacy_time: at(row_ensure),
                    ..base(Class::MissingInOrchestrator, "session")
                });
                found.repairs.push(row_ensure.clone());
            }
            Some(s) => {
                found.orchestrator += 1;
                let paths = session_paths(&row_ensure.op, s);
                if !paths.is_empty() {
                    // The API completes sessions but never overwrites them.
                    found.differ(Difference {
                        legacy_time: at(row_ensure),
                        paths,
                        repairable: false,
                        ..base(Class::Different, "session")
                    });
                }
            }
        }
    }

    let mut expected: Vec<Expected> = batch
        .creates
        .iter()
        .filter_map(|p| match &p.op {
            MirrorOp::CreateMemory {
                memory_type,
                content,
                ..
            } => Some(Expected {
                prepared: p,
                memory_type,
                content,
            }),
            _ => None,
        })
        .collect();
    found.legacy += expected.len() as u64;
    // A contextual summary is derived state: judged against what the orchestrator derives.
    let (summary_rows, mut actual): (Vec<Row>, Vec<Row>) =
        rows.into_iter().partition(|r| r.memory_type == "summary");
    if let Some(i) = expected.iter().position(|e| e.memory_type == "summary") {
        let e = expected.remove(i);
        let difference = summary(&e, interactions, &summary_rows);
        if difference.is_none()
            || difference
                .as_ref()
                .is_some_and(|(c, _)| *c == Class::Different)
        {
            found.orchestrator += 1;
        }
        if let Some((class, paths)) = difference {
            found.differ(Difference {
                legacy_time: at(e.prepared),
                paths,
                ..base(class, e.prepared.kind.as_label())
            });
            found.repairs.extend(needed_ensure(batch, e.prepared));
            found.repairs.push(reimport(e.prepared));
        }
    }
    found.orchestrator += actual.len() as u64;
    expected.sort_by_key(|e| e.prepared.at);
    actual.sort_by_key(|r| r.created_at);

    // 1. The same memory on both sides: equal type and content, paired in time order
    //    within the window first (a record repeated word for word stays paired with its
    //    own time), then the rest of each such group in order: the same content at
    //    another time. Pairing runs from the newest back: the legacy agents only ever
    //    forget their oldest records (contextual's cap), so a burst of identical records
    //    closer together than the window leaves the forgotten ones at the old end, where
    //    step 4 recognises them as drift.
    let mut by_content: BTreeMap<(String, String), (Vec<usize>, Vec<usize>)> = BTreeMap::new();
    for (i, e) in expected.iter().enumerate() {
        let k = (e.memory_type.to_owned(), canonical(e.content));
        by_content.entry(k).or_default().0.push(i);
    }
    for (j, r) in actual.iter().enumerate() {
        let k = (r.memory_type.clone(), canonical(&r.content));
        if let Some(slot) = by_content.get_mut(&k) {
            slot.1.push(j);
        }
    }
    let mut matched_e = vec![false; expected.len()];
    let mut matched_a = vec![false; actual.len()];
    for (es, rs) in by_content.values() {
        let (mut x, mut y) = (es.len(), rs.len());
        while x > 0 && y > 0 {
            let (e, r) = (&expected[es[x - 1]], &actual[rs[y - 1]]);
            if within(e.prepared.at, r.created_at, window) {
                matched_e[es[x - 1]] = true;
                matched_a[rs[y - 1]] = true;
                x -= 1;
                y -= 1;
            } else if e.prepared.at > r.created_at {
                x -= 1;
            } else {
                y -= 1;
            }
        }
        let left_e: Vec<usize> = es.iter().copied().filter(|&i| !matched_e[i]).collect();
        let left_a: Vec<usize> = rs.iter().copied().filter(|&j| !matched_a[j]).collect();
        for (i, j) in left_e.into_iter().zip(left_a) {
            matched_e[i] = true;
            matched_a[j] = true;
            let (e, r) = (&expected[i], &actual[j]);
            {
                found.differ(Difference {
                    legacy_time: at(e.prepared),
                    memory_id: Some(r.memory_id.clone()),
                    paths: vec!["created_at".into()],
                    ..base(Class::Different, e.prepared.kind.as_label())
                });
                replace(&mut found, e.prepared, &r.memory_id);
            }
        }
    }

    // 2. The same moment with different contents: one memory that differs.
    for (i, e) in expected.iter().enumerate() {
        if matched_e[i] {
            continue;
        }
        let nearest = actual
            .iter()
            .enumerate()
            .filter(|(j, r)| {
                !matched_a[*j]
                    && r.memory_type == e.memory_type
                    && within(e.prepared.at, r.created_at, window)
            })
            .min_by_key(|(_, r)| (r.created_at - e.prepared.at).abs());
        if let Some((j, r)) = nearest {
            matched_e[i] = true;
            matched_a[j] = true;
            found.differ(Difference {
                legacy_time: at(e.prepared),
                memory_id: Some(r.memory_id.clone()),
                paths: crate::compare::paths(e.content, &r.content)
                    .into_iter()
                    .map(|p| format!("content.{p}"))
                    .collect(),
                ..base(Class::Different, e.prepared.kind.as_label())
            });
            replace(&mut found, e.prepared, &r.memory_id);
        }
    }

    // 3. What only legacy has.
    for (i, e) in expected.iter().enumerate() {
        if !matched_e[i] {
            found.differ(Difference {
                legacy_time: at(e.prepared),
                ..base(Class::MissingInOrchestrator, e.prepared.kind.as_label())
            });
            found.repairs.extend(needed_ensure(batch, e.prepared));
            found.repairs.push(reimport(e.prepared));
        }
    }

    // 4. What only the orchestrator has: legacy's own forgetting, or a real difference.
    let interactions = expected
        .iter()
        .filter(|e| e.prepared.kind == Kind::Interaction)
        .count();
    let oldest_kept = expected.first().map(|e| e.prepared.at);
    for (j, r) in actual.iter().enumerate() {
        if matched_a[j] {
            continue;
        }
        let capped = batch.section == Section::Interactions
            && interactions >= CONTEXTUAL_KEPT
            && oldest_kept.is_some_and(|oldest| r.created_at < oldest);
        found.differ(orchestrator_only(batch.section, &batch.key, r, capped));
        if !capped {
            found.repairs.push(delete(r));
        }
    }
    found
        .repairs
        .sort_by_key(|p| !matches!(p.op, MirrorOp::EnsureSession { .. }));
    found.repairs.dedup();
    found
}

/// A key only the orchestrator has. A session that legacy expired or evicted is legacy's own
/// forgetting ([`forgetting::session_forgotten`]); anything else is a real difference.
pub fn key_only_in_orchestrator(
    profile: crate::profile::Profile,
    section: Section,
    key: &str,
    session: Option<&SessionRow>,
    rows: &[Row],
    now: DateTime<Utc>,
) -> Found {
    let mut found = Found::default();
    // Legacy dropped it by itself if its cleanup may have run since the session was due,
    // or enough newer sessions pushed it out.
    let rule = session.filter(|s| !s.is_archived).and_then(|s| {
        forgetting::session_forgotten(s.created_at, s.newer, forgetting::SESSION_LIFETIME, now)
    });
    let expired = rule.is_some();
    if let Some(s) = session.filter(|s| !s.is_archived) {
        found.orchestrator += 1;
        found.differ(Difference {
            class: if expired {
                Class::LegacyDrift
            } else {
                Class::MissingInLegacy
            },
            section,
            key: key.to_owned(),
            entity: "session",
            legacy_time: None,
            memory_id: None,
            paths: Vec::new(),
            reason: rule.map(Rule::as_label),
            repairable: true,
        });
        if !expired {
            // What the agent's `delete_session` would have mirrored.
            let request = json!({"action": "delete_session", "session_id": key});
            if let Some(request) = request.as_object()
                && let crate::translate::Verdict::Mirror(m) =
                    crate::translate::accepted(profile, request)
            {
                for op in m.ops {
                    found.repairs.push(Prepared {
                        op,
                        at: s.created_at,
                        kind: Kind::Session,
                    });
                }
            }
        }
    }
    for r in rows {
        found.orchestrator += 1;
        let mut d = orchestrator_only(section, key, r, false);
        if expired {
            d.class = Class::LegacyDrift;
            d.reason = rule.map(Rule::as_label);
        } else if session.is_none_or(|s| s.is_archived) {
            found.repairs.push(delete(r));
        }
        found.differ(d);
    }
    found
}

fn orchestrator_only(section: Section, key: &str, r: &Row, capped: bool) -> Difference {
    Difference {
        class: if capped {
            Class::LegacyDrift
        } else {
            Class::MissingInLegacy
        },
        section,
        key: key.to_owned(),
        entity: entity_of(&r.memory_type),
        legacy_time: None,
        memory_id: Some(r.memory_id.clone()),
        paths: Vec::new(),
        reason: capped.then_some(Rule::Capped.as_label()),
        repairable: !capped,
    }
}

/// The legacy entity a memory type stands for.
fn entity_of(memory_type: &str) -> &'static str {
    match memory_type {
        "decision" => Kind::Decision.as_label(),
        "summary" => Kind::Summary.as_label(),
        "interaction" => Kind::Memory.as_label(),
        _ => Kind::Interaction.as_label(),
    }
}

/// The summary legacy holds against the one the orchestrator derives from what it holds:
/// rebuilt from its interactions as the agent rebuilds it, or the summary a backfill
/// imported while no interaction is newer (the live answer's own rule,
/// [`crate::answer::contextual_summary`]). Compared as a shadow read compares it (the
/// agent's clock masked, a cut left by a read tolerated). `None` when they agree; else
/// `missing_in_orchestrator` when nothing can be derived, or `different` and where.
fn summary(e: &Expected, rows: &[Row], summaries: &[Row]) -> Option<(Class, Vec<String>)> {
    let stored = |r: &Row| crate::answer::Stored {
        memory_type: r.memory_type.clone(),
        content: r.content.0.clone(),
        created_at: r.created_at,
    };
    let interactions: Vec<crate::answer::Stored> = rows
        .iter()
        .filter(|r| r.memory_type == "context")
        .map(stored)
        .collect();
    let imported = summaries.iter().max_by_key(|r| r.created_at).map(stored);
    let derived = crate::answer::contextual_summary(&interactions, imported.as_ref(), true);
    let Ok(Some(derived)) = derived else {
        return Some((Class::MissingInOrchestrator, Vec::new()));
    };
    let legacy = serde_json::to_vec(e.content).expect("a JSON value always serializes");
    let verdict = crate::compare::compare(
        crate::profile::Profile::ContextualMemory,
        &legacy,
        &Value::Object(derived.summary),
        false,
    );
    match verdict.outcome {
        crate::compare::Outcome::Match => None,
        _ => Some((
            Class::Different,
            verdict
                .paths
                .into_iter()
                .map(|p| format!("content.{p}"))
                .collect(),
        )),
    }
}

/// The session a repaired memory goes into, made sure of first.
fn needed_ensure(batch: &Batch, p: &Prepared) -> Option<Prepared> {
    let MirrorOp::CreateMemory {
        session_id: Some(sid),
        ..
    } = &p.op
    else {
        return None;
    };
    batch
        .ensures
        .iter()
        .find(|e| matches!(&e.op, MirrorOp::EnsureSession { session_id, .. } if session_id == sid))
        .cloned()
}

/// A missing record imported again under an id of its own: its backfill id may name a row
/// that was deleted since (a create never brings a deleted row back, so that a late retry
/// cannot undo a deletion). A later run finds the new row, so it is made once.
fn reimport(p: &Prepared) -> Prepared {
    let mut p = p.clone();
    if let Some(id) = p.op.memory_id() {
        let repaired = uuid::Uuid::new_v5(&REPAIR_NAMESPACE, id.as_bytes()).to_string();
        p.op.pin_ids(&mut std::iter::once(repaired));
    }
    p
}

/// Namespace of the ids of re-imported records.
const REPAIR_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6d656d73_6869_6674_8000_726570616972);

/// Legacy's version in, the orchestrator's out.
fn replace(found: &mut Found, legacy: &Prepared, memory_id: &str) {
    found.repairs.push(reimport(legacy));
    found.repairs.push(Prepared {
        op: MirrorOp::DeleteMemory {
            memory_id: memory_id.to_owned(),
        },
        at: legacy.at,
        kind: legacy.kind,
    });
}

fn delete(r: &Row) -> Prepared {
    Prepared {
        op: MirrorOp::DeleteMemory {
            memory_id: r.memory_id.clone(),
        },
        at: r.created_at,
        kind: Kind::Memory,
    }
}

/// Where a legacy session row and the orchestrator's session differ.
fn session_paths(op: &MirrorOp, s: &SessionRow) -> Vec<String> {
    let MirrorOp::EnsureSession {
        user_id, metadata, ..
    } = op
    else {
        return Vec::new();
    };
    let mut paths = Vec::new();
    if s.is_archived {
        paths.push("is_archived".to_owned());
    }
    if *user_id != s.user_id {
        paths.push("user_id".to_owned());
    }
    let mut theirs = s.metadata.0.clone();
    if let Some(m) = theirs.as_object_mut() {
        m.remove("session_type");
    }
    paths.extend(
        // Stored as jsonb, and returned by no legacy read: its key order means nothing.
        crate::compare::paths_in_any_order(metadata, &theirs)
            .into_iter()
            .map(|p| format!("metadata.{p}")),
    );
    paths
}

fn within(a: DateTime<Utc>, b: DateTime<Utc>, window: Duration) -> bool {
    (a - b).abs().to_std().unwrap_or(Duration::MAX) <= window
}

/// A JSON value's text with object keys sorted: equal for equal values (PostgreSQL's
/// `jsonb` does not keep key order).
fn canonical(v: &Value) -> String {
    crate::api::fingerprint(v)
}
