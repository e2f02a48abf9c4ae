"""Customers' text as it is stored, whatever channel it came from.

Every normalized message passes :func:`bound_message` (``pipeline.py``,
right after the channel's ``normalize``), so no channel can store:

* **NUL or a lone UTF-16 surrogate**: neither PostgreSQL nor UTF-8 can hold
  them. NUL is dropped (as the e-mail parser and the chat widget already do);
  a lone surrogate becomes U+FFFD.
* **Unbounded text**: a message's text longer than :data:`MAX_TEXT_CHARS`
  is kept whole as a ``text/plain`` attachment (:data:`FULL_TEXT_NAME`) and
  its text field cut there, with ``meta["text_folded"]`` saying so. Nothing
  is lost: the inbox shows the first part folded with "show all", and
  ``GET /api/v1/messages/{id}/text`` downloads the whole text. The cap is the
  one an agent's reply has, and a megabyte-long single word from the API
  channel (25 MB bodies) or Meta (16 MB) no longer reaches rules, search and
  every agent's browser whole.
"""

from __future__ import annotations

import dataclasses
import re

from .model import Attachment, Message

MAX_TEXT_CHARS = 100_000
FULL_TEXT_NAME = "message.txt"
FULL_TEXT_TYPE = "text/plain; charset=utf-8"
_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(value: str) -> str:
    """``value`` without NUL and with lone surrogates replaced."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    if _SURROGATE.search(value):
        value = _SURROGATE.sub("\ufffd", value)
    return value


def _opt(value: str | None) -> str | None:
    return None if value is None else storable(value)


def bound_message(msg: Message) -> Message:
    """``msg`` with storable text fields and its text within the cap."""
    msg.text = storable(msg.text)
    msg.full_text = _opt(msg.full_text)
    msg.subject = _opt(msg.subject)
    if msg.sender.display_name is not None:
        name = storable(msg.sender.display_name)
        if name != msg.sender.display_name:
            msg.sender = dataclasses.replace(msg.sender, display_name=name)
    for a in msg.attachments:
        a.filename = _opt(a.filename)
    whole = msg.full_text if msg.full_text is not None else msg.text
    if len(msg.text) > MAX_TEXT_CHARS or len(whole) > MAX_TEXT_CHARS:
        msg.attachments.append(
            Attachment(filename=FULL_TEXT_NAME, content_type=FULL_TEXT_TYPE, data=whole.encode())
        )
        msg.meta["text_folded"] = {"chars": len(whole), "attachment": FULL_TEXT_NAME}
        msg.text = msg.text[:MAX_TEXT_CHARS]
        if msg.full_text is not None:
            msg.full_text = msg.full_text[:MAX_TEXT_CHARS]
    return msg
