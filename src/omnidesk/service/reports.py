"""Reports for supervisors: what the daily figures (``store/reports.py``) say
about a period, as JSON panels the API returns, the page draws and the CSV
export writes out row for row.

Every report has ``summary`` (headline figures), ``series`` (per day, week or
month, for the charts) and ``table`` (the rows the CSV holds). Times are in
business hours of each conversation's calendar, as the SLA counts them.
Medians and p90s come from duration histograms (exact to within one bucket,
about 10%, interpolated inside it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

from ..store import histogram, reports
from ..store.base import Db

REPORTS = (
    "volume",
    "response_times",
    "sla",
    "backlog",
    "csat",
    "loyalty",
    "complaints",
    "agents",
    "contacts",
)
GROUPS = ("channel", "team", "agent", "category")
DURATIONS = ("first_response", "next_response", "resolution")
TARGETS = ("first_response", "next_response", "resolution")
AGE_EDGES = (3600.0, 4 * 3600.0, 86400.0, 3 * 86400.0, 7 * 86400.0)
AGE_LABELS = ("< 1 h", "1-4 h", "4-24 h", "1-3 days", "3-7 days", "> 7 days")


@dataclass(frozen=True, slots=True)
class Params:
    start: date
    end: date
    channel: str | None = None
    team: str | None = None
    agent: str | None = None
    category: str | None = None
    by: str | None = None  # a group: channel | team | agent | category
    interval: str = "auto"  # day | week | month | auto

    @property
    def query(self) -> reports.Query:
        return reports.Query(
            self.start, self.end, self.channel, self.team, self.agent, self.category
        )

    @property
    def grain(self) -> str:
        if self.interval in ("day", "week", "month"):
            return self.interval
        # Trends longer than four months go by month (read from the monthly rows).
        days = (self.end - self.start).days + 1
        return "day" if days <= 62 else "week" if days <= 120 else "month"

    def buckets(self) -> list[str]:
        """Every day / week (its Monday) / month of the period, in order."""
        out: list[str] = []
        d = self.start
        if self.grain == "week":
            d = d - timedelta(days=d.weekday())
        while d <= self.end:
            if self.grain == "month":
                out.append(d.isoformat()[:7])
                d = (d.replace(day=1) + timedelta(days=32)).replace(day=1)
            else:
                out.append(d.isoformat())
                d += timedelta(days=7 if self.grain == "week" else 1)
        return out


def _pct(part: float, whole: float) -> float | None:
    return None if not whole else round(100.0 * part / whole, 1)


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 3600, 2)


def _series(p: Params, counts: Mapping[tuple[str, str, str], int], metric: str) -> list[float]:
    by_bucket: dict[str, float] = {}
    for (m, b, _g), n in counts.items():
        if m == metric:
            by_bucket[b] = by_bucket.get(b, 0) + n
    return [by_bucket.get(b, 0) for b in p.buckets()]


def volume(db: Db, p: Params) -> dict[str, Any]:
    by = p.by or "channel"
    counts = reports.series(db, p.query, ["created", "resolved"], p.grain, by)
    groups = sorted({g for (m, _b, g) in counts if m == "created"})
    series = {"created": _series(p, counts, "created"), "resolved": _series(p, counts, "resolved")}
    per_group = {
        g: [
            sum(n for (m, b2, g2), n in counts.items() if m == "created" and b2 == b and g2 == g)
            for b in p.buckets()
        ]
        for g in groups
    }
    table = []
    for i, b in enumerate(p.buckets()):
        for g in groups:
            created = per_group[g][i]
            resolved = sum(
                n for (m, b2, g2), n in counts.items() if m == "resolved" and b2 == b and g2 == g
            )
            if created or resolved:
                table.append(
                    {"period": b, by: g or "(none)", "created": created, "resolved": resolved}
                )
    return {
        "summary": {"created": sum(series["created"]), "resolved": sum(series["resolved"])},
        "series": {"labels": p.buckets(), **series, "by": by, "groups": per_group},
        "table": table,
    }


def response_times(db: Db, p: Params) -> dict[str, Any]:
    by = p.by or "team"
    summary: dict[str, Any] = {}
    table: list[dict[str, Any]] = []
    trend: dict[str, list[float | None]] = {}
    for metric in DURATIONS:
        whole = reports.hists(db, p.query, metric).get("", {})
        summary[metric] = {
            "count": histogram.total(whole),
            "median_hours": _hours(histogram.percentile(whole, 0.5)),
            "p90_hours": _hours(histogram.percentile(whole, 0.9)),
        }
        per = reports.hist_series(db, p.query, metric, p.grain)
        trend[metric] = [_hours(histogram.percentile(per.get(b, {}), 0.5)) for b in p.buckets()]
        for g, h in sorted(reports.hists(db, p.query, metric, by).items()):
            table.append(
                {
                    by: g or "(none)",
                    "measure": metric,
                    "count": histogram.total(h),
                    "median_hours": _hours(histogram.percentile(h, 0.5)),
                    "p90_hours": _hours(histogram.percentile(h, 0.9)),
                }
            )
    return {"summary": summary, "series": {"labels": p.buckets(), **trend}, "table": table}


def sla(db: Db, p: Params) -> dict[str, Any]:
    by = p.by or "team"
    metrics = [f"sla_{t}_{x}" for t in TARGETS for x in ("met", "breached")]
    tot = reports.totals(db, p.query, metrics, by)
    all_tot = reports.totals(db, p.query, metrics)
    summary: dict[str, Any] = {}
    for t in TARGETS:
        met = all_tot.get((f"sla_{t}_met", ""), (0, 0))[0]
        breached = all_tot.get((f"sla_{t}_breached", ""), (0, 0))[0]
        summary[t] = {"met": met, "breached": breached, "attained_pct": _pct(met, met + breached)}
    groups = sorted({g for (_m, g) in tot})
    table = []
    for g in groups:
        for t in TARGETS:
            met = tot.get((f"sla_{t}_met", g), (0, 0))[0]
            breached = tot.get((f"sla_{t}_breached", g), (0, 0))[0]
            if met or breached:
                table.append(
                    {
                        by: g or "(none)",
                        "target": t,
                        "met": met,
                        "breached": breached,
                        "attained_pct": _pct(met, met + breached),
                    }
                )
    counts = reports.series(db, p.query, metrics, p.grain)
    breaches = [
        sum(v)
        for v in zip(*(_series(p, counts, f"sla_{t}_breached") for t in TARGETS), strict=True)
    ]
    met_all = [
        sum(v) for v in zip(*(_series(p, counts, f"sla_{t}_met") for t in TARGETS), strict=True)
    ]
    attained = [_pct(m, m + b) for m, b in zip(met_all, breaches, strict=True)]
    return {
        "summary": summary,
        "series": {"labels": p.buckets(), "breached": breaches, "attained_pct": attained},
        "table": table,
    }


def backlog(db: Db, p: Params, now: float) -> dict[str, Any]:
    by = p.by or "team"
    counts, oldest = reports.backlog(
        db,
        now,
        AGE_EDGES,
        channel=p.channel,
        team=p.team,
        agent=p.agent,
        category=p.category,
        by=by,
    )
    per_age = [sum(n for (b, _g), n in counts.items() if b == i) for i in range(len(AGE_LABELS))]
    groups = sorted({g for (_b, g) in counts})
    table = [
        {
            by: g or "(none)",
            **{AGE_LABELS[i]: counts.get((i, g), 0) for i in range(len(AGE_LABELS))},
            "total": sum(counts.get((i, g), 0) for i in range(len(AGE_LABELS))),
        }
        for g in groups
    ]
    return {
        "summary": {
            "open": sum(per_age),
            "oldest_age_hours": None if oldest is None else round((now - oldest) / 3600, 1),
        },
        "series": {"labels": list(AGE_LABELS), "open": per_age},
        "table": table,
    }


def _csat_share(tot: Mapping[tuple[str, str], tuple[int, float]], g: str) -> dict[str, Any]:
    sent = tot.get(("csat_sent", g), (0, 0))[0]
    answered = tot.get(("csat_answered", g), (0, 0))[0]
    good = tot.get(("csat_good", g), (0, 0))[0]
    return {
        "sent": sent,
        "answered": answered,
        "response_rate_pct": _pct(answered, sent),
        "good": good,
        "csat_pct": _pct(good, answered),
    }


def csat(db: Db, p: Params) -> dict[str, Any]:
    by = p.by or "agent"
    dist_metrics = [f"csat_r{r}_of_{s}" for s in (2, 3, 5) for r in range(1, s + 1)]
    metrics = ["csat_sent", "csat_answered", "csat_good", *dist_metrics]
    tot = reports.totals(db, p.query, metrics)
    summary = _csat_share(tot, "")
    summary["distribution"] = {
        m.removeprefix("csat_"): tot[(m, "")][0] for m in dist_metrics if tot.get((m, ""), (0,))[0]
    }
    by_tot = reports.totals(db, p.query, ["csat_sent", "csat_answered", "csat_good"], by)
    table = [{by: g or "(none)", **_csat_share(by_tot, g)} for g in sorted({g for _m, g in by_tot})]
    counts = reports.series(db, p.query, ["csat_answered", "csat_good"], p.grain)
    answered = _series(p, counts, "csat_answered")
    good = _series(p, counts, "csat_good")
    return {
        "summary": summary,
        "series": {
            "labels": p.buckets(),
            "csat_pct": [_pct(g, a) for g, a in zip(good, answered, strict=True)],
            "answered": answered,
        },
        "table": table,
    }


def _nps(tot: Mapping[tuple[str, str], tuple[int, float]], g: str) -> dict[str, Any]:
    n = tot.get(("nps_answered", g), (0, 0))[0]
    pro = tot.get(("nps_promoter", g), (0, 0))[0]
    det = tot.get(("nps_detractor", g), (0, 0))[0]
    return {
        "answered": n,
        "promoters": pro,
        "passives": tot.get(("nps_passive", g), (0, 0))[0],
        "detractors": det,
        "nps": None if not n else round(100.0 * (pro - det) / n, 1),
    }


def loyalty(db: Db, p: Params) -> dict[str, Any]:
    by = p.by or "team"
    groups_m = ["nps_answered", "nps_promoter", "nps_passive", "nps_detractor"]
    scores = [f"nps_s{i}" for i in range(11)]
    tot = reports.totals(db, p.query, [*groups_m, *scores])
    summary = _nps(tot, "")
    summary["distribution"] = {str(i): tot.get((f"nps_s{i}", ""), (0, 0))[0] for i in range(11)}
    by_tot = reports.totals(db, p.query, groups_m, by)
    table = [{by: g or "(none)", **_nps(by_tot, g)} for g in sorted({g for _m, g in by_tot})]
    counts = reports.series(db, p.query, groups_m, p.grain)
    n = _series(p, counts, "nps_answered")
    pro = _series(p, counts, "nps_promoter")
    det = _series(p, counts, "nps_detractor")
    nps = [
        None if not a else round(100.0 * (x - y) / a, 1)
        for a, x, y in zip(n, pro, det, strict=True)
    ]
    return {
        "summary": summary,
        "series": {"labels": p.buckets(), "nps": nps, "answered": n},
        "table": table,
    }


def complaints(db: Db, p: Params) -> dict[str, Any]:
    """Feedback handling: complaints received, resolved, and how fast."""
    cp = replace(p, category="complaint")
    vol = volume(db, replace(cp, by=p.by or "team"))
    times = reports.hists(db, cp.query, "resolution").get("", {})
    first = reports.hists(db, cp.query, "first_response").get("", {})
    met = reports.totals(db, cp.query, ["sla_resolution_met", "sla_resolution_breached"])
    m = met.get(("sla_resolution_met", ""), (0, 0))[0]
    b = met.get(("sla_resolution_breached", ""), (0, 0))[0]
    summary = {
        "received": vol["summary"]["created"],
        "resolved": vol["summary"]["resolved"],
        "resolved_pct": _pct(vol["summary"]["resolved"], vol["summary"]["created"]),
        "first_response_median_hours": _hours(histogram.percentile(first, 0.5)),
        "resolution_median_hours": _hours(histogram.percentile(times, 0.5)),
        "resolution_p90_hours": _hours(histogram.percentile(times, 0.9)),
        "resolved_in_sla_pct": _pct(m, m + b),
    }
    per = reports.hist_series(db, cp.query, "resolution", p.grain)
    return {
        "summary": summary,
        "series": {
            "labels": p.buckets(),
            "received": vol["series"]["created"],
            "resolved": vol["series"]["resolved"],
            "resolution_median_hours": [
                _hours(histogram.percentile(per.get(x, {}), 0.5)) for x in p.buckets()
            ],
        },
        "table": vol["table"],
    }


def agents(db: Db, p: Params) -> dict[str, Any]:
    """One row per agent: resolved, response times, SLA attained, CSAT."""
    g = "agent"
    counts = reports.totals(
        db,
        p.query,
        [
            "resolved",
            "csat_answered",
            "csat_good",
            "sla_first_response_met",
            "sla_first_response_breached",
        ],
        g,
    )
    first = reports.hists(db, p.query, "first_response", g)
    res = reports.hists(db, p.query, "resolution", g)
    names = sorted({x for _m, x in counts} | set(first) | set(res))
    table = []
    for name in names:
        met = counts.get(("sla_first_response_met", name), (0, 0))[0]
        late = counts.get(("sla_first_response_breached", name), (0, 0))[0]
        answered = counts.get(("csat_answered", name), (0, 0))[0]
        table.append(
            {
                "agent": name or "(unassigned)",
                "resolved": counts.get(("resolved", name), (0, 0))[0],
                "first_response_median_hours": _hours(
                    histogram.percentile(first.get(name, {}), 0.5)
                ),
                "resolution_median_hours": _hours(histogram.percentile(res.get(name, {}), 0.5)),
                "first_response_in_sla_pct": _pct(met, met + late),
                "csat_pct": _pct(counts.get(("csat_good", name), (0, 0))[0], answered),
                "ratings": answered,
            }
        )
    return {"summary": {"agents": len(table)}, "series": {}, "table": table}


def contacts(db: Db, p: Params) -> dict[str, Any]:
    """The contacts' satisfaction figures now (service/satisfaction.py): how
    many are at risk, and those of them with a conversation still open."""
    r = db.one("SELECT COUNT(*) AS n, SUM(at_risk) AS risk, AVG(score) AS mean FROM contact_scores")
    bands = [0] * 5
    for row in db.all(
        "SELECT CASE WHEN score < 20 THEN 0 WHEN score < 40 THEN 1 WHEN score < 60 THEN 2"
        " WHEN score < 80 THEN 3 ELSE 4 END AS b, COUNT(*) AS n FROM contact_scores GROUP BY 1"
    ):
        bands[min(int(row["b"]), 4)] += int(row["n"])
    table = [
        {
            "contact_id": int(x["contact_id"]),
            "name": x["name"] or "",
            "score": round(float(x["score"]), 1),
            "open_conversations": int(x["open"]),
        }
        for x in db.all(
            "SELECT s.contact_id, k.name, s.score, (SELECT COUNT(*) FROM conversations c"
            "  WHERE c.contact_id = s.contact_id AND c.status IN ('open', 'pending', 'snoozed'))"
            " AS open FROM contact_scores s JOIN contacts k ON k.id = s.contact_id"
            " WHERE s.at_risk = 1 ORDER BY s.score LIMIT 100"
        )
    ]
    n = int(r["n"] or 0) if r else 0
    return {
        "summary": {
            "contacts_scored": n,
            "at_risk": int(r["risk"] or 0) if r else 0,
            "mean_score": None if not n or r is None else round(float(r["mean"]), 1),
        },
        "series": {"labels": ["0-20", "20-40", "40-60", "60-80", "80-100"], "contacts": bands},
        "table": table,
    }


def build(db: Db, name: str, p: Params, now: float) -> dict[str, Any]:
    fn: Callable[..., dict[str, Any]] = {
        "volume": volume,
        "response_times": response_times,
        "sla": sla,
        "csat": csat,
        "loyalty": loyalty,
        "complaints": complaints,
        "agents": agents,
        "contacts": contacts,
    }.get(name, volume)
    out = backlog(db, p, now) if name == "backlog" else fn(db, p)
    return {
        "report": name,
        "period": {"from": p.start.isoformat(), "to": p.end.isoformat(), "interval": p.grain},
        "filters": {
            k: getattr(p, k)
            for k in ("channel", "team", "agent", "category")
            if getattr(p, k) is not None
        },
        **out,
    }


def csv_rows(report: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The report's table as CSV columns and rows (the same figures)."""
    table: Sequence[Mapping[str, Any]] = report.get("table") or []
    cols: list[str] = []
    for row in table:
        for k in row:
            if k not in cols:
                cols.append(k)
    return cols, [["" if r.get(c) is None else r.get(c) for c in cols] for r in table]
