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
{{define "finished_deploys"}}SELECT
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
        FROM {{.DB}}.deploy_changes
    )
    GROUP BY deploy_id
    HAVING status IN ('succeeded', 'failed', 'rolled_back')
        AND (d_live_at IS NOT NULL OR d_rolled_back_at IS NOT NULL)
){{end -}}
CREATE VIEW IF NOT EXISTS {{.DB}}.dora_finished_deploys AS
{{template "finished_deploys" .}}
;

-- dora_finished_deploys with the verdict and incidents of each deploy. It
-- is a failure when it reached production and was rolled back, or its
-- latest verdict (a final one over interim ones, then the newest; not the
-- recovery verdict after a rollback, which judges the service) is bad, or an
-- incident names it. incident_id is the first incident naming it.
CREATE VIEW IF NOT EXISTS {{.DB}}.dora_deploys AS
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
{{template "finished_deploys" .}}
    )
    ALL LEFT JOIN
    (
        SELECT
            deploy_id,
            argMax(status, (final, evaluated_at)) AS v_status,
            argMax(reason, (final, evaluated_at)) AS v_reason
        FROM {{.DB}}.deploy_verdicts
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
    FROM {{.DB}}.incident_changes
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
CREATE VIEW IF NOT EXISTS {{.DB}}.dora_lead_times AS
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
{{template "finished_deploys" .}}
        )
        ARRAY JOIN arrayConcat(arrayMap((s, t) -> (s, t), commit_shas, commit_times),
            [(CAST(version AS String), toDateTime(0, 'UTC'))]) AS l_named
        WHERE reached_production = 1
    )
    ALL LEFT JOIN
    (
        SELECT head_sha AS head, sha AS c_sha, commit_time AS c_time
        FROM {{.DB}}.commits
        WHERE head_sha != ''
        UNION ALL
        SELECT sha AS head, sha AS c_sha, commit_time AS c_time
        FROM {{.DB}}.commits
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
CREATE VIEW IF NOT EXISTS {{.DB}}.dora_incidents AS
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
        FROM {{.DB}}.incident_changes
        GROUP BY incident_id
    )
    WHERE i_opened_at IS NOT NULL
)
ALL LEFT JOIN
(
    SELECT deploy_id, team AS t_team
    FROM
    (
{{template "finished_deploys" .}}
    )
) USING deploy_id
;

-- One row per resolved incident: time to restore runs from opened to
-- resolved, and counts in the week it was resolved. A resolve before the
-- open (clocks apart) is dropped.
CREATE VIEW IF NOT EXISTS {{.DB}}.dora_restores AS
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
    FROM {{.DB}}.dora_incidents
)
WHERE r_resolved_at IS NOT NULL AND r_restore_s >= 0
;
