//! The report as Markdown, and as one self-contained HTML page with an SVG chart of
//! consistency over time (no scripts, no external assets: it can be mailed or archived).

use super::{OUTCOMES, Report};
use chrono::{DateTime, Utc};
use std::fmt::Write as _;

/// The plan's inconsistency threshold (0.1 %), drawn on the chart as 99.9 % consistency.
const THRESHOLD: f64 = 0.999;

fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{:.3} %", v * 100.0))
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn seconds(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.0} s")
    } else {
        "–".to_owned()
    }
}

/// One of the report's tables.
struct Table {
    title: &'static str,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    /// What the section says when there are no rows.
    empty: &'static str,
}

fn table(
    title: &'static str,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    empty: &'static str,
) -> Table {
    Table {
        title,
        header,
        rows,
        empty,
    }
}

fn tables(r: &Report) -> Vec<Table> {
    let mut header = vec!["agent".to_owned(), "action".to_owned()];
    header.extend(OUTCOMES.iter().map(|o| (*o).to_owned()));
    header.push("consistency".to_owned());
    let consistency = r
        .consistency
        .iter()
        .map(|c| {
            let mut row = vec![c.agent.clone(), c.action.clone()];
            row.extend(OUTCOMES.iter().map(|o| c.count(o).to_string()));
            row.push(percent(c.ratio()));
            row
        })
        .collect();
    let patterns = r
        .patterns
        .iter()
        .map(|p| {
            vec![
                p.count.to_string(),
                p.agent.clone(),
                p.action.clone(),
                p.paths.join(", "),
                time(p.first),
                time(p.last),
            ]
        })
        .collect();
    let outbox = r
        .outbox
        .iter()
        .map(|o| {
            let n = |k: &str| o.deliveries.get(k).copied().unwrap_or(0).to_string();
            vec![
                o.agent.clone(),
                format!("{:.0}", o.max_pending),
                seconds(o.max_oldest_age_seconds),
                format!("{:.0}", o.dead_letters),
                n("delivered"),
                n("retried"),
                n("dead_lettered"),
                o.dropped.to_string(),
            ]
        })
        .collect();
    let rollbacks = r
        .rollbacks
        .iter()
        .map(|b| {
            let automatic: Vec<String> = b
                .automatic
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(t, n)| format!("{t}: {n}"))
                .collect();
            vec![
                b.agent.clone(),
                if automatic.is_empty() {
                    "none".to_owned()
                } else {
                    automatic.join(", ")
                },
                if b.reasons.is_empty() {
                    "none".to_owned()
                } else {
                    b.reasons.join(", ")
                },
                percent(Some(b.share_rolled_back).filter(|v| v.is_finite())),
            ]
        })
        .collect();
    let reconcile = r
        .reconcile
        .iter()
        .map(|run| {
            vec![
                run.agent.clone(),
                time(run.finished_at),
                run.runs_in_period.to_string(),
                format!("{} / {}", run.legacy_entities, run.orchestrator_entities),
                run.inconsistencies().to_string(),
                run.counts
                    .get("legacy_drift")
                    .copied()
                    .unwrap_or(0)
                    .to_string(),
                format!("{} ({} failed)", run.repaired, run.repair_failed),
            ]
        })
        .collect();
    let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    vec![
        table(
            "Consistency per agent and action",
            header,
            consistency,
            "No comparisons in the period (no agent in shadow or live, or no metrics).",
        ),
        table(
            "Worst mismatch patterns",
            strings(&[
                "mismatches",
                "agent",
                "action",
                "differing paths",
                "first",
                "last",
            ]),
            patterns,
            "No mismatch recorded in the period.",
        ),
        table(
            "Outbox health",
            strings(&[
                "agent",
                "max pending",
                "max oldest age",
                "dead letters now",
                "delivered",
                "retried",
                "dead-lettered",
                "dropped",
            ]),
            outbox,
            "No outbox metrics in the period.",
        ),
        table(
            "Rollbacks",
            strings(&[
                "agent",
                "automatic (by trigger)",
                "reasons seen",
                "share of time rolled back",
            ]),
            rollbacks,
            "No rollback metrics in the period.",
        ),
        table(
            "Last reconcile runs",
            strings(&[
                "agent",
                "finished",
                "runs in period",
                "entities (legacy / orchestrator)",
                "inconsistencies",
                "legacy drift",
                "repaired",
            ]),
            reconcile,
            "No reconcile has run (`memshift reconcile --agent NAME --from PATH`).",
        ),
    ]
}

fn headline(r: &Report) -> String {
    let (matches, mismatches) = r.consistency.iter().fold((0, 0), |(m, n), c| {
        (m + c.count("match"), n + c.count("mismatch"))
    });
    let total = matches + mismatches;
    let ratio = (total > 0).then(|| matches as f64 / total as f64);
    format!(
        "Consistency over the period: {} ({matches} matches, {mismatches} mismatches); \
         {} mismatches recorded in the mismatch store.",
        percent(ratio),
        r.mismatches_recorded
    )
}

pub(super) fn markdown(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# memshift daily report\n\n{} to {}\n\n{}\n",
        time(r.from),
        time(r.until),
        headline(r)
    );
    for missing in &r.unavailable {
        let _ = writeln!(out, "> **Unavailable:** {missing}\n");
    }
    for Table {
        title,
        header,
        rows,
        empty,
    } in tables(r)
    {
        let _ = writeln!(out, "## {title}\n");
        if rows.is_empty() {
            let _ = writeln!(out, "{empty}\n");
            continue;
        }
        let cell = |s: &str| s.replace('|', "\\|");
        let _ = writeln!(
            out,
            "| {} |",
            header
                .iter()
                .map(|h| cell(h))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
        for row in rows {
            let _ = writeln!(
                out,
                "| {} |",
                row.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")
            );
        }
        out.push('\n');
    }
    out.push_str("The HTML version of this report charts consistency over time.\n");
    out
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub(super) fn html(r: &Report) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>memshift daily report</title>\n<style>\
         body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}\
         table{{border-collapse:collapse;margin-bottom:1.5em}}\
         th,td{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}\
         th{{background:#f3f3f3}} td:first-child,th:first-child{{text-align:left}}\
         .unavailable{{background:#fff3cd;padding:.5em;border-left:4px solid #e0a800}}\
         </style></head><body>\n<h1>memshift daily report</h1>\n<p>{} to {}</p>\n<p>{}</p>\n",
        escape(&time(r.from)),
        escape(&time(r.until)),
        escape(&headline(r))
    );
    for missing in &r.unavailable {
        let _ = writeln!(
            out,
            "<p class=\"unavailable\"><strong>Unavailable:</strong> {}</p>",
            escape(missing)
        );
    }
    out.push_str("<h2>Consistency over time</h2>\n");
    out.push_str(&chart(r));
    for Table {
        title,
        header,
        rows,
        empty,
    } in tables(r)
    {
        let _ = writeln!(out, "<h2>{}</h2>", escape(title));
        if rows.is_empty() {
            let _ = writeln!(out, "<p>{}</p>", escape(empty));
            continue;
        }
        out.push_str("<table><tr>");
        for h in &header {
            let _ = write!(out, "<th>{}</th>", escape(h));
        }
        out.push_str("</tr>\n");
        for row in rows {
            out.push_str("<tr>");
            for c in &row {
                let _ = write!(out, "<td>{}</td>", escape(c));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n");
    }
    out.push_str("</body></html>\n");
    out
}

const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

/// Consistency over time, one line per agent, the plan's threshold dashed.
fn chart(r: &Report) -> String {
    let points = r.timeline.iter().flat_map(|t| &t.points);
    if r.timeline.is_empty() {
        return "<p>No comparisons to chart in the period.</p>\n".to_owned();
    }
    let (w, h, left, bottom, top, right) = (800.0, 260.0, 70.0, 30.0, 10.0, 160.0);
    let (x0, x1) = (r.from.timestamp() as f64, r.until.timestamp() as f64);
    let lowest = points.map(|(_, v)| *v).fold(THRESHOLD, f64::min);
    // The y axis runs from a round floor under the lowest point (at most 99 %) to 100 %.
    let floor = ((lowest * 100.0 - 0.05).floor() / 100.0).clamp(0.0, 0.99);
    let x = |t: f64| left + (t - x0) / (x1 - x0).max(1.0) * (w - left - right);
    let y = |v: f64| top + (1.0 - v) / (1.0 - floor) * (h - top - bottom);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"consistency over time\" \
         font-family=\"sans-serif\" font-size=\"11\">"
    );
    let _ = writeln!(
        svg,
        "<rect x=\"{left}\" y=\"{top}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999\"/>",
        w - left - right,
        h - top - bottom
    );
    for v in [1.0, (1.0 + floor) / 2.0, floor] {
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{:.2} %</text>",
            left - 6.0,
            y(v) + 4.0,
            v * 100.0
        );
    }
    let _ = writeln!(
        svg,
        "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{t:.1}\" y2=\"{t:.1}\" stroke=\"#e0a800\" \
         stroke-dasharray=\"5,4\"/><text x=\"{:.1}\" y=\"{:.1}\" fill=\"#b08000\">99.9 % (plan)</text>",
        w - right,
        w - right + 6.0,
        y(THRESHOLD) + 4.0,
        t = y(THRESHOLD)
    );
    for (label, t) in [(r.from, x0), (r.until, x1)] {
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            x(t),
            h - 10.0,
            escape(&label.format("%m-%d %H:%M").to_string())
        );
    }
    for (i, line) in r.timeline.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<(f64, f64)> = line
            .points
            .iter()
            .map(|(t, v)| (x(*t as f64), y(*v)))
            .collect();
        let coords: Vec<String> = points
            .iter()
            .map(|(px, py)| format!("{px:.1},{py:.1}"))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>",
            coords.join(" ")
        );
        // Markers too: a sparse line (a short period, a quiet agent) may be one point.
        for (px, py) in &points {
            let _ = writeln!(
                svg,
                "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"2.5\" fill=\"{colour}\"/>"
            );
        }
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{colour}\">{}</text>",
            w - right + 6.0,
            top + 30.0 + 16.0 * i as f64,
            escape(&line.agent)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Consistency, Pattern, Timeline};

    fn report() -> Report {
        let until = DateTime::parse_from_rfc3339("2026-11-24T06:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let from = until - chrono::Duration::hours(24);
        Report {
            from,
            until,
            consistency: vec![Consistency {
                agent: "jarvis_memory".into(),
                action: "get_memories".into(),
                outcomes: [("match", 998), ("mismatch", 2)]
                    .iter()
                    .map(|(o, n)| ((*o).to_owned(), *n))
                    .collect(),
            }],
            timeline: vec![Timeline {
                agent: "jarvis_memory".into(),
                points: vec![(from.timestamp() + 60, 1.0), (until.timestamp(), 0.97)],
            }],
            patterns: vec![Pattern {
                agent: "jarvis_memory".into(),
                action: "get_memories".into(),
                paths: vec!["memories[].text".into(), "a|b<c>".into()],
                count: 2,
                first: from,
                last: until,
            }],
            mismatches_recorded: 2,
            outbox: Vec::new(),
            rollbacks: Vec::new(),
            reconcile: Vec::new(),
            unavailable: vec!["metrics: <down>".into()],
        }
    }

    #[test]
    fn markdown_has_every_section_and_escapes_table_cells() {
        let md = markdown(&report());
        assert!(md.contains("Consistency over the period: 99.800 % (998 matches, 2 mismatches)"));
        assert!(
            md.contains("| jarvis_memory | get_memories | 998 | 2 | 0 |"),
            "{md}"
        );
        assert!(md.contains("memories[].text, a\\|b<c>"), "{md}");
        assert!(md.contains("No outbox metrics in the period."));
        assert!(md.contains("> **Unavailable:** metrics: <down>"));
    }

    #[test]
    fn html_escapes_and_charts_down_to_the_lowest_point() {
        let html = html(&report());
        assert!(html.contains("a|b&lt;c&gt;"), "{html}");
        assert!(html.contains("metrics: &lt;down&gt;"));
        assert!(!html.contains("<down>"));
        assert!(html.contains("<polyline"));
        // 97 % is the lowest point: the axis floor is 96 %.
        assert!(html.contains(">96.00 %</text>"), "{html}");
        assert!(html.contains("99.9 % (plan)"));
    }
}
