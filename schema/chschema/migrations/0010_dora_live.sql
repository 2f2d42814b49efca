-- dora_finished_deploys as 0009 defines it now, for the databases where
-- 0009 was applied before it said what "went live" means: a deploy reached
-- production when it has a succeeded change, or when it was rolled back
-- without a failed change (a rollback undoes a deploy that was live). 0009 as
-- first released said "its latest status is succeeded or rolled_back", so a
-- deploy that failed and was then rolled back (a pipeline rolling back its
-- failed attempt) counted as live, as a failed change, and its commits as
-- shipped. An applied migration never runs again, hence this one.
--
-- 18.16 has neither CREATE OR REPLACE VIEW nor DROP VIEW: DROP TABLE IF
-- EXISTS drops a view, and CREATE VIEW IF NOT EXISTS makes the pair safe to
-- run twice, or twice at once. The views that 0009 as first released built on
-- this one (dora_deploys, dora_lead_times, dora_incidents) name it, and read
-- the new definition from their next query on; 0009 now inlines the fold in
-- them, so nothing a migration creates names the view dropped here. The
-- SELECT is 0009's template finished_deploys, word for word (a test in
-- store/ checks that the two say the same).
DROP TABLE IF EXISTS {{.DB}}.dora_finished_deploys
;

CREATE VIEW IF NOT EXISTS {{.DB}}.dora_finished_deploys AS
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
        FROM {{.DB}}.deploy_changes
    )
    GROUP BY deploy_id
    HAVING status IN ('succeeded', 'failed', 'rolled_back')
        AND (d_live_at IS NOT NULL OR d_rolled_back_at IS NOT NULL)
)
;
