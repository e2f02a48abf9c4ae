"""The trained classifier: a linear model over hashed words and character n-grams.

What it reads of a message (``features``): the folded subject and text (``text.fold``:
case, width, traditional Chinese folded to simplified), cut into words by the same
segmenter the phrases use (``words.segment``; English splits on spaces and punctuation),
and from them

- ``w:`` every word, and ``b:`` every pair of neighbouring words ("not good", 不/满意);
- ``c:`` the character 2- to 4-grams of every word with its edges marked (" refu",
  "nd "; 满意 gives " 满", "满意", "意 "...), which carry a word into its other forms
  and a Chinese word into the words that share its characters.

Each feature is hashed (CRC-32) into ``2**BITS`` slots, so no vocabulary of features is
kept and a message is turned into numbers in one pass; the weight of a TF-IDF term is
``(1 + log count) * idf``, the words, the pairs and the n-grams are each scaled to
length 1, then the whole vector. A logistic-regression model (scikit-learn,
multinomial) gives one weight per slot and class; a message's score for a class is the
sum of its features' contributions, so the features that pushed a decision the hardest
are its explanation ("'refund' +0.84"). The model also keeps the CRC-32s of the words it
saw: a message's ``familiarity`` (the share of its words among them) tells how far its
verdict can be trusted (``combine.py``).

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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
else:

    class _Numpy:
        """numpy on first use: a daemon with no trained model installed never
        imports it (about 12 MB of its resident memory)."""

        def __getattr__(self, name: str) -> Any:
            import numpy

            globals()["np"] = numpy
            return getattr(numpy, name)

    np = _Numpy()

from omnidesk.model import Category

from .scores import metrics
from .text import fold
from .words import has_han, segment

FORMAT = 2  # 1: without word groups scaled apart, nor the vocabulary
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


_GROUPS = {"w": 0, "b": 1, "c": 2}


def _encode(names: Sequence[str]) -> tuple[Counter[int], set[int]]:
    """How often each (group, slot) occurs, as ``group << BITS | slot``, and the full
    CRC-32 of every word (what ``familiarity`` looks up)."""
    counts: Counter[int] = Counter()
    words: set[int] = set()
    for name in names:
        crc = zlib.crc32(name.encode())
        counts[(_GROUPS[name[0]] << BITS) | (crc & _MASK)] += 1
        if name[0] == "w" and name[2].isalnum():
            words.add(crc)
    return counts, words


def _tfidf(keys: np.ndarray, tf: np.ndarray, idf: np.ndarray, grouped: bool) -> np.ndarray:
    """``(1 + log count) * idf`` per feature; each group (words, pairs, letter n-grams)
    scaled to unit length so that the many n-grams of a message do not drown its few
    words (worth about +0.01 macro-F1 in cross-validation), then the whole to unit
    length."""
    values = (1.0 + np.log(tf)) * idf[keys & _MASK]
    if grouped and len(values):
        groups = keys >> BITS
        norms = np.sqrt(np.bincount(groups, weights=values * values, minlength=len(_GROUPS)))
        values = values / np.where(norms > 0, norms, 1.0)[groups]
    norm = float(np.sqrt(np.dot(values, values))) if len(values) else 0.0
    return (values / norm if norm > 0 else values).astype(np.float32)


def _known_share(words: set[int] | np.ndarray, vocabulary: np.ndarray | None) -> float:
    """The share of a message's words found in ``vocabulary`` (sorted); 1 without one."""
    if vocabulary is None:
        return 1.0
    if not len(words):
        return 0.0
    w = np.fromiter(words, np.uint32, len(words)) if isinstance(words, set) else words
    at = np.searchsorted(vocabulary, w).clip(max=max(len(vocabulary) - 1, 0))
    return float(np.mean(vocabulary[at] == w)) if len(vocabulary) else 0.0


@dataclass(slots=True)
class Prediction:
    label: str  # one of the model's classes
    confidence: float
    probabilities: dict[str, float]
    # The features that pushed hardest towards ``label``: (shown name, contribution).
    top: list[tuple[str, float]] = field(default_factory=list)
    # The share of the message's words the model saw in training (1: all of them).
    familiarity: float = 1.0

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
        vocabulary: np.ndarray | None = None,  # sorted CRC-32s of the words seen
        grouped: bool = True,  # format 1 scaled the whole vector only
        familiar_at: float = 1.0,  # this share of known words counts as fully familiar
        version: int = 0,
        report: dict[str, Any] | None = None,
    ) -> None:
        self.classes = tuple(classes)
        self.weights = weights
        self.bias = bias
        self.idf = idf
        self.vocabulary = vocabulary
        self.grouped = grouped
        self.familiar_at = familiar_at
        self.version = version
        self.report: dict[str, Any] = report or {}

    @property
    def combination(self) -> dict[str, float]:
        """The threshold and weight chosen in training (``combine.choose``), if any."""
        chosen = self.report.get("combination")
        return chosen if isinstance(chosen, dict) else {}

    def predict(self, subject: str, text: str, *, top: int = 5) -> Prediction:
        names, sources = _features(subject, text)
        counts, words = _encode(names)
        keys = np.fromiter(counts.keys(), np.int64, len(counts))
        values = _tfidf(
            keys, np.fromiter(counts.values(), np.float32, len(counts)), self.idf, self.grouped
        )
        w = self.weights[keys & _MASK]
        logits = values @ w + self.bias if len(keys) else self.bias.copy()
        exp = np.exp(logits - logits.max())
        probs = exp / exp.sum()
        best = int(np.argmax(probs))
        contributions: list[tuple[str, float]] = []
        if top and len(keys):
            # What a feature adds to the winner beyond what it adds to the average class,
            # summed over the words the features come from.
            push = values * (w[:, best] - w.mean(axis=1))
            word_of: dict[int, str] = {}
            for name, source in zip(names, sources, strict=True):
                word_of.setdefault(
                    (_GROUPS[name[0]] << BITS) | (zlib.crc32(name.encode()) & _MASK), source
                )
            by_word: dict[str, float] = {}
            for i in np.flatnonzero(push):
                word = word_of[int(keys[i])]
                by_word[word] = by_word.get(word, 0.0) + float(push[i])
            ranked = sorted(by_word.items(), key=lambda kv: -kv[1])[:top]
            contributions = [(f"'{word}'", v) for word, v in ranked if v > 0]
        return Prediction(
            self.classes[best],
            float(probs[best]),
            {c: float(p) for c, p in zip(self.classes, probs, strict=True)},
            contributions,
            self._familiarity(_known_share(words, self.vocabulary)),
        )

    def _familiarity(self, known: float) -> float:
        return min(1.0, known / self.familiar_at) if self.familiar_at > 0 else 1.0

    # -- files ----------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Only the slots that carry weight are written (a few MB at most)."""
        used = np.flatnonzero(np.any(self.weights != 0, axis=1))
        tmp = path.with_name(path.name + ".tmp")
        vocabulary = self.vocabulary if self.vocabulary is not None else np.zeros(0, np.uint32)
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
                vocabulary=vocabulary.astype(np.uint32),
                familiar_at=np.array(self.familiar_at),
            )
        os.replace(tmp, path)

    @classmethod
    def load(
        cls, path: Path, *, version: int = 0, report: dict[str, Any] | None = None
    ) -> TrainedModel:
        with np.load(path, allow_pickle=False) as z:
            fmt = int(z["format"])
            if fmt not in (1, FORMAT) or int(z["bits"]) != BITS:
                raise ValueError(f"{path}: a model of another format ({fmt})")
            classes = [str(c) for c in z["classes"]]
            weights = np.zeros((1 << BITS, len(classes)), np.float32)
            idf = np.full(1 << BITS, float(z["default_idf"]), np.float32)
            slots = z["slots"].astype(np.int64)
            weights[slots] = z["weights"]
            idf[slots] = z["idf"]
            bias = z["bias"].astype(np.float32)
            vocabulary = np.sort(z["vocabulary"].astype(np.uint32)) if fmt >= 2 else None
            familiar_at = float(z["familiar_at"]) if fmt >= 2 else 1.0
        return cls(
            classes,
            weights,
            bias,
            idf,
            vocabulary=vocabulary,
            grouped=fmt >= 2,
            familiar_at=familiar_at,
            version=version,
            report=report,
        )


# -- training ------------------------------------------------------------------------


@dataclass(slots=True)
class Example:
    text: str
    label: str
    subject: str = ""
    weight: float = 1.0


@dataclass(slots=True)
class Hashed:
    """A message as training sees it: its (group, slot) keys, how often each occurs,
    and the CRC-32s of its words."""

    keys: np.ndarray
    tf: np.ndarray
    words: np.ndarray

    @classmethod
    def of(cls, names: Sequence[str]) -> Hashed:
        counts, words = _encode(names)
        return cls(
            np.fromiter(counts.keys(), np.int64, len(counts)),
            np.fromiter(counts.values(), np.float32, len(counts)),
            np.fromiter(words, np.uint32, len(words)),
        )


def _matrix(rows: Sequence[Hashed], idf: np.ndarray) -> Any:
    """TF-IDF rows (unit length) as a sparse matrix over every slot."""
    from scipy.sparse import csr_matrix

    data = [_tfidf(r.keys, r.tf, idf, True) for r in rows]
    indptr = np.cumsum([0] + [len(r.keys) for r in rows])
    x = csr_matrix(
        (
            np.concatenate(data) if data else np.zeros(0, np.float32),
            np.concatenate([r.keys & _MASK for r in rows]) if rows else np.zeros(0, np.int64),
            indptr,
        ),
        shape=(len(rows), 1 << BITS),
    )
    x.sum_duplicates()  # a word and an n-gram may share a slot
    return x


def _idf(rows: Sequence[Hashed]) -> np.ndarray:
    df = np.zeros(1 << BITS, np.float64)
    for r in rows:
        df[np.unique(r.keys & _MASK)] += 1
    n = len(rows)
    return (np.log((1 + n) / (1 + df)) + 1).astype(np.float32)


# Chosen by 5-fold cross-validation on the training parts of the shared sets (English
# tweets, food-delivery reviews, the three-class mix); never on their test parts.
C_REGULARISATION = 16.0


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
    vocabulary = np.unique(np.concatenate([r.words for r in rows])) if rows else None
    return TrainedModel(classes, full, intercept, idf, vocabulary=vocabulary)


def _predict_rows(
    model: TrainedModel, rows: Sequence[Hashed]
) -> tuple[list[dict[str, float]], list[float]]:
    """Each row's probabilities per class and its familiarity."""
    x = _matrix(rows, model.idf)
    logits = np.asarray(x @ model.weights + model.bias)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = exp / exp.sum(axis=1, keepdims=True)
    return (
        [dict(zip(model.classes, map(float, p), strict=True)) for p in probs],
        [model._familiarity(_known_share(r.words, model.vocabulary)) for r in rows],
    )


def _labels_of(probabilities: Sequence[dict[str, float]]) -> list[str]:
    return [max(p, key=p.__getitem__) for p in probabilities]


PhraseVerdict = tuple[Category, dict[Category, float]]  # the phrases' category, probabilities


def train(
    examples: Sequence[Example],
    *,
    folds: int = 5,
    sources: Sequence[str] = (),
    progress: Callable[[str], None] | None = None,
    phrases: Sequence[PhraseVerdict] | None = None,
) -> TrainedModel:
    """Train on ``examples`` and write a report: sizes, a ``folds``-fold cross-validated
    score (each fold trained on the rest), and the figures on the training data.

    ``phrases``: what the shipped phrases say of each example. With them, the
    cross-validated predictions also choose how the model and the phrases are combined
    (``combine.choose``: threshold, weight, and the scores of each way)."""
    started = time.perf_counter()
    say = progress or (lambda _s: None)
    say(f"reading {len(examples)} examples")
    rows = [Hashed.of(feature_names(e.subject, e.text)) for e in examples]
    labels = [e.label for e in examples]
    weights = [e.weight for e in examples]
    cv: dict[str, Any] | None = None
    combination: dict[str, float] | None = None
    familiar_at = 1.0
    if folds >= 2 and len(examples) >= folds * 2:
        fold_of = [i % folds for i in range(len(examples))]
        probabilities: list[dict[str, float] | None] = [None] * len(examples)
        familiarity = [1.0] * len(examples)
        for k in range(folds):
            say(f"cross-validation fold {k + 1} of {folds}")
            tr = [i for i, f in enumerate(fold_of) if f != k]
            te = [i for i, f in enumerate(fold_of) if f == k]
            if len({labels[i] for i in tr}) < 2:
                continue
            m = fit([rows[i] for i in tr], [labels[i] for i in tr], [weights[i] for i in tr])
            probs, known = _predict_rows(m, [rows[i] for i in te])
            for i, p, f in zip(te, probs, known, strict=True):
                probabilities[i], familiarity[i] = p, f
        scored = [i for i, p in enumerate(probabilities) if p is not None]
        done = [p for p in probabilities if p is not None]
        cv = metrics([labels[i] for i in scored], _labels_of(done)) | {"folds": folds}
        if scored:
            # Held-out messages of its own kind: as familiar as three in four of them
            # counts as fully familiar; only a message stranger than that is doubted.
            familiar_at = float(np.quantile([familiarity[i] for i in scored], 0.25)) or 1.0
        if phrases is not None and scored:
            from .combine import choose

            combination = choose(
                done,
                [min(1.0, familiarity[i] / familiar_at) for i in scored],
                [phrases[i][1] for i in scored],
                [phrases[i][0] for i in scored],
                [labels[i] for i in scored],
            )
    say("training on everything")
    model = fit(rows, labels, weights)
    model.familiar_at = familiar_at
    model.report = {
        "trained_at": time.time(),
        "examples": len(examples),
        "labels": dict(Counter(labels)),
        "weighted": sum(1 for w in weights if w != 1.0),
        "sources": list(sources),
        "cross_validated": cv,
        "combination": combination,
        "features": {
            "bits": BITS,
            "char_grams": list(_CHAR_GRAMS),
            "c": C_REGULARISATION,
            "words_known": len(model.vocabulary) if model.vocabulary is not None else 0,
            "familiar_at": round(familiar_at, 4),
        },
        "seconds": round(time.perf_counter() - started, 2),
    }
    return model


def evaluate(model: TrainedModel, examples: Iterable[Example]) -> dict[str, Any]:
    ex = list(examples)
    rows = [Hashed.of(feature_names(e.subject, e.text)) for e in ex]
    return metrics([e.label for e in ex], _labels_of(_predict_rows(model, rows)[0]))


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
