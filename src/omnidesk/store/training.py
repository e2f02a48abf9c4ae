"""What agents teach the classifier: stored conversations as labelled examples.

- A **correction**: an agent changed a conversation's category (``corrections``). The
  category it has now is the label, weighted ``CORRECTION_WEIGHT``: the classifier got
  it wrong, so it counts more than one it got right.
- A **confirmation**: a resolved conversation whose category nobody changed. The agent
  who resolved it left the category standing; weight 1.

The text is the customer's first message (and the subject), what the classifier saw.
"""

from __future__ import annotations

from typing import Any

from .base import Db

CORRECTION_WEIGHT = 3.0

_FIRST_TEXT = (
    "(SELECT m.text FROM messages m WHERE m.conversation_id = c.id"
    " AND m.direction = 'in' ORDER BY m.id LIMIT 1)"
)


def training_examples(db: Db, *, since: float = 0.0) -> list[dict[str, Any]]:
    """Corrections and confirmations made after ``since`` (UNIX seconds), oldest first:
    ``{text, subject, label, weight, source, conversation_id, at}``."""
    out: list[dict[str, Any]] = []
    for r in db.all(
        "SELECT c.id, c.subject, c.category, MAX(k.at) AS at, " + _FIRST_TEXT + " AS text"
        " FROM corrections k JOIN conversations c ON c.id = k.conversation_id"
        " WHERE k.field = 'category' AND c.category IS NOT NULL"
        " GROUP BY c.id, c.subject, c.category HAVING MAX(k.at) > ?",
        (since,),
    ):
        if r["text"]:
            out.append(_example(r, "correction", CORRECTION_WEIGHT))
    for r in db.all(
        "SELECT c.id, c.subject, c.category, c.resolved_at AS at, " + _FIRST_TEXT + " AS text"
        " FROM conversations c WHERE c.status = 'resolved' AND c.category IS NOT NULL"
        " AND c.resolved_at > ? AND NOT EXISTS (SELECT 1 FROM corrections k"
        "  WHERE k.conversation_id = c.id AND k.field = 'category')",
        (since,),
    ):
        if r["text"]:
            out.append(_example(r, "confirmation", 1.0))
    out.sort(key=lambda e: e["at"])
    return out


def _example(r: Any, source: str, weight: float) -> dict[str, Any]:
    return {
        "text": r["text"],
        "subject": r["subject"] or "",
        "label": r["category"],
        "weight": weight,
        "source": source,
        "conversation_id": r["id"],
        "at": float(r["at"]),
    }


def count_new(db: Db, *, since: float) -> dict[str, int]:
    """How many corrections and confirmations came after ``since``."""
    corrections = db.val(
        "SELECT COUNT(DISTINCT conversation_id) FROM corrections"
        " WHERE field = 'category' AND at > ?",
        (since,),
    )
    confirmations = db.val(
        "SELECT COUNT(*) FROM conversations c WHERE c.status = 'resolved'"
        " AND c.category IS NOT NULL AND c.resolved_at > ? AND NOT EXISTS"
        " (SELECT 1 FROM corrections k WHERE k.conversation_id = c.id"
        "  AND k.field = 'category')",
        (since,),
    )
    return {"corrections": int(corrections or 0), "confirmations": int(confirmations or 0)}


def category_corrections(db: Db, *, since: float, limit: int = 100) -> list[dict[str, Any]]:
    """Agents' category changes after ``since``, newest first, with the customer's
    first message: what the next retrain will learn from (the admin page)."""
    out = []
    for r in db.all(
        "SELECT k.conversation_id, k.old_value, k.new_value, k.old_confidence, k.actor, k.at,"
        " c.subject, " + _FIRST_TEXT + " AS text"
        " FROM corrections k JOIN conversations c ON c.id = k.conversation_id"
        " WHERE k.field = 'category' AND k.at > ? ORDER BY k.at DESC, k.id DESC LIMIT ?",
        (since, limit),
    ):
        out.append(
            {
                "conversation_id": r["conversation_id"],
                "old": r["old_value"],
                "new": r["new_value"],
                "old_confidence": r["old_confidence"],
                "actor": r["actor"],
                "at": float(r["at"]),
                "subject": r["subject"] or "",
                "text": (r["text"] or "")[:300],
            }
        )
    return out
