-- PostgreSQL twin of sqlite/0011_surveys.sql.
-- Satisfaction (CSAT) and loyalty surveys, one per resolution of a
-- conversation, and each contact's satisfaction figure.
CREATE TABLE surveys (
    id              BIGSERIAL PRIMARY KEY,
    conversation_id BIGINT NOT NULL REFERENCES conversations (id),
    contact_id      BIGINT NOT NULL REFERENCES contacts (id),
    channel         TEXT NOT NULL,
    resolved_at     DOUBLE PRECISION NOT NULL,        -- the resolution it asks about
    -- scheduled | sent | answered | cancelled (reopened first) | skipped (why: note)
    state           TEXT NOT NULL,
    note            TEXT,
    scale           INTEGER NOT NULL,     -- 2, 3 or 5 points
    ask_loyalty     INTEGER NOT NULL DEFAULT 0,
    language        TEXT,
    send_at         DOUBLE PRECISION NOT NULL,
    sent_at         DOUBLE PRECISION,
    expires_at      DOUBLE PRECISION,
    message_id      BIGINT REFERENCES messages (id),
    rating          INTEGER,
    loyalty_score   INTEGER,              -- 0-10
    comment         TEXT,
    answered_at     DOUBLE PRECISION,
    changed_at      DOUBLE PRECISION,
    answered_via    TEXT,                 -- link | chat
    -- who and what it is about, as at the resolution (reports group by these)
    team            TEXT,
    agent           TEXT,
    category        TEXT,
    created_at      DOUBLE PRECISION NOT NULL,
    UNIQUE (conversation_id, resolved_at)
);
CREATE INDEX surveys_contact ON surveys (contact_id, created_at);
CREATE INDEX surveys_due ON surveys (state, send_at);

-- A contact's satisfaction and loyalty figure (service/satisfaction.py says
-- how it is computed), kept current by the scheduler.
CREATE TABLE contact_scores (
    contact_id   BIGINT PRIMARY KEY REFERENCES contacts (id),
    score        DOUBLE PRECISION NOT NULL,          -- 0-100
    satisfaction DOUBLE PRECISION,                   -- 0-100 from ratings, NULL without any
    loyalty      DOUBLE PRECISION,                   -- NPS-style -100..100 from loyalty answers
    at_risk      INTEGER NOT NULL DEFAULT 0,
    inputs       TEXT NOT NULL DEFAULT '{}',
    updated_at   DOUBLE PRECISION NOT NULL
);
