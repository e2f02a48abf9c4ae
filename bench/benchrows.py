"""The rows a benchmark reports, for ``bench/run_all.py``.

Each ``bench/bench_*.py`` prints its own table and also calls :func:`record`
once per row. With ``OMNIDESK_BENCH_ROWS`` set (``run_all.py`` sets it) each
row is appended to that file as one JSON line; otherwise nothing happens.
``ratio`` is the bench's own comparison with its same-run baseline, as its
table shows it (what it divides by what is in ``ratio_means``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

ENV = "OMNIDESK_BENCH_ROWS"
DEFAULT_RATIO = "value / baseline"


def record(
    bench: str,
    what: str,
    value: float,
    unit: str,
    *,
    baseline: str,
    baseline_value: float | None,
    ratio: float | None,
    ratio_means: str = DEFAULT_RATIO,
) -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    row = {
        "bench": bench,
        "what": what,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "baseline_value": baseline_value,
        "ratio": ratio,
        "ratio_means": ratio_means,
    }
    with Path(path).open("a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
