//! The orchestrator's PostgreSQL: connection pool, migrations and every query.
//!
//! Functions here take typed, validated inputs and return typed rows; the JSON API lives in
//! [`crate::orchestrator`]. All SQL is checked at run time (`sqlx::query`), not at compile
//! time, so building memshift needs no database.

mod access_log;
mod comparisons;
mod embeddings;
mod entry;
mod filter;
mod memories;
pub mod reconcile;
pub mod report;
mod schema;
mod search;
mod sessions;

pub use access_log::AccessLogRecord;
pub use comparisons::MismatchRecord;
pub use embeddings::{Lease, QueueItem};
pub use entry::{Entry, timestamp as entry_timestamp};
pub use filter::{Filter, Sort, SortField};
pub use memories::{NewMemory, Pairing, Update, WriteOutcome, Written};
pub use schema::{MIGRATOR, VectorIndex};
pub use search::Scored;
pub use sessions::{EndedSession, NewSession};

use crate::config::DatabaseSettings;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions as _, Executor as _};
use std::str::FromStr;

/// A failure talking to PostgreSQL. Messages carry no row data: PostgreSQL's own error text
/// can quote values (memory contents are private), so only the SQLSTATE is kept.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection could be had or it broke: retryable once the database is back.
    #[error("the database is unavailable ({0})")]
    Unavailable(&'static str),
    /// The statement ran past `database.statement_timeout` or the request's deadline.
    #[error("the database statement timed out")]
    Timeout,
    /// PostgreSQL refused the statement (constraint, permission, bad input).
    #[error("the database refused the statement (SQLSTATE {0})")]
    Rejected(String),
    /// Anything else sqlx reports (protocol, decoding): a bug or a schema mismatch.
    #[error("unexpected database error: {0}")]
    Internal(String),
}

impl StoreError {
    /// A stable label for metrics.
    pub fn as_label(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Timeout => "timeout",
            StoreError::Rejected(_) => "rejected",
            StoreError::Internal(_) => "internal",
        }
    }

    /// Whether trying again later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Timeout)
    }

    /// The SQLSTATE of a refused statement.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            StoreError::Rejected(code) => Some(code),
            _ => None,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut => {
                StoreError::Unavailable("no connection within acquire_timeout")
            }
            sqlx::Error::PoolClosed => StoreError::Unavailable("pool closed"),
            sqlx::Error::Io(_) => StoreError::Unavailable("connection failed"),
            sqlx::Error::Tls(_) => StoreError::Unavailable("TLS failed"),
            sqlx::Error::WorkerCrashed => StoreError::Unavailable("connection worker crashed"),
            sqlx::Error::Database(db) => {
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                match code.as_str() {
                    // query_canceled: statement_timeout.
                    "57014" => StoreError::Timeout,
                    // admin_shutdown, crash_shutdown, cannot_connect_now, connection errors.
                    "57P01" | "57P02" | "57P03" => StoreError::Unavailable("server shutting down"),
                    c if c.starts_with("08") => StoreError::Unavailable("connection error"),
                    _ => StoreError::Rejected(code),
                }
            }
            other => StoreError::Internal(other.to_string()),
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// The pool and the queries of one orchestrator.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
    /// The configured embedding model and its index, for semantic search and the worker.
    vectors: VectorIndex,
}

impl Store {
    /// A pool for `url` with the settings' limits. Connections are opened lazily, so a
    /// database that is down at start-up (or later) makes requests fail with
    /// `Unavailable`, and the pool recovers by itself once it is back.
    ///
    /// # Errors
    /// The URL cannot be parsed.
    pub fn connect_lazy(
        url: &str,
        settings: &DatabaseSettings,
        vectors: VectorIndex,
    ) -> Result<Store> {
        // sqlx warns about statements slower than 1 s by default; batches of embeddings into
        // a large HNSW index take that long by design. Warn only near the statement timeout.
        let slow = settings.statement_timeout / 2;
        let options = PgConnectOptions::from_str(url)
            .map_err(|_| StoreError::Internal("invalid database URL".to_owned()))?
            .application_name("memshift")
            .log_slow_statements(log::LevelFilter::Warn, slow);
        let statement_timeout = settings.statement_timeout.as_millis();
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            // A broken connection (server restarted) is noticed before it is handed out.
            .test_before_acquire(true)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    conn.execute(
                        format!(
                            "SET statement_timeout = {statement_timeout}; \
                             SET hnsw.iterative_scan = strict_order; SET hnsw.ef_search = 100"
                        )
                        .as_str(),
                    )
                    .await?;
                    Ok(())
                })
            })
            .connect_lazy_with(options);
        Ok(Store { pool, vectors })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn vectors(&self) -> &VectorIndex {
        &self.vectors
    }

    /// `(connections open, of which idle)`, for the pool metrics.
    pub fn pool_usage(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    /// Closes every connection; waits for the ones in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
