# The harness's image: built in a Rust stage, run as a non-root user (uid 10001) on a slim
# Debian. Build and push (README, "Load from many pods"):
#   docker build -t registry.example.com/duo-harness:0.1 . && docker push registry.example.com/duo-harness:0.1
# The proto is compiled by protox (pure Rust): the build stage needs no protoc.
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --features goose \
    && strip target/release/duo-harness

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin duo
COPY --from=build /src/target/release/duo-harness /usr/local/bin/duo-harness
USER 10001:10001
WORKDIR /runs
ENTRYPOINT ["duo-harness"]
CMD ["--help"]
