//! The integration tests: one crate, one module per behaviour, against real sockets on
//! 127.0.0.1, the Python stand-ins of the legacy agents, a real PostgreSQL with pgvector
//! (`scripts/pg.sh`) and the real `memshift` binary. `common` is the harness.

mod common;

mod backfill;
mod cli;
mod concurrency;
mod fidelity;
mod guard;
mod live;
mod metrics;
mod mirror;
mod orchestrator_api;
mod orchestrator_faults;
mod orchestrator_process;
mod orchestrator_search;
mod prometheus;
mod pyjson_vs_python;
mod render_props;
mod resilience;
mod rollout;
mod shadow;
mod shutdown;
mod translate_live;
mod transparency;
