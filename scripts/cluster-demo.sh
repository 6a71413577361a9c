#!/usr/bin/env bash
# A cluster to try on one machine (PROTOCOL.md 6.7): a nats-server on
# 127.0.0.1:4222 (or a free port if 4222 is taken) and three brokers on
# 127.0.0.1:9001-9003 bridged to it. Prints curl commands to subscribe on one
# broker and publish on another, then waits; Ctrl-C stops everything.
#
# Usage: scripts/cluster-demo.sh
# Environment: NATS_PORT (default 4222), BROKER_PORTS (default "9001 9002 9003").
# The broker is built into and run from ${CARGO_TARGET_DIR:-target}/release.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nats-server >/dev/null || {
  echo "cluster-demo: nats-server is missing (Debian/Ubuntu: apt-get install nats-server;" \
       "or a release from https://github.com/nats-io/nats-server/releases)" >&2
  exit 2
}
release=${CARGO_TARGET_DIR:-target}/release
ports=(${BROKER_PORTS:-9001 9002 9003})
nats_port=${NATS_PORT:-4222}

# Something answers on 127.0.0.1:PORT.
taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
  for _ in $(seq 250); do taken "$1" && return; sleep 0.02; done
  echo "cluster-demo: nothing listens on $1; see $work/$2.log" >&2
  tail -n 5 "$work/$2.log" >&2
  exit 1
}

for p in "${ports[@]}"; do
  if taken "$p"; then echo "cluster-demo: port $p is taken (set BROKER_PORTS)" >&2; exit 1; fi
done
if taken "$nats_port"; then
  echo "cluster-demo: port $nats_port is taken; using a free one for nats-server" >&2
  nats_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
fi

echo "building the broker..." >&2
cargo build --release --quiet --bin broker
work=$(mktemp -d)
pids=()
cleanup() {
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
  echo "cluster-demo: stopped" >&2
}
trap cleanup EXIT
trap 'exit 0' INT TERM

nats-server -a 127.0.0.1 -p "$nats_port" >"$work/nats.log" 2>&1 & pids+=($!)
wait_port "$nats_port" nats
for p in "${ports[@]}"; do
  "$release/broker" --bind 127.0.0.1 -p "$p" --nats "nats://127.0.0.1:$nats_port" \
    2>"$work/broker-$p.log" & pids+=($!)
  wait_port "$p" "broker-$p"
done

a=${ports[0]} b=${ports[1]} c=${ports[2]}
cat <<EOF
nats-server on 127.0.0.1:$nats_port, brokers on 127.0.0.1:$a, :$b and :$c (logs in $work).

In one terminal, a stream on the broker at :$a (Ctrl-C ends it):
  curl -N 127.0.0.1:$a/sub/hello/world -H 'Accept: text/event-stream'

In another, one on the broker at :$c, as JSON lines:
  curl -N 127.0.0.1:$c/sub/hello/%23 -H 'Accept: application/x-ndjson'

Publish on the broker at :$b; both streams get it:
  curl -i -X POST 127.0.0.1:$b/pub/hello/world -d '{"data":"hello from $b"}'

A callback subscriber works the same way: with netcat as a throw-away
listener on port 10000 (it never answers, so the broker drops it after 5 s):
  nc -l 10000 &      # traditional netcat: nc -l -p 10000 &
  curl -i -X POST 127.0.0.1:$c/sub/hello/world -d '{"qos":0,"port":"10000"}'

The bridge's counters, on each broker:
  curl -s 127.0.0.1:$b/metrics | grep bridge_

Ctrl-C here stops the brokers and nats-server.
EOF
wait "${pids[@]}"
