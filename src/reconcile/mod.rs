//! `memshift reconcile`: the legacy store against the orchestrator, entity by entity.
//!
//! The legacy side is read exactly as the backfill reads it ([`crate::legacy`], then
//! [`crate::backfill::prepare`]), so "equal" means "what the backfill and the mirror would
//! have made of it". The orchestrator side is read from its PostgreSQL (active rows, twins
//! left out), one key at a time. Each difference gets one class:
//! - `missing_in_orchestrator`, `missing_in_legacy`, `different` (the same moment with
//!   other content, or the same content at another time, `paths` saying where);
//! - `legacy_drift`: what the legacy agent forgot on its own and the orchestrator rightly
//!   keeps (contextual interactions past the 50 kept, sessions the session agent expired).
//!
//! `--repair` makes the orchestrator match legacy (legacy is the source of truth until
//! `rampdown`) through the same idempotent writes as the backfill: what is missing is
//! imported, what differs is imported and the orchestrator's version deleted, what legacy
//! does not have is deleted. Drift is left alone.

mod compare;
mod report;

pub use compare::{Found, Row, SessionRow};
pub use report::Report;

use crate::backfill::{Batch, Prepared};
use crate::legacy::{self, Section};
use crate::profile::Profile;
use crate::store::Store;
use crate::store::reconcile::{Owner, RunRecord};
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

crate::labels! {
    /// What kind of difference.
    #[derive(PartialOrd, Ord, Serialize)]
    #[serde(rename_all = "snake_case")]
    pub enum Class {
        MissingInOrchestrator = "missing_in_orchestrator",
        MissingInLegacy = "missing_in_legacy",
        Different = "different",
        LegacyDrift = "legacy_drift",
    }
}

impl Class {
    /// Whether it is a real inconsistency (drift is legacy's own doing).
    pub fn is_inconsistency(self) -> bool {
        self != Class::LegacyDrift
    }
}

/// One difference. Never the contents: keys, ids, times and the paths that differ.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Difference {
    pub class: Class,
    pub section: Section,
    pub key: String,
    /// `session`, `interaction`, `decision`, `summary` or `memory`.
    pub entity: &'static str,
    /// The legacy record's time, when legacy has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legacy_time: Option<String>,
    /// The orchestrator's row, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Why it is drift (`capped`, `expired`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// Whether `--repair` can fix it.
    pub repairable: bool,
}

/// What to reconcile.
#[derive(Clone, Debug)]
pub struct Options {
    pub agent: String,
    pub profile: Profile,
    pub from: PathBuf,
    /// How far apart a legacy time and the orchestrator's may be for one record.
    pub match_window: Duration,
}

/// Compares the store with the orchestrator's database; the repairs are returned, not
/// sent (the caller sends them, see [`Report::repairs`]).
///
/// # Errors
/// The store cannot be read, or the database fails.
pub async fn run(options: &Options, store: &Store) -> anyhow::Result<Report> {
    let started = Utc::now();
    let mut report = Report::new(options, started);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(64);
    let reader = {
        let (agent, profile, from) = (options.agent.clone(), options.profile, options.from.clone());
        tokio::task::spawn_blocking(move || {
            legacy::read(profile, &from, |group, _| {
                let batch = crate::backfill::prepare(&agent, profile, group);
                tx.blocking_send(batch)
                    .map_err(|_| anyhow::anyhow!("the comparison stopped"))
            })
        })
    };
    let source = source_agent(options.profile);
    let mut seen: HashSet<(Section, String)> = HashSet::new();
    while let Some(batch) = rx.recv().await {
        for (kind, reason) in &batch.skipped {
            report.unreadable(kind.as_label(), reason);
        }
        let session = if batch.section == Section::Session {
            session(store, &batch.key).await?
        } else {
            None
        };
        let keys = aliases(options.profile, &batch.key);
        let rows = rows(store, batch.section, &keys, source).await?;
        let interactions = if batch.section == Section::Summary {
            self::rows(store, Section::Interactions, &keys, source).await?
        } else {
            Vec::new()
        };
        let found = compare::group(
            &batch,
            session.as_ref(),
            rows,
            &interactions,
            options.match_window,
        );
        report.add(&batch.section, &batch.key, found);
        for key in keys {
            seen.insert((batch.section, key));
        }
    }
    reader
        .await
        .context("the legacy reader panicked")?
        .with_context(|| format!("reading the {} store", options.agent))?;

    // Keys only the orchestrator has.
    for &section in Section::of(options.profile) {
        for key in orchestrator_keys(store, section, source).await? {
            if seen.contains(&(section, key.clone())) {
                continue;
            }
            let session = if section == Section::Session {
                session(store, &key).await?
            } else {
                None
            };
            let rows = rows(store, section, std::slice::from_ref(&key), source).await?;
            let found = compare::key_only_in_orchestrator(
                options.profile,
                section,
                &key,
                session.as_ref(),
                &rows,
                started,
            );
            report.add(&section, &key, found);
        }
    }
    report.finished_at = Utc::now();
    Ok(report)
}

/// The `source_agent` the translation gives the agent's memories.
fn source_agent(profile: Profile) -> &'static str {
    match profile {
        Profile::SessionMemory => "session_memory",
        Profile::ContextualMemory => "contextual_memory",
        Profile::JarvisMemory => "jarvis_memory",
    }
}

/// The orchestrator's keys that a key of the agent's store file may stand for. The JSON
/// agents write a `None` id as `"null"` and a number as its text (`translate::file_key`),
/// so `"null"` in the file is the string `"null"` or `None`, each mirrored under its own
/// key (`translate::id_key`).
fn aliases(profile: Profile, key: &str) -> Vec<String> {
    if profile == Profile::SessionMemory {
        return vec![key.to_owned()];
    }
    let as_string = serde_json::Value::String(key.to_owned());
    let mut keys = vec![crate::translate::id_key(&as_string).expect("a string is a key")];
    if let Ok(
        v @ (serde_json::Value::Null | serde_json::Value::Number(_) | serde_json::Value::Bool(_)),
    ) = serde_json::from_str(key)
        && let Some(typed) = crate::translate::id_key(&v)
    {
        keys.push(typed);
    }
    keys
}

async fn rows(
    store: &Store,
    section: Section,
    keys: &[String],
    source: &str,
) -> anyhow::Result<Vec<Row>> {
    let owner = if section == Section::Memories {
        Owner::User
    } else {
        Owner::Session
    };
    store
        .held_memories(owner, keys, source, section.memory_types())
        .await
        .context("reading the orchestrator's memories")
}

async fn session(store: &Store, key: &str) -> anyhow::Result<Option<SessionRow>> {
    store
        .held_session(key, crate::forgetting::SESSION_LIFETIME)
        .await
        .context("reading the orchestrator's sessions")
}

/// The keys the orchestrator holds for a section: sessions of the agent's type (the session
/// agent's, unarchived) and owners of its memories.
async fn orchestrator_keys(
    store: &Store,
    section: Section,
    source: &str,
) -> anyhow::Result<Vec<String>> {
    let (owner, conversations) = match section {
        Section::Memories => (Owner::User, false),
        Section::Session => (Owner::Session, true),
        Section::Interactions | Section::Summary => (Owner::Session, false),
    };
    store
        .held_owners(owner, conversations, source, section.memory_types())
        .await
        .context("listing the orchestrator's keys")
}

/// Records a finished run for `memshift report`.
///
/// # Errors
/// The database fails.
pub async fn record(store: &Store, report: &Report) -> anyhow::Result<()> {
    let run = RunRecord {
        agent: &report.agent,
        started_at: report.started_at,
        finished_at: report.finished_at,
        legacy_entities: report.legacy_entities,
        orchestrator_entities: report.orchestrator_entities,
        counts: serde_json::to_value(&report.counts)?,
        repaired: report.repaired,
        repair_failed: report.repair_failed,
    };
    store
        .record_reconcile_run(&run)
        .await
        .context("recording the run in reconcile_runs")
}

/// A repair batch for one key: the sessions first, then the rest, as the sender sends them.
pub fn repair_batch(section: Section, key: &str, repairs: Vec<Prepared>) -> Batch {
    let (ensures, creates): (Vec<Prepared>, Vec<Prepared>) = repairs
        .into_iter()
        .partition(|p| matches!(p.op, crate::translate::MirrorOp::EnsureSession { .. }));
    Batch {
        section,
        key: key.to_owned(),
        ensures,
        creates,
        skipped: Vec::new(),
        read: Vec::new(),
        fingerprint: format!("repair-{}", Utc::now().timestamp_micros()),
    }
}

/// When a run started, for names of report files.
pub fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}
