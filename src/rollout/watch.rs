//! What sets the rollout in motion: file-system events on the flags file's directory (so
//! an editor's atomic replace is seen as well as a write), a slow poll in case events are
//! missed, SIGHUP (reload), SIGUSR1 (roll back), SIGUSR2 (resume), and the one-second tick
//! of the triggers.

use super::{Latch, Rollout};
use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Editors write a file in several steps; events closer together than this are one change.
const SETTLE: Duration = Duration::from_millis(50);

/// How often the triggers are evaluated.
const TICK: Duration = Duration::from_secs(1);

/// The watches and signal handlers, installed; [`Watch::run`] acts on them.
pub struct Watch {
    rollout: Arc<Rollout>,
    /// Kept alive while the loop runs; `None` when watching failed (polling then).
    _watcher: Option<RecommendedWatcher>,
    events: mpsc::Receiver<()>,
    hup: Signal,
    usr1: Signal,
    usr2: Signal,
}

impl Watch {
    /// Installs the file watch and the signal handlers now, before the process announces
    /// it is ready: a SIGUSR1 that arrived before its handler would kill the process.
    ///
    /// # Errors
    /// The signal handlers could not be installed.
    pub fn install(rollout: Arc<Rollout>) -> std::io::Result<Watch> {
        let (tx, events) = mpsc::channel(16);
        Ok(Watch {
            _watcher: watch_files(&rollout, tx),
            rollout,
            events,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }

    /// Runs until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let Watch {
            rollout,
            _watcher,
            mut events,
            mut hup,
            mut usr1,
            mut usr2,
        } = self;
        run_loop(
            &rollout,
            &mut events,
            [&mut hup, &mut usr1, &mut usr2],
            shutdown,
        )
        .await;
    }
}

async fn run_loop(
    rollout: &Rollout,
    events: &mut mpsc::Receiver<()>,
    [hup, usr1, usr2]: [&mut Signal; 3],
    shutdown: CancellationToken,
) {
    let mut poll = tokio::time::interval(rollout.settings().poll_interval);
    let mut tick = tokio::time::interval(TICK);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            Some(()) = events.recv() => {
                tokio::time::sleep(SETTLE).await;
                while events.try_recv().is_ok() {}
                rollout.refresh(false);
            }
            _ = poll.tick() => rollout.refresh(false),
            _ = hup.recv() => {
                info!("SIGHUP: reloading the flags file");
                rollout.refresh(true);
            }
            _ = usr1.recv() => rollout.roll_back(Latch::Signal),
            _ = usr2.recv() => rollout.resume("SIGUSR2"),
            _ = tick.tick() => rollout.evaluate(),
        }
    }
}

/// Watches the directories of the flags file and the panic file (not the files: an
/// editor's atomic replace swaps the inode a file watch would follow).
fn watch_files(rollout: &Rollout, tx: mpsc::Sender<()>) -> Option<RecommendedWatcher> {
    let files: Vec<&Path> = [
        rollout.settings().flags.as_deref(),
        rollout.panic_path.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect();
    if files.is_empty() {
        return None;
    }
    let names: BTreeSet<OsString> = files
        .iter()
        .filter_map(|f| f.file_name().map(ToOwned::to_owned))
        .collect();
    let dirs: BTreeSet<&Path> = files
        .iter()
        .map(|f| match f.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        })
        .collect();
    let handler = move |event: notify::Result<notify::Event>| {
        let relevant = event.is_ok_and(|e| {
            e.paths
                .iter()
                .any(|p| p.file_name().is_some_and(|n| names.contains(n)))
        });
        if relevant {
            // Full means a refresh is already due: nothing is lost.
            let _ = tx.try_send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            warn!("cannot watch the flags file, polling only: {e}");
            return None;
        }
    };
    for dir in dirs {
        if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            warn!(dir = %dir.display(), "cannot watch, polling only: {e}");
        }
    }
    Some(watcher)
}
