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
/// thread failed (which stops the process rather than leave it running without a socket).
pub async fn run_orchestrator(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let store = prepare_database(&config).await?;
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
        settings: config.orchestrator.clone(),
        embedding: config.embedding.clone(),
        metrics: metrics.clone(),
    });
    let ctx = zmq::Context::new();
    let api = Api::start(&ctx, service)?;
    let background = CancellationToken::new();
    let worker = Worker {
        store: store.clone(),
        embedder,
        settings: config.embedding.clone(),
        metrics: metrics.clone(),
        wake,
    };
    let tasks = [
        tokio::spawn(worker.run(background.clone())),
        tokio::spawn(sweeper::run(
            store.clone(),
            config.orchestrator.expiry_sweep_interval,
            sweeper::Retention {
                max_age: config.orchestrator.mismatch_retention,
                max_rows: config.orchestrator.mismatch_max_rows,
            },
            metrics.clone(),
            background.clone(),
        )),
    ];
    let (status, http_stop, http_task) = match serve_http(&config, &metrics, &store).await {
        Ok(http) => http,
        Err(e) => {
            background.cancel();
            api.stop(None, config.orchestrator.shutdown_grace)
                .await
                .ok();
            return Err(e);
        }
    };
    info!(version = env!("CARGO_PKG_VERSION"), listen = %api.endpoint, metrics = %status.addr,
        model = %config.embedding.model, "memshift orchestrator ready");
    announce(&Ready {
        event: "ready",
        role: "orchestrator",
        version: env!("CARGO_PKG_VERSION"),
        endpoint: &api.endpoint,
        metrics: status.addr,
    })?;

    let mut api = api;
    let early = tokio::select! {
        () = shutdown.cancelled() => None,
        joined = &mut api.socket => Some(joined),
    };
    status.draining.store(true, Ordering::Relaxed);
    let stopped = api.stop(early, config.orchestrator.shutdown_grace).await;
    background.cancel();
    for task in tasks {
        task.await?;
    }
    http_stop.cancel();
    let served = http_task.await?;
    store.close().await;
    tokio::task::spawn_blocking(move || drop(ctx)).await?;
    stopped?;
    served.context("metrics endpoint")?;
    info!("memshift orchestrator stopped");
    Ok(())
}

/// Connects the pool, applies migrations unless told not to, and queues entries that have
/// no vector under the configured model.
async fn prepare_database(config: &Config) -> anyhow::Result<Store> {
    let url = config.database.resolve_url().map_err(|e| anyhow!(e))?;
    let vectors = VectorIndex::new(&config.embedding.model, config.embedding.dimension);
    let store = Store::connect_lazy(url.expose(), &config.database, vectors)?;
    if config.orchestrator.migrate_on_start {
        store
            .migrate()
            .await
            .with_context(|| format!("applying migrations to {url}"))?;
    }
    let queued = store.queue_missing_embeddings().await?;
    if queued > 0 {
        info!(queued, model = %config.embedding.model, "entries queued for an embedding");
    }
    info!(database = %url, "database ready");
    Ok(store)
}

type SocketJoin = tokio::task::JoinHandle<std::thread::Result<zmq::Result<()>>>;

/// The API side: the socket thread and the dispatcher with its request tasks.
struct Api {
    endpoint: String,
    control: wakeup::WakeSender<ToSocket>,
    /// Joins the socket thread; finishes early only if the thread fails.
    socket: SocketJoin,
    dispatcher: tokio::task::JoinHandle<()>,
    tracker: TaskTracker,
}

impl Api {
    fn start(ctx: &zmq::Context, service: Arc<Service>) -> anyhow::Result<Api> {
        let settings = &service.settings;
        let (requests_tx, requests_rx) = mpsc::channel(settings.max_queued);
        let (control, control_rx) =
            wakeup::channel::<ToSocket>().context("creating the reply pipe")?;
        let (socket, endpoint) = SocketThread::open(
            ctx,
            settings,
            control_rx,
            requests_tx,
            service.metrics.clone(),
        )
        .with_context(|| format!("binding {}", settings.listen))?;
        let thread = std::thread::Builder::new()
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
        Ok(Api {
            endpoint,
            control,
            socket: tokio::task::spawn_blocking(move || thread.join()),
            dispatcher,
            tracker,
        })
    }

    /// Stops reading requests, lets queued and running ones finish within `grace`, and
    /// joins the socket thread (`early` if it has already ended).
    async fn stop(
        self,
        early: Option<Result<std::thread::Result<zmq::Result<()>>, tokio::task::JoinError>>,
        grace: std::time::Duration,
    ) -> anyhow::Result<()> {
        let unexpected = early.is_some();
        if unexpected {
            tracing::error!("the orchestrator's socket thread stopped; shutting down");
        }
        self.control.send(ToSocket::Drain { grace });
        self.dispatcher.await?;
        self.tracker.close();
        let _ = tokio::time::timeout(grace, self.tracker.wait()).await;
        let joined = match early {
            Some(joined) => joined,
            None => self.socket.await,
        };
        joined?
            .map_err(|_| anyhow!("the socket thread panicked"))?
            .context("orchestrator socket")?;
        if unexpected {
            return Err(anyhow!(
                "the orchestrator's socket thread stopped unexpectedly"
            ));
        }
        Ok(())
    }
}

struct HttpStatus {
    status: Arc<OrchestratorStatus>,
    addr: SocketAddr,
}

impl std::ops::Deref for HttpStatus {
    type Target = OrchestratorStatus;
    fn deref(&self) -> &OrchestratorStatus {
        &self.status
    }
}

type HttpTask = tokio::task::JoinHandle<std::io::Result<()>>;

/// Binds `/metrics` and `/healthz` and serves them until the returned token is cancelled.
async fn serve_http(
    config: &Config,
    metrics: &Arc<OrchestratorMetrics>,
    store: &Store,
) -> anyhow::Result<(HttpStatus, CancellationToken, HttpTask)> {
    let listen = config.orchestrator.metrics_listen;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the metrics endpoint {listen}"))?;
    let addr = listener.local_addr()?;
    let status = Arc::new(OrchestratorStatus {
        metrics: metrics.clone(),
        store: store.clone(),
        draining: AtomicBool::new(false),
    });
    let stop = CancellationToken::new();
    let task = tokio::spawn(http::serve(
        listener,
        status.clone(),
        axum::Router::new(),
        stop.clone(),
    ));
    Ok((HttpStatus { status, addr }, stop, task))
}
