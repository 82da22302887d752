#!/usr/bin/env bash
# `make demo`: the whole migration on one machine. It builds memshift, gives the three legacy
# stand-ins a history that predates the migration, starts the Memory Orchestrator on
# PostgreSQL + pgvector, a Prometheus scraping everything (Debian's, from bootstrap) and a
# proxy in dualwrite in front of each agent; sends a burst of realistic traffic through the
# proxies, imports the history with `memshift backfill` alongside it, drains the outboxes,
# shows the writes in PostgreSQL and reconciles each store; then the same traffic in shadow
# and in live, with the comparisons and who served the reads; a rollback and a resume; the
# daily report; and the orchestrator's own API at work.
# Everything runs on 127.0.0.1 with free ports and stops at the end. PostgreSQL is the one
# at DATABASE_URL, or a throwaway one (the Makefile runs this under scripts/pg.sh run).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
DEMO=.demo
rm -rf "$DEMO" && mkdir -p "$DEMO"
pids=()
cleanup() {
    # The proxy first (it was started last), so it does not log the agents going away.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill "${pids[$i]}" 2>/dev/null || true
        wait "${pids[$i]}" 2>/dev/null || true
    done
}
trap cleanup EXIT

echo "== building memshift (release)"
cargo build --release --quiet
BIN=target/release/memshift

echo "== the legacy agents' history before the migration (tests/standins/generate_store.py)"
# Half an hour old: the session agent forgets sessions idle for an hour.
for agent in session_memory contextual_memory jarvis_memory; do
    counts=$("$PY" tests/standins/generate_store.py "$agent" --data-dir "$DEMO/$agent" \
        --interactions 2000 --start "$(($(date +%s) - 1800))")
    echo "   $agent: $counts"
done

echo "== starting the legacy stand-ins on that history"
declare -A legacy
for agent in session_memory contextual_memory jarvis_memory; do
    fifo="$DEMO/$agent.out"
    mkfifo "$fifo"
    "$PY" tests/standins/legacy_agents.py "$agent" --bind 'tcp://127.0.0.1:*' --data-dir "$DEMO/$agent" >"$fifo" &
    pids+=($!)
    read -r _ endpoint <"$fifo"
    legacy[$agent]=$endpoint
    echo "   $agent on $endpoint (data in $DEMO/$agent)"
done

echo "== starting memshift orchestrator on ${DATABASE_URL%%\?*}"
cat >"$DEMO/orchestrator.toml" <<TOML
[database]
url = "$DATABASE_URL"
[orchestrator]
listen = "tcp://127.0.0.1:*"
metrics_listen = "127.0.0.1:0"
expiry_sweep_interval = "1s"
[embedding]
poll_interval = "100ms"
[log]
level = "warn"
TOML
# Starts `memshift SUBCOMMAND --config FILE` in the background; its ready line goes in $ready.
launch() {
    local out="$DEMO/$1.out"
    rm -f "$out" && mkfifo "$out"
    "$BIN" "$1" --config "$2" >"$out" &
    pids+=($!)
    read -r ready <"$out"
}
launch orchestrator "$DEMO/orchestrator.toml"
json() { "$PY" -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
orch_endpoint=$(json "$ready" endpoint)
orch_metrics=$(json "$ready" metrics)
echo "   orchestrator on $orch_endpoint, metrics on http://$orch_metrics/metrics"

# The flags file every proxy watches: each agent's stage and percentages. Editing it moves
# the migration along without a restart.
set_flags() {
    local tmp="$DEMO/flags.toml.tmp"
    : >"$tmp"
    for agent in session_memory contextual_memory jarvis_memory; do
        printf '[agents.%s]\n%b\n' "$agent" "$1" >>"$tmp"
    done
    mv "$tmp" "$DEMO/flags.toml" # an atomic replace, as editors do
}
set_flags 'stage = "dualwrite"'
# Every agent in dualwrite: each write the legacy agent accepts is also mirrored, through
# the agent's outbox in $DEMO/outbox, to the orchestrator. The demo's traffic is far too
# small for the consistency gate before live (about 3 840 clean comparisons at 95 %
# confidence), so gates only warn here; `memshift flags check` shows them closed.
cat >"$DEMO/memshift.toml" <<TOML
[metrics]
listen = "127.0.0.1:0"
[log]
level = "warn"
$(for agent in session_memory contextual_memory jarvis_memory; do
printf '[[agents]]\nname = "%s"\nprofile = "%s"\nlisten = "tcp://127.0.0.1:*"\nlegacy = "%s"\n' "$agent" "$agent" "${legacy[$agent]}"
done)
[mirror]
orchestrator = "$orch_endpoint"
data_dir = "$DEMO/outbox"
[rollout]
flags = "$DEMO/flags.toml"
gates = "warn"
[database]
url = "$DATABASE_URL"
TOML

echo "== starting memshift proxy in dualwrite ($DEMO/memshift.toml)"
launch proxy "$DEMO/memshift.toml"
proxy_pid=${pids[-1]}
endpoint() { "$PY" -c "import json,sys; r=json.loads(sys.argv[1]); print({a['agent']: a['endpoint'] for a in r['agents']}[sys.argv[2]])" "$ready" "$1"; }
metrics=$(json "$ready" metrics)
for agent in session_memory contextual_memory jarvis_memory; do
    echo "   clients of $agent connect to $(endpoint $agent)"
done
echo "   metrics on http://$metrics/metrics"

# Prometheus scrapes the proxy and the orchestrator every second and evaluates memshift's
# alert rules; `memshift report` reads the comparison, outbox and rollback metrics from it.
prometheus=
if command -v prometheus >/dev/null; then
    port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    cat >"$DEMO/prometheus.yml" <<YAML
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: ["$PWD/dashboards/prometheus/alerts.yml"]
scrape_configs:
  - job_name: memshift
    static_configs: [{targets: ["$metrics", "$orch_metrics"]}]
YAML
    prometheus --config.file="$DEMO/prometheus.yml" --storage.tsdb.path="$DEMO/prometheus" \
        --web.listen-address="127.0.0.1:$port" --log.level=warn 2>"$DEMO/prometheus.log" &
    pids+=($!)
    prometheus=127.0.0.1:$port
    until curl -sf "http://$prometheus/-/ready" >/dev/null; do sleep 0.1; done
    echo "   Prometheus on http://$prometheus (alerts: http://$prometheus/alerts), scraping both every second"
else
    echo "   (no prometheus installed: the daily report at the end is left out; run make bootstrap)"
fi

echo "== traffic"
"$PY" scripts/demo_traffic.py \
    --session "$(endpoint session_memory)" \
    --contextual "$(endpoint contextual_memory)" \
    --jarvis "$(endpoint jarvis_memory)" \
    --metrics "$metrics"

echo
echo "== health: $(curl -s "http://$metrics/healthz")"

echo
echo "== memshift backfill: the history, imported while dual-write runs (idempotent ids; a"
echo "   record the mirror brought too is recognised and kept once)"
for agent in session_memory contextual_memory jarvis_memory; do
    "$BIN" backfill --config "$DEMO/memshift.toml" --agent "$agent" --from "$DEMO/$agent" | sed 's/^/   /'
done

echo
echo "== mirrored writes: memshift outbox drain, then what arrived in PostgreSQL"
"$BIN" outbox drain --config "$DEMO/memshift.toml" --timeout 60s 2>/dev/null
"$BIN" outbox status --config "$DEMO/memshift.toml" | sed 's/^/   /'
curl -s "http://$metrics/metrics" | "$PY" -c '
import sys
rows = {}
for line in sys.stdin:
    name = line.split("{")[0]
    if name in ("memshift_mirror_writes_total", "memshift_mirror_deliveries_total"):
        labels, value = line.rsplit(" ", 1)
        if float(value) > 0:
            get = lambda k: labels.split(k + "=\"")[1].split("\"")[0]
            kind = "writes" if name.endswith("writes_total") else "operations"
            rows.setdefault((get("agent"), get("action")), []).append(
                "%s %s %d" % (kind, get("outcome"), int(float(value))))
print("   mirror, by agent and legacy action:")
for (agent, action), parts in sorted(rows.items()):
    print(f"     {agent:<18} {action:<16} " + ", ".join(sorted(parts, reverse=True)))
'
echo "   in the legacy stores:"
"$PY" scripts/demo_legacy_counts.py "$DEMO"
echo "   in PostgreSQL, by source agent and memory type (active rows):"
scripts/pg.sh psql "$DATABASE_URL" --no-psqlrc --quiet --pset=footer=off -c "
    SELECT source_agent, memory_type, count(*) AS memories,
           count(DISTINCT coalesce(session_id, user_id)) AS keys,
           max(created_at)::timestamp(0) AS newest
    FROM memory_entries WHERE is_active GROUP BY 1, 2 ORDER BY 1, 2" | sed 's/^/   /'
scripts/pg.sh psql "$DATABASE_URL" --no-psqlrc --quiet --pset=footer=off -c "
    SELECT session_type, count(*) AS sessions,
           count(*) FILTER (WHERE is_archived) AS ended_by_delete_session
    FROM sessions GROUP BY 1 ORDER BY 1" | sed 's/^/   /'

echo
echo "== memshift reconcile: each legacy store against PostgreSQL, entity by entity"
for agent in session_memory contextual_memory jarvis_memory; do
    "$BIN" reconcile --config "$DEMO/memshift.toml" --agent "$agent" --from "$DEMO/$agent" \
        --out "$DEMO/reports" | sed 's/^/   /' || true
done

# The next stages, by editing the flags file while the proxy runs: the same traffic in
# shadow (every read also asked of the orchestrator and compared), then in live (the
# orchestrator answers every read, legacy as the fallback).
generation() { curl -s "http://$metrics/flags" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["generation"])'; }
for stage in 'stage = "shadow"\nshadow_percent = 100' 'stage = "live"\nread_percent = 100\nshadow_percent = 0'; do
    if [[ $stage == *live* ]]; then
        echo
        echo "== memshift flags check: what the gates say about going live"
        printf '[agents.%s]\n%b\n' session_memory "$stage" contextual_memory "$stage" jarvis_memory "$stage" >"$DEMO/candidate.toml"
        "$BIN" flags check --config "$DEMO/memshift.toml" --flags "$DEMO/candidate.toml" --proxy "http://$metrics" | sed 's/^/   /' || true
    fi
    before=$(generation)
    set_flags "$stage"
    while [[ $(generation) == "$before" ]]; do sleep 0.05; done
    echo
    name=$(grep -o '"[a-z]*"' <<<"$stage" | head -1 | tr -d '"')
    echo "== flags file edited: generation $(generation), the same traffic in $name (metrics on http://$metrics/metrics)"
    "$PY" scripts/demo_traffic.py \
        --session "$(endpoint session_memory)" \
        --contextual "$(endpoint contextual_memory)" \
        --jarvis "$(endpoint jarvis_memory)" \
        --metrics "$metrics" >/dev/null
    "$BIN" outbox drain --config "$DEMO/memshift.toml" --timeout 60s >/dev/null 2>&1 || true
    "$PY" scripts/demo_reads.py "$metrics" "$DEMO" "$(endpoint session_memory)" \
        "$(endpoint contextual_memory)" "$(endpoint jarvis_memory)"
    sleep 0.5
    "$PY" scripts/demo_reads.py --metrics-only "$metrics"
done

echo
echo "== the kill switch: SIGUSR1 to the proxy sends every read back to legacy (writes stay mirrored)"
kill -USR1 "$proxy_pid"
while ! curl -s "http://$metrics/metrics" | grep -q '^memshift_rollback_active{agent="jarvis_memory"} 1'; do sleep 0.05; done
curl -s "http://$metrics/flags" | "$PY" -c '
import json, sys
for a in json.load(sys.stdin)["agents"]:
    print("   %-18s stage %s, rolled back by %s" % (a["name"], a["stage"], ", ".join(a["rollback_reasons"])))'
"$PY" scripts/demo_reads.py "$metrics" "$DEMO" "$(endpoint session_memory)" \
    "$(endpoint contextual_memory)" "$(endpoint jarvis_memory)"
sleep 0.5
"$PY" scripts/demo_reads.py --metrics-only "$metrics"
kill -USR2 "$proxy_pid"
echo "   SIGUSR2: resumed; reads go to the orchestrator again"

if [ -n "$prometheus" ]; then
    echo
    echo "== memshift report: the daily report, over the demo's hour (Prometheus, the mismatch store,"
    echo "   the reconcile runs); the HTML version charts consistency over time"
    sleep 3 # one more scrape after the resume
    "$BIN" report --config "$DEMO/memshift.toml" --since 1h --prometheus "http://$prometheus" \
        --out "$DEMO/reports" | sed 's/^/   /'
    sed 's/^/   /' "$DEMO"/reports/report-*.md
fi

echo
echo "== the orchestrator at work (its own API)"
"$PY" scripts/demo_orchestrator.py --endpoint "$orch_endpoint" --metrics "$orch_metrics"
echo "== orchestrator health: $(curl -s "http://$orch_metrics/healthz")"
