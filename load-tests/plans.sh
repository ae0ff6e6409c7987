#!/usr/bin/env bash
# POST /plans under load: starts a Kafka-protocol broker (nisshi) and `mcpwatch run` on free
# ports with a real Redis cache and PostgreSQL, feeds it hours of MCP-server history so every
# service has a warm forecast in the cache, creates an API key, then drives /plans at a fixed
# rate with oha (a real HTTP load generator, built once into ~/.cache/mcpwatch/oha), and in the
# same run the same tool at the same rate against /v1/ping, a trivial handler behind the same
# middleware (auth, rate limit, metrics, timeout).
#
#   load-tests/plans.sh [--rps 5000] [--seconds 20] [--services 100] [--connections 32]
#
# Last line: rps=R p50_ms=A p99_ms=B errors=E static_rps=S ratio=R/S
source "$(dirname "$0")/lib.sh"

RPS=5000 SECONDS_=20 SERVICES=100 CONNECTIONS=32
while [ $# -gt 0 ]; do
  case "$1" in
    --rps) RPS=$2; shift 2 ;;
    --seconds) SECONDS_=$2; shift 2 ;;
    --services) SERVICES=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

OHA="$CACHE/oha/bin/oha"
if [ ! -x "$OHA" ]; then
  echo "building oha 1.16 into $CACHE/oha (one time)" >&2
  cargo install oha@1.16.0 --locked --root "$CACHE/oha" >&2
fi
PG_URL="${MCPWATCH_TEST_PG:-postgres://postgres@127.0.0.1:5432/test}"
REDIS_URL="${MCPWATCH_TEST_REDIS_URL:-redis://127.0.0.1:6379}"

build_release
# the shared target directory is rebuilt by other checkouts too: run a private copy
BIN_DIR="$(mktemp -d)"
CLEANUP+=("rm -rf $BIN_DIR")
cp "$MCPWATCH" "$BIN_DIR/mcpwatch"
MCPWATCH="$BIN_DIR/mcpwatch"
start_broker
run_id="$(date +%s)-$$"
TOPIC="plans-$run_id"
create_topic "$TOPIC" 4
create_topic "plans-dlq-$run_id" 1

# 72 h of history, one sample per server every 5 minutes, ending now
"$MCPWATCH" bench prefill --brokers "$BROKERS" --topic "$TOPIC" --services "$SERVICES" \
  --hours 72 --step-secs 300 >&2

export MCPWATCH_KAFKA__BROKERS="$BROKERS"
export MCPWATCH_KAFKA__TOPICS="[$TOPIC]"
export MCPWATCH_KAFKA__DEAD_LETTER_TOPIC="plans-dlq-$run_id"
export MCPWATCH_KAFKA__GROUP_ID="plans-$run_id"
export MCPWATCH_STORE__URL="$PG_URL"
export MCPWATCH_STORE__SCHEMA="bench_plans"
export MCPWATCH_CACHE__BACKEND=redis
export MCPWATCH_CACHE__URL="$REDIS_URL"
export MCPWATCH_CACHE__KEY_PREFIX="bench-plans-$run_id"
export MCPWATCH_HTTP__LISTEN="127.0.0.1:$HTTP_PORT"
# the daemon's default 1 h buckets and hourly model (72 h of history: 72 buckets), and a
# cadence short enough to warm up within a minute
export MCPWATCH_FORECAST__CADENCE_SECS=15
# one key drives the whole load: lift its limit above the offered rate
export MCPWATCH_API__RATE_LIMIT_PER_SEC=1000000
export MCPWATCH_API__RATE_LIMIT_BURST=100000
export MCPWATCH_LOG__FILTER="${MCPWATCH_LOG__FILTER:-warn}"
# the LSTM needs ONNX Runtime (fetched once into ./lib from PyPI); without it: the baseline
(cd "$ROOT" && scripts/fetch-ort.sh >&2) || true
if [ -f "$ROOT/lib/libonnxruntime.so.1.31.1" ]; then
  export ORT_DYLIB_PATH="$ROOT/lib/libonnxruntime.so.1.31.1"
fi

psql "$PG_URL" -qc "DROP SCHEMA IF EXISTS bench_plans CASCADE" >/dev/null 2>&1 || true
"$MCPWATCH" migrate >/dev/null
KEY="$("$MCPWATCH" apikey create --name "load-$run_id" 2>/dev/null)"

(cd "$ROOT" && exec "$MCPWATCH" run) &
DAEMON_PID=$!
CLEANUP+=("kill $DAEMON_PID")

# metric 'REGEX': sum of the /metrics samples whose line matches ^REGEX
metric() {
  { curl -s "http://127.0.0.1:$HTTP_PORT/metrics" || true; } |
    awk -v re="^$1" '$0 ~ re {s += $NF} END {print s + 0}'
}
# wait until every service has been forecast three times (history ingested, forecasts cached)
SERVICE="github-000"
for i in $(seq 1 600); do
  done_=$(metric 'mcpwatch_forecast_forecasts_total')
  if [ "${done_%.*}" -ge "$((3 * SERVICES))" ] 2>/dev/null; then break; fi
  sleep 0.5
done
echo "forecasts so far: $(metric 'mcpwatch_forecast_forecasts_total')" >&2
BODY="{\"service_id\":\"$SERVICE\",\"metric_name\":\"total_events\",\"context\":{\"github_url\":\"https://github.com/acme/github-mcp\",\"expected_users\":2000,\"time_slot\":\"peak\"}}"
SAMPLE_PLAN="$(curl -s -X POST "http://127.0.0.1:$HTTP_PORT/plans" -H "Authorization: Bearer $KEY" \
  -H 'Content-Type: application/json' -d "$BODY")"
echo "${SAMPLE_PLAN:0:400}" >&2
# the load must exercise the LSTM path, not a fallback (an ONNX-less run says so and goes on)
MODEL_VERSION="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["prediction"]["model_version"])' "$SAMPLE_PLAN" 2>/dev/null || true)"
echo "model_version of the plans under load: ${MODEL_VERSION:-unknown}" >&2
if [ -n "${ORT_DYLIB_PATH:-}" ] && [[ "$MODEL_VERSION" != lstm* ]]; then
  echo "the plans fall back ($MODEL_VERSION) although ONNX Runtime is present: not measuring that" >&2
  exit 1
fi
before_cache=$(metric 'mcpwatch_plans_total[{][^}]*source="cache"')

run_oha() { # url method [body]
  # --latency-correction: latency counts from when a request was due, not when it was sent
  # (no coordinated omission when the server falls behind the offered rate)
  local args=(-z "${SECONDS_}s" -q "$RPS" -c "$CONNECTIONS" --latency-correction --no-tui --output-format json
              -H "Authorization: Bearer $KEY")
  if [ "$2" = POST ]; then
    args+=(-m POST -H 'Content-Type: application/json' -d "$3")
  fi
  "$OHA" "${args[@]}" "$1"
}
summary() { # json-file -> "rps p50_ms p99_ms errors"
  python3 - "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
s = d["summary"]
p = d.get("latencyPercentiles", {})
codes = d.get("statusCodeDistribution", {})
ok = sum(v for k, v in codes.items() if k.startswith("2"))
# a request still in flight when the deadline ends the run is not an error of the server
errs = {k: v for k, v in d.get("errorDistribution", {}).items() if "deadline" not in k}
bad = sum(v for k, v in codes.items() if not k.startswith("2")) + sum(errs.values())
rps = ok / s["total"] if s.get("total") else 0
print(f'{rps:.0f} {p.get("p50", 0) * 1000:.3f} {p.get("p99", 0) * 1000:.3f} {bad}')
PY
}

tmp="$(mktemp -d)"
( sleep $((SECONDS_ / 2)); top -b -n 1 -w 200 | head -20 >"$tmp/top.txt" ) &
run_oha "http://127.0.0.1:$HTTP_PORT/plans" POST "$BODY" >"$tmp/plans.json"
echo "top, halfway through the /plans run:" >&2
cat "$tmp/top.txt" >&2
run_oha "http://127.0.0.1:$HTTP_PORT/v1/ping" GET >"$tmp/ping.json"
read -r rps p50 p99 errors < <(summary "$tmp/plans.json")
read -r srps sp50 sp99 serrors < <(summary "$tmp/ping.json")
after_cache=$(metric 'mcpwatch_plans_total[{][^}]*source="cache"')
echo "plans served from cached forecasts during the run: $(python3 -c "print(int($after_cache - $before_cache))")" >&2
sleep 2 # let the audit writer drain
echo "plans audit: written=$(metric 'mcpwatch_plans_audit_written_total') dropped=$(metric 'mcpwatch_plans_audit_dropped_total') failed=$(metric 'mcpwatch_plans_audit_failed_total')" >&2
echo "static: rps=$srps p50_ms=$sp50 p99_ms=$sp99 errors=$serrors" >&2
echo "load: $(uptime)" >&2
ratio=$(python3 -c "print(f'{$rps / max($srps, 1):.2f}')")
echo "rps=$rps p50_ms=$p50 p99_ms=$p99 errors=$errors static_rps=$srps ratio=$ratio"
