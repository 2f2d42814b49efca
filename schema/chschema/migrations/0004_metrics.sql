-- Traffic and latency samples. The natural key (service, env, time, version,
-- instance) makes a re-sent sample replace its copy; readers use FINAL.
--
-- rollup_requests is a copy of requests for metrics_1m_mv: there,
-- `sum(requests) AS requests` makes every other `requests` of the SELECT mean
-- that alias (and a subquery in a materialized view does not work on 18.16), so
-- the weighted sums read this copy. Inserts do not name it.
CREATE TABLE IF NOT EXISTS {{.DB}}.metric_samples
(
    service         {{.Str}},
    env             {{.Str}},
    version         {{.Str}},
    instance        {{.Str}},
    time            DateTime('UTC'),
    interval_s      Float64,
    requests        UInt64,
    errors          UInt64,
    latency_p50     Nullable(Float64),
    latency_p90     Nullable(Float64),
    latency_p95     Nullable(Float64),
    latency_p99     Nullable(Float64),
    latency_max     Nullable(Float64),
    hist_bounds_ms  Array(Float64),
    hist_counts     Array(UInt64),
    source_id       String,
    inserted_at     DateTime('UTC') DEFAULT now(),
    rollup_requests UInt64 MATERIALIZED requests
)
ENGINE = ReplacingMergeTree()
PARTITION BY toDate(time)
ORDER BY (service, env, time, version, instance)
;

-- Per-minute rollup of metric_samples, one row per source message (source_id,
-- the JetStream message the samples came in). A materialized view sees every
-- insert, duplicates included: a redelivered message would be summed twice. Keyed
-- by the message id, the duplicate rollup row replaces the first one instead.
-- Readers use FINAL, then sum across source_id:
--   SELECT minute, sum(requests), sum(latency_p95_wsum) / sum(latency_p95_weight)
--   FROM metrics_1m FINAL WHERE ... GROUP BY minute
-- This holds while all samples of one message are written in one INSERT.
-- latency_pNN_wsum is the sum of pNN * requests over the samples that have pNN,
-- latency_pNN_weight the sum of their requests; latency_max is 0 when no sample
-- has one.
CREATE TABLE IF NOT EXISTS {{.DB}}.metrics_1m
(
    service            {{.Str}},
    env                {{.Str}},
    version            {{.Str}},
    minute             DateTime('UTC'),
    source_id          String,
    samples            UInt64,
    requests           UInt64,
    errors             UInt64,
    latency_p50_wsum   Float64,
    latency_p95_wsum   Float64,
    latency_p99_wsum   Float64,
    latency_p50_weight UInt64,
    latency_p95_weight UInt64,
    latency_p99_weight UInt64,
    latency_max        Float64
)
ENGINE = ReplacingMergeTree()
PARTITION BY toDate(minute)
ORDER BY (service, env, version, minute, source_id)
;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{.DB}}.metrics_1m_mv TO {{.DB}}.metrics_1m AS
SELECT
    service,
    env,
    version,
    toStartOfMinute(time)                                                     AS minute,
    source_id,
    count()                                                                   AS samples,
    sum(requests)                                                             AS requests,
    sum(errors)                                                               AS errors,
    sumIf(ifNull(latency_p50, 0) * rollup_requests, isNotNull(latency_p50))   AS latency_p50_wsum,
    sumIf(ifNull(latency_p95, 0) * rollup_requests, isNotNull(latency_p95))   AS latency_p95_wsum,
    sumIf(ifNull(latency_p99, 0) * rollup_requests, isNotNull(latency_p99))   AS latency_p99_wsum,
    sumIf(rollup_requests, isNotNull(latency_p50))                            AS latency_p50_weight,
    sumIf(rollup_requests, isNotNull(latency_p95))                            AS latency_p95_weight,
    sumIf(rollup_requests, isNotNull(latency_p99))                            AS latency_p99_weight,
    max(ifNull(latency_max, 0))                                               AS latency_max
FROM {{.DB}}.metric_samples
GROUP BY service, env, version, minute, source_id
;
