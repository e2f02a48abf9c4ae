"""The thread stage: find the conversation a message belongs to, or say that
it opens a new one. In order: the message an edit points at, a conversation
token, reference keys (e-mail threading), the chat thread key within the
session window. A conversation resolved long ago is not reopened by a
message without a thread key: that one starts afresh."""

from __future__ import annotations

from typing import Any

from ..model import Message, Status
from ..store import Db
from ..store import conversations as convs
from .context import PipelineContext


def work_keys(msg: Message) -> list[str]:
    """Lock names for everything this message may find or create (several
    instances: two messages of one new thread or sender must not open two
    conversations or contacts; the second waits for the first)."""
    keys = [
        f"msg:{msg.channel}:{msg.external_id}",
        f"ident:{msg.sender.kind}:{msg.sender.address}",
        *(f"ident:{i.kind}:{i.address}" for i in msg.extra_identities),
        *(f"key:{k}" for k in (*msg.thread_refs, *msg.own_keys) if k),
    ]
    if msg.thread_key:
        keys.append(f"thread:{msg.channel}:{msg.thread_key}")
    if msg.conversation_hint is not None:
        keys.append(f"conv:{msg.conversation_hint}")
    return keys


def resolved_long_ago(
    ctx: PipelineContext, conv: dict[str, Any] | None, how: str, msg: Message, now: float
) -> tuple[dict[str, Any] | None, str]:
    """``conv`` and ``how``, unless the message (no thread key, not
    automatic) would reopen a conversation resolved more than
    ``reopen_seconds`` ago: then it starts a new one."""
    if conv is not None and conv["status"] == Status.RESOLVED and not msg.auto:
        resolved_at = conv["resolved_at"] or conv["updated_at"]
        if msg.thread_key is None and now - resolved_at > ctx.reopen_seconds:
            return None, f"conversation #{conv['id']} was resolved long ago: new conversation"
    return conv, how


def find_conversation(
    db: Db, ctx: PipelineContext, msg: Message, now: float
) -> tuple[dict[str, Any] | None, str]:
    """(the conversation row or None for a new one, how it was found)."""
    if msg.edit_of:
        orig = convs.find_message_id(db, msg.channel, "in", msg.edit_of)
        if orig is not None:
            cid = db.val("SELECT conversation_id FROM messages WHERE id = ?", (orig,))
            return convs.get_conversation_row(db, int(cid)), "edit of an earlier message"
    if msg.conversation_hint is not None:
        conv = convs.get_conversation_row(db, msg.conversation_hint)
        if conv is not None:
            return conv, f"conversation token #{msg.conversation_hint}"
    if msg.thread_refs:
        conv = convs.find_by_keys(db, msg.thread_refs)
        if conv is not None:
            return conv, "reply to an earlier message (thread references)"
    if msg.thread_key:
        conv = convs.find_by_thread_key(db, msg.channel, msg.thread_key)
        if conv is not None:
            if conv["status"] != Status.RESOLVED:
                return conv, "same chat thread"
            last = conv["last_message_at"] or conv["created_at"]
            if now - last <= ctx.chat_session_seconds:
                return conv, "same chat thread, within the session window"
    return None, "new conversation"
