"""Saved inbox views: a named set of filters per user."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..model import now_ts
from . import jsoncol
from .base import Db, row_dict

# The filters a view may hold (the inbox list's query parameters).
FILTER_KEYS = frozenset(
    {
        "scope",
        "status",
        "category",
        "priority",
        "channel",
        "tag",
        "team",
        "assignee",
        "sort",
        "breached",
    }
)
MAX_VIEWS = 50


class ViewError(ValueError):
    pass


def _clean(filters: Mapping[str, Any]) -> dict[str, Any]:
    bad = set(filters) - FILTER_KEYS
    if bad:
        raise ViewError(f"unknown filter {sorted(bad)[0]!r}")
    out = {}
    for k, v in filters.items():
        if v is None or v == "":
            continue
        if not isinstance(v, str | bool) or (isinstance(v, str) and len(v) > 100):
            raise ViewError(f"filter {k!r} must be a short text")
        out[k] = v
    return out


def list_views(db: Db, username: str) -> list[dict[str, Any]]:
    out = []
    for r in db.all(
        "SELECT id, name, filters, created_at FROM saved_views WHERE username = ? ORDER BY name",
        (username,),
    ):
        d = row_dict(r)
        assert d is not None
        d["filters"] = jsoncol.loads(d["filters"], {})
        out.append(d)
    return out


def save_view(db: Db, username: str, name: str, filters: Mapping[str, Any]) -> dict[str, Any]:
    name = name.strip()
    if not name or len(name) > 80:
        raise ViewError("a view name is 1-80 characters")
    clean = _clean(filters)
    if int(db.val("SELECT COUNT(*) FROM saved_views WHERE username = ?", (username,))) >= MAX_VIEWS:
        raise ViewError(f"at most {MAX_VIEWS} saved views per user")
    db.run(
        "INSERT INTO saved_views (username, name, filters, created_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (username, name) DO UPDATE SET filters = excluded.filters",
        (username, name, jsoncol.dumps(clean), now_ts()),
    )
    return next(v for v in list_views(db, username) if v["name"] == name)


def delete_view(db: Db, username: str, view_id: int) -> bool:
    return db.run("DELETE FROM saved_views WHERE id = ? AND username = ?", (view_id, username)) > 0
