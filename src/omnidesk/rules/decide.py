"""The classifier's verdict when no rule sets the category: the trained model, the
shipped phrases, or both.

Order (docs/rules.md, "Decision order"): a rule that sets the category wins (the
engine's business); otherwise the trained model when it is sure enough; otherwise the
model's and the phrases' probabilities combined. How sure is enough and how much the
model weighs are the rules' ``model_threshold`` and ``model_weight`` when they set
them, else what cross-validation chose when the model was trained, else the defaults
(``combine.py``, which also draws the model towards the phrases on messages whose words
it never saw). Without a model, the phrases decide as they always did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from omnidesk.model import Category

from . import combine
from .classifier import Classification, ClassifierConfig
from .trained import TrainedModel

NOT_COMPLAINT = combine.NOT_COMPLAINT


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


def settings(model: TrainedModel, config: ClassifierConfig) -> tuple[float, float, str]:
    """The threshold and weight in force for ``model``, and where they come from."""
    chosen = model.combination
    if config.model_threshold is not None or config.model_weight is not None:
        origin = "the rules"
    elif chosen:
        origin = "chosen in training"
    else:
        origin = "defaults"
    threshold = config.model_threshold
    if threshold is None:
        threshold = float(chosen.get("threshold", combine.DEFAULT_THRESHOLD))
    weight = config.model_weight
    if weight is None:
        weight = float(chosen.get("weight", combine.DEFAULT_WEIGHT))
    return threshold, weight, origin


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
    threshold, weight, _origin = settings(model, config)
    v = combine.combine(
        prediction.probabilities,
        prediction.familiarity,
        phrase_probabilities(phrases),
        threshold,
        weight,
    )
    said = phrases.explanation().removeprefix("classifier: ")
    features = prediction.top
    from_words = f" from {prediction.because()}" if features else ""
    knew = (
        f", knowing {prediction.familiarity:.0%} of the words"
        if prediction.familiarity < 0.995
        else ""
    )
    model_said = f"{v.model_category} {v.model_confidence:.2f}"
    if v.decided_by == "model":
        because = (
            f"classifier: {v.category} {v.confidence:.2f} decided by the trained model "
            f"v{model.version} ({model_said}, sure enough: threshold {threshold:.2f}{knew})"
            f"{from_words}; phrases said {said}"
        )
    else:
        because = (
            f"classifier: {v.category} {v.confidence:.2f} from the trained model "
            f"v{model.version} ({model_said}, below its threshold {threshold:.2f}{knew}"
            f"{from_words}) combined with the phrases ({said}), the model weighing "
            f"{weight:.2f}"
        )
    return Guess(v.category, v.confidence, because, v.decided_by, features)
