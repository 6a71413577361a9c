#!/usr/bin/env bash
# A/B of two broker binaries with the same benchmark binary: alternates
# them ROUNDS times (a fresh broker each run) and prints both medians and
# their ratio. Usage: bench/ab.sh BROKER_A BROKER_B ROUNDS [benchmark flags...]
# Example: bench/ab.sh /tmp/base/target/release/broker target/release/broker 6 -m 10000 --subs 10
set -euo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2 rounds=$3
shift 3
cargo build --release --quiet --example benchmark
bench=./target/release/examples/benchmark

run() { # broker binary; prints the throughput of one run
  local log pid addr
  log=$(mktemp)
  "$1" --bind 127.0.0.1 -p 0 2>"$log" &
  pid=$!
  until grep -q "listening on" "$log"; do sleep 0.01; done
  addr=$(grep -o 'listening on [^ ]*' "$log" | cut -d' ' -f3)
  "$bench" -a "$addr" --no-lat --size 64 "${@:2}" | grep -o '"throughput":[0-9.]*' | cut -d: -f2
  kill "$pid"; wait "$pid" 2>/dev/null || true; rm -f "$log"
}
median() { sort -n | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }

ra=() rb=()
for _ in $(seq "$rounds"); do
  ra+=("$(run "$a" "$@")")
  rb+=("$(run "$b" "$@")")
done
ma=$(printf '%s\n' "${ra[@]}" | median)
mb=$(printf '%s\n' "${rb[@]}" | median)
echo "A $a: ${ra[*]} -> median $ma"
echo "B $b: ${rb[*]} -> median $mb"
awk -v a="$ma" -v b="$mb" 'BEGIN {printf "B/A = %.3f\n", b/a}'
