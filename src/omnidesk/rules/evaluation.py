"""Scoring the classifier against labelled messages (``omnidesk classify eval``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from omnidesk.model import Category, RuleInput

from .engine import RuleSet

CATEGORIES = tuple(c.value for c in Category)
NOT_COMPLAINT = "not_complaint"


@dataclass(frozen=True, slots=True)
class ClassMetrics:
    precision: float
    recall: float
    f1: float
    support: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "support": self.support,
        }


@dataclass(frozen=True, slots=True)
class EvalReport:
    labels: list[str]
    confusion: dict[str, dict[str, int]]  # true label -> predicted label -> count
    per_class: dict[str, ClassMetrics]
    macro_f1: float  # mean F1 over the labels that occur in the data
    accuracy: float
    total: int
    binary: bool  # complaint vs not_complaint

    def to_dict(self) -> dict[str, Any]:
        return {
            "macro_f1": round(self.macro_f1, 4),
            "accuracy": round(self.accuracy, 4),
            "per_class": {k: v.to_dict() for k, v in self.per_class.items()},
            "confusion": self.confusion,
            "labels": list(self.labels),
            "total": self.total,
            "mode": "binary" if self.binary else "multiclass",
        }

    def format(self) -> str:
        width = max(len("label"), *(len(label) for label in self.labels)) + 2
        mode = "complaint vs the rest" if self.binary else "inquiry / feedback / complaint"
        out = [f"{self.total} messages, scored as {mode}", ""]
        out.append(f"{'label':<{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}")
        for label in self.labels:
            m = self.per_class[label]
            out.append(
                f"{label:<{width}}{m.precision:>10.3f}{m.recall:>10.3f}{m.f1:>10.3f}"
                f"{m.support:>10d}"
            )
        out += ["", f"macro-F1 {self.macro_f1:.3f}   accuracy {self.accuracy:.3f}", ""]
        out.append("confusion (rows: true label, columns: predicted)")
        out.append(" " * width + "".join(f"{label:>{width}}" for label in self.labels))
        for t in self.labels:
            row = self.confusion[t]
            out.append(f"{t:<{width}}" + "".join(f"{row[p]:>{width}d}" for p in self.labels))
        return "\n".join(out)


def _input(record: Mapping[str, Any]) -> RuleInput:
    channel = str(record.get("channel") or "eval")
    contact = record.get("contact")
    return RuleInput(
        channel=channel,
        channel_type=channel,
        sender=str(record.get("sender") or ""),
        subject=str(record.get("subject") or ""),
        text=str(record["text"]),
        language=record.get("language"),
        contact=contact if isinstance(contact, Mapping) else {},
    )


def evaluate_labelled(ruleset: RuleSet, records: Iterable[Mapping[str, Any]]) -> EvalReport:
    """Classify every record and compare with its ``label``.

    Labels are inquiry / feedback / complaint, or not_complaint. As soon as one record
    says not_complaint, the whole set is scored as complaint vs the rest (inquiry and
    feedback labels and predictions count as not_complaint). Raises ValueError naming the
    first malformed record (1-based).
    """
    pairs: list[tuple[str, str]] = []
    for n, record in enumerate(records, 1):
        if not isinstance(record, Mapping):
            raise ValueError(f"record {n}: expected an object, got {type(record).__name__}")
        label = record.get("label")
        if label not in (*CATEGORIES, NOT_COMPLAINT):
            raise ValueError(
                f"record {n}: label must be one of {', '.join(CATEGORIES)}, {NOT_COMPLAINT}; "
                f"got {label!r}"
            )
        if not isinstance(record.get("text"), str):
            raise ValueError(f"record {n}: 'text' must be a string")
        predicted = str(ruleset.evaluate(_input(record)).category)
        pairs.append((str(label), predicted))

    binary = any(t == NOT_COMPLAINT for t, _ in pairs)
    if binary:
        labels = ["complaint", NOT_COMPLAINT]
        pairs = [tuple(x if x == "complaint" else NOT_COMPLAINT for x in p) for p in pairs]  # type: ignore[misc]
    else:
        labels = list(CATEGORIES)
    confusion = {t: dict.fromkeys(labels, 0) for t in labels}
    for t, p in pairs:
        confusion[t][p] += 1

    per_class: dict[str, ClassMetrics] = {}
    for label in labels:
        tp = confusion[label][label]
        n_predicted = sum(confusion[t][label] for t in labels)
        support = sum(confusion[label].values())
        precision = tp / n_predicted if n_predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = ClassMetrics(precision, recall, f1, support)
    present = [m.f1 for m in per_class.values() if m.support]
    total = len(pairs)
    correct = sum(confusion[label][label] for label in labels)
    return EvalReport(
        labels=labels,
        confusion=confusion,
        per_class=per_class,
        macro_f1=sum(present) / len(present) if present else 0.0,
        accuracy=correct / total if total else 0.0,
        total=total,
        binary=binary,
    )
