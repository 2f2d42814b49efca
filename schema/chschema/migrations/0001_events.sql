-- The raw change events (deploys, incidents) as received, keyed by event id:
-- a redelivered event replaces its earlier copy. payload is the event's JSON.
CREATE TABLE IF NOT EXISTS {{.DB}}.events
(
    event_id    String,
    type        {{.Str}},
    service     {{.Str}},
    env         {{.Str}},
    time        DateTime('UTC'),
    received_at DateTime('UTC'),
    payload     String{{.Codec "ZSTD(1)"}}
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY (type, service, event_id)
;
