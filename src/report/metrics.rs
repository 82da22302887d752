//! The report's Prometheus side: instant and range queries through the HTTP API.

use super::{Consistency, OUTCOMES, Options, Outbox, Report, Rollbacks, Timeline};
use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// A Prometheus HTTP API.
pub struct Prometheus {
    base: url::Url,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    result: Vec<Series>,
}

#[derive(Deserialize)]
struct Series {
    metric: BTreeMap<String, String>,
    #[serde(default)]
    value: Option<(f64, String)>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

impl Series {
    fn label(&self, name: &str) -> String {
        self.metric.get(name).cloned().unwrap_or_default()
    }

    fn number(&self) -> f64 {
        self.value
            .as_ref()
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(f64::NAN)
    }
}

impl Prometheus {
    /// # Errors
    /// `base` is not an http(s) URL.
    pub fn new(base: &str, timeout: Duration) -> anyhow::Result<Prometheus> {
        let base = url::Url::parse(base).with_context(|| format!("Prometheus URL {base:?}"))?;
        if !matches!(base.scheme(), "http" | "https") {
            bail!("Prometheus URL {base}: not http or https");
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .context("building the HTTP client")?;
        Ok(Prometheus { base, client })
    }

    pub fn base(&self) -> &url::Url {
        &self.base
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Vec<Series>> {
        let url = self.base.join(path).context("API URL")?;
        let response = self
            .client
            .get(url)
            .query(query)
            .send()
            .await
            .context("no answer")?;
        let status = response.status();
        let body = response.text().await.context("reading the answer")?;
        let answer: Answer = serde_json::from_str(&body)
            .with_context(|| format!("HTTP {status}: not a Prometheus API answer"))?;
        if answer.status != "success" {
            bail!(
                "HTTP {status}: {}",
                answer.error.unwrap_or_else(|| answer.status.clone())
            );
        }
        Ok(answer.data.map(|d| d.result).unwrap_or_default())
    }

    async fn instant(&self, expr: &str, at: DateTime<Utc>) -> anyhow::Result<Vec<Series>> {
        self.get(
            "api/v1/query",
            &[
                ("query", expr.to_owned()),
                ("time", at.timestamp().to_string()),
            ],
        )
        .await
        .with_context(|| format!("query {expr}"))
    }

    async fn range(
        &self,
        expr: &str,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        step: u64,
    ) -> anyhow::Result<Vec<Series>> {
        self.get(
            "api/v1/query_range",
            &[
                ("query", expr.to_owned()),
                ("start", from.timestamp().to_string()),
                ("end", until.timestamp().to_string()),
                ("step", step.to_string()),
            ],
        )
        .await
        .with_context(|| format!("query {expr}"))
    }
}

/// Points on the consistency chart at most.
const POINTS: u64 = 96;

/// Fills the report's metric sections.
pub(super) async fn fill(
    report: &mut Report,
    p: &Prometheus,
    options: &Options,
) -> anyhow::Result<()> {
    let at = options.until;
    let range = format!("{}s", options.since.as_secs().max(1));

    let mut consistency: BTreeMap<(String, String), Consistency> = BTreeMap::new();
    let expr =
        format!("sum by (agent, action, outcome) (increase(memshift_comparisons_total[{range}]))");
    for s in p.instant(&expr, at).await? {
        let (agent, action) = (s.label("agent"), s.label("action"));
        let row = consistency
            .entry((agent.clone(), action.clone()))
            .or_insert_with(|| Consistency {
                agent,
                action,
                outcomes: OUTCOMES.iter().map(|o| ((*o).to_owned(), 0)).collect(),
            });
        row.outcomes.insert(s.label("outcome"), count(s.number()));
    }
    report.consistency = consistency
        .into_values()
        .filter(|c| c.outcomes.values().any(|n| *n > 0))
        .collect();

    // Each point covers at least a minute, so that a few scrapes fall in it; the points are
    // laid back from the period's end, so the last one covers its last minute.
    let step = (options.since.as_secs() / POINTS).max(5);
    let window = step.max(60);
    let first = at - chrono::Duration::seconds((options.since.as_secs() / step * step) as i64);
    let expr = format!(
        "sum by (agent) (increase(memshift_comparisons_total{{outcome=\"match\"}}[{window}s])) \
         / sum by (agent) (increase(memshift_comparisons_total{{outcome=~\"match|mismatch\"}}[{window}s]))"
    );
    report.timeline = p
        .range(&expr, first, at, step)
        .await?
        .into_iter()
        .map(|s| Timeline {
            agent: s.label("agent"),
            points: s
                .values
                .iter()
                .filter_map(|(t, v)| {
                    let v: f64 = v.parse().ok()?;
                    v.is_finite().then_some((*t as i64, v))
                })
                .collect(),
        })
        .filter(|t| !t.points.is_empty())
        .collect();

    let mut outbox: BTreeMap<String, Outbox> = BTreeMap::new();
    type Setter = fn(&mut Outbox, f64);
    let gauges: [(String, Setter); 3] = [
        (
            format!("max by (agent) (max_over_time(memshift_outbox_pending[{range}]))"),
            |o, v| o.max_pending = v,
        ),
        (
            format!("max by (agent) (max_over_time(memshift_outbox_oldest_age_seconds[{range}]))"),
            |o, v| o.max_oldest_age_seconds = v,
        ),
        (
            "sum by (agent) (memshift_outbox_dead_letters)".to_owned(),
            |o, v| o.dead_letters = v,
        ),
    ];
    for (expr, set) in &gauges {
        for s in p.instant(expr, at).await? {
            set(outbox.entry(s.label("agent")).or_default(), s.number());
        }
    }
    let expr =
        format!("sum by (agent, outcome) (increase(memshift_mirror_deliveries_total[{range}]))");
    for s in p.instant(&expr, at).await? {
        let o = outbox.entry(s.label("agent")).or_default();
        o.deliveries.insert(s.label("outcome"), count(s.number()));
    }
    let expr = format!("sum by (agent) (increase(memshift_mirror_dropped_total[{range}]))");
    for s in p.instant(&expr, at).await? {
        outbox.entry(s.label("agent")).or_default().dropped = count(s.number());
    }
    report.outbox = outbox
        .into_iter()
        .map(|(agent, o)| Outbox { agent, ..o })
        .collect();

    let mut rollbacks: BTreeMap<String, Rollbacks> = BTreeMap::new();
    let expr =
        format!("sum by (agent, trigger) (increase(memshift_rollback_trips_total[{range}]))");
    for s in p.instant(&expr, at).await? {
        let r = rollbacks.entry(s.label("agent")).or_default();
        r.automatic.insert(s.label("trigger"), count(s.number()));
    }
    let expr =
        format!("max by (agent, reason) (max_over_time(memshift_rollback_reason[{range}])) > 0");
    for s in p.instant(&expr, at).await? {
        rollbacks
            .entry(s.label("agent"))
            .or_default()
            .reasons
            .push(s.label("reason"));
    }
    let expr = format!("max by (agent) (avg_over_time(memshift_rollback_active[{range}]))");
    for s in p.instant(&expr, at).await? {
        rollbacks
            .entry(s.label("agent"))
            .or_default()
            .share_rolled_back = s.number();
    }
    report.rollbacks = rollbacks
        .into_iter()
        .map(|(agent, r)| Rollbacks { agent, ..r })
        .collect();
    Ok(())
}

/// `increase()` extrapolates to fractions; a count of events is whole.
fn count(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        v.round() as u64
    } else {
        0
    }
}
