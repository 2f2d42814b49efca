-- Run before every migration: the database and the table that records which
-- migrations have been applied. A concurrent Migrate may record a version twice;
-- ReplacingMergeTree folds the copies and readers group by version.
CREATE DATABASE IF NOT EXISTS {{.DB}}
;

CREATE TABLE IF NOT EXISTS {{.DB}}.schema_migrations
(
    version    UInt32,
    name       String,
    applied_at DateTime('UTC')
)
ENGINE = ReplacingMergeTree()
ORDER BY version
;
