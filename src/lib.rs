//! memshift: moves a voice assistant's memory off three legacy ZeroMQ services onto one
//! Memory Orchestrator, without changing the agents that use them.
//!
//! # Module map
//! Pure logic at the bottom, I/O in the middle, wiring at the top; lower modules never
//! import higher ones.
//! - bottom: [`pyjson`] (Python `json.dumps` bytes), [`profile`] (the legacy protocols'
//!   action tables and error shapes), [`classify`] (read / write / other), [`guard`] (what
//!   must never reach an agent), [`api`] (the orchestrator's wire protocol), [`translate`]
//!   (what a legacy write means for the orchestrator), [`answer`] (the reply a legacy agent
//!   would give to a read, from the orchestrator's data), [`compare`] (a legacy reply
//!   against that answer), [`forgetting`] (what the legacy agents drop on their own, and
//!   by which rule), [`flags`] (stages and percentages, stable key buckets).
//! - middle: [`config`] (loading the file and the environment, and validation),
//!   [`proxy`] (the forwarding threads), [`outbox`] (the durable SQLite queue of
//!   mirrored operations), [`mirror`] (outbox writer, deliverer, shadow reader, primary writer and reverse deliverer threads), [`legacy`]
//!   (the legacy agents' own stores, read one key at a time), [`backfill`] (imports a store
//!   through the mirror's translation), [`reconcile`] (a store against the orchestrator's
//!   database), [`report`] (the daily report from Prometheus and the database), [`store`]
//!   (PostgreSQL + pgvector: pool, migrations, queries), [`embed`] (embedding providers and
//!   the worker), [`orchestrator`] (the orchestrator's socket thread, dispatcher and actions), [`rollout`] (the flags in
//!   force: the hot-reloaded flags file, gates, the kill switch, automatic rollback),
//!   [`metrics`], [`http`] (`/metrics`, `/healthz`), [`wakeup`], [`telemetry`],
//!   [`shutdown`].
//! - top: [`app`] (one module per subcommand: the `memshift proxy` and `memshift
//!   orchestrator` processes, and the one-shot `migrate`, `check-config`, `outbox`, `flags
//!   check`, `backfill`, `reconcile` and `report`); the binary in `src/main.rs` parses the
//!   command line and dispatches.
//!
//! # The life of one request through the proxy
//! 1. A client's REQ or DEALER sends one frame to the agent's old port, where the proxy's
//!    ROUTER receives `[identity…, "", body]` on the agent's forwarding thread.
//! 2. [`classify`] reads the body's `action` with the agent's [`profile::Profile`].
//! 3. [`proxy::route`] decides where it goes, once, from its class, one snapshot of the
//!    agent's [`flags`] and what the mirror knows of its key: [`guard`] answers a request
//!    that would crash the agent (multipart) in the agent's own error shape, and it never
//!    reaches the agent; a read may be served by the orchestrator, a write taken by it
//!    first; everything else goes to legacy, with what the mirror gets of it.
//! 4. For legacy, the envelope is parked in the in-flight table under a token, and
//!    `[token, "", body]` goes to the legacy agent through a DEALER.
//! 5. The agent's REP returns `[token, "", reply]`; the token finds the envelope and the
//!    reply's bytes go back to the client untouched. Latency, outcome and the time memshift
//!    added are counted in [`metrics`].
//! 6. No reply within `legacy_timeout`: the request is counted as timed out and forgotten.
//!
//! # The life of a write in `dualwrite`
//! 1. As above, and the forwarder keeps a copy of a write's request (the route says so)
//!    while it is in flight.
//! 2. After the reply has gone to the client, request and reply are offered to the
//!    agent's bounded hand-off queue ([`mirror::MirrorSender::offer`]); a full queue drops
//!    them, counted.
//! 3. The outbox writer thread asks [`translate`] whether the legacy agent accepted the
//!    write and what it means, keeps keys inside `mirror_percent` ([`flags`]), and appends
//!    the operations to the agent's [`outbox`] in one transaction per batch.
//! 4. The deliverer thread sends each key's oldest pending operation to the orchestrator,
//!    one per key at a time, and settles the answer: delivered (deleted), retried after a
//!    backoff, or dead-lettered with the reason.
//!
//! # The life of a write in `rampdown`
//! 1. The forwarder asks [`translate::plan`] for the reply the agent would give; without
//!    one (or while the orchestrator lacks the key's earlier writes) the write goes to
//!    legacy first, as in `dualwrite`.
//! 2. The primary writer thread runs the plan's operations against the orchestrator, puts
//!    the request in the reverse [`outbox`], and hands the predicted reply back to the
//!    forwarder for the client. A failure or a slow orchestrator sends the write to legacy
//!    after all, mirrored with the ids the orchestrator was given.
//! 3. The reverse deliverer replays the request to legacy and judges the answer with the
//!    agent's own success signal ([`mirror`] explains how a key follows the side that has
//!    all of its writes).
//!
//! # The life of one request through the orchestrator
//! 1. The ROUTER on the `zmq-orchestrator` thread receives `[identity, "", body]`; an
//!    oversized or multipart body is answered there, and so is one that finds the bounded
//!    queue full (`rate_limit_exceeded`).
//! 2. [`orchestrator::dispatch`] takes it under the concurrency limit, [`api`] parses the
//!    envelope, and the action runs against [`store`] within the request's deadline.
//! 3. The reply goes back to the socket thread through a [`wakeup`] channel; then the
//!    access log row is written. A write with text queues an embedding in the same
//!    statement; the [`embed`] worker fills `vector_embeddings` later.

pub mod answer;
pub mod api;
pub mod app;
pub mod backfill;
pub mod backoff;
pub mod classify;
pub mod compare;
pub mod config;
pub mod embed;
pub mod flags;
pub mod forgetting;
pub mod guard;
pub mod http;
pub mod labels;
pub mod legacy;
pub mod link;
pub mod metrics;
pub mod mirror;
pub mod orchestrator;
pub mod outbox;
pub mod profile;
pub mod proxy;
pub mod pyjson;
pub mod reconcile;
pub mod report;
pub mod rollout;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod translate;
pub mod wakeup;
