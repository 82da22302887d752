//! The actions of the API, on top of the store: validate the payload, run the query, shape
//! the reply's `data`. One module per group of actions; this one routes a request to its
//! handler.

use super::service::Service;
use super::{comparisons, memories, queries, search, sessions};
use crate::api::{Action, ApiError, Request};
use serde_json::{Value, json};

/// Handles one parsed request; the `data` of a success reply.
///
/// # Errors
/// The API error to answer with.
pub async fn handle(service: &Service, req: &Request) -> Result<Value, ApiError> {
    match req.action {
        Action::Create => memories::create(service, req).await,
        Action::Read => memories::read(service, req).await,
        Action::Update => memories::update(service, req).await,
        Action::Delete => memories::delete(service, req).await,
        Action::BatchRead => queries::batch_read(service, req).await,
        Action::BulkDelete => queries::bulk_delete(service, req).await,
        Action::Summarize => queries::summarize(service, req).await,
        Action::Search => search::search(service, req).await,
        Action::CreateSession => sessions::create(service, req).await,
        Action::EndSession => sessions::end(service, req).await,
        Action::Health => Ok(health(service).await),
        Action::RecordMismatch => comparisons::record(service, req).await,
    }
}

async fn health(service: &Service) -> Value {
    let (database, backlog) = match service.store.embedding_backlog().await {
        Ok((n, _)) => ("ok", json!(n)),
        Err(_) => ("unavailable", Value::Null),
    };
    json!({
        "status": if database == "ok" { "ok" } else { "degraded" },
        "database": database,
        "embedding_backlog": backlog,
        "embedding_model": service.embedding.model,
        "version": env!("CARGO_PKG_VERSION"),
    })
}
