//! The embedding worker: takes entries off `embedding_queue`, embeds their text, stores the
//! vectors. Writes never wait for it: they only queue.
//!
//! Woken at once by a write (a [`Notify`]) and otherwise every `poll_interval`, so queued
//! work is found even when another orchestrator queued it. A failed batch is retried with
//! exponential backoff by the queue itself (see the migration), never dropped. The backlog
//! gauge is refreshed at most once a second. With `embedding.worker = false` only the
//! gauges are kept up to date.

use super::Embedder;
use crate::config::EmbeddingSettings;
use crate::metrics::{EmbeddingOutcome, OrchestratorMetrics};
use crate::store::{QueueItem, Store, StoreError};
use chrono::Utc;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::warn;

pub struct Worker {
    pub store: Store,
    pub embedder: Arc<Embedder>,
    pub settings: EmbeddingSettings,
    pub metrics: Arc<OrchestratorMetrics>,
    pub wake: Arc<Notify>,
}

/// What one step did.
enum Step {
    /// A full batch: there is probably more.
    Busy,
    Idle,
}

impl Worker {
    /// Runs until `shutdown`; a batch in progress is finished first (its lease would
    /// otherwise delay it by the lease time).
    pub async fn run(self, shutdown: CancellationToken) {
        let mut last_backlog = Instant::now() - Duration::from_secs(60);
        let mut failing = false;
        while !shutdown.is_cancelled() {
            if last_backlog.elapsed() >= Duration::from_secs(1) {
                self.refresh_backlog().await;
                last_backlog = Instant::now();
            }
            if !self.settings.worker {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
            let step = match self.step().await {
                Ok(step) => {
                    failing = false;
                    step
                }
                Err(e) => {
                    // One warning per outage, not one per poll.
                    if !failing {
                        warn!(error = %e, "embedding worker: database unavailable; retrying");
                    }
                    failing = true;
                    Step::Idle
                }
            };
            if matches!(step, Step::Busy) {
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.settings.poll_interval) => {}
            }
        }
    }

    async fn refresh_backlog(&self) {
        match self.store.embedding_backlog().await {
            Ok((n, oldest)) => {
                self.metrics.database_up.set(1);
                self.metrics.embedding_backlog.set(n);
                let age = oldest.map_or(0.0, |t| (Utc::now() - t).as_seconds_f64().max(0.0));
                self.metrics.embedding_oldest_age.set(age);
            }
            Err(_) => self.metrics.database_up.set(0),
        }
    }

    /// Leases one batch and embeds it.
    async fn step(&self) -> Result<Step, StoreError> {
        let batch = self.settings.batch_size;
        // Long enough for one call to the model and the writes after it.
        let lease = self.settings.timeout * 2 + Duration::from_secs(10);
        let items = self
            .store
            .lease_embeddings(batch as i64, lease)
            .await?
            .items;
        if items.is_empty() {
            return Ok(Step::Idle);
        }
        let full = items.len() == batch;
        let (with_text, without): (Vec<QueueItem>, Vec<QueueItem>) =
            items.into_iter().partition(|i| i.text.is_some());
        if !without.is_empty() {
            self.store.discard_embeddings(&without).await?;
            self.metrics
                .embeddings(EmbeddingOutcome::Discarded, without.len());
        }
        if !with_text.is_empty() {
            self.embed_batch(with_text).await?;
        }
        Ok(if full { Step::Busy } else { Step::Idle })
    }

    async fn embed_batch(&self, items: Vec<QueueItem>) -> Result<(), StoreError> {
        let texts: Vec<String> = items
            .iter()
            .map(|i| i.text.clone().unwrap_or_default())
            .collect();
        let started = Instant::now();
        let result = self.embedder.embed(&texts).await;
        self.metrics.embedding_call(
            self.embedder.provider_label(),
            started.elapsed().as_secs_f64(),
        );
        let vectors = match result {
            Ok(v) => v,
            Err(e) => {
                warn!(error = %e, texts = items.len(), "embedding failed; will retry with backoff");
                self.store
                    .fail_embeddings(&items, &e.to_string(), self.settings.max_backoff)
                    .await?;
                self.metrics
                    .embeddings(EmbeddingOutcome::Failed, items.len());
                return Ok(());
            }
        };
        let mut done = Vec::with_capacity(items.len());
        let mut empty = Vec::new();
        for (item, vector) in items.into_iter().zip(vectors) {
            match vector {
                Some(v) => done.push((item, v)),
                None => empty.push(item),
            }
        }
        let attempted = done.len();
        let stored: HashSet<String> = self
            .store
            .complete_embeddings(&done)
            .await?
            .into_iter()
            .collect();
        let now = Utc::now();
        for (item, _) in done.iter().filter(|(i, _)| stored.contains(&i.memory_id)) {
            self.metrics
                .embedding_lag
                .observe((now - item.enqueued_at).as_seconds_f64().max(0.0));
        }
        self.metrics
            .embeddings(EmbeddingOutcome::Stored, stored.len());
        self.store.discard_embeddings(&empty).await?;
        self.metrics.embeddings(
            EmbeddingOutcome::Discarded,
            empty.len() + attempted - stored.len(),
        );
        Ok(())
    }
}
