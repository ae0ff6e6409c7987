#!/usr/bin/env bash
# Ingest throughput: pre-fills a topic on a real Kafka-protocol broker (nisshi) with mixed MCP
# and Prometheus samples (~1 % malformed, several hundred services), measures the daemon
# draining it into PostgreSQL, and in the same run a bare binary COPY of the same rows.
#
#   load-tests/ingest.sh [--samples 1000000] [--services 500] [--partitions 8] [--writers 2]
#                        [--malformed-ratio 0.01]
#
# Last line: samples=N stored=S dlq=D lost=0 duplicates=0 rate=R/s raw_copy=C/s ratio=R/C
source "$(dirname "$0")/lib.sh"

SAMPLES=1000000 SERVICES=500 PARTITIONS=8 WRITERS=2 MALFORMED=0.01
while [ $# -gt 0 ]; do
  case "$1" in
    --samples) SAMPLES=$2; shift 2 ;;
    --services) SERVICES=$2; shift 2 ;;
    --partitions) PARTITIONS=$2; shift 2 ;;
    --writers) WRITERS=$2; shift 2 ;;
    --malformed-ratio) MALFORMED=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

build_release
start_broker
run_id="$(date +%s)-$$"
create_topic "ingest-$run_id" "$PARTITIONS"
create_topic "ingest-dlq-$run_id" 1
"$MCPWATCH" bench ingest --brokers "$BROKERS" --samples "$SAMPLES" --services "$SERVICES" \
  --writers "$WRITERS" --malformed-ratio "$MALFORMED" --http-port "$HTTP_PORT" --topic "ingest-$run_id" --dead-letter-topic "ingest-dlq-$run_id"
