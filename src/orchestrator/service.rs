//! What every action's handler shares ([`Service`]), and how a store failure becomes the
//! API's error. A leaf of the orchestrator: the handlers import it, and [`super::actions`]
//! routes a request to them.

pub use crate::api::fingerprint;
use crate::api::{ApiError, ErrorCode};
use crate::config::{EmbeddingSettings, OrchestratorSettings};
use crate::embed::Embedder;
use crate::metrics::OrchestratorMetrics;
use crate::store::{Store, StoreError};
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
