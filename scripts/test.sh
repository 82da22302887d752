#!/usr/bin/env bash
# The test suite (`make test`): unit tests and integration tests against real ZeroMQ sockets
# on 127.0.0.1, the Python legacy stand-ins and the real `memshift` binary.
set -euo pipefail
cd "$(dirname "$0")/.."
export MEMSHIFT_PYTHON="${MEMSHIFT_PYTHON:-$PWD/.venv/bin/python}"
if cargo nextest --version >/dev/null 2>&1; then
    # One process per test: a test that hangs or kills its process cannot take others along.
    exec cargo nextest run --lib --bins --tests --no-fail-fast "$@"
else
    exec cargo test --lib --bins --tests --no-fail-fast "$@"
fi
