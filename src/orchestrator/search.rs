//! `search`: semantic (pgvector), keyword (full text) and hybrid (reciprocal rank fusion).

use super::queries::{common, time_range};
use super::service::Service;
use crate::api::{ApiError, ErrorCode, Fields, Request};
use crate::store::{Filter, Scored};
use serde_json::{Value, json};
use std::collections::HashMap;

const DEFAULT_LIMIT: i64 = 10;
const MAX_LIMIT: i64 = 100;
/// The `k` of reciprocal rank fusion: 60, as in Cormack et al., damps the head of each
/// list so that one list's first place does not outweigh agreement between both.
const RRF_K: f64 = 60.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SearchType {
    Semantic,
    Keyword,
    Hybrid,
}

impl SearchType {
    fn name(self) -> &'static str {
        match self {
            SearchType::Semantic => "semantic",
            SearchType::Keyword => "keyword",
            SearchType::Hybrid => "hybrid",
        }
    }
}

/// A validated `search` request.
struct Query<'a> {
    text: &'a str,
    search_type: SearchType,
    filter: Filter,
    min_similarity: Option<f64>,
    limit: i64,
}

fn parse(req: &Request) -> Result<Query<'_>, ApiError> {
    let p = Fields::new(&req.payload, "payload");
    let text = p.required_str("query")?;
    if text.trim().is_empty() {
        return Err(
            ApiError::new(ErrorCode::ValidationError, "payload.query is empty")
                .with("field", "payload.query"),
        );
    }
    let search_type = match p.str("search_type")? {
        None | Some("hybrid") => SearchType::Hybrid,
        Some("semantic") => SearchType::Semantic,
        Some("keyword") => SearchType::Keyword,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::ValidationError,
                "payload.search_type must be semantic, keyword or hybrid",
            )
            .with("field", "payload.search_type"));
        }
    };
    let mut query = Query {
        text,
        search_type,
        filter: Filter::default(),
        min_similarity: None,
        limit: DEFAULT_LIMIT,
    };
    if let Some(f) = p.nested("filters", "payload.filters")? {
        query.filter.memory_types = f.id_list("memory_types", 16)?.unwrap_or_default();
        time_range(&f, "payload.filters.time_range", &mut query.filter)?;
        common(&f, &mut query.filter)?;
        query.min_similarity = f.number("min_similarity", -1.0, 1.0)?;
        query.limit = f.int("limit", 1, MAX_LIMIT)?.unwrap_or(DEFAULT_LIMIT);
    }
    Ok(query)
}

pub async fn search(s: &Service, req: &Request) -> Result<Value, ApiError> {
    let Query {
        text: query,
        search_type,
        filter,
        min_similarity,
        limit,
    } = parse(req)?;
    let results = match search_type {
        SearchType::Keyword => {
            s.store
                .keyword_search(query, &filter, min_similarity, limit)
                .await?
        }
        SearchType::Semantic => semantic(s, query, &filter, min_similarity, limit).await?,
        SearchType::Hybrid => {
            // Each list deep enough that fusion can promote an entry ranked low in one list.
            let depth = (limit * 4).max(40);
            let sem = semantic(s, query, &filter, min_similarity, depth).await?;
            let key = s.store.keyword_search(query, &filter, None, depth).await?;
            fuse(sem, key, limit as usize)
        }
    };
    let embedded = search_type != SearchType::Keyword;
    Ok(json!({
        "results": results.iter().map(|r| {
            let mut e = r.entry.to_json();
            e["similarity_score"] = json!(r.score);
            e
        }).collect::<Vec<_>>(),
        "total_count": results.len(),
        "search_metadata": {
            "search_type": search_type.name(),
            "embedding_model": embedded.then_some(s.embedding.model.as_str()),
            "query_embedding_dimension": if embedded { s.embedding.dimension } else { 0 },
        },
    }))
}

async fn semantic(
    s: &Service,
    query: &str,
    filter: &Filter,
    min_similarity: Option<f64>,
    limit: i64,
) -> Result<Vec<Scored>, ApiError> {
    let vectors = s.embedder.embed(&[query.to_owned()]).await.map_err(|e| {
        ApiError::new(
            ErrorCode::SearchError,
            format!("the query could not be embedded: {e}"),
        )
        .with("reason", e.as_label())
    })?;
    // A query without a single word matches nothing semantically.
    let Some(Some(vector)) = vectors.into_iter().next() else {
        return Ok(Vec::new());
    };
    Ok(s.store
        .semantic_search(&vector, filter, min_similarity, limit)
        .await?)
}

/// Reciprocal rank fusion of two rankings: each entry scores Σ 1 / (k + rank) over the
/// lists it is in, scaled so that first place in both lists is 1.0.
fn fuse(semantic: Vec<Scored>, keyword: Vec<Scored>, limit: usize) -> Vec<Scored> {
    let best = 2.0 / (RRF_K + 1.0);
    let mut fused: HashMap<String, Scored> = HashMap::new();
    for list in [semantic, keyword] {
        for (rank, hit) in list.into_iter().enumerate() {
            let add = 1.0 / (RRF_K + rank as f64 + 1.0) / best;
            fused
                .entry(hit.entry.memory_id.clone())
                .and_modify(|h| h.score += add)
                .or_insert(Scored { score: add, ..hit });
        }
    }
    let mut out: Vec<Scored> = fused.into_values().collect();
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| b.entry.created_at.cmp(&a.entry.created_at))
            .then_with(|| a.entry.memory_id.cmp(&b.entry.memory_id))
    });
    out.truncate(limit);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Entry;
    use sqlx::types::Json;

    fn hit(id: &str, score: f64) -> Scored {
        let t = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        Scored {
            entry: Entry {
                memory_id: id.into(),
                session_id: None,
                user_id: None,
                memory_type: "context".into(),
                content: Json(json!({})),
                source_agent: None,
                created_at: t,
                updated_at: t,
                expires_at: None,
                priority: 5,
                tags: vec![],
            },
            score,
        }
    }

    #[test]
    fn fusion_rewards_agreement_and_is_scaled_to_one() {
        let sem = vec![hit("a", 0.9), hit("b", 0.8), hit("c", 0.7)];
        let key = vec![hit("b", 0.5), hit("d", 0.4)];
        let out = fuse(sem, key, 3);
        let ids: Vec<_> = out.iter().map(|s| s.entry.memory_id.as_str()).collect();
        assert_eq!(ids, ["b", "a", "d"]);
        let top = fuse(vec![hit("x", 1.0)], vec![hit("x", 1.0)], 1);
        assert!((top[0].score - 1.0).abs() < 1e-12);
    }
}
