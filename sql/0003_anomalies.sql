-- Anomalies found by the streaming detectors (source 'stream') and flagged forecasts
-- (source 'forecast'), range-partitioned by day (UTC) on the time of the anomalous point.
-- The natural key (service_id, ts, metric, source) makes a replayed anomaly an update.
CREATE TABLE IF NOT EXISTS anomalies (
    service_id  text             NOT NULL,
    ts          timestamptz      NOT NULL,  -- the point: bucket start, or the forecast's time
    metric      text             NOT NULL,  -- cpu | memory | requests | errors | response_time | a forecast metric
    source      text             NOT NULL,  -- stream | forecast
    score       double precision NOT NULL,  -- anomaly score, 0..1
    value       double precision NOT NULL,
    expected    double precision,           -- what the detector expected, when it says
    severity    text             NOT NULL,  -- warning | critical
    detector    text             NOT NULL,
    message     text,
    detected_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (service_id, ts, metric, source)
) PARTITION BY RANGE (ts);

-- "Recent anomalies, all services" (GET /v1/anomalies without a service).
CREATE INDEX IF NOT EXISTS anomalies_ts_idx ON anomalies (ts DESC);
