#!/usr/bin/env bash
# The publish rate with 10 and with 100,000 subscriptions on distinct topics
# (issue 11's "a publish costs the same"), alternating, ROUNDS times each
# (default 3), and the medians: to the one subscribed topic the publisher
# hits (one match), and to a topic nobody subscribes to (the routing alone).
#   bench/patterns.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
cargo build --release -q --bin broker --example stream_benchmark
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 300); do python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return; sleep 0.02; done; echo "patterns: nothing listens on $1" >&2; exit 1; }
run() { # SUBSCRIPTIONS TOPIC
  local port
  port=$(free_port)
  target/release/broker --bind 127.0.0.1 -p "$port" --log-level error &
  local pid=$!
  wait_port "$port"
  target/release/examples/stream_benchmark subscriptions -a "127.0.0.1:$port" \
    --subscriptions "$1" -m 100000 --window 64 --topic "$2" 2>/dev/null \
    | sed -n 's/.*"publish_per_s":\([0-9]*\).*/\1/p'
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for topic in bench/sub/0 bench/none; do
  few=(); many=()
  for _ in $(seq "$rounds"); do
    few+=("$(run 10 "$topic")"); many+=("$(run 100000 "$topic")")
  done
  f=$(printf '%s\n' "${few[@]}" | median); m=$(printf '%s\n' "${many[@]}" | median)
  echo "publish to $topic, W=64: 10 subscriptions ${few[*]} (median $f); 100,000: ${many[*]} (median $m); ratio $(awk "BEGIN{printf \"%.2f\", $m/$f}")"
done
