-- Raw samples: one row per normalised sample, range-partitioned by day (UTC).
-- The natural key (service_id, ts, series) makes replays idempotent.
CREATE TABLE IF NOT EXISTS samples (
    service_id       text             NOT NULL,
    ts               timestamptz      NOT NULL,
    series           bigint           NOT NULL,
    origin           smallint         NOT NULL,  -- 0 MCP JSON, 1 prometheus-kafka-adapter
    cpu              double precision,           -- fraction 0..1
    memory           double precision,           -- fraction 0..1
    response_time_ms double precision,
    requests         double precision,           -- delta since the previous sample of the series
    errors           double precision,           -- delta since the previous sample of the series
    status           smallint,                   -- 0 healthy, 1 degraded, 2 down
    event            smallint,                   -- 1 add, 2 remove, 3 update
    instance_id      text,
    host             text,
    platform         text,
    PRIMARY KEY (service_id, ts, series)
) PARTITION BY RANGE (ts);

-- Kafka progress, written in the same transaction as the rows it covers: after a crash the
-- consumer skips everything below next_offset, so a replay writes nothing twice.
CREATE TABLE IF NOT EXISTS ingest_offsets (
    consumer_group text        NOT NULL,
    topic          text        NOT NULL,
    partition      integer     NOT NULL,
    next_offset    bigint      NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);
