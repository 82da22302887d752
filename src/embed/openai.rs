//! An OpenAI-compatible embeddings endpoint: `POST {url}/v1/embeddings` with
//! `{"model", "input": [texts]}`, answered `{"data": [{"index", "embedding"}]}`.
//! OpenAI, Ollama, vLLM and Hugging Face TEI all speak it.

use super::EmbedError;
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;

pub struct OpenAiEmbedder {
    client: reqwest::Client,
    endpoint: String,
    model: String,
    dimension: usize,
    /// Sent as a bearer token; never logged (`Debug` leaves it out).
    api_key: Option<String>,
}

impl std::fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("endpoint", &self.endpoint)
            .field("model", &self.model)
            .field("dimension", &self.dimension)
            .field("api_key", &self.api_key.as_ref().map(|_| "****"))
            .finish()
    }
}

#[derive(Deserialize)]
struct Response {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    index: usize,
    embedding: Vec<f32>,
}

impl OpenAiEmbedder {
    /// # Errors
    /// The HTTP client could not be built (TLS roots).
    pub fn new(
        url: &str,
        model: &str,
        dimension: usize,
        api_key: Option<String>,
        timeout: Duration,
    ) -> anyhow::Result<OpenAiEmbedder> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()?;
        Ok(OpenAiEmbedder {
            client,
            endpoint: format!("{url}/v1/embeddings"),
            model: model.to_owned(),
            dimension,
            api_key,
        })
    }

    /// # Errors
    /// See [`EmbedError`].
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut request = self
            .client
            .post(&self.endpoint)
            .json(&json!({"model": self.model, "input": texts}));
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|e| {
            let why = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "cannot connect"
            } else {
                "request failed"
            };
            EmbedError::Unavailable(why.to_owned())
        })?;
        let status = response.status();
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(EmbedError::Unavailable(format!("HTTP {}", status.as_u16())));
        }
        if !status.is_success() {
            return Err(EmbedError::Refused(status.as_u16()));
        }
        let body: Response = response
            .json()
            .await
            .map_err(|_| EmbedError::Malformed("not an embeddings response".to_owned()))?;
        self.order(body, texts.len())
    }

    /// The vectors in input order, checked for count and dimension.
    fn order(&self, body: Response, n: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
        if body.data.len() != n {
            return Err(EmbedError::Malformed(format!(
                "{} vectors for {n} texts",
                body.data.len()
            )));
        }
        let mut out = vec![Vec::new(); n];
        for item in body.data {
            if item.embedding.len() != self.dimension {
                return Err(EmbedError::Malformed(format!(
                    "a vector of dimension {}, configured {}",
                    item.embedding.len(),
                    self.dimension
                )));
            }
            let slot = out.get_mut(item.index).ok_or_else(|| {
                EmbedError::Malformed(format!("index {} out of range", item.index))
            })?;
            *slot = item.embedding;
        }
        if out.iter().any(Vec::is_empty) {
            return Err(EmbedError::Malformed("an index repeated".to_owned()));
        }
        Ok(out)
    }
}
