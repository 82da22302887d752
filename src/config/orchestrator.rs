//! `[database]`, `[orchestrator]` and `[embedding]`: the Memory Orchestrator's settings.
//! Every key needs a restart.

use super::reader::{Errors, Table};
use super::{Endpoint, parse_count, parse_duration};
use figment::value::Value;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// A PostgreSQL connection URL. It may hold a password, so `Display` and `Debug` mask it.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// # Errors
    /// Not a `postgres://` or `postgresql://` URL.
    pub fn parse(s: &str) -> Result<DatabaseUrl, String> {
        match url::Url::parse(s) {
            Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") => Ok(DatabaseUrl(s.into())),
            // Never echo the value: it may carry a password.
            Ok(_) => Err("expected a postgres:// URL".to_owned()),
            Err(e) => Err(format!("invalid URL ({e})")),
        }
    }

    /// The URL with its password, for connecting only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match url::Url::parse(&self.0) {
            Ok(mut u) => {
                if u.password().is_some() {
                    let _ = u.set_password(Some("****"));
                }
                f.write_str(u.as_str())
            }
            Err(_) => f.write_str("<invalid URL>"),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// `[database]`: the orchestrator's PostgreSQL.
#[derive(Clone, Debug, PartialEq)]
pub struct DatabaseSettings {
    /// `None`: taken from the `DATABASE_URL` environment variable when needed.
    pub url: Option<DatabaseUrl>,
    /// Pool size. Each in-flight request holds at most one connection, the embedding
    /// worker and the sweeper one each.
    pub max_connections: u32,
    /// How long a request waits for a free connection before it fails with `storage_error`.
    pub acquire_timeout: Duration,
    /// Server-side cap on one statement, so a wedged query cannot hold a connection forever.
    pub statement_timeout: Duration,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            url: None,
            max_connections: 16,
            acquire_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(10),
        }
    }
}

impl DatabaseSettings {
    /// The configured URL, or `DATABASE_URL`.
    ///
    /// # Errors
    /// Neither is set, or `DATABASE_URL` is not a postgres URL.
    pub fn resolve_url(&self) -> Result<DatabaseUrl, String> {
        if let Some(url) = &self.url {
            return Ok(url.clone());
        }
        match std::env::var("DATABASE_URL") {
            Ok(s) => DatabaseUrl::parse(&s).map_err(|e| format!("DATABASE_URL: {e}")),
            Err(_) => Err("no database: set database.url or DATABASE_URL".to_owned()),
        }
    }
}

/// `[orchestrator]`: the ZMQ service on port 5570.
#[derive(Clone, Debug, PartialEq)]
pub struct OrchestratorSettings {
    pub listen: Endpoint,
    /// `/metrics` and `/healthz` of the orchestrator process (the proxy has its own).
    pub metrics_listen: SocketAddr,
    /// Requests handled at once. Each needs a database connection, so more than
    /// `database.max_connections` only queues on the pool.
    pub max_concurrent: usize,
    /// Requests waiting for a handler. Past it a request is answered `rate_limit_exceeded`
    /// at once instead of queueing without bound.
    pub max_queued: usize,
    /// From receipt to reply; a request not done by then is answered `storage_error`
    /// (`details.reason = "deadline_exceeded"`).
    pub request_deadline: Duration,
    /// Larger requests are answered `invalid_request` without being parsed.
    pub max_request_bytes: usize,
    /// Apply pending migrations at start-up (`memshift migrate` does it on demand).
    pub migrate_on_start: bool,
    /// Write `memory_access_logs` rows for reads and writes of single memories.
    pub access_log: bool,
    /// How often expired entries (and old mismatch samples) are deleted for good.
    pub expiry_sweep_interval: Duration,
    /// Mismatch samples older than this are deleted.
    pub mismatch_retention: Duration,
    /// Mismatch samples kept at most (the oldest go first).
    pub mismatch_max_rows: u64,
    /// How long a graceful shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
}

impl Default for OrchestratorSettings {
    fn default() -> Self {
        OrchestratorSettings {
            listen: Endpoint::parse_bind("tcp://*:5570").expect("valid default"),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9465)),
            max_concurrent: 64,
            max_queued: 1024,
            request_deadline: Duration::from_secs(5),
            max_request_bytes: 1024 * 1024,
            migrate_on_start: true,
            access_log: true,
            expiry_sweep_interval: Duration::from_secs(60),
            mismatch_retention: Duration::from_secs(30 * 24 * 3600),
            mismatch_max_rows: 100_000,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Which embedding model serves the orchestrator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmbeddingProvider {
    /// Built in, offline: feature hashing of words and character trigrams. Lexical, not
    /// semantic (see README).
    Local,
    /// An OpenAI-compatible `POST {url}/v1/embeddings` (OpenAI, Ollama, vLLM, TEI).
    OpenAi {
        url: String,
        /// The environment variable holding the API key, if the endpoint needs one. The key
        /// itself never appears in the configuration, in logs or in errors.
        api_key_env: Option<String>,
    },
}

/// `[embedding]`.
#[derive(Clone, Debug, PartialEq)]
pub struct EmbeddingSettings {
    pub provider: EmbeddingProvider,
    /// Stored with every vector; the HNSW index is per model.
    pub model: String,
    /// The model's output dimension (HNSW indexes `vector` up to 2000).
    pub dimension: usize,
    /// Texts per call to the model.
    pub batch_size: usize,
    /// One call to the model, at most.
    pub timeout: Duration,
    /// How often the worker looks for work when nobody woke it.
    pub poll_interval: Duration,
    /// The cap of the exponential backoff between retries of a failed embedding.
    pub max_backoff: Duration,
    /// Run the embedding worker in this process. Off, the process still queues texts and
    /// answers searches; another orchestrator (or a later start) embeds them. Lets
    /// embedding be scaled, or paused, apart from the API.
    pub worker: bool,
}

/// The local embedder's model name, versioned: a change to its algorithm gets a new name,
/// so vectors of the two versions never mix in one index.
pub const LOCAL_MODEL: &str = "memshift-local-hash-v1";

impl Default for EmbeddingSettings {
    fn default() -> Self {
        EmbeddingSettings {
            provider: EmbeddingProvider::Local,
            model: LOCAL_MODEL.to_owned(),
            dimension: 384,
            batch_size: 32,
            timeout: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            max_backoff: Duration::from_secs(600),
            worker: true,
        }
    }
}

pub(super) fn read_database(value: Option<&Value>, errors: &mut Errors) -> DatabaseSettings {
    let d = DatabaseSettings::default();
    let mut t = Table::new("database", value, errors);
    let url = t.parse("url", None, errors, |s| DatabaseUrl::parse(s).map(Some));
    let settings = DatabaseSettings {
        url,
        max_connections: t.parse("max_connections", d.max_connections, errors, |s| {
            parse_count(s, 1, 1000).map(|n| n as u32)
        }),
        acquire_timeout: t.parse("acquire_timeout", d.acquire_timeout, errors, parse_duration),
        statement_timeout: t.parse(
            "statement_timeout",
            d.statement_timeout,
            errors,
            parse_duration,
        ),
    };
    t.finish(errors);
    settings
}

pub(super) fn read_orchestrator(
    value: Option<&Value>,
    errors: &mut Errors,
) -> OrchestratorSettings {
    let d = OrchestratorSettings::default();
    let mut t = Table::new("orchestrator", value, errors);
    let settings = OrchestratorSettings {
        listen: t.parse("listen", d.listen, errors, Endpoint::parse_bind),
        metrics_listen: t.parse("metrics_listen", d.metrics_listen, errors, |s| {
            s.parse::<SocketAddr>()
                .map_err(|_| format!("invalid address {s:?}: expected ip:port"))
        }),
        max_concurrent: t.parse("max_concurrent", d.max_concurrent, errors, |s| {
            parse_count(s, 1, 10_000)
        }),
        max_queued: t.parse("max_queued", d.max_queued, errors, |s| {
            parse_count(s, 1, 1_000_000)
        }),
        request_deadline: t.parse(
            "request_deadline",
            d.request_deadline,
            errors,
            parse_duration,
        ),
        max_request_bytes: t.parse("max_request_bytes", d.max_request_bytes, errors, |s| {
            parse_count(s, 1024, 256 * 1024 * 1024)
        }),
        migrate_on_start: t
            .get("migrate_on_start", errors)
            .unwrap_or(d.migrate_on_start),
        access_log: t.get("access_log", errors).unwrap_or(d.access_log),
        expiry_sweep_interval: t.parse(
            "expiry_sweep_interval",
            d.expiry_sweep_interval,
            errors,
            parse_duration,
        ),
        mismatch_retention: t.parse(
            "mismatch_retention",
            d.mismatch_retention,
            errors,
            parse_duration,
        ),
        mismatch_max_rows: t.parse("mismatch_max_rows", d.mismatch_max_rows, errors, |s| {
            parse_count(s, 1, 1_000_000_000).map(|n| n as u64)
        }),
        shutdown_grace: t.parse("shutdown_grace", d.shutdown_grace, errors, parse_duration),
    };
    t.finish(errors);
    settings
}

pub(super) fn read_embedding(value: Option<&Value>, errors: &mut Errors) -> EmbeddingSettings {
    let d = EmbeddingSettings::default();
    let mut t = Table::new("embedding", value, errors);
    let provider_name = t.parse("provider", "local".to_owned(), errors, |s| match s {
        "local" | "openai" => Ok(s.to_owned()),
        _ => Err(format!("unknown provider {s:?} (local, openai)")),
    });
    let url = t.parse("url", None, errors, |s| match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {
            Ok(Some(s.trim_end_matches('/').to_owned()))
        }
        _ => Err(format!("invalid URL {s:?}: expected http(s)://host[:port]")),
    });
    let api_key_env = t.parse("api_key_env", None, errors, |s| Ok(Some(s.to_owned())));
    let model = t.parse("model", None, errors, |s| parse_model(s).map(Some));
    let dimension = t.parse("dimension", d.dimension, errors, |s| {
        parse_count(s, 1, 2000)
    });
    let settings = EmbeddingSettings {
        provider: EmbeddingProvider::Local,
        model: String::new(),
        dimension,
        batch_size: t.parse("batch_size", d.batch_size, errors, |s| {
            parse_count(s, 1, 2048)
        }),
        timeout: t.parse("timeout", d.timeout, errors, parse_duration),
        poll_interval: t.parse("poll_interval", d.poll_interval, errors, parse_duration),
        max_backoff: t.parse("max_backoff", d.max_backoff, errors, parse_duration),
        worker: t.get("worker", errors).unwrap_or(d.worker),
    };
    t.finish(errors);
    let (provider, model) = match provider_name.as_str() {
        "openai" => {
            if url.is_none() {
                errors.push(
                    "embedding.url",
                    value,
                    "required when provider = \"openai\"",
                );
            }
            if model.is_none() {
                errors.push(
                    "embedding.model",
                    value,
                    "required when provider = \"openai\"",
                );
            }
            let provider = EmbeddingProvider::OpenAi {
                url: url.unwrap_or_default(),
                api_key_env,
            };
            (provider, model.unwrap_or_default())
        }
        _ => {
            if url.is_some() || api_key_env.is_some() {
                errors.push(
                    "embedding.url",
                    value,
                    "url and api_key_env only apply to provider = \"openai\"",
                );
            }
            (EmbeddingProvider::Local, model.unwrap_or(d.model))
        }
    };
    EmbeddingSettings {
        provider,
        model,
        ..settings
    }
}

/// Model names end up in SQL (a partial index predicate) and in index names, so they are
/// restricted to a safe alphabet.
fn parse_model(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:/-".contains(&b));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "invalid model name {s:?}: 1-64 characters of A-Z, a-z, 0-9, . _ : / -"
        ))
    }
}
