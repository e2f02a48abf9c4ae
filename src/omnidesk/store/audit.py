"""The audit trail: every decision and change, who or what made it, when, and why."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..model import now_ts
from . import jsoncol
from .base import Db, row_dict


def add_audit(
    db: Db,
    actor: str,
    action: str,
    *,
    conversation_id: int | None = None,
    contact_id: int | None = None,
    message_id: int | None = None,
    reason: str | None = None,
    detail: Mapping[str, Any] | None = None,
    at: float | None = None,
) -> None:
    db.run(
        "INSERT INTO audit (at, actor, action, conversation_id, contact_id, message_id, reason,"
        " detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            at or now_ts(),
            actor,
            action,
            conversation_id,
            contact_id,
            message_id,
            reason,
            jsoncol.dumps(dict(detail or {})),
        ),
    )


def audit_for_conversation(db: Db, conversation_id: int) -> list[dict[str, Any]]:
    out = []
    for r in db.all(
        "SELECT id, at, actor, action, message_id, reason, detail FROM audit"
        " WHERE conversation_id = ? ORDER BY id",
        (conversation_id,),
    ):
        d = row_dict(r)
        assert d is not None
        d["detail"] = jsoncol.loads(d["detail"], {})
        out.append(d)
    return out
