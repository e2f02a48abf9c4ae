"""The trained classifier: a linear model over hashed words and character n-grams.

What it reads of a message (``features``): the folded subject and text (``text.fold``:
case, width, traditional Chinese folded to simplified), cut into words by the same
segmenter the phrases use (``words.segment``; English splits on spaces and punctuation),
and from them

- ``w:`` every word, and ``b:`` every pair of neighbouring words ("not good", 不/满意);
- ``c:`` the character 2- to 4-grams of every word with its edges marked (" refu",
  "nd "; 满意 gives " 满", "满意", "意 "...), which carry a word into its other forms
  and a Chinese word into the words that share its characters.

Each feature is hashed (CRC-32) into ``2**BITS`` slots, so no vocabulary is kept and a
message is turned into numbers in one pass; the weight of a TF-IDF term is
``(1 + log count) * idf`` and a message's vector has length 1. A logistic-regression
model (scikit-learn, multinomial) gives one weight per slot and class; a message's score
for a class is the sum of its features' contributions, so the features that pushed a
decision the hardest are its explanation ("'refund' +0.84").

Training needs scikit-learn; classifying needs only numpy (about 0.1 ms a message). A
model is saved as plain numpy arrays (``.npz``, loaded without pickle) beside a JSON
report, never as a pickled object. ``ModelStore`` keeps the versions in a folder of the
data directory and says which is current.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .text import fold
from .words import has_han, segment

FORMAT = 1
BITS = 18
_MASK = (1 << BITS) - 1
_LATIN_WORD = re.compile(r"[^\W_]+|[^\w\s]")
_CHAR_GRAMS = (2, 3, 4)
_MAX_WORDS = 400  # the top of a long e-mail says what it is about


def _words(folded: str) -> list[str]:
    if has_han(folded):
        out: list[str] = []
        for token in segment(folded):
            token = token.strip()
            if not token:
                continue
            if has_han(token):
                out.append(token)
            else:
                out.extend(_LATIN_WORD.findall(token))
        return out[:_MAX_WORDS]
    return _LATIN_WORD.findall(folded)[:_MAX_WORDS]


def feature_names(subject: str, text: str) -> list[str]:
    """The features of a message, repeated as often as they occur."""
    return _features(subject, text)[0]


def _features(subject: str, text: str) -> tuple[list[str], list[str]]:
    """The features, and for each the words it comes from (what an explanation shows:
    a letter n-gram's weight is its word's)."""
    words = _words(fold(f"{subject}\n{text}" if subject else text))
    names = [f"w:{w}" for w in words]
    sources = list(words)
    for a, b in itertools.pairwise(words):
        names.append(f"b:{a} {b}")
        sources.append(f"{a} {b}" if a.isascii() or b.isascii() else a + b)
    for w in words:
        if not w[0].isalnum():
            continue  # punctuation is a word feature only
        marked = f" {w} "
        for n in _CHAR_GRAMS:
            if n > len(marked):
                break
            grams = [f"c:{marked[i : i + n]}" for i in range(len(marked) - n + 1)]
            names += grams
            sources += [w] * len(grams)
    return names, sources


def _slot(name: str) -> int:
    return zlib.crc32(name.encode()) & _MASK


def vectorize(names: Sequence[str], idf: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Slots, their TF-IDF values (unit length) and one name per slot (the first seen)."""
    counts: Counter[int] = Counter()
    first: dict[int, str] = {}
    for name in names:
        slot = _slot(name)
        counts[slot] += 1
        first.setdefault(slot, name)
    if not counts:
        return np.zeros(0, np.int64), np.zeros(0, np.float32), []
    slots = np.fromiter(counts.keys(), np.int64, len(counts))
    tf = np.fromiter(counts.values(), np.float32, len(counts))
    values = (1.0 + np.log(tf)) * idf[slots]
    norm = float(np.sqrt(np.dot(values, values)))
    if norm > 0:
        values /= norm
    return slots, values.astype(np.float32), [first[int(s)] for s in slots]


@dataclass(slots=True)
class Prediction:
    label: str  # one of the model's classes
    confidence: float
    probabilities: dict[str, float]
    # The features that pushed hardest towards ``label``: (shown name, contribution).
    top: list[tuple[str, float]] = field(default_factory=list)

    def because(self, n: int = 5) -> str:
        return ", ".join(f"{name} ({w:+.2f})" for name, w in self.top[:n])


class TrainedModel:
    """Immutable once loaded; ``predict`` may be called from any thread."""

    def __init__(
        self,
        classes: Sequence[str],
        weights: np.ndarray,  # (2**BITS, len(classes)) float32
        bias: np.ndarray,  # (len(classes),)
        idf: np.ndarray,  # (2**BITS,) float32
        *,
        version: int = 0,
        report: dict[str, Any] | None = None,
    ) -> None:
        self.classes = tuple(classes)
        self.weights = weights
        self.bias = bias
        self.idf = idf
        self.version = version
        self.report: dict[str, Any] = report or {}

    def predict(self, subject: str, text: str, *, top: int = 5) -> Prediction:
        names, sources = _features(subject, text)
        slots, values, first = vectorize(names, self.idf)
        w = self.weights[slots]
        logits = values @ w + self.bias if len(slots) else self.bias.copy()
        exp = np.exp(logits - logits.max())
        probs = exp / exp.sum()
        best = int(np.argmax(probs))
        contributions: list[tuple[str, float]] = []
        if top and len(slots):
            # What a feature adds to the winner beyond what it adds to the average class,
            # summed over the words the features come from.
            push = values * (w[:, best] - w.mean(axis=1))
            source_of = dict(zip(names, sources, strict=True))
            by_word: dict[str, float] = {}
            for i in np.flatnonzero(push):
                word = source_of[first[i]]
                by_word[word] = by_word.get(word, 0.0) + float(push[i])
            ranked = sorted(by_word.items(), key=lambda kv: -kv[1])[:top]
            contributions = [(f"'{word}'", v) for word, v in ranked if v > 0]
        return Prediction(
            self.classes[best],
            float(probs[best]),
            {c: float(p) for c, p in zip(self.classes, probs, strict=True)},
            contributions,
        )

    # -- files ----------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Only the slots that carry weight are written (a few MB at most)."""
        used = np.flatnonzero(np.any(self.weights != 0, axis=1))
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as f:
            np.savez_compressed(
                f,
                format=np.array(FORMAT),
                bits=np.array(BITS),
                classes=np.array(self.classes),
                slots=used.astype(np.int32),
                weights=self.weights[used],
                bias=self.bias,
                idf=self.idf[used],
                default_idf=np.array(float(self.idf.max()) if self.idf.size else 1.0),
            )
        os.replace(tmp, path)

    @classmethod
    def load(
        cls, path: Path, *, version: int = 0, report: dict[str, Any] | None = None
    ) -> TrainedModel:
        with np.load(path, allow_pickle=False) as z:
            if int(z["format"]) != FORMAT or int(z["bits"]) != BITS:
                raise ValueError(f"{path}: a model of another format ({int(z['format'])})")
            classes = [str(c) for c in z["classes"]]
            weights = np.zeros((1 << BITS, len(classes)), np.float32)
            idf = np.full(1 << BITS, float(z["default_idf"]), np.float32)
            slots = z["slots"].astype(np.int64)
            weights[slots] = z["weights"]
            idf[slots] = z["idf"]
            bias = z["bias"].astype(np.float32)
        return cls(classes, weights, bias, idf, version=version, report=report)


# -- training ------------------------------------------------------------------------


@dataclass(slots=True)
class Example:
    text: str
    label: str
    subject: str = ""
    weight: float = 1.0


Hashed = tuple[np.ndarray, np.ndarray]  # a message's slots and how often each occurs


def hashed(names: Sequence[str]) -> Hashed:
    counts = Counter(_slot(n) for n in names)
    return (
        np.fromiter(counts.keys(), np.int64, len(counts)),
        np.fromiter(counts.values(), np.float32, len(counts)),
    )


def _matrix(rows: Sequence[Hashed], idf: np.ndarray) -> Any:
    """TF-IDF rows (unit length) as a sparse matrix over every slot."""
    from scipy.sparse import csr_matrix

    data = []
    for slots, tf in rows:
        v = (1.0 + np.log(tf)) * idf[slots] if len(slots) else tf
        norm = float(np.sqrt(np.dot(v, v))) if len(v) else 0.0
        data.append(v / norm if norm > 0 else v)
    indptr = np.cumsum([0] + [len(s) for s, _ in rows])
    return csr_matrix(
        (
            np.concatenate(data) if data else np.zeros(0, np.float32),
            np.concatenate([s for s, _ in rows]) if rows else np.zeros(0, np.int64),
            indptr,
        ),
        shape=(len(rows), 1 << BITS),
    )


def _idf(rows: Sequence[Hashed]) -> np.ndarray:
    df = np.zeros(1 << BITS, np.float64)
    for slots, _ in rows:
        df[slots] += 1
    n = len(rows)
    return (np.log((1 + n) / (1 + df)) + 1).astype(np.float32)


C_REGULARISATION = 32.0  # chosen on a development split of the training parts


def fit(rows: Sequence[Hashed], labels: Sequence[str], weights: Sequence[float]) -> TrainedModel:
    from sklearn.linear_model import LogisticRegression

    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ValueError(f"training needs at least two labels, got {classes or 'none'}")
    idf = _idf(rows)
    x = _matrix(rows, idf)
    # Only the slots that occur: L-BFGS then works on tens of thousands of weights
    # per class instead of 2**BITS (several times faster); the rest stay 0.
    used = np.unique(x.indices)
    x = x[:, used]
    y = np.array([classes.index(label) for label in labels])
    lr = LogisticRegression(C=C_REGULARISATION, max_iter=2000, class_weight="balanced")
    lr.fit(x, y, sample_weight=np.asarray(weights, np.float64))
    coef = lr.coef_.astype(np.float32)
    intercept = lr.intercept_.astype(np.float32)
    if len(classes) == 2:  # one column for the second class; the first scores 0
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.array([0.0, intercept[0]], np.float32)
    full = np.zeros((1 << BITS, len(classes)), np.float32)
    full[used] = coef.T
    return TrainedModel(classes, full, intercept, idf)


def _predict_rows(model: TrainedModel, rows: Sequence[Hashed]) -> list[str]:
    x = _matrix(rows, model.idf)
    logits = x @ model.weights + model.bias
    return [model.classes[i] for i in np.asarray(logits).argmax(axis=1)]


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


def train(
    examples: Sequence[Example],
    *,
    folds: int = 5,
    sources: Sequence[str] = (),
    progress: Callable[[str], None] | None = None,
) -> TrainedModel:
    """Train on ``examples`` and write a report: sizes, a ``folds``-fold cross-validated
    score (each fold trained on the rest), and the figures on the training data."""
    started = time.perf_counter()
    say = progress or (lambda _s: None)
    say(f"reading {len(examples)} examples")
    rows = [hashed(feature_names(e.subject, e.text)) for e in examples]
    labels = [e.label for e in examples]
    weights = [e.weight for e in examples]
    cv: dict[str, Any] | None = None
    if folds >= 2 and len(examples) >= folds * 2:
        truth: list[str] = []
        predicted: list[str] = []
        fold_of = [i % folds for i in range(len(examples))]
        for k in range(folds):
            say(f"cross-validation fold {k + 1} of {folds}")
            tr = [i for i, f in enumerate(fold_of) if f != k]
            te = [i for i, f in enumerate(fold_of) if f == k]
            if len({labels[i] for i in tr}) < 2:
                continue
            m = fit([rows[i] for i in tr], [labels[i] for i in tr], [weights[i] for i in tr])
            truth += [labels[i] for i in te]
            predicted += _predict_rows(m, [rows[i] for i in te])
        cv = metrics(truth, predicted) | {"folds": folds}
    say("training on everything")
    model = fit(rows, labels, weights)
    model.report = {
        "trained_at": time.time(),
        "examples": len(examples),
        "labels": dict(Counter(labels)),
        "weighted": sum(1 for w in weights if w != 1.0),
        "sources": list(sources),
        "cross_validated": cv,
        "features": {"bits": BITS, "char_grams": list(_CHAR_GRAMS), "c": C_REGULARISATION},
        "seconds": round(time.perf_counter() - started, 2),
    }
    return model


def evaluate(model: TrainedModel, examples: Iterable[Example]) -> dict[str, Any]:
    ex = list(examples)
    rows = [hashed(feature_names(e.subject, e.text)) for e in ex]
    return metrics([e.label for e in ex], _predict_rows(model, rows))


# -- versions on disk ------------------------------------------------------------------


class ModelStore:
    """``DIR/model-000003.npz`` + ``model-000003.json`` (the report) per version, and
    ``DIR/CURRENT`` naming the version in use. Installing a version rewrites CURRENT
    (atomically); every process that holds a model watches that file."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _paths(self, version: int) -> tuple[Path, Path]:
        stem = self.directory / f"model-{version:06d}"
        return stem.with_suffix(".npz"), stem.with_suffix(".json")

    def current_version(self) -> int | None:
        try:
            return int((self.directory / "CURRENT").read_text().strip())
        except (OSError, ValueError):
            return None

    def versions(self) -> list[int]:
        if not self.directory.is_dir():
            return []
        out = []
        for p in self.directory.glob("model-*.npz"):
            try:
                out.append(int(p.stem.removeprefix("model-")))
            except ValueError:
                continue
        return sorted(out)

    def save(self, model: TrainedModel, *, install: bool) -> int:
        """Write ``model`` as the next version; ``install``: make it the current one."""
        self.directory.mkdir(parents=True, exist_ok=True)
        version = max(self.versions(), default=0) + 1
        npz, report = self._paths(version)
        model.version = version
        model.report = {**model.report, "version": version}
        model.save(npz)
        tmp = report.with_name(report.name + ".tmp")
        tmp.write_text(json.dumps(model.report, ensure_ascii=False, indent=2))
        os.replace(tmp, report)
        if install:
            self.install(version)
        return version

    def install(self, version: int) -> None:
        if not self._paths(version)[0].is_file():
            raise FileNotFoundError(f"no model version {version} in {self.directory}")
        tmp = self.directory / "CURRENT.tmp"
        tmp.write_text(f"{version}\n")
        os.replace(tmp, self.directory / "CURRENT")

    def report(self, version: int) -> dict[str, Any]:
        try:
            data = json.loads(self._paths(version)[1].read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def load(self, version: int | None = None) -> TrainedModel | None:
        version = self.current_version() if version is None else version
        if version is None:
            return None
        return TrainedModel.load(
            self._paths(version)[0], version=version, report=self.report(version)
        )
