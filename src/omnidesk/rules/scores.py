"""What a set of predicted labels scores against the truth: accuracy,
macro-F1 and per-class precision, recall and F1 (training, its
cross-validation, and the choice of how model and phrases combine)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def metrics(truth: Sequence[str], predicted: Sequence[str]) -> dict[str, Any]:
    labels = sorted(set(truth) | set(predicted))
    per_class: dict[str, dict[str, float]] = {}
    for label in labels:
        tp = sum(1 for t, p in zip(truth, predicted, strict=True) if t == p == label)
        n_pred = sum(1 for p in predicted if p == label)
        support = sum(1 for t in truth if t == label)
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "support": support,
        }
    present = [m["f1"] for m in per_class.values() if m["support"]]
    correct = sum(1 for t, p in zip(truth, predicted, strict=True) if t == p)
    return {
        "accuracy": round(correct / len(truth), 4) if truth else 0.0,
        "macro_f1": round(sum(present) / len(present), 4) if present else 0.0,
        "per_class": per_class,
        "total": len(truth),
    }
