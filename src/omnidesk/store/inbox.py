"""Read views for the inbox API: conversation lists and full conversations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import conversations as convs
from .audit import audit_for_conversation
from .base import Db, placeholders


@dataclass(slots=True)
class ConversationFilter:
    status: str | None = None
    category: str | None = None
    team: str | None = None
    assignee: str | None = None  # a username, or "none" for unassigned
    channel: str | None = None
    contact_id: int | None = None
    # Visibility: None means everything; otherwise only these teams' conversations
    # plus those assigned to ``visible_user``.
    visible_teams: Sequence[str] | None = None
    visible_user: str | None = None
    extra: list[tuple[str, list[Any]]] = field(default_factory=list)

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for col in ("status", "category", "team", "channel"):
            v = getattr(self, col)
            if v is not None:
                clauses.append(f"c.{col} = ?")
                params.append(v)
        if self.assignee == "none":
            clauses.append("c.assignee IS NULL")
        elif self.assignee is not None:
            clauses.append("c.assignee = ?")
            params.append(self.assignee)
        if self.contact_id is not None:
            clauses.append("c.contact_id = ?")
            params.append(self.contact_id)
        if self.visible_teams is not None:
            vis = ["c.assignee = ?"]
            params_vis: list[Any] = [self.visible_user]
            if self.visible_teams:
                vis.append(f"c.team IN ({placeholders(len(self.visible_teams))})")
                params_vis.extend(self.visible_teams)
            clauses.append("(" + " OR ".join(vis) + ")")
            params.extend(params_vis)
        for sql, p in self.extra:
            clauses.append(sql)
            params.extend(p)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def list_conversations(
    db: Db, flt: ConversationFilter, *, limit: int = 50, before: int | None = None
) -> list[dict[str, Any]]:
    """Newest first, keyset-paginated on id (``before`` = last id of the previous page)."""
    where, params = flt.where()
    if before is not None:
        where += (" AND " if where else " WHERE ") + "c.id < ?"
        params.append(before)
    rows = db.all(
        f"SELECT {', '.join('c.' + c.strip() for c in convs.CONVERSATION_COLUMNS.split(','))},"
        " k.name AS contact_name FROM conversations c JOIN contacts k ON k.id = c.contact_id"
        f"{where} ORDER BY c.id DESC LIMIT ?",
        (*params, limit),
    )
    out = []
    for r in rows:
        d = convs.conversation_dict(r)
        assert d is not None
        out.append(d)
    return out


def get_conversation_full(db: Db, conversation_id: int) -> dict[str, Any] | None:
    conv = convs.get_conversation_row(db, conversation_id)
    if conv is None:
        return None
    contact = db.one("SELECT id, name FROM contacts WHERE id = ?", (conv["contact_id"],))
    conv["contact"] = {"id": contact["id"], "name": contact["name"]} if contact else None
    conv["messages"] = convs.message_rows(db, conversation_id)
    conv["audit"] = audit_for_conversation(db, conversation_id)
    return conv
