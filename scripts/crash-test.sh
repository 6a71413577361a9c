#!/usr/bin/env bash
# Crash-tests the log: runs the scenario of tests/durable_crash.rs ROUNDS
# times (default 50), each at a random kill point: two pipelined qos 1
# publishers, SIGKILL after some number of 202 answers (or after all of
# them), a restart on the same data directory and port, and a check that
# every message answered 202 reached the durable subscriber, in order per
# publisher. Prints each round and the total of duplicate deliveries
# (allowed by at-least-once, but worth watching).
#
# Usage: scripts/crash-test.sh [ROUNDS]
# Environment, passed on to the test:
#   CRASH_KILL_AFTER  kill after this many answers (or `all`) in every round
#   CRASH_SEED        seed of the random kill points (printed when not given)
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-50}
case $rounds in
  '' | *[!0-9]*) echo "crash-test: ROUNDS is a number, not '$rounds'" >&2; exit 2 ;;
esac

out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
CRASH_ROUNDS=$rounds cargo test --release --test durable_crash -- \
  --ignored crash_loop --exact --nocapture 2>&1 | tee "$out" || status=$?

total=$(grep -o 'crash total: .*' "$out" | tail -n 1 || true)
if [ "$status" -ne 0 ] || [ -z "$total" ]; then
  echo "crash-test: FAILED (status $status); the failing round is above" >&2
  exit 1
fi
echo "crash-test: ${total#crash total: }"
