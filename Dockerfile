# syntax=docker/dockerfile:1
# crs in a container: one static binary on an empty base image, running as
# an unprivileged user, with its state in the /data volume.
#
#   docker build -t crs .
#   docker run -d --name crs -p 127.0.0.1:3000:3000 -v crs-data:/data crs
#   docker logs crs                       # the first start prints the admin login
#   docker exec crs crs keys create --name alice
#
# docker-compose.yml beside this file does the same; docs/deploy.md has the
# reverse-proxy settings streaming needs.

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first, so this layer stays cached until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# CGO_ENABLED=0 gives one static binary (the SQLite driver is pure Go);
# timetzdata embeds the zone database, so TIMEZONE works on an empty image.
RUN CGO_ENABLED=0 go build -trimpath -tags timetzdata -ldflags "-s -w" -o /out/crs ./cmd/crs \
 && mkdir -p /out/data /out/tmp && chmod 1777 /out/tmp

FROM scratch
# CA roots for HTTPS to the upstream APIs; the empty image has none.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/tmp /tmp
COPY --from=build /out/crs /usr/local/bin/crs
# DATA_DIR belongs to the unprivileged user the server runs as.
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV PATH=/usr/local/bin DATA_DIR=/data HOST=0.0.0.0 PORT=3000
VOLUME ["/data"]
EXPOSE 3000
# GET /health on 127.0.0.1:$PORT; an empty image has no shell or curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 CMD ["/usr/local/bin/crs", "healthcheck"]
# On SIGTERM crs drains open streams for SHUTDOWN_TIMEOUT (30s by default):
# stop it with a longer grace period (docker stop -t 45; compose sets it).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/crs"]
CMD ["serve"]
