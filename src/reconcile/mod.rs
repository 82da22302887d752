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
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
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
pub async fn run(options: &Options, pool: &PgPool) -> anyhow::Result<Report> {
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
            session(pool, &batch.key).await?
        } else {
            None
        };
        let keys = aliases(options.profile, &batch.key);
        let rows = rows(pool, batch.section, &keys, source).await?;
        let interactions = if batch.section == Section::Summary {
            self::rows(pool, Section::Interactions, &keys, source).await?
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
        for key in orchestrator_keys(pool, section, source).await? {
            if seen.contains(&(section, key.clone())) {
                continue;
            }
            let session = if section == Section::Session {
                session(pool, &key).await?
            } else {
                None
            };
            let rows = rows(pool, section, std::slice::from_ref(&key), source).await?;
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

/// Only what could be returned: active, unexpired, not a twin.
const PRESENT: &str =
    "is_active AND twin_of IS NULL AND (expires_at IS NULL OR expires_at > now())";

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
    pool: &PgPool,
    section: Section,
    keys: &[String],
    source: &str,
) -> anyhow::Result<Vec<Row>> {
    let owner = if section == Section::Memories {
        "session_id IS NULL AND user_id = ANY($1)"
    } else {
        "session_id = ANY($1)"
    };
    let sql = format!(
        "SELECT memory_id, memory_type, content, created_at FROM memory_entries
         WHERE {owner} AND source_agent = $2 AND memory_type = ANY($3) AND {PRESENT}
         ORDER BY created_at, memory_id"
    );
    let types: Vec<&str> = section.memory_types().to_vec();
    sqlx::query_as(&sql)
        .bind(keys)
        .bind(source)
        .bind(types)
        .fetch_all(pool)
        .await
        .context("reading the orchestrator's memories")
}

async fn session(pool: &PgPool, key: &str) -> anyhow::Result<Option<SessionRow>> {
    sqlx::query_as(
        "SELECT s.user_id, s.metadata, s.is_archived, s.created_at,
             (SELECT count(*) FROM sessions n
              WHERE n.session_type = s.session_type AND n.created_at > s.created_at
                AND n.created_at < s.created_at + make_interval(secs => $2)) AS newer
         FROM sessions s WHERE s.session_id = $1",
    )
    .bind(key)
    .bind(crate::forgetting::SESSION_LIFETIME.as_secs_f64())
    .fetch_optional(pool)
    .await
    .context("reading the orchestrator's sessions")
}

/// The keys the orchestrator holds for a section: sessions of the agent's type (the session
/// agent's, unarchived) and owners of its memories.
async fn orchestrator_keys(
    pool: &PgPool,
    section: Section,
    source: &str,
) -> anyhow::Result<Vec<String>> {
    let types: Vec<&str> = section.memory_types().to_vec();
    let sql = match section {
        Section::Memories => format!(
            "SELECT DISTINCT user_id FROM memory_entries
             WHERE session_id IS NULL AND user_id IS NOT NULL AND source_agent = $1
               AND memory_type = ANY($2) AND {PRESENT}"
        ),
        Section::Session => format!(
            "SELECT session_id FROM sessions WHERE session_type = 'conversation' AND NOT is_archived
             UNION
             SELECT session_id FROM memory_entries
             WHERE session_id IS NOT NULL AND source_agent = $1 AND memory_type = ANY($2)
               AND {PRESENT}"
        ),
        Section::Interactions | Section::Summary => format!(
            "SELECT DISTINCT session_id FROM memory_entries
             WHERE session_id IS NOT NULL AND source_agent = $1 AND memory_type = ANY($2)
               AND {PRESENT}"
        ),
    };
    sqlx::query_scalar(&sql)
        .bind(source)
        .bind(types)
        .fetch_all(pool)
        .await
        .context("listing the orchestrator's keys")
}

/// Records a finished run for `memshift report`.
///
/// # Errors
/// The database fails.
pub async fn record(pool: &PgPool, report: &Report) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO reconcile_runs (agent, started_at, finished_at, legacy_entities,
             orchestrator_entities, counts, repaired, repair_failed)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&report.agent)
    .bind(report.started_at)
    .bind(report.finished_at)
    .bind(report.legacy_entities as i64)
    .bind(report.orchestrator_entities as i64)
    .bind(sqlx::types::Json(&report.counts))
    .bind(report.repaired as i64)
    .bind(report.repair_failed as i64)
    .execute(pool)
    .await
    .context("recording the run in reconcile_runs")?;
    Ok(())
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
