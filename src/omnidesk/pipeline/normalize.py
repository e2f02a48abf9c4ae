"""The normalize stage: the channel's parser turns a stored envelope into a
``Message``, ``StatusUpdate`` or ``Skip``. Input it cannot understand (or a
parser bug) becomes ``NormalizeFailed``, which the batch sends to quarantine
with the raw bytes; the batch goes on.

Pure, no database: which is why it can run before the write transaction or
in a parse process (``prepare_envelope``, see ``runner.py``)."""

from __future__ import annotations

import traceback
from dataclasses import dataclass

from ..model import Direction, Message, NormalizeError, Skip, StatusUpdate
from ..store.inbound import InboundRow
from ..textcap import bound_message
from .context import Evaluator, PipelineContext


@dataclass(slots=True)
class NormalizeFailed:
    """Why an envelope goes to quarantine: a NormalizeError's reason
    (``trace`` None) or a parser bug's exception and traceback. Plain
    strings: it may come from a parse process."""

    reason: str
    trace: str | None = None


Normalized = Message | StatusUpdate | Skip | NormalizeFailed


def normalize_envelope(ctx: PipelineContext, row: InboundRow) -> Normalized:
    adapter = ctx.adapters.get(row.envelope.channel)
    try:
        if adapter is None:
            raise NormalizeError(f"no channel named {row.envelope.channel!r} is configured")
        item = adapter.normalize(row.envelope)
        if isinstance(item, Message) and not item.sender.address.strip():
            # Nobody to answer and no contact to file it under: an admin
            # decides (the raw input is kept).
            raise NormalizeError("message has no sender address")
        if isinstance(item, Message):
            item = bound_message(item)  # storable text within the cap, whatever the channel
    except NormalizeError as exc:
        return NormalizeFailed(str(exc))
    except Exception as exc:  # a parser bug must not stop the queue
        return NormalizeFailed(f"{type(exc).__name__}: {exc}", traceback.format_exc())
    return item


def prepare_envelope(
    ctx: PipelineContext, row: InboundRow, rules: Evaluator | None = None
) -> Normalized:
    """What can be done for an envelope before its transaction: normalize,
    detect the language the rules will look at and, given ``rules``, their
    work on subject and text (``Evaluator.preview``; the transaction's
    evaluation uses it if the rules are still the same)."""
    item = normalize_envelope(ctx, row)
    if isinstance(item, Message):
        if item.language is None:
            item.language = detect_language(ctx, item)
        if rules is not None and item.direction == Direction.INBOUND:
            item.rules_preview = rules.preview(item.subject or "", item.text)
    return item


def detect_language(ctx: PipelineContext, msg: Message) -> str | None:
    if ctx.detect_language is None:
        return None
    return ctx.detect_language(msg.text or msg.subject or "")
