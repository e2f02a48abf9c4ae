"""Outbound replies as RFC 5322 bytes. Pure: the caller sends them.

Composition uses the stdlib's modern ``EmailMessage`` API (it encodes
non-ASCII names, subjects and file names correctly, RFC 2047/2231); only
parsing needs the lenient compat32 road.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, getaddresses

from omnidesk.email.headers import extract_msgids
from omnidesk.email.tokens import format_subject_token
from omnidesk.model import Attachment

# Enough for any client's threading (the root and the recent chain) while
# keeping the header far from line-length and size limits (RFC 5322 §3.6.4
# allows trimming; keep the first id, it is the thread root).
MAX_REFERENCES = 20

# 7bit: quoted-printable/base64 bodies pass any relay, with or without 8BITMIME.
_POLICY = policy.SMTP.clone(max_line_length=78, cte_type="7bit")


def _one_line(value: str) -> str:
    # Never let a subject or name smuggle a header in (CR/LF injection).
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())


def _bare_id(value: str) -> str:
    value = value.strip()
    if value.startswith("mid:"):
        value = value[4:]
    found = extract_msgids(value)
    return found[0] if found else value.strip("<>").strip()


def _address(addr: str, name: str | None = None) -> Address:
    if name is None and ("<" in addr or "," in addr):
        pairs = getaddresses([addr])
        if pairs and pairs[0][1]:
            name, addr = pairs[0]
    addr = _one_line(addr).strip("<>")
    local, sep, domain = addr.rpartition("@")
    if not sep or not local or not domain:
        raise ValueError(f"not an email address: {addr!r}")
    return Address(display_name=_one_line(name or ""), username=local, domain=domain)


def reference_chain(references: Sequence[str], in_reply_to: str | None) -> list[str]:
    """The References of a reply: the parent's chain plus the parent, without
    duplicates, trimmed to :data:`MAX_REFERENCES` keeping the root."""
    chain: list[str] = []
    for ref in [*references, *([in_reply_to] if in_reply_to else [])]:
        ident = _bare_id(ref)
        if ident and ident not in chain:
            chain.append(ident)
    if len(chain) > MAX_REFERENCES:
        chain = chain[:1] + chain[-(MAX_REFERENCES - 1) :]
    return chain


def new_message_id(domain: str, conversation_id: int) -> str:
    """A fresh Message-ID on our domain (no brackets)."""
    return f"od.{int(conversation_id)}.{uuid.uuid4().hex}@{domain}"


def compose_reply(
    *,
    from_addr: str,
    from_name: str | None,
    to: list[str],
    subject: str | None,
    text: str,
    html: str | None,
    conversation_id: int,
    in_reply_to: str | None,
    references: Sequence[str],
    domain: str,
    automatic: bool,
    reply_to: str | None = None,
    attachments: Sequence[Attachment] = (),
    message_id: str | None = None,
    date: float | None = None,
) -> tuple[bytes, str]:
    """Build a reply; returns ``(raw bytes, Message-ID without brackets)``.

    - Subject: the clean subject with the conversation token, ``Re: `` once
      (only when answering something).
    - ``reply_to``: pass :func:`omnidesk.email.tokens.plus_address` output to
      thread replies by address; left out when None, because a mailbox that
      does not support plus-addressing would bounce the customer's answer.
    - ``automatic``: an auto-acknowledgement or survey. Marked with
      ``Auto-Submitted: auto-replied`` (RFC 3834) and
      ``X-Auto-Response-Suppress: All`` so that well-behaved responders
      (Exchange out-of-office included) do not answer it: no mail loops.
    - ``in_reply_to``/``references`` accept bare ids, ``<id>`` or ``mid:`` keys.
    - ``message_id``/``date`` are for reproducible output (tests); by
      default a fresh id on ``domain`` and the current time.
    """
    if not to:
        raise ValueError("a reply needs at least one recipient")
    mid = _bare_id(message_id) if message_id else new_message_id(domain, conversation_id)
    parent = _bare_id(in_reply_to) if in_reply_to else None
    chain = reference_chain(references, parent)

    msg = EmailMessage(policy=_POLICY)
    msg["From"] = _address(from_addr, from_name)
    msg["To"] = [_address(addr) for addr in to]
    if reply_to:
        msg["Reply-To"] = _address(reply_to)
    tokened = format_subject_token(conversation_id, _one_line(subject or ""))
    msg["Subject"] = f"Re: {tokened}" if (parent or chain) else tokened
    msg["Date"] = formatdate(time.time() if date is None else date, localtime=False)
    msg["Message-ID"] = f"<{mid}>"
    if parent:
        msg["In-Reply-To"] = f"<{parent}>"
    if chain:
        msg["References"] = " ".join(f"<{ident}>" for ident in chain)
    if automatic:
        msg["Auto-Submitted"] = "auto-replied"
        msg["X-Auto-Response-Suppress"] = "All"

    _set_body(msg, text, html, attachments)
    return msg.as_bytes(), mid


def _set_body(
    msg: EmailMessage, text: str, html: str | None, attachments: Sequence[Attachment]
) -> None:
    text = text.replace("\r\n", "\n")
    if not text.endswith("\n"):
        text += "\n"
    msg.set_content(text, charset="utf-8")
    inline = [a for a in attachments if a.inline and a.content_id and a.data is not None]
    if html:
        msg.add_alternative(html, subtype="html", charset="utf-8")
        if inline:
            html_part = next(p for p in msg.iter_parts() if p.get_content_type() == "text/html")
            for att in inline:
                maintype, _, subtype = att.content_type.partition("/")
                html_part.add_related(
                    att.data,
                    maintype=maintype or "application",
                    subtype=subtype or "octet-stream",
                    cid=f"<{att.content_id}>",
                    filename=att.filename,
                    disposition="inline",
                )
    embedded = {id(a) for a in inline} if html else set()
    for att in attachments:
        if att.data is None or id(att) in embedded:
            continue
        add_file(msg, att)


def add_file(msg: EmailMessage, att: Attachment) -> None:
    """``att`` as an attachment of ``msg`` (its bytes base64, as they are).
    A text file that is UTF-8 says so: without a charset, mail programs read
    text as ASCII and show the rest as garbage."""
    assert att.data is not None
    maintype, _, subtype = att.content_type.partition("/")
    if not maintype or not subtype or "/" in subtype:
        maintype, subtype = "application", "octet-stream"
    params = {}
    if maintype == "text":
        try:
            att.data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            params["charset"] = "utf-8"
    msg.add_attachment(
        att.data,
        maintype=maintype,
        subtype=subtype,
        filename=att.filename or "attachment",
        params=params,
    )
