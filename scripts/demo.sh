#!/usr/bin/env bash
# `make demo`: builds memshift, starts the three legacy stand-ins and a proxy in front of
# each, sends a burst of realistic traffic through the proxies, and prints what the proxy
# saw; then starts the Memory Orchestrator on PostgreSQL + pgvector and shows it at work.
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

echo "== starting the legacy stand-ins"
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

cat >"$DEMO/memshift.toml" <<TOML
[metrics]
listen = "127.0.0.1:0"
[log]
level = "warn"
$(for agent in session_memory contextual_memory jarvis_memory; do
printf '[[agents]]\nname = "%s"\nprofile = "%s"\nlisten = "tcp://127.0.0.1:*"\nlegacy = "%s"\n' "$agent" "$agent" "${legacy[$agent]}"
done)
TOML

echo "== starting memshift proxy ($DEMO/memshift.toml)"
mkfifo "$DEMO/proxy.out"
"$BIN" proxy --config "$DEMO/memshift.toml" >"$DEMO/proxy.out" &
pids+=($!)
read -r ready <"$DEMO/proxy.out"
endpoint() { "$PY" -c "import json,sys; r=json.loads(sys.argv[1]); print({a['agent']: a['endpoint'] for a in r['agents']}[sys.argv[2]])" "$ready" "$1"; }
metrics=$("$PY" -c "import json,sys; print(json.loads(sys.argv[1])['metrics'])" "$ready")
for agent in session_memory contextual_memory jarvis_memory; do
    echo "   clients of $agent connect to $(endpoint $agent)"
done
echo "   metrics on http://$metrics/metrics"

echo "== traffic"
"$PY" scripts/demo_traffic.py \
    --session "$(endpoint session_memory)" \
    --contextual "$(endpoint contextual_memory)" \
    --jarvis "$(endpoint jarvis_memory)" \
    --metrics "$metrics"

echo
echo "== health: $(curl -s "http://$metrics/healthz")"

echo
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
mkfifo "$DEMO/orchestrator.out"
"$BIN" orchestrator --config "$DEMO/orchestrator.toml" >"$DEMO/orchestrator.out" &
pids+=($!)
read -r ready <"$DEMO/orchestrator.out"
orch_endpoint=$("$PY" -c "import json,sys; print(json.loads(sys.argv[1])['endpoint'])" "$ready")
orch_metrics=$("$PY" -c "import json,sys; print(json.loads(sys.argv[1])['metrics'])" "$ready")
echo "   orchestrator on $orch_endpoint, metrics on http://$orch_metrics/metrics"
"$PY" scripts/demo_orchestrator.py --endpoint "$orch_endpoint" --metrics "$orch_metrics"
echo "== orchestrator health: $(curl -s "http://$orch_metrics/healthz")"
