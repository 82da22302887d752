# memshift: one image for every role (`memshift proxy` by default, `memshift orchestrator`,
# `memshift migrate`, and the one-shot `backfill`, `reconcile`, `report`, `outbox`).
# Multi-stage: build with the Rust toolchain, run on a slim Debian. The database migrations
# are embedded in the binary (and shipped as SQL under /usr/share/memshift/migrations for
# review). deploy/compose.yml runs a whole deployment from it.

FROM rust:1.95-bookworm AS build
# The system libzmq is linked instead of a vendored build (see README, "Why the system libzmq").
RUN apt-get update \
    && apt-get install -y --no-install-recommends libzmq3-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin memshift

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends libzmq5 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/memshift --create-home memshift
COPY --from=build /src/target/release/memshift /usr/local/bin/memshift
COPY config/memshift.toml /etc/memshift/memshift.toml
COPY config/flags.toml /etc/memshift/flags.toml
COPY migrations /usr/share/memshift/migrations
USER memshift
WORKDIR /var/lib/memshift
# The outboxes of mirrored writes ([mirror] data_dir): mount a persistent volume here, or a
# restarted container loses what it had not delivered yet.
VOLUME /var/lib/memshift
# The flags file (every agent off until edited; mount your own over it).
ENV MEMSHIFT_CONFIG=/etc/memshift/memshift.toml \
    MEMSHIFT_ROLLOUT__FLAGS=/etc/memshift/flags.toml \
    MEMSHIFT_METRICS__LISTEN=0.0.0.0:9464 \
    MEMSHIFT_ORCHESTRATOR__METRICS_LISTEN=0.0.0.0:9465
# Metrics and health of the proxy (9464) and the orchestrator (9465), and the orchestrator's
# ZMQ port; the proxy's ZMQ ports are the agents' own, set in the configuration.
EXPOSE 9464 9465 5570
STOPSIGNAL SIGTERM
ENTRYPOINT ["memshift"]
CMD ["proxy"]
