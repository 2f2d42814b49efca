-- One row per incident status change; a redelivered change replaces its copy.
CREATE TABLE IF NOT EXISTS {{.DB}}.incident_changes
(
    incident_id String,
    status      {{.Str}},
    service     {{.Str}},
    env         {{.Str}},
    time        DateTime('UTC'),
    title       String,
    source      {{.Str}},
    deploy_id   String,
    inserted_at DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY (service, env, incident_id, status)
;
