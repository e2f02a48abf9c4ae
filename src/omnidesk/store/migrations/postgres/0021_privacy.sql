-- PostgreSQL twin of sqlite/0021_privacy.sql.
CREATE TABLE retention_runs (
    id          BIGSERIAL PRIMARY KEY,
    policy      TEXT NOT NULL,
    dry_run     INTEGER NOT NULL,
    action      TEXT NOT NULL,
    cutoff      DOUBLE PRECISION NOT NULL,
    started_at  DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION,
    conversations INTEGER NOT NULL DEFAULT 0,
    messages    INTEGER NOT NULL DEFAULT 0,
    ids         TEXT NOT NULL DEFAULT '[]',
    actor       TEXT NOT NULL
);
CREATE INDEX retention_runs_policy ON retention_runs (policy, id);
CREATE INDEX conversations_last_active
    ON conversations (COALESCE(last_message_at, created_at), id);
