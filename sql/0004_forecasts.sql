-- Every forecast the continuous loop makes: one row per service per cycle, partitioned by day
-- of `generated_at` like the samples, so forecast accuracy can be measured later against what
-- actually happened (`forecast_points` unnests the values next to their bucket).
CREATE TABLE IF NOT EXISTS forecasts (
    service_id      text               NOT NULL,
    generated_at    timestamptz        NOT NULL,  -- the cycle's clock
    first_bucket    timestamptz        NOT NULL,  -- start of the bucket values[1] is for
    step_ms         integer            NOT NULL,  -- bucket width
    model_version   text               NOT NULL,  -- what produced the values
    routed_version  text               NOT NULL,  -- what the router chose
    fallback_reason text,                         -- why the routed LSTM did not run
    "values"        double precision[] NOT NULL,  -- target units, one per bucket
    PRIMARY KEY (service_id, generated_at)
) PARTITION BY RANGE (generated_at);

-- One row per forecast point with its lead (1 = the next bucket) and bucket start.
CREATE OR REPLACE VIEW forecast_points AS
SELECT f.service_id,
       f.generated_at,
       f.model_version,
       p.lead::integer AS lead,
       f.first_bucket + (p.lead - 1) * f.step_ms * interval '1 millisecond' AS bucket,
       p.value
FROM forecasts f
CROSS JOIN LATERAL unnest(f."values") WITH ORDINALITY AS p(value, lead);
