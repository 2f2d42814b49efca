-- One row per verdict event of the impact analysis: every evaluation of a
-- deploy, interim (final = 0, status pending or an early call) and final. The id
-- is <deploy_id>:verdict:<unix seconds of evaluated_at>, so a redelivered event
-- has the same key and partition and replaces its copy. The version column
-- `final` makes a final verdict win over an interim one of the same id when the
-- copies are merged. A verdict of a regression without a deploy of its own has
-- deploy_id ''.
--
-- body is the whole verdict JSON as published (what the API returns); the
-- other columns are there to filter and chart without parsing it. Window times
-- are the epoch when the verdict has no window. Read with FINAL, or fold with
-- argMax as latest_verdicts does (correct with or without copies merged).
CREATE TABLE IF NOT EXISTS {{.DB}}.deploy_verdicts
(
    id               String,
    deploy_id        String,
    service          {{.Str}},
    env              {{.Str}},
    version          {{.Str}},
    previous_version String,
    status           {{.Str}},
    score            UInt8,
    final            UInt8,
    early            UInt8,
    reason           String,
    comparison       {{.Str}},
    evaluated_at     DateTime('UTC'),
    baseline_from    DateTime('UTC'),
    baseline_to      DateTime('UTC'),
    candidate_from   DateTime('UTC'),
    candidate_to     DateTime('UTC'),
    metric_names     Array(String),
    metric_classes   Array(String),
    metric_ratios    Array(Float64),
    metric_p_values  Array(Float64),
    body             String{{.Codec "ZSTD(1)"}},
    received_at      DateTime('UTC')
)
ENGINE = ReplacingMergeTree(final)
PARTITION BY toYYYYMM(evaluated_at)
ORDER BY (deploy_id, id)
;

-- Each deploy's latest verdict: a final verdict wins over interim ones, then
-- the newest evaluated_at. The inner SELECT renames the columns (v_*) because
-- ClickHouse aliases are visible in the whole SELECT (see the deploys view).
-- 18.16 does not push a WHERE on this view into it: to read a few deploys,
-- filter deploy_verdicts by deploy_id and fold the same way, as the API does:
--   SELECT deploy_id, argMax(body, (final, evaluated_at)) FROM deploy_verdicts
--   WHERE deploy_id IN (...) GROUP BY deploy_id
CREATE VIEW IF NOT EXISTS {{.DB}}.latest_verdicts AS
SELECT
    deploy_id,
    any(v_service)             AS service,
    any(v_env)                 AS env,
    argMax(v_id, k)            AS verdict_id,
    argMax(v_version, k)       AS version,
    argMax(v_status, k)        AS status,
    argMax(v_score, k)         AS score,
    argMax(v_final, k)         AS final,
    argMax(v_early, k)         AS early,
    argMax(v_reason, k)        AS reason,
    argMax(v_comparison, k)    AS comparison,
    argMax(v_evaluated_at, k)  AS evaluated_at,
    uniqExact(v_id)            AS evaluations,
    argMax(v_body, k)          AS body
FROM
(
    SELECT
        deploy_id,
        id                     AS v_id,
        service                AS v_service,
        env                    AS v_env,
        version                AS v_version,
        status                 AS v_status,
        score                  AS v_score,
        final                  AS v_final,
        early                  AS v_early,
        reason                 AS v_reason,
        comparison             AS v_comparison,
        evaluated_at           AS v_evaluated_at,
        body                   AS v_body,
        (final, evaluated_at)  AS k
    FROM {{.DB}}.deploy_verdicts
    WHERE deploy_id != ''
)
GROUP BY deploy_id
;
