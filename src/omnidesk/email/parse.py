"""Raw RFC 5322 bytes -> :class:`omnidesk.model.Message`. Pure: no I/O.

Built on the stdlib parser with the compat32 policy (``policy.default``
raises on about one broken message in seven and is ~4x slower); everything
the policy would interpret - headers, charsets, transfer encodings - we
decode ourselves, leniently.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from email import errors as email_errors
from email import message_from_bytes
from email.message import Message as MimeMessage
from typing import Any

from omnidesk.email import auto
from omnidesk.email.charsets import decode_bytes
from omnidesk.email.fastparse import message_from_bytes as fast_message_from_bytes
from omnidesk.email.headers import (
    RAW_POLICY,
    HeaderMap,
    extract_msgids,
    get_all,
    get_header,
    header_text,
    message_id_key,
    parse_addresses,
    parse_date,
    unfold,
)
from omnidesk.email.mime import MimeBody, content_params, walk
from omnidesk.email.quotes import split_reply
from omnidesk.email.tokens import clean_subject, parse_conversation_token
from omnidesk.htmltext import html_to_text, sanitize_html
from omnidesk.model import Identity, Message, MessageKind, NormalizeError

SYNTHETIC_DOMAIN = "omnidesk.invalid"
MAX_SUBJECT = 2000

# Headers copied into Message.meta (decoded) when present.
_META_HEADERS = (
    "auto-submitted",
    "precedence",
    "list-id",
    "list-unsubscribe",
    "x-mailer",
    "user-agent",
    "organization",
    "x-failed-recipients",
)


def parse_email(raw: bytes, *, channel: str, envelope: Mapping[str, Any] | None = None) -> Message:
    """Normalize one email.

    ``envelope`` is what the transport knew (for SMTP: ``mail_from``,
    ``rcpt_tos``; for IMAP: folder, uid...); it is copied into
    ``meta["envelope"]`` and its recipients count for conversation tokens.

    Raises :class:`NormalizeError` (and nothing else) only when no sensible
    message can be made; broken but readable mail is normalized.
    """
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise NormalizeError(f"email payload must be bytes, not {type(raw).__name__}")
    data = bytes(raw)
    try:
        return _parse(data, channel, envelope or {})
    except NormalizeError:
        raise
    except RecursionError as exc:
        raise NormalizeError("MIME structure nested too deeply") from exc
    except Exception as exc:  # the promise: quarantine, never crash the pipeline
        raise NormalizeError(f"unreadable message ({type(exc).__name__}: {exc})") from exc


def synthetic_message_id(raw: bytes) -> str:
    """A stable stand-in for a missing Message-ID: redelivery of the same
    bytes gives the same id, so intake dedupes it and replies can thread."""
    return f"{hashlib.sha256(raw).hexdigest()[:32]}@{SYNTHETIC_DOMAIN}"


def _strip_preamble(data: bytes) -> bytes:
    # Leading blank lines make the parser read every header as body; a UTF-8
    # BOM hides the first header name.
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return data.lstrip(b"\r\n")


# The stdlib parser compiles a regular expression for every multipart
# boundary it meets (email.feedparser). Boundaries are random per message, so
# re's cache never helps: the compile was ~30% of parsing a plain
# text + HTML mail. Renaming each boundary to one of a few fixed names before
# parsing lets the cache work; the parse is otherwise the same.
_BOUNDARY_VALUE = re.compile(rb"""\s*=\s*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))""")
_CANONICAL = "omnidesk-boundary-%d"
_MAX_CANONICAL = 8


def _canonical_boundaries(data: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """``data`` with its boundaries renamed, and {new name: boundary} (empty
    when nothing was renamed). A boundary is renamed only when each of its
    occurrences is a ``boundary=`` parameter or a delimiter line; renaming
    is one consistent substitution, so the parts split as before."""
    found: dict[bytes, int] = {}
    lower = data.lower()  # a C loop: far cheaper than a case-blind regex scan
    at = lower.find(b"boundary")
    while at >= 0:
        m = _BOUNDARY_VALUE.match(data, at + 8)
        if m:
            b = m.group(1) or m.group(2)
            found[b] = found.get(b, 0) + 1
        at = lower.find(b"boundary", at + 8)
    if not found or len(found) > _MAX_CANONICAL:
        return data, {}
    names = [(_CANONICAL % i).encode() for i in range(len(found))]
    if any(n in data for n in names):
        return data, {}
    for b, declared in found.items():
        if data.count(b) != declared + data.count(b"\n--" + b):
            return data, {}
    for b, n in zip(found, names, strict=True):
        data = data.replace(b, n)
    return data, dict(zip(names, found, strict=True))


def _undo_renaming(message: Message, renamed: dict[bytes, bytes]) -> bool:
    """Put the boundaries back where the renaming reached the result: the raw
    bytes of an attached message (an exact inverse: the new names occur
    nowhere in the original). False when a renamed boundary shows in text
    the agent reads (text that contained a boundary after all): parse again
    without renaming."""
    for a in message.attachments:
        if a.data and any(n in a.data for n in renamed):
            for n, b in renamed.items():
                a.data = a.data.replace(n, b)
    names = [n.decode() for n in renamed]
    fields: list[str] = [message.text, message.full_text or "", message.html or ""]
    fields.append(message.subject or "")
    fields.append(repr(message.meta))
    fields += [a.filename or "" for a in message.attachments]
    return not any(n in f for n in names for f in fields)


def _parse(
    raw: bytes, channel: str, envelope: Mapping[str, Any], *, canonical: bool = True
) -> Message:
    data = _strip_preamble(raw)
    if not data.strip():
        raise NormalizeError("empty message")
    renamed: dict[bytes, bytes] = {}
    if canonical:
        parsed, renamed = _canonical_boundaries(data)
    else:
        parsed = data
    msg = fast_message_from_bytes(parsed, RAW_POLICY) or message_from_bytes(
        parsed, policy=RAW_POLICY
    )
    if not msg.keys() or any(
        isinstance(d, email_errors.MissingHeaderBodySeparatorDefect) for d in msg.defects
    ):
        repaired = _repair_headers(data)
        if repaired is not None:
            msg = message_from_bytes(repaired, policy=RAW_POLICY)
    if not msg.keys():
        raise NormalizeError("no header fields: not an email message")
    hint = _charset_hint(msg)
    headers = HeaderMap(msg)

    # Mail without any sender address is broken but readable: it is kept
    # with an empty address (meta["sender_missing"]); the contact stage
    # decides what an unknown sender means.
    sender, sender_name = _sender(headers, envelope, hint)

    to = parse_addresses(get_all(headers, "to"), hint)
    cc = parse_addresses(get_all(headers, "cc"), hint)
    recipients = [Identity(kind="email", address=a, display_name=n or None) for n, a in to + cc]

    # A subject is a line, not a document: 200 KB ones exist (flanker's
    # long-header.eml) and would cost every regex that reads it.
    raw_subject = get_header(headers, "subject")
    if raw_subject is not None:
        raw_subject = raw_subject[: MAX_SUBJECT * 8]
    subject_raw = (header_text(raw_subject, hint) or "")[:MAX_SUBJECT]

    body = walk(msg)
    plain = "\n".join(p.strip("\n") for p in body.plain if p.strip())
    html_raw = "\n".join(body.html) if body.html else ""
    html = sanitize_html(html_raw) if html_raw.strip() else None
    full_text = plain.strip() or html_to_text(html_raw).strip()
    salvaged = False
    if not full_text and not body.attachments and msg.is_multipart():
        # Boundaries so broken that every part fell into a preamble or
        # epilogue: show the agent the readable lines rather than nothing.
        full_text = _salvage_text(data)
        salvaged = bool(full_text)
    text = split_reply(full_text)

    msgids = extract_msgids(get_header(headers, "message-id"))
    message_id = msgids[0] if msgids else synthetic_message_id(raw)
    own_key = message_id_key(message_id)
    thread_refs: list[str] = []
    for ident in extract_msgids(get_header(headers, "in-reply-to")) + _all_references(headers):
        key = message_id_key(ident)
        if key != own_key and key not in thread_refs:
            thread_refs.append(key)

    delivered_to = parse_addresses(_delivered_to(headers))
    token_rcpts = [a for _, a in to + cc + delivered_to]
    token_rcpts += [str(r) for r in envelope.get("rcpt_tos") or () if r]

    null_sender = _null_sender(headers, envelope)
    kind = auto.classify_auto(
        headers,
        body,
        subject=subject_raw,
        sender=sender or "",
        sender_name=sender_name,
        null_sender=null_sender,
    )
    bounced = auto.bounced_refs(headers, body, full_text) if kind == auto.BOUNCE else []

    message = Message(
        channel=channel,
        external_id=message_id,
        sender=Identity(kind="email", address=sender or "", display_name=sender_name),
        text=text,
        full_text=full_text,
        subject=clean_subject(subject_raw) or None,
        html=html,
        attachments=body.attachments,
        sent_at=parse_date(get_header(headers, "date")),
        recipients=recipients,
        kind=MessageKind.AUTO if kind else MessageKind.MESSAGE,
        auto=kind,
        thread_refs=thread_refs,
        own_keys=[own_key],
        conversation_hint=parse_conversation_token(subject_raw, token_rcpts),
        bounced_refs=bounced,
        meta=_meta(
            headers,
            sender,
            message_id,
            msgids,
            subject_raw,
            body,
            envelope,
            hint,
            to,
            cc,
            delivered_to,
        ),
    )
    if salvaged:
        message.meta["body_salvaged"] = True
    if renamed and not _undo_renaming(message, renamed):
        return _parse(raw, channel, envelope, canonical=False)
    return message


_HEADER_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")
_OBS_HEADER_LINE = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]+:")
_HEADER_END = re.compile(rb"\r?\n\r?\n")


def _repair_headers(data: bytes) -> bytes | None:
    """Fix a header block the parser stopped reading early: obsolete
    ``Name  :`` syntax (RFC 5322 §4.5) and stray garbage lines between
    headers. A non-header line not followed by a header is where the body
    starts, as the parser thought; it is kept."""
    m = _HEADER_END.search(data)
    head, rest = (data[: m.start()], data[m.start() :]) if m else (data, b"")
    lines = head.splitlines(keepends=True)
    out: list[bytes] = []
    changed = False
    for i, line in enumerate(lines):
        if _HEADER_LINE.match(line) or (out and line[:1] in (b" ", b"\t")):
            out.append(line)
            continue
        obs = _OBS_HEADER_LINE.match(line)
        if obs:
            out.append(obs.group(1) + b":" + line[obs.end() :])
            changed = True
            continue
        if i == 0 and line.startswith(b"From "):  # mbox separator
            out.append(line)
            continue
        nxt = lines[i + 1] if i + 1 < len(lines) else b""
        if out and (_HEADER_LINE.match(nxt) or _OBS_HEADER_LINE.match(nxt) or nxt[:1] in b" \t"):
            changed = True  # garbage between header lines
            continue
        out.append(b"\r\n")  # the body starts here, as the parser saw it
        out.extend(lines[i:])
        break
    return b"".join(out) + rest if changed else None


_MIME_NOISE = re.compile(r"^(?:--\S*|content-[a-z-]+:.*|mime-version:.*|[ \t]+\S+=.*)$", re.I)


def _salvage_text(data: bytes) -> str:
    m = _HEADER_END.search(data)
    if m is None:
        return ""
    text = decode_bytes(data[m.end() :], None).replace("\r\n", "\n")
    lines = [line for line in text.split("\n") if not _MIME_NOISE.match(line)]
    return "\n".join(lines).replace("\x00", "").strip()


def _charset_hint(msg: MimeMessage) -> str | None:
    """The charset of the first text part: the best guess for raw 8-bit
    headers written by clients that forgot RFC 2047."""
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            # Parsed once per part: the body's decoding asks again.
            charset = content_params(part).get("charset")
            if isinstance(charset, str) and charset:
                return charset
            return None
    return None


def _sender(
    headers: HeaderMap, envelope: Mapping[str, Any], hint: str | None
) -> tuple[str | None, str | None]:
    for header in ("from", "sender", "reply-to"):
        found = parse_addresses(get_all(headers, header), hint)
        if found:
            name, address = found[0]
            return address, name or None
    for value in (get_header(headers, "return-path"), envelope.get("mail_from")):
        if value:
            found = parse_addresses([str(value)])
            if found:
                return found[0][1], None
    return None, None


def _null_sender(headers: HeaderMap, envelope: Mapping[str, Any]) -> bool:
    if "mail_from" in envelope:
        mail_from = envelope.get("mail_from")
        return mail_from is not None and str(mail_from).strip() in ("", "<>")
    return_path = get_header(headers, "return-path")
    return return_path is not None and unfold(return_path).strip() == "<>"


def _all_references(headers: HeaderMap) -> list[str]:
    # Some clients write References twice; keep every id from every copy.
    out: list[str] = []
    for value in get_all(headers, "references"):
        out.extend(extract_msgids(value))
    return out


def _delivered_to(headers: HeaderMap) -> list[str]:
    return get_all(headers, "delivered-to") + get_all(headers, "x-original-to")


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return str(value)


def _meta(
    headers: HeaderMap,
    sender: str | None,
    message_id: str,
    msgids: list[str],
    subject_raw: str,
    body: MimeBody,
    envelope: Mapping[str, Any],
    hint: str | None,
    to: list[tuple[str, str]],
    cc: list[tuple[str, str]],
    delivered: list[tuple[str, str]],
) -> dict[str, Any]:
    meta: dict[str, Any] = {"message_id": message_id}
    if not sender:
        meta["sender_missing"] = True
    if not msgids:
        meta["message_id_synthetic"] = True
    if subject_raw:
        meta["subject_raw"] = subject_raw
    reply_to = parse_addresses(get_all(headers, "reply-to"), hint)
    if reply_to:
        meta["reply_to"] = [a for _, a in reply_to]
        if reply_to[0][0]:
            meta["reply_to_name"] = reply_to[0][0]
    if to:
        meta["to"] = [a for _, a in to]
    if cc:
        meta["cc"] = [a for _, a in cc]
    if delivered:
        meta["delivered_to"] = [a for _, a in delivered]
    in_reply_to = extract_msgids(get_header(headers, "in-reply-to"))
    if in_reply_to:
        meta["in_reply_to"] = in_reply_to[0]
    for name in _META_HEADERS:
        value = header_text(get_header(headers, name), hint)
        if value:
            meta[name.replace("-", "_")] = value[:1000]
    date = get_header(headers, "date")
    if date is not None:
        # Decoded like any header: raw 8-bit bytes (a comment in a legacy
        # charset) would reach the JSON column as lone surrogates.
        meta["date_raw"] = (header_text(date, hint) or "")[:200]
    if body.report_types:
        meta["report_type"] = body.report_types[0]
    if envelope:
        meta["envelope"] = _jsonable(envelope)
    return meta
