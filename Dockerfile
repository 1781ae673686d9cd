# Ferry: every binary in one image (ferry, ferry-api, ferry-torrent-worker, ferry-fetch-worker,
# ferry-upload-worker). cli/tests/deploy.rs checks that every [[bin]] of the ferry package and
# every command docker-compose.yml runs is copied here.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p ferry \
 && mkdir /out \
 && cp target/release/ferry target/release/ferry-api target/release/ferry-torrent-worker \
       target/release/ferry-fetch-worker target/release/ferry-upload-worker /out/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /var/lib/ferry ferry \
 && mkdir -p /var/lib/ferry /srv/ferry/staging /srv/ferry/storage \
 && chown -R ferry /var/lib/ferry /srv/ferry
COPY --from=build /out/ /usr/local/bin/
USER ferry
ENV FERRY_DATA_DIR=/var/lib/ferry \
    FERRY_LISTEN=0.0.0.0:8080
EXPOSE 8080 6881
CMD ["ferry", "serve"]
