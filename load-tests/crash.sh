#!/usr/bin/env bash
# Crash safety: pre-fills a topic, SIGKILLs the daemon twice while it drains, restarts it, and
# checks every service's rows in PostgreSQL against what was produced.
#
#   load-tests/crash.sh [--samples 300000] [--kills 2]
#
# Last line: samples=N stored=S lost=0 duplicates=0 kills=2
source "$(dirname "$0")/lib.sh"

SAMPLES=300000 KILLS=2 PARTITIONS=4
while [ $# -gt 0 ]; do
  case "$1" in
    --samples) SAMPLES=$2; shift 2 ;;
    --kills) KILLS=$2; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

build_release
start_broker
run_id="$(date +%s)-$$"
create_topic "crash-$run_id" "$PARTITIONS"
create_topic "crash-dlq-$run_id" 1
"$MCPWATCH" bench crash --brokers "$BROKERS" --samples "$SAMPLES" --kills "$KILLS" \
  --topic "crash-$run_id" --dead-letter-topic "crash-dlq-$run_id" --http-port "$HTTP_PORT"
