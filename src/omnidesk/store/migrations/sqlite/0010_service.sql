-- Service quality: the facts business-hours SLA clocks and time-based rules
-- are computed from, the scheduler's per-conversation state, the actions it
-- fired (once per episode), and agents' in-app notifications.
--
-- last_customer_at: the customer's last message (never an auto-reply);
-- awaiting_since:   the first customer message not answered yet (NULL when
--                   an agent's reply answered everything);
-- last_reply_at:    an agent's last reply (acknowledgements, surveys and
--                   other automatic messages, and notes, never count);
-- status_at:        when the status last changed.
ALTER TABLE conversations ADD COLUMN last_customer_at REAL;
ALTER TABLE conversations ADD COLUMN awaiting_since REAL;
ALTER TABLE conversations ADD COLUMN last_reply_at REAL;
ALTER TABLE conversations ADD COLUMN status_at REAL;

-- Automatic acknowledgements used to set first_response_at: recompute it,
-- and the new columns, from the messages.
UPDATE conversations SET
    first_response_at = (
        SELECT MIN(m.created_at) FROM messages m
         WHERE m.conversation_id = conversations.id AND m.direction = 'out'
           AND m.kind = 'message' AND m.auto IS NULL),
    last_reply_at = (
        SELECT MAX(m.created_at) FROM messages m
         WHERE m.conversation_id = conversations.id AND m.direction = 'out'
           AND m.kind = 'message' AND m.auto IS NULL),
    last_customer_at = (
        SELECT MAX(m.created_at) FROM messages m
         WHERE m.conversation_id = conversations.id AND m.direction = 'in'
           AND m.kind = 'message'),
    status_at = COALESCE(resolved_at, updated_at);
UPDATE conversations SET awaiting_since = (
    SELECT MIN(m.created_at) FROM messages m
     WHERE m.conversation_id = conversations.id AND m.direction = 'in' AND m.kind = 'message'
       AND m.created_at > COALESCE(conversations.last_reply_at, 0))
 WHERE status <> 'resolved';

-- What the scheduler last worked out for a conversation. ``seen`` is the
-- conversation's updated_at at that time: a conversation whose updated_at
-- differs changed since, and is evaluated again. ``version`` makes each
-- evaluation a claim: its write succeeds only if nobody else (another
-- instance) wrote in between, and everything it fires is written with it in
-- one transaction, so an action fires once however many instances look.
CREATE TABLE service_state (
    conversation_id INTEGER PRIMARY KEY REFERENCES conversations (id),
    version         INTEGER NOT NULL DEFAULT 1,
    seen            REAL,
    status          TEXT NOT NULL,
    check_at        REAL,            -- evaluate again then (a due time, a rule's threshold)
    policy          TEXT,            -- the SLA policy that applies
    calendar        TEXT,            -- the business-hours calendar its clocks count in
    first_due       REAL,            -- first response due
    next_start      REAL,            -- the customer waits for a next response since
    next_due        REAL,
    resolution_due  REAL,
    -- Episodes in progress, as JSON {key: episode}: a time-based rule whose
    -- condition holds ("rule:NAME"), an SLA warning or breach that fired for
    -- a clock ("sla:TARGET:breach" -> the clock's start). A key leaves when
    -- its condition stops holding: the next time it holds is a new episode.
    fired           TEXT NOT NULL DEFAULT '{}',
    reported_first  INTEGER NOT NULL DEFAULT 0,  -- the first response went into the reports
    reported_resolved REAL,                      -- the resolution (resolved_at) that did
    evaluated_at    REAL NOT NULL
);
CREATE INDEX service_state_check ON service_state (check_at);
CREATE INDEX service_state_open ON service_state (conversation_id) WHERE status <> 'resolved';

-- In-app notifications (SLA warnings and breaches, rules' notify action).
CREATE TABLE notifications (
    id              INTEGER PRIMARY KEY,
    username        TEXT NOT NULL,
    at              REAL NOT NULL,
    kind            TEXT NOT NULL,
    conversation_id INTEGER REFERENCES conversations (id),
    text            TEXT NOT NULL,
    read_at         REAL
);
CREATE INDEX notifications_user ON notifications (username, id);
