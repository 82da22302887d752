//! The HTTP side: `/metrics` (Prometheus text format) and `/healthz`.
//!
//! Bound to `127.0.0.1:9464` by default: the endpoint says which agents exist and how they
//! are doing, which is for operators and scrapers, not for the world.

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

/// What `/healthz` reports.
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

/// Serves until `shutdown` is cancelled.
///
/// # Errors
/// The server failed while running (accept errors are retried by axum).
pub async fn serve(
    listener: TcpListener,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(health);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn metrics(State(health): State<Arc<Health>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        health.metrics.render(),
    )
}

async fn healthz(State(health): State<Arc<Health>>) -> impl IntoResponse {
    let draining = health.draining.load(Ordering::Relaxed);
    let agents = health
        .agents
        .iter()
        .map(|name| {
            let (legacy_connected, in_flight) = health.metrics.agent_status(name);
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
    let code = if draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (
        code,
        axum::Json(serde_json::to_value(body).unwrap_or_default()),
    )
}
