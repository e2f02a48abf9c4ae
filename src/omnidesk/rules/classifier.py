"""The default classifier: weighted phrases per category, with negation.

It reads ``[classifier]`` and ``[[classifier.phrases]]`` from the rule files (shipped in
``rules/00-classifier.toml``, edited like any rule) and scores the subject and text:

1. Every listed phrase found adds its weight to its category, once per message however
   often it appears (a customer repeating "refund" five times is not five times angrier).
2. A phrase inside a longer listed phrase does not count on its own: ``不满意`` wins over
   ``满意``, ``not happy`` over ``happy``.
3. A phrase preceded by a negator (``not``, ``never``, ``*n't``, ``不``, ``没``...) within
   ``negation_window`` words (Chinese too: cut into words, ``words.py``), with no
   punctuation in between, counts
   for the group's ``negated`` category instead ("not very helpful" is a complaint), or not
   at all if the group has none ("no problem" is not a complaint).
4. After a contrast word ("but", "但是"), complaint and feedback phrases weigh
   ``contrast_weight`` times as much: "tasty, but it came cold" is a complaint.
5. The best-scoring category wins; ties go to complaint, then inquiry, then feedback (a
   missed complaint costs more than a misfiled thank-you). Its confidence is its softmax
   share of the three scores. A category scoring below its ``min_score`` is not chosen;
   when none is left (or nothing matched), the default
   category (inquiry) at confidence 1/3; or, for a Chinese message that asks nothing
   (no inquiry phrase: no 吗, 请问, ? ...), ``chinese_statement`` if set. A Chinese
   review or message that states something in words no phrase knows is more often a
   complaint told as a story (送的是鸡肉饭, 酱都不给) than a question, and praise comes in
   set words the phrases know.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from omnidesk.model import Category

from . import context
from .context import Context
from .keywords import Hit, Keyword
from .text import is_spaceless, is_word_char
from .words import has_han, words_between

_OPINIONS = frozenset({Category.COMPLAINT, Category.FEEDBACK})
_TIE_ORDER = {Category.COMPLAINT: 0, Category.INQUIRY: 1, Category.FEEDBACK: 2}
# Punctuation that ends the reach of a negator ("No, I love it").
_STOPS = frozenset(".,;:!?。，；：！？、\n()[]")


def _whole_words(text: str, hit: Hit) -> str:
    """The words a wildcard phrase matched: 'refunded' for refund*."""
    start, end = hit.start, hit.end
    while start > 0 and is_word_char(text[start - 1]):
        start -= 1
    while end < len(text) and is_word_char(text[end]):
        end += 1
    return text[start:end]


@dataclass(frozen=True, slots=True)
class Phrase:
    keyword: Keyword
    category: Category
    weight: float
    negated: Category | None  # where the weight goes when negated; None: dropped


@dataclass(frozen=True, slots=True)
class ClassifierConfig:
    default: Category = Category.INQUIRY
    # What a Chinese message gets when no category is chosen and nothing in it asks a
    # question (its inquiry score is 0). None: ``default``.
    chinese_statement: Category | None = None
    # A category needs at least this score to be chosen (per category; absent: any
    # positive score). Lets one weak word ("still", "wrong") hint without deciding.
    min_score: Mapping[Category, float] = field(default_factory=dict)
    negation_window: int = 3
    negators: tuple[Keyword, ...] = ()
    phrases: tuple[Phrase, ...] = ()
    # "good food, but the delivery was late": what follows "but" is what the customer
    # means, so phrases after a contrast word weigh ``contrast_weight`` times as much.
    contrast: tuple[Keyword, ...] = ()
    contrast_weight: float = 1.0
    # A trained model (``decide.py``) decides alone from this probability up; below
    # it its probabilities and the phrases' are combined, the model's weighing this.
    # None: what cross-validation chose when the model was trained (``combine.py``).
    model_threshold: float | None = None
    model_weight: float | None = None


@dataclass(frozen=True, slots=True)
class Evidence:
    phrase: str
    category: Category
    weight: float
    negated_by: str | None = None
    after: str | None = None  # the contrast word it follows
    words: str | None = None  # what the message said, when the phrase has a wildcard

    def __str__(self) -> str:
        text = f"'{self.phrase}'" if self.words is None else f"'{self.words}' ({self.phrase})"
        if self.negated_by is not None:
            text += f" negated by '{self.negated_by}'"
        if self.after is not None:
            text += f" after '{self.after}'"
        return f"{text} ({self.weight:+.1f})"


@dataclass(slots=True)
class Classification:
    category: Category
    confidence: float
    scores: dict[Category, float]
    evidence: list[Evidence] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # negated phrases that counted for nothing
    fallback: str = "default"  # why no phrase deciding gave this category

    def explanation(self) -> str:
        if not self.evidence:
            note = f"; ignored {', '.join(self.ignored)}" if self.ignored else ""
            return (
                f"classifier: {self.category} {self.confidence:.2f}, no phrase matched "
                f"({self.fallback}){note}"
            )
        for_it = [str(e) for e in self.evidence if e.category == self.category]
        against = [f"{e} for {e.category}" for e in self.evidence if e.category != self.category]
        text = f"classifier: {self.category} {self.confidence:.2f}"
        if for_it:
            text += f" from {', '.join(for_it)}"
        else:
            text += " (default: evidence below min_score)"
        if against:
            text += f"; against: {', '.join(against)}"
        if self.ignored:
            text += f"; ignored {', '.join(self.ignored)}"
        return text


class Classifier:
    def __init__(self, config: ClassifierConfig) -> None:
        self.config = config
        self._phrases = {p.keyword.pattern: p for p in config.phrases}
        self._negators = frozenset(k.pattern for k in config.negators)
        self._contrast = frozenset(k.pattern for k in config.contrast)

    def keywords(self) -> Iterable[Keyword]:
        yield from (p.keyword for p in self.config.phrases)
        yield from self.config.negators
        yield from self.config.contrast

    def classify(self, ctx: Context) -> Classification:
        scores = dict.fromkeys(Category, 0.0)
        evidence: list[Evidence] = []
        ignored: list[str] = []
        seen: set[tuple[str, bool]] = set()
        chinese = False
        if self._phrases:
            for name, getter in (("subject", context.subject), ("text", context.text)):
                folded = ctx.folded(name, getter)
                if folded:
                    self._score(folded[0], ctx.hits(name, getter), scores, evidence, ignored, seen)
                    chinese = chinese or has_han(folded[0])
        return self._decide(scores, evidence, ignored, chinese=chinese)

    def _score(
        self,
        text: str,
        hits: list[Hit],
        scores: dict[Category, float],
        evidence: list[Evidence],
        ignored: list[str],
        seen: set[tuple[str, bool]],
    ) -> None:
        phrase_hits = sorted(
            (h for h in hits if h.keyword in self._phrases), key=lambda h: (h.start, -h.end)
        )
        if not phrase_hits:
            return
        negators = [h for h in hits if h.keyword in self._negators]
        contrasts = [h for h in hits if h.keyword in self._contrast]
        negated_by = {
            (hit.start, hit.end): self._negator_before(text, hit, negators, phrase_hits)
            for hit in phrase_hits
        }
        # A word that negates a listed phrase is not evidence of its own: the 没有 of
        # 没有任何问题 ("no problem at all") says nothing against the product.
        negating = {(n.start, n.end) for n in negated_by.values() if n is not None}
        reach = -1
        for hit in phrase_hits:
            if hit.end <= reach:  # inside a longer phrase already counted
                continue
            reach = hit.end
            if (hit.start, hit.end) in negating:
                continue
            phrase = self._phrases[hit.keyword]
            found = negated_by[(hit.start, hit.end)]
            negator = found.keyword if found is not None else None
            key = (hit.keyword, negator is not None)
            if key in seen:
                continue
            seen.add(key)
            category = phrase.category if negator is None else phrase.negated
            if category is None:
                ignored.append(f"'{hit.keyword}' (negated by '{negator}')")
                continue
            weight, after = phrase.weight, None
            contrast = next((c for c in reversed(contrasts) if c.end <= hit.start), None)
            # Contrast shifts opinions; a question after "but" is no more of a question.
            if contrast is not None and category in _OPINIONS:
                weight *= self.config.contrast_weight
                after = contrast.keyword
            scores[category] += weight
            words = _whole_words(text, hit) if "*" in hit.keyword else None
            evidence.append(Evidence(hit.keyword, category, weight, negator, after, words))

    def _negator_before(
        self, text: str, hit: Hit, negators: list[Hit], phrase_hits: list[Hit]
    ) -> Hit | None:
        if not any(ch.isalnum() for ch in hit.keyword):
            return None  # "?" or ":)" are not statements that a "not" can turn round
        window = self.config.negation_window
        best: Hit | None = None
        for neg in negators:
            if neg.end > hit.start or (best is not None and neg.end <= best.end):
                continue
            # A negator that is part of a longer phrase ending before this one negates
            # nothing: the 不 of 不错 ("not bad": good) in 不错好吃.
            if any(
                p.start <= neg.start
                and neg.end <= p.end <= hit.start
                and p.end - p.start > neg.end - neg.start
                for p in phrase_hits
            ):
                continue
            best = neg
        if best is None:
            return None
        gap = text[best.end : hit.start]
        if any(ch in _STOPS for ch in gap):
            return None
        if has_han(gap):  # Chinese: counted in words, as the segmenter cut them
            units = words_between(text, best.end, hit.start)
        else:
            units = sum(1 for ch in gap if is_spaceless(ch)) + len(
                [w for w in gap.split() if not all(is_spaceless(c) for c in w)]
            )
        return best if units <= window else None

    def _decide(
        self,
        scores: dict[Category, float],
        evidence: list[Evidence],
        ignored: list[str],
        *,
        chinese: bool = False,
    ) -> Classification:
        eligible = [
            c for c in Category if scores[c] > 0 and scores[c] >= self.config.min_score.get(c, 0)
        ]
        if not eligible:
            statement = self.config.chinese_statement
            if statement is not None and chinese and scores[Category.INQUIRY] <= 0:
                return Classification(
                    statement, 1 / len(Category), scores, evidence, ignored, "chinese_statement"
                )
            return Classification(self.config.default, 1 / len(Category), scores, evidence, ignored)
        best = min(eligible, key=lambda c: (-scores[c], _TIE_ORDER[c]))
        # Softmax: one weak phrase (+1) gives 0.58, a strong one (+3) 0.91.
        top = max(scores.values())
        exp = {c: math.exp(s - top) for c, s in scores.items()}
        confidence = exp[best] / sum(exp.values())
        return Classification(best, confidence, scores, evidence, ignored)
