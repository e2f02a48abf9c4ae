-- PostgreSQL twin of sqlite/0012_reports.sql.
-- Report figures by day: counts and duration histograms per channel, team,
-- agent and category, added to as things happen (service/scheduler.py,
-- surveys) so a report over a year reads a few hundred rows, never the
-- million conversations behind them. ``omnidesk reports rebuild`` recomputes
-- them from the conversations. Each fact is kept at three levels (``level``):
-- 0 the total (every dimension ``*``), 1 one dimension (the others ``*``),
-- 4 all four; a report reads the coarsest level that answers it.
CREATE TABLE report_daily (
    day      TEXT NOT NULL,             -- YYYY-MM-DD, or YYYY-MM for a month, in the default calendar's time zone
    level    INTEGER NOT NULL,
    channel  TEXT NOT NULL,
    team     TEXT NOT NULL,             -- '' for none
    agent    TEXT NOT NULL,             -- '' for none
    category TEXT NOT NULL,
    metric   TEXT NOT NULL,
    n        INTEGER NOT NULL DEFAULT 0,
    total    DOUBLE PRECISION NOT NULL DEFAULT 0,
    hist     TEXT,                      -- duration buckets "b:n,..." (store/histogram.py)
    PRIMARY KEY (metric, level, day, channel, team, agent, category)
);

-- The backlog report counts open conversations by age, per team.
CREATE INDEX conversations_backlog ON conversations (status, team, created_at);
