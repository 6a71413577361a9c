#!/usr/bin/env bash
# Three brokers bridged by one nats-server (PROTOCOL.md 6.7) against one
# broker alone, the same load on both, everything on this machine over
# loopback, 64-byte payloads (examples/cluster_benchmark.rs):
#   throughput: 3 publishers (one per broker), W=16, 6 subscribers on one
#               topic (two per broker): 2/3 of the deliveries cross brokers;
#   paced:      5,000 msg/s in all from 3 publishers (one per broker) to 3
#               subscribers (one per broker): local and cross-broker p99.
# The single-broker run puts the same publishers and subscribers on one
# broker without --nats. Fresh processes for every run, cluster and single
# alternating; medians of ROUNDS runs (lost: the worst run).
#
# Usage: bench/cluster.sh [ROUNDS]   (default 3)
# Binaries are built into and run from ${CARGO_TARGET_DIR:-target}/release.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
for tool in nats-server python3; do
  command -v "$tool" >/dev/null || { echo "cluster: $tool is missing (apt-get install nats-server)" >&2; exit 2; }
done
release=${CARGO_TARGET_DIR:-target}/release
cargo build --release --quiet --bin broker --example cluster_benchmark
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 300); do python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return; sleep 0.02; done; echo "cluster: nothing listens on $1" >&2; exit 1; }

# Starts a nats-server and 3 brokers bridged to it (cluster) or 1 broker
# (single); sets addrs (comma-separated) and pids.
start() {
  local nats_flag=() n=1 port
  if [ "$1" = cluster ]; then
    port=$(free_port)
    nats-server -a 127.0.0.1 -p "$port" >"$work/nats.log" 2>&1 & pids+=($!)
    wait_port "$port"
    nats_flag=(--nats "nats://127.0.0.1:$port")
    n=3
  fi
  addrs=
  for i in $(seq "$n"); do
    port=$(free_port)
    "$release/broker" --bind 127.0.0.1 -p "$port" --log-level warn "${nats_flag[@]}" \
      2>"$work/broker$i.log" & pids+=($!)
    wait_port "$port"
    addrs+="${addrs:+,}127.0.0.1:$port"
  done
}
stop() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}

# One run on fresh processes: the driver's JSON line in $work/run.json.
# Not in a subshell, so that the trap knows every pid.
one() { # cluster|single driver-flags...
  local mode=$1; shift
  start "$mode"
  local list; list=$(IFS=,; echo "${pids[*]}")
  if ! "$release/examples/cluster_benchmark" --brokers "$addrs" --pids "$list" "$@" >"$work/run.json"; then
    echo "cluster: the $mode run failed ($*); logs:" >&2
    tail -n 5 "$work"/*.log >&2
    exit 1
  fi
  stop
}
field() { grep -o "\"$1\":[-0-9.a-z]*" <<<"$2" | head -1 | cut -d: -f2; }
median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
worst() { sort -g | tail -1; }
us() { awk -v v="$1" 'BEGIN { if (v >= 1000) printf "%.1f ms", v/1000; else printf "%.0f µs", v }'; }
num() { printf '%.0f' "$1" | sed ':a; s/\B[0-9]\{3\}\>/,&/; ta'; }

throughput=(--pubs 3 --subs 6 --window 16 -m 300000)
paced=(--pubs 3 --subs 3 --rate 5000 --window 1000 -m 20000)
declare -A results # "scenario mode" -> JSON lines
for r in $(seq "$rounds"); do
  for scenario in throughput paced; do
    for mode in cluster single; do
      declare -n flags=$scenario
      one "$mode" "${flags[@]}"
      out=$(<"$work/run.json")
      results["$scenario $mode"]+="$out"$'\n'
      echo "round $r $scenario $mode: $(field throughput "$out")/s, lost $(field lost "$out"), dups $(field dups "$out"), p99 local $(field local_p99_us "$out") µs, cross $(field cross_p99_us "$out") µs, bridge drops $(field bridge_dropped "$out"), CPU s ([nats-server,] brokers) $(grep -o '"cpu_s":\[[^]]*\]' <<<"$out" | cut -d: -f2)" >&2
    done
  done
done

stat() { # scenario mode field median|worst
  while read -r line; do
    if [ -n "$line" ]; then field "$3" "$line"; fi
  done <<<"${results["$1 $2"]}" | "$4"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

ct=$(stat throughput cluster throughput median); st=$(stat throughput single throughput median)
lost_c=$(( $(stat throughput cluster lost worst) + $(stat paced cluster lost worst) ))
lost_s=$(( $(stat throughput single lost worst) + $(stat paced single lost worst) ))
dups_c=$(( $(stat throughput cluster dups worst) + $(stat paced cluster dups worst) ))
drops_c=$(( $(stat throughput cluster bridge_dropped worst) + $(stat paced cluster bridge_dropped worst) ))
pc=$(stat paced cluster cross_p99_us median); pl=$(stat paced cluster local_p99_us median)
ps=$(stat paced single p99_us median)
echo
echo "$(date -u +%Y-%m-%d), $(nproc) cores, $(uname -r), nats-server $(nats-server --version 2>/dev/null | grep -o 'v[0-9][0-9.]*' | head -1), medians of $rounds (lost, dups: worst run)"
echo
echo "| scenario | 3 brokers + NATS | 1 broker | cluster / single | target |"
echo "|---|---|---|---|---|"
echo "| 3 publishers (one per broker) → 6 subscribers (two per broker), W=16: deliveries/s | $(num "$ct") | $(num "$st") | $(ratio "$ct" "$st") | ≥ 0.50 |"
echo "| the same, p99 local / cross-broker | $(us "$(stat throughput cluster local_p99_us median)") / $(us "$(stat throughput cluster cross_p99_us median)") | $(us "$(stat throughput single p99_us median)") | | |"
echo "| paced 5,000 msg/s, 3 → 3 (one of each per broker): p99 local / cross-broker | $(us "$pl") / $(us "$pc") | $(us "$ps") | $(ratio "$pc" "$ps") (cross) | cross ≤ 1 ms |"
echo "| lost / duplicated, both scenarios (bridge drops) | $lost_c / $dups_c ($drops_c) | $lost_s / $(( $(stat throughput single dups worst) + $(stat paced single dups worst) )) | | 0 |"
