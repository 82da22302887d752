//! The mirror: accepted legacy writes, through the outbox, to the orchestrator.
//!
//! Three parties per agent, each on its own thread, so that nothing here can touch the
//! primary path:
//! 1. The **forwarder**, once it has sent a write's legacy reply to the client, offers the
//!    request and reply bytes to a bounded queue ([`MirrorSender::offer`]); a full queue
//!    drops the write and counts it, the forwarder never waits.
//! 2. The **writer** ([`writer`]) takes them in batches, asks the profile what each means
//!    ([`crate::translate`]), keeps the keys inside `mirror_percent`, and appends the
//!    operations to the outbox in one transaction per batch; then it wakes the deliverer.
//! 3. The **deliverer** ([`deliver`]) sends each key's oldest pending operation to the
//!    orchestrator over a DEALER, one per key and up to `max_in_flight` keys at once, and
//!    settles each answer: delivered (deleted), retried with backoff, or dead-lettered.
//!
//! Ordering per key holds end to end: one forwarder thread sees a legacy agent's replies in
//! the order the agent applied them, the queue and the writer keep that order, and the
//! deliverer never has two operations of a key out at once.

mod activity;
mod deliver;
mod link;
mod shadow;
mod writer;

pub use activity::KeyActivity;
pub use deliver::{Deliverer, DeliveryReport};
pub use shadow::{Fallback, Served};

use crate::config::{AgentConfig, Durability, MirrorSettings, ShadowSettings};
use crate::flags::Percent;
use crate::metrics::{DropReason, MirrorMetrics, SkipReason, WriteOutcome};
use crate::outbox::{DeliveryLock, Outbox};
use crate::translate::MirrorOp;
use crate::profile::Class;
use crate::wakeup::{self, WakeSender};
use anyhow::{Context as _, anyhow};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{self, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

/// One request and the legacy reply to it, handed from the forwarder to the writer: a
/// write to mirror, or a read to compare.
pub struct Exchange {
    pub class: Class,
    /// The legacy action (from the profile's table).
    pub action: &'static str,
    pub request: Vec<u8>,
    pub reply: Vec<u8>,
    /// When the forwarder saw the reply.
    pub at: DateTime<Utc>,
    /// `mirror_percent` (a write) or `shadow_percent` (a read) when the request arrived.
    pub percent: Percent,
    /// A write whose key was announced to the key activity ([`MirrorSender::announce`]).
    pub announced: bool,
}

/// The forwarder's end of the mirror: the hand-off queue, and reads served by the
/// orchestrator.
#[derive(Clone)]
pub struct MirrorSender {
    tx: mpsc::SyncSender<Exchange>,
    metrics: Arc<MirrorMetrics>,
    profile: crate::profile::Profile,
    activity: Arc<KeyActivity>,
    reader: shadow::ShadowSender,
    live_budget: Duration,
}

impl MirrorSender {
    /// Hands an exchange over without waiting; a full queue (or a writer that is gone)
    /// drops it, counted.
    pub fn offer(&self, exchange: Exchange) {
        let (exchange, reason) = match self.tx.try_send(exchange) {
            Ok(()) => return,
            Err(TrySendError::Full(e)) => (e, DropReason::QueueFull),
            Err(TrySendError::Disconnected(e)) => (e, DropReason::OutboxError),
        };
        if exchange.announced
            && let Some(key) = crate::translate::key(self.profile, &exchange.request)
        {
            self.activity.absorbed(&key);
        }
        match exchange.class {
            Class::Write => {
                self.metrics.write(exchange.action, WriteOutcome::Dropped);
                self.metrics.dropped(reason);
            }
            _ => self.metrics.skipped(exchange.action, SkipReason::QueueFull),
        }
    }

    /// Announces a write's key (stage `live`): until it is applied, the key's reads go to
    /// legacy. Parses the request, so only the serving stage does it. `true` when there
    /// was a key to announce.
    pub fn announce(&self, request: &[u8]) -> bool {
        match crate::translate::key(self.profile, request) {
            Some(key) => {
                self.activity.announced(&key);
                true
            }
            None => false,
        }
    }

    /// Asks the orchestrator to answer a read (stage `live`); `reply` gets the answer's
    /// bytes or the reason there are none. `Err` when it is not even asked (the key has
    /// writes in flight, the reader's queue is full): the read goes to legacy at once.
    pub fn serve(
        &self,
        action: &'static str,
        key: String,
        request: serde_json::Value,
        queries: Vec<crate::answer::Query>,
        reply: Box<dyn FnOnce(Served) + Send>,
    ) -> Result<(), Fallback> {
        if self.activity.busy(&key) {
            return Err(Fallback::PendingWrites);
        }
        let sample = shadow::Sample {
            action,
            key,
            request,
            queries,
            purpose: shadow::Purpose::Serve {
                budget: self.live_budget,
                reply,
            },
        };
        self.reader.offer(sample).map_err(|_| Fallback::QueueFull)
    }

    pub fn metrics(&self) -> &MirrorMetrics {
        &self.metrics
    }

    /// `live.timeout`.
    pub fn live_budget(&self) -> Duration {
        self.live_budget
    }

    /// Counts an exchange that cannot be mirrored or compared because it is not one frame
    /// each way.
    pub fn multipart(&self, action: &'static str, class: Class) {
        if class == Class::Write {
            self.metrics.write(action, WriteOutcome::Dropped);
            self.metrics.dropped(DropReason::Multipart);
        } else {
            self.metrics.skipped(action, SkipReason::Multipart);
        }
    }
}

/// What the deliverer thread is told.
#[derive(Debug)]
pub enum Signal {
    /// New entries are in the outbox.
    Appended,
    /// Send nothing more; wait at most `grace` for the answers of what is out, then exit.
    Stop { grace: Duration },
}

/// The writer, deliverer and shadow reader of one agent.
pub struct RunningMirror {
    agent: String,
    writer: JoinHandle<()>,
    deliverer: JoinHandle<()>,
    shadow: JoinHandle<()>,
    signal: WakeSender<Signal>,
    shadow_signal: WakeSender<shadow::ShadowMessage>,
}

/// Opens `agent`'s outbox and starts its writer, deliverer and shadow reader.
///
/// # Errors
/// The outbox cannot be opened or created, another process is delivering it, or a thread
/// or socket cannot be created.
pub fn start(
    ctx: &zmq::Context,
    agent: &AgentConfig,
    settings: &MirrorSettings,
    shadow_settings: &ShadowSettings,
    live_budget: Duration,
    metrics: Arc<MirrorMetrics>,
) -> anyhow::Result<(MirrorSender, RunningMirror)> {
    let path = Outbox::path(&settings.data_dir, &agent.name);
    let lock = DeliveryLock::acquire(&path).map_err(|e| anyhow!(e))?;
    let writer_outbox = Outbox::<MirrorOp>::open(&path, settings.durability)?;
    // Settling needs no fsync: a settlement lost in a crash means one more (idempotent)
    // delivery.
    let deliverer_outbox = Outbox::<MirrorOp>::open(&path, Durability::Normal)?;
    let stats = deliverer_outbox.stats(Utc::now())?;
    let pending = Arc::new(AtomicU64::new(stats.pending));
    let activity = Arc::new(KeyActivity::new());
    for (key, n) in deliverer_outbox.pending_keys()? {
        activity.restored(&key, n);
    }
    let (shadow_signal, shadow_rx) =
        wakeup::channel().context("creating the shadow reader's wake pipe")?;
    let (reader, shadow_tx) = shadow::ShadowReader::new(
        ctx,
        &agent.name,
        agent.profile,
        settings.orchestrator.as_str(),
        shadow_settings.clone(),
        activity.clone(),
        metrics.clone(),
        shadow_signal.clone(),
    )?;
    let shadow = std::thread::Builder::new()
        .name(format!("shadow-{}", agent.name))
        .spawn(move || reader.run(shadow_rx))
        .context("spawning the shadow reader")?;
    let (signal, signal_rx) = wakeup::channel().context("creating the mirror's wake pipe")?;
    let (tx, rx) = mpsc::sync_channel(settings.queue);

    let deliverer = Deliverer::new(
        ctx,
        &agent.name,
        deliverer_outbox,
        settings.clone(),
        pending.clone(),
        metrics.clone(),
    )?
    .with_activity(activity.clone());
    let nice = settings.nice;
    let deliverer = std::thread::Builder::new()
        .name(format!("mirror-{}", agent.name))
        .spawn(move || {
            let _lock = lock;
            lower_priority(nice);
            deliverer.run(signal_rx);
        })
        .context("spawning the mirror's deliverer")?;
    let writer = writer::Writer {
        agent: agent.name.clone(),
        profile: agent.profile,
        outbox: writer_outbox,
        max_pending: settings.max_pending,
        pending,
        metrics: metrics.clone(),
        wake: signal.clone(),
        activity: activity.clone(),
        shadow: shadow_tx.clone(),
    };
    let writer = std::thread::Builder::new()
        .name(format!("outbox-{}", agent.name))
        .spawn(move || {
            lower_priority(nice);
            writer.run(rx);
        })
        .context("spawning the outbox writer")?;
    tracing::info!(agent = %agent.name, outbox = %path.display(), pending = stats.pending,
        dead = stats.dead, orchestrator = %settings.orchestrator, "mirroring writes");
    Ok((
        MirrorSender {
            tx,
            metrics,
            profile: agent.profile,
            activity,
            reader: shadow_tx,
            live_budget,
        },
        RunningMirror {
            agent: agent.name.clone(),
            writer,
            deliverer,
            shadow,
            signal,
            shadow_signal,
        },
    ))
}

/// Gives the calling thread (only it: on Linux a thread has its own nice value) the nice
/// value `nice`. A failure is logged, not fatal: the mirror works at any priority.
fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    // SAFETY: setpriority only reads its integer arguments; gettid cannot fail.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
    if rc != 0 {
        tracing::warn!(
            nice,
            "could not lower the mirror thread's priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

impl RunningMirror {
    /// Stops after every [`MirrorSender`] is gone (the forwarder has exited): the writer
    /// appends what was queued and exits, then the deliverer waits at most `grace` for the
    /// answers of what is out. What is still pending stays in the outbox for next time.
    ///
    /// # Errors
    /// A thread panicked.
    pub fn shutdown(self, grace: Duration) -> anyhow::Result<()> {
        let writer = self.writer.join();
        self.shadow_signal.send(shadow::ShadowMessage::Stop);
        self.signal.send(Signal::Stop { grace });
        let shadow = self.shadow.join();
        let deliverer = self.deliverer.join();
        match (writer, deliverer, shadow) {
            (Ok(()), Ok(()), Ok(())) => Ok(()),
            _ => Err(anyhow!("the mirror of {} panicked", self.agent)),
        }
    }
}
