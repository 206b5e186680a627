# kubecost-bridge container image.
#
#   docker build -t kubecost-bridge:0.1.0 .
#   docker run --rm -p 8080:8080 -v kb-data:/var/lib/kubecost-bridge kubecost-bridge:0.1.0
#
# Three stages: `planner` reduces the workspace to its manifests and stub targets, `builder`
# compiles the dependencies from that skeleton (a layer reused until Cargo.toml or Cargo.lock
# change) and then the real sources, and the runtime stage is debian:bookworm-slim with the
# binary, CA certificates and a default config, running as uid 65532.
#
# Base images are named without a registry host: your builder's configured registry (or its
# mirror) resolves them. Pin digests in your own build pipeline if you need reproducibility.

ARG RUST_VERSION=1

# ----- planner: the dependency skeleton -------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS planner
WORKDIR /src
COPY . .
RUN sh deploy/docker/skeleton.sh /skeleton

# ----- builder ------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /build
# Dependencies only: this layer is cached while the manifests and the lock file are unchanged.
COPY --from=planner /skeleton/ ./
RUN cargo build --release --locked -p kubecost-bridge
# The real sources. Their modification times may be older than the stubs', so touch them:
# cargo decides what to rebuild by mtime.
COPY . .
RUN find crates -name '*.rs' -exec touch {} + \
    && cargo build --release --locked -p kubecost-bridge \
    && install -m 0755 target/release/kubecost-bridge /usr/local/bin/kubecost-bridge \
    && /usr/local/bin/kubecost-bridge --version

# ----- runtime ------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
# The binary links only glibc and libgcc (TLS is rustls, SQLite is compiled in);
# ca-certificates is for `tls.ca_file`-less https endpoints whose CA the system trusts.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 65532 nonroot \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /var/lib/kubecost-bridge \
         --shell /usr/sbin/nologin nonroot \
    && mkdir -p /var/lib/kubecost-bridge /etc/kubecost-bridge \
    && chown 65532:65532 /var/lib/kubecost-bridge \
    && chmod 0750 /var/lib/kubecost-bridge
COPY --from=builder /usr/local/bin/kubecost-bridge /usr/local/bin/kubecost-bridge
# A default config (in-cluster Kubecost, store under /var/lib/kubecost-bridge, API on :8080);
# on Kubernetes the ConfigMap is mounted over /etc/kubecost-bridge.
COPY deploy/docker/config.yaml /etc/kubecost-bridge/config.yaml
# The only writable path the bridge needs (the SQLite store and its WAL): the root filesystem
# can be mounted read-only. SQLite's temporary files go to TMPDIR (mount an emptyDir there).
VOLUME ["/var/lib/kubecost-bridge"]
WORKDIR /var/lib/kubecost-bridge
ENV TMPDIR=/tmp
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["kubecost-bridge"]
CMD ["run", "--config", "/etc/kubecost-bridge/config.yaml"]
