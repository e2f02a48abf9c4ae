"""Conversation tokens: the fallback that threads a reply whose client lost
the In-Reply-To/References headers (webmail "reply" from a phone, a customer
who copies the subject into a new mail).

Outbound subjects carry ``[#OD-123]``; the reply address carries
``support+od123@example.com``. Both point to conversation 123.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from omnidesk.model import Identity

TOKEN_PREFIX = "OD"

# Reply and forward markers of the clients we meet, in any case, repeated and
# nested ("Re: AW: Fwd: ..."), with "Re[2]:" counters and full-width colons.
_REPLY_PREFIX = re.compile(
    r"^\s*(?:(?:re|fwd?|aw|wg|sv|vs|antw|antwort|tr|rif|r|ref|réf|rv|enc|odp|pd|"
    r"yn|vl|ynt|atb|bls|回复|回覆|答复|答覆|转发|轉寄|转寄|轉發|返信|転送|회신|전달)"
    r"\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*)+",
    re.I,
)
_SPACES = re.compile(r"\s+")


def _token_re(prefix: str) -> re.Pattern[str]:
    return re.compile(r"\[#" + re.escape(prefix) + r"-(\d{1,18})\]", re.I)


def _plus_re(prefix: str) -> re.Pattern[str]:
    return re.compile(r"\+" + re.escape(prefix.lower()) + r"(\d{1,18})@", re.I)


_TOKEN = _token_re(TOKEN_PREFIX)
_PLUS = _plus_re(TOKEN_PREFIX)


def subject_token(conversation_id: int, prefix: str = TOKEN_PREFIX) -> str:
    return f"[#{prefix}-{int(conversation_id)}]"


def clean_subject(subject: str | None, prefix: str = TOKEN_PREFIX) -> str:
    """The subject without our token and without Re:/Fwd:/AW:/回复: prefixes."""
    if not subject:
        return ""
    pattern = _TOKEN if prefix == TOKEN_PREFIX else _token_re(prefix)
    text = pattern.sub(" ", subject)
    text = _SPACES.sub(" ", text).strip()
    # Tokens may sit between prefixes ("Re: [#OD-1] AW: x"): strip until stable.
    while True:
        stripped = _REPLY_PREFIX.sub("", text, count=1).strip()
        if stripped == text:
            return text
        text = stripped


def format_subject_token(
    conversation_id: int, subject: str | None, *, prefix: str = TOKEN_PREFIX
) -> str:
    """``"<clean subject> [#OD-<id>]"``: old tokens and reply prefixes are
    removed first so the token appears once, whatever came back to us."""
    token = subject_token(conversation_id, prefix)
    clean = clean_subject(subject, prefix)
    return f"{clean} {token}" if clean else token


def plus_address(address: str, conversation_id: int, *, prefix: str = TOKEN_PREFIX) -> str:
    """``support@example.com`` -> ``support+od123@example.com``."""
    local, sep, domain = address.rpartition("@")
    if not sep:
        raise ValueError(f"not an email address: {address!r}")
    local = local.split("+", 1)[0]
    return f"{local}+{prefix.lower()}{int(conversation_id)}@{domain}"


def parse_conversation_token(
    subject: str | None,
    recipients: Iterable[str | Identity] = (),
    *,
    prefix: str = TOKEN_PREFIX,
) -> int | None:
    """The conversation id a message points to by token, or None.

    The plus-address wins over the subject: it is what the customer's client
    replied to, while a subject may be edited or carry the token of another
    conversation the customer forwards.
    """
    plus = _PLUS if prefix == TOKEN_PREFIX else _plus_re(prefix)
    for rcpt in recipients:
        address = rcpt.address if isinstance(rcpt, Identity) else rcpt
        m = plus.search(address or "")
        if m:
            return int(m.group(1))
    if subject:
        pattern = _TOKEN if prefix == TOKEN_PREFIX else _token_re(prefix)
        m = pattern.search(subject)
        if m:
            return int(m.group(1))
    return None
