"""A rules file as read: its text, its TOML data and where each table is
(``Locator``), and the loader as the parsers of a file's parts see it
(``Collector``). Shared by ``loader.py`` and ``service.py``, which import
each other's parts through here rather than each other."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from .problems import Problem
from .schema import Report

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]\[#]+?)\s*\]\]?\s*(?:#.*)?$")


class Locator:
    """Finds the line of a table, or of a key inside it, in a TOML file's text.

    tomllib reports lines only for syntax errors; for a semantic mistake we find the
    ``[[rule]]`` header of the rule it belongs to and, within that rule's lines, the first
    line that mentions the offending key or value.
    """

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.headers: list[tuple[int, str, bool]] = []  # (1-based line, name, is array)
        for n, line in enumerate(self.lines, 1):
            m = _HEADER.match(line)
            if m:
                name = re.sub(r"[\s\"']", "", m.group(2))
                self.headers.append((n, name, m.group(1) == "[["))

    def span(self, name: str, index: int | None = None) -> tuple[int, int] | None:
        """Lines (first, last) of table ``name`` (``index``-th of an array of tables)."""
        seen = -1
        for pos, (line, hname, is_array) in enumerate(self.headers):
            if hname != name or is_array != (index is not None):
                continue
            seen += 1
            if index is not None and seen != index:
                continue
            end = len(self.lines)
            for later_line, later, _ in self.headers[pos + 1 :]:
                if not later.startswith(name + "."):
                    end = later_line - 1
                    break
            return line, end
        return None

    def find(self, span: tuple[int, int] | None, needles: tuple[str, ...]) -> int | None:
        if span is None:
            span = (1, len(self.lines))
        for needle in needles:
            if not needle:
                continue
            for n in range(span[0], span[1] + 1):
                line = self.lines[n - 1]
                if not line.lstrip().startswith("#") and needle in line:
                    return n
        return None


@dataclass
class FileDoc:
    path: str
    text: str
    data: dict[str, Any]
    locator: Locator


class Collector(Protocol):
    """What reads the files and collects every problem with file and line."""

    problems: list[Problem]

    def reporter(self, doc: FileDoc, span: tuple[int, int] | None, prefix: str = "") -> Report: ...

    def _unknown_keys(
        self, raw: dict[str, Any], known: tuple[str, ...], what: str, report: Report
    ) -> None: ...
