//! Prometheus metrics: one [`Metrics`] per process on an explicit registry, passed down.
//!
//! No global statics, so tests running side by side never share counters. Names follow
//! `memshift_<thing>_total` / `_seconds`; every label comes from a closed set (agent names
//! from the configuration, action names from the profile's table, fixed outcome and reason
//! names), never from request data. The forwarding thread gets an [`AgentMetrics`] whose
//! label handles are resolved once at start-up, so counting a request costs a few atomic
//! adds and no hashing.

mod mirror;
mod orchestrator;
mod rollout;

pub use mirror::{
    DeliveryOutcome, DropReason, Fallback, MirrorMetrics, PrimaryOutcome, ReplayOutcome,
    ReverseMetrics, SkipReason, Totals, WriteOutcome,
};
pub use rollout::{ReloadFailure, RollbackReason, RolloutMetrics, TriggerFigures};

pub use orchestrator::{EmbeddingOutcome, OrchestratorMetrics};

use crate::classify::action_labels;
use crate::config::AgentConfig;
use crate::guard::Refusal;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

crate::labels! {
    /// What finally happened to a request at the proxy (closed set, the `outcome` label).
    pub enum Outcome {
        /// The legacy agent answered and the answer went to the client.
        Answered = "answered",
        /// The legacy agent did not answer within its timeout.
        Timeout = "timeout",
        /// The guard answered in the agent's place.
        Refused = "refused",
        /// The answer could not be handed to the client (it disconnected).
        Undeliverable = "undeliverable",
    }
}

impl Outcome {
    fn index(self) -> usize {
        self as usize
    }
}

/// The process's metric families.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    backend_latency: HistogramVec,
    proxy_added: HistogramVec,
    in_flight: IntGaugeVec,
    legacy_timeouts: IntCounterVec,
    late_replies: IntCounterVec,
    guard_rejections: IntCounterVec,
    malformed: IntCounterVec,
    legacy_connection_events: IntCounterVec,
    legacy_connected: IntGaugeVec,
    client_connections: IntGaugeVec,
    mirror: mirror::MirrorFamilies,
    rollout: rollout::RolloutMetrics,
}

/// Latency buckets for a backend round trip: 100 µs to 30 s.
pub const BACKEND_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Buckets for the time memshift itself adds: 2 µs to 10 ms.
const PROXY_ADDED_BUCKETS: &[f64] = &[
    0.000002, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01,
];

impl Metrics {
    /// Registers every family, the build info and the process collector.
    ///
    /// # Panics
    /// Only on a programming error (an invalid or duplicate metric definition).
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let m = Metrics {
            requests: counter_vec(
                &registry,
                "memshift_requests_total",
                "Client requests by agent, action, class and outcome.",
                &["agent", "action", "class", "outcome"],
            ),
            backend_latency: histogram_vec(
                &registry,
                "memshift_backend_request_duration_seconds",
                "Round trip to a backend, from forwarding the request to receiving the reply.",
                &["agent", "backend", "action"],
                BACKEND_BUCKETS,
            ),
            proxy_added: histogram_vec(
                &registry,
                "memshift_proxy_added_seconds",
                "Time memshift spends on a request until it hands it to libzmq, inbound plus outbound (queues and the wire excluded; make bench measures end to end).",
                &["agent"],
                PROXY_ADDED_BUCKETS,
            ),
            in_flight: gauge_vec(
                &registry,
                "memshift_in_flight_requests",
                "Requests forwarded to the legacy agent and not yet answered.",
                &["agent"],
            ),
            legacy_timeouts: counter_vec(
                &registry,
                "memshift_legacy_timeouts_total",
                "Requests the legacy agent did not answer within legacy_timeout.",
                &["agent"],
            ),
            late_replies: counter_vec(
                &registry,
                "memshift_legacy_late_replies_total",
                "Legacy replies that arrived after their request had timed out (dropped).",
                &["agent"],
            ),
            guard_rejections: counter_vec(
                &registry,
                "memshift_guard_rejections_total",
                "Requests the guard answered in the agent's place, by hazard.",
                &["agent", "reason"],
            ),
            malformed: counter_vec(
                &registry,
                "memshift_malformed_requests_total",
                "Requests without a REQ envelope delimiter (a REP agent would drop them too).",
                &["agent"],
            ),
            legacy_connection_events: counter_vec(
                &registry,
                "memshift_legacy_connection_events_total",
                "Connection events on the link to the legacy agent.",
                &["agent", "event"],
            ),
            legacy_connected: gauge_vec(
                &registry,
                "memshift_legacy_connected",
                "1 while the link to the legacy agent is up.",
                &["agent"],
            ),
            client_connections: gauge_vec(
                &registry,
                "memshift_client_connections",
                "Client connections currently open on the agent's listen endpoint.",
                &["agent"],
            ),
            mirror: mirror::MirrorFamilies::new(&registry),
            rollout: rollout::RolloutMetrics::new(&registry),
            registry,
        };
        register_process(&m.registry);
        m
    }

    /// The metrics text, in the Prometheus exposition format.
    pub fn render(&self) -> String {
        render(&self.registry)
    }

    /// Handles for one agent's forwarder, resolved now so the hot path does no lookups.
    /// Every series of the agent is created here, at zero, so dashboards and alert rules see
    /// it before the first request.
    pub fn agent(&self, agent: &AgentConfig) -> AgentMetrics {
        let name = agent.name.as_str();
        let actions = action_labels(agent.profile)
            .map(|(action, class)| ActionMetrics {
                outcomes: Outcome::ALL.map(|o| {
                    self.requests
                        .with_label_values(&[name, action, class.as_label(), o.as_label()])
                }),
                legacy_latency: self
                    .backend_latency
                    .with_label_values(&[name, "legacy", action]),
                class,
            })
            .collect();
        for event in ConnectionEvent::ALL {
            self.legacy_connection_events
                .with_label_values(&[name, event.as_label()]);
        }
        AgentMetrics {
            actions,
            proxy_added: self.proxy_added.with_label_values(&[name]),
            in_flight: self.in_flight.with_label_values(&[name]),
            legacy_timeouts: self.legacy_timeouts.with_label_values(&[name]),
            late_replies: self.late_replies.with_label_values(&[name]),
            guard: Refusal::ALL.map(|r| {
                self.guard_rejections
                    .with_label_values(&[name, r.as_label()])
            }),
            malformed: self.malformed.with_label_values(&[name]),
            connection_events: ConnectionEvent::ALL.map(|e| {
                self.legacy_connection_events
                    .with_label_values(&[name, e.as_label()])
            }),
            legacy_connected: self.legacy_connected.with_label_values(&[name]),
            client_connections: self.client_connections.with_label_values(&[name]),
        }
    }
}

impl Metrics {
    /// The mirror's handles for one agent.
    pub fn mirror(&self, agent: &AgentConfig) -> MirrorMetrics {
        self.mirror.agent(agent, &self.backend_latency)
    }

    /// The rollout's families (flags, reloads, rollbacks, triggers, gates).
    pub fn rollout(&self) -> &RolloutMetrics {
        &self.rollout
    }

    /// `(legacy link up, requests in flight)` of one agent, for `/healthz`.
    pub fn agent_status(&self, agent: &str) -> (bool, i64) {
        let connected = self.legacy_connected.with_label_values(&[agent]).get() == 1;
        (connected, self.in_flight.with_label_values(&[agent]).get())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

crate::labels! {
    /// An event on the link to the legacy agent (closed set, the `event` label).
    pub enum ConnectionEvent {
        Connected = "connected",
        Disconnected = "disconnected",
    }
}

struct ActionMetrics {
    outcomes: [IntCounter; 4],
    legacy_latency: Histogram,
    class: crate::profile::Class,
}

/// One agent's pre-resolved metric handles, owned by its forwarding thread.
pub struct AgentMetrics {
    /// Indexed by [`crate::classify::Classified::slot`].
    actions: Vec<ActionMetrics>,
    pub proxy_added: Histogram,
    pub in_flight: IntGauge,
    pub legacy_timeouts: IntCounter,
    pub late_replies: IntCounter,
    guard: [IntCounter; 2],
    pub malformed: IntCounter,
    connection_events: [IntCounter; 2],
    pub legacy_connected: IntGauge,
    pub client_connections: IntGauge,
}

impl AgentMetrics {
    pub fn request(&self, slot: usize, outcome: Outcome) {
        self.actions[slot].outcomes[outcome.index()].inc();
    }

    pub fn legacy_latency(&self, slot: usize, seconds: f64) {
        self.actions[slot].legacy_latency.observe(seconds);
    }

    /// Legacy's read times since start-up, per bucket of [`BACKEND_BUCKETS`] (not
    /// cumulative), for the latency trigger's baseline.
    pub fn read_latency(&self) -> Vec<u64> {
        let mut sum = Vec::new();
        for a in &self.actions {
            if a.class == crate::profile::Class::Read {
                mirror::add_buckets(&mut sum, &bucket_counts(&a.legacy_latency));
            }
        }
        sum
    }

    pub fn guard_rejection(&self, refusal: Refusal) {
        let i = Refusal::ALL
            .iter()
            .position(|r| *r == refusal)
            .expect("in ALL");
        self.guard[i].inc();
    }

    pub fn connection_event(&self, event: ConnectionEvent) {
        let i = ConnectionEvent::ALL
            .iter()
            .position(|e| *e == event)
            .expect("in ALL");
        self.connection_events[i].inc();
    }
}

/// The build info gauge and the process collector, which every memshift process exports.
fn register_process(registry: &Registry) {
    let build = gauge_vec(
        registry,
        "memshift_build_info",
        "Always 1; the labels say which build is running.",
        &["version"],
    );
    build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    let process = prometheus::process_collector::ProcessCollector::for_self();
    registry
        .register(Box::new(process))
        .expect("process collector registers once");
}

/// A histogram's counts per bucket, not cumulative; the last is above the top bound.
fn bucket_counts(h: &Histogram) -> Vec<u64> {
    use prometheus::core::Metric as _;
    let m = h.metric();
    let proto = m.get_histogram();
    let mut counts = Vec::with_capacity(proto.get_bucket().len() + 1);
    let mut below = 0;
    for b in proto.get_bucket() {
        counts.push(b.cumulative_count() - below);
        below = b.cumulative_count();
    }
    counts.push(proto.get_sample_count().saturating_sub(below));
    counts
}

/// A registry's metrics in the Prometheus text exposition format.
fn render(registry: &Registry) -> String {
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut buf)
        .expect("encoding to a Vec cannot fail");
    String::from_utf8(buf).expect("the text format is UTF-8")
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let family = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(family.clone()))
        .expect("metric registered once");
    family
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let family = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(family.clone()))
        .expect("metric registered once");
    family
}

fn float_gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let family = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(family.clone()))
        .expect("metric registered once");
    family
}

fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    let family = HistogramVec::new(opts, labels).expect("valid metric");
    registry
        .register(Box::new(family.clone()))
        .expect("metric registered once");
    family
}
