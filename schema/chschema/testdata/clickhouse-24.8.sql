-- ClickHouse 24.8, database deploywatch

-- bootstrap
-- Run before every migration: the database and the table that records which
-- migrations have been applied. A concurrent Migrate may record a version twice;
-- ReplacingMergeTree folds the copies and readers group by version.
CREATE DATABASE IF NOT EXISTS deploywatch
;

CREATE TABLE IF NOT EXISTS deploywatch.schema_migrations
(
    version    UInt32,
    name       String,
    applied_at DateTime('UTC')
)
ENGINE = ReplacingMergeTree()
ORDER BY version
;

-- migration 0001_events
-- The raw change events (deploys, incidents) as received, keyed by event id:
-- a redelivered event replaces its earlier copy. payload is the event's JSON.
CREATE TABLE IF NOT EXISTS deploywatch.events
(
    event_id    String,
    type        LowCardinality(String),
    service     LowCardinality(String),
    env         LowCardinality(String),
    time        DateTime('UTC'),
    received_at DateTime('UTC'),
    payload     String CODEC(ZSTD(1))
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY (type, service, event_id)
;

-- migration 0002_deploys
-- One row per deploy status change. A redelivered change replaces its copy
-- (same service, env, deploy_id, status); the deploys view folds the changes of
-- a deploy and is correct with or without the copies merged away.
CREATE TABLE IF NOT EXISTS deploywatch.deploy_changes
(
    deploy_id        String,
    status           LowCardinality(String),
    status_rank      UInt8,
    service          LowCardinality(String),
    env              LowCardinality(String),
    version          LowCardinality(String),
    previous_version String,
    event_time       DateTime('UTC'),
    started_at       Nullable(DateTime('UTC')),
    finished_at      Nullable(DateTime('UTC')),
    author           String,
    strategy         LowCardinality(String),
    url              String,
    label_keys       Array(String),
    label_values     Array(String),
    commit_shas      Array(String),
    commit_times     Array(DateTime('UTC')),
    commit_authors   Array(String),
    commit_messages  Array(String),
    inserted_at      DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(event_time)
ORDER BY (service, env, deploy_id, status)
;

-- Each deploy in its latest state. The latest change is the one with the
-- greatest (event_time, status_rank): a later lifecycle step wins a tie.
-- Optional fields come from the latest change that carries them, so a
-- 'succeeded' that only names the id keeps what 'started' said.
--
-- The inner SELECT renames the columns (c_*) because ClickHouse aliases are
-- visible in the whole SELECT: `argMax(status, k) AS status` would turn every
-- other `status` of the query into that aggregate.
--
-- finished_at and rolled_back_at are max(if(cond, x, NULL)) rather than
-- maxIf(x, cond): on 18.16 maxIf of a Nullable column returns a zero time,
-- not NULL, when no row matches.
CREATE VIEW IF NOT EXISTS deploywatch.deploys AS
SELECT
    deploy_id,
    any(c_service)                                               AS service,
    any(c_env)                                                   AS env,
    argMax(c_status, k)                                          AS status,
    argMax(c_version, k)                                         AS version,
    argMaxIf(c_previous_version, k, c_previous_version != '')    AS previous_version,
    argMaxIf(c_author, k, c_author != '')                        AS author,
    argMaxIf(c_strategy, k, c_strategy != '')                    AS strategy,
    argMaxIf(c_url, k, c_url != '')                              AS url,
    argMaxIf(c_label_keys, k, notEmpty(c_label_keys))            AS label_keys,
    argMaxIf(c_label_values, k, notEmpty(c_label_keys))          AS label_values,
    min(c_started_at)                                            AS started_at,
    max(if(c_status IN ('succeeded', 'failed'), c_finished_at, NULL)) AS finished_at,
    max(if(c_status = 'rolled_back', c_finished_at, NULL))       AS rolled_back_at,
    argMaxIf(c_commit_shas, k, notEmpty(c_commit_shas))          AS commit_shas,
    argMaxIf(c_commit_times, k, notEmpty(c_commit_shas))         AS commit_times,
    argMaxIf(c_commit_authors, k, notEmpty(c_commit_shas))       AS commit_authors,
    argMaxIf(c_commit_messages, k, notEmpty(c_commit_shas))      AS commit_messages,
    max(c_event_time)                                            AS updated_at
FROM
(
    SELECT
        deploy_id,
        service          AS c_service,
        env              AS c_env,
        status           AS c_status,
        version          AS c_version,
        previous_version AS c_previous_version,
        author           AS c_author,
        strategy         AS c_strategy,
        url              AS c_url,
        label_keys       AS c_label_keys,
        label_values     AS c_label_values,
        started_at       AS c_started_at,
        finished_at      AS c_finished_at,
        commit_shas      AS c_commit_shas,
        commit_times     AS c_commit_times,
        commit_authors   AS c_commit_authors,
        commit_messages  AS c_commit_messages,
        event_time       AS c_event_time,
        toUInt64(toUInt32(event_time)) * 8 + status_rank AS k
    FROM deploywatch.deploy_changes
)
GROUP BY deploy_id
;

-- migration 0003_incidents
-- One row per incident status change; a redelivered change replaces its copy.
CREATE TABLE IF NOT EXISTS deploywatch.incident_changes
(
    incident_id String,
    status      LowCardinality(String),
    service     LowCardinality(String),
    env         LowCardinality(String),
    time        DateTime('UTC'),
    title       String,
    source      LowCardinality(String),
    deploy_id   String,
    inserted_at DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY (service, env, incident_id, status)
;

-- migration 0004_metrics
-- Traffic and latency samples. The natural key (service, env, time, version,
-- instance) makes a re-sent sample replace its copy; readers use FINAL.
--
-- rollup_requests is a copy of requests for metrics_1m_mv: there,
-- `sum(requests) AS requests` makes every other `requests` of the SELECT mean
-- that alias (and a subquery in a materialized view does not work on 18.16), so
-- the weighted sums read this copy. Inserts do not name it.
CREATE TABLE IF NOT EXISTS deploywatch.metric_samples
(
    service         LowCardinality(String),
    env             LowCardinality(String),
    version         LowCardinality(String),
    instance        LowCardinality(String),
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
CREATE TABLE IF NOT EXISTS deploywatch.metrics_1m
(
    service            LowCardinality(String),
    env                LowCardinality(String),
    version            LowCardinality(String),
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

CREATE MATERIALIZED VIEW IF NOT EXISTS deploywatch.metrics_1m_mv TO deploywatch.metrics_1m AS
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
FROM deploywatch.metric_samples
GROUP BY service, env, version, minute, source_id
;

-- migration 0005_verdicts
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
CREATE TABLE IF NOT EXISTS deploywatch.deploy_verdicts
(
    id               String,
    deploy_id        String,
    service          LowCardinality(String),
    env              LowCardinality(String),
    version          LowCardinality(String),
    previous_version String,
    status           LowCardinality(String),
    score            UInt8,
    final            UInt8,
    early            UInt8,
    reason           String,
    comparison       LowCardinality(String),
    evaluated_at     DateTime('UTC'),
    baseline_from    DateTime('UTC'),
    baseline_to      DateTime('UTC'),
    candidate_from   DateTime('UTC'),
    candidate_to     DateTime('UTC'),
    metric_names     Array(String),
    metric_classes   Array(String),
    metric_ratios    Array(Float64),
    metric_p_values  Array(Float64),
    body             String CODEC(ZSTD(1)),
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
CREATE VIEW IF NOT EXISTS deploywatch.latest_verdicts AS
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
    FROM deploywatch.deploy_verdicts
    WHERE deploy_id != ''
)
GROUP BY deploy_id
;

-- migration 0006_alerts
-- The alert engine's events and what people add to them, one row per event,
-- keyed by the event id: a redelivered or replayed event has the same key and
-- partition (partitions go by the event's own time) and replaces its copy.
-- body is the whole event JSON as published; the other columns are there to
-- filter and chart without parsing it. Times that an event does not have are
-- the epoch. Read with FINAL, or fold with argMax as latest_alerts does.

-- One row per alert status change (firing, resolved): which rule decided
-- what about which deploy, when, and on which verdict's evidence. An alert's
-- events share alert_id (<deploy_id>:alert:<rule>:<unix seconds it began>);
-- id is alert_id:status. time is the event time: starts_at when firing,
-- ends_at when resolved.
CREATE TABLE IF NOT EXISTS deploywatch.alert_events
(
    id               String,
    alert_id         String,
    status           LowCardinality(String),
    status_rank      UInt8,
    rule             LowCardinality(String),
    severity         LowCardinality(String),
    actions          Array(String),
    dry_run          UInt8,
    silenced         UInt8,
    silence_id       String,
    service          LowCardinality(String),
    env              LowCardinality(String),
    deploy_id        String,
    version          String,
    previous_version String,
    summary          String,
    verdict_id       String,
    verdict_status   LowCardinality(String),
    verdict_score    UInt8,
    pending_since    DateTime('UTC'),
    starts_at        DateTime('UTC'),
    ends_at          DateTime('UTC'),
    time             DateTime('UTC'),
    rollback_id      String,
    resolution       LowCardinality(String),
    rule_condition   String,
    label_keys       Array(String),
    label_values     Array(String),
    body             String CODEC(ZSTD(1)),
    received_at      DateTime('UTC')
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY (service, alert_id, id)
;

-- One row per rollback signal: a rule asked for a deploy to be undone. id is
-- <deploy_id>:rollback, one per deploy whatever asked for it.
CREATE TABLE IF NOT EXISTS deploywatch.rollback_signals
(
    id               String,
    service          LowCardinality(String),
    env              LowCardinality(String),
    deploy_id        String,
    version          String,
    previous_version String,
    rule             LowCardinality(String),
    alert_id         String,
    verdict_id       String,
    severity         LowCardinality(String),
    reason           String,
    at               DateTime('UTC'),
    label_keys       Array(String),
    label_values     Array(String),
    body             String CODEC(ZSTD(1)),
    received_at      DateTime('UTC')
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(at)
ORDER BY (service, id)
;

-- One row per silence: who kept which alerts (a service, an env, a rule) from
-- being delivered or acted on, from starts_at to ends_at, and why. Empty
-- service, env or rule means any.
CREATE TABLE IF NOT EXISTS deploywatch.silences
(
    id          String,
    service     LowCardinality(String),
    env         LowCardinality(String),
    rule        LowCardinality(String),
    starts_at   DateTime('UTC'),
    ends_at     DateTime('UTC'),
    created_by  String,
    comment     String,
    created_at  DateTime('UTC'),
    body        String,
    received_at DateTime('UTC')
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(created_at)
ORDER BY id
;

-- One row per acknowledgement: who took which alert in hand, when, saying what.
CREATE TABLE IF NOT EXISTS deploywatch.alert_acks
(
    id          String,
    alert_id    String,
    service     LowCardinality(String),
    env         LowCardinality(String),
    rule        LowCardinality(String),
    acked_by    String,
    comment     String,
    at          DateTime('UTC'),
    body        String,
    received_at DateTime('UTC')
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(at)
ORDER BY (alert_id, id)
;

-- Each alert's latest state: resolved wins over firing. The inner SELECT
-- renames the columns (a_*) because ClickHouse aliases are visible in the
-- whole SELECT (see the deploys view). 18.16 does not push a WHERE on this
-- view into it: for a few alerts, filter alert_events first and fold the same
-- way, as the API does.
CREATE VIEW IF NOT EXISTS deploywatch.latest_alerts AS
SELECT
    alert_id,
    any(a_rule)                          AS rule,
    any(a_service)                       AS service,
    any(a_env)                           AS env,
    any(a_deploy_id)                     AS deploy_id,
    argMax(a_status, k)                  AS status,
    argMax(a_severity, k)                AS severity,
    argMax(a_dry_run, k)                 AS dry_run,
    argMax(a_silenced, k)                AS silenced,
    min(a_starts_at)                     AS starts_at,
    maxIf(a_ends_at, a_status_rank = 2)  AS ends_at,
    argMax(a_resolution, k)              AS resolution,
    argMax(a_rollback_id, k)             AS rollback_id,
    argMax(a_summary, k)                 AS summary,
    max(a_time)                          AS updated_at,
    argMax(a_body, k)                    AS body
FROM
(
    SELECT
        alert_id,
        rule                   AS a_rule,
        service                AS a_service,
        env                    AS a_env,
        deploy_id              AS a_deploy_id,
        status                 AS a_status,
        status_rank            AS a_status_rank,
        severity               AS a_severity,
        dry_run                AS a_dry_run,
        silenced               AS a_silenced,
        starts_at              AS a_starts_at,
        ends_at                AS a_ends_at,
        resolution             AS a_resolution,
        rollback_id            AS a_rollback_id,
        summary                AS a_summary,
        time                   AS a_time,
        body                   AS a_body,
        (status_rank, time)    AS k
    FROM deploywatch.alert_events
)
GROUP BY alert_id
;

-- migration 0007_deliveries
-- One row per attempt to deliver an alert event to a webhook receiver (the
-- delivery events of the signals stream). id is
-- <webhook_id>:<stream sequence>:<round>:<attempt>, so a redelivered event has
-- the same key and partition (at is the attempt's time) and replaces its copy.
-- webhook_id is the same for every attempt of one logical delivery (one alert
-- event to one receiver): its latest state is argMax over (final, at, attempt):
--   SELECT webhook_id, argMax(outcome, (final, at, attempt)) AS outcome, count() AS attempts
--   FROM webhook_deliveries FINAL WHERE alert_id = ? GROUP BY webhook_id
-- status_code is 0 where no answer came; next_attempt_at is the epoch when none follows.
CREATE TABLE IF NOT EXISTS deploywatch.webhook_deliveries
(
    id              String,
    webhook_id      String,
    alert_event_id  String,
    alert_id        String,
    alert_status    LowCardinality(String),
    rule            LowCardinality(String),
    service         LowCardinality(String),
    env             LowCardinality(String),
    receiver        LowCardinality(String),
    url             String,
    format          LowCardinality(String),
    round           UInt32,
    attempt         UInt32,
    status_code     UInt16,
    error           String CODEC(ZSTD(1)),
    duration_ms     UInt64,
    outcome         LowCardinality(String),
    final           UInt8,
    at              DateTime('UTC'),
    next_attempt_at DateTime('UTC'),
    received_at     DateTime('UTC')
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(at)
ORDER BY (service, webhook_id, id)
;

-- migration 0008_commits
-- One row per commit a push carried (GitHub and GitLab push webhooks, or a
-- push event sent to the API). A deploy of head_sha ships the push's commits,
-- which gives lead time its commit times when the deploy itself names only
-- its sha. A redelivered push replaces its copy. Partitioned by the push,
-- not the commit: one push's commits can span years (an imported history),
-- and one INSERT may touch at most 100 partitions on modern servers.
CREATE TABLE IF NOT EXISTS deploywatch.commits
(
    service     LowCardinality(String),
    repo        String,
    ref         String,
    sha         String,
    commit_time DateTime('UTC'),
    author      String,
    message     String,
    head_sha    String,
    push_id     String,
    pushed_at   DateTime('UTC'),
    inserted_at DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(pushed_at)
ORDER BY (service, head_sha, sha)
;

-- migration 0009_dora
-- DORA's four keys, written down once. GET /api/v1/dora, the weekly report
-- and the DORA dashboard all read these views; the README's "Delivery
-- performance (DORA)" section says in words what they say in SQL. No view
-- filters by env: the readers pick the env that is production (by default
-- 'production').
--
-- 18.16 has no window functions and joins one table per SELECT, so each
-- join nests one level deeper. Columns of the inner SELECTs are renamed
-- (c_*, d_*, v_*, i_*, l_*, t_*) because ClickHouse aliases are visible in
-- the whole SELECT (see the deploys view). A LEFT JOIN without a match
-- gives the right side's defaults ('' and 0), which the flags rely on.
--
-- The views that read the deploys (dora_deploys, dora_lead_times,
-- dora_incidents) inline the fold of dora_finished_deploys (the template
-- finished_deploys below) instead of naming that view: 18.16 has no CREATE OR
-- REPLACE VIEW, so a later migration would replace a view by dropping and
-- creating it, and a view naming the dropped one could not be created in that
-- moment by a concurrent Migrate.

-- One row per finished deploy (succeeded, failed or rolled back), folded
-- from deploy_changes by the deploys view's rule (the latest change wins:
-- greatest (event_time, status_rank)), with what DORA needs besides:
--   - finished_at is when the deploy went live (or failed): the finish of
--     its succeeded or failed change, or the rollback's time when no such
--     change arrived;
--   - reached_production: it has a succeeded change, or it was rolled back
--     without a failed change (a rollback undoes a deploy that was live); a
--     failed deploy never went live, nor one that failed and was rolled back;
--   - team is the `team` label of the latest change that has one ('' when
--     none has): the rollback agent's change carries its own labels only;
--   - version is the version that went live: a rollback's change may name
--     the version it went back to;
--   - the commits are those of the latest change that names any.
CREATE VIEW IF NOT EXISTS deploywatch.dora_finished_deploys AS
SELECT
    deploy_id,
    service,
    env,
    team,
    version,
    status,
    finished_at,
    toMonday(finished_at)                                      AS week_start,
    toDate(finished_at)                                        AS day,
    toUInt8(d_succeeded OR (d_rolled_back_at IS NOT NULL AND NOT d_failed)) AS reached_production,
    toUInt8(status = 'rolled_back' OR d_rolled_back_at IS NOT NULL) AS rolled_back,
    url,
    commit_shas,
    commit_times
FROM
(
    SELECT
        deploy_id,
        any(c_service)                                               AS service,
        any(c_env)                                                   AS env,
        argMaxIf(c_team, k, c_team != '')                            AS team,
        if(countIf(c_status != 'rolled_back') > 0,
            argMaxIf(c_version, k, c_status != 'rolled_back'),
            argMax(c_version, k))                                    AS version,
        argMax(c_status, k)                                          AS status,
        max(if(c_status IN ('succeeded', 'failed'), c_finished_at, NULL)) AS d_live_at,
        max(if(c_status = 'rolled_back', c_finished_at, NULL))       AS d_rolled_back_at,
        countIf(c_status = 'succeeded') > 0                          AS d_succeeded,
        countIf(c_status = 'failed') > 0                             AS d_failed,
        assumeNotNull(ifNull(d_live_at, d_rolled_back_at))           AS finished_at,
        argMaxIf(c_url, k, c_url != '')                              AS url,
        argMaxIf(c_commit_shas, k, notEmpty(c_commit_shas))          AS commit_shas,
        argMaxIf(c_commit_times, k, notEmpty(c_commit_shas))         AS commit_times
    FROM
    (
        SELECT
            deploy_id,
            service                                                  AS c_service,
            env                                                      AS c_env,
            label_values[indexOf(label_keys, 'team')]                AS c_team,
            status                                                   AS c_status,
            version                                                  AS c_version,
            finished_at                                              AS c_finished_at,
            url                                                      AS c_url,
            commit_shas                                              AS c_commit_shas,
            commit_times                                             AS c_commit_times,
            toUInt64(toUInt32(event_time)) * 8 + status_rank         AS k
        FROM deploywatch.deploy_changes
    )
    GROUP BY deploy_id
    HAVING status IN ('succeeded', 'failed', 'rolled_back')
        AND (d_live_at IS NOT NULL OR d_rolled_back_at IS NOT NULL)
)
;

-- dora_finished_deploys with the verdict and incidents of each deploy. It
-- is a failure when it reached production and was rolled back, or its
-- latest verdict (a final one over interim ones, then the newest; not the
-- recovery verdict after a rollback, which judges the service) is bad, or an
-- incident names it. incident_id is the first incident naming it.
CREATE VIEW IF NOT EXISTS deploywatch.dora_deploys AS
SELECT
    deploy_id,
    service,
    env,
    team,
    version,
    status,
    finished_at,
    week_start,
    day,
    reached_production,
    rolled_back,
    toUInt8(v_status = 'bad')                                  AS bad_verdict,
    toUInt8(i_incident_id != '')                               AS incident,
    toUInt8(reached_production AND (rolled_back OR bad_verdict OR incident)) AS failure,
    v_status                                                   AS verdict_status,
    v_reason                                                   AS verdict_reason,
    i_incident_id                                              AS incident_id,
    i_incidents                                                AS incidents,
    url,
    commit_shas,
    commit_times
FROM
(
    SELECT
        deploy_id, service, env, team, version, status, finished_at, week_start, day,
        reached_production, rolled_back, url, commit_shas, commit_times, v_status, v_reason
    FROM
    (
SELECT
    deploy_id,
    service,
    env,
    team,
    version,
    status,
    finished_at,
    toMonday(finished_at)                                      AS week_start,
    toDate(finished_at)                                        AS day,
    toUInt8(d_succeeded OR (d_rolled_back_at IS NOT NULL AND NOT d_failed)) AS reached_production,
    toUInt8(status = 'rolled_back' OR d_rolled_back_at IS NOT NULL) AS rolled_back,
    url,
    commit_shas,
    commit_times
FROM
(
    SELECT
        deploy_id,
        any(c_service)                                               AS service,
        any(c_env)                                                   AS env,
        argMaxIf(c_team, k, c_team != '')                            AS team,
        if(countIf(c_status != 'rolled_back') > 0,
            argMaxIf(c_version, k, c_status != 'rolled_back'),
            argMax(c_version, k))                                    AS version,
        argMax(c_status, k)                                          AS status,
        max(if(c_status IN ('succeeded', 'failed'), c_finished_at, NULL)) AS d_live_at,
        max(if(c_status = 'rolled_back', c_finished_at, NULL))       AS d_rolled_back_at,
        countIf(c_status = 'succeeded') > 0                          AS d_succeeded,
        countIf(c_status = 'failed') > 0                             AS d_failed,
        assumeNotNull(ifNull(d_live_at, d_rolled_back_at))           AS finished_at,
        argMaxIf(c_url, k, c_url != '')                              AS url,
        argMaxIf(c_commit_shas, k, notEmpty(c_commit_shas))          AS commit_shas,
        argMaxIf(c_commit_times, k, notEmpty(c_commit_shas))         AS commit_times
    FROM
    (
        SELECT
            deploy_id,
            service                                                  AS c_service,
            env                                                      AS c_env,
            label_values[indexOf(label_keys, 'team')]                AS c_team,
            status                                                   AS c_status,
            version                                                  AS c_version,
            finished_at                                              AS c_finished_at,
            url                                                      AS c_url,
            commit_shas                                              AS c_commit_shas,
            commit_times                                             AS c_commit_times,
            toUInt64(toUInt32(event_time)) * 8 + status_rank         AS k
        FROM deploywatch.deploy_changes
    )
    GROUP BY deploy_id
    HAVING status IN ('succeeded', 'failed', 'rolled_back')
        AND (d_live_at IS NOT NULL OR d_rolled_back_at IS NOT NULL)
)
    )
    ALL LEFT JOIN
    (
        SELECT
            deploy_id,
            argMax(status, (final, evaluated_at)) AS v_status,
            argMax(reason, (final, evaluated_at)) AS v_reason
        FROM deploywatch.deploy_verdicts
        WHERE deploy_id != '' AND comparison != 'recovery_vs_baseline'
        GROUP BY deploy_id
    ) USING deploy_id
)
ALL LEFT JOIN
(
    SELECT
        deploy_id,
        argMin(incident_id, time) AS i_incident_id,
        uniqExact(incident_id)    AS i_incidents
    FROM deploywatch.incident_changes
    WHERE deploy_id != ''
    GROUP BY deploy_id
) USING deploy_id
;

-- One row per commit at its first production deploy, per (service, env):
-- lead time runs from the commit's time to when that deploy went live. A
-- commit shipped again by a later deploy counts once, at the first.
--
-- A deploy's commits are those it names with their times, and, from the
-- commits table (push webhooks), for each sha it names without a time and
-- for its version: the commit with that sha, and every commit of the pushes
-- whose head is that sha. A deploy with none contributes no row. A negative
-- lead time (a commit clock ahead of the deploy's) is dropped.
--
-- One pass: each (sha, time) a deploy names, and its version with no time,
-- meets the commits table; a named time wins, a missing one is looked up.
-- (The CAST keeps the tuples' types equal where version is a low-cardinality string.)
CREATE VIEW IF NOT EXISTS deploywatch.dora_lead_times AS
SELECT
    argMin(l_deploy_id, l_finished_at)                         AS deploy_id,
    service,
    env,
    argMin(l_team, l_finished_at)                              AS team,
    sha,
    min(l_commit_time)                                         AS commit_time,
    min(l_finished_at)                                         AS finished_at,
    toMonday(min(l_finished_at))                               AS week_start,
    toInt64(toUInt32(min(l_finished_at))) - toInt64(toUInt32(min(l_commit_time))) AS lead_time_s
FROM
(
    SELECT
        l_deploy_id, service, env, l_team, l_finished_at,
        if(toUInt32(l_time) > 0, head, c_sha)                  AS sha,
        if(toUInt32(l_time) > 0, l_time, c_time)               AS l_commit_time
    FROM
    (
        SELECT
            deploy_id AS l_deploy_id, service, env, team AS l_team, finished_at AS l_finished_at,
            l_named.1 AS head, l_named.2 AS l_time
        FROM
        (
SELECT
    deploy_id,
    service,
    env,
    team,
    version,
    status,
    finished_at,
    toMonday(finished_at)                                      AS week_start,
    toDate(finished_at)                                        AS day,
    toUInt8(d_succeeded OR (d_rolled_back_at IS NOT NULL AND NOT d_failed)) AS reached_production,
    toUInt8(status = 'rolled_back' OR d_rolled_back_at IS NOT NULL) AS rolled_back,
    url,
    commit_shas,
    commit_times
FROM
(
    SELECT
        deploy_id,
        any(c_service)                                               AS service,
        any(c_env)                                                   AS env,
        argMaxIf(c_team, k, c_team != '')                            AS team,
        if(countIf(c_status != 'rolled_back') > 0,
            argMaxIf(c_version, k, c_status != 'rolled_back'),
            argMax(c_version, k))                                    AS version,
        argMax(c_status, k)                                          AS status,
        max(if(c_status IN ('succeeded', 'failed'), c_finished_at, NULL)) AS d_live_at,
        max(if(c_status = 'rolled_back', c_finished_at, NULL))       AS d_rolled_back_at,
        countIf(c_status = 'succeeded') > 0                          AS d_succeeded,
        countIf(c_status = 'failed') > 0                             AS d_failed,
        assumeNotNull(ifNull(d_live_at, d_rolled_back_at))           AS finished_at,
        argMaxIf(c_url, k, c_url != '')                              AS url,
        argMaxIf(c_commit_shas, k, notEmpty(c_commit_shas))          AS commit_shas,
        argMaxIf(c_commit_times, k, notEmpty(c_commit_shas))         AS commit_times
    FROM
    (
        SELECT
            deploy_id,
            service                                                  AS c_service,
            env                                                      AS c_env,
            label_values[indexOf(label_keys, 'team')]                AS c_team,
            status                                                   AS c_status,
            version                                                  AS c_version,
            finished_at                                              AS c_finished_at,
            url                                                      AS c_url,
            commit_shas                                              AS c_commit_shas,
            commit_times                                             AS c_commit_times,
            toUInt64(toUInt32(event_time)) * 8 + status_rank         AS k
        FROM deploywatch.deploy_changes
    )
    GROUP BY deploy_id
    HAVING status IN ('succeeded', 'failed', 'rolled_back')
        AND (d_live_at IS NOT NULL OR d_rolled_back_at IS NOT NULL)
)
        )
        ARRAY JOIN arrayConcat(arrayMap((s, t) -> (s, t), commit_shas, commit_times),
            [(CAST(version AS String), toDateTime(0, 'UTC'))]) AS l_named
        WHERE reached_production = 1
    )
    ALL LEFT JOIN
    (
        SELECT head_sha AS head, sha AS c_sha, commit_time AS c_time
        FROM deploywatch.commits
        WHERE head_sha != ''
        UNION ALL
        SELECT sha AS head, sha AS c_sha, commit_time AS c_time
        FROM deploywatch.commits
    ) USING head
)
WHERE sha != '' AND toUInt32(l_commit_time) > 0
GROUP BY service, env, sha
HAVING lead_time_s >= 0
;

-- One row per incident with its opened change, open or resolved. team is
-- the linked deploy's team ('' without a linked deploy, or until that
-- deploy finished). restore_s is null while the incident is open;
-- week_start is the week it opened.
CREATE VIEW IF NOT EXISTS deploywatch.dora_incidents AS
SELECT
    incident_id,
    service,
    env,
    t_team                                                     AS team,
    deploy_id,
    opened_at,
    resolved_at,
    toInt64(toUInt32(resolved_at)) - toInt64(toUInt32(opened_at)) AS restore_s,
    toMonday(opened_at)                                        AS week_start
FROM
(
    SELECT
        incident_id,
        i_service                                              AS service,
        i_env                                                  AS env,
        i_deploy_id                                            AS deploy_id,
        assumeNotNull(i_opened_at)                             AS opened_at,
        i_resolved_at                                          AS resolved_at
    FROM
    (
        -- The store's incident fold (store/incidents.go).
        SELECT
            incident_id,
            any(service)                                             AS i_service,
            any(env)                                                 AS i_env,
            argMax(deploy_id, (deploy_id != '', status = 'opened'))  AS i_deploy_id,
            min(if(status = 'opened', time, NULL))                   AS i_opened_at,
            max(if(status = 'resolved', time, NULL))                 AS i_resolved_at
        FROM deploywatch.incident_changes
        GROUP BY incident_id
    )
    WHERE i_opened_at IS NOT NULL
)
ALL LEFT JOIN
(
    SELECT deploy_id, team AS t_team
    FROM
    (
SELECT
    deploy_id,
    service,
    env,
    team,
    version,
    status,
    finished_at,
    toMonday(finished_at)                                      AS week_start,
    toDate(finished_at)                                        AS day,
    toUInt8(d_succeeded OR (d_rolled_back_at IS NOT NULL AND NOT d_failed)) AS reached_production,
    toUInt8(status = 'rolled_back' OR d_rolled_back_at IS NOT NULL) AS rolled_back,
    url,
    commit_shas,
    commit_times
FROM
(
    SELECT
        deploy_id,
        any(c_service)                                               AS service,
        any(c_env)                                                   AS env,
        argMaxIf(c_team, k, c_team != '')                            AS team,
        if(countIf(c_status != 'rolled_back') > 0,
            argMaxIf(c_version, k, c_status != 'rolled_back'),
            argMax(c_version, k))                                    AS version,
        argMax(c_status, k)                                          AS status,
        max(if(c_status IN ('succeeded', 'failed'), c_finished_at, NULL)) AS d_live_at,
        max(if(c_status = 'rolled_back', c_finished_at, NULL))       AS d_rolled_back_at,
        countIf(c_status = 'succeeded') > 0                          AS d_succeeded,
        countIf(c_status = 'failed') > 0                             AS d_failed,
        assumeNotNull(ifNull(d_live_at, d_rolled_back_at))           AS finished_at,
        argMaxIf(c_url, k, c_url != '')                              AS url,
        argMaxIf(c_commit_shas, k, notEmpty(c_commit_shas))          AS commit_shas,
        argMaxIf(c_commit_times, k, notEmpty(c_commit_shas))         AS commit_times
    FROM
    (
        SELECT
            deploy_id,
            service                                                  AS c_service,
            env                                                      AS c_env,
            label_values[indexOf(label_keys, 'team')]                AS c_team,
            status                                                   AS c_status,
            version                                                  AS c_version,
            finished_at                                              AS c_finished_at,
            url                                                      AS c_url,
            commit_shas                                              AS c_commit_shas,
            commit_times                                             AS c_commit_times,
            toUInt64(toUInt32(event_time)) * 8 + status_rank         AS k
        FROM deploywatch.deploy_changes
    )
    GROUP BY deploy_id
    HAVING status IN ('succeeded', 'failed', 'rolled_back')
        AND (d_live_at IS NOT NULL OR d_rolled_back_at IS NOT NULL)
)
    )
) USING deploy_id
;

-- One row per resolved incident: time to restore runs from opened to
-- resolved, and counts in the week it was resolved. A resolve before the
-- open (clocks apart) is dropped.
CREATE VIEW IF NOT EXISTS deploywatch.dora_restores AS
SELECT
    incident_id,
    service,
    env,
    team,
    deploy_id,
    opened_at,
    assumeNotNull(r_resolved_at)                               AS resolved_at,
    assumeNotNull(r_restore_s)                                 AS restore_s,
    toMonday(assumeNotNull(r_resolved_at))                     AS week_start
FROM
(
    SELECT incident_id, service, env, team, deploy_id, opened_at,
        resolved_at AS r_resolved_at, restore_s AS r_restore_s
    FROM deploywatch.dora_incidents
)
WHERE r_resolved_at IS NOT NULL AND r_restore_s >= 0
;
