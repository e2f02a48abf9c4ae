"""Report figures kept by day and by month (``report_daily``).

Every fact is added to its day ("2026-03-04") and to its month ("2026-03"),
and at each of three levels: with its channel, team, agent and category;
with one of them alone (the others ``*``); and as a total (all ``*``). A
report reads the coarsest level that answers it (the total when nothing is
filtered or grouped, a single dimension when one is), whole months from the
monthly rows and the days at either end from the daily rows: a year costs a
few hundred rows however many conversations it covers. Durations are kept as
histograms (``store/histogram.py``) so medians and p90s add up across rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from . import histogram
from .base import Db, placeholders

DIMS = ("channel", "team", "agent", "category")
ANY = "*"  # a dimension summed over
TOTAL, ONE, FINE = 0, 1, 4  # levels: every dimension summed over, all but one, none


@dataclass(frozen=True, slots=True)
class Dims:
    channel: str
    team: str
    agent: str
    category: str

    def levels(self) -> list[tuple[int, Dims]]:
        """The rows a fact goes to, with their level: itself (4), each
        dimension alone (1), the total (0)."""
        out = [(FINE, self)]
        for d in DIMS:
            out.append((ONE, Dims(**{k: getattr(self, k) if k == d else ANY for k in DIMS})))
        out.append((TOTAL, Dims(ANY, ANY, ANY, ANY)))
        return out

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Dims:
        return cls(
            row.get("channel") or "",
            row.get("team") or "",
            row.get("agent") or row.get("assignee") or "",
            row.get("category") or "",
        )


def local_day(ts: float, tz: tzinfo) -> date:
    return datetime.fromtimestamp(ts, UTC).astimezone(tz).date()


def add_fact(
    db: Db,
    tz: tzinfo,
    metric: str,
    at: float,
    dims: Dims,
    *,
    seconds: float | None = None,
    delta: int = 1,
) -> None:
    """Count one fact (``delta`` -1 takes one back: a changed survey answer)."""
    facts = Facts(tz)
    facts.add(metric, at, dims, seconds=seconds, delta=delta)
    facts.write(db)


class Facts:
    """Facts gathered (a scheduler pass's) and written together: the rows
    they share (the day's and month's totals, a channel's, a team's) are
    written once with the sum, not once per fact."""

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz
        self.counts: dict[tuple[Any, ...], int] = {}
        self.durations: dict[tuple[Any, ...], list[tuple[float, int]]] = {}

    def __len__(self) -> int:
        return len(self.counts) + len(self.durations)

    def add(
        self,
        metric: str,
        at: float,
        dims: Dims,
        *,
        seconds: float | None = None,
        delta: int = 1,
    ) -> None:
        d = local_day(at, self.tz).isoformat()
        for period in (d, d[:7]):
            for lvl, level in dims.levels():
                key = (metric, lvl, period, level.channel, level.team, level.agent, level.category)
                if seconds is None:
                    self.counts[key] = self.counts.get(key, 0) + delta
                else:
                    self.durations.setdefault(key, []).append((seconds, delta))

    def write(self, db: Db) -> None:
        # Keys in one order, so two writers on PostgreSQL lock rows alike.
        for key in sorted(self.counts):
            n = self.counts[key]
            if n:
                db.run(
                    "INSERT INTO report_daily (metric, level, day, channel, team, agent, category,"
                    " n, total) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0) ON CONFLICT (metric, level,"
                    " day, channel, team, agent, category)"
                    " DO UPDATE SET n = report_daily.n + excluded.n",
                    (*key, n),
                )
        lock = " FOR UPDATE" if db.dialect == "postgres" else ""
        where = (
            "metric = ? AND level = ? AND day = ? AND channel = ? AND team = ? AND agent = ?"
            " AND category = ?"
        )
        for key in sorted(self.durations):
            # A histogram is read, changed and written back: on PostgreSQL the
            # row is locked first so concurrent writers add up.
            db.run(
                "INSERT INTO report_daily (metric, level, day, channel, team, agent, category, n,"
                " total, hist) VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0, '') ON CONFLICT (metric, level,"
                " day, channel, team, agent, category) DO NOTHING",
                key,
            )
            old = db.val(f"SELECT hist FROM report_daily WHERE {where}{lock}", key)
            h = histogram.loads(old)
            n = 0
            total = 0.0
            for seconds, delta in self.durations[key]:
                h = histogram.add(h, seconds, delta)
                n += delta
                total += seconds * delta
            db.run(
                f"UPDATE report_daily SET n = n + ?, total = total + ?, hist = ? WHERE {where}",
                (n, total, histogram.dumps(h), *key),
            )
        self.counts.clear()
        self.durations.clear()


# -- reading ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Query:
    start: date  # first day, inclusive
    end: date  # last day, inclusive
    channel: str | None = None
    team: str | None = None
    agent: str | None = None
    category: str | None = None

    def where(self, by: str | None = None) -> tuple[str, list[Any]]:
        """The rows of the coarsest level that answers a query with these
        filters, grouped ``by`` a dimension (or not)."""
        fixed = {d: getattr(self, d) for d in DIMS if getattr(self, d) is not None}
        used = set(fixed) | ({by} if by in DIMS else set())
        level = TOTAL if not used else ONE if len(used) == 1 else FINE
        clauses: list[str] = ["level = ?"]
        params: list[Any] = [level]
        for d in DIMS:
            if d in fixed:
                clauses.append(f"{d} = ?")
                params.append("" if fixed[d] == "none" else fixed[d])
            elif d in used or len(used) > 1:
                clauses.append(f"{d} <> ?")
                params.append(ANY)
            else:
                clauses.append(f"{d} = ?")
                params.append(ANY)
        return ("".join(" AND " + c for c in clauses)), params


def periods(start: date, end: date) -> tuple[list[str], list[tuple[str, str]]]:
    """Whole months inside [start, end] (read from monthly rows) and the day
    ranges left at either end (read from daily rows)."""
    months: list[str] = []
    days: list[tuple[str, str]] = []
    d = start
    while d <= end:
        month_start = d.replace(day=1)
        next_month = (month_start + timedelta(days=32)).replace(day=1)
        month_end = next_month - timedelta(days=1)
        if d == month_start and month_end <= end:
            months.append(d.isoformat()[:7])
        else:
            days.append((d.isoformat(), min(month_end, end).isoformat()))
        d = next_month
    return months, days


def _months(q: Query) -> list[str]:
    """Every month the period touches ("YYYY-MM")."""
    months = []
    d = q.start.replace(day=1)
    while d <= q.end:
        months.append(d.isoformat()[:7])
        d = (d + timedelta(days=32)).replace(day=1)
    return months


def _source(q: Query) -> tuple[str, list[Any]]:
    """The WHERE part selecting exactly the rows of q's period."""
    months, days = periods(q.start, q.end)
    parts, params = [], []
    if months:
        parts.append(f"day IN ({placeholders(len(months))})")
        params += months
    for a, b in days:
        parts.append("(day >= ? AND day <= ? AND length(day) = 10)")
        params += [a, b]
    if not parts:
        return "1 = 0", []
    return "(" + " OR ".join(parts) + ")", params


def _also(by: str | None) -> str:
    """A GROUP BY's extra column (PostgreSQL refuses a constant there)."""
    return f", {by}" if by in (*DIMS, "2") else ""


def totals(
    db: Db, q: Query, metrics: Sequence[str], by: str | None = None
) -> dict[tuple[str, str], tuple[int, float]]:
    """(metric, group) -> (count, total seconds) over the period; group is
    the value of ``by`` (a dimension) or ""."""
    src, params = _source(q)
    extra, extra_params = q.where(by)
    group = by if by in DIMS else "''"
    rows = db.all(
        f"SELECT metric, {group} AS g, SUM(n) AS n, SUM(total) AS total FROM report_daily"
        f" WHERE metric IN ({placeholders(len(metrics))}) AND {src}{extra}"
        f" GROUP BY metric{_also(by)}",
        (*metrics, *params, *extra_params),
    )
    return {(r["metric"], r["g"] or ""): (int(r["n"] or 0), float(r["total"] or 0)) for r in rows}


def hists(db: Db, q: Query, metric: str, by: str | None = None) -> dict[str, histogram.Hist]:
    """group -> merged duration histogram of ``metric`` over the period."""
    src, params = _source(q)
    extra, extra_params = q.where(by)
    group = by if by in DIMS else "''"
    out: dict[str, histogram.Hist] = {}
    for r in db.all(
        f"SELECT {group} AS g, hist FROM report_daily WHERE metric = ? AND {src}{extra}"
        " AND hist IS NOT NULL AND hist <> ''",
        (metric, *params, *extra_params),
    ):
        histogram.merge(out.setdefault(r["g"] or "", {}), histogram.loads(r["hist"]))
    return out


def series(
    db: Db, q: Query, metrics: Sequence[str], grain: str, by: str | None = None
) -> dict[tuple[str, str, str], int]:
    """(metric, bucket, group) -> count, per day ("day"), week ("week", the
    Monday) or month ("month")."""
    extra, extra_params = q.where(by)
    group = by if by in DIMS else "''"
    if grain == "month":
        months = _months(q)
        rows = db.all(
            f"SELECT metric, day AS b, {group} AS g, SUM(n) AS n FROM report_daily"
            f" WHERE metric IN ({placeholders(len(metrics))})"
            f" AND day IN ({placeholders(len(months))}){extra} GROUP BY metric, day{_also(by)}",
            (*metrics, *months, *extra_params),
        )
        return {(r["metric"], r["b"], r["g"] or ""): int(r["n"] or 0) for r in rows}
    rows = db.all(
        f"SELECT metric, day AS b, {group} AS g, SUM(n) AS n FROM report_daily"
        f" WHERE metric IN ({placeholders(len(metrics))}) AND day >= ? AND day <= ?"
        f" AND length(day) = 10{extra} GROUP BY metric, day{_also(by)}",
        (*metrics, q.start.isoformat(), q.end.isoformat(), *extra_params),
    )
    out: dict[tuple[str, str, str], int] = {}
    for r in rows:
        b = r["b"]
        if grain == "week":
            d = date.fromisoformat(b)
            b = (d - timedelta(days=d.weekday())).isoformat()
        k = (r["metric"], b, r["g"] or "")
        out[k] = out.get(k, 0) + int(r["n"] or 0)
    return out


def hist_series(db: Db, q: Query, metric: str, grain: str) -> dict[str, histogram.Hist]:
    """bucket -> merged histogram (for a median per day/week/month)."""
    extra, extra_params = q.where()
    if grain == "month":
        months = _months(q)
        sql = f"day IN ({placeholders(len(months))})"
        params: list[Any] = list(months)
    else:
        sql = "day >= ? AND day <= ? AND length(day) = 10"
        params = [q.start.isoformat(), q.end.isoformat()]
    out: dict[str, histogram.Hist] = {}
    for r in db.all(
        f"SELECT day, hist FROM report_daily WHERE metric = ? AND {sql}{extra}"
        " AND hist IS NOT NULL AND hist <> ''",
        (metric, *params, *extra_params),
    ):
        b = r["day"]
        if grain == "week":
            d = date.fromisoformat(b)
            b = (d - timedelta(days=d.weekday())).isoformat()
        histogram.merge(out.setdefault(b, {}), histogram.loads(r["hist"]))
    return out


def backlog(
    db: Db,
    now: float,
    edges: Sequence[float],
    *,
    channel: str | None = None,
    team: str | None = None,
    agent: str | None = None,
    category: str | None = None,
    by: str | None = None,
) -> tuple[dict[tuple[int, str], int], float | None]:
    """Conversations not resolved now, by age bucket (index into ``edges``,
    seconds) and group, and when the oldest of them opened. One pass over
    the ``conversations_backlog`` index (status, team, created_at)."""
    clauses, params = ["status IN ('open', 'pending', 'snoozed')"], []
    for col, v in (
        ("channel", channel),
        ("team", team),
        ("assignee", agent),
        ("category", category),
    ):
        if v is not None:
            if v == "none":
                clauses.append(f"{col} IS NULL")
            else:
                clauses.append(f"{col} = ?")
                params.append(v)
    col = {"agent": "assignee"}.get(by or "", by) if by in DIMS else "''"
    cases = " ".join(f"WHEN created_at > ? THEN {i}" for i in range(len(edges)))
    age_params = [now - e for e in edges]
    rows = db.all(
        f"SELECT CASE {cases} ELSE {len(edges)} END AS b, {col} AS g, COUNT(*) AS n,"
        f" MIN(created_at) AS oldest FROM conversations WHERE {' AND '.join(clauses)}"
        f" GROUP BY 1{_also('2' if by else None)}",
        (*age_params, *params),
    )
    oldest = min((float(r["oldest"]) for r in rows), default=None)
    return {(int(r["b"]), r["g"] or ""): int(r["n"]) for r in rows}, oldest
