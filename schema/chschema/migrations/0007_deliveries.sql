-- One row per attempt to deliver an alert event to a webhook receiver (the
-- delivery events of the signals stream). id is
-- <webhook_id>:<stream sequence>:<round>:<attempt>, so a redelivered event has
-- the same key and partition (at is the attempt's time) and replaces its copy.
-- webhook_id is the same for every attempt of one logical delivery (one alert
-- event to one receiver): its latest state is argMax over (final, at, attempt):
--   SELECT webhook_id, argMax(outcome, (final, at, attempt)) AS outcome, count() AS attempts
--   FROM webhook_deliveries FINAL WHERE alert_id = ? GROUP BY webhook_id
-- status_code is 0 where no answer came; next_attempt_at is the epoch when none follows.
CREATE TABLE IF NOT EXISTS {{.DB}}.webhook_deliveries
(
    id              String,
    webhook_id      String,
    alert_event_id  String,
    alert_id        String,
    alert_status    {{.Str}},
    rule            {{.Str}},
    service         {{.Str}},
    env             {{.Str}},
    receiver        {{.Str}},
    url             String,
    format          {{.Str}},
    round           UInt32,
    attempt         UInt32,
    status_code     UInt16,
    error           String{{.Codec "ZSTD(1)"}},
    duration_ms     UInt64,
    outcome         {{.Str}},
    final           UInt8,
    at              DateTime('UTC'),
    next_attempt_at DateTime('UTC'),
    received_at     DateTime('UTC')
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(at)
ORDER BY (service, webhook_id, id)
;
