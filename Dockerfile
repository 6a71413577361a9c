# The broker as a container image holding one static binary.
#   docker build -t message-broker .
#   docker run --rm -p 9999:9999 message-broker
# Durable (qos 1 and retained messages, sessions survive a restart):
#   docker run --rm -p 9999:9999 -v mb-data:/data -e BROKER_DATA_DIR=/data message-broker
# Without BROKER_DATA_DIR (or --data-dir) the broker keeps everything in memory.
# Kraftfile uses this file as the unikernel's root filesystem too.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The static-pie build (also run by .ci/run): no interpreter, no shared libraries.
RUN RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --target x86_64-unknown-linux-gnu --bin broker
# The data directory, owned by the user the broker runs as (a named volume
# mounted there takes this owner).
RUN mkdir /data

FROM scratch
COPY --from=build /src/target/x86_64-unknown-linux-gnu/release/broker /broker
COPY --from=build --chown=65532:65532 /data /data
VOLUME /data
USER 65532:65532
EXPOSE 9999
# No shell in the image: the binary checks its own health endpoint. It reads
# BROKER_PORT as the broker does, so set the port that way to move both.
HEALTHCHECK --interval=10s --timeout=5s --start-period=2s --retries=3 CMD ["/broker", "healthcheck"]
ENTRYPOINT ["/broker"]
CMD ["-p", "9999"]
