//! The Memory Orchestrator: the API of `../shared/specs/orchestrator-api.md` served over
//! ZMQ on PostgreSQL + pgvector.
//!
//! - [`socket`]: the ROUTER on its own thread; sheds load it cannot queue.
//! - [`dispatch`]: the concurrency limit, the per-request deadline, replies, metrics, the
//!   access log.
//! - [`actions`] routes a request to one module per group of actions ([`memories`],
//!   [`queries`], [`search`], [`sessions`], [`comparisons`]): validation and the queries of
//!   [`crate::store`]; [`service`] is what they share.
//! - [`sweeper`]: deletes expired entries for good.
//!
//! The process around them (start-up, shutdown) is [`crate::app::run_orchestrator`].

mod actions;
mod comparisons;
pub mod dispatch;
mod memories;
mod queries;
mod search;
pub mod service;
mod sessions;
pub mod socket;
pub mod sweeper;

pub use service::Service;
