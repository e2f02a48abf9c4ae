"""The classifier's verdict when no rule sets the category: the trained model, the
shipped phrases, or both.

Order (docs/rules.md, "Decision order"): a rule that sets the category wins (the
engine's business); otherwise the trained model when it is at least
``model_threshold`` sure; otherwise the model's and the phrases' probabilities combined
(``model_weight`` for the model), which scored better than the phrases alone on every
labelled set measured. Without a model, the phrases decide as they always did.

A model trained complaint-vs-rest has the class ``not_complaint``: its share goes to
inquiry and feedback in the proportion the phrases give them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from omnidesk.model import Category

from .classifier import Classification, ClassifierConfig
from .trained import Prediction, TrainedModel

NOT_COMPLAINT = "not_complaint"


@dataclass(slots=True)
class Guess:
    category: Category
    confidence: float
    because: str
    decided_by: str  # "phrases", "model" or "combined"
    features: list[tuple[str, float]] = field(default_factory=list)


def phrase_probabilities(c: Classification) -> dict[Category, float]:
    """The phrases' verdict as a distribution: the chosen category at its confidence,
    the rest in proportion to their softmax share (uniform when nothing matched)."""
    if not c.evidence:
        return dict.fromkeys(Category, 1 / len(Category))
    top = max(c.scores.values())
    exp = {k: math.exp(v - top) for k, v in c.scores.items()}
    others = sum(v for k, v in exp.items() if k != c.category)
    out = {c.category: c.confidence}
    for k in Category:
        if k != c.category:
            share = exp[k] / others if others else 0.5
            out[k] = (1 - c.confidence) * share
    return out


def model_probabilities(p: Prediction, phrases: dict[Category, float]) -> dict[Category, float]:
    out = dict.fromkeys(Category, 0.0)
    for label, prob in p.probabilities.items():
        if label == NOT_COMPLAINT:
            rest = phrases[Category.INQUIRY] + phrases[Category.FEEDBACK]
            for k in (Category.INQUIRY, Category.FEEDBACK):
                out[k] += prob * (phrases[k] / rest if rest else 0.5)
        else:
            out[Category(label)] += prob
    return out


def _best(p: dict[Category, float]) -> Category:
    order = {Category.COMPLAINT: 0, Category.INQUIRY: 1, Category.FEEDBACK: 2}
    return min(p, key=lambda k: (-p[k], order[k]))


def decide(
    phrases: Classification,
    model: TrainedModel | None,
    config: ClassifierConfig,
    subject: str,
    text: str,
) -> Guess:
    if model is None:
        return Guess(phrases.category, phrases.confidence, phrases.explanation(), "phrases")
    prediction = model.predict(subject, text)
    p_phrases = phrase_probabilities(phrases)
    p_model = model_probabilities(prediction, p_phrases)
    said = phrases.explanation().removeprefix("classifier: ")
    features = prediction.top
    from_words = f" from {prediction.because()}" if features else ""
    model_cat = _best(p_model)
    if p_model[model_cat] >= config.model_threshold:
        because = (
            f"classifier: {model_cat} {p_model[model_cat]:.2f} decided by the trained model "
            f"v{model.version} (sure enough: threshold {config.model_threshold:.2f})"
            f"{from_words}; phrases said {said}"
        )
        return Guess(model_cat, p_model[model_cat], because, "model", features)
    w = config.model_weight
    combined = {k: w * p_model[k] + (1 - w) * p_phrases[k] for k in Category}
    best = _best(combined)
    because = (
        f"classifier: {best} {combined[best]:.2f} from the trained model v{model.version} "
        f"({model_cat} {p_model[model_cat]:.2f}, below its threshold "
        f"{config.model_threshold:.2f}{from_words}) combined with the phrases ({said})"
    )
    return Guess(best, combined[best], because, "combined", features)
