#!/usr/bin/env bash
# Runs the standard scenarios of the performance issue against a release
# broker process on loopback (a fresh one per scenario), RUNS times each (default 3), and prints a table
# of medians. Usage: bench/run.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
cargo build --release --quiet --bin broker --example benchmark
bench=./target/release/examples/benchmark
log=$(mktemp)
trap 'kill "$pid" 2>/dev/null; rm -f "$log"' EXIT

# A fresh broker for each scenario, so that its RSS is that scenario's alone.
start_broker() {
  [ -z "${pid:-}" ] || { kill "$pid"; wait "$pid" 2>/dev/null || true; }
  ./target/release/broker --bind 127.0.0.1 -p 0 2>"$log" &
  pid=$!
  until grep -q "listening on" "$log"; do sleep 0.01; done
  addr=$(grep -o 'listening on [^ ]*' "$log" | cut -d' ' -f3)
}
start_broker
idle_rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
field() { grep -o "\"$1\":[0-9.]*" | cut -d: -f2; }

scenario() { # name, benchmark flags...
  local name=$1; shift
  local out=()
  start_broker
  for _ in $(seq "$runs"); do
    out+=("$("$bench" -a "$addr" --broker-pid "$pid" --no-lat --size 64 "$@")")
  done
  local tp lost p99 rss
  tp=$(printf '%s\n' "${out[@]}" | field throughput | median)
  lost=$(printf '%s\n' "${out[@]}" | field lost | sort -n | tail -1)
  p99=$(printf '%s\n' "${out[@]}" | field p99_us | median)
  rss=$(printf '%s\n' "${out[@]}" | field broker_rss_kib | sort -n | tail -1)
  printf '| %-44s | %12s | %8s | %10s | %12s |\n' "$name" "$tp" "$lost" "$p99" "$rss"
}

echo "medians of $runs runs; lost and RSS are the worst run; $(nproc) cores; $(date -u +%F)"
printf '| %-44s | %12s | %8s | %10s | %12s |\n' scenario "delivered/s" "lost" "p99 µs" "broker KiB"
printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..46})" "--------------" "----------" "------------" "--------------"
scenario "1 pub -> 1 sub, lock-step (W=1)" -m 30000
scenario "1 pub -> 1 sub, pipelined W=64" -m 300000 --window 64
scenario "1 pub -> 10 subs (same topic), W=1" -m 10000 --subs 10
scenario "10 pubs -> 10 subs on 10 topics, W=16" -m 300000 --pubs 10 --subs 10 --topics 10 --window 16
scenario "paced 5,000 msg/s, 1 -> 1" -m 10000 --rate 5000
echo
echo "broker idle RSS: ${idle_rss} KiB"
echo "start-up, spawn to ready line, median of 10: $("$bench" --startup ./target/release/broker | field startup_p50_us) µs"
