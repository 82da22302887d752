//! The HTTP side of every memshift process: `/metrics` (Prometheus text format) and
//! `/healthz`.
//!
//! Bound to localhost by default: the endpoint says what runs and how it is doing, which is
//! for operators and scrapers, not for the world.

use crate::metrics::Metrics;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What a process exposes over HTTP.
pub trait Status: Send + Sync + 'static {
    /// The Prometheus text exposition.
    fn metrics_text(&self) -> String;
    /// Whether the process takes work (`200`, else `503`), and the JSON body of `/healthz`.
    fn health(&self) -> (bool, serde_json::Value);
}

/// What `/healthz` reports for the proxy.
pub struct Health {
    metrics: Arc<Metrics>,
    agents: Vec<String>,
    draining: AtomicBool,
}

#[derive(Serialize)]
struct HealthBody<'a> {
    status: &'static str,
    version: &'static str,
    agents: Vec<AgentHealth<'a>>,
}

#[derive(Serialize)]
struct AgentHealth<'a> {
    name: &'a str,
    legacy_connected: bool,
    in_flight: i64,
}

impl Health {
    pub fn new(metrics: Arc<Metrics>, agents: Vec<String>) -> Health {
        Health {
            metrics,
            agents,
            draining: AtomicBool::new(false),
        }
    }

    /// From now on `/healthz` answers 503, so load balancers stop sending new work.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}

/// Serves until `shutdown` is cancelled; `extra` adds the process's own routes (the
/// proxy's `/flags` and `/admin/…`).
///
/// # Errors
/// The server failed while running (accept errors are retried by axum).
pub async fn serve<S: Status>(
    listener: TcpListener,
    status: Arc<S>,
    extra: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics::<S>))
        .route("/healthz", get(healthz::<S>))
        .with_state(status)
        .merge(extra);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn metrics<S: Status>(State(status): State<Arc<S>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        status.metrics_text(),
    )
}

async fn healthz<S: Status>(State(status): State<Arc<S>>) -> impl IntoResponse {
    let (ok, body) = status.health();
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body))
}

impl Status for Health {
    fn metrics_text(&self) -> String {
        self.metrics.render()
    }

    fn health(&self) -> (bool, serde_json::Value) {
        let draining = self.draining.load(Ordering::Relaxed);
        let agents = self
            .agents
            .iter()
            .map(|name| {
                let (legacy_connected, in_flight) = self.metrics.agent_status(name);
                AgentHealth {
                    name,
                    legacy_connected,
                    in_flight,
                }
            })
            .collect();
        let body = HealthBody {
            status: if draining { "draining" } else { "ok" },
            version: env!("CARGO_PKG_VERSION"),
            agents,
        };
        (!draining, serde_json::to_value(body).unwrap_or_default())
    }
}
