# syntax=docker/dockerfile:1
#
# One image with both Orderflow binaries: `orderflow-worker` and `orderflow` (CLI and
# `orderflow serve`). docker-compose.yml builds it; by hand: `docker build -t orderflow .`
# The load generator (`orderflow-load`, bench/load/) is a bench tool and stays out of the image.
#
# The build needs no protoc (temporalio-client's `vendored-protox` feature compiles the protos
# in Rust) and no database (sqlx::migrate! only embeds migrations/ at compile time).

############################## builder ##############################
FROM rust:1.95-bookworm AS builder
WORKDIR /src

# Dependencies first, from the manifests alone, so that editing Orderflow's own code reuses
# this layer instead of recompiling a few hundred crates. Every workspace member's manifest
# must be copied here (cargo refuses a workspace with a missing member; a new crate therefore
# fails this step loudly until it is added).
COPY Cargo.toml Cargo.lock ./
COPY domain/Cargo.toml domain/
COPY protocols/Cargo.toml protocols/
COPY activities/Cargo.toml activities/
COPY relay/Cargo.toml relay/
COPY workflows/Cargo.toml workflows/
COPY worker/Cargo.toml worker/
COPY client/Cargo.toml client/
COPY http/Cargo.toml http/
COPY starter/Cargo.toml starter/
COPY bench/load/Cargo.toml bench/load/
COPY tests/Cargo.toml tests/
# Empty stand-ins for the workspace's own crates; `cargo clean -p` then drops what was built
# from them, so the real sources below are always recompiled (their mtimes, older than the
# stand-ins', would otherwise let cargo keep the empty build).
RUN set -eux; \
    for crate in domain protocols activities relay workflows worker client http starter bench/load tests; do \
        mkdir -p "$crate/src"; \
        : > "$crate/src/lib.rs"; \
    done; \
    for crate in worker starter bench/load; do \
        echo 'fn main() {}' > "$crate/src/main.rs"; \
    done; \
    cargo build --release --locked --bins -p orderflow-worker -p orderflow-starter; \
    cargo clean --release \
        -p orderflow-domain -p orderflow-protocols -p orderflow-activities -p orderflow-relay \
        -p orderflow-workflows \
        -p orderflow-worker -p orderflow-client -p orderflow-http -p orderflow-starter -p orderflow-tests

# The real sources, and migrations/ for sqlx::migrate!.
COPY . .
RUN cargo build --release --locked --bins -p orderflow-worker -p orderflow-starter

############################## runtime ##############################
FROM debian:bookworm-slim AS runtime

# ca-certificates: TLS to Stripe and to Temporal Cloud. Nothing else: no compiler, no curl
# (healthchecks use bash's /dev/tcp, see deploy/http-check.sh).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A fixed non-root uid, so volume ownership and Kubernetes runAsNonRoot checks are predictable.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/orderflow \
        --shell /usr/sbin/nologin orderflow

COPY --from=builder /src/target/release/orderflow /src/target/release/orderflow-worker /usr/local/bin/
COPY --chmod=0755 deploy/http-check.sh /usr/local/bin/orderflow-http-check

USER orderflow:orderflow
# The default DATABASE_URL (sqlite://data/orderflow.db) is relative: a plain `docker run`
# then writes into the user's own home, not into /.
WORKDIR /home/orderflow
EXPOSE 8080 9464
CMD ["orderflow-worker"]
