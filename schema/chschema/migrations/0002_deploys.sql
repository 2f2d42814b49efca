-- One row per deploy status change. A redelivered change replaces its copy
-- (same service, env, deploy_id, status); the deploys view folds the changes of
-- a deploy and is correct with or without the copies merged away.
CREATE TABLE IF NOT EXISTS {{.DB}}.deploy_changes
(
    deploy_id        String,
    status           {{.Str}},
    status_rank      UInt8,
    service          {{.Str}},
    env              {{.Str}},
    version          {{.Str}},
    previous_version String,
    event_time       DateTime('UTC'),
    started_at       Nullable(DateTime('UTC')),
    finished_at      Nullable(DateTime('UTC')),
    author           String,
    strategy         {{.Str}},
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
CREATE VIEW IF NOT EXISTS {{.DB}}.deploys AS
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
    FROM {{.DB}}.deploy_changes
)
GROUP BY deploy_id
;
