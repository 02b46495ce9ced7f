# audit-exporter container image.
#
#   docker build -t audit-exporter .
#   docker run --rm -e AUDIT_EXPORTER__DATABASE__URL=postgres://... audit-exporter config check
#
# Configuration comes from AUDIT_EXPORTER__SECTION__KEY environment variables or a file
# mounted and named with --config (see config/default.toml for every key).

# ---- build ------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder
WORKDIR /build

# Dependencies first, in a layer of their own that is reused until Cargo.toml or Cargo.lock
# changes. Empty stand-ins for the crate's sources let cargo resolve and build them; the
# stand-ins' build records are then removed so the real crate is always compiled below.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --bin audit-exporter \
 && rm -rf src \
      target/release/audit-exporter \
      target/release/.fingerprint/audit-exporter-* \
      target/release/deps/audit_exporter-* \
      target/release/deps/libaudit_exporter-*

# The crate. migrations/ and config/default.toml are compiled into the binary.
COPY build.rs ./
COPY config ./config
COPY migrations ./migrations
COPY src ./src
RUN cargo build --release --locked --bin audit-exporter \
 && install -m 0755 target/release/audit-exporter /usr/local/bin/audit-exporter

# ---- runtime ----------------------------------------------------------------------------
FROM debian:bookworm-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 audit-exporter \
 && useradd --system --uid 10001 --gid audit-exporter \
      --home-dir /var/lib/audit-exporter --create-home --shell /usr/sbin/nologin audit-exporter

COPY --from=builder /usr/local/bin/audit-exporter /usr/local/bin/audit-exporter

USER 10001:10001
# /metrics, /healthz and /readyz when run.listen is 0.0.0.0:9187.
EXPOSE 9187
WORKDIR /var/lib/audit-exporter

ENTRYPOINT ["audit-exporter"]
CMD ["run"]
