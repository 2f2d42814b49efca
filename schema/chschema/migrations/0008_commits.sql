-- One row per commit a push carried (GitHub and GitLab push webhooks, or a
-- push event sent to the API). A deploy of head_sha ships the push's commits,
-- which gives lead time its commit times when the deploy itself names only
-- its sha. A redelivered push replaces its copy. Partitioned by the push,
-- not the commit: one push's commits can span years (an imported history),
-- and one INSERT may touch at most 100 partitions on modern servers.
CREATE TABLE IF NOT EXISTS {{.DB}}.commits
(
    service     {{.Str}},
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
