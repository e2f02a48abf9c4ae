-- Agent availability (store/assignment.py): online, away or offline, set by
-- hand or by signing in and out; ``last_active_at`` is the browser's last
-- sign of a person at the keyboard, and an online agent idle for longer
-- than [assignment] idle_away_minutes counts as away. ``via`` says how the
-- agent is present: 'session' (the web UI: offline once no session is
-- live) or 'token' (an API client that keeps its own status).
CREATE TABLE agent_status (
    username       TEXT PRIMARY KEY,
    status         TEXT NOT NULL DEFAULT 'offline',
    via            TEXT NOT NULL DEFAULT 'session',
    last_active_at REAL NOT NULL,
    changed_at     REAL NOT NULL
);

-- A team's waiting queue, in the order it is served: priority, then age.
CREATE INDEX conversations_waiting ON conversations (team, priority_rank DESC, created_at, id)
    WHERE assignee IS NULL AND status = 'open';
