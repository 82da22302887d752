//! Embeddings: two providers behind one interface, and the worker that fills
//! `vector_embeddings` from the queue.
//!
//! - [`local`]: built in and offline (feature hashing). For development, tests and the demo.
//! - [`openai`]: any OpenAI-compatible `POST /v1/embeddings` (OpenAI, Ollama, vLLM, TEI).

pub mod local;
pub mod openai;
pub mod worker;

use crate::config::{EmbeddingProvider, EmbeddingSettings};

/// Why texts could not be embedded. Messages never quote the texts or the provider's reply
/// body (which may echo them).
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The model could not be reached, timed out, or failed on its side (5xx, 429).
    #[error("embedding provider unavailable: {0}")]
    Unavailable(String),
    /// The model refused the request (4xx other than 429).
    #[error("embedding provider refused the request: HTTP {0}")]
    Refused(u16),
    /// The model answered something that is not a list of vectors of the configured size.
    #[error("embedding provider answered unexpectedly: {0}")]
    Malformed(String),
}

impl EmbedError {
    pub fn as_label(&self) -> &'static str {
        match self {
            EmbedError::Unavailable(_) => "unavailable",
            EmbedError::Refused(_) => "refused",
            EmbedError::Malformed(_) => "malformed",
        }
    }
}

/// The configured provider.
#[derive(Debug)]
pub enum Embedder {
    Local(local::LocalEmbedder),
    OpenAi(openai::OpenAiEmbedder),
}

impl Embedder {
    /// # Errors
    /// The HTTP client could not be built, or the API key variable is named but unset.
    pub fn from_settings(settings: &EmbeddingSettings) -> anyhow::Result<Embedder> {
        Ok(match &settings.provider {
            EmbeddingProvider::Local => {
                Embedder::Local(local::LocalEmbedder::new(settings.dimension))
            }
            EmbeddingProvider::OpenAi { url, api_key_env } => {
                let key = match api_key_env {
                    Some(var) => Some(std::env::var(var).map_err(|_| {
                        anyhow::anyhow!("embedding.api_key_env names {var}, which is not set")
                    })?),
                    None => None,
                };
                Embedder::OpenAi(openai::OpenAiEmbedder::new(
                    url,
                    &settings.model,
                    settings.dimension,
                    key,
                    settings.timeout,
                )?)
            }
        })
    }

    /// The `provider` label of the metrics.
    pub fn provider_label(&self) -> &'static str {
        match self {
            Embedder::Local(_) => "local",
            Embedder::OpenAi(_) => "openai",
        }
    }

    /// One vector per text, in order. A text without any word gets `None`: there is
    /// nothing to compare it by (and a zero vector has no cosine).
    ///
    /// # Errors
    /// The provider failed; see [`EmbedError`].
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Option<Vec<f32>>>, EmbedError> {
        match self {
            Embedder::Local(e) => Ok(texts.iter().map(|t| e.embed(t)).collect()),
            Embedder::OpenAi(e) => Ok(e.embed(texts).await?.into_iter().map(Some).collect()),
        }
    }
}
