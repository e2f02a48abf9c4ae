"""Validation problems and the error that carries them.

Every problem names the file and, where it can be found, the line, so an admin
can go straight to the mistake. Loading collects *all* problems before raising,
so one run of ``omnidesk rules check`` shows everything that needs fixing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.reason}"


class RulesError(Exception):
    """The rules directory failed validation; ``problems`` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid rules")
