"""How the trained model's probabilities and the phrases' make one verdict.

Pure functions over plain numbers, shared by the run-time decision (``decide.py``) and
by training, which picks the threshold and weight that scored best in cross-validation
(``choose``), so the two can never disagree.

- **Familiarity.** A model knows the words of its training data; on messages from
  elsewhere (another shop, another language) most words are new to it and its verdict
  rests on the few it knows. Its probabilities are drawn towards "no idea" (equal
  shares) in proportion to the share of the message's words it never saw: out of its
  domain it defers to the phrases, in its domain it changes nothing measurable.
- **A complaint-vs-rest model** (classes ``complaint`` and ``not_complaint``) answers
  one question: complaint or not. That is decided at even odds (combined probability
  of a complaint at least 0.5); whether a non-complaint is an inquiry or feedback is
  the phrases' call, the model knows nothing of it.
- **Otherwise** the model decides alone when its best category is at least
  ``threshold`` likely; below that its probabilities and the phrases' are averaged, the
  model's weighing ``weight``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from omnidesk.model import Category

from .scores import metrics

NOT_COMPLAINT = "not_complaint"
_TIE_ORDER = {Category.COMPLAINT: 0, Category.INQUIRY: 1, Category.FEEDBACK: 2}

# Used when a model carries no choice of its own (trained without phrases to compare
# with) and the rules set none: the values cross-validation chose most often on the
# shared sets' training parts (docs/rules.md).
DEFAULT_THRESHOLD = 0.8
DEFAULT_WEIGHT = 0.7
THRESHOLDS = (0.6, 0.7, 0.8, 0.9, 1.0)  # 1.0: the model never decides alone
WEIGHTS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True, slots=True)
class Verdict:
    category: Category
    confidence: float
    decided_by: str  # "model" or "combined"
    model_category: str  # the model's own best class (after familiarity)
    model_confidence: float
    probabilities: dict[Category, float]  # what decided: the model's or the combined


def is_binary(classes: Sequence[str]) -> bool:
    return set(classes) == {Category.COMPLAINT.value, NOT_COMPLAINT}


def familiar(probabilities: Mapping[str, float], familiarity: float) -> dict[str, float]:
    """The model's probabilities drawn towards equal shares as far as the message's
    words were new to it (``familiarity``: the share it knew, 0 to 1)."""
    f = min(max(familiarity, 0.0), 1.0)
    even = 1 / len(probabilities)
    return {c: f * p + (1 - f) * even for c, p in probabilities.items()}


def _best(p: Mapping[Category, float]) -> Category:
    return min(p, key=lambda k: (-p[k], _TIE_ORDER[k]))


def _rest(phrases: Mapping[Category, float]) -> tuple[Category, float]:
    """Inquiry or feedback, as the phrases divide what is not a complaint."""
    i, f = phrases[Category.INQUIRY], phrases[Category.FEEDBACK]
    if i + f <= 0:
        return Category.INQUIRY, 0.5
    return (Category.INQUIRY, i / (i + f)) if i >= f else (Category.FEEDBACK, f / (i + f))


def in_categories(
    probabilities: Mapping[str, float], phrases: Mapping[Category, float]
) -> dict[Category, float]:
    """A model's probabilities over the three categories: ``not_complaint`` goes to
    inquiry and feedback as the phrases divide them."""
    out = dict.fromkeys(Category, 0.0)
    for label, prob in probabilities.items():
        if label == NOT_COMPLAINT:
            rest = phrases[Category.INQUIRY] + phrases[Category.FEEDBACK]
            for k in (Category.INQUIRY, Category.FEEDBACK):
                out[k] += prob * (phrases[k] / rest if rest else 0.5)
        else:
            out[Category(label)] += prob
    return out


def combine(
    probabilities: Mapping[str, float],
    familiarity: float,
    phrases: Mapping[Category, float],
    threshold: float,
    weight: float,
) -> Verdict:
    """The model's own answer is its most likely class; how sure it is of it (and what
    it brings to a combination) is counted after familiarity."""
    p = familiar(probabilities, familiarity)
    if is_binary(list(p)):
        raw = probabilities[Category.COMPLAINT.value]
        pc = p[Category.COMPLAINT.value]
        own = (Category.COMPLAINT.value, pc) if raw >= 0.5 else (NOT_COMPLAINT, 1 - pc)
        if own[1] >= threshold:
            decided_by, complaint = "model", own[0] == Category.COMPLAINT.value
        else:
            decided_by = "combined"
            pc = weight * pc + (1 - weight) * phrases[Category.COMPLAINT]
            complaint = pc >= 0.5
        rest, share = _rest(phrases)
        other = Category.FEEDBACK if rest is Category.INQUIRY else Category.INQUIRY
        probs = {Category.COMPLAINT: pc, rest: (1 - pc) * share, other: (1 - pc) * (1 - share)}
        category = Category.COMPLAINT if complaint else rest
        return Verdict(category, probs[category], decided_by, own[0], own[1], probs)
    in_cats = in_categories(p, phrases)
    model_cat = _best(in_categories(probabilities, phrases))
    if in_cats[model_cat] >= threshold:
        return Verdict(
            model_cat, in_cats[model_cat], "model", model_cat.value, in_cats[model_cat], in_cats
        )
    mixed = {k: weight * in_cats[k] + (1 - weight) * phrases[k] for k in Category}
    best = _best(mixed)
    return Verdict(best, mixed[best], "combined", model_cat.value, in_cats[model_cat], mixed)


def _as_label(category: Category, binary: bool) -> str:
    if binary and category is not Category.COMPLAINT:
        return NOT_COMPLAINT
    return category.value


def choose(
    probabilities: Sequence[Mapping[str, float]],
    familiarity: Sequence[float],
    phrases: Sequence[Mapping[Category, float]],
    phrase_categories: Sequence[Category],
    labels: Sequence[str],
) -> dict[str, float]:
    """The threshold and weight under which the model's cross-validated predictions and
    the phrases score best together (macro-F1 over ``labels``), with the scores of the
    phrases alone, the model alone and the two together."""
    binary = NOT_COMPLAINT in labels
    truth = [NOT_COMPLAINT if binary and t != Category.COMPLAINT.value else t for t in labels]

    def score(threshold: float, weight: float) -> float:
        predicted = [
            _as_label(combine(p, f, ph, threshold, weight).category, binary)
            for p, f, ph in zip(probabilities, familiarity, phrases, strict=True)
        ]
        return float(metrics(truth, predicted)["macro_f1"])

    alone = score(0.0, 1.0)
    phrases_only = metrics(truth, [_as_label(c, binary) for c in phrase_categories])["macro_f1"]
    best = (score(DEFAULT_THRESHOLD, DEFAULT_WEIGHT), DEFAULT_THRESHOLD, DEFAULT_WEIGHT)
    for threshold, weight in itertools.product(THRESHOLDS, WEIGHTS):
        s = score(threshold, weight)
        if s > best[0] + 1e-9:
            best = (s, threshold, weight)
    return {
        "threshold": best[1],
        "weight": best[2],
        "macro_f1": round(best[0], 4),
        "model_alone_macro_f1": round(alone, 4),
        "phrases_alone_macro_f1": round(phrases_only, 4),
    }
