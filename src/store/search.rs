//! Search: pgvector cosine similarity over the HNSW index, and PostgreSQL full-text search.
//! Fusing the two (`hybrid`) happens in [`crate::orchestrator`], on these two lists.

use super::entry::{ENTRY_COLUMNS, Entry, VISIBLE};
use super::filter::Filter;
use super::{Result, Store};
use pgvector::Vector;
use sqlx::QueryBuilder;

/// An entry with its score under one search type.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Scored {
    #[sqlx(flatten)]
    pub entry: Entry,
    pub score: f64,
}

impl Store {
    /// The `limit` visible entries nearest to `query` under the configured model, with
    /// cosine similarity (1 − cosine distance) at least `min_similarity`. Entries whose
    /// embedding is still queued are not found yet.
    ///
    /// # Errors
    /// The database failed.
    pub async fn semantic_search(
        &self,
        query: &[f32],
        filter: &Filter,
        min_similarity: Option<f64>,
        limit: i64,
    ) -> Result<Vec<Scored>> {
        let v = self.vectors();
        let expr = v.expr("v");
        let cast = format!("::vector({})", v.dimension());
        let q = Vector::from(query.to_vec());
        let mut qb = QueryBuilder::new(format!("SELECT {ENTRY_COLUMNS}, 1 - ({expr} <=> "));
        qb.push_bind(q.clone()).push(format!(
            "{cast})::float8 AS score FROM vector_embeddings v \
                 JOIN memory_entries e ON e.memory_id = v.memory_id WHERE {} AND {VISIBLE}",
            v.predicate("v")
        ));
        filter.push_conditions(&mut qb);
        if let Some(min) = min_similarity {
            qb.push(format!(" AND 1 - ({expr} <=> "))
                .push_bind(q.clone())
                .push(format!("{cast}) >= "))
                .push_bind(min);
        }
        qb.push(format!(" ORDER BY {expr} <=> "))
            .push_bind(q)
            .push(format!("{cast}, e.memory_id LIMIT "))
            .push_bind(limit);
        Ok(qb.build_query_as().fetch_all(self.pool()).await?)
    }

    /// Full-text search on `text_content`: entries matching any word of `query` (after
    /// English stemming and stop words), ranked by `ts_rank_cd` normalised into 0..1
    /// (rank / (rank + 1)), so that entries matching more words, closer together, come first.
    ///
    /// # Errors
    /// The database failed.
    pub async fn keyword_search(
        &self,
        query: &str,
        filter: &Filter,
        min_score: Option<f64>,
        limit: i64,
    ) -> Result<Vec<Scored>> {
        // plainto_tsquery ANDs the words; any-word matching ranks better for short memories,
        // so the ANDs become ORs. The cast back to tsquery does not stem the lexemes again.
        let mut qb = QueryBuilder::new(format!(
            "SELECT * FROM (SELECT {ENTRY_COLUMNS}, \
                 ts_rank_cd(to_tsvector('english', e.text_content), query.q, 32)::float8 AS score \
             FROM memory_entries e, \
                 (SELECT replace(plainto_tsquery('english', "
        ));
        qb.push_bind(query.to_owned()).push(format!(
            ")::text, '&', '|')::tsquery AS q) AS query \
             WHERE to_tsvector('english', e.text_content) @@ query.q AND {VISIBLE}"
        ));
        filter.push_conditions(&mut qb);
        qb.push(") AS hits");
        if let Some(min) = min_score {
            qb.push(" WHERE hits.score >= ").push_bind(min);
        }
        qb.push(" ORDER BY hits.score DESC, hits.created_at DESC, hits.memory_id LIMIT ")
            .push_bind(limit);
        Ok(qb.build_query_as().fetch_all(self.pool()).await?)
    }
}
