//! The mirror's metrics (proxy process): what happened to accepted writes, the outbox, and
//! deliveries to the orchestrator. Handles are resolved per agent at start-up; every series
//! of a closed label set exists at zero from then on.

use super::{counter_vec, float_gauge_vec, gauge_vec, histogram_vec};
use crate::classify::action_labels;
use crate::compare::Outcome;
use crate::config::AgentConfig;
use crate::profile::Class;
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Registry,
};
use std::collections::HashMap;

crate::labels! {
    /// What became of a write the legacy agent was asked to do (the `outcome` label of
    /// `memshift_mirror_writes_total`).
    pub enum WriteOutcome {
        /// Appended to the outbox.
        Queued = "queued",
        /// The legacy agent refused it: never mirrored.
        LegacyFailed = "legacy_failed",
        /// Its key is outside `mirror_percent`.
        NotSampled = "not_sampled",
        /// Not appended: see `memshift_mirror_dropped_total` for why.
        Dropped = "dropped",
    }
}

crate::labels! {
    /// Why an accepted write was not put in the outbox.
    pub enum DropReason {
        /// The hand-off queue between the forwarder and the outbox was full.
        QueueFull = "queue_full",
        /// The outbox held `max_pending` entries.
        OutboxFull = "outbox_full",
        /// The outbox could not be written (disk full, I/O error).
        OutboxError = "outbox_error",
        /// A multipart request or reply: not a write memshift can read.
        Multipart = "multipart",
    }
}

crate::labels! {
    /// What became of one delivery attempt.
    pub enum DeliveryOutcome {
        Delivered = "delivered",
        /// Failed, to be tried again.
        Retried = "retried",
        DeadLettered = "dead_lettered",
    }
}

crate::labels! {
    /// Why a read was not compared (each also counts as a comparison with outcome `skipped`).
    pub enum SkipReason {
        /// Its key is outside `shadow_percent`.
        NotSampled = "not_sampled",
        /// The hand-off or the shadow queue was full.
        QueueFull = "queue_full",
        /// A read the answer builder does not emulate (see `answer::Unsupported`).
        Unsupported = "unsupported",
        /// A multipart request or reply.
        Multipart = "multipart",
    }
}

crate::labels! {
    /// What became of a write the orchestrator was asked first (stages `rampdown` and
    /// `complete`; the `outcome` label of `memshift_primary_writes_total`).
    pub enum PrimaryOutcome {
        /// The orchestrator applied it; the client got the legacy-shape reply, and the write
        /// went to the reverse outbox.
        Applied = "applied",
        /// The orchestrator refused it with a reason the legacy agent has its own reply for
        /// (an unknown or duplicate session), and legacy is behind on the key: that reply.
        Refused = "refused",
        /// The orchestrator failed, was too slow, or refused it: legacy took it (and the
        /// mirror carries it to the orchestrator, with the same ids).
        Fallback = "fallback",
        /// The orchestrator failed while legacy was behind on the key, so legacy could not take
        /// it without reordering the key's writes: no reply, as when an agent times out.
        Unanswered = "unanswered",
        /// memshift cannot predict the legacy reply (a malformed write, say): legacy took it
        /// first.
        Unpredictable = "unpredictable",
        /// The orchestrator lacked some of the key's earlier writes (still in the forward
        /// outbox): legacy took it first, to keep the key's writes in order.
        OrchestratorBehind = "orchestrator_behind",
    }
}

crate::labels! {
    /// What became of one replay of a write to legacy (the reverse outbox).
    pub enum ReplayOutcome {
        /// Legacy accepted it.
        Delivered = "delivered",
        /// Legacy refused it (its store had drifted: an expired session, say): kept as a dead
        /// letter for reconcile.
        Refused = "refused",
        /// No answer in time, to be tried again.
        Retried = "retried",
    }
}

crate::labels! {
    /// Why the orchestrator did not answer a live read (the `reason` label of
    /// `memshift_live_fallbacks_total`).
    pub enum Fallback {
        /// It answered with an error, or could not be asked.
        Error = "error",
        /// Not within `live.timeout`.
        Timeout = "timeout",
        /// A read the answer builder does not emulate.
        Unsupported = "unsupported",
        /// Writes of the key not yet applied: the answer could be older than legacy's.
        PendingWrites = "pending_writes",
        /// The reader's queue was full.
        QueueFull = "queue_full",
    }
}

/// Why a delivery failed, besides the orchestrator's own error codes.
pub const TRANSPORT_FAILURES: [&str; 3] = ["timeout", "unreachable", "bad_reply"];

/// From the legacy reply to the orchestrator's acknowledgement: 1 ms to 6 h.
const LAG_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 3600.0, 21600.0,
];

/// The mirror's metric families, registered with the proxy's others.
pub(super) struct MirrorFamilies {
    writes: IntCounterVec,
    dropped: IntCounterVec,
    deliveries: IntCounterVec,
    failures: IntCounterVec,
    lag: HistogramVec,
    pending: IntGaugeVec,
    oldest_age: GaugeVec,
    retrying: IntGaugeVec,
    dead: IntGaugeVec,
    outage: IntGaugeVec,
    comparisons: IntCounterVec,
    skipped: IntCounterVec,
    served: IntCounterVec,
    fallbacks: IntCounterVec,
    inconsistency: GaugeVec,
    primary: IntCounterVec,
    replays: IntCounterVec,
    reverse_pending: IntGaugeVec,
    reverse_oldest_age: GaugeVec,
    reverse_dead: IntGaugeVec,
}

impl MirrorFamilies {
    pub(super) fn new(registry: &Registry) -> MirrorFamilies {
        let gauge = |name: &str, help: &str| float_gauge_vec(registry, name, help, &["agent"]);
        MirrorFamilies {
            writes: counter_vec(
                registry,
                "memshift_mirror_writes_total",
                "Writes answered by the legacy agent in a mirroring stage (and reads that changed its state: contextual's get_context cut), by what the mirror did with them.",
                &["agent", "action", "outcome"],
            ),
            dropped: counter_vec(
                registry,
                "memshift_mirror_dropped_total",
                "Accepted writes that were not put in the outbox, by reason (reconcile repairs them).",
                &["agent", "reason"],
            ),
            deliveries: counter_vec(
                registry,
                "memshift_mirror_deliveries_total",
                "Outbox operations sent to the orchestrator, by legacy action and outcome.",
                &["agent", "action", "outcome"],
            ),
            failures: counter_vec(
                registry,
                "memshift_mirror_failures_total",
                "Failed deliveries by reason: the orchestrator's error code, timeout, unreachable or bad_reply.",
                &["agent", "reason"],
            ),
            lag: histogram_vec(
                registry,
                "memshift_mirror_lag_seconds",
                "From the legacy agent accepting a write to the orchestrator acknowledging its operation.",
                &["agent"],
                LAG_BUCKETS,
            ),
            pending: gauge_vec(
                registry,
                "memshift_outbox_pending",
                "Operations in the outbox waiting for delivery.",
                &["agent"],
            ),
            oldest_age: gauge(
                "memshift_outbox_oldest_age_seconds",
                "Age of the oldest pending operation's write (0 when none is pending).",
            ),
            retrying: gauge_vec(
                registry,
                "memshift_outbox_retrying",
                "Pending operations waiting out a backoff after a failed delivery.",
                &["agent"],
            ),
            dead: gauge_vec(
                registry,
                "memshift_outbox_dead_letters",
                "Operations given up on, kept with their reason until memshift outbox retry-dead.",
                &["agent"],
            ),
            outage: gauge_vec(
                registry,
                "memshift_mirror_orchestrator_unavailable",
                "1 while deliveries are paused because the orchestrator does not answer (one probe at a time).",
                &["agent"],
            ),
            comparisons: counter_vec(
                registry,
                "memshift_comparisons_total",
                "Shadow comparisons of a legacy read with the orchestrator's legacy-shape answer, by outcome.",
                &["agent", "action", "outcome"],
            ),
            skipped: counter_vec(
                registry,
                "memshift_shadow_skipped_total",
                "Reads not compared, by reason (each is also a comparison with outcome skipped).",
                &["agent", "reason"],
            ),
            served: counter_vec(
                registry,
                "memshift_served_total",
                "Reads answered to clients in a mirroring stage, by the backend that answered.",
                &["agent", "action", "backend"],
            ),
            fallbacks: counter_vec(
                registry,
                "memshift_live_fallbacks_total",
                "Live reads answered by legacy after all, by reason.",
                &["agent", "reason"],
            ),
            inconsistency: gauge(
                "memshift_inconsistency_ratio",
                "Mismatches over matches plus mismatches since start-up (DESIGN.md's 0.1 % trigger; races, drift, errors and skips excluded).",
            ),
            primary: counter_vec(
                registry,
                "memshift_primary_writes_total",
                "Writes the orchestrator was to take first (rampdown, complete), by what became of them.",
                &["agent", "action", "outcome"],
            ),
            replays: counter_vec(
                registry,
                "memshift_reverse_deliveries_total",
                "Writes the orchestrator took first, replayed to the legacy agent, by outcome.",
                &["agent", "outcome"],
            ),
            reverse_pending: gauge_vec(
                registry,
                "memshift_reverse_pending",
                "Writes in the reverse outbox waiting to be replayed to the legacy agent.",
                &["agent"],
            ),
            reverse_oldest_age: gauge(
                "memshift_reverse_oldest_age_seconds",
                "Age of the oldest write waiting in the reverse outbox (0 when none is).",
            ),
            reverse_dead: gauge_vec(
                registry,
                "memshift_reverse_dead_letters",
                "Writes the legacy agent refused on replay, kept for reconcile.",
                &["agent"],
            ),
        }
    }

    /// `backend_latency` is the proxy's round-trip family: deliveries are its
    /// `backend="orchestrator"` series, next to the legacy agent's.
    pub(super) fn agent(
        &self,
        agent: &AgentConfig,
        backend_latency: &HistogramVec,
    ) -> MirrorMetrics {
        let name = agent.name.as_str();
        // Reads that change the agent's own state are mirrored for that change.
        let mirrored = |class: Class| {
            class == Class::Write || (class == Class::Read && agent.profile.reads_change_state())
        };
        let writes = action_labels(agent.profile)
            .filter(|(_, class)| mirrored(*class))
            .map(|(action, _)| {
                let outcomes = WriteOutcome::ALL
                    .map(|o| self.writes.with_label_values(&[name, action, o.as_label()]));
                let deliveries = DeliveryOutcome::ALL.map(|o| {
                    self.deliveries
                        .with_label_values(&[name, action, o.as_label()])
                });
                let latency = backend_latency.with_label_values(&[name, "orchestrator", action]);
                (
                    action,
                    ActionCounters {
                        outcomes,
                        deliveries,
                        latency,
                    },
                )
            })
            .collect();
        let reads = action_labels(agent.profile)
            .filter(|(_, class)| *class == Class::Read)
            .map(|(action, _)| {
                let outcomes = Outcome::ALL.map(|o| {
                    self.comparisons
                        .with_label_values(&[name, action, o.as_label()])
                });
                let latency = backend_latency.with_label_values(&[name, "orchestrator", action]);
                let served = ["legacy", "orchestrator"]
                    .map(|b| self.served.with_label_values(&[name, action, b]));
                (
                    action,
                    ReadCounters {
                        outcomes,
                        latency,
                        served,
                    },
                )
            })
            .collect();
        let failures = crate::api::ErrorCode::ALL
            .iter()
            .map(|c| c.as_label())
            .chain(TRANSPORT_FAILURES)
            .map(|reason| (reason, self.failures.with_label_values(&[name, reason])))
            .collect();
        let primary = action_labels(agent.profile)
            .filter(|(_, class)| *class == Class::Write)
            .map(|(action, _)| {
                let outcomes = PrimaryOutcome::ALL.map(|o| {
                    self.primary
                        .with_label_values(&[name, action, o.as_label()])
                });
                (action, outcomes)
            })
            .collect();
        let reverse = ReverseMetrics {
            replays: ReplayOutcome::ALL
                .map(|o| self.replays.with_label_values(&[name, o.as_label()])),
            pending: self.reverse_pending.with_label_values(&[name]),
            oldest_age: self.reverse_oldest_age.with_label_values(&[name]),
            dead: self.reverse_dead.with_label_values(&[name]),
        };
        MirrorMetrics {
            primary,
            reverse,
            actions: writes,
            reads,
            skipped: SkipReason::ALL.map(|r| self.skipped.with_label_values(&[name, r.as_label()])),
            fallbacks: Fallback::LABELS
                .map(|r| (r, self.fallbacks.with_label_values(&[name, r])))
                .into_iter()
                .collect(),
            inconsistency: self.inconsistency.with_label_values(&[name]),
            compared: Default::default(),
            dropped: DropReason::ALL.map(|r| self.dropped.with_label_values(&[name, r.as_label()])),
            failures,
            lag: self.lag.with_label_values(&[name]),
            pending: self.pending.with_label_values(&[name]),
            oldest_age: self.oldest_age.with_label_values(&[name]),
            retrying: self.retrying.with_label_values(&[name]),
            dead: self.dead.with_label_values(&[name]),
            outage: self.outage.with_label_values(&[name]),
        }
    }
}

struct ActionCounters {
    outcomes: [IntCounter; 4],
    deliveries: [IntCounter; 3],
    latency: Histogram,
}

struct ReadCounters {
    outcomes: [IntCounter; 8],
    latency: Histogram,
    /// By backend: legacy, orchestrator.
    served: [IntCounter; 2],
}

/// One agent's mirror metrics, shared by its forwarder, outbox writer and deliverer.
pub struct MirrorMetrics {
    primary: HashMap<&'static str, [IntCounter; 6]>,
    /// The reverse outbox (writes the orchestrator took first, on their way to legacy).
    pub reverse: ReverseMetrics,
    actions: HashMap<&'static str, ActionCounters>,
    reads: HashMap<&'static str, ReadCounters>,
    skipped: [IntCounter; 4],
    fallbacks: HashMap<&'static str, IntCounter>,
    inconsistency: Gauge,
    /// (matches, mismatches) since start-up, for the ratio.
    compared: std::sync::Mutex<(u64, u64)>,
    dropped: [IntCounter; 4],
    failures: HashMap<&'static str, IntCounter>,
    pub lag: Histogram,
    pub pending: IntGauge,
    pub oldest_age: Gauge,
    pub retrying: IntGauge,
    pub dead: IntGauge,
    pub outage: IntGauge,
}

/// Running totals of what the rollback triggers and the gates look at (all since start-up).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    pub matches: u64,
    pub mismatches: u64,
    /// Calls to the orchestrator: reads asked (compared, served, or failed) and deliveries.
    pub calls: u64,
    /// Of those, the failed: shadow errors and timeouts, live reads the orchestrator failed
    /// or was too slow for, deliveries retried or dead-lettered.
    pub errors: u64,
    /// The orchestrator's read times, per bucket of `BACKEND_BUCKETS` (not cumulative).
    pub read_latency: Vec<u64>,
}

/// The reverse outbox's metrics.
pub struct ReverseMetrics {
    replays: [IntCounter; 3],
    pub pending: IntGauge,
    pub oldest_age: Gauge,
    pub dead: IntGauge,
}

impl ReverseMetrics {
    pub fn replay(&self, outcome: ReplayOutcome) {
        let i = ReplayOutcome::ALL.iter().position(|o| *o == outcome);
        self.replays[i.expect("in ALL")].inc();
    }
}

impl MirrorMetrics {
    /// Counts a write the orchestrator was to take first.
    pub fn primary(&self, action: &str, outcome: PrimaryOutcome) {
        if let Some(counters) = self.primary.get(action) {
            let i = PrimaryOutcome::ALL.iter().position(|o| *o == outcome);
            counters[i.expect("in ALL")].inc();
        }
    }

    /// Counts a write by its legacy action (only write actions, and reads that change the
    /// agent's state, have series).
    pub fn write(&self, action: &str, outcome: WriteOutcome) {
        if let Some(a) = self.actions.get(action) {
            let i = WriteOutcome::ALL.iter().position(|o| *o == outcome);
            a.outcomes[i.expect("in ALL")].inc();
        }
    }

    pub fn dropped(&self, reason: DropReason) {
        let i = DropReason::ALL.iter().position(|r| *r == reason);
        self.dropped[i.expect("in ALL")].inc();
    }

    /// Counts a delivery attempt that got an answer (or timed out) after `seconds`.
    pub fn delivery(&self, action: &str, outcome: DeliveryOutcome, seconds: Option<f64>) {
        if let Some(a) = self.actions.get(action) {
            let i = DeliveryOutcome::ALL.iter().position(|o| *o == outcome);
            a.deliveries[i.expect("in ALL")].inc();
            if let Some(s) = seconds {
                a.latency.observe(s);
            }
        }
    }

    /// Counts a failed delivery; `reason` is an error code or a [`TRANSPORT_FAILURES`] name
    /// (anything else is counted as `bad_reply`).
    pub fn failure(&self, reason: &str) {
        let counter = self
            .failures
            .get(reason)
            .or_else(|| self.failures.get("bad_reply"));
        if let Some(c) = counter {
            c.inc();
        }
    }

    /// The running totals behind the triggers and gates, read from the counters.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        let count = |o: Outcome| Outcome::ALL.iter().position(|x| *x == o).expect("in ALL");
        for r in self.reads.values() {
            let get = |o: Outcome| r.outcomes[count(o)].get();
            t.matches += get(Outcome::Match);
            t.mismatches += get(Outcome::Mismatch);
            let failed = get(Outcome::ShadowError) + get(Outcome::ShadowTimeout);
            t.errors += failed;
            t.calls += get(Outcome::Match)
                + get(Outcome::Mismatch)
                + get(Outcome::Race)
                + get(Outcome::LegacyDrift)
                + failed
                + r.served[1].get();
            add_buckets(&mut t.read_latency, &super::bucket_counts(&r.latency));
        }
        for reason in ["error", "timeout"] {
            let n = self.fallbacks.get(reason).map_or(0, IntCounter::get);
            t.calls += n;
            t.errors += n;
        }
        for a in self.actions.values() {
            let [delivered, retried, dead] = &a.deliveries;
            t.calls += delivered.get() + retried.get() + dead.get();
            t.errors += retried.get() + dead.get();
        }
        t
    }

    /// Counts a comparison of a read (only read actions have series).
    pub fn comparison(&self, action: &str, outcome: Outcome) {
        if let Some(r) = self.reads.get(action) {
            let i = Outcome::ALL.iter().position(|o| *o == outcome);
            r.outcomes[i.expect("in ALL")].inc();
        }
        if matches!(outcome, Outcome::Match | Outcome::Mismatch) {
            let mut c = self.compared.lock().unwrap_or_else(|e| e.into_inner());
            match outcome {
                Outcome::Match => c.0 += 1,
                _ => c.1 += 1,
            }
            self.inconsistency.set(c.1 as f64 / (c.0 + c.1) as f64);
        }
    }

    /// Counts a read answered by `backend` (`legacy` or `orchestrator`).
    pub fn served(&self, action: &str, backend: &str) {
        if let Some(r) = self.reads.get(action) {
            r.served[usize::from(backend == "orchestrator")].inc();
        }
    }

    /// Counts a live read that went to legacy after all; `reason` is one of
    /// [`Fallback`].
    pub fn fallback(&self, reason: Fallback) {
        if let Some(c) = self.fallbacks.get(reason.as_label()) {
            c.inc();
        }
    }

    /// A live read's time until the orchestrator's answer reached the client.
    pub fn live_latency(&self, action: &str, seconds: f64) {
        self.shadow_latency(action, seconds);
    }

    /// Counts a read that was not compared, as a `skipped` comparison and by reason.
    pub fn skipped(&self, action: &str, reason: SkipReason) {
        self.comparison(action, Outcome::Skipped);
        let i = SkipReason::ALL.iter().position(|r| *r == reason);
        self.skipped[i.expect("in ALL")].inc();
    }

    /// The time the orchestrator took to give everything a shadow read needed.
    pub fn shadow_latency(&self, action: &str, seconds: f64) {
        if let Some(r) = self.reads.get(action) {
            r.latency.observe(seconds);
        }
    }
}

/// Adds `b` to `a` bucket by bucket.
pub(super) fn add_buckets(a: &mut Vec<u64>, b: &[u64]) {
    if a.len() < b.len() {
        a.resize(b.len(), 0);
    }
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}
