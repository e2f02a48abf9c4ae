"""Reports: the API (``/api/v1/reports``, JSON or CSV) and the page
(``/reports``) for supervisors and admins.

The page is rendered on the server, charts included (``service/charts.py``:
SVG, no script), from the same report functions as the API, so what the page
shows, the JSON says and the CSV holds are the same figures.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response

from ..model import now_ts
from ..service import charts
from ..service.reports import GROUPS, REPORTS, Params, build, csv_rows
from .auth import Principal, require_supervisor
from .deps import get_services
from .ui import _principal, page, templates

if TYPE_CHECKING:
    from .services import WebServices

router = APIRouter(prefix="/api/v1", tags=["reports"])
pages = APIRouter(include_in_schema=False)

MAX_DAYS = 1100
ReportName = Literal[
    "volume",
    "response_times",
    "sla",
    "backlog",
    "csat",
    "loyalty",
    "complaints",
    "agents",
    "contacts",
]


def _today(services: WebServices) -> date:
    tz = services.rules.current.service.default_calendar.tz
    return datetime.now(UTC).astimezone(tz).date()


def params(
    services: WebServices,
    start: str | None,
    end: str | None,
    *,
    channel: str | None = None,
    team: str | None = None,
    agent: str | None = None,
    category: str | None = None,
    by: str | None = None,
    interval: str = "auto",
) -> Params:
    """Report parameters from query strings; 422 naming what is wrong."""
    try:
        to = date.fromisoformat(end) if end else _today(services)
        frm = date.fromisoformat(start) if start else to - timedelta(days=29)
    except ValueError:
        raise HTTPException(422, "from and to are dates like 2026-03-01") from None
    if frm > to:
        raise HTTPException(422, "from is after to")
    if (to - frm).days >= MAX_DAYS:
        raise HTTPException(422, f"a report covers at most {MAX_DAYS} days")
    if by is not None and by not in GROUPS:
        raise HTTPException(422, f"by must be one of {', '.join(GROUPS)}")
    if interval not in ("auto", "day", "week", "month"):
        raise HTTPException(422, "interval must be auto, day, week or month")
    blank = {None, ""}
    return Params(
        frm,
        to,
        None if channel in blank else channel,
        None if team in blank else team,
        None if agent in blank else agent,
        None if category in blank else category,
        by or None,
        interval,
    )


async def _report(services: WebServices, name: str, p: Params) -> dict[str, Any]:
    return await services.store.read(build, name, p, now_ts())


def csv_response(report: dict[str, Any]) -> Response:
    cols, rows = csv_rows(report)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(cols)
    w.writerows(rows)
    name = f"omnidesk-{report['report']}-{report['period']['from']}-{report['period']['to']}.csv"
    return Response(
        buf.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/reports/{name}")
async def report(
    name: ReportName,
    start: str | None = Query(None, alias="from", description="first day, YYYY-MM-DD"),
    end: str | None = Query(None, alias="to", description="last day, YYYY-MM-DD (default today)"),
    channel: str | None = None,
    team: str | None = None,
    agent: str | None = None,
    category: str | None = None,
    by: str | None = Query(None, description="group rows by channel, team, agent or category"),
    interval: str = Query("auto", description="day, week, month or auto"),
    format: Literal["json", "csv"] = "json",
    p: Principal = Depends(require_supervisor),
    services: WebServices = Depends(get_services),
) -> Any:
    """One report over a period (default: the last 30 days), filtered by
    channel, team, agent and category; ``format=csv`` for its table."""
    prm = params(
        services,
        start,
        end,
        channel=channel,
        team=team,
        agent=agent,
        category=category,
        by=by,
        interval=interval,
    )
    out = await _report(services, name, prm)
    return csv_response(out) if format == "csv" else out


@router.get("/reports")
async def overview(
    start: str | None = Query(None, alias="from"),
    end: str | None = Query(None, alias="to"),
    channel: str | None = None,
    team: str | None = None,
    agent: str | None = None,
    category: str | None = None,
    p: Principal = Depends(require_supervisor),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """Every report at once, as the reports page shows them."""
    prm = params(services, start, end, channel=channel, team=team, agent=agent, category=category)
    return {name: await _report(services, name, prm) for name in REPORTS}


# -- the page -------------------------------------------------------------------------

TITLES = {
    "volume": "Conversations",
    "response_times": "Response and resolution times (business hours)",
    "sla": "SLA attainment",
    "backlog": "Backlog now, by age",
    "csat": "Satisfaction (CSAT)",
    "loyalty": "Loyalty (NPS)",
    "complaints": "Complaints: resolved, and how fast",
    "agents": "Agents",
    "contacts": "Contacts' satisfaction figure",
}


def _charts(name: str, r: dict[str, Any]) -> list[str]:
    s = r["series"]
    labels = s.get("labels", [])
    if name == "volume":
        return [
            charts.bar_chart(
                "Conversations created",
                labels,
                [(g or "(none)", v) for g, v in s["groups"].items()],
            ),
            charts.line_chart(
                "Created and resolved",
                labels,
                [("created", s["created"]), ("resolved", s["resolved"])],
            ),
        ]
    if name == "response_times":
        return [
            charts.line_chart(
                "Median hours",
                labels,
                [
                    (k.replace("_", " "), s[k])
                    for k in ("first_response", "next_response", "resolution")
                ],
            )
        ]
    if name == "sla":
        return [
            charts.line_chart("Targets met (%)", labels, [("attained %", s["attained_pct"])]),
            charts.bar_chart("Breaches", labels, [("breaches", s["breached"])]),
        ]
    if name == "backlog":
        return [charts.bar_chart("Open conversations by age", labels, [("open", s["open"])])]
    if name == "csat":
        return [
            charts.line_chart("Good ratings (%)", labels, [("CSAT %", s["csat_pct"])]),
            charts.bar_chart("Ratings", labels, [("answered", s["answered"])]),
        ]
    if name == "loyalty":
        return [charts.line_chart("Net promoter score", labels, [("NPS", s["nps"])])]
    if name == "contacts":
        return [
            charts.bar_chart(
                "Contacts by satisfaction figure", labels, [("contacts", s["contacts"])]
            )
        ]
    if name == "complaints":
        return [
            charts.bar_chart(
                "Complaints", labels, [("received", s["received"]), ("resolved", s["resolved"])]
            ),
            charts.line_chart(
                "Median hours to resolve", labels, [("median", s["resolution_median_hours"])]
            ),
        ]
    return []


def _headline(name: str, r: dict[str, Any]) -> list[tuple[str, Any]]:
    s = r["summary"]
    if name == "response_times":
        return [
            (
                f"{k.replace('_', ' ')} median / p90 h",
                f"{_show(v['median_hours'])} / {_show(v['p90_hours'])}",
            )
            for k, v in s.items()
        ]
    if name == "sla":
        return [
            (f"{k.replace('_', ' ')} met", f"{_show(v['attained_pct'])} %") for k, v in s.items()
        ]
    return [(k.replace("_", " "), _show(v)) for k, v in s.items() if not isinstance(v, dict)]


def _show(v: Any) -> str:
    return "–" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


@pages.get("/reports")
async def reports_page(request: Request, services: WebServices = Depends(get_services)) -> Response:
    p = await _principal(request, services)
    if p is None:
        return RedirectResponse("/login?next=/reports", status_code=303)
    if not p.at_least("supervisor"):
        raise HTTPException(403, "supervisors and admins only")
    q = request.query_params
    prm = params(
        services,
        q.get("from"),
        q.get("to"),
        channel=q.get("channel"),
        team=q.get("team"),
        agent=q.get("agent"),
        category=q.get("category"),
    )
    filters = {
        "from": prm.start.isoformat(),
        "to": prm.end.isoformat(),
        "channel": prm.channel or "",
        "team": prm.team or "",
        "agent": prm.agent or "",
        "category": prm.category or "",
    }
    query = urlencode({k: v for k, v in filters.items() if v})
    panels = []
    for name in REPORTS:
        r = await _report(services, name, prm)
        cols, rows = csv_rows(r)
        panels.append(
            {
                "name": name,
                "title": TITLES[name],
                "headline": _headline(name, r),
                "charts": _charts(name, r),
                "cols": cols,
                "rows": [[_show(v) if v != "" else "" for v in row] for row in rows[:50]],
                "more": max(0, len(rows) - 50),
                "csv": f"/api/v1/reports/{name}?{query}&format=csv".replace("?&", "?"),
            }
        )
    html = templates.get_template("reports.html").render(
        me={"name": p.name, "role": p.role},
        filters=filters,
        channels=sorted(services.adapters),
        interval=prm.grain,
        panels=panels,
    )
    return page(html)
