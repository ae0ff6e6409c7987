-- API keys: only a SHA-256 of each key's secret is stored (keys are 256-bit random, so a fast
-- hash is enough); the id is the public part of the key and names the caller in the audit.
CREATE TABLE IF NOT EXISTS api_keys (
    id          text        PRIMARY KEY,
    name        text        NOT NULL,
    secret_hash bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- Every capacity plan answered by POST /plans: who asked, the context (defaults filled in),
-- the requirements text and the exact response. Range-partitioned by day (UTC) like samples.
CREATE TABLE IF NOT EXISTS plans (
    ts                    timestamptz      NOT NULL,
    key_id                text,                       -- NULL when auth is off
    service_id            text             NOT NULL,
    metric_name           text             NOT NULL,
    github_url            text             NOT NULL,
    context               jsonb            NOT NULL,
    requirements          text,
    model_version         text             NOT NULL,
    forecast_source       text             NOT NULL,  -- cache | computed | cold_start
    recommended_flavor    text             NOT NULL,
    expected_cost_per_day double precision NOT NULL,
    anomaly               jsonb,                      -- the forecast anomaly, if one was flagged
    response              json             NOT NULL   -- the body sent, verbatim
) PARTITION BY RANGE (ts);

CREATE INDEX IF NOT EXISTS plans_service_ts ON plans (service_id, ts);
