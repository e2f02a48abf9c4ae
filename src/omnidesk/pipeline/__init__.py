"""The pipeline: pending envelopes become stored, classified, routed messages.

One module a stage, found by its name; the order is written once, in
``batch.handle_message``:

1. ``normalize`` - the channel's parser: Envelope -> Message | StatusUpdate |
   Skip. Failure sends the envelope to quarantine (raw bytes kept) and the
   batch goes on. Pure, so it may run ahead of the transaction
   (``prepare_envelope``) or in a parse process.
2. dedupe (``persist.already_stored``) - a message already stored (a redo
   after a crash) is skipped.
3. ``identify`` - the sender identity resolves to a contact (created if new).
4. ``thread`` - find the conversation: edit target, conversation token,
   reference keys (email threading), chat thread key within the session
   window; or open a new one. Automatic mail (auto-replies, bounces, lists)
   never opens a conversation.
5. ``decide`` - the rules decide category, priority, tags, team, agent.
6. ``route`` - team and agent of a new conversation; an agent no rule named
   is chosen within the team at the end of the batch's transaction
   (``route.assign_new``, with ``routing.py``).
7. ``follow_up`` - a message in an existing conversation: an answer to its
   satisfaction survey is recorded as such; any other reopens it and
   escalates category and priority (never down).
8. ``persist`` - conversation, message, attachments, thread keys, receipts,
   audit events, the envelope marked done; ``acknowledge`` queues the
   channel's auto-acknowledgement in the outbox. One transaction: a crash
   anywhere leaves the envelope pending, and every stage is idempotent, so
   the redo stores it once.

``context.py`` holds what the stages are handed (``PipelineContext``, with
the two ports it reads through: ``ChannelParser`` and ``Evaluator``) and what a
batch returns; ``batch.py`` runs a batch in one transaction; ``runner.py``
runs batches as the intake commits.
"""

from __future__ import annotations

from .batch import process_batch
from .context import BatchResult, ChannelParser, Evaluator, PipelineContext
from .normalize import Normalized, NormalizeFailed, normalize_envelope, prepare_envelope
from .persist import quarantine_pending
from .runner import PARSE_CHUNK, PARSE_TIMEOUT, Parser, PipelineRunner

__all__ = [
    "PARSE_CHUNK",
    "PARSE_TIMEOUT",
    "BatchResult",
    "ChannelParser",
    "Evaluator",
    "NormalizeFailed",
    "Normalized",
    "Parser",
    "PipelineContext",
    "PipelineRunner",
    "normalize_envelope",
    "prepare_envelope",
    "process_batch",
    "quarantine_pending",
]
