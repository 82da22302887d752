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
//!
//! From `rampdown` on, the direction turns: the **primary writer** ([`primary`]) has the
//! orchestrator take a write first and puts it in the *reverse* outbox, and the **reverse
//! deliverer** ([`reverse`]) replays it to legacy. Whichever the stage, a key's requests
//! follow the side that has all of its writes: while legacy is behind on a key (its writes
//! are in the reverse outbox or being taken), the key's writes go to the orchestrator first
//! and its reads are answered by the orchestrator, even under a rollback; while the
//! orchestrator is behind (the forward outbox), legacy goes first. So neither side ever
//! gets a key's writes out of order, and no read is answered by a side missing a write the
//! client saw accepted.

mod activity;
mod deliver;
pub mod link;
mod primary;
mod reverse;
mod shadow;
mod writer;

pub use activity::KeyActivity;
pub use deliver::{Deliverer, DeliveryReport};
pub use primary::{Write, Written};
pub use reverse::Replay;
pub use shadow::{Fallback, Served};

use crate::config::{AgentConfig, Durability, LiveSettings, MirrorSettings, ShadowSettings};
use crate::flags::Shares;
use crate::metrics::{DropReason, MirrorMetrics, SkipReason, WriteOutcome};
use crate::outbox::{DeliveryLock, Outbox};
use crate::profile::Class;
use crate::translate::MirrorOp;
use crate::wakeup::{self, WakeSender};
use anyhow::{Context as _, anyhow};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{self, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

/// One request and the legacy reply to it, handed from the forwarder to the writer: a
/// write to mirror, or a read to compare (and, for a profile whose reads change its state,
/// to mirror for that change).
pub struct Exchange {
    pub class: Class,
    /// The legacy action (from the profile's table).
    pub action: &'static str,
    pub request: Vec<u8>,
    pub reply: Vec<u8>,
    /// When the forwarder saw the reply (or, for a write the orchestrator was asked to
    /// take first, when it was asked: the time it was given then).
    pub at: DateTime<Utc>,
    /// `mirror_percent` and `shadow_percent` as they apply to it when the request arrived.
    pub shares: Shares,
    /// A write whose key was announced to the key activity ([`MirrorSender::announce`]).
    pub announced: bool,
    /// Ids for the memories the write creates, chosen when the orchestrator was asked to
    /// take it first (it may have, before it went silent): empty otherwise.
    pub pinned: Vec<String>,
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
    primary: primary::PrimarySender,
    /// Keys with writes in the reverse outbox.
    reverse: Arc<KeyActivity>,
    /// Keys with writes at the primary writer.
    taking: Arc<KeyActivity>,
}

impl crate::proxy::route::KeyState for MirrorSender {
    fn legacy_behind_anywhere(&self) -> bool {
        MirrorSender::legacy_behind_anywhere(self)
    }

    fn legacy_behind(&self, key: &str) -> bool {
        MirrorSender::legacy_behind(self, key)
    }

    fn orchestrator_behind(&self, key: &str) -> bool {
        MirrorSender::orchestrator_behind(self, key)
    }
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

    /// Announces the key of a write that goes to legacy first while writes may go to the
    /// orchestrator first: until its operations are delivered, the key's writes go to
    /// legacy first too.
    pub fn announce_key(&self, key: &str) {
        self.activity.announced(key);
    }

    /// Withdraws [`MirrorSender::announce_key`] for a write that never reached the mirror
    /// (legacy did not answer).
    pub fn withdraw_key(&self, key: &str) {
        self.activity.absorbed(key);
    }

    /// Whether the orchestrator may lack some of `key`'s writes.
    pub fn orchestrator_behind(&self, key: &str) -> bool {
        self.activity.busy(key)
    }

    /// Whether legacy may lack some of `key`'s writes (in the reverse outbox, or being
    /// taken by the orchestrator now).
    pub fn legacy_behind(&self, key: &str) -> bool {
        self.reverse.busy(key) || self.taking.busy(key)
    }

    /// Whether legacy may lack a write of any key (one atomic load each: no parsing).
    pub fn legacy_behind_anywhere(&self) -> bool {
        !(self.reverse.idle() && self.taking.idle())
    }

    /// Has the orchestrator take a write first. `Err` gives it back when the primary
    /// writer's queue is full: legacy takes it.
    pub fn take_first(&self, write: Write) -> Result<(), Box<Write>> {
        let key = write.plan.key.clone();
        self.taking.announced(&key);
        self.primary.offer(write).inspect_err(|_| {
            self.taking.absorbed(&key);
        })
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

/// The writer, deliverer, shadow reader, primary writer and reverse deliverer of one agent.
pub struct RunningMirror {
    agent: String,
    writer: JoinHandle<()>,
    deliverer: JoinHandle<()>,
    shadow: JoinHandle<()>,
    primary: JoinHandle<()>,
    reverse: JoinHandle<()>,
    signal: WakeSender<Signal>,
    shadow_signal: WakeSender<shadow::ShadowMessage>,
    primary_signal: WakeSender<primary::PrimaryMessage>,
    reverse_signal: WakeSender<Signal>,
}

/// Opens `agent`'s outboxes and starts its mirror's threads.
///
/// # Errors
/// An outbox cannot be opened or created, another process is delivering it, or a thread
/// or socket cannot be created.
pub fn start(
    ctx: &zmq::Context,
    agent: &AgentConfig,
    settings: &MirrorSettings,
    shadow_settings: &ShadowSettings,
    live: &LiveSettings,
    flags: crate::flags::SharedFlags,
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
        live.clone(),
        activity.clone(),
        metrics.clone(),
        shadow_signal.clone(),
    )?;
    let shadow = std::thread::Builder::new()
        .name(format!("shadow-{}", agent.name))
        .spawn(move || reader.run(shadow_rx))
        .context("spawning the shadow reader")?;
    let reverse_path = Outbox::reverse_path(&settings.data_dir, &agent.name);
    let reverse_lock = DeliveryLock::acquire(&reverse_path).map_err(|e| anyhow!(e))?;
    let reverse_outbox = Outbox::<Replay>::open(&reverse_path, Durability::Normal)?;
    let reverse = Arc::new(KeyActivity::new());
    for (key, n) in reverse_outbox.pending_keys()? {
        reverse.restored(&key, n);
    }
    let taking = Arc::new(KeyActivity::new());
    let (reverse_signal, reverse_rx) =
        wakeup::channel().context("creating the reverse deliverer's wake pipe")?;
    let reverse_deliverer = reverse::ReverseDeliverer {
        agent: agent.name.clone(),
        profile: agent.profile,
        ctx: ctx.clone(),
        legacy: agent.legacy.to_string(),
        outbox: reverse_outbox,
        settings: settings.clone(),
        flags,
        activity: reverse.clone(),
        metrics: metrics.clone(),
    };
    let reverse_thread = std::thread::Builder::new()
        .name(format!("reverse-{}", agent.name))
        .spawn(move || {
            let _lock = reverse_lock;
            reverse_deliverer.run(reverse_rx);
        })
        .context("spawning the reverse deliverer")?;
    let (primary_signal, primary_rx) =
        wakeup::channel().context("creating the primary writer's wake pipe")?;
    let parts = primary::PrimaryParts {
        agent: agent.name.clone(),
        orchestrator: settings.orchestrator.to_string(),
        queue: settings.queue,
        outbox: Outbox::<Replay>::open(&reverse_path, settings.durability)?,
        max_pending: settings.max_pending,
        taking: taking.clone(),
        reverse: reverse.clone(),
        metrics: metrics.clone(),
        wake_reverse: reverse_signal.clone(),
        session_lifetime: live.session_lifetime,
    };
    let (primary_writer, primary_tx) =
        primary::PrimaryWriter::new(ctx, parts, primary_signal.clone())?;
    let primary_thread = std::thread::Builder::new()
        .name(format!("primary-{}", agent.name))
        .spawn(move || primary_writer.run(primary_rx))
        .context("spawning the primary writer")?;
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
        reverse: reverse.clone(),
        effects: Default::default(),
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
            live_budget: live.timeout,
            primary: primary_tx,
            reverse,
            taking,
        },
        RunningMirror {
            agent: agent.name.clone(),
            writer,
            deliverer,
            shadow,
            primary: primary_thread,
            reverse: reverse_thread,
            signal,
            shadow_signal,
            primary_signal,
            reverse_signal,
        },
    ))
}

/// `base · 2^(n-1)`, capped at `max`, less up to half of it at random (so that many
/// proxies recovering together do not retry in step).
fn backoff(settings: &MirrorSettings, n: u32) -> Duration {
    let base = settings.backoff_base.as_secs_f64();
    let full = (base * 2f64.powi(n.saturating_sub(1).min(30) as i32))
        .min(settings.backoff_max.as_secs_f64());
    Duration::from_secs_f64(full * (1.0 - fastrand::f64() / 2.0))
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
        self.primary_signal.send(primary::PrimaryMessage::Stop);
        self.signal.send(Signal::Stop { grace });
        self.reverse_signal.send(Signal::Stop { grace });
        let joined = [
            writer,
            self.shadow.join(),
            self.primary.join(),
            self.deliverer.join(),
            self.reverse.join(),
        ];
        if joined.iter().all(Result::is_ok) {
            Ok(())
        } else {
            Err(anyhow!("the mirror of {} panicked", self.agent))
        }
    }
}
