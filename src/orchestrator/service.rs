//! The actions of the API, on top of the store: validate the payload, run the query,
//! shape the reply's `data`.

use super::{comparisons, memories, queries, search, sessions};
use crate::api::{Action, ApiError, ErrorCode, Request};
use crate::config::{EmbeddingSettings, OrchestratorSettings};
use crate::embed::Embedder;
use crate::metrics::OrchestratorMetrics;
use crate::store::{Store, StoreError};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
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

/// A write's fingerprint: SHA-256 of its canonical JSON (object keys sorted at every
/// level), so the same write sent again — keys in any order — matches, and any other write
/// does not.
pub fn fingerprint(write: &Value) -> String {
    let digest = Sha256::digest(canonical(write).to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), canonical(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_ignore_key_order_only() {
        let a = json!({"content": {"text": "hi", "role": "user"}, "priority": 5});
        let b = json!({"priority": 5, "content": {"role": "user", "text": "hi"}});
        let c = json!({"priority": 5, "content": {"role": "user", "text": "hi!"}});
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
        assert_eq!(fingerprint(&a).len(), 64);
    }
}
