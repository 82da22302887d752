//! A group of legacy records turned into the orchestrator operations that import it.

use crate::legacy::{Group, Kind, Section};
use crate::profile::Profile;
use crate::translate::{self, MirrorOp, Verdict};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Namespace of the uuid v5 ids of backfilled memories.
const ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6d656d73_6869_6674_8000_6261636b6669);

/// One operation, with the legacy time it carries and what it imports.
#[derive(Clone, Debug, PartialEq)]
pub struct Prepared {
    pub op: MirrorOp,
    pub at: DateTime<Utc>,
    pub kind: Kind,
}

/// A group's operations: the sessions to make sure of first (in order), then the memories
/// (in any order: each carries its own time and id).
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub section: Section,
    pub key: String,
    pub ensures: Vec<Prepared>,
    pub creates: Vec<Prepared>,
    /// Records that import nothing, and why (fixed labels).
    pub skipped: Vec<(Kind, &'static str)>,
    /// Records read, by kind.
    pub read: Vec<Kind>,
    /// Changes when anything the group imports changes: the checkpoint's test for "done".
    pub fingerprint: String,
}

impl Batch {
    pub fn ops(&self) -> impl Iterator<Item = &Prepared> {
        self.ensures.iter().chain(&self.creates)
    }

    /// The `i`th of [`Batch::ops`].
    pub fn op(&self, i: usize) -> Option<&Prepared> {
        match i.checked_sub(self.ensures.len()) {
            None => self.ensures.get(i),
            Some(j) => self.creates.get(j),
        }
    }
}

/// The operations that import `group` of `agent`'s store: the mirror's translation of each
/// record, with the record's own time, and memory ids derived from the agent, the memory
/// and its time (and its rank among identical ones), so that importing the same store
/// twice names the same rows.
pub fn prepare(agent: &str, profile: Profile, group: Group) -> Batch {
    let mut batch = Batch {
        section: group.section,
        key: group.key,
        ensures: Vec::new(),
        creates: Vec::new(),
        skipped: group
            .unreadable
            .iter()
            .map(|u| (u.kind, u.reason))
            .collect(),
        read: group.records.iter().map(|r| r.kind).collect(),
        fingerprint: String::new(),
    };
    let mut occurrences: HashMap<String, u32> = HashMap::new();
    for record in group.records {
        let mirror = if record.kind == Kind::Summary {
            translate::contextual_summary(&batch.key, &record.request)
        } else {
            match translate::accepted(profile, &record.request) {
                Verdict::Mirror(m) => m,
                Verdict::Failed(reason) => {
                    batch.skipped.push((record.kind, reason));
                    continue;
                }
                Verdict::NotAWrite => {
                    batch.skipped.push((record.kind, "not_a_write"));
                    continue;
                }
            }
        };
        for op in mirror.ops {
            match op {
                MirrorOp::EnsureSession { .. } => {
                    // Every interaction makes sure of its session: once is enough, with the
                    // earliest time (the session row's, when the store has one).
                    match batch.ensures.iter_mut().find(|e| e.op == op) {
                        Some(e) => e.at = e.at.min(record.at),
                        None => batch.ensures.push(Prepared {
                            op,
                            at: record.at,
                            kind: record.kind,
                        }),
                    }
                }
                MirrorOp::CreateMemory { .. } => {
                    let identity = json!([agent, op, crate::translate::micros(record.at)]);
                    let identity = crate::api::fingerprint(&identity);
                    let n = occurrences.entry(identity.clone()).or_default();
                    *n += 1;
                    let id =
                        uuid::Uuid::new_v5(&ID_NAMESPACE, format!("{identity}/{n}").as_bytes());
                    let mut op = op;
                    op.pin_ids(&mut std::iter::once(id.to_string()));
                    batch.creates.push(Prepared {
                        op,
                        at: record.at,
                        kind: record.kind,
                    });
                }
                // A store holds what is there, never a deletion.
                MirrorOp::DeleteMemories { .. }
                | MirrorOp::EndSession { .. }
                | MirrorOp::DeleteMemory { .. } => {
                    batch.skipped.push((record.kind, "not_an_import"));
                }
            }
        }
    }
    // A session row's own details make the bare "make sure" of its interactions redundant.
    let rows: Vec<MirrorOp> = batch
        .ensures
        .iter()
        .filter(|e| e.kind == Kind::Session)
        .map(|e| e.op.clone())
        .collect();
    batch
        .ensures
        .retain(|e| e.kind == Kind::Session || !rows.iter().any(|row| same_session(row, &e.op)));
    let ops: Vec<Value> = batch
        .ops()
        .map(|p| json!([p.op, translate::micros(p.at)]))
        .collect();
    batch.fingerprint = crate::api::fingerprint(&Value::Array(ops));
    batch
}

fn same_session(a: &MirrorOp, b: &MirrorOp) -> bool {
    matches!((a, b), (MirrorOp::EnsureSession { session_id: x, .. },
        MirrorOp::EnsureSession { session_id: y, .. }) if x == y)
}
