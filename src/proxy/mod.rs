//! The transparent proxy: one forwarding thread per configured legacy agent.
//!
//! [`start`] opens every forwarder on its own named thread and returns once all are bound
//! (or the first bind error), so the caller can announce readiness or fail fast.
//! [`RunningProxy::shutdown`] drains them under a grace period and joins the threads; only
//! after that may the ZMQ context be dropped.

mod forwarder;
mod frames;
mod inflight;
mod live;
pub mod route;
mod watch;

use crate::config::{AgentConfig, Config};
use crate::metrics::Metrics;
use crate::mirror::{self, RunningMirror};
use crate::rollout::Rollout;
use crate::wakeup::{self, WakeSender};
use anyhow::{Context as _, anyhow};
use forwarder::Command;
use forwarder::{Forwarder, Links};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;
use watch::Watcher;

/// Forwarders that are running.
pub struct RunningProxy {
    agents: Vec<RunningAgent>,
}

struct RunningAgent {
    name: String,
    endpoint: String,
    control: WakeSender<Command>,
    thread: JoinHandle<zmq::Result<()>>,
    watcher: Watcher,
    /// The agent's outbox writer, deliverer and shadow reader, when a flags file is
    /// configured (a reload may move the agent into any stage at any time).
    mirror: Option<RunningMirror>,
}

/// One agent's bound listen endpoint, as announced at start-up.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Listening {
    pub agent: String,
    pub endpoint: String,
}

/// Starts a forwarder for every agent of `config`, each reading its flags from `rollout`.
///
/// # Errors
/// A socket could not be created or bound; forwarders already started are stopped.
pub fn start(
    ctx: &zmq::Context,
    config: &Config,
    metrics: &Metrics,
    rollout: &Rollout,
) -> anyhow::Result<RunningProxy> {
    let mut proxy = RunningProxy { agents: Vec::new() };
    for agent in &config.agents {
        match start_agent(ctx, config, agent, metrics, rollout) {
            Ok(running) => proxy.agents.push(running),
            Err(e) => {
                proxy.stop_now();
                return Err(e);
            }
        }
    }
    Ok(proxy)
}

fn start_agent(
    ctx: &zmq::Context,
    config: &Config,
    agent: &AgentConfig,
    metrics: &Metrics,
    rollout: &Rollout,
) -> anyhow::Result<RunningAgent> {
    let (control, control_rx) = wakeup::channel().context("creating the control pipe")?;
    let control_tx = control.clone();
    let (bound_tx, bound_rx) = mpsc::sync_channel(1);
    let ctx = ctx.clone();
    let settings = config.proxy.clone();
    let agent_metrics = Arc::new(metrics.agent(agent));
    let (watcher, monitors) = Watcher::start(&ctx, &agent.name, agent_metrics.clone())?;
    let flags = rollout.flags_of(&agent.name);
    let (mirror_tx, mirror) = if config.rollout.flags.is_some() {
        let mirror_metrics = Arc::new(metrics.mirror(agent));
        let (tx, running) = mirror::start(
            &ctx,
            agent,
            &config.mirror,
            &config.shadow,
            &config.live,
            flags.clone(),
            mirror_metrics,
        )
        .with_context(|| format!("agent {}: starting the mirror", agent.name))?;
        (Some(tx), Some(running))
    } else {
        metrics.mirror(agent);
        (None, None)
    };
    let spec = agent.clone();
    let thread = std::thread::Builder::new()
        .name(format!("zmq-{}", agent.name))
        .spawn(move || {
            let links = Links {
                control: control_rx,
                control_tx,
                metrics: agent_metrics,
                flags,
                mirror: mirror_tx,
            };
            let opened = Forwarder::open(&ctx, &spec, &settings, &monitors, links);
            match opened {
                Ok((forwarder, bound)) => {
                    let _ = bound_tx.send(Ok(bound.endpoint));
                    forwarder.run()
                }
                Err(e) => {
                    let _ = bound_tx.send(Err(e));
                    Ok(())
                }
            }
        })
        .context("spawning a forwarding thread")?;
    let bound = bound_rx
        .recv()
        .map_err(|_| {
            anyhow!(
                "the forwarding thread of {} died while starting",
                agent.name
            )
        })
        .and_then(|r| r.with_context(|| format!("agent {}: binding {}", agent.name, agent.listen)));
    match bound {
        Ok(endpoint) => Ok(RunningAgent {
            name: agent.name.clone(),
            endpoint,
            control,
            thread,
            watcher,
            mirror,
        }),
        Err(e) => {
            let _ = thread.join();
            watcher.join();
            if let Some(m) = mirror
                && let Err(e) = m.shutdown(Duration::ZERO)
            {
                tracing::error!("{e:#}");
            }
            Err(e)
        }
    }
}

impl RunningProxy {
    /// Where each agent listens, with `*` ports resolved.
    pub fn listening(&self) -> Vec<Listening> {
        self.agents
            .iter()
            .map(|a| Listening {
                agent: a.name.clone(),
                endpoint: a.endpoint.clone(),
            })
            .collect()
    }

    /// Stops reading new requests, lets in-flight ones finish for at most `grace`, and joins
    /// every forwarding thread.
    ///
    /// # Errors
    /// A forwarder ended with a ZMQ error or panicked (all are joined regardless).
    pub fn shutdown(mut self, grace: Duration) -> anyhow::Result<()> {
        for agent in &self.agents {
            agent.control.send(Command::Drain { grace });
        }
        self.join_all(grace)
    }

    fn stop_now(&mut self) {
        for agent in &self.agents {
            agent.control.send(Command::Drain {
                grace: Duration::ZERO,
            });
        }
        if let Err(e) = self.join_all(Duration::ZERO) {
            tracing::error!("stopping forwarders: {e:#}");
        }
    }

    /// Joins every forwarder, then stops its mirror: once the forwarder is gone nothing
    /// more can be queued, so the writer appends the rest and the deliverer gets `grace`
    /// for the answers of what is out.
    fn join_all(&mut self, grace: Duration) -> anyhow::Result<()> {
        let mut failures = Vec::new();
        for agent in self.agents.drain(..) {
            match agent.thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(format!("{}: {e}", agent.name)),
                Err(_) => failures.push(format!("{}: forwarding thread panicked", agent.name)),
            }
            // After the forwarder: its sockets are closed, so the monitors have stopped.
            agent.watcher.join();
            if let Some(mirror) = agent.mirror
                && let Err(e) = mirror.shutdown(grace)
            {
                failures.push(format!("{}: {e:#}", agent.name));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(anyhow!("forwarders failed: {}", failures.join("; ")))
        }
    }
}
