//! Wiring: the `memshift proxy` process from start to exit.
//!
//! Staged start-up — load config (done by the caller), bind every forwarder, bind HTTP,
//! announce — then wait for the shutdown token, and stop in order: `/healthz` turns 503,
//! forwarders drain under the grace period and are joined, HTTP stops, and only then is the
//! ZMQ context dropped (dropping it with a socket open would block forever).

use super::announce;
use crate::config::Config;
use crate::http::{self, Health};
use crate::metrics::Metrics;
use crate::proxy::{self, Listening};
use crate::rollout::{self, Rollout, Watch};
use anyhow::Context as _;
use serde::Serialize;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// The line printed on stdout once everything is bound, for supervisors and tests that asked
/// for `*` ports.
#[derive(Serialize)]
struct Ready<'a> {
    event: &'static str,
    version: &'static str,
    agents: &'a [Listening],
    metrics: SocketAddr,
}

/// `memshift proxy`: refuses a configuration without agents or with an invalid flags file
/// (exit 64), else runs the proxy until a signal stops it.
pub fn execute(path: &std::path::Path, config: Config) -> ExitCode {
    if config.agents.is_empty() {
        eprintln!(
            "memshift: the proxy needs at least one [[agents]] table in {}",
            path.display()
        );
        return ExitCode::from(super::EXIT_USAGE);
    }
    if let Err(e) = super::check_config::flags_file(&config) {
        eprintln!("memshift: {e:#}");
        return ExitCode::from(super::EXIT_USAGE);
    }
    super::serve(config, |config, shutdown| {
        Box::pin(run_proxy(config, shutdown))
    })
}

/// Runs the proxy until `shutdown` is cancelled, then shuts it down gracefully.
///
/// # Errors
/// Start-up failed (a port is taken) or a forwarder failed.
pub async fn run_proxy(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let rollout = Arc::new(Rollout::new(
        &config.rollout,
        &config.mirror.data_dir,
        &config.agents,
        metrics.clone(),
    )?);
    let admin_token = read_admin_token(&config)?;
    let watch =
        Watch::install(rollout.clone()).context("installing the rollout's signal handlers")?;
    let ctx = zmq::Context::new();
    let running = proxy::start(&ctx, &config, &metrics, &rollout)?;
    let listener = match TcpListener::bind(config.metrics.listen).await {
        Ok(l) => l,
        Err(e) => {
            let grace = config.proxy.shutdown_grace;
            tokio::task::spawn_blocking(move || running.shutdown(grace)).await??;
            return Err(e).with_context(|| {
                format!("binding the metrics endpoint {}", config.metrics.listen)
            });
        }
    };
    let metrics_addr = listener.local_addr()?;
    let names = config.agents.iter().map(|a| a.name.clone()).collect();
    let health = Arc::new(Health::new(metrics.clone(), names));
    let http_stop = CancellationToken::new();
    let routes = rollout::router(rollout.clone(), admin_token);
    let http_task = tokio::spawn(http::serve(
        listener,
        health.clone(),
        routes,
        http_stop.clone(),
    ));
    let watch_task = tokio::spawn(watch.run(http_stop.clone()));

    let listening = running.listening();
    for l in &listening {
        info!(agent = %l.agent, listen = %l.endpoint, "listening");
    }
    info!(version = env!("CARGO_PKG_VERSION"), metrics = %metrics_addr, "memshift proxy ready");
    announce(&Ready {
        event: "ready",
        version: env!("CARGO_PKG_VERSION"),
        agents: &listening,
        metrics: metrics_addr,
    })?;

    shutdown.cancelled().await;
    health.set_draining();
    let grace = config.proxy.shutdown_grace;
    let forwarders = tokio::task::spawn_blocking(move || running.shutdown(grace)).await?;
    http_stop.cancel();
    let served = http_task.await?;
    watch_task.await?;
    tokio::task::spawn_blocking(move || drop(ctx)).await?;
    forwarders?;
    served.context("metrics endpoint")?;
    info!("memshift proxy stopped");
    Ok(())
}

/// The admin endpoint's bearer token, from `[rollout] admin_token_file` (surrounding
/// whitespace trimmed); `None` disables the endpoint.
fn read_admin_token(config: &Config) -> anyhow::Result<Option<String>> {
    let Some(path) = &config.rollout.admin_token_file else {
        return Ok(None);
    };
    let token = std::fs::read_to_string(path)
        .with_context(|| format!("reading the admin token file {}", path.display()))?;
    let token = token.trim();
    if token.len() < 16 {
        anyhow::bail!(
            "the admin token in {} is shorter than 16 characters",
            path.display()
        );
    }
    Ok(Some(token.to_owned()))
}
