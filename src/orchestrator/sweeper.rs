//! Deletes expired entries for good. Reads never return them anyway (every query filters on
//! `expires_at`); the sweeper keeps tables and indexes from filling with dead rows, and
//! lets data that was meant to be forgotten be forgotten.

use crate::metrics::OrchestratorMetrics;
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Rows per statement, so a large backlog never holds long locks.
const BATCH: i64 = 1000;

/// How much mismatch history to keep.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    pub max_age: Duration,
    pub max_rows: u64,
}

/// Sweeps every `interval` until `shutdown`.
pub async fn run(
    store: Store,
    interval: Duration,
    retention: Retention,
    metrics: Arc<OrchestratorMetrics>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        match sweep(&store, &shutdown).await {
            Ok(n) => {
                metrics.expired_deleted.inc_by(n);
                if n > 0 {
                    debug!(deleted = n, "expired entries deleted");
                }
            }
            Err(e) => warn!(error = %e, "expiry sweep failed; will retry"),
        }
        match store
            .prune_mismatches(retention.max_age, retention.max_rows)
            .await
        {
            Ok(n) if n > 0 => debug!(deleted = n, "old mismatch samples deleted"),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "pruning mismatch samples failed; will retry"),
        }
    }
}

async fn sweep(store: &Store, shutdown: &CancellationToken) -> crate::store::Result<u64> {
    let mut total = 0;
    loop {
        let n = store.delete_expired(BATCH).await?;
        total += n;
        if n < BATCH as u64 || shutdown.is_cancelled() {
            return Ok(total);
        }
    }
}
