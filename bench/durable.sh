#!/usr/bin/env bash
# The durable-delivery benchmarks (issue 9's table): qos 1 with and without a
# log, qos 0 with a log against a baseline broker, and a restart over a log
# of a million messages. A fresh broker (and data directory) per run;
# medians of ROUNDS runs; 64-byte payloads.
#
# Usage: bench/durable.sh [ROUNDS] [BASELINE_BROKER]
#   ROUNDS           runs per scenario (default 3)
#   BASELINE_BROKER  a broker binary to compare qos 0 against, alternating
#                    (default: this broker without --data-dir)
# The data directories go under $TMPDIR (default /tmp): put that on the disk
# you want to measure.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
cargo build --release --quiet --bin broker --example benchmark
broker=./target/release/broker
baseline=${2:-$broker}
bench=./target/release/examples/benchmark
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

start() { # binary [flags...]; sets pid and addr
  local log=$work/log
  "$1" --bind 127.0.0.1 -p 0 "${@:2}" 2>"$log" &
  pid=$!
  for _ in $(seq 500); do grep -q "listening on" "$log" && break; sleep 0.01; done
  addr=$(grep -o 'listening on [^ ]*' "$log" | cut -d' ' -f3)
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; rm -rf "$work/data"; }

run() { # binary "broker flags" benchmark flags...; prints throughput and lost
  start "$1" $2
  "$bench" -a "$addr" --no-lat --size 64 -d 30 "${@:3}" |
    grep -o '"lost":[0-9]*\|"throughput":[0-9.]*' | cut -d: -f2 | paste -sd' '
  stop
}
median() { sort -n | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }

scenario() { # name binary "broker flags" benchmark flags...; prints a row, sets m
  local name=$1 out lost=0 t=()
  for _ in $(seq "$rounds"); do
    out=$(run "$2" "$3" "${@:4}")
    t+=("${out#* }")
    lost=$((lost + ${out%% *}))
  done
  m=$(printf '%s\n' "${t[@]}" | median)
  printf '%-46s %10.0f msg/s  lost %d  (runs: %s)\n' "$name" "$m" "$lost" "${t[*]}"
}

dir="--data-dir $work/data"
echo "broker $broker, $rounds runs each, $(nproc) cores, data under ${TMPDIR:-/tmp}"
scenario "qos 1, data dir, W=64" "$broker" "$dir" --qos 1 --window 64 -m 100000
scenario "qos 1, data dir, lock-step W=1" "$broker" "$dir" --qos 1 --window 1 -m 10000
scenario "qos 0, in memory, W=64" "$broker" "" --qos 0 --window 64 -m 200000; q0=$m
scenario "qos 1, in memory, W=64" "$broker" "" --qos 1 --window 64 -m 200000; q1=$m
awk -v a="$q0" -v b="$q1" 'BEGIN {printf "  qos 1 / qos 0 in memory = %.3f\n", b/a}'
scenario "qos 0, baseline broker, W=64" "$baseline" "" --qos 0 --window 64 -m 200000; b0=$m
scenario "qos 0, data dir, W=64" "$broker" "$dir" --qos 0 --window 64 -m 200000; d0=$m
awk -v a="$b0" -v b="$d0" 'BEGIN {printf "  qos 0 with a data dir / baseline = %.3f\n", b/a}'

# A million qos 1 messages in the log, answered by a durable subscriber;
# then the time from spawn to `listening on` over that log.
start "$broker" $dir
"$bench" -a "$addr" --no-lat --size 64 -d 60 --qos 1 --window 64 --pubs 2 -m 1000000 >/dev/null
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
echo "log of 1,000,000 messages: $(du -sh "$work/data" | cut -f1)"
times=()
for _ in $(seq "$rounds"); do
  t0=$(date +%s%N)
  start "$broker" $dir
  t1=$(date +%s%N)
  times+=($(( (t1 - t0) / 1000000 )))
  grep -o 'recovered .*' "$work/log"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
done
echo "restart over 1,000,000 messages: serving after $(printf '%s\n' "${times[@]}" | median) ms (runs: ${times[*]} ms; page cache warm)"
