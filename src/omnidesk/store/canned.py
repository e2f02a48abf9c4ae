"""Canned replies: shared answer templates with placeholders.

Placeholders are ``{contact.name}``, ``{contact.first_name}``,
``{contact.email}``, ``{agent.name}``, ``{agent.username}``,
``{conversation.id}``, ``{conversation.subject}``, ``{conversation.channel}``.
Unknown placeholders are left as written, so a typo shows instead of
vanishing; nothing else in the template is interpreted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..model import now_ts
from .base import Db, row_dict

PLACEHOLDER = re.compile(r"\{([a-z_]+\.[a-z_]+)\}")
PLACEHOLDERS = (
    "contact.name",
    "contact.first_name",
    "contact.email",
    "agent.name",
    "agent.username",
    "conversation.id",
    "conversation.subject",
    "conversation.channel",
)


class CannedError(ValueError):
    pass


def list_canned(db: Db, teams: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Every canned reply, or (``teams`` given) the shared ones and those of these teams."""
    rows = db.all(
        "SELECT id, shortcut, title, body, team, created_by, created_at, updated_at"
        " FROM canned_replies ORDER BY shortcut"
    )
    out = [d for d in (row_dict(r) for r in rows) if d is not None]
    if teams is not None:
        out = [d for d in out if d["team"] is None or d["team"] in teams]
    return out


def get_canned(db: Db, canned_id: int) -> dict[str, Any] | None:
    return row_dict(
        db.one(
            "SELECT id, shortcut, title, body, team, created_by, created_at, updated_at"
            " FROM canned_replies WHERE id = ?",
            (canned_id,),
        )
    )


def save_canned(
    db: Db,
    *,
    actor: str,
    shortcut: str,
    title: str,
    body: str,
    team: str | None = None,
    canned_id: int | None = None,
) -> dict[str, Any]:
    shortcut = shortcut.strip()
    if not re.fullmatch(r"[\w.-]{1,40}", shortcut):
        raise CannedError("a shortcut is 1-40 letters, digits, '_', '.' or '-'")
    if not title.strip() or not body.strip():
        raise CannedError("title and body must not be empty")
    if len(body) > 20_000:
        raise CannedError("the body is longer than 20,000 characters")
    if team is not None and not db.val("SELECT 1 FROM teams WHERE name = ?", (team,)):
        raise CannedError(f"no team named {team!r}")
    clash = db.val(
        "SELECT id FROM canned_replies WHERE shortcut = ? AND id != ?", (shortcut, canned_id or 0)
    )
    if clash is not None:
        raise CannedError(f"shortcut {shortcut!r} is taken")
    now = now_ts()
    if canned_id is None:
        canned_id = int(
            db.val(
                "INSERT INTO canned_replies (shortcut, title, body, team, created_by, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (shortcut, title.strip(), body, team, actor, now, now),
            )
        )
    elif not db.run(
        "UPDATE canned_replies SET shortcut = ?, title = ?, body = ?, team = ?, updated_at = ?"
        " WHERE id = ?",
        (shortcut, title.strip(), body, team, now, canned_id),
    ):
        raise LookupError(f"no canned reply {canned_id}")
    got = get_canned(db, canned_id)
    assert got is not None
    return got


def delete_canned(db: Db, canned_id: int) -> bool:
    return db.run("DELETE FROM canned_replies WHERE id = ?", (canned_id,)) > 0


def render(template: str, values: Mapping[str, str]) -> str:
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def placeholder_values(
    db: Db, conversation_id: int, agent_username: str | None, agent_name: str | None
) -> dict[str, str]:
    r = db.one(
        "SELECT c.id, c.subject, c.channel, k.name FROM conversations c"
        " JOIN contacts k ON k.id = c.contact_id WHERE c.id = ?",
        (conversation_id,),
    )
    if r is None:
        raise LookupError(f"no conversation {conversation_id}")
    email = db.val(
        "SELECT i.address FROM identities i JOIN conversations c ON c.contact_id = i.contact_id"
        " WHERE c.id = ? AND i.kind = 'email' ORDER BY i.id LIMIT 1",
        (conversation_id,),
    )
    name = r["name"] or ""
    return {
        "contact.name": name,
        "contact.first_name": name.split()[0] if name.split() else "",
        "contact.email": email or "",
        "agent.name": agent_name or agent_username or "",
        "agent.username": agent_username or "",
        "conversation.id": str(r["id"]),
        "conversation.subject": r["subject"] or "",
        "conversation.channel": r["channel"],
    }
