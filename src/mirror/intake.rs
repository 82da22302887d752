//! The intake: the forwarder's exchanges in, a batch at a time. Writes (and what reads
//! changed in the agent's state) go to the outbox, one transaction per batch; reads go to
//! the shadow reader to be compared.

use super::activity::KeyActivity;
use super::messages::{Exchange, ToDeliverer};
use super::shadow::{Purpose, Sample, ShadowSender};
use crate::answer::{self, Prepared};
use crate::compare;
use crate::flags::Percent;
use crate::metrics::SkipReason;
use crate::metrics::{DropReason, MirrorMetrics, WriteOutcome};
use crate::outbox::{NewEntry, Outbox};
use crate::profile::Class;
use crate::profile::Profile;
use crate::translate::{self, Mirror, MirrorOp, Verdict};
use crate::wakeup::WakeSender;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::HashMap;
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

/// Keys whose last read change is remembered at most (then the memory starts over: at
/// worst a change is mirrored twice, which changes nothing).
const MAX_REMEMBERED_EFFECTS: usize = 10_000;

/// A full or failing outbox is logged at most this often (it is counted every time).
const LOG_EVERY: Duration = Duration::from_secs(10);

pub(super) struct Intake {
    pub agent: String,
    pub profile: Profile,
    pub outbox: Outbox,
    pub max_pending: u64,
    /// Entries pending in the outbox, shared with the deliverer (which corrects it from the
    /// file every second).
    pub pending: Arc<AtomicU64>,
    pub metrics: Arc<MirrorMetrics>,
    pub wake: WakeSender<ToDeliverer>,
    pub activity: Arc<KeyActivity>,
    pub shadow: ShadowSender,
    /// Keys with writes the orchestrator took first, for legacy (the reverse outbox).
    pub reverse: Arc<KeyActivity>,
    /// The last change each key's reads made to the agent's state, with the key's count
    /// of writes for legacy then: a read making the same change again, with no write of
    /// the key in between (a write forgets it here; one for legacy moves the count), is not
    /// mirrored again.
    pub effects: HashMap<String, (Vec<MirrorOp>, u64)>,
}

impl Intake {
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

    /// Appends the batch's writes (and what its reads changed in the agent's state) in
    /// order, then samples its reads (so that a read's key activity includes every write
    /// answered before it). Returns what went wrong, for a throttled log.
    fn write(&mut self, batch: Vec<Exchange>) -> Option<Problem> {
        let mut accepted = Vec::new();
        let mut reads = Vec::new();
        let mut announced = Vec::new();
        for e in batch {
            if e.class == Class::Write {
                if e.announced
                    && let Some(key) = translate::key(self.profile, &e.request)
                {
                    announced.push(key);
                }
                self.accept_write(e, &mut accepted);
            } else {
                let effect = self.read_effect(&e, &mut accepted);
                reads.push((e, effect));
            }
        }
        let problem = self.append(&mut accepted);
        // Appended (their operations count themselves now) or dropped: either way no longer
        // in the hand-off.
        for key in announced {
            self.activity.absorbed(&key);
        }
        for a in &accepted {
            self.remember(a);
        }
        for (read, effect) in reads {
            // A read's own change, appended, is no write it raced (when making it again
            // changes nothing, the comparison holds whether or not it is delivered yet).
            let own = effect
                .map(|i| &accepted[i])
                .filter(|a| a.appended && a.idempotent)
                .map_or(0, |a| a.mirror.ops.len() as i64);
            self.sample(read, own);
        }
        problem
    }

    /// A write's verdict: its operations to append, or why not.
    fn accept_write(&mut self, w: Exchange, accepted: &mut Vec<Accepted>) {
        let mut mirror = match translate::translate(self.profile, &w.request, &w.reply) {
            Verdict::Mirror(m) => m,
            // NotAWrite: classified as a write but not one the profile mirrors (cannot
            // happen with the built-in tables; counted rather than trusted).
            Verdict::Failed(_) | Verdict::NotAWrite => {
                self.metrics.write(w.action, WriteOutcome::LegacyFailed);
                return;
            }
        };
        let mut pinned = w.pinned.into_iter();
        mirror.ops.iter_mut().for_each(|op| op.pin_ids(&mut pinned));
        accepted.push(Accepted {
            action: w.action,
            mirror,
            at: w.at,
            share: w.shares.mirrored,
            read: false,
            idempotent: false,
            appended: false,
        });
    }

    /// What a read changed in the agent's state, to append with the writes; its index in
    /// `accepted`. The same change made twice in a row is kept once (see
    /// [`Intake::remember`]).
    fn read_effect(&mut self, read: &Exchange, accepted: &mut Vec<Accepted>) -> Option<usize> {
        if read.shares.mirrored == Percent::NONE {
            return None;
        }
        let effect = translate::read_effect(self.profile, &read.request, &read.reply)?;
        let key = &effect.mirror.key;
        // The key's last change: earlier in this batch, else remembered from before it.
        let same = match accepted.iter().rev().find(|a| &a.mirror.key == key) {
            Some(a) => a.read && a.mirror.ops == effect.mirror.ops,
            None => self.effects.get(key).is_some_and(|(ops, count)| {
                *count == self.reverse.appended_in(key) && *ops == effect.mirror.ops
            }),
        };
        if effect.idempotent && same {
            return None;
        }
        accepted.push(Accepted {
            action: read.action,
            mirror: effect.mirror,
            at: read.at,
            share: read.shares.mirrored,
            read: true,
            idempotent: effect.idempotent,
            appended: false,
        });
        Some(accepted.len() - 1)
    }

    /// Remembers a read's change once it is in the outbox; forgets it at the key's next
    /// write (which may have rebuilt what the read changed), in the batch's order.
    fn remember(&mut self, a: &Accepted) {
        // Nothing to remember for a profile whose reads change nothing.
        if !self.profile.reads_change_state() {
            return;
        }
        let key = &a.mirror.key;
        if !a.read {
            self.effects.remove(key);
            return;
        }
        if !a.appended {
            return;
        }
        if self.effects.len() >= MAX_REMEMBERED_EFFECTS {
            self.effects.clear();
        }
        let remembered = (a.mirror.ops.clone(), self.reverse.appended_in(key));
        self.effects.insert(key.clone(), remembered);
    }

    /// A read to compare: answered at once when the legacy agent would not look at its
    /// store, otherwise queued for the shadow reader. `own`: operations of the read's own
    /// change to the agent's state, pending in the outbox.
    fn sample(&self, read: Exchange, own: i64) {
        let Some(compared) = read.shares.compared else {
            return;
        };
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
                if !compared.includes(&key) {
                    return self.metrics.skipped(read.action, SkipReason::NotSampled);
                }
                let sample = Sample {
                    action: read.action,
                    purpose: Purpose::Compare {
                        legacy: read.reply,
                        snapshot: self.activity.snapshot(&key).excluding(own),
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

    /// Appends the accepted operations in one transaction, marking those appended.
    fn append(&mut self, batch: &mut [Accepted]) -> Option<Problem> {
        let mut entries = Vec::new();
        let mut queued = Vec::new();
        let mut dropped: Vec<(String, &'static str)> = Vec::new();
        let mut problem = None;
        let pending = self.pending.load(Ordering::Relaxed);
        for (i, a) in batch.iter_mut().enumerate() {
            if !a.share.includes(&a.mirror.key) {
                self.metrics.write(a.action, WriteOutcome::NotSampled);
                continue;
            }
            if pending + (entries.len() + a.mirror.ops.len()) as u64 > self.max_pending {
                self.metrics.write(a.action, WriteOutcome::Dropped);
                self.metrics.dropped(DropReason::OutboxFull);
                dropped.push((a.mirror.key.clone(), DropReason::OutboxFull.as_label()));
                problem = Some(Problem::Full);
                continue;
            }
            queued.push(i);
            // A write's operations move into the entries; a read's change is remembered
            // afterwards (see `remember`), so it is copied.
            let ops = if a.read {
                a.mirror.ops.clone()
            } else {
                std::mem::take(&mut a.mirror.ops)
            };
            entries.extend(ops.into_iter().map(|op| NewEntry {
                key: a.mirror.key.clone(),
                action: a.action,
                op,
                accepted_at: a.at,
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
                    for &i in &queued {
                        batch[i].appended = true;
                        self.metrics.write(batch[i].action, WriteOutcome::Queued);
                    }
                    self.wake.send(ToDeliverer::Appended);
                }
                Err(e) => {
                    for &i in &queued {
                        self.metrics.write(batch[i].action, WriteOutcome::Dropped);
                        self.metrics.dropped(DropReason::OutboxError);
                        dropped.push((
                            batch[i].mirror.key.clone(),
                            DropReason::OutboxError.as_label(),
                        ));
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

/// Operations to append for one exchange.
struct Accepted {
    action: &'static str,
    mirror: Mirror,
    at: DateTime<Utc>,
    /// The share of keys mirrored when the request arrived.
    share: Percent,
    /// A read's change to the agent's state (else a write).
    read: bool,
    /// A read's change that the same read again would not change further.
    idempotent: bool,
    appended: bool,
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
