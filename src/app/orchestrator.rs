//! The `memshift orchestrator` process.
//!
//! Start-up: connect the pool (lazily: a database that is down later is survived), apply
//! migrations unless told not to, queue entries missing an embedding under the configured
//! model, bind the ZMQ socket and HTTP, start the embedding worker and the sweeper,
//! announce. Shutdown: `/healthz` 503 → the socket stops reading → queued and running
//! requests finish (grace period) → socket thread joined → worker and sweeper stop → pool
//! closed → ZMQ context dropped.

use super::announce;
use crate::config::Config;
use crate::embed::Embedder;
use crate::embed::worker::Worker;
use crate::http::{self, Status};
use crate::metrics::OrchestratorMetrics;
use crate::orchestrator::socket::{SocketThread, ToSocket};
use crate::orchestrator::{Service, dispatch, sweeper};
use crate::store::{Store, VectorIndex};
use crate::wakeup;
use anyhow::{Context as _, anyhow};
use serde::Serialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

#[derive(Serialize)]
struct Ready<'a> {
    event: &'static str,
    role: &'static str,
    version: &'static str,
    endpoint: &'a str,
    metrics: SocketAddr,
}

struct OrchestratorStatus {
    metrics: Arc<OrchestratorMetrics>,
    store: Store,
    draining: AtomicBool,
}

impl Status for OrchestratorStatus {
    fn metrics_text(&self) -> String {
        let (open, idle) = self.store.pool_usage();
        self.metrics.pool_usage(open, idle);
        self.metrics.render()
    }

    fn health(&self) -> (bool, serde_json::Value) {
        let draining = self.draining.load(Ordering::Relaxed);
        let database = if self.metrics.database_up.get() == 1 {
            "ok"
        } else {
            "unavailable"
        };
        let body = json!({
            "status": if draining { "draining" } else { "ok" },
            "version": env!("CARGO_PKG_VERSION"),
            "database": database,
            "embedding_backlog": self.metrics.embedding_backlog.get(),
        });
        (!draining, body)
    }
}

/// Runs the orchestrator until `shutdown` is cancelled, then shuts it down gracefully.
///
/// # Errors
/// Start-up failed (no database URL, migrations failed, a port is taken) or the socket
/// thread failed.
pub async fn run_orchestrator(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let settings = config.orchestrator.clone();
    let url = config.database.resolve_url().map_err(|e| anyhow!(e))?;
    let vectors = VectorIndex::new(&config.embedding.model, config.embedding.dimension);
    let store = Store::connect_lazy(url.expose(), &config.database, vectors)?;
    if settings.migrate_on_start {
        store
            .migrate()
            .await
            .with_context(|| format!("applying migrations to {url}"))?;
    }
    let queued = store.queue_missing_embeddings().await?;
    if queued > 0 {
        info!(queued, model = %config.embedding.model, "entries queued for an embedding");
    }
    let embedder = Arc::new(Embedder::from_settings(&config.embedding)?);
    let metrics = Arc::new(OrchestratorMetrics::new(embedder.provider_label()));
    metrics
        .pool_max
        .set(i64::from(config.database.max_connections));
    metrics.database_up.set(1);
    let wake = Arc::new(Notify::new());
    let service = Arc::new(Service {
        store: store.clone(),
        embedder: embedder.clone(),
        embedding_wake: wake.clone(),
        settings: settings.clone(),
        embedding: config.embedding.clone(),
        metrics: metrics.clone(),
    });

    let ctx = zmq::Context::new();
    let (requests_tx, requests_rx) = mpsc::channel(settings.max_queued);
    let (control, control_rx) = wakeup::channel::<ToSocket>().context("creating the reply pipe")?;
    let (socket, endpoint) =
        SocketThread::open(&ctx, &settings, control_rx, requests_tx, metrics.clone())
            .with_context(|| format!("binding {}", settings.listen))?;
    let socket_thread = std::thread::Builder::new()
        .name("zmq-orchestrator".to_owned())
        .spawn(move || socket.run())
        .context("spawning the socket thread")?;
    let tracker = TaskTracker::new();
    let dispatcher = tokio::spawn(dispatch::run(
        requests_rx,
        service,
        control.clone(),
        tracker.clone(),
    ));

    let background = CancellationToken::new();
    let worker = Worker {
        store: store.clone(),
        embedder,
        settings: config.embedding.clone(),
        metrics: metrics.clone(),
        wake,
    };
    let worker = tokio::spawn(worker.run(background.clone()));
    let sweeper = tokio::spawn(sweeper::run(
        store.clone(),
        settings.expiry_sweep_interval,
        metrics.clone(),
        background.clone(),
    ));

    let listener = TcpListener::bind(settings.metrics_listen)
        .await
        .with_context(|| format!("binding the metrics endpoint {}", settings.metrics_listen))?;
    let metrics_addr = listener.local_addr()?;
    let status = Arc::new(OrchestratorStatus {
        metrics: metrics.clone(),
        store: store.clone(),
        draining: AtomicBool::new(false),
    });
    let http_stop = CancellationToken::new();
    let http_task = tokio::spawn(http::serve(listener, status.clone(), http_stop.clone()));
    info!(version = env!("CARGO_PKG_VERSION"), listen = %endpoint, metrics = %metrics_addr,
        model = %config.embedding.model, database = %url, "memshift orchestrator ready");
    announce(&Ready {
        event: "ready",
        role: "orchestrator",
        version: env!("CARGO_PKG_VERSION"),
        endpoint: &endpoint,
        metrics: metrics_addr,
    })?;

    shutdown.cancelled().await;
    status.draining.store(true, Ordering::Relaxed);
    control.send(ToSocket::Drain {
        grace: settings.shutdown_grace,
    });
    dispatcher.await?;
    tracker.close();
    let _ = tokio::time::timeout(settings.shutdown_grace, tracker.wait()).await;
    let socket_result = tokio::task::spawn_blocking(move || socket_thread.join()).await?;
    background.cancel();
    worker.await?;
    sweeper.await?;
    http_stop.cancel();
    let served = http_task.await?;
    store.close().await;
    tokio::task::spawn_blocking(move || drop(ctx)).await?;
    socket_result
        .map_err(|_| anyhow!("the socket thread panicked"))?
        .context("orchestrator socket")?;
    served.context("metrics endpoint")?;
    info!("memshift orchestrator stopped");
    Ok(())
}
