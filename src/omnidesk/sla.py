"""First-response targets (``[sla]`` in the config): pure arithmetic.

A conversation gets a due time when it opens or reopens: now plus the target
for its priority. The first agent reply meets it (the due time is cleared and
the audit says whether it was met); a due time in the past is a breach, shown
in the inbox. Changing the priority of a conversation still waiting for its
first reply moves the due time by the difference between the two targets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_MINUTES = {"urgent": 30.0, "high": 120.0, "normal": 480.0, "low": 1440.0}


@dataclass(frozen=True, slots=True)
class SlaPolicy:
    # priority -> seconds; a priority missing here has no target
    targets: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_minutes(cls, minutes: Mapping[str, float]) -> SlaPolicy:
        return cls({p: m * 60.0 for p, m in minutes.items() if m > 0})

    def due(self, priority: str, start: float) -> float | None:
        t = self.targets.get(priority)
        return None if t is None else start + t

    def moved(self, due: float | None, old: str, new: str) -> float | None:
        """The due time after a priority change from ``old`` to ``new``."""
        if due is None:
            return None
        t_old, t_new = self.targets.get(old), self.targets.get(new)
        if t_old is None or t_new is None:
            return due if t_new is not None else None
        return due - t_old + t_new
