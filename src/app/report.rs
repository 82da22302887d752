//! `memshift report`: builds the daily report and writes it as Markdown and HTML.

use crate::config::Config;
use crate::report::{Options, Prometheus, Report};
use crate::store::{Store, VectorIndex};
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Args {
    /// The period: this long before `until`.
    pub since: Duration,
    /// The period's end (default: now).
    pub until: Option<DateTime<Utc>>,
    /// The Prometheus that scrapes the proxies.
    pub prometheus: Option<String>,
    /// Where the report files go (default `<[mirror] data_dir>/reports`).
    pub out: Option<PathBuf>,
    /// Mismatch patterns listed at most.
    pub top: usize,
}

pub struct Written {
    pub report: Report,
    pub markdown: PathBuf,
    pub html: PathBuf,
}

/// Builds the report and writes `report-<stamp>.md` and `.html`.
///
/// # Errors
/// A malformed Prometheus URL, the database failing, a file that cannot be written.
pub async fn run(config: &Config, args: &Args) -> anyhow::Result<Written> {
    let options = Options {
        until: args.until.unwrap_or_else(Utc::now),
        since: args.since,
        top: args.top,
    };
    let prometheus = args
        .prometheus
        .as_deref()
        .map(|url| Prometheus::new(url, Duration::from_secs(30)))
        .transpose()?;
    let url = config.database.resolve_url().map_err(anyhow::Error::msg)?;
    let vectors = VectorIndex::new(&config.embedding.model, config.embedding.dimension);
    let store = Store::connect_lazy(url.expose(), &config.database, vectors)?;
    let report = Report::build(&options, prometheus.as_ref(), store.pool()).await;
    store.close().await;
    let report = report?;

    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| config.mirror.data_dir.join("reports"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let stem = format!("report-{}", crate::reconcile::stamp(report.until));
    let markdown = dir.join(format!("{stem}.md"));
    let html = dir.join(format!("{stem}.html"));
    std::fs::write(&markdown, report.markdown())
        .with_context(|| format!("writing {}", markdown.display()))?;
    std::fs::write(&html, report.html()).with_context(|| format!("writing {}", html.display()))?;
    Ok(Written {
        report,
        markdown,
        html,
    })
}
