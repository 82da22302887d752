//! `memshift report`: builds the daily report and writes it as Markdown and HTML.

use crate::config::Config;
use crate::report::{Options, Prometheus, Report};
use crate::store::{Store, VectorIndex};
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The daily reconciliation report: consistency per agent and action (and over time),
/// the worst mismatch patterns, outbox health, rollbacks and the last reconcile runs,
/// as Markdown and HTML. Exit 0: every source read; 2: written without a source (see
/// the report); 1: failed.
// The doc comments are the command line's help text: `[[agents]]` is TOML, not a link.
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// The period the report covers, up to now.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub since: Duration,
    /// The period's end, RFC 3339 (default: now).
    #[arg(long)]
    pub until: Option<DateTime<Utc>>,
    /// The Prometheus that scrapes the proxies (its base URL).
    #[arg(long, env = "MEMSHIFT_PROMETHEUS")]
    pub prometheus: Option<String>,
    /// Where the report files go (default: <[mirror] data_dir>/reports).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the report as JSON too.
    #[arg(long)]
    pub json: bool,
    /// Mismatch patterns listed at most.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
}

/// `memshift report`: writes it and says where (or prints it as JSON).
///
/// # Errors
/// As [`run`].
pub fn execute(config: &Config, args: &Args) -> anyhow::Result<ExitCode> {
    let written = super::block_on(run(config, args))?;
    let r = &written.report;
    if args.json {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        for missing in &r.unavailable {
            eprintln!("memshift: unavailable: {missing}");
        }
        println!(
            "report: {} and {}",
            written.markdown.display(),
            written.html.display()
        );
    }
    Ok(if r.is_complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
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
    let report = Report::build(&options, prometheus.as_ref(), &store).await;
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
