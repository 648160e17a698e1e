# syntax=docker/dockerfile:1
# Qrusty container image: the release binary on a slim Debian runtime, running as an
# unprivileged user with its write-ahead log on the /data volume.
#
#   docker build -t qrusty .
#   docker run -p 6784:6784 -v qrusty-data:/data qrusty
#
# Requirements: SYS-0016, SYS-0017, SYS-0018, SYS-0019

# The builder's Debian release must match the runtime's, so that the binary finds the
# glibc it was linked against.
ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=trixie

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder
WORKDIR /build
COPY . .
# The cache mounts keep the registry and the target directory between builds; the binary
# is copied out of the mounted target directory, which does not outlive this step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/build/target \
    cargo build --release --locked --bin qrusty \
    && install -D -m 0755 target/release/qrusty /out/qrusty

FROM debian:${DEBIAN_RELEASE}-slim
# A fixed uid/gid, so that a volume prepared on the host can be chowned to match.
RUN groupadd --system --gid 10001 qrusty \
    && useradd --system --uid 10001 --gid qrusty --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin qrusty \
    && mkdir -p /data \
    && chown qrusty:qrusty /data
COPY --from=builder /out/qrusty /usr/local/bin/qrusty
COPY scripts/docker-healthcheck.sh /usr/local/bin/qrusty-healthcheck

ENV DATA_PATH=/data \
    BIND_ADDR=0.0.0.0:6784 \
    STORAGE_MODE=wal \
    RUST_LOG=info
VOLUME ["/data"]
EXPOSE 6784
USER 10001:10001
WORKDIR /data
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/qrusty-healthcheck"]
# The server drains in-flight requests and syncs the log on SIGTERM, then exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/qrusty"]
