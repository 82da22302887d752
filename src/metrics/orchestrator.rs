//! The orchestrator process's metrics, on a registry of its own.

use super::{BACKEND_BUCKETS, counter_vec, gauge_vec, histogram_vec, register_process, render};
use crate::api::{Action, ErrorCode};
use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

/// Buckets from queueing a text to storing its vector: 10 ms to 1 h.
const EMBEDDING_LAG_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// The orchestrator's metric families. Every series exists at zero from start-up.
pub struct OrchestratorMetrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    pub in_flight: IntGauge,
    pub undeliverable: IntCounter,
    pool: IntGaugeVec,
    pub pool_max: IntGauge,
    pub database_up: IntGauge,
    pub embedding_backlog: IntGauge,
    pub embedding_oldest_age: Gauge,
    pub embedding_lag: Histogram,
    embedding_calls: HistogramVec,
    embeddings: IntCounterVec,
    pub expired_deleted: IntCounter,
    pub access_log_failures: IntCounter,
}

crate::labels! {
    /// What became of texts taken off the embedding queue (the `outcome` label).
    pub enum EmbeddingOutcome {
        Stored = "stored",
        Failed = "failed",
        /// Nothing to embed (no words, the entry deleted, or its text changed meanwhile).
        Discarded = "discarded",
    }
}

/// The `action` label of a request whose action could not be read.
pub const UNKNOWN_ACTION: &str = "unknown";

impl OrchestratorMetrics {
    /// # Panics
    /// Only on a programming error (an invalid or duplicate metric definition).
    pub fn new(provider: &str) -> OrchestratorMetrics {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("registered once");
            g
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
            c
        };
        let m = OrchestratorMetrics {
            requests: counter_vec(
                &registry,
                "memshift_orchestrator_requests_total",
                "Orchestrator requests by action and outcome (success or the error code).",
                &["action", "outcome"],
            ),
            duration: histogram_vec(
                &registry,
                "memshift_orchestrator_request_duration_seconds",
                "From receiving a request to handing its reply to the socket, by action and outcome (success or error).",
                &["action", "outcome"],
                BACKEND_BUCKETS,
            ),
            in_flight: gauge(
                "memshift_orchestrator_in_flight_requests",
                "Requests received and not yet answered (queued or being handled).",
            ),
            undeliverable: counter(
                "memshift_orchestrator_undeliverable_replies_total",
                "Replies that could not be sent because the client had gone.",
            ),
            pool: gauge_vec(
                &registry,
                "memshift_db_pool_connections",
                "Database connections open, by state (idle, in_use).",
                &["state"],
            ),
            pool_max: gauge(
                "memshift_db_pool_max_connections",
                "The pool's configured size.",
            ),
            database_up: gauge(
                "memshift_database_up",
                "1 if the last database round trip of the background tasks worked.",
            ),
            embedding_backlog: gauge(
                "memshift_embedding_backlog",
                "Entries waiting for an embedding under the configured model.",
            ),
            embedding_oldest_age: {
                let g = Gauge::with_opts(Opts::new(
                    "memshift_embedding_oldest_age_seconds",
                    "Age of the oldest entry waiting for an embedding (0 when none).",
                ))
                .expect("valid metric");
                registry
                    .register(Box::new(g.clone()))
                    .expect("registered once");
                g
            },
            embedding_lag: {
                let h = Histogram::with_opts(
                    HistogramOpts::new(
                        "memshift_embedding_latency_seconds",
                        "From queueing an entry's text to storing its vector.",
                    )
                    .buckets(EMBEDDING_LAG_BUCKETS.to_vec()),
                )
                .expect("valid metric");
                registry
                    .register(Box::new(h.clone()))
                    .expect("registered once");
                h
            },
            embedding_calls: histogram_vec(
                &registry,
                "memshift_embedding_request_duration_seconds",
                "One call to the embedding provider (a batch of texts), by provider.",
                &["provider"],
                BACKEND_BUCKETS,
            ),
            embeddings: counter_vec(
                &registry,
                "memshift_embeddings_total",
                "Texts taken off the embedding queue, by outcome (stored, failed, discarded).",
                &["outcome"],
            ),
            expired_deleted: counter(
                "memshift_expired_entries_deleted_total",
                "Expired entries deleted for good by the sweeper.",
            ),
            access_log_failures: counter(
                "memshift_access_log_failures_total",
                "memory_access_logs rows that could not be written (the request itself was answered).",
            ),
            registry,
        };
        for action in Action::ALL.iter().map(|a| a.name()).chain([UNKNOWN_ACTION]) {
            m.requests.with_label_values(&[action, "success"]);
            for code in ErrorCode::ALL {
                m.requests.with_label_values(&[action, code.as_label()]);
            }
            m.duration.with_label_values(&[action, "success"]);
            m.duration.with_label_values(&[action, "error"]);
        }
        for state in ["idle", "in_use"] {
            m.pool.with_label_values(&[state]);
        }
        m.embedding_calls.with_label_values(&[provider]);
        for o in [
            EmbeddingOutcome::Stored,
            EmbeddingOutcome::Failed,
            EmbeddingOutcome::Discarded,
        ] {
            m.embeddings.with_label_values(&[o.as_label()]);
        }
        register_process(&m.registry);
        m
    }

    /// Counts one answered request; `error` is its error code, if it failed.
    pub fn request(&self, action: Option<Action>, error: Option<ErrorCode>, seconds: f64) {
        let action = action.map_or(UNKNOWN_ACTION, Action::name);
        let outcome = error.map_or("success", ErrorCode::as_label);
        self.requests.with_label_values(&[action, outcome]).inc();
        let class = if error.is_some() { "error" } else { "success" };
        self.duration
            .with_label_values(&[action, class])
            .observe(seconds);
    }

    pub fn embedding_call(&self, provider: &str, seconds: f64) {
        self.embedding_calls
            .with_label_values(&[provider])
            .observe(seconds);
    }

    pub fn embeddings(&self, outcome: EmbeddingOutcome, n: usize) {
        self.embeddings
            .with_label_values(&[outcome.as_label()])
            .inc_by(n as u64);
    }

    /// Sets the pool gauges from `(open, idle)`.
    pub fn pool_usage(&self, open: u32, idle: usize) {
        let idle = idle as i64;
        self.pool.with_label_values(&["idle"]).set(idle);
        self.pool
            .with_label_values(&["in_use"])
            .set(i64::from(open) - idle);
    }

    pub fn render(&self) -> String {
        render(&self.registry)
    }
}
