#!/usr/bin/env bash
# `make bench-backfill`: memshift backfill of each agent's store of N interactions (100 000 by
# default, BENCH_INTERACTIONS), written by tests/standins/generate_store.py, into a real
# orchestrator on PostgreSQL + pgvector (a fresh database on DATABASE_URL's server; the
# Makefile starts a throwaway one). For each agent it prints records per second and the
# peak memory (RSS, GNU time) of the import, next to a yardstick measured in the same run:
# `--dry-run` over the same store, which reads and translates every record and sends
# nothing. Their ratio is what writing to the orchestrator costs. BENCH_RUNS (default 3)
# imports each store that many times, each into a fresh database, and prints the median;
# BENCH_AGENTS limits the agents (default: all three).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${BENCH_INTERACTIONS:-100000}
RUNS=${BENCH_RUNS:-3}
AGENTS=${BENCH_AGENTS:-session_memory contextual_memory jarvis_memory}
PY=.venv/bin/python
[ -x /usr/bin/time ] || { echo "bench-backfill: needs GNU time (/usr/bin/time)" >&2; exit 1; }
: "${DATABASE_URL:?run under scripts/pg.sh run (make bench-backfill)}"

cargo build --release --quiet
BIN=$PWD/target/release/memshift
WORK=$(mktemp -d /tmp/memshift-bench-backfill.XXXXXX)
orch_pid=
cleanup() {
    [ -n "$orch_pid" ] && kill "$orch_pid" 2>/dev/null && wait "$orch_pid" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "== generating stores of $N interactions each (tests/standins/generate_store.py)"
for agent in $AGENTS; do
    counts=$("$PY" tests/standins/generate_store.py "$agent" --data-dir "$WORK/$agent" --interactions "$N")
    echo "   $agent: $counts"
done

server=${DATABASE_URL%/*}
# Starts an orchestrator on a fresh database; sets $orch_endpoint.
fresh_orchestrator() {
    [ -n "$orch_pid" ] && kill "$orch_pid" && wait "$orch_pid" 2>/dev/null || true
    local db="bench_backfill_$1" a
    PGOPTIONS="-c client_min_messages=warning" scripts/pg.sh psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
    cat >"$WORK/orchestrator.toml" <<TOML
[database]
url = "$server/$db"
[orchestrator]
listen = "tcp://127.0.0.1:*"
metrics_listen = "127.0.0.1:0"
[log]
level = "warn"
TOML
    rm -f "$WORK/ready" && mkfifo "$WORK/ready"
    "$BIN" orchestrator --config "$WORK/orchestrator.toml" >"$WORK/ready" &
    orch_pid=$!
    local ready
    read -r ready <"$WORK/ready"
    orch_endpoint=$("$PY" -c "import json,sys; print(json.loads(sys.argv[1])['endpoint'])" "$ready")
    {
        echo "[database]"
        echo "url = \"$server/$db\""
        echo "[mirror]"
        echo "data_dir = \"$WORK/data-$1\""
        echo "orchestrator = \"$orch_endpoint\""
        for a in session_memory contextual_memory jarvis_memory; do
            printf '[[agents]]\nname = "%s"\nprofile = "%s"\nlisten = "tcp://127.0.0.1:*"\nlegacy = "tcp://127.0.0.1:1"\n' "$a" "$a"
        done
    } >"$WORK/memshift.toml"
}

# Runs `memshift backfill ARGS`; prints "records seconds peak_kb".
measure() {
    /usr/bin/time -f "%M" -o "$WORK/rss" "$BIN" backfill "$@" --json --config "$WORK/memshift.toml" >"$WORK/summary.json" 2>"$WORK/stderr" || {
        echo "backfill failed:" >&2; cat "$WORK/stderr" >&2; exit 1; }
    "$PY" - "$WORK/summary.json" "$(cat "$WORK/rss")" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
records = sum(s["read"].values())
print(records, s["seconds"], sys.argv[2])
PY
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo
echo "== memshift backfill, $RUNS runs per store, each into a fresh database (2 cores shared with the orchestrator and PostgreSQL)"
printf '%-18s %9s %14s %14s %10s %14s %12s\n' agent records "dry run rec/s" "import rec/s" "ratio" "import seconds" "peak RSS"
run=0
for agent in $AGENTS; do
    fresh_orchestrator "dry"
    read -r records dry_s _ < <(measure --agent "$agent" --from "$WORK/$agent" --dry-run)
    rates=() seconds=() peaks=()
    for _ in $(seq "$RUNS"); do
        run=$((run + 1))
        fresh_orchestrator "$run"
        read -r records s kb < <(measure --agent "$agent" --from "$WORK/$agent")
        rates+=("$(awk -v r="$records" -v s="$s" 'BEGIN {printf "%.0f", r / s}')")
        seconds+=("$s")
        peaks+=("$kb")
    done
    rate=$(median "${rates[@]}")
    dry=$(awk -v r="$records" -v s="$dry_s" 'BEGIN {printf "%.0f", r / s}')
    printf '%-18s %9s %14s %14s %10s %14s %9s MB\n' "$agent" "$records" "$dry" "$rate" \
        "$(awk -v a="$rate" -v b="$dry" 'BEGIN {printf "%.2f", a / b}')" \
        "$(awk -v s="$(median "${seconds[@]}")" 'BEGIN {printf "%.1f", s}')" "$(awk -v k="$(median "${peaks[@]}")" 'BEGIN {printf "%.0f", k / 1024}')"
done
echo
echo "import rec/s and seconds are medians of $RUNS runs; peak RSS the median of the runs' peaks;"
echo "ratio = import rate / dry-run rate (the yardstick: reading and translating alone)."
