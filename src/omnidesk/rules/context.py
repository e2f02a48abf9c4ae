"""What one evaluation knows about one message.

Built per call of :meth:`RuleSet.evaluate` and thrown away after, which is what makes
evaluation thread-safe: the compiled rules are never written to. Everything derived from
the message (folded text, keyword hits, detected language, local times) is computed on
first use and cached here, so a field that no rule looks at costs nothing and a field that
many rules look at is scanned once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any

from omnidesk.model import Category, RuleInput

from .keywords import Hit, KeywordMatcher
from .language import detect_language
from .text import fold

if TYPE_CHECKING:
    Getter = Callable[["Context"], list[Any]]


def subject(ctx: Context) -> list[Any]:
    return [ctx.inp.subject]


def text(ctx: Context) -> list[Any]:
    return [ctx.inp.text]


class Context:
    __slots__ = (
        "_folded",
        "_hit_ids",
        "_hits",
        "_language",
        "_local",
        "_matcher",
        "_values",
        "category",
        "confidence",
        "inp",
        "matched",
        "tags",
    )

    def __init__(self, inp: RuleInput, matcher: KeywordMatcher) -> None:
        self.inp = inp
        self._matcher = matcher
        self._values: dict[str, list[Any]] = {}
        self._folded: dict[str, list[str]] = {}
        self._hits: dict[str, list[Hit]] = {}
        self._hit_ids: dict[str, frozenset[str]] = {}
        self._language: tuple[str | None] | None = None
        self._local: dict[tzinfo, datetime] = {}
        # ``matches`` conditions on static fields, by their key: (which pattern, the
        # text it matched) or None (see ``conditions.Matches``).
        self.matched: dict[str, tuple[int, str] | None] = {}
        # Mutable state of the evaluation: what earlier rules (or the classifier) decided.
        self.category: Category = Category.INQUIRY
        self.confidence: float = 0.0
        self.tags: list[str] = sorted(inp.tags)

    def seed(
        self,
        folded: dict[str, list[str]],
        hit_ids: dict[str, frozenset[str]],
        matched: dict[str, tuple[int, str] | None],
    ) -> None:
        """Take folded values, the keywords found and regular expressions'
        answers, worked out ahead (``RuleSet.preview``)."""
        self._folded.update(folded)
        self._hit_ids.update(hit_ids)
        self.matched.update(matched)

    def scans(
        self,
    ) -> tuple[dict[str, list[str]], dict[str, frozenset[str]], dict[str, tuple[int, str] | None]]:
        """The folded values, keywords found and regular expressions' answers so far,
        for :meth:`seed`."""
        return dict(self._folded), dict(self._hit_ids), dict(self.matched)

    def values(self, name: str, getter: Getter) -> list[Any]:
        cached = self._values.get(name)
        if cached is None:
            cached = self._values[name] = getter(self)
        return cached

    def folded(self, name: str, getter: Getter) -> list[str]:
        cached = self._folded.get(name)
        if cached is None:
            cached = self._folded[name] = [
                fold(v) for v in self.values(name, getter) if isinstance(v, str)
            ]
        return cached

    def hits(self, name: str, getter: Getter) -> list[Hit]:
        """Keyword hits in the field's folded values. For single-valued fields (subject,
        text) the positions index ``folded(name)[0]``."""
        cached = self._hits.get(name)
        if cached is None:
            cached = []
            for value in self.folded(name, getter):
                cached.extend(self._matcher.scan(value))
            self._hits[name] = cached
        return cached

    def hit_ids(self, name: str, getter: Getter) -> frozenset[str]:
        cached = self._hit_ids.get(name)
        if cached is None:
            if name == "subject_or_text":  # reuse the two scans the classifier made anyway
                cached = self.hit_ids("subject", subject) | self.hit_ids("text", text)
            else:
                cached = frozenset(h.keyword for h in self.hits(name, getter))
            self._hit_ids[name] = cached
        return cached

    def scan(self, value: str) -> list[Hit]:
        """Uncached: for values that change while rules run (tags)."""
        return self._matcher.scan(fold(value))

    def language(self) -> str | None:
        if self._language is None:
            lang = self.inp.language
            if lang:
                lang = lang.strip().lower().replace("_", "-")
            else:
                lang = detect_language(f"{self.inp.subject}\n{self.inp.text}")
            self._language = (lang or None,)
        return self._language[0]

    def local_time(self, tz: tzinfo) -> datetime:
        cached = self._local.get(tz)
        if cached is None:
            received = self.inp.received_at
            if received.tzinfo is None:  # the model promises aware datetimes; be lenient
                received = received.replace(tzinfo=UTC)
            cached = self._local[tz] = received.astimezone(tz)
        return cached
