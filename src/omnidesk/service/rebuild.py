"""``omnidesk reports rebuild``: the daily and monthly report figures worked
out again from the conversations, their messages and the surveys.

Needed once after upgrading a store that had conversations before reports
existed, and after changing calendars or SLA policies (the figures are kept
as counted at the time). It runs in one write transaction: every figure is
recounted up to that moment, and the scheduler counts from then on
(``reports_from``), so nothing is counted twice or missed. On SQLite the
transaction holds the write lock while it works (about a minute per million
conversations, bench/bench_reports.py): run it at a quiet time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..rules.engine import RuleSet
from ..rules.service import SlaPolicy, good_rating
from ..store import histogram, jsoncol
from ..store.base import Db, placeholders
from ..store.reports import Dims, local_day
from .evaluate import conversation_input, policy_for
from .sla import clocks

BATCH = 5000
# the (level, channel, team, agent, category) rows a conversation's facts go to
Levels = tuple[tuple[int, str, str, str, str], ...]
Key = tuple[str, int, str, str, str, str, str]  # metric, level, period, dimensions


def levels(dims: Dims) -> Levels:
    return tuple((lvl, x.channel, x.team, x.agent, x.category) for lvl, x in dims.levels())


@dataclass
class Tally:
    rows: dict[Key, list[Any]] = field(default_factory=dict)  # key -> [n, total, hist]
    conversations: int = 0
    messages: int = 0
    surveys: int = 0
    _days: dict[int, tuple[str, str]] = field(default_factory=dict)

    def add(
        self,
        tz: Any,
        metric: str,
        at: float,
        dims: Levels,
        seconds: float | None = None,
    ) -> None:
        # Every time-zone offset is a multiple of 15 minutes: a day is known
        # from the quarter hour.
        q = int(at // 900)
        periods = self._days.get(q)
        if periods is None:
            d = local_day(at, tz).isoformat()
            periods = self._days[q] = (d, d[:7])
        rows = self.rows
        for period in periods:
            for lvl, channel, team, agent, category in dims:
                key = (metric, lvl, period, channel, team, agent, category)
                row = rows.get(key)
                if row is None:
                    row = rows[key] = [0, 0.0, None]
                row[0] += 1
                if seconds is not None:
                    row[1] += seconds
                    row[2] = histogram.add(row[2] or {}, seconds)


def rebuild(
    db: Db,
    ruleset: RuleSet,
    now: float,
    *,
    fallback: SlaPolicy | None = None,
    channel_types: dict[str, str] | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> Tally:
    service = ruleset.service
    tz = service.default_calendar.tz
    tally = Tally()
    now_dt = datetime.fromtimestamp(now, UTC)
    last = 0
    total = int(db.val("SELECT COUNT(*) FROM conversations"))
    while True:
        rows = db.all(
            "SELECT c.id, c.channel, c.status, c.category, c.priority, c.team, c.assignee,"
            " c.tags, c.subject, c.created_at, c.first_response_at, c.resolved_at, c.status_at,"
            " c.last_customer_at, c.last_reply_at, k.attributes"
            " FROM conversations c JOIN contacts k ON k.id = c.contact_id"
            " WHERE c.id > ? ORDER BY c.id LIMIT ?",
            (last, BATCH),
        )
        if not rows:
            break
        last = int(rows[-1]["id"])
        convs: dict[int, tuple[Levels, Any, float | None]] = {}
        for r in rows:
            conv = {k: r[k] for k in r.keys()}
            conv["tags"] = jsoncol.loads(conv["tags"], [])
            attrs = conv.pop("attributes")
            conv["contact"] = jsoncol.loads(attrs, {}) if attrs and attrs != "{}" else {}
            dims = levels(Dims.of(conv))
            team_cal = service.calendar_for(conv["team"])
            inp = conversation_input(conv, now_dt, team_cal, channel_types or {})
            ctx = ruleset.conversation_context(inp, conv["category"])
            policy = policy_for(ruleset, ctx, fallback)
            cal = service.calendar_for(conv["team"], policy)
            next_target = policy.target("next_response", conv["priority"]) if policy else None
            convs[int(conv["id"])] = (dims, cal, next_target)
            created = conv["created_at"]
            tally.add(tz, "created", created, dims)
            view = clocks(policy, cal, {**conv, "awaiting_since": None}) if policy else None
            first = conv["first_response_at"]
            if first is not None and first <= now:
                tally.add(tz, "first_response", first, dims, cal.between(created, first))
                t = view.target("first_response") if view else None
                if t is not None:
                    late = "breached" if first > t.due else "met"
                    tally.add(tz, f"sla_first_response_{late}", first, dims)
            if conv["status"] == "resolved" and conv["resolved_at"] is not None:
                done = conv["resolved_at"]
                tally.add(tz, "resolved", done, dims)
                tally.add(tz, "resolution", done, dims, cal.between(created, done))
                t = view.target("resolution") if view else None
                if t is not None:
                    late = "breached" if done > t.due else "met"
                    tally.add(tz, f"sla_resolution_{late}", done, dims)
        _next_responses(db, convs, tally, tz, rows[0]["id"], last, now)
        tally.conversations += len(rows)
        if progress is not None:
            progress("conversations", len(rows))
        if tally.conversations >= total and len(rows) < BATCH:
            break
    _surveys(db, tally, tz, now)
    # Replace every figure, and count live from now on.
    db.run("DELETE FROM report_daily")
    _insert(db, tally)
    db.run(
        "INSERT INTO channel_state (channel, key, value) VALUES ('service', 'reports_from', ?)"
        " ON CONFLICT (channel, key) DO UPDATE SET value = excluded.value",
        (repr(now),),
    )
    return tally


def _next_responses(
    db: Db,
    convs: dict[int, tuple[Levels, Any, float | None]],
    tally: Tally,
    tz: Any,
    first_id: int,
    last_id: int,
    now: float,
) -> None:
    """Each customer message nobody had answered, after the first response,
    to the reply that answered it (as ``awaiting_since`` counts it live)."""
    current = None
    replied = False
    waiting: float | None = None
    for m in db.all(
        "SELECT conversation_id, direction, created_at FROM messages"
        " WHERE conversation_id >= ? AND conversation_id <= ? AND kind = 'message'"
        " AND auto IS NULL ORDER BY conversation_id, id",
        (first_id, last_id),
    ):
        cid = int(m["conversation_id"])
        tally.messages += 1
        if cid != current:
            current, replied, waiting = cid, False, None
        at = float(m["created_at"])
        if m["direction"] == "in":
            if replied and waiting is None:
                waiting = at
            continue
        if waiting is not None and cid in convs and at <= now:
            dims, cal, target = convs[cid]
            tally.add(tz, "next_response", at, dims, cal.between(waiting, at))
            if target is not None:
                late = "breached" if at > cal.add(waiting, target) else "met"
                tally.add(tz, f"sla_next_response_{late}", at, dims)
        replied, waiting = True, None


def _surveys(db: Db, tally: Tally, tz: Any, now: float) -> None:
    last = 0
    while True:
        rows = db.all(
            "SELECT id, channel, team, agent, category, scale, sent_at, answered_at, rating,"
            " loyalty_score FROM surveys WHERE id > ? AND sent_at IS NOT NULL ORDER BY id LIMIT ?",
            (last, BATCH),
        )
        if not rows:
            return
        last = int(rows[-1]["id"])
        for s in rows:
            tally.surveys += 1
            dims = levels(Dims.of({k: s[k] for k in ("channel", "team", "agent", "category")}))
            tally.add(tz, "csat_sent", s["sent_at"], dims)
            at = s["answered_at"]
            if at is None or at > now:
                continue
            r = s["rating"]
            if r is not None:
                tally.add(tz, "csat_answered", at, dims)
                tally.add(tz, f"csat_r{r}_of_{s['scale']}", at, dims)
                if good_rating(int(r), int(s["scale"])):
                    tally.add(tz, "csat_good", at, dims)
            score = s["loyalty_score"]
            if score is not None:
                group = "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"
                for metric in (f"nps_s{score}", f"nps_{group}", "nps_answered"):
                    tally.add(tz, metric, at, dims)


def _insert(db: Db, tally: Tally) -> None:
    rows = [
        (*key, n, total, histogram.dumps(hist) if hist else None)
        for key, (n, total, hist) in tally.rows.items()
    ]
    for i in range(0, len(rows), 1000):
        part = rows[i : i + 1000]
        db.many(
            "INSERT INTO report_daily (metric, level, day, channel, team, agent, category, n,"
            f" total, hist) VALUES ({placeholders(10)})",
            part,
        )
