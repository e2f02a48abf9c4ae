-- PostgreSQL twin of sqlite/0012_reports.sql.
-- Report figures by day: counts and duration histograms per channel, team,
-- agent and category, added to as things happen (service/scheduler.py,
-- surveys) so a report over a year reads a few thousand rows, never the
-- million conversations behind them. ``omnidesk reports rebuild`` recomputes
-- them from the conversations.
CREATE TABLE report_daily (
    day      TEXT NOT NULL,             -- YYYY-MM-DD in the default calendar's time zone
    channel  TEXT NOT NULL,
    team     TEXT NOT NULL,             -- '' for none
    agent    TEXT NOT NULL,             -- '' for none
    category TEXT NOT NULL,
    metric   TEXT NOT NULL,
    n        INTEGER NOT NULL DEFAULT 0,
    total    DOUBLE PRECISION NOT NULL DEFAULT 0,
    hist     TEXT,                      -- duration buckets "b:n,..." (service/histogram.py)
    PRIMARY KEY (metric, day, channel, team, agent, category)
);

-- The backlog report counts open conversations by age.
CREATE INDEX conversations_backlog ON conversations (status, created_at);
