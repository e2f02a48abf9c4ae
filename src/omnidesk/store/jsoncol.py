"""JSON columns are TEXT in both engines."""

from __future__ import annotations

import json
from typing import Any

# One encoder for every call: json.dumps builds a new one whenever it is given
# options.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


def dumps(value: Any) -> str:
    return _ENCODER.encode(value)


def loads(text: str | None, default: Any = None) -> Any:
    if text is None or text == "":
        return default
    return json.loads(text)
