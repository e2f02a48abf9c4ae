-- Privacy (docs/customers.md): each retention run, dry or real, with the
-- exact conversations it listed or removed, so a real run can be checked
-- against the dry run before it.
CREATE TABLE retention_runs (
    id          INTEGER PRIMARY KEY,
    policy      TEXT NOT NULL,
    dry_run     INTEGER NOT NULL,
    action      TEXT NOT NULL,              -- delete | redact
    cutoff      REAL NOT NULL,              -- conversations last active before this
    started_at  REAL NOT NULL,
    finished_at REAL,
    conversations INTEGER NOT NULL DEFAULT 0,
    messages    INTEGER NOT NULL DEFAULT 0,
    ids         TEXT NOT NULL DEFAULT '[]', -- the conversation ids, JSON
    actor       TEXT NOT NULL
);
CREATE INDEX retention_runs_policy ON retention_runs (policy, id);
-- Conversations by last activity: what a retention policy looks for.
CREATE INDEX conversations_last_active
    ON conversations (COALESCE(last_message_at, created_at), id);
