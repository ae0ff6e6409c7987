#!/usr/bin/env bash
# Retention end to end: fills 10 days of synthetic daily partitions in a fresh schema, runs
# `mcpwatch retention run` (detach → archive as LZ4 Arrow IPC → verify → drop), then reads the
# archive back with DataFusion (`mcpwatch query`).
#
#   load-tests/retention.sh [--rows-per-day N]      (default 100000)
#
# Last line: dropped=D archived=A rows_lost=0 query_rows=Q, where rows_lost = rows before −
# (rows remaining + rows archived) and query_rows is what DataFusion counts in the archive.
# Exits non-zero unless rows_lost=0 and query_rows equals the archived rows.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ROWS_PER_DAY=100000
while [ $# -gt 0 ]; do
  case "$1" in
    --rows-per-day) ROWS_PER_DAY="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

PG_URL="${MCPWATCH_TEST_PG:-postgres://postgres@127.0.0.1:5432/test}"
SCHEMA="loadtest_retention_$$"
ARCHIVE="$(mktemp -d "${TMPDIR:-/tmp}/mcpwatch-retention-XXXXXX")"
export MCPWATCH_STORE__URL="$PG_URL" MCPWATCH_STORE__SCHEMA="$SCHEMA" \
  MCPWATCH_RETENTION__ARCHIVE_DIR="$ARCHIVE" MCPWATCH_LOG__FILTER=warn
psql_() { psql "$PG_URL" -v ON_ERROR_STOP=1 -qAtX -c "SET client_min_messages = warning" -c "SET search_path TO $SCHEMA" -c "$1" | tail -n1; }
cleanup() {
  psql "$PG_URL" -qAtX -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
  [ "${KEEP:-0}" = 1 ] || rm -rf "$ARCHIVE"
}
trap cleanup EXIT

build_release
"$MCPWATCH" migrate >/dev/null

TODAY=$(( $(date -u +%s) / 86400 ))
t0=$(date +%s.%N)
for offset in $(seq 9 -1 0); do
  day=$(( TODAY - offset ))
  from=$(date -u -d "@$(( day * 86400 ))" +%Y-%m-%dT00:00:00Z)
  to=$(date -u -d "@$(( (day + 1) * 86400 ))" +%Y-%m-%dT00:00:00Z)
  name="samples_p$(date -u -d "@$(( day * 86400 ))" +%Y%m%d)"
  psql_ "CREATE TABLE IF NOT EXISTS $name PARTITION OF samples FOR VALUES FROM ('$from') TO ('$to')" >/dev/null
  # 200 services, one sample each every 200*86400/ROWS_PER_DAY seconds, some NULLs
  psql_ "INSERT INTO samples (service_id, ts, series, origin, cpu, memory, response_time_ms,
           requests, errors, status, instance_id, host, platform)
         SELECT 'mcp-' || (g % 200), to_timestamp($(( day * 86400 )) + g * (86400.0 / $ROWS_PER_DAY)),
                0, 0, CASE WHEN g % 11 = 0 THEN NULL ELSE (g % 100) / 100.0 END, (g % 37) / 37.0,
                (g * 7919 % 1000) / 4.0, (g % 9)::float8, (g % 50 = 0)::int::float8,
                (g % 3)::int2, 'i-' || (g % 7), 'host-' || (g % 3), 'linux'
         FROM generate_series(0, $ROWS_PER_DAY - 1) g" >/dev/null
done
t1=$(date +%s.%N)
ROWS_BEFORE=$(psql_ "SELECT count(*) FROM samples")
# the expired days' total of one column, to compare values and not only counts
EXPIRED_SUM=$(psql_ "SELECT round(sum(response_time_ms)::numeric, 3) FROM samples WHERE ts < to_timestamp($(( (TODAY - 6) * 86400 )))")

t2=$(date +%s.%N)
SUMMARY=$("$MCPWATCH" retention run)
t3=$(date +%s.%N)
echo "$SUMMARY"
field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<" $SUMMARY"; }
DROPPED=$(field dropped)
ARCHIVED=$(field archived)
ROWS_ARCHIVED=$(field rows_archived)
ROWS_AFTER=$(psql_ "SELECT count(*) FROM samples")

t4=$(date +%s.%N)
QUERY_ROWS=$("$MCPWATCH" query --archive "$ARCHIVE" --format csv \
  --sql "SELECT count(*) AS n FROM samples" | tail -n1)
QUERY_SUM=$("$MCPWATCH" query --archive "$ARCHIVE" --format csv \
  --sql "SELECT round(sum(response_time_ms), 3) AS s FROM samples" | tail -n1)
t5=$(date +%s.%N)

ROWS_LOST=$(( ROWS_BEFORE - (ROWS_AFTER + ROWS_ARCHIVED) ))
ARCHIVE_BYTES=$(du -sb "$ARCHIVE" | cut -f1)
awk -v f="$t0" -v g="$t1" -v r0="$t2" -v r1="$t3" -v q0="$t4" -v q1="$t5" \
  -v before="$ROWS_BEFORE" -v after="$ROWS_AFTER" -v bytes="$ARCHIVE_BYTES" -v archived="$ROWS_ARCHIVED" \
  -v es="$EXPIRED_SUM" -v qs="$QUERY_SUM" 'BEGIN {
    printf "rows_before=%d rows_after=%d rows_archived=%d archive_bytes=%d bytes_per_row=%.1f\n", before, after, archived, bytes, (archived ? bytes / archived : 0)
    printf "fill_s=%.2f retention_s=%.2f query_s=%.2f (two queries) archive_rows_per_s=%.0f\n", g - f, r1 - r0, q1 - q0, (r1 > r0 ? archived / (r1 - r0) : 0)
    printf "sum_response_time_ms expired_in_pg=%s in_archive=%s\n", es, qs
  }'
STATUS=0
if [ "$ROWS_LOST" -ne 0 ] || [ "$QUERY_ROWS" != "$ROWS_ARCHIVED" ]; then STATUS=1; fi
if [ "$(printf '%.3f' "$EXPIRED_SUM")" != "$(printf '%.3f' "$QUERY_SUM")" ]; then
  echo "archived values differ from the stored ones" >&2; STATUS=1
fi
echo "dropped=$DROPPED archived=$ARCHIVED rows_lost=$ROWS_LOST query_rows=$QUERY_ROWS"
exit $STATUS
