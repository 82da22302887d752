//! `batch_read`, `bulk_delete`, `summarize`: requests about many memories at once.

use super::memories::memory_type;
use super::service::Service;
use crate::api::{ApiError, ErrorCode, Fields, Request};
use crate::store::{Filter, Sort, SortField, entry_timestamp as ts};
use serde_json::{Value, json};

const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 1000;
/// `summarize` quotes at most this many of the newest memories, each cut to
/// `SUMMARY_LINE_CHARS` characters.
const SUMMARY_LINES: i64 = 20;
const SUMMARY_LINE_CHARS: usize = 200;

/// `time_range` `{start, end}` of `f` (found at `path`), on `created_at`, both optional.
pub fn time_range(f: &Fields, path: &'static str, filter: &mut Filter) -> Result<(), ApiError> {
    if let Some(range) = f.nested("time_range", path)? {
        filter.created_from = range.time("start")?;
        filter.created_to = range.time("end")?;
    }
    Ok(())
}

/// The keys every filter shares: `tags` and the (ext) `user_id`, `session_id`.
pub fn common(f: &Fields, filter: &mut Filter) -> Result<(), ApiError> {
    filter.tags = f.id_list("tags", 64)?.unwrap_or_default();
    filter.user_id = f.id("user_id")?;
    filter.session_id = f.id("session_id")?;
    Ok(())
}

pub async fn batch_read(s: &Service, req: &Request) -> Result<Value, ApiError> {
    let p = Fields::new(&req.payload, "payload");
    let mut filter = Filter {
        memory_ids: p.id_list("memory_ids", MAX_PAGE as usize)?,
        ..Filter::default()
    };
    let f = p.nested("filter", "payload.filter")?;
    if filter.memory_ids.is_none() && f.is_none() {
        return Err(
            ApiError::invalid("missing field: payload.memory_ids or payload.filter")
                .with("field", "payload.filter"),
        );
    }
    let (mut limit, mut offset, mut sort) = (DEFAULT_PAGE, 0, Sort::default());
    let mut with_session = false;
    let mut sessions_kept = None;
    if let Some(f) = f {
        with_session = f.bool("with_session")?.unwrap_or(false);
        sessions_kept = f.int("legacy_sessions_kept", 1, 1_000_000)?;
        filter.memory_types = memory_type(&f, "memory_type")?.into_iter().collect();
        time_range(&f, "payload.filter.time_range", &mut filter)?;
        common(&f, &mut filter)?;
        limit = f.int("limit", 1, MAX_PAGE)?.unwrap_or(DEFAULT_PAGE);
        offset = f.int("offset", 0, i64::from(i32::MAX))?.unwrap_or(0);
        if let Some(so) = f.nested("sort", "payload.filter.sort")? {
            if let Some(name) = so.str("field")? {
                sort.field = SortField::from_name(name).ok_or_else(|| {
                    ApiError::new(ErrorCode::ValidationError,
                        "payload.filter.sort.field must be created_at, updated_at, priority or expires_at")
                        .with("field", "payload.filter.sort.field")
                })?;
            }
            sort.descending = match so.str("order")? {
                None | Some("desc") => true,
                Some("asc") => false,
                Some(_) => {
                    return Err(ApiError::new(
                        ErrorCode::ValidationError,
                        "payload.filter.sort.order must be asc or desc",
                    )
                    .with("field", "payload.filter.sort.order"));
                }
            };
        }
    }
    let (entries, total) = s.store.batch_read(&filter, sort, limit, offset).await?;
    let has_more = offset + (entries.len() as i64) < total;
    let mut data = json!({
        "memories": entries.iter().map(|e| e.to_json()).collect::<Vec<_>>(),
        "total_count": total,
        "page_info": {"limit": limit, "offset": offset, "has_more": has_more},
    });
    // (ext) The session the filter names, in the same answer: session_memory forgets a
    // session an hour after its creation, and once it is older than the newest 100
    // (`legacy_sessions_kept`), so a legacy-shape answer needs those times.
    if let (true, Some(sid)) = (with_session, &filter.session_id) {
        let created = s.store.session_created_at(sid).await?;
        data["session"] = match created {
            Some(t) => {
                let mut session = json!({"session_id": sid, "created_at": ts(t)});
                if let Some(kept) = sessions_kept {
                    let pushed_out = s.store.session_pushed_out_at(sid, kept).await?;
                    session["pushed_out_at"] = pushed_out.map_or(Value::Null, |t| json!(ts(t)));
                }
                session
            }
            None => Value::Null,
        };
    }
    Ok(data)
}

pub async fn bulk_delete(s: &Service, req: &Request) -> Result<Value, ApiError> {
    let p = Fields::new(&req.payload, "payload");
    let f = p.nested("filter", "payload.filter")?.ok_or_else(|| {
        ApiError::invalid("missing field: payload.filter").with("field", "payload.filter")
    })?;
    let mut filter = Filter {
        memory_types: memory_type(&f, "memory_type")?.into_iter().collect(),
        older_than: f.time("older_than")?,
        ..Filter::default()
    };
    common(&f, &mut filter)?;
    if filter.is_unrestricted() {
        return Err(ApiError::new(ErrorCode::ValidationError,
            "payload.filter selects every memory: give memory_type, older_than, tags, user_id or session_id")
            .with("field", "payload.filter"));
    }
    let deleted = s.store.bulk_delete(&filter).await?;
    Ok(json!({"deleted_count": deleted}))
}

/// An extractive summary (no language model): how many memories match, and the newest
/// ones' text in chronological order.
pub async fn summarize(s: &Service, req: &Request) -> Result<Value, ApiError> {
    let p = Fields::new(&req.payload, "payload");
    let mut filter = Filter {
        memory_types: memory_type(&p, "memory_type")?.into_iter().collect(),
        session_id: req.session_id.clone(),
        user_id: p.id("user_id")?,
        ..Filter::default()
    };
    time_range(&p, "payload.time_range", &mut filter)?;
    let (count, lines) = s.store.summary_input(&filter, SUMMARY_LINES).await?;
    let summary = if count == 0 {
        "No memories match.".to_owned()
    } else {
        let kind = filter
            .memory_types
            .first()
            .map_or(String::new(), |t| format!(" of type {t}"));
        let mut out = format!("{count} memories{kind}");
        if let (Some(first), Some(last)) = (lines.first(), lines.last()) {
            out.push_str(&format!(
                "; the newest {} from {} to {}:",
                lines.len(),
                ts(first.0),
                ts(last.0)
            ));
        }
        for (_, text) in &lines {
            let cut: String = text.chars().take(SUMMARY_LINE_CHARS).collect();
            let ellipsis = if cut.len() < text.len() { "…" } else { "" };
            out.push_str(&format!("\n- {cut}{ellipsis}"));
        }
        out
    };
    Ok(json!({"summary": summary, "memory_count": count}))
}
