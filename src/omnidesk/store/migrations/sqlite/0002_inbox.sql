-- The agent inbox: accounts, sessions, login throttling, teams in the database,
-- saved views, canned replies, classifier corrections, reversible contact
-- merges, and the indexes the inbox list and contact history need.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    display_name  TEXT,
    email         TEXT,
    role          TEXT NOT NULL,                 -- agent | supervisor | admin
    password_hash TEXT,                          -- argon2id; NULL: cannot log in with a password
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    last_login_at REAL
);

-- Browser sessions. Only a SHA-256 of the cookie value is stored.
CREATE TABLE sessions (
    id_hash      TEXT PRIMARY KEY,
    username     TEXT NOT NULL,
    csrf_token   TEXT NOT NULL,
    created_at   REAL NOT NULL,
    last_seen_at REAL NOT NULL,
    expires_at   REAL NOT NULL,
    ip           TEXT,
    user_agent   TEXT
);
CREATE INDEX sessions_username ON sessions (username);

-- Failed logins per key ("ip:<addr>", "user:<name>") and the lockout they earned.
CREATE TABLE login_throttle (
    key          TEXT PRIMARY KEY,
    failures     INTEGER NOT NULL DEFAULT 0,
    last_at      REAL NOT NULL,
    locked_until REAL
);

CREATE TABLE teams (
    name               TEXT PRIMARY KEY,
    strategy           TEXT NOT NULL DEFAULT 'round_robin',
    max_open_per_agent INTEGER NOT NULL DEFAULT 25,
    sticky             INTEGER NOT NULL DEFAULT 1,
    created_at         REAL NOT NULL,
    updated_at         REAL NOT NULL
);

CREATE TABLE team_members (
    team     TEXT NOT NULL REFERENCES teams (name) ON DELETE CASCADE,
    username TEXT NOT NULL,
    position INTEGER NOT NULL,                   -- order matters for round robin
    PRIMARY KEY (team, username)
);
CREATE INDEX team_members_username ON team_members (username);

CREATE TABLE saved_views (
    id         INTEGER PRIMARY KEY,
    username   TEXT NOT NULL,
    name       TEXT NOT NULL,
    filters    TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    UNIQUE (username, name)
);

CREATE TABLE canned_replies (
    id         INTEGER PRIMARY KEY,
    shortcut   TEXT NOT NULL UNIQUE,
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    team       TEXT,                             -- NULL: everyone
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);

-- An agent changed what the rules decided: material to teach the classifier.
CREATE TABLE corrections (
    id              INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations (id),
    field           TEXT NOT NULL,               -- category | priority
    old_value       TEXT,
    new_value       TEXT NOT NULL,
    old_confidence  REAL,
    rule            TEXT,                        -- the rule that had decided
    actor           TEXT NOT NULL,
    reason          TEXT,
    at              REAL NOT NULL
);
CREATE INDEX corrections_conversation ON corrections (conversation_id, id);

-- What each merge moved, so an admin can undo it exactly.
CREATE TABLE contact_merges (
    id              INTEGER PRIMARY KEY,
    source_id       INTEGER NOT NULL REFERENCES contacts (id),
    target_id       INTEGER NOT NULL REFERENCES contacts (id),
    identity_ids    TEXT NOT NULL,               -- JSON list
    conversation_ids TEXT NOT NULL,              -- JSON list
    attributes_added TEXT NOT NULL DEFAULT '{}', -- keys the target took from the source
    actor           TEXT NOT NULL,
    at              REAL NOT NULL,
    undone_at       REAL,
    undone_by       TEXT
);
CREATE INDEX contact_merges_contacts ON contact_merges (target_id, source_id);

-- The inbox sorts by urgency: priority, then first-response due time (none
-- last), then age. One index per common status keeps a page a short walk.
CREATE INDEX conversations_urgency
    ON conversations (status, priority_rank DESC, COALESCE(sla_due_at, 1e18), id);
CREATE INDEX conversations_contact_recent
    ON conversations (contact_id, COALESCE(last_message_at, created_at) DESC, id DESC);
CREATE INDEX conversations_snoozed ON conversations (snoozed_until) WHERE status = 'snoozed';
CREATE INDEX identities_address ON identities (address);
CREATE INDEX audit_actor ON audit (actor, id);
