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
CREATE TABLE IF NOT EXISTS {{.DB}}.alert_events
(
    id               String,
    alert_id         String,
    status           {{.Str}},
    status_rank      UInt8,
    rule             {{.Str}},
    severity         {{.Str}},
    actions          Array(String),
    dry_run          UInt8,
    silenced         UInt8,
    silence_id       String,
    service          {{.Str}},
    env              {{.Str}},
    deploy_id        String,
    version          String,
    previous_version String,
    summary          String,
    verdict_id       String,
    verdict_status   {{.Str}},
    verdict_score    UInt8,
    pending_since    DateTime('UTC'),
    starts_at        DateTime('UTC'),
    ends_at          DateTime('UTC'),
    time             DateTime('UTC'),
    rollback_id      String,
    resolution       {{.Str}},
    rule_condition   String,
    label_keys       Array(String),
    label_values     Array(String),
    body             String{{.Codec "ZSTD(1)"}},
    received_at      DateTime('UTC')
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY (service, alert_id, id)
;

-- One row per rollback signal: a rule asked for a deploy to be undone. id is
-- <deploy_id>:rollback, one per deploy whatever asked for it.
CREATE TABLE IF NOT EXISTS {{.DB}}.rollback_signals
(
    id               String,
    service          {{.Str}},
    env              {{.Str}},
    deploy_id        String,
    version          String,
    previous_version String,
    rule             {{.Str}},
    alert_id         String,
    verdict_id       String,
    severity         {{.Str}},
    reason           String,
    at               DateTime('UTC'),
    label_keys       Array(String),
    label_values     Array(String),
    body             String{{.Codec "ZSTD(1)"}},
    received_at      DateTime('UTC')
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(at)
ORDER BY (service, id)
;

-- One row per silence: who kept which alerts (a service, an env, a rule) from
-- being delivered or acted on, from starts_at to ends_at, and why. Empty
-- service, env or rule means any.
CREATE TABLE IF NOT EXISTS {{.DB}}.silences
(
    id          String,
    service     {{.Str}},
    env         {{.Str}},
    rule        {{.Str}},
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
CREATE TABLE IF NOT EXISTS {{.DB}}.alert_acks
(
    id          String,
    alert_id    String,
    service     {{.Str}},
    env         {{.Str}},
    rule        {{.Str}},
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
CREATE VIEW IF NOT EXISTS {{.DB}}.latest_alerts AS
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
    FROM {{.DB}}.alert_events
)
GROUP BY alert_id
;
