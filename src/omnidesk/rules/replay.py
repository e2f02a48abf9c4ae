"""Re-deciding stored conversations with today's rules and model
(``omnidesk rules replay``). Pure: conversations come in as plain dicts (see
``store/replay.py``), changes go out as plain dicts, and the store applies them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from omnidesk.model import RuleInput

from .engine import RuleSet


@dataclass(slots=True)
class Change:
    conversation_id: int
    before: dict[str, Any]  # the fields that change, as they are
    after: dict[str, Any]  # and as the rules decide now
    decision: dict[str, Any]
    text: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"from": self.before, "to": self.after, "decision": self.decision}

    def line(self) -> str:
        what = ", ".join(
            f"{k} {self.before[k] or '-'} -> {self.after[k] or '-'}" for k in self.after
        )
        snippet = " ".join(self.text.split())
        snippet = snippet if len(snippet) <= 60 else snippet[:57] + "..."
        return f"#{self.conversation_id}: {what}  ({snippet})"


def redecide(
    ruleset: RuleSet, conv: Mapping[str, Any], channel_types: Mapping[str, str]
) -> Change | None:
    """What would change for one stored conversation. Team and assignee change only
    where nobody is assigned: an agent working on it keeps it."""
    inp = RuleInput(
        channel=conv["channel"],
        channel_type=channel_types.get(conv["channel"], conv["channel"]),
        sender=conv["sender"],
        sender_name=conv.get("sender_name"),
        subject=conv["subject"],
        text=conv["text"],
        language=conv.get("language"),
        contact=conv.get("contact") or {},
        received_at=datetime.fromtimestamp(conv["received_at"], UTC),
    )
    decision = ruleset.evaluate(inp)
    now: dict[str, Any] = {"category": str(decision.category), "priority": str(decision.priority)}
    if conv.get("assignee") is None:
        now["team"] = decision.team if decision.team is not None else conv.get("team")
        if decision.assignee is not None:
            now["assignee"] = decision.assignee
    before = {k: conv.get(k) for k in now}
    changed = {k: v for k, v in now.items() if v != before[k]}
    if not changed:
        return None
    return Change(
        conv["id"], {k: before[k] for k in changed}, changed, decision.to_dict(), conv["text"]
    )


@dataclass(slots=True)
class ReplaySummary:
    examined: int = 0
    changes: list[Change] = field(default_factory=list)

    def format(self, sample: int = 10) -> str:
        out = [f"{self.examined} conversations re-decided, {len(self.changes)} would change"]
        for key in ("category", "team", "priority", "assignee"):
            moves = Counter(
                f"{c.before[key] or '-'} -> {c.after[key] or '-'}"
                for c in self.changes
                if key in c.after
            )
            if moves:
                out.append(f"  {key}: " + ", ".join(f"{m} {n}" for m, n in moves.most_common()))
        if self.changes:
            out.append(f"sample ({min(sample, len(self.changes))} of {len(self.changes)}):")
            out += ["  " + c.line() for c in self.changes[:sample]]
        return "\n".join(out)
