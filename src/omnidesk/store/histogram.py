"""Durations kept as bucket counts, so reports add days up without the rows.

Buckets grow by a factor of 1.2 from 30 seconds to about four months; a
percentile is interpolated inside its bucket, so medians and p90s are within
a few percent of the exact figure (tests/service/test_reports.py measures
it against the sorted values).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping

FIRST = 30.0
RATIO = 1.2
COUNT = 72
# EDGES[i] is the upper edge of bucket i; bucket 0 holds everything under 30 s.
EDGES = [FIRST * RATIO**i for i in range(COUNT)]

Hist = dict[int, int]


def bucket(seconds: float) -> int:
    return min(bisect.bisect_right(EDGES, max(seconds, 0.0)), COUNT)


def add(h: Hist, seconds: float, n: int = 1) -> Hist:
    b = bucket(seconds)
    h[b] = h.get(b, 0) + n
    if h[b] == 0:
        del h[b]
    return h


def merge(into: Hist, other: Mapping[int, int]) -> Hist:
    for b, n in other.items():
        into[b] = into.get(b, 0) + n
    return into


def total(h: Mapping[int, int]) -> int:
    return sum(h.values())


def percentile(h: Mapping[int, int], q: float) -> float | None:
    """The ``q`` quantile (0-1) in seconds, interpolated within its bucket."""
    n = total(h)
    if n <= 0:
        return None
    rank = q * n
    seen = 0
    for b in sorted(h):
        c = h[b]
        if c <= 0:
            continue
        if seen + c >= rank:
            lo = 0.0 if b == 0 else EDGES[b - 1]
            hi = EDGES[b] if b < COUNT else EDGES[-1] * RATIO
            frac = (rank - seen) / c
            if b == 0:
                return lo + (hi - lo) * frac
            # geometric inside a geometric bucket
            return lo * math.exp(math.log(hi / lo) * frac)
        seen += c
    return EDGES[-1]


def from_values(values: Iterable[float]) -> Hist:
    h: Hist = {}
    for v in values:
        add(h, v)
    return h


def dumps(h: Mapping[int, int]) -> str:
    return ",".join(f"{b}:{n}" for b, n in sorted(h.items()) if n)


def loads(text: str | None) -> Hist:
    out: Hist = {}
    if text:
        for part in text.split(","):
            b, _, n = part.partition(":")
            out[int(b)] = out.get(int(b), 0) + int(n)
    return out
