#!/usr/bin/env bash
# Runs the static broker as the Unikraft ELF-loader runtime (`runtime:
# base:latest`) would, and drives it with tests/unikernel_workload.rs:
#
# - every system call outside unikraft/syscalls.txt fails with ENOSYS
#   (strace fault injection), as Unikraft's syscall shim does;
# - the signal calls succeed without doing anything, as lib/uksignal's stubs;
# - thread creation fails with EAGAIN once 28 threads are alive (RLIMIT_NPROC
#   on an unprivileged user counts live threads, as Unikraft's PID table does);
# - the broker runs with Kraftfile.base's `cmd` limits (the prebuilt base
#   runtime), then with a connection limit above the thread budget, so that
#   spawning a thread really fails, then as on Unikraft's lwIP, with no
#   socket timeouts (BROKER_SOCKET_TIMEOUTS=watchdog: its deadlines come
#   from the watchdog thread).
#
# This is the fast check; scripts/unikernel-boot.sh boots the real kernel.
#
# It fails if the broker crashes or misserves, if it calls a system call
# that is neither in the list nor one the runtime is known to answer with
# ENOSYS harmlessly (stubs.txt), or if it opens anything under /etc, /proc
# or /sys. Usage: scripts/unikernel-check.sh [BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."

bin=$(realpath "${1:-target/x86_64-unknown-linux-gnu/release/broker}")
threads=28
[ -x "$bin" ] || { echo "unikernel-check: no binary at $bin (build it first)" >&2; exit 1; }
if ! command -v strace >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null
fi
# Build the workload before any broker runs.
cargo test --no-run --test unikernel_workload -q 2>/dev/null

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"

# What the runtime implements, and what it answers ENOSYS to harmlessly.
grep -v '^#' unikraft/syscalls.txt | sed '/^$/d' | sort -u >"$work/implemented"
awk -F'\t' '!/^#/ && $2 == "ENOSYS" {print $1}' unikraft/stubs.txt | sort -u >"$work/tolerated"
# The loader's own exec of the binary is not the program's.
sort -u "$work/implemented" "$work/tolerated" <(echo execve) >"$work/allowed"
not_implemented="!$(paste -sd, "$work/implemented")"
signal_stubs=rt_sigaction,rt_sigprocmask,sigaltstack

# Kraftfile.base's command line, on a free loopback port.
kraft_args=$(sed -n 's/^cmd: *\[\(.*\)\]/\1/p' Kraftfile.base | tr -d '",' | cut -d' ' -f2-)
kraft_args=$(sed 's/-p [0-9]*/-p 0/' <<<"$kraft_args")

# Each case runs the broker with a 60 s liveness timeout: the workload's
# subscriber sends no heartbeats, and strace slows everything down.
run_case() {
  local name=$1; shift
  local log="$work/$name.log" trace="$work/$name.trace"
  echo "== $name: broker $*"
  prlimit --nproc=$threads -- strace -f -qq -u nobody -o "$trace" \
    -e inject="$not_implemented:error=ENOSYS" \
    -e inject="$signal_stubs:retval=0" \
    "$bin" --bind 127.0.0.1 --liveness-timeout 60 "$@" >/dev/null 2>"$log" &
  local pid=$!
  local addr=""
  for _ in $(seq 100); do
    addr=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$log")
    [ -n "$addr" ] && break
    sleep 0.1
  done
  if [ -z "$addr" ]; then
    cat "$log"; kill -KILL "$pid" 2>/dev/null
    echo "unikernel-check: $name: broker did not start" >&2; exit 1
  fi
  local out
  if ! out=$(UNIKERNEL_BROKER=$addr cargo test -q --test unikernel_workload -- --ignored --nocapture 2>&1); then
    echo "$out"; cat "$log"
    echo "unikernel-check: $name: the workload failed" >&2; exit 1
  fi
  grep -E "^(crowd|subscriptions)" <<<"$out" | sed 's/^/  /'
  # The broker is strace's child: the first pid in the trace.
  local broker_pid
  broker_pid=$(head -1 "$trace" | cut -d' ' -f1)
  kill -0 "$broker_pid" 2>/dev/null || { cat "$log"; echo "unikernel-check: $name: broker died" >&2; exit 1; }
  # As a VM is stopped from outside (no signal handler runs there).
  kill -KILL "$broker_pid"; wait "$pid" 2>/dev/null || true
  if grep -E "panicked|fatal runtime error" "$log"; then
    echo "unikernel-check: $name: the broker panicked" >&2; exit 1
  fi
  echo "  connections refused for want of a thread: $(grep -c 'cannot start a thread' "$log" || true)"
  sed -n 's/^[0-9]* *\([a-z0-9_]*\)(.*/\1/p' "$trace" | sort -u >"$work/$name.used"
  echo "  system calls used: $(paste -sd' ' "$work/$name.used")"
  local outside
  outside=$(comm -23 "$work/$name.used" "$work/allowed")
  if [ -n "$outside" ]; then
    echo "unikernel-check: $name: system calls outside Unikraft's list: $outside" >&2; exit 1
  fi
  echo "  answered ENOSYS (tolerated): $(comm -12 "$work/$name.used" "$work/tolerated" | paste -sd' ')"
  # The C library and std probe three paths on their own, and do without
  # them (the chroot test runs the binary where none exists): glibc's static
  # start-up reads /proc/self/exe, std's main-thread stack guard reads
  # /proc/self/maps (pthread_getattr_np), glibc malloc sizes its arenas from
  # /sys/devices/system/cpu/online. Anything else is ours, and is an error.
  local probes='"/proc/self/exe"|"/proc/self/maps"|"/sys/devices/system/cpu/online"'
  local paths='^[0-9]+ +[a-z0-9_]+\([^"]*"/(etc|proc|sys)/'
  if grep -E "$paths" "$trace" | grep -vE "$probes"; then
    echo "unikernel-check: $name: reads the filesystem under /etc, /proc or /sys" >&2; exit 1
  fi
  echo "  runtime probes (absent in a chroot, tolerated): $(grep -E "$paths" "$trace" | grep -oE "$probes" | sort -u | paste -sd' ')"
  if grep -qE '^[0-9]+ +clone\(.*= -1 EAGAIN' "$trace"; then
    echo "  thread creation failed (EAGAIN) $(grep -cE '^[0-9]+ +clone\(.*= -1 EAGAIN' "$trace") times; served on"
  fi
}

run_case kraftfile $kraft_args
run_case over-budget -p 0 --max-connections 64 --max-subscribers 8
BROKER_SOCKET_TIMEOUTS=watchdog run_case watchdog $kraft_args
grep -q "enforced by a watchdog thread" "$work/watchdog.log" || {
  cat "$work/watchdog.log"; echo "unikernel-check: watchdog: the broker did not use it" >&2; exit 1; }
echo "unikernel-check: ok"
