"""Bytes -> text for mail, where the declared charset is a hint, not a fact.

Mail in the wild is labelled with the charset a client *meant*, not the one it
wrote: GB2312 labels on GBK/GB18030 text, Big5 on HKSCS or Microsoft's cp950,
Shift_JIS on cp932 (NEC/IBM extensions), EUC-KR on cp949 (Unified Hangul),
ISO-8859-1 on windows-1252 or even UTF-8, US-ASCII on 8-bit text. We therefore

1. map each label to the superset(s) real clients emit and decode strictly;
2. for single-byte labels, prefer strict UTF-8 when the bytes are valid
   non-ASCII UTF-8 (a Latin-1 text that happens to be valid UTF-8 is rarer than
   a mislabelled UTF-8 one by orders of magnitude);
3. only when that fails, ask charset-normalizer (slow: milliseconds) for a
   decoding that is clean;
4. and only when no clean decoding exists, decode with replacement characters,
   the declared charset first.

So U+FFFD only appears where the bytes are really broken.
"""

from __future__ import annotations

import codecs
from functools import lru_cache

# Labels mapped to the decoders to try, in order. Keys are normalized labels
# (lower case, "_" and " " turned into "-"), values are Python codec names.
_SUPERSETS: dict[str, tuple[str, ...]] = {
    # Chinese, simplified: every GB2312/GBK text is valid GB18030.
    "gb2312": ("gb18030",),
    "gb-2312": ("gb18030",),
    "gb-2312-80": ("gb18030",),
    "csgb2312": ("gb18030",),
    "euc-cn": ("gb18030",),
    "x-euc-cn": ("gb18030",),
    "gbk": ("gb18030",),
    "x-gbk": ("gb18030",),
    "cp936": ("gb18030",),
    "ms936": ("gb18030",),
    "windows-936": ("gb18030",),
    "chinese": ("gb18030",),
    "gb18030": ("gb18030",),
    "hz-gb-2312": ("hz",),
    # Chinese, traditional: HKSCS and Microsoft's cp950 each extend Big5
    # differently; try both.
    "big5": ("big5hkscs", "cp950"),
    "big-5": ("big5hkscs", "cp950"),
    "x-x-big5": ("big5hkscs", "cp950"),
    "cn-big5": ("big5hkscs", "cp950"),
    "csbig5": ("big5hkscs", "cp950"),
    "big5-hkscs": ("big5hkscs", "cp950"),
    "cp950": ("cp950", "big5hkscs"),
    "ms950": ("cp950", "big5hkscs"),
    "windows-950": ("cp950", "big5hkscs"),
    # Japanese.
    "shift-jis": ("cp932",),
    "shiftjis": ("cp932",),
    "sjis": ("cp932",),
    "x-sjis": ("cp932",),
    "s-jis": ("cp932",),
    "ms-kanji": ("cp932",),
    "csshiftjis": ("cp932",),
    "windows-31j": ("cp932",),
    "cp932": ("cp932",),
    "iso-2022-jp": ("iso2022_jp_2", "iso2022_jp_ext", "iso2022_jp_3"),
    "csiso2022jp": ("iso2022_jp_2", "iso2022_jp_ext", "iso2022_jp_3"),
    "iso-2022-jp-2": ("iso2022_jp_2", "iso2022_jp_ext"),
    "euc-jp": ("euc_jp", "euc_jis_2004"),
    "x-euc-jp": ("euc_jp", "euc_jis_2004"),
    "eucjp": ("euc_jp", "euc_jis_2004"),
    # Korean: cp949 (Unified Hangul Code) is what Windows and most webmail emit.
    "euc-kr": ("cp949",),
    "ks-c-5601-1987": ("cp949",),
    "ks-c-5601": ("cp949",),
    "ksc5601": ("cp949",),
    "ksc-5601": ("cp949",),
    "korean": ("cp949",),
    "cp949": ("cp949",),
    "windows-949": ("cp949",),
    "iso-2022-kr": ("iso2022_kr",),
    # Western: as in WHATWG, ASCII and Latin-1 labels mean windows-1252.
    "us-ascii": ("cp1252",),
    "ascii": ("cp1252",),
    "ansi-x3.4-1968": ("cp1252",),
    "iso-8859-1": ("cp1252",),
    "iso8859-1": ("cp1252",),
    "latin1": ("cp1252",),
    "latin-1": ("cp1252",),
    "l1": ("cp1252",),
    "cp819": ("cp1252",),
    "iso-8859-9": ("cp1254",),
    "latin5": ("cp1254",),
    "iso-8859-11": ("cp874",),
    "tis-620": ("cp874",),
    "iso-8859-8-i": ("iso8859_8",),
    "windows-874": ("cp874",),
    # Unicode.
    "utf-8": ("utf-8",),
    "utf8": ("utf-8",),
    "unicode-1-1-utf-8": ("utf-8",),
    "utf-7": ("utf-7",),
    "unicode-1-1-utf-7": ("utf-7",),
    "utf-16": ("utf-16",),
    "utf-16le": ("utf-16-le",),
    "utf-16be": ("utf-16-be",),
    "unicode": ("utf-16",),
    "utf-32": ("utf-32",),
    "utf-32le": ("utf-32-le",),
    "utf-32be": ("utf-32-be",),
}

# Decoders whose encoded form is not ASCII-compatible: an ASCII-only byte
# string may still mean something else (UTF-7 "+AOk-", ISO-2022 escapes,
# UTF-16 NULs), so the ASCII fast path must not apply.
_NOT_ASCII_SAFE = frozenset(
    {
        "utf-7",
        "utf-16",
        "utf-16-le",
        "utf-16-be",
        "utf-32",
        "utf-32-le",
        "utf-32-be",
        "hz",
        "iso2022_jp_2",
        "iso2022_jp_ext",
        "iso2022_jp_3",
        "iso2022_kr",
    }
)

# Single-byte decoders: a mislabelled UTF-8 text decodes "cleanly" into
# mojibake with them, so strict UTF-8 goes first.
_SINGLE_BYTE_PREFIXES = ("cp12", "cp8", "iso8859", "latin", "koi8", "mac", "tis", "cp4", "cp7")

# Windows' own codec tables for the ISO-2022-JP extensions are absent from
# Python; cp932 covers them once the JIS bytes are shifted (see below).
_ISO2022JP_LABELS = frozenset({"iso-2022-jp", "csiso2022jp", "iso-2022-jp-2"})

# charset-normalizer guesses wildly on short input ("Über uns" -> Big5) and
# proposes clean-but-wrong decodings of damaged CJK text with a visible
# "chaos" score. Below this size, or above this chaos, its answer is not used.
_MIN_DETECT_BYTES = 64
_MAX_CHAOS = 0.02


def normalize_label(label: str | None) -> str:
    """Lower-case a charset label and fold its separators so aliases meet."""
    if not label:
        return ""
    label = label.strip().strip("\"'").strip().lower()
    # "charset=3Dutf-8" (QP-encoded headers pasted raw) and "utf-8;" happen.
    if label.startswith("3d"):
        label = label[2:]
    label = label.split(";", 1)[0].strip()
    return label.replace("_", "-").replace(" ", "-")


@lru_cache(maxsize=512)
def decoders_for(label: str | None) -> tuple[str, ...]:
    """The Python codecs to try, in order, for a declared charset label.

    An empty tuple means the label is missing or unknown to Python.
    """
    norm = normalize_label(label)
    if not norm:
        return ()
    if norm in _SUPERSETS:
        return _SUPERSETS[norm]
    if norm.startswith("windows-") and norm[8:].isdigit():
        norm = "cp" + norm[8:]
    elif norm.startswith("x-mac-"):
        norm = "mac-" + norm[6:]
    try:
        name = codecs.lookup(norm).name
    except (LookupError, ValueError):  # ValueError: NUL inside the label
        return ()
    # Python knows some labels as the narrow charset; use its superset.
    return _SUPERSETS.get(name.replace("_", "-"), (name,))


def _is_single_byte(codec: str) -> bool:
    return codec.startswith(_SINGLE_BYTE_PREFIXES)


def _try(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


def decode_bytes(data: bytes, declared: str | None = None) -> str:
    """Decode ``data`` labelled ``declared``; never raises.

    Returns text without U+FFFD whenever some clean decoding exists.
    """
    if not data:
        return ""
    candidates = decoders_for(declared)
    if data.isascii() and not (candidates and candidates[0] in _NOT_ASCII_SAFE):
        return data.decode("ascii")
    return _decode_nonascii(data, declared, candidates)


def _decode_nonascii(data: bytes, declared: str | None, candidates: tuple[str, ...]) -> str:
    tried: set[str] = set()
    # A missing, unknown or single-byte label: valid UTF-8 wins (see module doc).
    if not candidates or _is_single_byte(candidates[0]):
        text = _try(data, "utf-8")
        if text is not None:
            return text
        tried.add("utf-8")
    for codec in candidates:
        if codec in tried:
            continue
        tried.add(codec)
        text = _try(data, codec)
        if text is not None and "\ufffd" not in text:
            return text
    if normalize_label(declared) in _ISO2022JP_LABELS:
        text = _iso2022jp_via_cp932(data)
        if text is not None:
            return text
    if "utf-8" not in tried:
        text = _try(data, "utf-8")
        if text is not None:
            return text
    detected = _detect(data)
    if detected is not None:
        return detected
    # No clean decoding exists: the bytes are damaged. Keep the declared
    # charset's reading of the rest when it reads most of it, mark the damage.
    for codec in candidates:
        if _is_single_byte(codec):
            return data.decode(codec, errors=_LATIN1_FALLBACK)
        text = data.decode(codec, errors="replace")
        if _mostly_intact(text):
            return text
        break
    text = data.decode("utf-8", errors="replace")
    if _mostly_intact(text):
        return text  # UTF-8 with a few broken sequences
    # A legacy 8-bit text: windows-1252 (with Latin-1 for its five undefined
    # bytes) keeps every byte readable.
    return data.decode("cp1252", errors=_LATIN1_FALLBACK)


def _mostly_intact(text: str) -> bool:
    damaged = text.count("\ufffd")
    return damaged * 4 <= sum(1 for ch in text if ord(ch) > 0x7F) - damaged


def _latin1_fallback(err: UnicodeError) -> tuple[str, int]:
    if not isinstance(err, UnicodeDecodeError):
        raise err
    return err.object[err.start : err.end].decode("latin-1"), err.end


_LATIN1_FALLBACK = "omnidesk-latin1"
codecs.register_error(_LATIN1_FALLBACK, _latin1_fallback)


def _detect(data: bytes) -> str | None:
    if len(data) < _MIN_DETECT_BYTES:
        return None
    # Imported lazily: it is only needed for mislabelled mail and costs ~40 ms
    # of start-up time.
    from charset_normalizer import from_bytes

    try:
        best = from_bytes(data).best()
    except Exception:  # a detector bug must not lose the message
        return None
    if best is None or best.chaos > _MAX_CHAOS:
        return None
    text = str(best)
    return None if "\ufffd" in text else text


def _iso2022jp_via_cp932(data: bytes) -> str | None:
    """Decode ISO-2022-JP holding Windows extensions (NEC row 13: ①, ㈱...).

    Outlook writes CP50220/CP50221, whose extra characters Python's
    iso2022_jp codecs reject. Every JIS X 0208 pair maps to a Shift_JIS pair
    by arithmetic, and cp932 knows the extensions, so shift and decode.
    """
    out = bytearray()
    mode = "ascii"
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b == 0x1B:
            seq = data[i + 1 : i + 3]
            if seq in (b"$B", b"$@"):
                mode, i = "jis", i + 3
                continue
            if seq in (b"(B", b"(J"):
                mode, i = "ascii", i + 3
                continue
            if seq == b"(I":
                mode, i = "kana", i + 3
                continue
            return None
        if b in (0x0D, 0x0A):
            out.append(b)
            i += 1
            if mode == "jis":  # broken writers forget to shift back at EOL
                mode = "ascii"
            continue
        if b >= 0x80:
            return None  # 8-bit bytes have no place in a 7-bit encoding
        if mode == "ascii":
            out.append(b)
            i += 1
        elif mode == "kana":
            out.append(b | 0x80)
            i += 1
        else:
            if i + 1 >= n:
                return None
            c1, c2 = b, data[i + 1]
            if not (0x21 <= c1 <= 0x7E and 0x21 <= c2 <= 0x7E):
                return None
            s1 = (c1 + 1) // 2 + (0x70 if c1 <= 0x5E else 0xB0)
            s2 = c2 + (0x1F if c1 % 2 else 0x7E)
            if c1 % 2 and s2 >= 0x7F:
                s2 += 1
            out += bytes((s1, s2))
            i += 2
    return _try(bytes(out), "cp932")
