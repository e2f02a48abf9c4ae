-- Satisfaction (CSAT) and loyalty surveys, one per resolution of a
-- conversation, and each contact's satisfaction figure.
CREATE TABLE surveys (
    id              INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations (id),
    contact_id      INTEGER NOT NULL REFERENCES contacts (id),
    channel         TEXT NOT NULL,
    resolved_at     REAL NOT NULL,        -- the resolution it asks about
    -- scheduled | sent | answered | cancelled (reopened first) | skipped (why: note)
    state           TEXT NOT NULL,
    note            TEXT,
    scale           INTEGER NOT NULL,     -- 2, 3 or 5 points
    ask_loyalty     INTEGER NOT NULL DEFAULT 0,
    language        TEXT,
    send_at         REAL NOT NULL,
    sent_at         REAL,
    expires_at      REAL,
    message_id      INTEGER REFERENCES messages (id),
    rating          INTEGER,
    loyalty_score   INTEGER,              -- 0-10
    comment         TEXT,
    answered_at     REAL,
    changed_at      REAL,
    answered_via    TEXT,                 -- link | chat
    -- who and what it is about, as at the resolution (reports group by these)
    team            TEXT,
    agent           TEXT,
    category        TEXT,
    created_at      REAL NOT NULL,
    UNIQUE (conversation_id, resolved_at)
);
CREATE INDEX surveys_contact ON surveys (contact_id, created_at);
CREATE INDEX surveys_due ON surveys (state, send_at);

-- A contact's satisfaction and loyalty figure (service/satisfaction.py says
-- how it is computed), kept current by the scheduler.
CREATE TABLE contact_scores (
    contact_id   INTEGER PRIMARY KEY REFERENCES contacts (id),
    score        REAL NOT NULL,          -- 0-100
    satisfaction REAL,                   -- 0-100 from ratings, NULL without any
    loyalty      REAL,                   -- NPS-style -100..100 from loyalty answers
    at_risk      INTEGER NOT NULL DEFAULT 0,
    inputs       TEXT NOT NULL DEFAULT '{}',
    updated_at   REAL NOT NULL
);
