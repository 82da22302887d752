//! The commands: one module per `memshift` subcommand, each with its work, its printing and
//! its exit code, so that `main.rs` only parses and dispatches. Two of them are long-running
//! processes (`proxy`, `orchestrator`): each binds everything, announces readiness on
//! stdout, waits for the shutdown token and stops in order. The others run once and exit.

pub mod backfill;
pub mod check_config;
pub mod flags;
pub mod migrate;
mod orchestrator;
pub mod outbox;
mod proxy;
pub mod reconcile;
pub mod report;

pub use orchestrator::run_orchestrator;
pub use proxy::{execute as proxy, run_proxy};

use crate::config::Config;
use anyhow::Context as _;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// Exit status for a bad command line or configuration (sysexits' EX_USAGE).
pub const EXIT_USAGE: u8 = 64;

/// A long-running process, given its configuration and shutdown token.
pub type Process = Pin<Box<dyn Future<Output = anyhow::Result<()>>>>;

/// Runs one process on a multi-threaded runtime, with SIGTERM/SIGINT wired to its shutdown
/// token; exit 0 on a clean stop, 1 on failure.
pub fn serve(
    config: Config,
    process: impl FnOnce(Config, CancellationToken) -> Process,
) -> ExitCode {
    crate::telemetry::init(&config.log);
    let Some(runtime) = runtime(tokio::runtime::Builder::new_multi_thread()) else {
        return ExitCode::FAILURE;
    };
    let result = runtime.block_on(async {
        let shutdown = crate::shutdown::on_signals()?;
        process(config, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("memshift: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A command that runs once and exits: logging set up, a failure printed (exit 1).
pub fn one_shot(
    config: &Config,
    command: impl FnOnce(&Config) -> anyhow::Result<ExitCode>,
) -> ExitCode {
    crate::telemetry::init(&config.log);
    command(config).unwrap_or_else(|e| {
        eprintln!("memshift: {e:#}");
        ExitCode::FAILURE
    })
}

/// Runs a one-shot command's future on a multi-threaded runtime.
fn block_on<T>(future: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(future)
}

/// An async runtime from `builder`, or `None` (reported) when it cannot start.
fn runtime(mut builder: tokio::runtime::Builder) -> Option<tokio::runtime::Runtime> {
    match builder.enable_all().build() {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("memshift: starting the async runtime: {e}");
            None
        }
    }
}

/// Prints the one-line JSON readiness announcement on stdout, for supervisors and for
/// tests that asked for `*` ports.
fn announce(ready: &impl serde::Serialize) -> anyhow::Result<()> {
    let line = serde_json::to_string(ready)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}
