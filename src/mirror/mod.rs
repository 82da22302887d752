//! The mirror: accepted legacy writes, through the outbox, to the orchestrator.
//!
//! Three parties per agent, each on its own thread, so that nothing here can touch the
//! primary path:
//! 1. The **forwarder**, once it has sent a write's legacy reply to the client, offers the
//!    request and reply bytes to a bounded queue ([`MirrorSender::offer`]); a full queue
//!    drops the write and counts it, the forwarder never waits.
//! 2. The **intake** ([`intake`]) takes them in batches, asks the profile what each means
//!    ([`crate::translate`]), keeps the keys inside `mirror_percent`, and appends the
//!    operations to the outbox in one transaction per batch; then it wakes the deliverer.
//!    Reads it hands to the **shadow reader** ([`shadow`]), which asks the orchestrator and
//!    compares (the same thread answers live reads for the forwarder).
//! 3. The **deliverer** ([`deliver`]) sends each key's oldest pending operation to the
//!    orchestrator over a DEALER, one per key and up to `max_in_flight` keys at once, and
//!    settles each answer: delivered (deleted), retried with backoff, or dead-lettered.
//!
//! Ordering per key holds end to end: one forwarder thread sees a legacy agent's replies in
//! the order the agent applied them, the queue and the intake keep that order, and the
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
//!
//! The threads hand each other only the types of [`messages`] (a leaf) and the key state of
//! [`activity`]; this module opens the outboxes, starts each thread (one spawn function
//! each) and stops them in order.

mod activity;
mod deliver;
mod intake;
mod messages;
mod primary;
mod reverse;
mod shadow;

pub use activity::KeyActivity;
pub use deliver::{Deliverer, DeliveryReport};
pub use messages::{Exchange, Fallback, Served, ToDeliverer};
pub use primary::{Write, Written};
pub use reverse::Replay;

use crate::config::{AgentConfig, Durability, LiveSettings, MirrorSettings, ShadowSettings};
use crate::metrics::{DropReason, MirrorMetrics, SkipReason, WriteOutcome};
use crate::outbox::{DeliveryLock, Outbox};
use crate::profile::Class;
use crate::translate::MirrorOp;
use crate::wakeup::{self, Job, WakeSender};
use anyhow::{Context as _, anyhow};
use chrono::Utc;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{self, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

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

/// The writer, deliverer, shadow reader, primary writer and reverse deliverer of one agent.
pub struct RunningMirror {
    agent: String,
    writer: JoinHandle<()>,
    deliverer: Thread<ToDeliverer>,
    shadow: Thread<Job<shadow::Sample>>,
    primary: Thread<Job<primary::Write>>,
    reverse: Thread<ToDeliverer>,
}

/// A thread of the mirror, and how to wake it (and tell it to stop).
struct Thread<M> {
    handle: JoinHandle<()>,
    wake: WakeSender<M>,
}

/// What the mirror's threads are started with.
struct Parts<'a> {
    ctx: &'a zmq::Context,
    agent: &'a AgentConfig,
    settings: &'a MirrorSettings,
    live: &'a LiveSettings,
    metrics: &'a Arc<MirrorMetrics>,
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
    let parts = Parts {
        ctx,
        agent,
        settings,
        live,
        metrics: &metrics,
    };
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
    let (shadow, shadow_tx) = spawn_shadow(&parts, shadow_settings, &activity)?;
    let (reverse, reverse_activity) = spawn_reverse(&parts, flags)?;
    let taking = Arc::new(KeyActivity::new());
    let (primary, primary_tx) = spawn_primary(&parts, &taking, &reverse_activity, &reverse)?;
    let deliverer = spawn_deliverer(&parts, lock, deliverer_outbox, &pending, &activity)?;
    let writer = intake::Intake {
        agent: agent.name.clone(),
        profile: agent.profile,
        outbox: writer_outbox,
        max_pending: settings.max_pending,
        pending,
        metrics: metrics.clone(),
        wake: deliverer.wake.clone(),
        activity: activity.clone(),
        shadow: shadow_tx.clone(),
        reverse: reverse_activity.clone(),
        effects: Default::default(),
    };
    let (tx, rx) = mpsc::sync_channel(settings.queue);
    let nice = settings.nice;
    let writer = spawn(
        format!("outbox-{}", agent.name),
        "the outbox writer",
        move || {
            lower_priority(nice);
            writer.run(rx);
        },
    )?;
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
            reverse: reverse_activity,
            taking,
        },
        RunningMirror {
            agent: agent.name.clone(),
            writer,
            deliverer,
            shadow,
            primary,
            reverse,
        },
    ))
}

/// Spawns a named thread.
fn spawn(
    name: String,
    what: &str,
    run: impl FnOnce() + Send + 'static,
) -> anyhow::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name)
        .spawn(run)
        .with_context(|| format!("spawning {what}"))
}

/// The shadow reader: the orchestrator's answers to reads, compared or served.
fn spawn_shadow(
    p: &Parts,
    settings: &ShadowSettings,
    activity: &Arc<KeyActivity>,
) -> anyhow::Result<(Thread<Job<shadow::Sample>>, shadow::ShadowSender)> {
    let (wake, rx) = wakeup::channel().context("creating the shadow reader's wake pipe")?;
    let (reader, tx) = shadow::ShadowReader::new(
        p.ctx,
        &p.agent.name,
        p.agent.profile,
        p.settings.orchestrator.as_str(),
        settings.clone(),
        p.live.clone(),
        activity.clone(),
        p.metrics.clone(),
        wake.clone(),
    )?;
    let name = format!("shadow-{}", p.agent.name);
    let handle = spawn(name, "the shadow reader", move || reader.run(rx))?;
    Ok((Thread { handle, wake }, tx))
}

/// The reverse deliverer: writes the orchestrator took first, replayed to legacy. Also the
/// keys with writes in its outbox.
fn spawn_reverse(
    p: &Parts,
    flags: crate::flags::SharedFlags,
) -> anyhow::Result<(Thread<ToDeliverer>, Arc<KeyActivity>)> {
    let path = Outbox::reverse_path(&p.settings.data_dir, &p.agent.name);
    let lock = DeliveryLock::acquire(&path).map_err(|e| anyhow!(e))?;
    let outbox = Outbox::<Replay>::open(&path, Durability::Normal)?;
    let activity = Arc::new(KeyActivity::new());
    for (key, n) in outbox.pending_keys()? {
        activity.restored(&key, n);
    }
    let (wake, rx) = wakeup::channel().context("creating the reverse deliverer's wake pipe")?;
    let deliverer = reverse::ReverseDeliverer {
        agent: p.agent.name.clone(),
        profile: p.agent.profile,
        ctx: p.ctx.clone(),
        legacy: p.agent.legacy.to_string(),
        outbox,
        settings: p.settings.clone(),
        flags,
        activity: activity.clone(),
        metrics: p.metrics.clone(),
    };
    let name = format!("reverse-{}", p.agent.name);
    let handle = spawn(name, "the reverse deliverer", move || {
        let _lock = lock;
        deliverer.run(rx);
    })?;
    Ok((Thread { handle, wake }, activity))
}

/// The primary writer: writes the orchestrator takes first, into the reverse outbox.
fn spawn_primary(
    p: &Parts,
    taking: &Arc<KeyActivity>,
    reverse_activity: &Arc<KeyActivity>,
    reverse: &Thread<ToDeliverer>,
) -> anyhow::Result<(Thread<Job<primary::Write>>, primary::PrimarySender)> {
    let (wake, rx) = wakeup::channel().context("creating the primary writer's wake pipe")?;
    let reverse_path = Outbox::reverse_path(&p.settings.data_dir, &p.agent.name);
    let parts = primary::PrimaryParts {
        agent: p.agent.name.clone(),
        orchestrator: p.settings.orchestrator.to_string(),
        queue: p.settings.queue,
        outbox: Outbox::<Replay>::open(&reverse_path, p.settings.durability)?,
        max_pending: p.settings.max_pending,
        taking: taking.clone(),
        reverse: reverse_activity.clone(),
        metrics: p.metrics.clone(),
        wake_reverse: reverse.wake.clone(),
        session_lifetime: p.live.session_lifetime,
    };
    let (writer, tx) = primary::PrimaryWriter::new(p.ctx, parts, wake.clone())?;
    let name = format!("primary-{}", p.agent.name);
    let handle = spawn(name, "the primary writer", move || writer.run(rx))?;
    Ok((Thread { handle, wake }, tx))
}

/// The deliverer: the outbox, in order per key, to the orchestrator.
fn spawn_deliverer(
    p: &Parts,
    lock: DeliveryLock,
    outbox: Outbox<MirrorOp>,
    pending: &Arc<AtomicU64>,
    activity: &Arc<KeyActivity>,
) -> anyhow::Result<Thread<ToDeliverer>> {
    let (wake, rx) = wakeup::channel().context("creating the mirror's wake pipe")?;
    let deliverer = Deliverer::new(
        p.ctx,
        &p.agent.name,
        outbox,
        p.settings.clone(),
        pending.clone(),
        p.metrics.clone(),
    )?
    .with_activity(activity.clone());
    let nice = p.settings.nice;
    let name = format!("mirror-{}", p.agent.name);
    let handle = spawn(name, "the mirror's deliverer", move || {
        let _lock = lock;
        lower_priority(nice);
        deliverer.run(rx);
    })?;
    Ok(Thread { handle, wake })
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
        self.shadow.wake.send(Job::Stop);
        self.primary.wake.send(Job::Stop);
        self.deliverer.wake.send(ToDeliverer::Stop { grace });
        self.reverse.wake.send(ToDeliverer::Stop { grace });
        let joined = [
            writer,
            self.shadow.handle.join(),
            self.primary.handle.join(),
            self.deliverer.handle.join(),
            self.reverse.handle.join(),
        ];
        if joined.iter().all(Result::is_ok) {
            Ok(())
        } else {
            Err(anyhow!("the mirror of {} panicked", self.agent))
        }
    }
}
