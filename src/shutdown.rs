//! Signals: the first SIGTERM or SIGINT starts a graceful shutdown, a second one exits at
//! once.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Exit status after a second signal cut a graceful shutdown short (128 + SIGINT, as shells
/// report an interrupted program).
pub const EXIT_INTERRUPTED: i32 = 130;

/// Installs the handlers and returns the token the first signal cancels.
///
/// # Errors
/// The handlers could not be installed.
pub fn on_signals() -> std::io::Result<CancellationToken> {
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let trigger = token.clone();
    tokio::spawn(async move {
        let first = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        info!(
            signal = first,
            "shutting down gracefully (send the signal again to exit at once)"
        );
        trigger.cancel();
        let second = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        warn!(signal = second, "second signal: exiting now");
        std::process::exit(EXIT_INTERRUPTED);
    });
    Ok(token)
}
