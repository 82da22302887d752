#!/usr/bin/env python3
"""Writes memshift's Grafana dashboards (dashboards/grafana/*.json) from the panels below.

The JSON files are committed; edit this file and run it again (`python3
dashboards/generate.py`). `--check` exits 1 when a committed file differs from what this
file generates, which the test suite runs so the two cannot drift apart.

Every panel's PromQL may use two Grafana variables: `$agent` (a regex over the agents,
`.*` for all) and `$__rate_interval`. tests/it/prometheus.rs evaluates every expression
against a real Prometheus scraping a proxy and an orchestrator under traffic.
"""

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "grafana"
DS = {"type": "prometheus", "uid": "${datasource}"}
READS = 'action=~"get_context|get_memories"'
A = 'agent=~"$agent"'
RI = "$__rate_interval"


def rate(metric, labels="", by="agent", window=RI):
    sel = f"{{{labels}}}" if labels else ""
    return f"sum by ({by}) (rate({metric}{sel}[{window}]))"


def quantile(q, metric, labels, by="agent"):
    return f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{{{labels}}}[{RI}])))"


def panel(title, description, targets, unit="short", kind="timeseries", width=12, **opts):
    """A panel; `targets` is a list of (expr, legend)."""
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "width": width,
        "fieldConfig": {"defaults": {"unit": unit, **opts.get("defaults", {})}, "overrides": []},
        "options": opts.get("options", {}),
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend, "datasource": DS}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def row(title):
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "width": 24}


def dashboard(uid, title, description, panels, agent_variable=True):
    x = y = 0
    height = 0
    laid_out = []
    for i, p in enumerate(panels, start=1):
        width = p.pop("width")
        h = 1 if p["type"] == "row" else 8
        if x + width > 24 or p["type"] == "row":
            if x:
                y += height
            x = 0
        p = {"id": i, "gridPos": {"h": h, "w": width, "x": x, "y": y}, **p}
        laid_out.append(p)
        height = h
        x += width
        if x >= 24:
            x, y = 0, y + h
    variables = [
        {
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
        }
    ]
    if agent_variable:
        variables.append(
            {
                "name": "agent",
                "label": "Agent",
                "type": "query",
                "datasource": DS,
                "definition": "label_values(memshift_stage, agent)",
                "query": {"query": "label_values(memshift_stage, agent)", "refId": "agent"},
                "refresh": 2,
                "multi": True,
                "includeAll": True,
                "allValue": ".*",
                "current": {"text": "All", "value": "$__all"},
                "sort": 1,
                "hide": 0,
            }
        )
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["memshift"],
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": variables},
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["memshift"], "asDropdown": True, "title": "memshift"}],
        "panels": laid_out,
    }


OVERVIEW = dashboard(
    "memshift-overview",
    "memshift: migration overview",
    "Where each agent stands in the migration and whether the orchestrator agrees with legacy.",
    [
        row("Stage"),
        panel(
            "Stage per agent",
            "The stage in the flags file (memshift_stage is 1 for the stage in force).",
            [(f'memshift_stage{{{A}}} == 1', "{{agent}}: {{stage}}")],
            kind="table",
            width=8,
            options={"showHeader": True},
        ),
        panel(
            "Shares in force",
            "mirror_percent, shadow_percent and read_percent (read_percent is 0 while a rollback holds).",
            [
                (f'memshift_mirror_percent{{{A}}}', "{{agent}} mirror"),
                (f'memshift_shadow_percent{{{A}}}', "{{agent}} shadow"),
                (f'memshift_read_percent{{{A}}}', "{{agent}} read"),
            ],
            unit="percent",
            width=8,
        ),
        panel(
            "Rollback",
            "1 while a rollback holds, per reason holding it (flags file, panic file, signal, admin, or a trigger).",
            [
                (f'memshift_rollback_active{{{A}}}', "{{agent}} active"),
                (f'memshift_rollback_reason{{{A}}} > 0', "{{agent}} {{reason}}"),
                (f'sum by (agent, trigger) (increase(memshift_rollback_trips_total{{{A}}}[1h]))', "{{agent}} trips ({{trigger}}, 1h)"),
            ],
            width=8,
        ),
        row("Consistency"),
        panel(
            "Consistency ratio",
            "Matches over matches plus mismatches: the plan's 0.1 % inconsistency trigger is 1 minus this.",
            [
                (
                    rate("memshift_comparisons_total", A + ',outcome="match"')
                    + " / "
                    + rate("memshift_comparisons_total", A + ',outcome=~"match|mismatch"'),
                    "{{agent}}",
                )
            ],
            unit="percentunit",
            defaults={"min": 0.99, "max": 1},
        ),
        panel(
            "Comparisons by outcome",
            "Every shadow comparison gets one outcome: match, mismatch, race, legacy_drift, shadow_error, shadow_timeout, legacy_error or skipped.",
            [(rate("memshift_comparisons_total", A, by="agent, outcome"), "{{agent}} {{outcome}}")],
            unit="ops",
        ),
        panel(
            "Triggers: estimate and lower bound",
            "What the proxy's automatic rollback looks at, over its window; a trigger fires when the bound passes the threshold.",
            [
                (f'memshift_rollback_trigger_value{{{A}}}', "{{agent}} {{trigger}}"),
                (f'memshift_rollback_trigger_bound{{{A}}}', "{{agent}} {{trigger}} bound"),
            ],
        ),
        panel(
            "Gates",
            "1 when the gate lets the agent move forward past its stage.",
            [(f'memshift_gate_open{{{A}}}', "{{agent}} {{gate}}")],
        ),
        row("Traffic"),
        panel(
            "Reads served by",
            "Who answered the reads: legacy, or the orchestrator in live.",
            [(rate("memshift_served_total", A, by="agent, backend"), "{{agent}} {{backend}}")],
            unit="ops",
        ),
        panel(
            "Live fallbacks",
            "Reads the orchestrator was to answer that legacy answered instead, by reason.",
            [(rate("memshift_live_fallbacks_total", A, by="agent, reason"), "{{agent}} {{reason}}")],
            unit="ops",
        ),
        panel(
            "Client requests",
            "Requests through the proxy by class and outcome.",
            [(rate("memshift_requests_total", A, by="agent, class, outcome"), "{{agent}} {{class}} {{outcome}}")],
            unit="reqps",
        ),
        panel(
            "Flags file",
            "Files applied and refused; every proxy should show the same checksum.",
            [
                ("memshift_flags_generation", "{{instance}} generation"),
                ("memshift_flags_checksum", "{{instance}} checksum"),
                ("sum by (reason) (increase(memshift_flags_reload_failures_total[1h]))", "refused ({{reason}}, 1h)"),
            ],
        ),
    ],
)

LATENCY = dashboard(
    "memshift-latency",
    "memshift: latency",
    "Legacy, orchestrator and what the proxy adds, p50 and p99.",
    [
        panel(
            "Reads: legacy vs orchestrator (p50)",
            "The plan's latency trigger: the orchestrator's median read time over legacy's by more than 100 ms.",
            [
                (quantile(0.5, "memshift_backend_request_duration_seconds", f'{A},backend="legacy",{READS}'), "{{agent}} legacy"),
                (quantile(0.5, "memshift_backend_request_duration_seconds", f'{A},backend="orchestrator",{READS}'), "{{agent}} orchestrator"),
            ],
            unit="s",
        ),
        panel(
            "Reads: legacy vs orchestrator (p99)",
            "Read round trips from the proxy.",
            [
                (quantile(0.99, "memshift_backend_request_duration_seconds", f'{A},backend="legacy",{READS}'), "{{agent}} legacy"),
                (quantile(0.99, "memshift_backend_request_duration_seconds", f'{A},backend="orchestrator",{READS}'), "{{agent}} orchestrator"),
            ],
            unit="s",
        ),
        panel(
            "Orchestrator read time added (p50)",
            "The orchestrator's median read time minus legacy's, per agent; the trigger is at 100 ms.",
            [
                (
                    quantile(0.5, "memshift_backend_request_duration_seconds", f'{A},backend="orchestrator",{READS}')
                    + " - "
                    + quantile(0.5, "memshift_backend_request_duration_seconds", f'{A},backend="legacy",{READS}'),
                    "{{agent}}",
                )
            ],
            unit="s",
        ),
        panel(
            "Proxy-added time",
            "Time memshift spends on a request before handing it to libzmq, inbound plus outbound.",
            [
                (quantile(0.5, "memshift_proxy_added_seconds", A), "{{agent}} p50"),
                (quantile(0.99, "memshift_proxy_added_seconds", A), "{{agent}} p99"),
            ],
            unit="s",
        ),
        panel(
            "Legacy round trip by action (p50, p99)",
            "Every request to the legacy agent.",
            [
                (quantile(0.5, "memshift_backend_request_duration_seconds", f'{A},backend="legacy"', by="agent, action"), "{{agent}} {{action}} p50"),
                (quantile(0.99, "memshift_backend_request_duration_seconds", f'{A},backend="legacy"', by="agent, action"), "{{agent}} {{action}} p99"),
            ],
            unit="s",
        ),
        panel(
            "Orchestrator, as the orchestrator sees it (p50, p99)",
            "Receipt to reply in the orchestrator, by action.",
            [
                (quantile(0.5, "memshift_orchestrator_request_duration_seconds", 'outcome="success"', by="action"), "{{action}} p50"),
                (quantile(0.99, "memshift_orchestrator_request_duration_seconds", 'outcome="success"', by="action"), "{{action}} p99"),
            ],
            unit="s",
        ),
    ],
)

MIRROR = dashboard(
    "memshift-mirror",
    "memshift: mirror",
    "Mirrored writes: the outbox, deliveries and dead letters; the reverse outbox in rampdown.",
    [
        panel(
            "Outbox depth",
            "Operations waiting for delivery, and those waiting out a backoff.",
            [
                (f'memshift_outbox_pending{{{A}}}', "{{agent}} pending"),
                (f'memshift_outbox_retrying{{{A}}}', "{{agent}} retrying"),
            ],
        ),
        panel(
            "Oldest pending write",
            "Age of the oldest operation not delivered yet; the gate past dualwrite wants it under a minute.",
            [(f'memshift_outbox_oldest_age_seconds{{{A}}}', "{{agent}}")],
            unit="s",
        ),
        panel(
            "Dead letters",
            "Operations given up on, waiting for `memshift outbox retry-dead`.",
            [(f'memshift_outbox_dead_letters{{{A}}}', "{{agent}}")],
            kind="stat",
            width=6,
        ),
        panel(
            "Orchestrator unavailable",
            "1 while deliveries are paused because the orchestrator does not answer.",
            [(f'memshift_mirror_orchestrator_unavailable{{{A}}}', "{{agent}}")],
            kind="stat",
            width=6,
        ),
        panel(
            "Delivery latency (p50, p99)",
            "From the legacy agent accepting a write to the orchestrator acknowledging it.",
            [
                (quantile(0.5, "memshift_mirror_lag_seconds", A), "{{agent}} p50"),
                (quantile(0.99, "memshift_mirror_lag_seconds", A), "{{agent}} p99"),
            ],
            unit="s",
        ),
        panel(
            "Mirrored writes by outcome",
            "queued, legacy_failed (not mirrored), not_sampled (outside mirror_percent) or dropped.",
            [(rate("memshift_mirror_writes_total", A, by="agent, outcome"), "{{agent}} {{outcome}}")],
            unit="ops",
        ),
        panel(
            "Deliveries by outcome",
            "delivered, retried or dead_lettered.",
            [(rate("memshift_mirror_deliveries_total", A, by="agent, outcome"), "{{agent}} {{outcome}}")],
            unit="ops",
        ),
        panel(
            "Failed deliveries and drops by reason",
            "The orchestrator's error code, timeout, unreachable or bad_reply; writes not put in the outbox.",
            [
                (rate("memshift_mirror_failures_total", A, by="agent, reason"), "{{agent}} {{reason}}"),
                (rate("memshift_mirror_dropped_total", A, by="agent, reason"), "{{agent}} dropped: {{reason}}"),
            ],
            unit="ops",
        ),
        row("Rampdown: the orchestrator first, legacy replayed"),
        panel(
            "Writes the orchestrator took first",
            "applied, refused, fallback, unanswered, unpredictable, orchestrator_behind.",
            [(rate("memshift_primary_writes_total", A, by="agent, outcome"), "{{agent}} {{outcome}}")],
            unit="ops",
        ),
        panel(
            "Reverse outbox",
            "Writes waiting to be replayed to legacy, the oldest's age, and those legacy refused.",
            [
                (f'memshift_reverse_pending{{{A}}}', "{{agent}} pending"),
                (f'memshift_reverse_oldest_age_seconds{{{A}}}', "{{agent}} oldest (s)"),
                (f'memshift_reverse_dead_letters{{{A}}}', "{{agent}} dead letters"),
            ],
        ),
    ],
)

ORCHESTRATOR = dashboard(
    "memshift-orchestrator",
    "memshift: orchestrator",
    "The Memory Orchestrator: requests, errors, embeddings and the database pool.",
    [
        panel(
            "Requests by action",
            "Requests the orchestrator answered.",
            [(rate("memshift_orchestrator_requests_total", by="action"), "{{action}}")],
            unit="reqps",
        ),
        panel(
            "Errors by code",
            "Requests answered with an error, by action and error code.",
            [(rate("memshift_orchestrator_requests_total", 'outcome!="success"', by="action, outcome"), "{{action}} {{outcome}}")],
            unit="reqps",
        ),
        panel(
            "Error ratio",
            "Errors over all requests.",
            [
                (
                    rate("memshift_orchestrator_requests_total", 'outcome!="success"', by="instance")
                    + " / "
                    + rate("memshift_orchestrator_requests_total", by="instance"),
                    "{{instance}}",
                )
            ],
            unit="percentunit",
        ),
        panel(
            "In flight",
            "Requests received and not yet answered; replies whose client had gone.",
            [
                ("memshift_orchestrator_in_flight_requests", "{{instance}} in flight"),
                ("sum by (instance) (increase(memshift_orchestrator_undeliverable_replies_total[1h]))", "{{instance}} undeliverable (1h)"),
            ],
        ),
        panel(
            "Embedding backlog",
            "Entries waiting for a vector, and the oldest one's age.",
            [
                ("memshift_embedding_backlog", "{{instance}} waiting"),
                ("memshift_embedding_oldest_age_seconds", "{{instance}} oldest (s)"),
            ],
        ),
        panel(
            "Embedding latency (p50, p99)",
            "Queued to vector stored, and one call to the model.",
            [
                (quantile(0.5, "memshift_embedding_latency_seconds", "", by="instance"), "{{instance}} queued → stored p50"),
                (quantile(0.99, "memshift_embedding_latency_seconds", "", by="instance"), "{{instance}} queued → stored p99"),
                (quantile(0.5, "memshift_embedding_request_duration_seconds", "", by="provider"), "{{provider}} call p50"),
            ],
            unit="s",
        ),
        panel(
            "Embeddings by outcome",
            "stored, failed (retried later) or discarded (nothing to embed).",
            [(rate("memshift_embeddings_total", by="outcome"), "{{outcome}}")],
            unit="ops",
        ),
        panel(
            "Database pool",
            "Connections idle and in use, against the pool's size; 1 while the database answers.",
            [
                ("sum by (instance, state) (memshift_db_pool_connections)", "{{instance}} {{state}}"),
                ("memshift_db_pool_max_connections", "{{instance}} max"),
                ("memshift_database_up", "{{instance}} database up"),
            ],
        ),
        panel(
            "Housekeeping",
            "Entries the sweeper deleted on expiry; access-log rows not written.",
            [
                ("sum by (instance) (increase(memshift_expired_entries_deleted_total[1h]))", "{{instance}} expired deleted (1h)"),
                ("sum by (instance) (increase(memshift_access_log_failures_total[1h]))", "{{instance}} access-log failures (1h)"),
            ],
        ),
    ],
    agent_variable=False,
)

DASHBOARDS = {
    "overview.json": OVERVIEW,
    "latency.json": LATENCY,
    "mirror.json": MIRROR,
    "orchestrator.json": ORCHESTRATOR,
}


def main():
    check = sys.argv[1:] == ["--check"]
    stale = []
    for name, board in DASHBOARDS.items():
        text = json.dumps(board, indent=2, ensure_ascii=False) + "\n"
        path = OUT / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            OUT.mkdir(exist_ok=True)
            path.write_text(text)
    if stale:
        print("out of date (run python3 dashboards/generate.py): " + ", ".join(stale), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
