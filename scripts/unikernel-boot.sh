#!/usr/bin/env bash
# Boots the static broker on a real Unikraft kernel under QEMU and drives it
# from the host with tests/unikernel_boot.rs: publish, /healthz, a host
# subscriber (the guest reaches it at 10.0.2.2) receiving 1,000 messages in
# order, /metrics, a slowloris connection cut at its deadline with a 408, and
# the thread budget (subscribe endpoints until 503: the count must be the
# configured --max-subscribers).
#
# Two kernels, both built from ../shared/unikraft (Unikraft's ELF loader,
# the kernel behind `runtime: base:latest`, with lwIP as Unikraft ships it:
# no socket timeouts, so the broker runs on its deadline watchdog):
# - base:   the shared configuration as it is, with Kraftfile.base's command;
# - raised: the same plus the Kconfig lines the Kraftfile marks `# limit`,
#           with the Kraftfile's command. The built configuration is checked
#           to hold each of them.
#
# Usage: scripts/unikernel-boot.sh [BINARY]     (default: the static build)
#        scripts/unikernel-boot.sh --print-kconfig
# Skips (exit 0, saying why) when QEMU or ../shared/unikraft is missing,
# unless REQUIRE_UNIKERNEL=1 (as .ci/run sets). Console logs are kept in
# target/unikernel-boot/ and printed on failure.
# UNIKERNEL_BOOT_ONLY=base|raised|durable boots only that one (durable runs
# on the raised kernel); for looping one boot when chasing a flaky failure.
# UNIKERNEL_CAPACITY=1 also measures how many subscribers each kernel holds
# before thread creation fails (slow under TCG: for the README's figures).
set -euo pipefail
cd "$(dirname "$0")/.."

# The Kconfig lines the Kraftfile marks `# limit`, as NAME=VALUE.
limits() {
  sed -nE "s/^[[:space:]]*(CONFIG_[A-Z0-9_]+):[[:space:]]*'?([^'#[:space:]]+)'?[[:space:]]*# limit[[:space:]]*$/\1=\2/p" Kraftfile
}
# A Kraftfile's `cmd`, without the program, one word per line.
cmd_args() {
  sed -n 's/^cmd: *\[\(.*\)\]/\1/p' "$1" | tr -d '",' | tr ' ' '\n' | tail -n +2
}
if [ "${1:-}" = --print-kconfig ]; then limits; exit 0; fi

bin=$(realpath "${1:-target/x86_64-unknown-linux-gnu/release/broker}")
uk=$(realpath -m "${UNIKRAFT_DIR:-../shared/unikraft}")
skip() {
  if [ "${REQUIRE_UNIKERNEL:-}" = 1 ]; then
    echo "unikernel-boot: $1 (REQUIRE_UNIKERNEL=1: failing)" >&2; exit 1
  fi
  echo "unikernel-boot: skipped: $1"; exit 0
}
[ -d "$uk/vendor" ] || skip "no Unikraft sources at $uk"
command -v qemu-system-x86_64 >/dev/null || skip "no qemu-system-x86_64 (Debian: qemu-system-x86)"
command -v cpio >/dev/null || skip "no cpio"
[ -x "$bin" ] || { echo "unikernel-boot: no binary at $bin (build it first)" >&2; exit 1; }
[ -n "$(limits)" ] || { echo "unikernel-boot: the Kraftfile marks no '# limit' lines" >&2; exit 1; }

# Build the host side before any kernel boots.
cargo test --no-run --test unikernel_boot -q 2>/dev/null

logs=$PWD/target/unikernel-boot
rm -rf "$logs"; mkdir -p "$logs"
work=$(mktemp -d)
qemu=""
cleanup() {
  [ -n "$qemu" ] && kill "$qemu" 2>/dev/null && wait "$qemu" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# build NAME [NAME=VALUE...]: the shared configuration with these values
# instead of its own, built in $work/NAME.
build() {
  local name=$1; shift
  local src=$work/$name-src
  mkdir -p "$src"
  ln -s "$uk/vendor" "$src/vendor"
  cp "$uk/build-elfloader.sh" "$uk/boot-elfloader.sh" "$src/"
  cp "$uk/elfloader.defconfig" "$src/elfloader.defconfig"
  local kv
  for kv in "$@"; do
    sed -i "/^${kv%%=*}=/d" "$src/elfloader.defconfig"
    echo "$kv" >>"$src/elfloader.defconfig"
  done
  local started=$SECONDS
  if ! bash "$src/build-elfloader.sh" "$work/$name" >"$logs/$name-build.log" 2>&1; then
    cat "$logs/$name-build.log"; echo "unikernel-boot: $name: the kernel did not build" >&2; exit 1
  fi
  for kv in "$@"; do
    grep -qx "$kv" "$work/$name/build/config" || {
      echo "unikernel-boot: $name: the built configuration lacks $kv" >&2; exit 1; }
  done
  echo "== $name kernel built in $((SECONDS - started)) s ${*:+with $*}"
}

# boot NAME KRAFTFILE [EXTRA ARGS...]: boots kernel NAME (or
# $UNIKERNEL_BOOT_KERNEL) with the broker under that Kraftfile's command (plus
# extra flags), drives it with the test $UNIKERNEL_BOOT_TEST (default
# `drive`) of tests/unikernel_boot.rs, stops it.
boot() {
  local name=$1 kraftfile=$2; shift 2
  local kernel=${UNIKERNEL_BOOT_KERNEL:-$name}
  local console=$logs/$name-console.log port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  local -a args
  mapfile -t args < <(cmd_args "$kraftfile")
  args+=("$@")
  echo "== $name: /broker ${args[*]}"
  local started
  started=$(date +%s%N)
  bash "$work/$kernel-src/boot-elfloader.sh" "$work/$kernel" "$bin" "$port" 9999 -- "${args[@]}" \
    >"$console" 2>&1 </dev/null &
  qemu=$!
  local ready=""
  for _ in $(seq 600); do
    if grep -aq "listening on" "$console"; then ready=1; break; fi
    kill -0 "$qemu" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$ready" ]; then
    cat "$console"; echo "unikernel-boot: $name: the broker did not start" >&2; exit 1
  fi
  echo "  boot to listening: $(( ($(date +%s%N) - started) / 1000000 )) ms (QEMU start included)"
  local max_subscribers
  max_subscribers=$(printf '%s\n' "${args[@]}" | grep -A1 -x -- --max-subscribers | tail -1 || true)
  local request_timeout
  request_timeout=$(printf '%s\n' "${args[@]}" | grep -A1 -x -- --request-timeout | tail -1 || true)
  if ! UNIKERNEL_BOOT_BROKER=127.0.0.1:$port UNIKERNEL_BOOT_SUBSCRIBERS=$max_subscribers \
    UNIKERNEL_BOOT_REQUEST_TIMEOUT=$request_timeout \
    cargo test -q --test unikernel_boot -- --ignored --nocapture --exact "${UNIKERNEL_BOOT_TEST:-drive}" \
    >"$logs/$name-host.log" 2>&1; then
    cat "$logs/$name-host.log"; echo "--- console"; cat "$console"
    echo "unikernel-boot: $name: the host side failed" >&2; exit 1
  fi
  grep -E '^  ' "$logs/$name-host.log" || true
  kill -0 "$qemu" 2>/dev/null || { cat "$console"; echo "unikernel-boot: $name: QEMU died" >&2; exit 1; }
  if grep -aE "panicked|fatal runtime error|Crash dump|assertion" "$console"; then
    echo "unikernel-boot: $name: the guest crashed" >&2; exit 1
  fi
  grep -aq "enforced by a watchdog thread" "$console" || {
    cat "$console"; echo "unikernel-boot: $name: the broker did not say it uses the watchdog" >&2; exit 1; }
  kill "$qemu"; wait "$qemu" 2>/dev/null || true; qemu=""
}

# capacity NAME: subscribers held with no cap but the kernel's.
capacity() {
  local name=$1 console=$logs/$1-capacity-console.log port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  bash "$work/$name-src/boot-elfloader.sh" "$work/$name" "$bin" "$port" 9999 -- \
    -p 9999 --max-subscribers 100000 --liveness-timeout 0 >"$console" 2>&1 </dev/null &
  qemu=$!
  for _ in $(seq 600); do grep -aq "listening on" "$console" && break; sleep 0.1; done
  UNIKERNEL_BOOT_BROKER=127.0.0.1:$port cargo test -q --test unikernel_boot -- --ignored \
    --nocapture --exact capacity 2>&1 | grep -E '^  ' || true
  kill "$qemu"; wait "$qemu" 2>/dev/null || true; qemu=""
}

only=${UNIKERNEL_BOOT_ONLY:-}
case "$only" in
  '' | base | raised | durable) ;;
  *) echo "unikernel-boot: UNIKERNEL_BOOT_ONLY=$only: not base, raised or durable" >&2; exit 1 ;;
esac
wants() { [ -z "$only" ] || [ "$only" = "$1" ]; }
mapfile -t raised < <(limits)
if wants base; then build base; fi
if wants raised || wants durable; then build raised "${raised[@]}"; fi
if wants base; then boot base Kraftfile.base --request-timeout 2s --liveness-timeout 60; fi
if wants raised; then boot raised Kraftfile --request-timeout 2s --liveness-timeout 60; fi
# The log on the real kernel: qos 1 and a retained message with --data-dir
# (on the initrd's ramfs, so not its persistence across boots); then the
# console, SSE streams, and a stream resumed from that log.
if wants durable; then
  UNIKERNEL_BOOT_TEST=durable UNIKERNEL_BOOT_KERNEL=raised \
    boot durable Kraftfile --data-dir /data --liveness-timeout 60 --stream-keepalive 2s
fi
if [ "${UNIKERNEL_CAPACITY:-}" = 1 ]; then
  if wants base; then capacity base; fi
  if wants raised; then capacity raised; fi
fi
echo "unikernel-boot: ok"
