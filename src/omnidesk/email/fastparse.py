"""Well-formed MIME read into the very tree the stdlib's parser builds, faster.

``email.message_from_bytes`` reads a message one line at a time in Python
(86 of 240 us normalizing a bench/bench_email.py mail, measured 2026-12-04).
Most mail has a simple shape: a header block ended by a blank line, leaf
parts, multiparts whose boundaries all open and close. For that shape
``message_from_bytes`` below cuts the text at the blank lines and boundary
lines with C-level searches and builds the ``email.message.Message`` objects
exactly as ``email.feedparser.FeedParser`` would under compat32. Anything
else returns None and the caller uses the stdlib parser: a lone CR, a header
block without its blank line or with a line that is not a header, a unix
``From`` line, ``message/*`` parts (delivery-status included), digests, a
multipart without a boundary or with an odd transfer encoding, missing or
doubled boundary lines, nested boundaries that are prefixes of each other.
In short, every case where the stdlib records a defect or reads specially.
tests/email/test_fastparse.py compares both trees over the whole corpus.
"""

from __future__ import annotations

import re
from email.message import Message
from email.policy import Policy
from email.utils import collapse_rfc2231_value
from itertools import pairwise

from omnidesk.email.headers import header_params

# A header field: name, colon, value, and its continuation lines. (Without a
# lone CR, which ``message_from_bytes`` refuses first, a line ends in \n.)
_HEADER_FIELD = re.compile(r"([\x21-\x39\x3b-\x7e]+):([^\n]*\n(?:[ \t][^\n]*\n)*)")
# What may follow ``--boundary`` on a boundary line (feedparser's boundaryre).
_BOUNDARY_TAIL = re.compile(r"(--)?[ \t]*(\r\n|\n|\Z)")
_EOL = re.compile(r"(\r\n|\r|\n)\Z")
_PLAIN_MULTIPART_CTE = ("7bit", "8bit", "binary")


def message_from_bytes(data: bytes, policy: Policy) -> Message | None:
    """The message ``email.message_from_bytes(data, policy=policy)`` returns,
    for compat32-style policies and well-formed mail; None for any other."""
    text = data.decode("ascii", "surrogateescape")
    if "\r" in text and text.count("\r") != text.count("\r\n"):
        return None  # a lone CR ends a line for the stdlib, not for us
    return _message(text, policy, ())


def _message(text: str, policy: Policy, outer: tuple[str, ...]) -> Message | None:
    blank = text.find("\n\n")
    crlf = text.find("\n\r\n")
    if blank < 0 or 0 <= crlf < blank:
        blank = crlf
    if blank < 0 or text.startswith(("From ", "\n", "\r\n")):
        return None  # no blank line after the headers, or no headers
    blank += 1
    head = text[:blank]
    msg = Message(policy=policy)
    end = 0
    for m in _HEADER_FIELD.finditer(head):
        if m.start() != end:
            return None  # a line that is neither a field nor a continuation
        end = m.end()
        value = m.group(2).lstrip(" \t").rstrip("\r\n")  # compat32 header_source_parse
        msg.set_raw(m.group(1), value)
    if end != len(head):
        return None
    body = text[blank + (2 if text.startswith("\r\n", blank) else 1) :]
    ctype = msg.get_content_type()
    maintype = ctype.partition("/")[0]
    if maintype == "message":
        return None
    if maintype != "multipart":
        msg.set_payload(body)
        return msg
    if ctype == "multipart/digest":
        return None  # its parts default to message/rfc822
    boundary = _boundary(msg)
    if not boundary or any(b.startswith(boundary) or boundary.startswith(b) for b in outer):
        return None
    cte = msg.get("content-transfer-encoding", "8bit")
    if str(cte).lower() not in _PLAIN_MULTIPART_CTE:
        return None
    return _multipart(msg, body, boundary, policy, (*outer, boundary))


def _multipart(
    msg: Message, body: str, boundary: str, policy: Policy, outer: tuple[str, ...]
) -> Message | None:
    # Boundary lines, in order, up to and with the first closing one:
    # (start, end of the line, closing).
    sep = "--" + boundary
    lines: list[tuple[int, int, bool]] = []
    at = 0 if body.startswith(sep) else _next_line_at(body, sep, 0)
    while at >= 0:
        tail = _BOUNDARY_TAIL.match(body, at + len(sep))
        if tail is not None:
            closing = tail.group(1) is not None
            lines.append((at, tail.end(), closing))
            if closing:
                break
        at = _next_line_at(body, sep, at)
    if len(lines) < 2 or lines[0][2] or not lines[-1][2]:
        return None  # no part, or a start or close boundary missing
    if lines[0][0]:
        msg.preamble = _strip_eol(body[: lines[0][0]])
    for (_, start, _), (end, _, _) in pairwise(lines):
        if start == end:
            return None  # doubled boundary lines: the stdlib skips them
        part = _message(body[start:end], policy, outer)
        if part is None:
            return None
        # The newline before a boundary line belongs to the boundary.
        if part.is_multipart():
            part.epilogue = _strip_eol(part.epilogue) if part.epilogue else None
        else:
            part.set_payload(_strip_eol(getattr(part, "_payload", "")))
        msg.attach(part)
    msg.epilogue = body[lines[-1][1] :]
    return msg


def _boundary(msg: Message) -> str | None:
    """``msg.get_boundary()`` (its first ``boundary`` parameter, unquoted
    once more and right-stripped), with the parameters split by
    ``header_params``."""
    for name, value in header_params(msg, "content-type") or ():
        if name.lower() == "boundary":
            return collapse_rfc2231_value(value).rstrip()
    return None


def _next_line_at(text: str, start: str, after: int) -> int:
    """Where the next line beginning with ``start`` after offset ``after``
    begins, or -1."""
    i = text.find("\n" + start, after)
    return i + 1 if i >= 0 else -1


def _strip_eol(text: str) -> str:
    m = _EOL.search(text)
    return text[: m.start()] if m else text
