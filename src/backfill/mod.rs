//! `memshift backfill`: imports a legacy agent's own store into the orchestrator.
//!
//! A reader thread reads the store one group (a key's records in one section) at a time
//! ([`crate::legacy`]) and turns each into the mirror's operations ([`prepare`]) with the
//! legacy times and ids derived from the records; a bounded channel hands the groups to the
//! [`sender`], which pipelines them to the orchestrator as writes of origin `backfill`. So:
//! - running it twice creates nothing new (same ids: the orchestrator sees repeats);
//! - running it alongside the proxy's dual-write creates no duplicates either: the
//!   orchestrator pairs the mirror's and the backfill's copies of one record (see the
//!   migration `backfill`);
//! - memory is bounded by the channel and the sender's window, not by the store's size;
//! - a [`checkpoint`] records each group once it is imported, so an interrupted run
//!   resumes, and a later one sends only the groups that changed.

mod checkpoint;
mod prepare;
mod sender;

pub use checkpoint::Checkpoint;
pub use prepare::{Batch, Prepared, prepare};
pub use sender::{Finished, Outcome, Sender, Settings, Unreachable};

use crate::legacy::{self, Kind, LegacyError, Position};
use crate::profile::Profile;
use crate::translate::MirrorOp;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

/// What to backfill, and how.
#[derive(Clone, Debug)]
pub struct Options {
    pub agent: String,
    pub profile: Profile,
    /// The store: its file, or the agent's working directory.
    pub from: PathBuf,
    /// Where the checkpoint lives (`[mirror] data_dir`).
    pub data_dir: PathBuf,
    /// Forget what earlier runs finished and send everything again.
    pub restart: bool,
    /// `None` for a dry run: read, translate and count, send nothing.
    pub sender: Option<Settings>,
}

/// What a run did, by entity (`session`, `interaction`, `decision`, `summary`, `memory`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub agent: String,
    pub store: PathBuf,
    pub dry_run: bool,
    pub seconds: f64,
    /// Groups (a key's records in one section) read, and those skipped because an earlier
    /// run imported them as they are.
    pub groups: u64,
    pub groups_unchanged: u64,
    pub read: BTreeMap<&'static str, u64>,
    /// Operations a dry run would send.
    pub would_send: BTreeMap<&'static str, u64>,
    pub imported: BTreeMap<&'static str, u64>,
    pub already_mirrored: BTreeMap<&'static str, u64>,
    pub already_imported: BTreeMap<&'static str, u64>,
    /// Records not imported, by `entity: reason`.
    pub skipped: BTreeMap<String, u64>,
    pub rejected: BTreeMap<String, u64>,
    pub failed: BTreeMap<String, u64>,
    /// Why the run stopped before the end of the store.
    pub stopped: Option<String>,
}

impl Summary {
    /// Whether every record read was imported (or was there already).
    pub fn is_complete(&self) -> bool {
        self.stopped.is_none()
            && self.skipped.is_empty()
            && self.rejected.is_empty()
            && self.failed.is_empty()
    }

    /// Whether the run ended early or left operations failing (worth running again).
    pub fn is_interrupted(&self) -> bool {
        self.stopped.is_some() || !self.failed.is_empty()
    }

    /// The summary for people.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let list = |m: &BTreeMap<&'static str, u64>| {
            if m.is_empty() {
                return "none".to_owned();
            }
            m.iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out = String::new();
        let what = if self.dry_run { "dry run" } else { "backfill" };
        let _ = writeln!(
            out,
            "{what} of {} from {}: {} in {:.1} s",
            self.agent,
            self.store.display(),
            match &self.stopped {
                Some(why) => format!("STOPPED ({why})"),
                None => "finished".to_owned(),
            },
            self.seconds
        );
        let _ = writeln!(
            out,
            "  groups:            {} read, {} unchanged since an earlier run",
            self.groups, self.groups_unchanged
        );
        let _ = writeln!(out, "  records read:      {}", list(&self.read));
        if self.dry_run {
            let _ = writeln!(out, "  would send:        {}", list(&self.would_send));
        } else {
            let _ = writeln!(out, "  imported:          {}", list(&self.imported));
            let _ = writeln!(out, "  already mirrored:  {}", list(&self.already_mirrored));
            let _ = writeln!(out, "  already imported:  {}", list(&self.already_imported));
        }
        for (title, m) in [
            ("not imported (unreadable or untranslatable)", &self.skipped),
            ("refused by the orchestrator", &self.rejected),
            ("failed after every try (run again to retry)", &self.failed),
        ] {
            if !m.is_empty() {
                let _ = writeln!(out, "  {title}:");
                for (why, n) in m {
                    let _ = writeln!(out, "    {n:>8}  {why}");
                }
            }
        }
        out
    }

    fn count(&mut self, batch: &Batch, outcomes: &[Outcome]) {
        for (prepared, outcome) in batch.ops().zip(outcomes) {
            let entity = entity(prepared);
            // Sessions made sure of for the memories in them are not records of their own.
            let incidental = matches!(prepared.op, MirrorOp::EnsureSession { .. })
                && prepared.kind != Kind::Session;
            if incidental && matches!(outcome, Outcome::Imported) {
                continue;
            }
            let bump = |m: &mut BTreeMap<&'static str, u64>| *m.entry(entity).or_default() += 1;
            match outcome {
                Outcome::Imported => bump(&mut self.imported),
                Outcome::AlreadyMirrored => bump(&mut self.already_mirrored),
                Outcome::AlreadyImported => bump(&mut self.already_imported),
                Outcome::Rejected(code) => {
                    *self
                        .rejected
                        .entry(format!("{entity}: {code}"))
                        .or_default() += 1;
                }
                Outcome::Failed(why) => {
                    *self.failed.entry(format!("{entity}: {why}")).or_default() += 1;
                }
            }
        }
    }
}

/// What an operation imports: a session, or the kind of record a memory comes from.
fn entity(p: &Prepared) -> &'static str {
    match p.op {
        MirrorOp::EnsureSession { .. } => Kind::Session.as_label(),
        _ => p.kind.as_label(),
    }
}

/// Progress as the run goes: a bar on a terminal, a log line every few seconds otherwise.
pub trait Progress {
    fn update(&mut self, position: Position, summary: &Summary);
    fn finish(&mut self) {}
}

/// How often the checkpoint is written.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Groups read ahead of the sender, at most.
const READ_AHEAD: usize = 256;

/// Runs a backfill (or a dry run) to the end of the store, or until the orchestrator stops
/// answering.
///
/// # Errors
/// The store cannot be read, the checkpoint cannot be written, or the socket cannot be
/// created. What was imported before the error stays imported and checkpointed.
pub fn run(options: &Options, progress: &mut dyn Progress) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let mut summary = Summary {
        agent: options.agent.clone(),
        store: legacy::store_file(options.profile, &options.from),
        dry_run: options.sender.is_none(),
        ..Summary::default()
    };
    let mut checkpoint = Checkpoint::open(&options.data_dir, &options.agent)?;
    if options.restart && options.sender.is_some() {
        checkpoint.clear()?;
    }
    let mut sender = options.sender.clone().map(Sender::new).transpose()?;

    let (tx, rx) = std::sync::mpsc::sync_channel::<(Batch, Position)>(READ_AHEAD);
    let reader = {
        let (agent, profile, from) = (options.agent.clone(), options.profile, options.from.clone());
        std::thread::Builder::new()
            .name("backfill-reader".into())
            .spawn(move || {
                legacy::read(profile, &from, |group, position| {
                    let batch = prepare(&agent, profile, group);
                    tx.send((batch, position))
                        .map_err(|_| anyhow::anyhow!("the sender stopped"))
                })
            })?
    };

    let mut read_all = false;
    let mut last_flush = Instant::now();
    let mut position = Position::default();
    loop {
        let room = sender.as_ref().is_none_or(Sender::has_room);
        let idle = sender.as_ref().is_none_or(Sender::is_idle);
        if room && !read_all {
            // Block for the reader only when there is nothing else to do.
            let next = if idle {
                rx.recv_timeout(Duration::from_millis(100))
                    .map_err(|e| e == RecvTimeoutError::Disconnected)
            } else {
                rx.try_recv().map_err(|e| e == TryRecvError::Disconnected)
            };
            match next {
                Ok((batch, at)) => {
                    position = at;
                    take(&mut summary, &mut checkpoint, sender.as_mut(), batch)?;
                    progress.update(position, &summary);
                    continue;
                }
                Err(true) => read_all = true,
                Err(false) => {}
            }
        }
        if read_all && idle {
            break;
        }
        if let Some(sender) = sender.as_mut() {
            let wait = if room && !read_all {
                Duration::from_millis(2)
            } else {
                Duration::from_millis(100)
            };
            if let Err(e) = sender.turn(wait) {
                summary.stopped = Some(e.to_string());
                break;
            }
            for Finished { batch, outcomes } in sender.take_finished() {
                summary.count(&batch, &outcomes);
                let settled = outcomes
                    .iter()
                    .all(|o| !matches!(o, Outcome::Failed(_) | Outcome::Rejected(_)));
                if settled {
                    checkpoint.finish(batch.section, batch.key, batch.fingerprint);
                }
            }
            progress.update(position, &summary);
        }
        if last_flush.elapsed() >= CHECKPOINT_EVERY {
            checkpoint.flush()?;
            last_flush = Instant::now();
        }
    }
    drop(rx);
    let read = reader.join().expect("the backfill reader does not panic");
    checkpoint.flush()?;
    progress.finish();
    summary.seconds = started.elapsed().as_secs_f64();
    match read {
        Ok(()) => {}
        // The reader noticed that the sender stopped.
        Err(LegacyError::Stopped(_)) if summary.stopped.is_some() => {}
        Err(e) => return Err(e.into()),
    }
    Ok(summary)
}

/// Counts a group as read, and hands it to the sender unless an earlier run imported it
/// as it is (a dry run counts what it would send).
fn take(
    summary: &mut Summary,
    checkpoint: &mut Checkpoint,
    sender: Option<&mut Sender>,
    batch: Batch,
) -> anyhow::Result<()> {
    summary.groups += 1;
    for kind in &batch.read {
        *summary.read.entry(kind.as_label()).or_default() += 1;
    }
    for (kind, reason) in &batch.skipped {
        *summary
            .skipped
            .entry(format!("{}: {reason}", kind.as_label()))
            .or_default() += 1;
    }
    if checkpoint.is_finished(batch.section, &batch.key, &batch.fingerprint)? {
        summary.groups_unchanged += 1;
        return Ok(());
    }
    match sender {
        Some(sender) => sender.admit(batch),
        None => {
            for p in batch.ops() {
                *summary.would_send.entry(entity(p)).or_default() += 1;
            }
        }
    }
    Ok(())
}
