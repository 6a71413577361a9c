#!/usr/bin/env bash
# Our broker side by side with nats-server and mosquitto (both from Debian),
# one load generator for all (../shared/tools/loadgen), 64-byte payloads,
# loopback, a fresh server per run; medians of ROUNDS runs. Also the
# generator's own HTTP ceiling (`loadgen mock-http-broker`), so that a
# ratio can be read against what the generator can drive at all.
#
# Usage: bench/peers.sh [ROUNDS]   (default 3)
# Prints one table: deliveries/s (p99 for the paced row), lost (worst run),
# peak RSS of each server, and our ratio to NATS. Mosquitto runs QoS 1
# publishes (its PUBACK is the answer, as our 202 and NATS's PONG are).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
for tool in nats-server mosquitto python3; do
  command -v "$tool" >/dev/null || { echo "peers: $tool is missing (apt-get install nats-server mosquitto)" >&2; exit 2; }
done
cargo build --release --quiet --bin broker
# The static-pie build the container image and the unikernel ship (see Dockerfile).
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --quiet \
  --target x86_64-unknown-linux-gnu --bin broker
cargo build --release --quiet --manifest-path ../shared/tools/loadgen/Cargo.toml --target-dir target/loadgen
lg=target/loadgen/release/loadgen
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 300); do python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return; sleep 0.02; done; echo "peers: nothing listens on $1" >&2; exit 1; }

start() { # server; sets pid and port
  port=$(free_port)
  case $1 in
    ours) target/release/broker --bind 127.0.0.1 -p "$port" 2>"$work/log" & pid=$! ;;
    static) target/x86_64-unknown-linux-gnu/release/broker --bind 127.0.0.1 -p "$port" 2>"$work/log" & pid=$! ;;
    mock) "$lg" mock-http-broker --port "$port" >/dev/null 2>&1 & pid=$! ;;
    nats) nats-server -a 127.0.0.1 -p "$port" >/dev/null 2>&1 & pid=$! ;;
    mosquitto) printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" >"$work/mosq.conf"
               mosquitto -c "$work/mosq.conf" >/dev/null 2>&1 & pid=$! ;;
  esac
  wait_port "$port"
}
stop() { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; pid=; }

# Subscribers listen on ports below Linux's ephemeral range (32768 on), so
# that no connection's own port can take one of theirs.
one() { # server scenario-flags...; prints "throughput p99 lost rss_kib"
  local server=$1; shift
  start "$server"
  local proto=http target=--broker
  case $server in nats) proto=nats target=--server ;; mosquitto) proto=mqtt target=--server ;; esac
  local out
  out=$("$lg" "$proto" "$target" "127.0.0.1:$port" --size 64 --listen-base-port "$(( 20000 + RANDOM % 12000 ))" "$@" 2>/dev/null | tail -1)
  local rss
  rss=$("$lg" rss --pid "$pid" | grep -o '"vm_hwm_kib":[0-9]*' | cut -d: -f2)
  stop
  local f
  f() { grep -o "\"$1\":[0-9.]*" <<<"$out" | cut -d: -f2; }
  echo "$(f throughput) $(f lat_p99_us) $(f lost) ${rss:-0}"
}
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

row() { # name servers scenario-flags...
  local name=$1 servers=$2; shift 2
  local line="| $name |" s
  declare -A thr p99 lost rss ts ps
  # Rounds outside, servers inside: each server's runs are spread over the
  # same stretch of time, so a drift of this noisy machine hits all alike.
  for _ in $(seq "$rounds"); do
    for s in $servers; do
      local o a b c d
      o=$(one "$s" "$@")
      read -r a b c d <<<"$o"
      ts[$s]+="${a:-0} "; ps[$s]+="${b:-0} "
      lost[$s]=$(( ${lost[$s]:-0} > ${c:-0} ? ${lost[$s]:-0} : ${c:-0} ))
      rss[$s]=$(( ${rss[$s]:-0} > ${d:-0} ? ${rss[$s]:-0} : ${d:-0} ))
    done
  done
  for s in $servers; do
    thr[$s]=$(tr ' ' '\n' <<<"${ts[$s]}" | grep . | median)
    p99[$s]=$(tr ' ' '\n' <<<"${ps[$s]}" | grep . | median)
  done
  for s in ours nats mosquitto mock; do
    if [ -n "${thr[$s]:-}" ]; then
      if [ "$name" = "paced 5,000/s: p99 µs" ]; then line+=" ${p99[$s]} (lost ${lost[$s]}, ${rss[$s]} KiB) |"
      else line+=" $(printf '%.0f' "${thr[$s]}") (lost ${lost[$s]}, ${rss[$s]} KiB) |"; fi
    else line+=" — |"; fi
  done
  if [ "$name" = "paced 5,000/s: p99 µs" ]; then
    line+=" $(awk -v a="${p99[ours]}" -v b="${p99[nats]}" 'BEGIN {printf "%.2f", a/b}') |"
  else
    line+=" $(awk -v a="${thr[ours]}" -v b="${thr[nats]}" 'BEGIN {printf "%.2f", a/b}') |"
  fi
  echo "$line"
}

idle() { # servers: the RSS of each, started and not yet used (medians of rounds)
  local line="| idle RSS, KiB |" s r v
  for s in "$@"; do
    v=$(for r in $(seq "$rounds"); do
      start "$s"
      sleep 0.3 # the probe connection of wait_port has closed by then
      "$lg" rss --pid "$pid" | grep -o '"vm_rss_kib":[0-9]*' | cut -d: -f2
      stop
    done | median)
    line+=" $v |"
  done
  echo "$line"
}

echo "$(date -u +%Y-%m-%d), $(nproc) cores, $(uname -r), medians of $rounds; cells: deliveries/s (worst lost, peak RSS)"
echo "| scenario | ours | NATS $(nats-server --version 2>/dev/null | grep -o 'v[0-9][0-9.]*' | head -1) | Mosquitto (QoS 1) | loadgen mock HTTP relay | ours / NATS |"
echo "|---|---|---|---|---|---|"
all="ours nats mosquitto"
row "1 → 1 lock-step (W=1)" "ours nats" --msgs 20000 --window 1
row "1 → 1 pipelined W=64" "ours nats mock" --msgs 200000 --window 64
row "1 → 10 subscribers, W=1" "$all" --msgs 10000 --subs 10 --window 1
row "10 → 10 on 10 topics, W=16" "$all" --msgs 200000 --pubs 10 --subs 10 --topics 10 --window 16
# 60,000 messages (12 s a run): a p99 over 600 late messages, where 20,000
# left it to a few scheduler hiccups.
row "paced 5,000/s: p99 µs" "ours nats" --msgs 60000 --rate 5000 --window 1000
echo
echo "| | ours (cargo build) | ours (static-pie, as shipped) | NATS | Mosquitto |"
echo "|---|---|---|---|---|"
idle ours static nats mosquitto
