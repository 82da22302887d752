# memshift — the two commands that matter: `make demo` and `make test`.
.PHONY: demo test bench bench-orchestrator bench-backfill check-alerts lint build bootstrap clean

# System packages (libzmq) and the Python venv for the legacy stand-ins.
bootstrap:
	@scripts/bootstrap.sh

build: bootstrap
	cargo build --release

# Builds, starts the stand-ins and the proxy, sends realistic traffic, reports what it saw;
# then the orchestrator on a throwaway PostgreSQL with pgvector (or DATABASE_URL).
demo: bootstrap
	@scripts/pg.sh run scripts/demo.sh

# The whole test suite, against real sockets, real processes and the real binary.
test: bootstrap
	@scripts/test.sh

# Primary-path throughput and latency: direct vs libzmq's zmq_proxy vs memshift in stage
# off, dualwrite (to a real orchestrator on a throwaway PostgreSQL, or DATABASE_URL) and
# dualwrite with the orchestrator down.
bench: bootstrap
	scripts/pg.sh run cargo bench --bench proxy

# The orchestrator: create throughput, embedding drain rate, read/search latency at 100k
# entries, each next to a yardstick, on a throwaway PostgreSQL (or DATABASE_URL).
bench-orchestrator: bootstrap
	scripts/pg.sh run cargo bench --bench orchestrator

# The alert rules are valid and their unit tests pass; the dashboards' JSON is what
# dashboards/generate.py writes. (tests/it/prometheus.rs runs the same checks.)
check-alerts: bootstrap
	promtool check rules dashboards/prometheus/alerts.yml
	promtool test rules dashboards/prometheus/alerts.test.yml
	python3 dashboards/generate.py --check

# memshift backfill of 100 000 interactions per agent (BENCH_INTERACTIONS): records per
# second and peak memory, next to a dry run of the same store, on a throwaway PostgreSQL.
bench-backfill: bootstrap
	scripts/pg.sh run scripts/bench_backfill.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

clean:
	cargo clean
	rm -rf .demo
