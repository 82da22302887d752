//! Queries over many memories chosen by a filter: `batch_read`, `bulk_delete`, `summarize`,
//! and the filter part of `search`.

use super::entry::{ENTRY_COLUMNS, Entry, VISIBLE};
use super::{Result, Store};
use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder};

/// Which memories a request is about. Empty fields do not restrict.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    pub memory_ids: Option<Vec<String>>,
    pub memory_types: Vec<String>,
    /// `created_at >= from`.
    pub created_from: Option<DateTime<Utc>>,
    /// `created_at <= to`.
    pub created_to: Option<DateTime<Utc>>,
    /// `created_at < older_than` (`bulk_delete`).
    pub older_than: Option<DateTime<Utc>>,
    /// Entries carrying every one of these tags.
    pub tags: Vec<String>,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
}

impl Filter {
    /// Whether the filter selects everything (bulk_delete refuses that).
    pub fn is_unrestricted(&self) -> bool {
        *self == Filter::default()
    }

    /// Appends ` AND …` for every restriction, on `memory_entries e`.
    pub fn push_conditions(&self, qb: &mut QueryBuilder<'_, Postgres>) {
        if let Some(ids) = &self.memory_ids {
            qb.push(" AND e.memory_id = ANY(")
                .push_bind(ids.clone())
                .push(")");
        }
        if !self.memory_types.is_empty() {
            qb.push(" AND e.memory_type = ANY(")
                .push_bind(self.memory_types.clone())
                .push(")");
        }
        if let Some(t) = self.created_from {
            qb.push(" AND e.created_at >= ").push_bind(t);
        }
        if let Some(t) = self.created_to {
            qb.push(" AND e.created_at <= ").push_bind(t);
        }
        if let Some(t) = self.older_than {
            qb.push(" AND e.created_at < ").push_bind(t);
        }
        if !self.tags.is_empty() {
            let mut tags = self.tags.clone();
            tags.sort();
            tags.dedup();
            let n = tags.len() as i64;
            qb.push(" AND (SELECT count(*) FROM memory_tags t WHERE t.memory_id = e.memory_id AND t.tag = ANY(")
                .push_bind(tags)
                .push(")) = ")
                .push_bind(n);
        }
        if let Some(u) = &self.user_id {
            qb.push(" AND e.user_id = ").push_bind(u.clone());
        }
        if let Some(s) = &self.session_id {
            qb.push(" AND e.session_id = ").push_bind(s.clone());
        }
    }
}

/// The column `batch_read` sorts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortField {
    CreatedAt,
    UpdatedAt,
    Priority,
    ExpiresAt,
}

impl SortField {
    pub fn from_name(s: &str) -> Option<SortField> {
        Some(match s {
            "created_at" => SortField::CreatedAt,
            "updated_at" => SortField::UpdatedAt,
            "priority" => SortField::Priority,
            "expires_at" => SortField::ExpiresAt,
            _ => return None,
        })
    }

    fn column(self) -> &'static str {
        match self {
            SortField::CreatedAt => "e.created_at",
            SortField::UpdatedAt => "e.updated_at",
            SortField::Priority => "e.priority",
            SortField::ExpiresAt => "e.expires_at",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sort {
    pub field: SortField,
    pub descending: bool,
}

impl Default for Sort {
    fn default() -> Self {
        Sort {
            field: SortField::CreatedAt,
            descending: true,
        }
    }
}

impl Store {
    /// One page of the visible memories matching `filter`, and how many match in all.
    ///
    /// # Errors
    /// The database failed.
    pub async fn batch_read(
        &self,
        filter: &Filter,
        sort: Sort,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Entry>, i64)> {
        let mut count = QueryBuilder::new(format!(
            "SELECT count(*) FROM memory_entries e WHERE {VISIBLE}"
        ));
        filter.push_conditions(&mut count);
        let (total,): (i64,) = count.build_query_as().fetch_one(self.pool()).await?;

        let mut page = QueryBuilder::new(format!(
            "SELECT {ENTRY_COLUMNS} FROM memory_entries e WHERE {VISIBLE}"
        ));
        filter.push_conditions(&mut page);
        let order = if sort.descending { "DESC" } else { "ASC" };
        // The id breaks ties, so that pages neither repeat nor skip entries.
        page.push(format!(
            " ORDER BY {} {order} NULLS LAST, e.memory_id {order} LIMIT ",
            sort.field.column()
        ))
        .push_bind(limit)
        .push(" OFFSET ")
        .push_bind(offset);
        let entries = page.build_query_as().fetch_all(self.pool()).await?;
        Ok((entries, total))
    }

    /// Soft-deletes every visible memory matching `filter`; returns how many.
    ///
    /// # Errors
    /// The database failed.
    pub async fn bulk_delete(&self, filter: &Filter) -> Result<u64> {
        let mut qb = QueryBuilder::new(format!(
            "UPDATE memory_entries e SET is_active = false, updated_at = now() WHERE {VISIBLE}"
        ));
        filter.push_conditions(&mut qb);
        Ok(qb.build().execute(self.pool()).await?.rows_affected())
    }

    /// How many visible memories match, and the text of the newest `newest` of them
    /// (oldest first), for `summarize`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn summary_input(
        &self,
        filter: &Filter,
        newest: i64,
    ) -> Result<(i64, Vec<(DateTime<Utc>, String)>)> {
        let mut count = QueryBuilder::new(format!(
            "SELECT count(*) FROM memory_entries e WHERE {VISIBLE}"
        ));
        filter.push_conditions(&mut count);
        let (total,): (i64,) = count.build_query_as().fetch_one(self.pool()).await?;
        let mut qb = QueryBuilder::new(format!(
            "SELECT e.created_at, e.text_content FROM memory_entries e
             WHERE {VISIBLE} AND COALESCE(e.text_content, '') <> ''"
        ));
        filter.push_conditions(&mut qb);
        qb.push(" ORDER BY e.created_at DESC, e.memory_id DESC LIMIT ")
            .push_bind(newest);
        let mut rows: Vec<(DateTime<Utc>, String)> =
            qb.build_query_as().fetch_all(self.pool()).await?;
        rows.reverse();
        Ok((total, rows))
    }
}
