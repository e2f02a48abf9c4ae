"""A satisfaction and loyalty figure per contact, 0-100.

Satisfaction depends on service quality, how fully the need was met and how
fast feedback was handled; loyalty on satisfaction, purchase frequency and
preference. The figure is a weighted mean of what is known about a contact:

=================  ======  ======================================================
component          weight  value (0-100)
=================  ======  ======================================================
ratings            0.35    CSAT answers scaled to 0-100 ((r-1)/(scale-1)), newer
                           answers weigh more (half-life 180 days)
loyalty            0.25    the latest loyalty answer x 10 (0-10 -> 0-100)
complaints         0.20    100, less 25 per complaint in the last 365 days, less
                           25 more while one is still open (at least 0)
resolution speed   0.10    median hours to resolve the last 10 conversations:
                           100 at 4 h or less, 0 at 240 h or more (log scale)
purchases          0.10    purchase frequency: orders in the last 365 days
                           (order events, cancelled and refunded ones left
                           out; store/customers.py), or else the contact's
                           ``orders`` (or ``purchases``) attribute, orders in
                           a year: 12 or more -> 100
=================  ======  ======================================================

Only the components with data take part; their weights are scaled to add up
to 1. A contact with no rating, loyalty answer, complaint, resolved
conversation or purchase data has no figure. **At risk**: a figure below 40,
the latest rating bad (not in the top of the scale), or a loyalty answer of
6 or less together with a complaint in the last 90 days.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..rules.service import good_rating
from ..store import jsoncol
from ..store.base import Db
from ..store.customers import purchase_summary

WEIGHTS = {
    "ratings": 0.35,
    "loyalty": 0.25,
    "complaints": 0.20,
    "resolution": 0.10,
    "purchases": 0.10,
}
HALF_LIFE = 180 * 86400
YEAR = 365 * 86400
AT_RISK_BELOW = 40.0
PURCHASE_KEYS = ("orders", "purchases")


@dataclass(frozen=True, slots=True)
class Figure:
    score: float
    satisfaction: float | None
    loyalty: float | None
    at_risk: bool
    inputs: dict[str, Any]


def figure(
    *,
    ratings: Sequence[tuple[int, int, float]],  # (rating, scale, answered_at), newest first
    loyalty: Sequence[tuple[int, float]],  # (score 0-10, answered_at), newest first
    complaints_year: int,
    complaints_90d: int,
    complaint_open: bool,
    resolution_hours: Sequence[float],
    attributes: Mapping[str, Any],
    now: float,
) -> Figure | None:
    parts: dict[str, float] = {}
    satisfaction = None
    if ratings:
        num = den = 0.0
        for r, scale, at in ratings:
            w = 0.5 ** (max(now - at, 0.0) / HALF_LIFE)
            num += w * (r - 1) / max(scale - 1, 1) * 100
            den += w
        satisfaction = num / den
        parts["ratings"] = satisfaction
    loyalty_value = None
    if loyalty:
        loyalty_value = loyalty[0][0] * 10.0
        parts["loyalty"] = loyalty_value
    if complaints_year or complaint_open or resolution_hours:
        parts["complaints"] = max(
            0.0, 100.0 - 25.0 * complaints_year - (25.0 if complaint_open else 0.0)
        )
    if resolution_hours:
        med = sorted(resolution_hours)[len(resolution_hours) // 2]
        lo, hi = math.log(4), math.log(240)
        x = (math.log(max(med, 0.01)) - lo) / (hi - lo)
        parts["resolution"] = 100.0 * min(1.0, max(0.0, 1.0 - x))
    for key in ("orders.per_year", *PURCHASE_KEYS):
        v = attributes.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool):
            parts["purchases"] = min(float(v), 12.0) / 12.0 * 100
            break
    if not parts:
        return None
    total_w = sum(WEIGHTS[k] for k in parts)
    score = sum(WEIGHTS[k] * v for k, v in parts.items()) / total_w
    latest_bad = bool(ratings) and not good_rating(ratings[0][0], ratings[0][1])
    detractor = bool(loyalty) and loyalty[0][0] <= 6
    at_risk = score < AT_RISK_BELOW or latest_bad or (detractor and complaints_90d > 0)
    inputs = {
        "components": {k: round(v, 1) for k, v in parts.items()},
        "ratings": len(ratings),
        "loyalty_answers": len(loyalty),
        "complaints_last_year": complaints_year,
        "complaint_open": complaint_open,
        "resolved_considered": len(resolution_hours),
    }
    if "orders.per_year" in attributes:
        inputs["orders_last_year"] = attributes["orders.per_year"]
    return Figure(round(score, 1), satisfaction, loyalty_value, at_risk, inputs)


def refresh_contact(db: Db, contact_id: int, now: float) -> Figure | None:
    """Work the contact's figure out again from the store and keep it."""
    answered = db.all(
        "SELECT rating, scale, loyalty_score, answered_at FROM surveys"
        " WHERE contact_id = ? AND state = 'answered' ORDER BY answered_at DESC LIMIT 20",
        (contact_id,),
    )
    ratings = [
        (int(r["rating"]), int(r["scale"]), float(r["answered_at"]))
        for r in answered
        if r["rating"] is not None
    ]
    loyalty = [
        (int(r["loyalty_score"]), float(r["answered_at"]))
        for r in answered
        if r["loyalty_score"] is not None
    ]
    c = db.one(
        "SELECT SUM(CASE WHEN category = 'complaint' AND created_at > ? THEN 1 ELSE 0 END) AS y,"
        " SUM(CASE WHEN category = 'complaint' AND created_at > ? THEN 1 ELSE 0 END) AS q,"
        " SUM(CASE WHEN category = 'complaint' AND status <> 'resolved' THEN 1 ELSE 0 END) AS o"
        " FROM conversations WHERE contact_id = ?",
        (now - YEAR, now - 90 * 86400, contact_id),
    )
    hours = [
        (float(r["resolved_at"]) - float(r["created_at"])) / 3600
        for r in db.all(
            "SELECT created_at, resolved_at FROM conversations WHERE contact_id = ?"
            " AND status = 'resolved' AND resolved_at IS NOT NULL"
            " ORDER BY resolved_at DESC LIMIT 10",
            (contact_id,),
        )
    ]
    attrs = jsoncol.loads(db.val("SELECT attributes FROM contacts WHERE id = ?", (contact_id,)), {})
    orders = purchase_summary(db, contact_id, now)
    if orders["count"]:
        attrs = {**attrs, "orders.per_year": orders["per_year"]}
    fig = figure(
        ratings=ratings,
        loyalty=loyalty,
        complaints_year=int((c["y"] if c else 0) or 0),
        complaints_90d=int((c["q"] if c else 0) or 0),
        complaint_open=bool((c["o"] if c else 0) or 0),
        resolution_hours=hours,
        attributes=attrs,
        now=now,
    )
    if fig is None:
        return None
    db.run(
        "INSERT INTO contact_scores (contact_id, score, satisfaction, loyalty, at_risk, inputs,"
        " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (contact_id) DO UPDATE SET"
        " score = excluded.score, satisfaction = excluded.satisfaction,"
        " loyalty = excluded.loyalty, at_risk = excluded.at_risk, inputs = excluded.inputs,"
        " updated_at = excluded.updated_at",
        (
            contact_id,
            fig.score,
            fig.satisfaction,
            fig.loyalty,
            1 if fig.at_risk else 0,
            jsoncol.dumps(fig.inputs),
            now,
        ),
    )
    return fig


def contact_figure(db: Db, contact_id: int) -> dict[str, Any] | None:
    r = db.one(
        "SELECT score, satisfaction, loyalty, at_risk, inputs, updated_at FROM contact_scores"
        " WHERE contact_id = ?",
        (contact_id,),
    )
    if r is None:
        return None
    return {
        "score": r["score"],
        "satisfaction": r["satisfaction"],
        "loyalty": r["loyalty"],
        "at_risk": bool(r["at_risk"]),
        "inputs": jsoncol.loads(r["inputs"], {}),
        "updated_at": r["updated_at"],
    }
