"""Header values -> clean text, addresses, dates and Message-IDs.

We read headers raw (see :data:`RAW_POLICY`) and decode them ourselves:
the stdlib's own decoders raise on groups, drop text on unknown charsets and
mishandle encoded words split in the middle of a multibyte character.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from email import utils as email_utils
from email.message import Message as MimeMessage
from email.policy import Compat32
from typing import Any

from omnidesk.email.charsets import decode_bytes, decoders_for


class _RawHeaders(Compat32):
    """compat32 that hands header values back exactly as they were parsed.

    compat32 wraps 8-bit values into ``email.header.Header`` objects whose
    ``str()`` loses the bytes; we want the bytes (as surrogate escapes) so we
    can decode them as UTF-8 (RFC 6532) or detect their charset.
    """

    def header_fetch_parse(self, name: str, value: str) -> str:
        return value


RAW_POLICY = _RawHeaders()

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?]*?)\?=")
# Whitespace between two encoded words is not part of the text (RFC 2047 §6.2).
_BETWEEN_WORDS = re.compile(r"(\?=)[ \t\r\n]+(=\?)")
_FOLD = re.compile(r"\r?\n")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_QP_HEX = re.compile(rb"=([0-9A-Fa-f]{2})")
_SPACES = re.compile(r"[ \t]+")
_MSGID = re.compile(r"<([^<>]+)>")


def raw_to_bytes(value: str) -> bytes:
    """Recover the original bytes of a value the bytes parser decoded."""
    try:
        return value.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        # Values we built ourselves (or str input) can hold real non-ASCII.
        return value.encode("utf-8", "surrogateescape")


def unfold(value: str) -> str:
    """Undo header folding; bare newlines inside a value are folded too."""
    return _FOLD.sub("", value) if "\n" in value else value


def decode_raw(value: str, charset_hint: str | None = None) -> str:
    """Turn a raw (possibly 8-bit) header string into text, no RFC 2047 yet."""
    if value.isascii():
        return value
    # Non-ASCII: raw UTF-8 (RFC 6532) or a legacy charset the sender forgot to
    # encode; decode_bytes tries UTF-8 first, then the hint, then detection.
    return decode_bytes(raw_to_bytes(value), charset_hint)


def _decode_word_payload(enc: str, text: str) -> bytes:
    if enc in "Bb":
        data = text.strip().encode("ascii", "ignore")
        data = data + b"=" * (-len(data) % 4)
        try:
            return base64.b64decode(data)
        except (binascii.Error, ValueError):
            try:
                return binascii.a2b_base64(data.rstrip(b"="))
            except binascii.Error:
                return text.encode("ascii", "replace")
    raw = text.replace("_", " ").encode("utf-8", "surrogateescape")
    return _QP_HEX.sub(lambda m: bytes((int(m.group(1), 16),)), raw)


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words in already-unfolded text.

    Adjacent words in the same charset are joined *as bytes* before
    decoding, because senders split base64/QP words inside a multibyte
    character. Encoded words glued to text (``foo=?utf-8?q?bar?=``), which
    RFC 2047 forbids but clients write, are decoded too.
    """
    if "=?" not in value:
        return value
    value = _BETWEEN_WORDS.sub(r"\1\2", value)
    out: list[str] = []
    pos = 0
    pending: bytearray | None = None
    pending_cs = ""
    for m in _ENCODED_WORD.finditer(value):
        start, end = m.span()
        charset = m.group(1).split("*", 1)[0]  # RFC 2231 language suffix
        data = _decode_word_payload(m.group(2), m.group(3))
        if start == pos and pending is not None and charset.lower() == pending_cs:
            pending += data
        else:
            if pending is not None:
                out.append(decode_bytes(bytes(pending), pending_cs))
                pending = None
            if start > pos:
                out.append(value[pos:start])
            pending, pending_cs = bytearray(data), charset.lower()
        pos = end
    if pending is not None:
        out.append(decode_bytes(bytes(pending), pending_cs))
    out.append(value[pos:])
    return "".join(out)


def clean_text(value: str) -> str:
    """Collapse runs of blanks and drop control characters (NUL included:
    PostgreSQL refuses it in text columns)."""
    value = _CONTROL.sub("", value)
    return _SPACES.sub(" ", value).strip()


def header_text(value: str | None, charset_hint: str | None = None) -> str | None:
    """A display header (Subject, names...) as clean text; None if absent."""
    if value is None:
        return None
    text = decode_raw(unfold(value), charset_hint)
    if "+" in text and "=?" not in text and decoders_for(charset_hint)[:1] == ("utf-7",):
        # Old Netscape wrote raw UTF-7 headers in UTF-7 messages.
        try:
            text = text.encode("ascii").decode("utf-7")
        except UnicodeError:
            pass
    return clean_text(decode_words(text))


class HeaderMap:
    """A message's header values by lower-cased name, read once.

    ``email.message.Message.get`` scans and lower-cases every header on each
    call; normalization asks some eighty times per message.
    """

    __slots__ = ("_values",)

    def __init__(self, msg: MimeMessage) -> None:
        values: dict[str, list[str]] = {}
        for name, value in msg.items():
            values.setdefault(name.lower(), []).append(str(value))
        self._values = values

    def get(self, name: str) -> str | None:
        found = self._values.get(name)
        return found[0] if found else None

    def get_all(self, name: str) -> list[str]:
        return self._values.get(name, [])


Headers = MimeMessage | HeaderMap


def get_header(msg: Headers, name: str) -> str | None:
    """First value of a header, raw; the stdlib never raises here."""
    value = msg.get(name)
    return None if value is None else str(value)


def get_all(msg: Headers, name: str) -> list[str]:
    return [str(v) for v in msg.get_all(name) or ()]


# --- parameters (Content-Type, Content-Disposition) --------------------------

# What makes the stdlib read a parameter list specially: RFC 2231 names
# (``name*0*=``), backslash escapes inside quotes, ``<...>`` values.
_SPECIAL_PARAMS = frozenset("*\\<")


def header_params(msg: MimeMessage, header: str) -> list[tuple[str, Any]] | None:
    """``msg.get_params(header=header)``: the parameters of the header's
    first value, unquoted, the first pair being the value itself (the type);
    None when the header is missing.

    Most values are plain (``text/plain; charset="utf-8"``); those are split
    here, the same way ``email.message._parseparam`` splits them, in a
    fraction of its time (it re-scans the value for quotes at every
    semicolon and goes through ``decode_params``, about 8 us a part).
    Anything with RFC 2231 names, backslashes, angle brackets or a semicolon
    inside quotes goes to the stdlib. tests/email/test_headers.py compares
    both over the corpus and over generated values."""
    value = msg.get(header)
    if value is None:
        return None
    text = str(value)
    if not _SPECIAL_PARAMS.isdisjoint(text):
        return msg.get_params(header=header)
    pieces = text.split(";")
    if '"' in text and any(piece.count('"') % 2 for piece in pieces):
        return msg.get_params(header=header)  # a semicolon inside quotes
    out: list[tuple[str, Any]] = []
    for piece in pieces:
        name, eq, val = piece.partition("=")
        if eq:
            name = name.strip().lower()
            val = val.strip()
            if len(val) > 1 and val[0] == '"' and val[-1] == '"':
                val = val[1:-1]
        else:
            name, val = piece.strip(), ""
        out.append((name, val))
    return out


# --- addresses --------------------------------------------------------------


def parse_addresses(
    values: Iterable[str], charset_hint: str | None = None
) -> list[tuple[str, str]]:
    """(display name, lower-cased addr-spec) pairs from address headers.

    Groups (``undisclosed-recipients:;``) contribute their members, or
    nothing. Names are RFC 2047-decoded *after* splitting, because a decoded
    name may contain commas. Entries without an address are dropped; a
    header the parser misreads (two bare addresses, comments inside the
    address, a missing ``<>``) is salvaged by pattern.
    """
    texts = [decode_raw(unfold(v), charset_hint) for v in values]
    if not texts:
        return []
    pairs = _getaddresses(texts)
    if pairs is None and any("(" in t for t in texts):
        # RFC 822 comments inside addresses: "jdoe@machine(comment).example".
        texts = [_COMMENT.sub("", t) for t in texts]
        pairs = _getaddresses(texts)
    if pairs is None:
        return _salvage_addresses(texts)
    out: list[tuple[str, str]] = []
    for name, addr in pairs:
        name = clean_text(decode_words(name)) if name else ""
        if name.lower() == addr or name.strip("'\"") == addr:
            name = ""
        out.append((name, addr))
    return out


_COMMENT = re.compile(r"\([^()]*\)")
_ADDR_SPEC = re.compile(r"[^\s<>()\[\]\",;:@]+@[^\s<>()\[\]\",;:@]+")


# The common shapes, read without the stdlib's character-by-character parser
# (about a tenth of the parse of a typical mail went there): ``addr@example.org``
# and ``Plain Name <addr@example.org>`` with a dot-atom address and a name of
# atoms (RFC 2047 words included), comma-separated. Anything else (quotes,
# comments, groups, routes, dots or backslashes in the name) goes to the stdlib.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM_ADDR = rf"{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_PLAIN_ADDRESS = re.compile(
    rf"[ \t]*(?:({_ATEXT}(?:[ \t]+{_ATEXT})*)[ \t]*<({_DOT_ATOM_ADDR})>|({_DOT_ATOM_ADDR}))[ \t]*"
)
_NOT_PLAIN = frozenset('"()\\:;[]\r\n')


def _plain_addresses(texts: list[str]) -> list[tuple[str, str]] | None:
    """``_getaddresses`` for headers of the common shapes only (None for any
    other); the same pairs the stdlib's reading gives for them."""
    out: list[tuple[str, str]] = []
    for text in texts:
        if not _NOT_PLAIN.isdisjoint(text):
            return None
        for item in text.split(","):
            if not item or item.isspace():
                continue
            m = _PLAIN_ADDRESS.fullmatch(item)
            if m is None:
                return None
            name, addr, bare = m.groups()
            if bare is not None:
                out.append(("", bare.lower()))
            else:
                out.append((" ".join(name.split()), addr.lower()))
    return out or None


def _getaddresses(texts: list[str]) -> list[tuple[str, str]] | None:
    """(name, lower-cased address) pairs as the stdlib reads them, or None
    when its reading is implausible."""
    plain = _plain_addresses(texts)
    return plain if plain is not None else _stdlib_addresses(texts)


def _stdlib_addresses(texts: list[str]) -> list[tuple[str, str]] | None:
    try:
        pairs = email_utils.getaddresses(texts)
    except (RecursionError, ValueError, IndexError):
        # Pathological values (thousands of encoded words, stack-overflow
        # fixtures) break the stdlib's recursive phrase parser.
        return None
    out: list[tuple[str, str]] = []
    for name, addr in pairs:
        addr = _CONTROL.sub("", addr).strip().strip("<>").strip()
        if not addr or addr.endswith(":"):
            continue  # an empty group or nothing at all
        local, at, domain = addr.rpartition("@")
        if not at or not local or not domain or " " in addr:
            return None
        out.append((name, addr.lower()))
    if not out and any("@" in t for t in texts):
        return None
    return out


def _salvage_addresses(texts: list[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for text in texts:
        for m in _ADDR_SPEC.finditer(text):
            addr = m.group(0).strip(".").lower()
            if (m.start() == 0 or text[m.start() - 1] != "=") and addr not in (a for _, a in out):
                out.append(("", addr))
    return out


# --- Message-IDs ------------------------------------------------------------


def message_id_key(msgid: str) -> str:
    """The threading key of a Message-ID: ``"mid:" + id`` without brackets.

    Used for inbound references and our own outbound Message-IDs alike, so
    both sides meet in the store.
    """
    ident = msgid.strip()
    m = _MSGID.search(ident)
    if m:
        ident = m.group(1)
    ident = ident.strip().strip("<>").strip()
    if not ident:
        raise ValueError("empty Message-ID")
    return "mid:" + ident


def extract_msgids(value: str | None) -> list[str]:
    """Message-IDs (without brackets) in a Message-ID / In-Reply-To /
    References value, in order; tolerant of comments and missing brackets."""
    if not value:
        return []
    text = unfold(value)
    if not text.isascii():
        text = decode_raw(text)
    found = [m.strip() for m in _MSGID.findall(text)]
    # RFC 822 allowed comments and spaces inside ("<1234 @ local(x) .example>").
    found = [
        _COMMENT.sub("", f).replace(" ", "").replace("\t", "") if " " in f else f for f in found
    ]
    found = [f for f in found if f]
    if found:
        return found
    # No brackets at all: some MTAs and scripts write a bare id.
    out = []
    for token in text.replace(",", " ").split():
        if "@" in token or (token.isprintable() and len(token) > 8 and token == text.strip()):
            out.append(token.strip("<>"))
    return out


# --- dates ------------------------------------------------------------------

# Anything outside is a broken clock or a parse of garbage, not a send time.
_DATE_COLON = re.compile(r"\s*:\s*")
_MIN_TS = 0.0
_MAX_TS = 4102444800.0  # 2100-01-01


def parse_date(value: str | None) -> float | None:
    """Date header -> UNIX seconds, None when absent or unparseable."""
    if not value:
        return None
    text = clean_text(unfold(value))
    if "(" in text:  # RFC 822 comments: "09(comment):   55  :  06"
        text = _DATE_COLON.sub(":", _COMMENT.sub("", text))
    if not text.isascii():
        text = text.encode("ascii", "ignore").decode()
    try:
        parsed = email_utils.parsedate_tz(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    try:
        ts = float(email_utils.mktime_tz(parsed))
    except (OverflowError, ValueError):
        return None
    return ts if _MIN_TS < ts < _MAX_TS else None
