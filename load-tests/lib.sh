#!/usr/bin/env bash
# Shared helpers for the load tests: a cached nisshi broker (Kafka protocol) and the
# release build of mcpwatch.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${MCPWATCH_CACHE:-$HOME/.cache/mcpwatch}"
NISSHI="$CACHE/nisshi/bin/nisshi"
# a free loopback port, so concurrent runs on one machine never share a broker or a daemon
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
BROKER_PORT="${BROKER_PORT:-$(free_port)}"
HTTP_PORT="${HTTP_PORT:-$(free_port)}"
BROKERS="127.0.0.1:$BROKER_PORT"

# commands run on exit (the broker we started, the private binary copy), newest first
CLEANUP=()
cleanup() {
  local i
  for ((i = ${#CLEANUP[@]} - 1; i >= 0; i--)); do
    ${CLEANUP[$i]} 2>/dev/null || true
  done
}
trap cleanup EXIT

ensure_nisshi() {
  if [ ! -x "$NISSHI" ]; then
    echo "building nisshi 0.7.0 into $CACHE (one time, ~11 min)" >&2
    mkdir -p "$CACHE"
    cargo install nisshi@0.7.0 --locked --ignore-rust-version --no-default-features \
      --features dynostore --root "$CACHE/nisshi" >&2
  fi
}

# Starts a broker of our own on $BROKER_PORT (a free port unless BROKER_PORT is set) and stops
# it on exit; with USE_RUNNING_BROKER=1 an existing broker on BROKER_PORT is used instead.
start_broker() {
  ensure_nisshi
  if [ "${USE_RUNNING_BROKER:-0}" = 1 ]; then
    echo "using the broker on $BROKERS" >&2
    return
  fi
  local log="${TMPDIR:-/tmp}/mcpwatch-nisshi-$BROKER_PORT.log"
  "$NISSHI" broker --listener-url "tcp://$BROKERS" --advertised-listener-url "tcp://$BROKERS" \
    --storage-engine memory://nisshi/ --group-initial-rebalance-delay 0s >"$log" 2>&1 &
  BROKER_PID=$!
  CLEANUP+=("kill $BROKER_PID")
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$BROKER_PORT") 2>/dev/null && return
    sleep 0.1
  done
  echo "nisshi did not start; see $log" >&2
  exit 1
}

# create_topic NAME PARTITIONS
create_topic() {
  "$NISSHI" topic create "$1" --partitions "$2" --broker "tcp://$BROKERS" >/dev/null
}

# Builds mcpwatch: release by default (benchmarks); MCPWATCH_PROFILE=debug reuses the test
# build, which is all a correctness run (CI's e2e) needs. MCPWATCH_BIN=/path/to/mcpwatch
# measures that binary instead, without building (e.g. a release build kept from earlier).
build_release() {
  local profile="${MCPWATCH_PROFILE:-release}" bin
  if [ -n "${MCPWATCH_BIN:-}" ]; then
    [ -x "$MCPWATCH_BIN" ] || { echo "MCPWATCH_BIN=$MCPWATCH_BIN is not an executable" >&2; exit 2; }
    bin="$MCPWATCH_BIN"
  else
    if [ "$profile" = debug ]; then
      (cd "$ROOT" && cargo build --quiet)
    else
      (cd "$ROOT" && cargo build --release --quiet)
    fi
    bin="${CARGO_TARGET_DIR:-$ROOT/target}/$profile/mcpwatch"
  fi
  # a private copy: the target directory may be shared with other checkouts whose builds would
  # replace the binary under a running test
  MCPWATCH="$(mktemp "${TMPDIR:-/tmp}/mcpwatch-bin.XXXXXX")"
  cp "$bin" "$MCPWATCH"
  chmod +x "$MCPWATCH"
  CLEANUP+=("rm -f $MCPWATCH")
}
