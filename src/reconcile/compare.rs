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
    let mut g = Grouping {
        batch,
        window,
        found: Found::default(),
    };
    g.session_row(session);
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
    g.found.legacy += expected.len() as u64;
    // A contextual summary is derived state: judged against what the orchestrator derives.
    let (summary_rows, mut actual): (Vec<Row>, Vec<Row>) =
        rows.into_iter().partition(|r| r.memory_type == "summary");
    if let Some(i) = expected.iter().position(|e| e.memory_type == "summary") {
        let e = expected.remove(i);
        g.summary(&e, interactions, &summary_rows);
    }
    g.found.orchestrator += actual.len() as u64;
    expected.sort_by_key(|e| e.prepared.at);
    actual.sort_by_key(|r| r.created_at);
    let mut m = Matched {
        expected: vec![false; expected.len()],
        actual: vec![false; actual.len()],
    };
    g.same_content(&expected, &actual, &mut m);
    g.same_moment(&expected, &actual, &mut m);
    g.only_in_legacy(&expected, &m);
    g.only_in_orchestrator(&expected, &actual, &m);
    let mut found = g.found;
    found
        .repairs
        .sort_by_key(|p| !matches!(p.op, MirrorOp::EnsureSession { .. }));
    found.repairs.dedup();
    found
}

/// One group's comparison under way.
struct Grouping<'a> {
    batch: &'a Batch,
    window: Duration,
    found: Found,
}

/// Which expected records and which rows are paired already.
struct Matched {
    expected: Vec<bool>,
    actual: Vec<bool>,
}

impl Matched {
    fn pair(&mut self, i: usize, j: usize) {
        self.expected[i] = true;
        self.actual[j] = true;
    }
}

impl Grouping<'_> {
    fn base(&self, class: Class, entity: &'static str) -> Difference {
        Difference {
            class,
            section: self.batch.section,
            key: self.batch.key.clone(),
            entity,
            legacy_time: None,
            memory_id: None,
            paths: Vec::new(),
            reason: None,
            repairable: true,
        }
    }

    /// The session row, for the agent whose sessions are entities of their own.
    fn session_row(&mut self, session: Option<&SessionRow>) {
        let Some(row_ensure) = self.batch.ensures.iter().find(|e| e.kind == Kind::Session) else {
            return;
        };
        self.found.legacy += 1;
        match session {
            None => {
                self.found.differ(Difference {
                    legacy_time: at(row_ensure),
                    ..self.base(Class::MissingInOrchestrator, "session")
                });
                self.found.repairs.push(row_ensure.clone());
            }
            Some(s) => {
                self.found.orchestrator += 1;
                let paths = session_paths(&row_ensure.op, s);
                if !paths.is_empty() {
                    // The API completes sessions but never overwrites them.
                    let difference = Difference {
                        legacy_time: at(row_ensure),
                        paths,
                        repairable: false,
                        ..self.base(Class::Different, "session")
                    };
                    self.found.differ(difference);
                }
            }
        }
    }

    /// A contextual summary, against the one the orchestrator derives.
    fn summary(&mut self, e: &Expected, interactions: &[Row], summary_rows: &[Row]) {
        let difference = summary(e, interactions, summary_rows);
        if difference
            .as_ref()
            .is_none_or(|(c, _)| *c == Class::Different)
        {
            self.found.orchestrator += 1;
        }
        if let Some((class, paths)) = difference {
            let difference = Difference {
                legacy_time: at(e.prepared),
                paths,
                ..self.base(class, e.prepared.kind.as_label())
            };
            self.found.differ(difference);
            self.found
                .repairs
                .extend(needed_ensure(self.batch, e.prepared));
            self.found.repairs.push(reimport(e.prepared));
        }
    }

    /// Step 1. The same memory on both sides: equal type and content, paired in time order
    /// within the window first (a record repeated word for word stays paired with its own
    /// time), then the rest of each such group in order: the same content at another time.
    /// Pairing runs from the newest back: the legacy agents only ever forget their oldest
    /// records (contextual's cap), so a burst of identical records closer together than the
    /// window leaves the forgotten ones at the old end, where step 4 recognises them as
    /// drift.
    fn same_content(&mut self, expected: &[Expected], actual: &[Row], m: &mut Matched) {
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
        for (es, rs) in by_content.values() {
            let (mut x, mut y) = (es.len(), rs.len());
            while x > 0 && y > 0 {
                let (e, r) = (&expected[es[x - 1]], &actual[rs[y - 1]]);
                if within(e.prepared.at, r.created_at, self.window) {
                    m.pair(es[x - 1], rs[y - 1]);
                    x -= 1;
                    y -= 1;
                } else if e.prepared.at > r.created_at {
                    x -= 1;
                } else {
                    y -= 1;
                }
            }
            let left_e: Vec<usize> = es.iter().copied().filter(|&i| !m.expected[i]).collect();
            let left_a: Vec<usize> = rs.iter().copied().filter(|&j| !m.actual[j]).collect();
            for (i, j) in left_e.into_iter().zip(left_a) {
                m.pair(i, j);
                let (e, r) = (&expected[i], &actual[j]);
                let difference = Difference {
                    legacy_time: at(e.prepared),
                    memory_id: Some(r.memory_id.clone()),
                    paths: vec!["created_at".into()],
                    ..self.base(Class::Different, e.prepared.kind.as_label())
                };
                self.found.differ(difference);
                replace(&mut self.found, e.prepared, &r.memory_id);
            }
        }
    }

    /// Step 2. The same moment with different contents: one memory that differs.
    fn same_moment(&mut self, expected: &[Expected], actual: &[Row], m: &mut Matched) {
        for (i, e) in expected.iter().enumerate() {
            if m.expected[i] {
                continue;
            }
            let nearest = actual
                .iter()
                .enumerate()
                .filter(|(j, r)| {
                    !m.actual[*j]
                        && r.memory_type == e.memory_type
                        && within(e.prepared.at, r.created_at, self.window)
                })
                .min_by_key(|(_, r)| (r.created_at - e.prepared.at).abs());
            let Some((j, r)) = nearest else {
                continue;
            };
            m.pair(i, j);
            let difference = Difference {
                legacy_time: at(e.prepared),
                memory_id: Some(r.memory_id.clone()),
                paths: crate::compare::paths(e.content, &r.content)
                    .into_iter()
                    .map(|p| format!("content.{p}"))
                    .collect(),
                ..self.base(Class::Different, e.prepared.kind.as_label())
            };
            self.found.differ(difference);
            replace(&mut self.found, e.prepared, &r.memory_id);
        }
    }

    /// Step 3. What only legacy has.
    fn only_in_legacy(&mut self, expected: &[Expected], m: &Matched) {
        for (i, e) in expected.iter().enumerate() {
            if m.expected[i] {
                continue;
            }
            let difference = Difference {
                legacy_time: at(e.prepared),
                ..self.base(Class::MissingInOrchestrator, e.prepared.kind.as_label())
            };
            self.found.differ(difference);
            self.found
                .repairs
                .extend(needed_ensure(self.batch, e.prepared));
            self.found.repairs.push(reimport(e.prepared));
        }
    }

    /// Step 4. What only the orchestrator has: legacy's own forgetting, or a real
    /// difference.
    fn only_in_orchestrator(&mut self, expected: &[Expected], actual: &[Row], m: &Matched) {
        let interactions = expected
            .iter()
            .filter(|e| e.prepared.kind == Kind::Interaction)
            .count();
        let oldest_kept = expected.first().map(|e| e.prepared.at);
        for (j, r) in actual.iter().enumerate() {
            if m.actual[j] {
                continue;
            }
            let capped = self.batch.section == Section::Interactions
                && interactions >= CONTEXTUAL_KEPT
                && oldest_kept.is_some_and(|oldest| r.created_at < oldest);
            let difference = orchestrator_only(self.batch.section, &self.batch.key, r, capped);
            self.found.differ(difference);
            if !capped {
                self.found.repairs.push(delete(r));
            }
        }
    }
}

/// A legacy record's time, as a difference shows it.
fn at(p: &Prepared) -> Option<String> {
    Some(micros(p.at))
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
