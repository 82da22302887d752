#!/usr/bin/env bash
# The test suite (`make test`): unit tests and integration tests against real ZeroMQ sockets
# on 127.0.0.1, the Python legacy stand-ins, the real `memshift` binary, and a real
# PostgreSQL with pgvector: the server at DATABASE_URL if set, otherwise a throwaway one that
# scripts/pg.sh starts and removes afterwards. Each test creates its own database on it.
set -euo pipefail
cd "$(dirname "$0")/.."
export MEMSHIFT_PYTHON="${MEMSHIFT_PYTHON:-$PWD/.venv/bin/python}"
# Tests that stop PostgreSQL start a cluster of their own with this script.
export MEMSHIFT_PG_SCRIPT="$PWD/scripts/pg.sh"
# The session agent keeps local times and expires sessions an hour plus the UTC offset after
# creation (specs/legacy-agents.md): the stand-ins, the proxies and the tests share one zone,
# UTC, whatever the machine's. Tests of other zones set TZ for their own child processes.
export TZ=UTC
# The legacy stand-ins' own tests first: the Rust tests take the stand-ins for the real agents.
"$MEMSHIFT_PYTHON" -m unittest discover -s tests/standins -p 'test_*.py'
if cargo nextest --version >/dev/null 2>&1; then
    # One process per test: a test that hangs or kills its process cannot take others along.
    exec scripts/pg.sh run cargo nextest run --lib --bins --tests --no-fail-fast "$@"
else
    exec scripts/pg.sh run cargo test --lib --bins --tests --no-fail-fast "$@"
fi
