#!/usr/bin/env bash
# Shared helpers for the load tests: a cached nisshi broker (Kafka protocol) and the
# release build of mcpwatch.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${MCPWATCH_CACHE:-$HOME/.cache/mcpwatch}"
NISSHI="$CACHE/nisshi/bin/nisshi"
BROKER_PORT="${BROKER_PORT:-9094}"
BROKERS="127.0.0.1:$BROKER_PORT"

ensure_nisshi() {
  if [ ! -x "$NISSHI" ]; then
    echo "building nisshi 0.7.0 into $CACHE (one time, ~11 min)" >&2
    mkdir -p "$CACHE"
    cargo install nisshi@0.7.0 --locked --ignore-rust-version --no-default-features \
      --features dynostore --root "$CACHE/nisshi" >&2
  fi
}

# Starts a broker on $BROKER_PORT unless one already answers; stops it on exit if we started it.
start_broker() {
  ensure_nisshi
  if (exec 3<>"/dev/tcp/127.0.0.1/$BROKER_PORT") 2>/dev/null; then
    echo "using the broker already on $BROKERS" >&2
    return
  fi
  local log="${TMPDIR:-/tmp}/mcpwatch-nisshi-$BROKER_PORT.log"
  "$NISSHI" broker --listener-url "tcp://$BROKERS" --advertised-listener-url "tcp://$BROKERS" \
    --storage-engine memory://nisshi/ --group-initial-rebalance-delay 0s >"$log" 2>&1 &
  BROKER_PID=$!
  trap 'kill $BROKER_PID 2>/dev/null || true' EXIT
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
# build, which is all a correctness run (CI's e2e) needs.
build_release() {
  local profile="${MCPWATCH_PROFILE:-release}"
  if [ "$profile" = debug ]; then
    (cd "$ROOT" && cargo build --quiet)
  else
    (cd "$ROOT" && cargo build --release --quiet)
  fi
  MCPWATCH="${CARGO_TARGET_DIR:-$ROOT/target}/$profile/mcpwatch"
}
