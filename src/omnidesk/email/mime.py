"""Walk a parsed MIME tree: pick the body, collect attachments and the parts
that tell a bounce apart (delivery-status, the returned headers).

Every leaf is decoded by us, not by ``get_content()``: transfer encodings are
read leniently ("quoted-printable;", "7-bit", truncated base64), multiparts
whose boundary the parser could not use are re-split, and text goes through
:func:`omnidesk.email.charsets.decode_bytes`.
"""

from __future__ import annotations

import binascii
import mimetypes
import re
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message as MimeMessage
from typing import Any

from omnidesk.email.charsets import decode_bytes
from omnidesk.email.headers import (
    RAW_POLICY,
    clean_text,
    decode_raw,
    decode_words,
    get_header,
    header_params,
    header_text,
    raw_to_bytes,
    unfold,
)
from omnidesk.model import Attachment

# Deeper trees are hostile or broken; their insides become opaque attachments.
MAX_DEPTH = 30

_CTYPE = re.compile(r"\s*([A-Za-z0-9!#$&^_.+-]+)\s*/\s*([A-Za-z0-9!#$&^_.+-]+)")
_BOUNDARY_PARAM = re.compile(r"""boundary\s*=\s*(?:"([^"]+)"|([^\s;"]+))""", re.I)
_BOUNDARY_LINE = re.compile(rb"^--([^\r\n]{1,200}?)[ \t]*\r?$", re.M)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_:.-]+)""", re.I)
_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f]")


_DELIVERY_STATUS = frozenset({"message/delivery-status", "message/global-delivery-status"})
_ENCAPSULATED = frozenset({"message/rfc822", "message/global", "message/news"})


@dataclass(slots=True)
class MimeBody:
    """What the walk found; text parts still raw (not sanitized)."""

    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    # Bounce evidence: message/delivery-status texts, headers of returned
    # messages (message/rfc822 or text/rfc822-headers), multipart/report type.
    delivery_status: list[str] = field(default_factory=list)
    returned_headers: list[MimeMessage] = field(default_factory=list)
    report_types: list[str] = field(default_factory=list)


def content_type(part: MimeMessage) -> str:
    """``type/subtype`` in lower case; text/plain when missing or garbage.

    Parsed by hand: ``multipart/mixed<TAB>boundary=...`` and friends make the
    stdlib return the whole value as the type.
    """
    value = part.get("content-type")
    if value is None:
        # RFC 2046: parts of a multipart/digest default to message/rfc822.
        return part.get_default_type()
    m = _CTYPE.match(str(value))
    if not m:
        return "text/plain"
    return f"{m.group(1)}/{m.group(2)}".lower()


_PARAMS_ATTR = "_omnidesk_params"


def _params(part: MimeMessage, header: str) -> dict[str, Any]:
    """A header's parameters, parsed once per part (``get_param`` re-parses
    the whole header on every call; we ask for five or six per part)."""
    cache: dict[str, dict[str, Any]] = part.__dict__.setdefault(_PARAMS_ATTR, {})
    found = cache.get(header)
    if found is None:
        try:
            pairs = header_params(part, header) or []
        except Exception:  # malformed parameters: treat as absent
            pairs = []
        found = {str(k).lower(): v for k, v in pairs}
        cache[header] = found
    return found


def content_params(part: MimeMessage) -> dict[str, Any]:
    """Content-Type's parameters as ``Message.get_params`` reads them (RFC
    2231 values as tuples), parsed once per part."""
    return _params(part, "content-type")


def _param(part: MimeMessage, name: str, header: str = "content-type") -> str | None:
    value = _params(part, header).get(name)
    if value is None or value == "":
        return None
    if isinstance(value, tuple):  # RFC 2231: (charset, language, %-decoded latin-1)
        charset, _lang, text = value
        data = str(text).encode("latin-1", "surrogateescape")
        return decode_bytes(data, charset or "utf-8")
    return str(value)


def _disposition(part: MimeMessage) -> str | None:
    value = part.get("content-disposition")
    if value is None:
        return None
    token = str(value).split(";", 1)[0].strip().lower()
    return token or None


def filename(part: MimeMessage) -> str | None:
    """Attachment name from Content-Disposition or Content-Type, decoded
    (RFC 2231, RFC 2047 inside quotes, raw UTF-8/legacy 8-bit), and reduced
    to a bare name (no directories, no control characters)."""
    for header, name in (("content-disposition", "filename"), ("content-type", "name")):
        value = _param(part, name, header)
        if value:
            text = clean_text(decode_words(decode_raw(unfold(value))))
            text = _UNSAFE_NAME.sub("", text.replace("\\", "/")).rsplit("/", 1)[-1].strip()
            if text and text not in (".", ".."):
                return text[:255]
    return None


def content_id(part: MimeMessage) -> str | None:
    value = get_header(part, "content-id")
    if not value:
        return None
    cid = unfold(value).strip().strip("<>").strip()
    return cid or None


def _cte(part: MimeMessage) -> str:
    value = part.get("content-transfer-encoding")
    if value is None:
        return ""
    # "quoted-printable;", " Base64 ", "7-bit": keep the first token.
    return re.split(r"[\s;]", str(value).strip().lower(), maxsplit=1)[0]


def payload_bytes(part: MimeMessage) -> bytes:
    """The decoded (transfer-encoding undone) content of a leaf part."""
    # The raw payload, not get_payload(): for 8-bit text compat32 re-decodes
    # it with the declared charset and errors="replace", losing the bytes.
    payload = getattr(part, "_payload", None)
    if isinstance(payload, list):  # message/* or multipart read as a whole
        return b"".join(_serialize(p) for p in payload if isinstance(p, MimeMessage))
    raw = raw_to_bytes(payload) if isinstance(payload, str) else bytes(payload or b"")
    cte = _cte(part)
    if cte == "base64":
        return _b64(raw)
    if cte in ("quoted-printable", "quotedprintable", "qp"):
        return binascii.a2b_qp(raw)
    if cte in ("x-uuencode", "uuencode", "x-uue", "uue"):
        return _uu(raw)
    return raw


def _serialize(msg: MimeMessage) -> bytes:
    try:
        return msg.as_bytes(policy=RAW_POLICY)
    except Exception:  # a tree the generator cannot write back
        return str(msg.get_payload()).encode("utf-8", "surrogateescape")


def _b64(raw: bytes) -> bytes:
    data = _B64_JUNK.sub(b"", raw.split(b"=", 1)[0])
    # A truncated final quantum: drop the bytes that cannot form one.
    if len(data) % 4 == 1:
        data = data[:-1]
    data += b"=" * (-len(data) % 4)
    try:
        return binascii.a2b_base64(data)
    except binascii.Error:
        return raw


def _uu(raw: bytes) -> bytes:
    out = bytearray()
    started = False
    for line in raw.splitlines():
        if not started:
            started = line.startswith(b"begin ")
            continue
        if line.strip() in (b"end", b"`", b""):
            if line.strip() == b"end":
                break
            continue
        try:
            out += binascii.a2b_uu(line)
        except binascii.Error:
            # Some encoders pad short lines; decode what the length byte says.
            nbytes = ((line[0] - 32) & 63) * 4 // 3
            try:
                out += binascii.a2b_uu(line[: nbytes + 1])
            except binascii.Error:
                continue
    return bytes(out) if started else raw


def part_text(part: MimeMessage, data: bytes | None = None, ctype: str = "") -> str:
    """A text leaf as str, CRLF folded to LF, with format=flowed undone."""
    if data is None:
        data = payload_bytes(part)
    charset = _param(part, "charset")
    if not charset and ctype == "text/html":
        m = _META_CHARSET.search(data[:4096])
        if m:
            charset = m.group(1).decode("ascii")
    text = decode_bytes(data, charset)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in text:
        text = text.replace("\x00", "")  # PostgreSQL refuses NUL in text
    if ctype == "text/plain" and (_param(part, "format") or "").lower() == "flowed":
        delsp = (_param(part, "delsp") or "").lower() == "yes"
        text = unflow(text, delsp)
    return text


def unflow(text: str, delsp: bool = False) -> str:
    """Join RFC 3676 format=flowed soft line breaks (a line ending in a space
    continues on the next line of the same quote depth)."""
    out: list[str] = []
    buf: list[str] = []
    buf_depth = -1
    for line in text.split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        content = line[depth:]
        if content.startswith(" "):
            content = content[1:]  # space-stuffing
        if buf and depth != buf_depth:
            out.append(">" * buf_depth + " " * bool(buf_depth) + "".join(buf))
            buf = []
        flowed = content.endswith(" ") and content != "-- "
        if flowed and delsp:
            content = content[:-1]
        buf.append(content)
        buf_depth = depth
        if not flowed:
            out.append(">" * depth + " " * bool(depth) + "".join(buf))
            buf = []
    if buf:
        out.append(">" * buf_depth + " " * bool(buf_depth) + "".join(buf))
    return "\n".join(out)


def walk(msg: MimeMessage) -> MimeBody:
    body = MimeBody()
    _walk(msg, body, 0, related_root=False)
    return body


def _walk(part: MimeMessage, body: MimeBody, depth: int, related_root: bool) -> None:
    ctype = content_type(part)
    if depth > MAX_DEPTH:
        _attach(part, body, ctype)
        return
    maintype = ctype.split("/", 1)[0]
    if maintype == "multipart":
        children = _children(part)
        if children is None:
            # No usable boundary: read it as text rather than lose it.
            _leaf(part, body, "text/plain", depth)
            return
        _multipart(part, ctype, children, body, depth)
    elif ctype in _DELIVERY_STATUS:
        body.delivery_status.append(_status_text(part))
    elif ctype in _ENCAPSULATED and part.is_multipart():
        _attached_message(part, body, ctype)
    else:
        _leaf(part, body, ctype, depth, related_root)


def _children(part: MimeMessage) -> list[MimeMessage] | None:
    if part.is_multipart():
        return [p for p in part.get_payload() if isinstance(p, MimeMessage)]
    return _resplit(part)


def _resplit(part: MimeMessage) -> list[MimeMessage] | None:
    """Re-parse a multipart the parser left as a leaf: a boundary separated by
    a tab instead of ';', a missing boundary parameter (guess it from the
    first ``--`` line), or a quoted boundary the parser read wrongly."""
    raw = getattr(part, "_payload", None)  # raw bytes kept; see payload_bytes
    if not isinstance(raw, str):
        return None
    data = raw_to_bytes(raw)
    boundary: bytes | None = None
    m = _BOUNDARY_PARAM.search(str(part.get("content-type", "")))
    if m:
        boundary = (m.group(1) or m.group(2)).encode("ascii", "surrogateescape")
        if b"--" + boundary not in data:
            boundary = None
    if boundary is None:
        lm = _BOUNDARY_LINE.search(data)
        if lm is None:
            return None
        boundary = lm.group(1).rstrip(b"-") if lm.group(1).endswith(b"--") else lm.group(1)
    if not boundary or b'"' in boundary:
        return None
    header = b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n'
    try:
        reparsed = message_from_bytes(header + data, policy=RAW_POLICY)
    except Exception:
        return None
    if not reparsed.is_multipart():
        return None
    children = [p for p in reparsed.get_payload() if isinstance(p, MimeMessage)]
    return children or None


def _multipart(
    part: MimeMessage, ctype: str, children: list[MimeMessage], body: MimeBody, depth: int
) -> None:
    subtype = ctype.split("/", 1)[1]
    if subtype == "alternative":
        _alternative(children, body, depth)
    elif subtype == "related":
        start = _param(part, "start")
        root_index = 0
        if start:
            want = start.strip().strip("<>")
            for i, child in enumerate(children):
                if content_id(child) == want:
                    root_index = i
                    break
        for i, child in enumerate(children):
            _walk(child, body, depth + 1, related_root=i != root_index)
    elif subtype == "report":
        body.report_types.append((_param(part, "report-type") or "").lower())
        for child in children:
            _walk(child, body, depth + 1, related_root=False)
    elif subtype == "signed" and children:
        _walk(children[0], body, depth + 1, related_root=False)
        for child in children[1:]:
            _attach(child, body, content_type(child))
    else:  # mixed, digest, parallel, encrypted and anything unknown
        for child in children:
            _walk(child, body, depth + 1, related_root=False)


def _alternative(children: list[MimeMessage], body: MimeBody, depth: int) -> None:
    """Each alternative is walked on its own; the first plain text and the
    last (richest, RFC 2046) HTML win, attachments of all are kept."""
    plain: list[str] | None = None
    html: list[str] | None = None
    for child in children:
        sub = MimeBody()
        _walk(child, sub, depth + 1, related_root=False)
        if sub.plain and plain is None:
            plain = sub.plain
        if sub.html:
            html = sub.html
        body.attachments.extend(sub.attachments)
        body.delivery_status.extend(sub.delivery_status)
        body.returned_headers.extend(sub.returned_headers)
        body.report_types.extend(sub.report_types)
    if plain:
        body.plain.extend(plain)
    if html:
        body.html.extend(html)


def _leaf(
    part: MimeMessage, body: MimeBody, ctype: str, depth: int, related_root: bool = False
) -> None:
    disposition = _disposition(part)
    name = filename(part)
    is_body = disposition != "attachment" and not name and not related_root
    if ctype in ("text/plain", "text/html") and is_body:
        text = part_text(part, ctype=ctype)
        (body.plain if ctype == "text/plain" else body.html).append(text)
        return
    if ctype in ("text/rfc822-headers", "message/rfc822-headers", "text/global-headers"):
        headers = _headers_only(payload_bytes(part))
        if headers is not None:
            body.returned_headers.append(headers)
        return
    if ctype == "application/ms-tnef" or (name or "").lower() == "winmail.dat":
        if _tnef(part, body):
            return
    _attach(part, body, ctype, name, disposition)


def _status_text(part: MimeMessage) -> str:
    """message/delivery-status as text. compat32 parses it into one header
    block per recipient; a block it could not parse stays a string."""
    payload = getattr(part, "_payload", None)
    if isinstance(payload, list):
        blocks = [
            "\n".join(f"{k}: {unfold(str(v))}" for k, v in block.items())
            for block in payload
            if isinstance(block, MimeMessage)
        ]
        return "\n\n".join(blocks)
    return part_text(part)


def _headers_only(data: bytes) -> MimeMessage | None:
    try:
        return message_from_bytes(data, policy=RAW_POLICY)
    except Exception:
        return None


def _attached_message(part: MimeMessage, body: MimeBody, ctype: str) -> None:
    payload = part.get_payload()
    inner = payload[0] if isinstance(payload, list) and payload else None
    if isinstance(inner, MimeMessage):
        body.returned_headers.append(inner)
        try:
            data = inner.as_bytes(policy=RAW_POLICY)
        except Exception:
            data = str(inner).encode("utf-8", "surrogateescape")
        name = filename(part)
        if not name:
            subject = header_text(get_header(inner, "subject"))
            name = (subject or "message")[:120].replace("/", "_") + ".eml"
        body.attachments.append(
            Attachment(filename=name, content_type=ctype, data=data, inline=False)
        )
        return
    _attach(part, body, ctype)


def _attach(
    part: MimeMessage,
    body: MimeBody,
    ctype: str,
    name: str | None = None,
    disposition: str | None = None,
) -> None:
    if name is None:
        name = filename(part)
    if disposition is None:
        disposition = _disposition(part)
    cid = content_id(part)
    try:
        data = payload_bytes(part)
    except Exception:  # a payload we cannot even read: keep the raw text
        data = str(part.get_payload()).encode("utf-8", "surrogateescape")
    body.attachments.append(
        Attachment(
            filename=name,
            content_type=ctype,
            data=data,
            inline=disposition == "inline" or (disposition is None and cid is not None),
            content_id=cid,
        )
    )


def _tnef(part: MimeMessage, body: MimeBody) -> bool:
    """Unpack Outlook's winmail.dat into real attachments (and its body, when
    the MIME message has none). False when it is not readable TNEF: the
    caller then keeps winmail.dat as it is."""
    from tnefparse.tnef import TNEF  # only Outlook/Exchange senders need it

    data = payload_bytes(part)
    try:
        tnef = TNEF(data, do_checksum=False)
    except Exception:
        return False
    extracted: list[Attachment] = []
    for item in tnef.attachments:
        try:
            name = item.long_filename()
        except Exception:
            name = None
        if isinstance(name, bytes):
            name = decode_bytes(name.rstrip(b"\x00"), tnef.codepage)
        name = _UNSAFE_NAME.sub("", name or "").replace("\\", "/").rsplit("/", 1)[-1] or None
        payload = item.data if isinstance(item.data, bytes) else b""
        guessed = mimetypes.guess_type(name)[0] if name else None
        extracted.append(
            Attachment(
                filename=name,
                content_type=guessed or "application/octet-stream",
                data=payload,
            )
        )
    text = _tnef_text(tnef.body, tnef.codepage)
    html = _tnef_text(tnef.htmlbody, tnef.codepage)
    if not extracted and not text and not html:
        return False
    body.attachments.extend(extracted)
    # Outlook sends the same body as MIME text too; only use TNEF's when the
    # message has no body of its own (checked by the caller at the end).
    if text and not body.plain:
        body.plain.append(text)
    if html and not body.html:
        body.html.append(html)
    return True


def _tnef_text(value: object, codepage: str | None) -> str:
    if isinstance(value, bytes):
        return decode_bytes(value.rstrip(b"\x00"), codepage).replace("\r\n", "\n")
    if isinstance(value, str):
        return value.rstrip("\x00").replace("\r\n", "\n")
    return ""
