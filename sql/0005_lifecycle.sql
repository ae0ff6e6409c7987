-- Aggregates of `samples` per service at 5 min, 15 min, 1 h and 24 h, maintained incrementally
-- by the aggregate job (src/lifecycle/aggregates.rs): a window is computed once it has closed
-- and upserted on (service_id, bucket), so a rerun rewrites the same rows. Each table is
-- range-partitioned by day on `bucket` like `samples`, and retention drops whole partitions.
-- cpu/memory/response_time_ms: avg, min, max, p95 (percentile_cont) of the non-null values;
-- requests/errors (deltas): sum, avg, min, max; status: samples degraded / down.
CREATE TABLE IF NOT EXISTS samples_5m (
    service_id           text             NOT NULL,
    bucket               timestamptz      NOT NULL,  -- window start (UTC)
    samples              bigint           NOT NULL,
    cpu_avg              double precision,
    cpu_min              double precision,
    cpu_max              double precision,
    cpu_p95              double precision,
    memory_avg           double precision,
    memory_min           double precision,
    memory_max           double precision,
    memory_p95           double precision,
    response_time_ms_avg double precision,
    response_time_ms_min double precision,
    response_time_ms_max double precision,
    response_time_ms_p95 double precision,
    requests_sum         double precision,
    requests_avg         double precision,
    requests_min         double precision,
    requests_max         double precision,
    errors_sum           double precision,
    errors_avg           double precision,
    errors_min           double precision,
    errors_max           double precision,
    degraded_samples     bigint           NOT NULL,
    down_samples         bigint           NOT NULL,
    PRIMARY KEY (service_id, bucket)
) PARTITION BY RANGE (bucket);

CREATE TABLE IF NOT EXISTS samples_15m (
    service_id           text             NOT NULL,
    bucket               timestamptz      NOT NULL,  -- window start (UTC)
    samples              bigint           NOT NULL,
    cpu_avg              double precision,
    cpu_min              double precision,
    cpu_max              double precision,
    cpu_p95              double precision,
    memory_avg           double precision,
    memory_min           double precision,
    memory_max           double precision,
    memory_p95           double precision,
    response_time_ms_avg double precision,
    response_time_ms_min double precision,
    response_time_ms_max double precision,
    response_time_ms_p95 double precision,
    requests_sum         double precision,
    requests_avg         double precision,
    requests_min         double precision,
    requests_max         double precision,
    errors_sum           double precision,
    errors_avg           double precision,
    errors_min           double precision,
    errors_max           double precision,
    degraded_samples     bigint           NOT NULL,
    down_samples         bigint           NOT NULL,
    PRIMARY KEY (service_id, bucket)
) PARTITION BY RANGE (bucket);

CREATE TABLE IF NOT EXISTS samples_1h (
    service_id           text             NOT NULL,
    bucket               timestamptz      NOT NULL,  -- window start (UTC)
    samples              bigint           NOT NULL,
    cpu_avg              double precision,
    cpu_min              double precision,
    cpu_max              double precision,
    cpu_p95              double precision,
    memory_avg           double precision,
    memory_min           double precision,
    memory_max           double precision,
    memory_p95           double precision,
    response_time_ms_avg double precision,
    response_time_ms_min double precision,
    response_time_ms_max double precision,
    response_time_ms_p95 double precision,
    requests_sum         double precision,
    requests_avg         double precision,
    requests_min         double precision,
    requests_max         double precision,
    errors_sum           double precision,
    errors_avg           double precision,
    errors_min           double precision,
    errors_max           double precision,
    degraded_samples     bigint           NOT NULL,
    down_samples         bigint           NOT NULL,
    PRIMARY KEY (service_id, bucket)
) PARTITION BY RANGE (bucket);

CREATE TABLE IF NOT EXISTS samples_24h (
    service_id           text             NOT NULL,
    bucket               timestamptz      NOT NULL,  -- window start (UTC)
    samples              bigint           NOT NULL,
    cpu_avg              double precision,
    cpu_min              double precision,
    cpu_max              double precision,
    cpu_p95              double precision,
    memory_avg           double precision,
    memory_min           double precision,
    memory_max           double precision,
    memory_p95           double precision,
    response_time_ms_avg double precision,
    response_time_ms_min double precision,
    response_time_ms_max double precision,
    response_time_ms_p95 double precision,
    requests_sum         double precision,
    requests_avg         double precision,
    requests_min         double precision,
    requests_max         double precision,
    errors_sum           double precision,
    errors_avg           double precision,
    errors_min           double precision,
    errors_max           double precision,
    degraded_samples     bigint           NOT NULL,
    down_samples         bigint           NOT NULL,
    PRIMARY KEY (service_id, bucket)
) PARTITION BY RANGE (bucket);

-- How far each resolution has been aggregated: every window ending at or before done_until is
-- computed. Advanced in the same transaction as the rows it covers.
CREATE TABLE IF NOT EXISTS aggregate_watermarks (
    resolution text        PRIMARY KEY,
    done_until timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
