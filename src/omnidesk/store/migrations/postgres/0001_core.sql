-- The durable core: raw intake, quarantine, contacts, conversations, messages,
-- attachments by content hash, audit trail, outbox, API tokens, routing state.
-- Timestamps are UNIX seconds (DOUBLE PRECISION). JSON columns are TEXT.
-- PostgreSQL twin of sqlite/0001_core.sql: same names, constraints and indexes;
-- only the types differ (BIGSERIAL/BIGINT ids, BYTEA, DOUBLE PRECISION).

CREATE TABLE inbound (
    id           BIGSERIAL PRIMARY KEY,
    channel      TEXT NOT NULL,
    external_id  TEXT NOT NULL,
    received_at  DOUBLE PRECISION NOT NULL,
    content_type TEXT NOT NULL,
    payload      BYTEA NOT NULL,           -- the raw bytes, kept forever
    meta         TEXT NOT NULL DEFAULT '{}',
    state        TEXT NOT NULL DEFAULT 'pending',  -- pending | done | quarantined
    attempts     INTEGER NOT NULL DEFAULT 0,
    processed_at DOUBLE PRECISION,
    note         TEXT,
    UNIQUE (channel, external_id)
);
CREATE INDEX inbound_pending ON inbound (id) WHERE state = 'pending';

CREATE TABLE quarantine (
    id          BIGSERIAL PRIMARY KEY,
    inbound_id  BIGINT NOT NULL UNIQUE REFERENCES inbound (id),
    channel     TEXT NOT NULL,
    external_id TEXT NOT NULL,
    error       TEXT NOT NULL,
    detail      TEXT,
    state       TEXT NOT NULL DEFAULT 'open',     -- open | resolved
    created_at  DOUBLE PRECISION NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL,
    retries     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX quarantine_state ON quarantine (state, id);

CREATE TABLE contacts (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT,
    attributes  TEXT NOT NULL DEFAULT '{}',
    created_at  DOUBLE PRECISION NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL,
    merged_into BIGINT REFERENCES contacts (id)
);

CREATE TABLE identities (
    id           BIGSERIAL PRIMARY KEY,
    contact_id   BIGINT NOT NULL REFERENCES contacts (id),
    kind         TEXT NOT NULL,
    address      TEXT NOT NULL,
    display_name TEXT,
    data         TEXT NOT NULL DEFAULT '{}',
    created_at   DOUBLE PRECISION NOT NULL,
    UNIQUE (kind, address)
);
CREATE INDEX identities_contact ON identities (contact_id);

CREATE TABLE conversations (
    id                 BIGSERIAL PRIMARY KEY,
    contact_id         BIGINT NOT NULL REFERENCES contacts (id),
    channel            TEXT NOT NULL,
    thread_key         TEXT,
    subject            TEXT,
    status             TEXT NOT NULL DEFAULT 'open',
    category           TEXT,
    confidence         DOUBLE PRECISION,
    priority           TEXT NOT NULL DEFAULT 'normal',
    priority_rank      INTEGER NOT NULL DEFAULT 1,
    team               TEXT,
    assignee           TEXT,
    tags               TEXT NOT NULL DEFAULT '[]',
    decision           TEXT,
    snoozed_until      DOUBLE PRECISION,
    sla_due_at         DOUBLE PRECISION,
    created_at         DOUBLE PRECISION NOT NULL,
    updated_at         DOUBLE PRECISION NOT NULL,
    last_message_at    DOUBLE PRECISION,
    last_inbound_at    DOUBLE PRECISION,
    first_response_at  DOUBLE PRECISION,
    resolved_at        DOUBLE PRECISION,
    message_count      INTEGER NOT NULL DEFAULT 0,
    last_preview       TEXT
);
CREATE INDEX conversations_contact ON conversations (contact_id, updated_at);
CREATE INDEX conversations_thread ON conversations (channel, thread_key, id);
CREATE INDEX conversations_status ON conversations (status, priority_rank, last_message_at);
CREATE INDEX conversations_team ON conversations (team, status);
CREATE INDEX conversations_assignee ON conversations (assignee, status);

CREATE TABLE thread_keys (
    id              BIGSERIAL PRIMARY KEY,
    key             TEXT NOT NULL UNIQUE,
    conversation_id BIGINT NOT NULL REFERENCES conversations (id)
);
CREATE INDEX thread_keys_conversation ON thread_keys (conversation_id, id);

CREATE TABLE messages (
    id              BIGSERIAL PRIMARY KEY,
    conversation_id BIGINT NOT NULL REFERENCES conversations (id),
    direction       TEXT NOT NULL,            -- in | out
    kind            TEXT NOT NULL,            -- message | note | edit | auto
    channel         TEXT NOT NULL,
    external_id     TEXT,
    inbound_id      BIGINT REFERENCES inbound (id),
    sender_kind     TEXT,
    sender_address  TEXT,
    sender_name     TEXT,
    author          TEXT,                     -- agent username for outbound messages and notes
    subject         TEXT,
    text            TEXT NOT NULL,
    full_text       TEXT,
    html            TEXT,
    auto            TEXT,
    edit_of         BIGINT REFERENCES messages (id),
    meta            TEXT NOT NULL DEFAULT '{}',
    sent_at         DOUBLE PRECISION,
    created_at      DOUBLE PRECISION NOT NULL,
    delivery_state  TEXT,                     -- outbound: queued | sent | delivered | read | failed
    delivery_error  TEXT,
    provider_id     TEXT,
    UNIQUE (channel, direction, external_id)
);
CREATE INDEX messages_conversation ON messages (conversation_id, id);
CREATE INDEX messages_provider ON messages (channel, provider_id) WHERE provider_id IS NOT NULL;

CREATE TABLE blobs (
    sha256 TEXT PRIMARY KEY,
    size   BIGINT NOT NULL,
    data   BYTEA NOT NULL
);

CREATE TABLE attachments (
    id           BIGSERIAL PRIMARY KEY,
    message_id   BIGINT NOT NULL REFERENCES messages (id),
    sha256       TEXT REFERENCES blobs (sha256),
    filename     TEXT,
    content_type TEXT NOT NULL,
    size         BIGINT NOT NULL,
    inline       INTEGER NOT NULL DEFAULT 0,
    content_id   TEXT,
    ref          TEXT
);
CREATE INDEX attachments_message ON attachments (message_id);

CREATE TABLE audit (
    id              BIGSERIAL PRIMARY KEY,
    at              DOUBLE PRECISION NOT NULL,
    actor           TEXT NOT NULL,            -- "system", "rules", "agent:alice", "cli" ...
    action          TEXT NOT NULL,
    conversation_id BIGINT,
    contact_id      BIGINT,
    message_id      BIGINT,
    reason          TEXT,
    detail          TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_conversation ON audit (conversation_id, id);
CREATE INDEX audit_contact ON audit (contact_id, id);

CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    channel         TEXT NOT NULL,
    conversation_id BIGINT REFERENCES conversations (id),
    message_id      BIGINT REFERENCES messages (id),
    payload         TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'queued',   -- queued | sending | sent | failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    last_error      TEXT,
    provider_id     TEXT,
    created_at      DOUBLE PRECISION NOT NULL,
    updated_at      DOUBLE PRECISION NOT NULL
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);

CREATE TABLE api_tokens (
    id           BIGSERIAL PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,
    role         TEXT NOT NULL,
    name         TEXT,
    username     TEXT,
    created_at   DOUBLE PRECISION NOT NULL,
    last_used_at DOUBLE PRECISION,
    revoked_at   DOUBLE PRECISION
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
