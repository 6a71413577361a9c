#!/usr/bin/env bash
# A/B of two broker binaries under ../shared/tools/loadgen (http), alternating
# fresh brokers, medians. Usage: bench/ab-loadgen.sh BROKER_A BROKER_B ROUNDS [loadgen flags]
# Example: bench/ab-loadgen.sh /tmp/base/broker target/release/broker 7 --msgs 200000 --window 64
a=$1 b=$2 rounds=$3; shift 3
cd "$(dirname "$0")/.."
cargo build --release --quiet --manifest-path ../shared/tools/loadgen/Cargo.toml --target-dir target/loadgen
lg=target/loadgen/release/loadgen
run() {
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$1" --bind 127.0.0.1 -p $port 2>/dev/null & local pid=$!
  for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.02; done
  "$lg" http --broker 127.0.0.1:$port --size 64 --listen-base-port $(( 20000 + RANDOM % 12000 )) "${@:2}" 2>/dev/null | grep -o '"throughput":[0-9.]*' | cut -d: -f2
  kill $pid; wait $pid 2>/dev/null
}
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
ra=(); rb=()
for _ in $(seq $rounds); do ra+=("$(run $a "$@")"); rb+=("$(run $b "$@")"); done
ma=$(printf '%s\n' "${ra[@]}" | median); mb=$(printf '%s\n' "${rb[@]}" | median)
echo "A: ${ra[*]}"; echo "B: ${rb[*]}"
echo "median A $ma B $mb ratio $(awk -v a=$ma -v b=$mb 'BEGIN{printf "%.3f", b/a}')"
