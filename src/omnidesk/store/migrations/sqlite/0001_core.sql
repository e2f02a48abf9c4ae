-- The durable core: raw intake, quarantine, contacts, conversations, messages,
-- attachments by content hash, audit trail, outbox, API tokens, routing state.
-- Timestamps are UNIX seconds (REAL). JSON columns are TEXT.

CREATE TABLE inbound (
    id           INTEGER PRIMARY KEY,
    channel      TEXT NOT NULL,
    external_id  TEXT NOT NULL,
    received_at  REAL NOT NULL,
    content_type TEXT NOT NULL,
    payload      BLOB NOT NULL,           -- the raw bytes, kept forever
    meta         TEXT NOT NULL DEFAULT '{}',
    state        TEXT NOT NULL DEFAULT 'pending',  -- pending | done | quarantined
    attempts     INTEGER NOT NULL DEFAULT 0,
    processed_at REAL,
    note         TEXT,
    UNIQUE (channel, external_id)
);
CREATE INDEX inbound_pending ON inbound (id) WHERE state = 'pending';

CREATE TABLE quarantine (
    id          INTEGER PRIMARY KEY,
    inbound_id  INTEGER NOT NULL UNIQUE REFERENCES inbound (id),
    channel     TEXT NOT NULL,
    external_id TEXT NOT NULL,
    error       TEXT NOT NULL,
    detail      TEXT,
    state       TEXT NOT NULL DEFAULT 'open',     -- open | resolved
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    retries     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX quarantine_state ON quarantine (state, id);

CREATE TABLE contacts (
    id          INTEGER PRIMARY KEY,
    name        TEXT,
    attributes  TEXT NOT NULL DEFAULT '{}',
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    merged_into INTEGER REFERENCES contacts (id)
);

CREATE TABLE identities (
    id           INTEGER PRIMARY KEY,
    contact_id   INTEGER NOT NULL REFERENCES contacts (id),
    kind         TEXT NOT NULL,
    address      TEXT NOT NULL,
    display_name TEXT,
    data         TEXT NOT NULL DEFAULT '{}',
    created_at   REAL NOT NULL,
    UNIQUE (kind, address)
);
CREATE INDEX identities_contact ON identities (contact_id);

CREATE TABLE conversations (
    id                 INTEGER PRIMARY KEY,
    contact_id         INTEGER NOT NULL REFERENCES contacts (id),
    channel            TEXT NOT NULL,
    thread_key         TEXT,
    subject            TEXT,
    status             TEXT NOT NULL DEFAULT 'open',
    category           TEXT,
    confidence         REAL,
    priority           TEXT NOT NULL DEFAULT 'normal',
    priority_rank      INTEGER NOT NULL DEFAULT 1,
    team               TEXT,
    assignee           TEXT,
    tags               TEXT NOT NULL DEFAULT '[]',
    decision           TEXT,
    snoozed_until      REAL,
    sla_due_at         REAL,
    created_at         REAL NOT NULL,
    updated_at         REAL NOT NULL,
    last_message_at    REAL,
    last_inbound_at    REAL,
    first_response_at  REAL,
    resolved_at        REAL,
    message_count      INTEGER NOT NULL DEFAULT 0,
    last_preview       TEXT
);
CREATE INDEX conversations_contact ON conversations (contact_id, updated_at);
CREATE INDEX conversations_thread ON conversations (channel, thread_key, id);
CREATE INDEX conversations_status ON conversations (status, priority_rank, last_message_at);
CREATE INDEX conversations_team ON conversations (team, status);
CREATE INDEX conversations_assignee ON conversations (assignee, status);

CREATE TABLE thread_keys (
    id              INTEGER PRIMARY KEY,
    key             TEXT NOT NULL UNIQUE,
    conversation_id INTEGER NOT NULL REFERENCES conversations (id)
);
CREATE INDEX thread_keys_conversation ON thread_keys (conversation_id, id);

CREATE TABLE messages (
    id              INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations (id),
    direction       TEXT NOT NULL,            -- in | out
    kind            TEXT NOT NULL,            -- message | note | edit | auto
    channel         TEXT NOT NULL,
    external_id     TEXT,
    inbound_id      INTEGER REFERENCES inbound (id),
    sender_kind     TEXT,
    sender_address  TEXT,
    sender_name     TEXT,
    author          TEXT,                     -- agent username for outbound messages and notes
    subject         TEXT,
    text            TEXT NOT NULL,
    full_text       TEXT,
    html            TEXT,
    auto            TEXT,
    edit_of         INTEGER REFERENCES messages (id),
    meta            TEXT NOT NULL DEFAULT '{}',
    sent_at         REAL,
    created_at      REAL NOT NULL,
    delivery_state  TEXT,                     -- outbound: queued | sent | delivered | read | failed
    delivery_error  TEXT,
    provider_id     TEXT,
    UNIQUE (channel, direction, external_id)
);
CREATE INDEX messages_conversation ON messages (conversation_id, id);
CREATE INDEX messages_provider ON messages (channel, provider_id) WHERE provider_id IS NOT NULL;

CREATE TABLE blobs (
    sha256 TEXT PRIMARY KEY,
    size   INTEGER NOT NULL,
    data   BLOB NOT NULL
);

CREATE TABLE attachments (
    id           INTEGER PRIMARY KEY,
    message_id   INTEGER NOT NULL REFERENCES messages (id),
    sha256       TEXT REFERENCES blobs (sha256),
    filename     TEXT,
    content_type TEXT NOT NULL,
    size         INTEGER NOT NULL,
    inline       INTEGER NOT NULL DEFAULT 0,
    content_id   TEXT,
    ref          TEXT
);
CREATE INDEX attachments_message ON attachments (message_id);

CREATE TABLE audit (
    id              INTEGER PRIMARY KEY,
    at              REAL NOT NULL,
    actor           TEXT NOT NULL,            -- "system", "rules", "agent:alice", "cli" ...
    action          TEXT NOT NULL,
    conversation_id INTEGER,
    contact_id      INTEGER,
    message_id      INTEGER,
    reason          TEXT,
    detail          TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_conversation ON audit (conversation_id, id);
CREATE INDEX audit_contact ON audit (contact_id, id);

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    channel         TEXT NOT NULL,
    conversation_id INTEGER REFERENCES conversations (id),
    message_id      INTEGER REFERENCES messages (id),
    payload         TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'queued',   -- queued | sending | sent | failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error      TEXT,
    provider_id     TEXT,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,
    role         TEXT NOT NULL,
    name         TEXT,
    username     TEXT,
    created_at   REAL NOT NULL,
    last_used_at REAL,
    revoked_at   REAL
);

CREATE TABLE routing_state (
    team    TEXT PRIMARY KEY,
    rr_last TEXT
);

CREATE TABLE channel_state (
    channel TEXT NOT NULL,
    key     TEXT NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (channel, key)
);
