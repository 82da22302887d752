//! The outbox writer: accepted writes in, outbox entries out, a batch per transaction.

use super::activity::KeyActivity;
use super::shadow::{Purpose, Sample, ShadowSender};
use super::{Exchange, Signal};
use crate::answer::{self, Prepared};
use crate::compare;
use crate::metrics::SkipReason;
use crate::metrics::{DropReason, MirrorMetrics, WriteOutcome};
use crate::outbox::{NewEntry, Outbox};
use crate::profile::Class;
use crate::profile::Profile;
use crate::translate::{self, Verdict};
use crate::wakeup::WakeSender;
use chrono::Utc;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};
use tracing::{error, warn};

/// Writes taken from the queue per transaction at most.
const BATCH: usize = 512;

/// After the first write of a batch, the writer waits this long for more before it
/// commits (group commit): one fsync and one wake-up per window instead of per write, and
/// while it waits the forwarder's hand-offs need no wake-up at all.
const GROUP_COMMIT: Duration = Duration::from_millis(2);

/// A full or failing outbox is logged at most this often (it is counted every time).
const LOG_EVERY: Duration = Duration::from_secs(10);

pub(super) struct Writer {
    pub agent: String,
    pub profile: Profile,
    pub outbox: Outbox,
    pub max_pending: u64,
    /// Entries pending in the outbox, shared with the deliverer (which corrects it from the
    /// file every second).
    pub pending: Arc<AtomicU64>,
    pub metrics: Arc<MirrorMetrics>,
    pub wake: WakeSender<Signal>,
    pub activity: Arc<KeyActivity>,
    pub shadow: ShadowSender,
}

impl Writer {
    /// Runs until every sender is gone and the queue is empty.
    pub fn run(mut self, rx: Receiver<Exchange>) {
        let mut last_log: Option<Instant> = None;
        while let Ok(first) = rx.recv() {
            std::thread::sleep(GROUP_COMMIT);
            let mut batch = Vec::with_capacity(BATCH);
            batch.push(first);
            batch.extend(rx.try_iter().take(BATCH - 1));
            if let Some(problem) = self.write(batch)
                && last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY)
            {
                last_log = Some(Instant::now());
                problem.log(&self.agent);
            }
        }
    }

    /// Appends the batch's writes, then samples its reads (so that a read's key activity
    /// includes every write answered before it). Returns what went wrong, for a throttled
    /// log.
    fn write(&mut self, batch: Vec<Exchange>) -> Option<Problem> {
        let (writes, reads): (Vec<Exchange>, Vec<Exchange>) =
            batch.into_iter().partition(|e| e.class == Class::Write);
        let announced: Vec<String> = writes
            .iter()
            .filter(|w| w.announced)
            .filter_map(|w| translate::key(self.profile, &w.request))
            .collect();
        let problem = self.append(writes);
        // Appended (their operations count themselves now) or dropped: either way no longer
        // in the hand-off.
        for key in announced {
            self.activity.absorbed(&key);
        }
        for read in reads {
            self.sample(read);
        }
        problem
    }

    /// A read to compare: answered at once when the legacy agent would not look at its
    /// store, otherwise queued for the shadow reader.
    fn sample(&self, read: Exchange) {
        let Ok(request) = serde_json::from_slice::<Value>(&read.request) else {
            return self.metrics.skipped(read.action, SkipReason::Unsupported);
        };
        match answer::prepare(self.profile, &request) {
            Prepared::NotARead => {}
            Prepared::Unsupported(_) => self.metrics.skipped(read.action, SkipReason::Unsupported),
            Prepared::Immediate(shadow) => {
                let verdict = compare::compare(self.profile, &read.reply, &shadow, false);
                self.metrics.comparison(read.action, verdict.outcome);
            }
            Prepared::Fetch { key, queries } => {
                if !read.percent.includes(&key) {
                    return self.metrics.skipped(read.action, SkipReason::NotSampled);
                }
                let sample = Sample {
                    action: read.action,
                    purpose: Purpose::Compare {
                        legacy: read.reply,
                        snapshot: self.activity.snapshot(&key),
                    },
                    key,
                    request,
                    queries,
                };
                if self.shadow.offer(sample).is_err() {
                    self.metrics.skipped(read.action, SkipReason::QueueFull);
                }
            }
        }
    }

    /// Translates and appends writes, in one transaction.
    fn append(&mut self, batch: Vec<Exchange>) -> Option<Problem> {
        let mut entries = Vec::new();
        let mut queued = Vec::new();
        let mut dropped: Vec<(String, &'static str)> = Vec::new();
        let mut problem = None;
        let pending = self.pending.load(Ordering::Relaxed);
        for w in batch {
            let mut mirror = match translate::translate(self.profile, &w.request, &w.reply) {
                Verdict::Mirror(m) => m,
                // NotAWrite: classified as a write but not one the profile mirrors (cannot
                // happen with the built-in tables; counted rather than trusted).
                Verdict::Failed(_) | Verdict::NotAWrite => {
                    self.metrics.write(w.action, WriteOutcome::LegacyFailed);
                    continue;
                }
            };
            let mut pinned = w.pinned.into_iter();
            mirror.ops.iter_mut().for_each(|op| op.pin_ids(&mut pinned));
            if !w.percent.includes(&mirror.key) {
                self.metrics.write(w.action, WriteOutcome::NotSampled);
                continue;
            }
            if pending + (entries.len() + mirror.ops.len()) as u64 > self.max_pending {
                self.metrics.write(w.action, WriteOutcome::Dropped);
                self.metrics.dropped(DropReason::OutboxFull);
                dropped.push((mirror.key, DropReason::OutboxFull.as_label()));
                problem = Some(Problem::Full);
                continue;
            }
            queued.push((w.action, mirror.key.clone()));
            entries.extend(mirror.ops.into_iter().map(|op| NewEntry {
                key: mirror.key.clone(),
                action: w.action,
                op,
                accepted_at: w.at,
            }));
        }
        if !entries.is_empty() {
            match self.outbox.append(&entries) {
                Ok(()) => {
                    self.pending
                        .fetch_add(entries.len() as u64, Ordering::Relaxed);
                    for e in &entries {
                        self.activity.appended(&e.key, 1);
                    }
                    for (action, _) in &queued {
                        self.metrics.write(action, WriteOutcome::Queued);
                    }
                    self.wake.send(Signal::Appended);
                }
                Err(e) => {
                    for (action, key) in queued {
                        self.metrics.write(action, WriteOutcome::Dropped);
                        self.metrics.dropped(DropReason::OutboxError);
                        dropped.push((key, DropReason::OutboxError.as_label()));
                    }
                    problem = Some(Problem::Failed(e.to_string()));
                }
            }
        }
        if !dropped.is_empty()
            && let Err(e) = self.outbox.record_dropped(&dropped, Utc::now())
        {
            error!(agent = %self.agent, writes = dropped.len(), "could not record the keys of dropped writes: {e}");
        }
        problem
    }
}

enum Problem {
    Full,
    Failed(String),
}

impl Problem {
    fn log(&self, agent: &str) {
        match self {
            Problem::Full => warn!(
                agent,
                "outbox full (mirror.max_pending): new writes are not mirrored until it drains; their keys are recorded for reconcile"
            ),
            Problem::Failed(e) => error!(
                agent,
                "outbox append failed, writes not mirrored (keys recorded if possible): {e}"
            ),
        }
    }
}
