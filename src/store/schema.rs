//! Migrations and the one piece of schema that depends on configuration: the HNSW index.

use super::{Result, Store};
use xxhash_rust::xxh3::xxh3_64;

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The configured embedding model and dimension, and the SQL that uses its index.
///
/// `vector_embeddings.embedding` has no fixed dimension (the dimension belongs to the model,
/// which is configuration), and pgvector can only index vectors of one dimension. So each
/// (model, dimension) gets a partial expression index,
/// `hnsw ((embedding::vector(N)) vector_cosine_ops) WHERE embedding_model = 'model'`, and
/// queries repeat that exact expression and predicate so the planner can use it. The model
/// name is written into the SQL as a literal, not bound, because a bound parameter cannot
/// prove a partial index's predicate; configuration restricts it to a safe alphabet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VectorIndex {
    model: String,
    dimension: usize,
}

impl VectorIndex {
    /// # Panics
    /// If `model` contains a character outside the alphabet configuration allows.
    pub fn new(model: &str, dimension: usize) -> VectorIndex {
        assert!(
            model
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:/-".contains(&b)),
            "model names are validated by the configuration"
        );
        VectorIndex {
            model: model.to_owned(),
            dimension,
        }
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn dimension(&self) -> usize {
        self.dimension
    }

    /// The indexed expression, `(v.embedding::vector(N))` for alias `v` (none for `""`).
    pub fn expr(&self, alias: &str) -> String {
        format!("({}embedding::vector({}))", qualify(alias), self.dimension)
    }

    /// The partial index's predicate, `v.embedding_model = 'model'`.
    pub fn predicate(&self, alias: &str) -> String {
        format!("{}embedding_model = '{}'", qualify(alias), self.model)
    }

    /// Index names are at most 63 bytes; a hash of the model keeps them unique and short.
    fn index_name(&self) -> String {
        format!(
            "vector_embeddings_hnsw_{:016x}_{}",
            xxh3_64(self.model.as_bytes()),
            self.dimension
        )
    }
}

fn qualify(alias: &str) -> String {
    if alias.is_empty() {
        String::new()
    } else {
        format!("{alias}.")
    }
}

impl Store {
    /// Applies pending migrations, then makes sure the HNSW index of the configured model
    /// exists. Safe to run concurrently from several processes (sqlx takes an advisory lock;
    /// the index uses `IF NOT EXISTS`).
    ///
    /// # Errors
    /// The database is unreachable, or a migration failed (its error is returned as is: a
    /// migration carries no user data).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        MIGRATOR.run(self.pool()).await?;
        self.ensure_vector_index().await?;
        Ok(())
    }

    async fn ensure_vector_index(&self) -> Result<()> {
        let v = self.vectors();
        let sql = format!(
            "CREATE INDEX IF NOT EXISTS {} ON vector_embeddings USING hnsw ({} vector_cosine_ops) WHERE {}",
            v.index_name(),
            v.expr(""),
            v.predicate(""),
        );
        sqlx::query(&sql).execute(self.pool()).await?;
        Ok(())
    }

    /// Puts every live entry with text that has no embedding under the configured model on
    /// the embedding queue: after a model change, or for rows written before the queue
    /// existed. Returns how many were queued.
    ///
    /// # Errors
    /// The database failed.
    pub async fn queue_missing_embeddings(&self) -> Result<u64> {
        let sql = format!(
            "INSERT INTO embedding_queue (memory_id)
             SELECT e.memory_id FROM memory_entries e
             WHERE e.is_active AND e.text_content IS NOT NULL AND e.text_content <> ''
               AND NOT EXISTS (SELECT 1 FROM vector_embeddings v
                               WHERE v.memory_id = e.memory_id AND {})
             ON CONFLICT (memory_id) DO NOTHING",
            self.vectors().predicate("v")
        );
        Ok(sqlx::query(&sql)
            .execute(self.pool())
            .await?
            .rows_affected())
    }
}
