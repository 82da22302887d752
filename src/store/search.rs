//! Search: pgvector cosine similarity over the HNSW index, and PostgreSQL full-text search.
//! Fusing the two (`hybrid`) happens in [`crate::orchestrator`], on these two lists.

use super::entry::{ENTRY_COLUMNS, Entry, VISIBLE};
use super::filter::Filter;
use super::{Result, Store};
use pgvector::Vector;
use sqlx::QueryBuilder;

/// A keyword pass ranks at most this many matching entries, the newest. Ranking reads every
/// candidate's `tsvector`, so a query whose words are in most entries would otherwise cost
/// time in proportion to the table (≈400 ms at 100 000 entries in `make
/// bench-orchestrator`); the newest matches are the likeliest to matter to an assistant.
pub const RANK_CANDIDATES: i64 = 2000;

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

    /// Full-text search on `text_content` (English stemming and stop words). Entries with
    /// every word of `query` come first; if they are fewer than `limit`, entries with any of
    /// its words fill the page. The score says which: 0.5 + r / 2 for every word, r / 2 for
    /// some, where r is `ts_rank_cd` normalised into 0..1 (rank / (rank + 1)): more
    /// occurrences, closer together, rank higher. Each pass ranks the newest
    /// [`RANK_CANDIDATES`] matches.
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
        let mut hits = self
            .keyword_pass(query, Match::All, filter, min_score, limit, &[])
            .await?;
        if (hits.len() as i64) < limit {
            let seen: Vec<String> = hits.iter().map(|h| h.entry.memory_id.clone()).collect();
            let rest = limit - hits.len() as i64;
            hits.extend(
                self.keyword_pass(query, Match::Any, filter, min_score, rest, &seen)
                    .await?,
            );
        }
        Ok(hits)
    }

    async fn keyword_pass(
        &self,
        query: &str,
        words: Match,
        filter: &Filter,
        min_score: Option<f64>,
        limit: i64,
        exclude: &[String],
    ) -> Result<Vec<Scored>> {
        // plainto_tsquery ANDs the words. For any-word matching the ANDs become ORs; the
        // cast back to tsquery does not stem the lexemes a second time.
        let tsquery = match words {
            Match::All => "plainto_tsquery('english', ",
            Match::Any => "replace(plainto_tsquery('english', ",
        };
        let (close, base) = match words {
            Match::All => (")", 0.5),
            Match::Any => (")::text, '&', '|')::tsquery", 0.0),
        };
        // Innermost: the newest RANK_CANDIDATES matches (an index can find them without
        // visiting every match). Then rank and cut. Outermost: the entry's columns (tags
        // included), for the page only.
        let mut qb = QueryBuilder::new(format!(
            "SELECT {ENTRY_COLUMNS}, hits.score FROM (\
                 SELECT c.memory_id, c.created_at, \
                     ({base} + ts_rank_cd(c.text_search, c.q, 32) / 2)::float8 AS score \
                 FROM (SELECT e.memory_id, e.created_at, e.text_search, query.q \
                       FROM memory_entries e, (SELECT {tsquery}"
        ));
        qb.push_bind(query.to_owned()).push(format!(
            "{close} AS q) AS query \
             WHERE e.text_search @@ query.q AND {VISIBLE}"
        ));
        filter.push_conditions(&mut qb);
        if !exclude.is_empty() {
            qb.push(" AND e.memory_id <> ALL(")
                .push_bind(exclude.to_vec())
                .push(")");
        }
        qb.push(format!(
            " ORDER BY e.created_at DESC LIMIT {RANK_CANDIDATES}) AS c"
        ));
        if let Some(min) = min_score {
            qb.push(format!(
                " WHERE ({base} + ts_rank_cd(c.text_search, c.q, 32) / 2) >= "
            ))
            .push_bind(min);
        }
        qb.push(" ORDER BY score DESC, c.created_at DESC, c.memory_id LIMIT ")
            .push_bind(limit)
            .push(
                ") AS hits JOIN memory_entries e ON e.memory_id = hits.memory_id \
                 ORDER BY hits.score DESC, hits.created_at DESC, hits.memory_id",
            );
        Ok(qb.build_query_as().fetch_all(self.pool()).await?)
    }
}

/// Which entries a keyword pass matches.
#[derive(Clone, Copy)]
enum Match {
    /// Every word of the query.
    All,
    /// Any word of the query.
    Any,
}
