"""Email: MIME -> :class:`omnidesk.model.Message`, and replies -> MIME.

Pure functions; the SMTP listener, the IMAP channel and the relay sender
sit on top of them.

- :func:`parse_email` normalizes raw bytes (charsets, quoted history,
  auto-replies and bounces, threading keys, conversation tokens).
- :func:`compose_reply` builds an outbound reply and its Message-ID.
- :func:`message_id_key` is the threading key both directions share.
"""

from omnidesk.email.auto import (
    ABUSE_REPORT,
    AUTO_REPLY,
    BOUNCE,
    BULK,
    DELAY,
    DELIVERY_REPORT,
    LIST,
    OUT_OF_OFFICE,
    READ_RECEIPT,
)
from omnidesk.email.compose import compose_reply, new_message_id, reference_chain
from omnidesk.email.headers import message_id_key
from omnidesk.email.parse import parse_email, synthetic_message_id
from omnidesk.email.quotes import split_reply
from omnidesk.email.tokens import (
    TOKEN_PREFIX,
    clean_subject,
    format_subject_token,
    parse_conversation_token,
    plus_address,
)

__all__ = [
    "ABUSE_REPORT",
    "AUTO_REPLY",
    "BOUNCE",
    "BULK",
    "DELAY",
    "DELIVERY_REPORT",
    "LIST",
    "OUT_OF_OFFICE",
    "READ_RECEIPT",
    "TOKEN_PREFIX",
    "clean_subject",
    "compose_reply",
    "format_subject_token",
    "message_id_key",
    "new_message_id",
    "parse_conversation_token",
    "parse_email",
    "plus_address",
    "reference_chain",
    "split_reply",
    "synthetic_message_id",
]
