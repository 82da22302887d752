#!/usr/bin/env bash
# Installs what memshift needs to build, test and run the demo on a fresh Debian machine:
# the system libzmq (linked instead of a vendored build, see README), a Python virtual
# environment in .venv with pyzmq for the legacy stand-ins, and PostgreSQL with pgvector in
# .tools (scripts/pg.sh), and Debian's prometheus (with promtool) for the alert rules' tests.
# Idempotent and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PYZMQ_VERSION=27.1.0

need_apt=()
dpkg -s libzmq3-dev >/dev/null 2>&1 || need_apt+=(libzmq3-dev)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# promtool and prometheus: the alert rules' unit tests and tests/it/prometheus.rs.
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
# GNU time: peak memory in make bench-backfill.
[ -x /usr/bin/time ] || need_apt+=(time)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "bootstrap: missing Debian packages: ${need_apt[*]} (run as root, or: sudo apt-get install ${need_apt[*]})" >&2
        exit 1
    fi
    echo "bootstrap: installing ${need_apt[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! .venv/bin/python -c "import zmq; assert zmq.__version__ == '$PYZMQ_VERSION'" 2>/dev/null; then
    echo "bootstrap: creating .venv with pyzmq $PYZMQ_VERSION" >&2
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check "pyzmq==$PYZMQ_VERSION"
fi

scripts/pg.sh install >/dev/null
