# folio serve in a container: `docker build -t folio .` then
#   docker run -d -p 4780:4780 -v folio-data:/data folio
# The admin token is in the volume (/data/admin.token); see docs/operations.md.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# Only the folio binary; the workspace's tests and benchmarks stay out of the image.
RUN cargo build --release --locked -p folio-cli \
    && cp target/release/folio /usr/local/bin/folio \
    && rm -rf target

FROM debian:bookworm-slim
# ca-certificates: the system roots folio's TLS clients trust (PostgreSQL with sslmode=verify-full, sync remotes).
# Not pinned: the roots must be the distribution's current ones.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin folio \
    && mkdir -p /data \
    && chown folio /data \
    && chmod 700 /data
COPY --from=build /usr/local/bin/folio /usr/local/bin/folio
USER 10001
VOLUME ["/data"]
EXPOSE 4780
ENV FOLIO_DATA_DIR=/data FOLIO_LISTEN=0.0.0.0:4780
# No HEALTHCHECK: the image has no HTTP client; orchestrators probe GET /v1/health (liveness) and /v1/ready.
ENTRYPOINT ["folio"]
CMD ["serve"]
