//! Wiring: one module per long-running process, `memshift proxy` and `memshift
//! orchestrator`. Each binds everything, announces readiness on stdout, waits for the
//! shutdown token and stops in order.

pub mod backfill;
pub mod flags;
mod orchestrator;
pub mod outbox;
mod proxy;
pub mod reconcile;
pub mod report;

pub use orchestrator::run_orchestrator;
pub use proxy::run_proxy;

use std::io::Write;

/// Prints the one-line JSON readiness announcement on stdout, for supervisors and for
/// tests that asked for `*` ports.
fn announce(ready: &impl serde::Serialize) -> anyhow::Result<()> {
    let line = serde_json::to_string(ready)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}
