//! The actions of the API, on top of the store: validate the payload, run the query,
//! shape the reply's `data`.

use super::{comparisons, memories, queries, search, sessions};
pub use crate::api::fingerprint;
use crate::api::{Action, ApiError, ErrorCode, Request};
use crate::config::{EmbeddingSettings, OrchestratorSettings};
use crate::embed::Embedder;
use crate::metrics::OrchestratorMetrics;
use crate::store::{Store, StoreError};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::Notify;

/// Everything a request handler needs; shared by all of them.
pub struct Service {
    pub store: Store,
    pub embedder: Arc<Embedder>,
    /// Wakes the embedding worker after a write queued a text.
    pub embedding_wake: Arc<Notify>,
    pub settings: OrchestratorSettings,
    pub embedding: EmbeddingSettings,
    pub metrics: Arc<OrchestratorMetrics>,
}

impl Service {
    /// Handles one parsed request; the `data` of a success reply.
    ///
    /// # Errors
    /// The API error to answer with.
    pub async fn handle(&self, req: &Request) -> Result<Value, ApiError> {
        match req.action {
            Action::Create => memories::create(self, req).await,
            Action::Read => memories::read(self, req).await,
            Action::Update => memories::update(self, req).await,
            Action::Delete => memories::delete(self, req).await,
            Action::BatchRead => queries::batch_read(self, req).await,
            Action::BulkDelete => queries::bulk_delete(self, req).await,
            Action::Summarize => queries::summarize(self, req).await,
            Action::Search => search::search(self, req).await,
            Action::CreateSession => sessions::create(self, req).await,
            Action::EndSession => sessions::end(self, req).await,
            Action::Health => Ok(self.health().await),
            Action::RecordMismatch => comparisons::record(self, req).await,
        }
    }

    async fn health(&self) -> Value {
        let (database, backlog) = match self.store.embedding_backlog().await {
            Ok((n, _)) => ("ok", json!(n)),
            Err(_) => ("unavailable", Value::Null),
        };
        json!({
            "status": if database == "ok" { "ok" } else { "degraded" },
            "database": database,
            "embedding_backlog": backlog,
            "embedding_model": self.embedding.model,
            "version": env!("CARGO_PKG_VERSION"),
        })
    }
}

/// SQLSTATE insufficient_privilege.
const INSUFFICIENT_PRIVILEGE: &str = "42501";

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let code = match &e {
            StoreError::Rejected(state) if state == INSUFFICIENT_PRIVILEGE => {
                ErrorCode::PermissionDenied
            }
            StoreError::Internal(_) => ErrorCode::InternalError,
            _ => ErrorCode::StorageError,
        };
        ApiError::new(code, e.to_string())
            .with("reason", e.as_label())
            .with("retryable", e.is_retryable())
    }
}
