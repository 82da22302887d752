//! `memshift migrate`: the orchestrator's schema and embedding index.

use crate::config::Config;
use crate::store::{Store, VectorIndex};
use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

/// Applies the migrations and queues the entries that lack an embedding.
///
/// # Errors
/// No database URL, the database failing or refusing a migration.
pub async fn run(config: Config, _shutdown: CancellationToken) -> anyhow::Result<()> {
    let url = config.database.resolve_url().map_err(anyhow::Error::msg)?;
    let vectors = VectorIndex::new(&config.embedding.model, config.embedding.dimension);
    let store = Store::connect_lazy(url.expose(), &config.database, vectors)?;
    store
        .migrate()
        .await
        .with_context(|| format!("migrating {url}"))?;
    let queued = store.queue_missing_embeddings().await?;
    println!(
        "migrations applied to {url}; embedding index for {} ({} dimensions) ready; {queued} entries queued for an embedding",
        config.embedding.model, config.embedding.dimension
    );
    store.close().await;
    Ok(())
}
