//! A reconcile run's findings, as JSON and Markdown. No memory contents, ever: keys, ids,
//! times, entity kinds and the field paths that differ.

use super::{Class, Difference, Found, Options};
use crate::backfill::Batch;
use crate::legacy::Section;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Differences listed in full at most (every one is counted).
const LISTED: usize = 10_000;

#[derive(Debug, Serialize)]
pub struct Report {
    pub agent: String,
    pub store: std::path::PathBuf,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub match_window_seconds: f64,
    /// Entities compared on each side.
    pub legacy_entities: u64,
    pub orchestrator_entities: u64,
    /// Differences by class, then entity.
    pub counts: BTreeMap<Class, BTreeMap<&'static str, u64>>,
    /// Legacy records that could not be read, by `entity: reason`.
    pub unreadable: BTreeMap<String, u64>,
    /// The first differences found, in store order.
    pub differences: Vec<Difference>,
    pub differences_listed_all: bool,
    /// What `--repair` did (zero without it).
    pub repaired: u64,
    pub repair_failed: u64,
    /// The repairs, per key, for the caller to send.
    #[serde(skip)]
    pub repairs: Vec<Batch>,
}

impl Report {
    pub fn new(options: &Options, started_at: DateTime<Utc>) -> Report {
        Report {
            agent: options.agent.clone(),
            store: crate::legacy::store_file(options.profile, &options.from),
            started_at,
            finished_at: started_at,
            match_window_seconds: options.match_window.as_secs_f64(),
            legacy_entities: 0,
            orchestrator_entities: 0,
            counts: BTreeMap::new(),
            unreadable: BTreeMap::new(),
            differences: Vec::new(),
            differences_listed_all: true,
            repaired: 0,
            repair_failed: 0,
            repairs: Vec::new(),
        }
    }

    pub(super) fn unreadable(&mut self, entity: &str, reason: &str) {
        *self
            .unreadable
            .entry(format!("{entity}: {reason}"))
            .or_default() += 1;
    }

    pub(super) fn add(&mut self, section: &Section, key: &str, found: Found) {
        self.legacy_entities += found.legacy;
        self.orchestrator_entities += found.orchestrator;
        for d in found.differences {
            *self
                .counts
                .entry(d.class)
                .or_default()
                .entry(d.entity)
                .or_default() += 1;
            if self.differences.len() < LISTED {
                self.differences.push(d);
            } else {
                self.differences_listed_all = false;
            }
        }
        if !found.repairs.is_empty() {
            self.repairs
                .push(super::repair_batch(*section, key, found.repairs));
        }
    }

    /// Differences of a class.
    pub fn count(&self, class: Class) -> u64 {
        self.counts.get(&class).map_or(0, |m| m.values().sum())
    }

    /// Real inconsistencies (everything but drift), and unreadable legacy records.
    pub fn inconsistencies(&self) -> u64 {
        Class::ALL
            .iter()
            .filter(|c| c.is_inconsistency())
            .map(|&c| self.count(c))
            .sum::<u64>()
            + self.unreadable.values().sum::<u64>()
    }

    /// The report for people: totals, counts by class and entity, and up to `limit`
    /// differences of each class.
    pub fn markdown(&self, limit: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Reconciliation of {}\n", self.agent);
        let _ = writeln!(
            out,
            "- Legacy store: `{}`\n- Started {}, finished {}\n- Compared: {} legacy entities, {} orchestrator entities (match window {} s)\n- **Inconsistencies: {}** (legacy drift, expected: {})",
            self.store.display(),
            self.started_at.to_rfc3339(),
            self.finished_at.to_rfc3339(),
            self.legacy_entities,
            self.orchestrator_entities,
            self.match_window_seconds,
            self.inconsistencies(),
            self.count(Class::LegacyDrift),
        );
        if self.repaired + self.repair_failed > 0 {
            let _ = writeln!(
                out,
                "- Repaired: {} operations sent, {} failed",
                self.repaired, self.repair_failed
            );
        }
        let _ = writeln!(out, "\n## Differences by class\n");
        let _ = writeln!(out, "| class | entity | count |\n|---|---|---:|");
        for class in Class::ALL {
            match self.counts.get(&class) {
                None => {
                    let _ = writeln!(out, "| {} | — | 0 |", class.as_label());
                }
                Some(m) => {
                    for (entity, n) in m {
                        let _ = writeln!(out, "| {} | {entity} | {n} |", class.as_label());
                    }
                }
            }
        }
        if !self.unreadable.is_empty() {
            let _ = writeln!(out, "\n## Unreadable legacy records\n");
            for (why, n) in &self.unreadable {
                let _ = writeln!(out, "- {why}: {n}");
            }
        }
        for class in Class::ALL {
            let of: Vec<&Difference> = self
                .differences
                .iter()
                .filter(|d| d.class == class)
                .collect();
            if of.is_empty() {
                continue;
            }
            let _ = writeln!(
                out,
                "\n## {} (first {} of {})\n",
                class.as_label(),
                of.len().min(limit),
                self.count(class)
            );
            let _ = writeln!(
                out,
                "| section | key | entity | legacy time | memory id | paths / reason |\n|---|---|---|---|---|---|"
            );
            for d in of.into_iter().take(limit) {
                let why = match d.reason {
                    Some(r) => r.to_owned(),
                    None => d.paths.join(", "),
                };
                let _ = writeln!(
                    out,
                    "| {} | `{}` | {} | {} | {} | {}{} |",
                    d.section.as_label(),
                    d.key,
                    d.entity,
                    d.legacy_time.as_deref().unwrap_or("—"),
                    d.memory_id.as_deref().unwrap_or("—"),
                    why,
                    if d.repairable {
                        ""
                    } else {
                        " (not repairable)"
                    },
                );
            }
        }
        out
    }
}
