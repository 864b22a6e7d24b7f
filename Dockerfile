# syntax=docker/dockerfile:1
#
# seatrush: a release build in the Rust image, run from debian:bookworm-slim as a non-root user.
#
#   docker build -t seatrush .
#   docker run --rm -p 8080:8080 -e SEATRUSH_REDIS_URL=… -e SEATRUSH_MYSQL_PRIMARY_URL=… \
#     -e SEATRUSH_MYSQL_REPLICA_URL=… seatrush
#
# Configuration is only the SEATRUSH_* environment variables (`seatrush --help` lists them).
# `docker run … seatrush demo-data` loads the demo data into an empty database.

ARG RUST_VERSION=1

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# The Lua scripts, the migrations and the OpenAPI document are compiled into the binary
# (include_str!), so these are all the build needs; nothing but the binary is needed at run
# time.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY lua ./lua
COPY migrations ./migrations
COPY api ./api
# Cache mounts keep the crates.io downloads and the target directory between builds; the binary
# is copied out of the (unexported) target cache.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin seatrush \
 && install -D -m 0755 target/release/seatrush /out/seatrush

# Same Debian release as the builder, so the glibc the binary links against is there. The only
# other shared library it loads is zlib (mysql_async's compression, via libz-sys), which
# bookworm-slim ships; there is no TLS, so no OpenSSL and no CA bundle.
FROM debian:bookworm-slim AS runtime
RUN groupadd --system --gid 10001 seatrush \
 && useradd --system --uid 10001 --gid seatrush --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin seatrush
COPY --from=build /out/seatrush /usr/local/bin/seatrush

ENV SEATRUSH_HTTP_ADDR=0.0.0.0:8080 \
    SEATRUSH_LOG=info
EXPOSE 8080
# Numeric, so orchestrators that check runAsNonRoot can see it is not root.
USER 10001:10001

# SIGTERM is a graceful shutdown: in-flight requests get up to 20 s while the flusher drains the
# outbox (up to 10 s), so give the container more than 20 s (docker-compose.yml: 40 s).
STOPSIGNAL SIGTERM

# GET /ready (this instance can take writes) answers from state probed in the background (no
# I/O per call). The image has no curl; bash's /dev/tcp is enough for one request on a
# `Connection: close` socket.
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /ready HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && grep -q '\"status\":\"READY\"' <&3"]

ENTRYPOINT ["/usr/local/bin/seatrush"]
