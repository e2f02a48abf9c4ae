"""Reliable outbound delivery.

A reply is a message row plus an ``outbox`` row written in one transaction
(``queue_reply``). The worker claims due rows with a lease, hands each to its
channel adapter's ``send()``, and records the result: sent (with the
provider's id, so receipts and bounces find it), retried later with
exponential backoff (honouring a provider's ``retry_after``), or failed with
the reason shown to the agent. Nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from .channels.base import ChannelAdapter
from .events import Event
from .model import (
    Attachment,
    DeliveryState,
    Direction,
    Identity,
    MessageKind,
    OutboundMessage,
    SendError,
    SendResult,
    now_ts,
)
from .store import Db, Store
from .store import conversations as convs
from .store import outbox as ob
from .store.audit import add_audit
from .store.inbox import name_authors

# Queuing a reply's payload is data access (the pipeline's auto-acknowledgement
# does it too, without the delivery side of this module).
from .store.outbox import ReplyError, build_payload

log = structlog.get_logger(__name__)


def outbound_from_payload(
    outbox_id: int, channel: str, payload: Mapping[str, Any], blobs: Mapping[str, bytes]
) -> OutboundMessage:
    r = payload["recipient"]
    return OutboundMessage(
        outbox_id=outbox_id,
        channel=channel,
        conversation_id=payload["conversation_id"],
        message_id=payload.get("message_id"),
        recipient=Identity(r["kind"], r["address"], r.get("display_name")),
        text=payload["text"],
        html=payload.get("html"),
        subject=payload.get("subject"),
        attachments=[
            Attachment(
                filename=a.get("filename"),
                content_type=a.get("content_type", "application/octet-stream"),
                data=blobs.get(a["sha256"]) if a.get("sha256") else None,
            )
            for a in payload.get("attachments", [])
        ],
        reply_to_external_id=payload.get("reply_to_external_id"),
        thread_key=payload.get("thread_key"),
        references=list(payload.get("references", [])),
        automatic=bool(payload.get("automatic")),
        meta=dict(payload.get("meta", {})),
    )


def queue_reply(
    db: Db,
    conversation_id: int,
    *,
    text: str,
    author: str,
    kind: str = "reply",
    html: str | None = None,
    attachments: list[Attachment] | None = None,
    auto: str | None = None,
    subject: str | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Store an agent's reply (queued for delivery) or private note; returns
    the created message row. ``auto`` marks a reply nobody wrote (a survey, a
    rule's canned reply: never a response for the SLA clocks); ``subject``
    and ``meta`` (e.g. a survey's buttons) go to the channel with it."""
    conv = convs.get_conversation_row(db, conversation_id)
    if conv is None:
        raise ReplyError(f"no conversation {conversation_id}")
    if kind == "note":
        mid = convs.insert_message(
            db,
            convs.NewMessage(
                conversation_id=conversation_id,
                direction=Direction.OUTBOUND,
                kind=MessageKind.NOTE,
                channel=conv["channel"],
                text=text,
                author=author,
                html=html,
                attachments=attachments or [],
            ),
        )
        add_audit(db, author, "note_added", conversation_id=conversation_id, message_id=mid)
    elif kind == "reply":
        # Payload first: it refuses a conversation with nobody to answer
        # before anything is written.
        stored = attachments or []
        payload = build_payload(
            db,
            conversation_id,
            None,
            text=text,
            html=html,
            automatic=auto is not None,
            attachments=[
                {"sha256": a.sha256, "filename": a.filename, "content_type": a.content_type}
                for a in stored
            ],
        )
        if subject:
            payload["subject"] = subject
        if meta:
            payload["meta"] = {**payload["meta"], **meta}
        if auto is None:
            # Who answers, for channels that show it (the web chat's widget).
            who = [{"author": author}]
            name_authors(db, who)
            if who[0].get("author_name"):
                payload["meta"] = {**payload["meta"], "agent_name": who[0]["author_name"]}
        mid = convs.insert_message(
            db,
            convs.NewMessage(
                conversation_id=conversation_id,
                direction=Direction.OUTBOUND,
                kind=MessageKind.MESSAGE,
                channel=conv["channel"],
                text=text,
                author=author,
                html=html,
                subject=payload["subject"],
                auto=auto,
                meta=meta or {},
                delivery_state=DeliveryState.QUEUED,
                attachments=stored,
            ),
        )
        payload["message_id"] = mid
        ob.enqueue(
            db,
            channel=conv["channel"],
            conversation_id=conversation_id,
            message_id=mid,
            payload=payload,
        )
        add_audit(
            db,
            author,
            "automatic_reply_queued" if auto else "reply_queued",
            conversation_id=conversation_id,
            message_id=mid,
            reason=auto,
        )
    else:
        raise ReplyError(f"kind must be 'reply' or 'note', not {kind!r}")
    msgs = [m for m in convs.message_rows(db, conversation_id) if m["id"] == mid]
    return msgs[0]


def backoff(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds to wait before attempt ``attempt + 1``: exponential with jitter,
    never sooner than the provider asked."""
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    delay *= random.uniform(0.8, 1.2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def _claim(db: Db, limit: int, lease: float, channels: list[str]) -> list[dict[str, Any]]:
    items = ob.claim_due(db, limit, lease, channels=channels)
    for item in items:
        shas = [a["sha256"] for a in item["payload"].get("attachments", []) if a.get("sha256")]
        item["blobs"] = {s: convs.get_blob(db, s) for s in shas}
    return items


def _record_sent(db: Db, item: Mapping[str, Any], result: SendResult) -> list[Event]:
    ob.mark_sent(db, item["id"], result.provider_id)
    events: list[Event] = []
    if item["message_id"] is not None:
        convs.set_delivery(db, item["message_id"], result.state, provider_id=result.provider_id)
        events.append(
            {
                "type": "delivery",
                "message_id": item["message_id"],
                "state": str(result.state),
                "conversation_id": item["conversation_id"],
            }
        )
    if item["conversation_id"] is not None:
        convs.add_thread_keys(db, item["conversation_id"], result.keys)
        add_audit(
            db,
            "outbox",
            "delivered_to_channel",
            conversation_id=item["conversation_id"],
            message_id=item["message_id"],
            detail={"provider_id": result.provider_id, "attempts": item["attempts"]},
        )
    return events


def _record_failure(
    db: Db, item: Mapping[str, Any], reason: str, retry_at: float | None
) -> list[Event]:
    if retry_at is not None:
        ob.mark_retry(db, item["id"], reason, retry_at)
        if item["message_id"] is not None:
            convs.set_delivery(
                db,
                item["message_id"],
                DeliveryState.QUEUED,
                error=f"attempt {item['attempts']} failed, retrying: {reason}",
            )
        return []
    ob.mark_failed(db, item["id"], reason)
    events: list[Event] = []
    if item["message_id"] is not None:
        convs.set_delivery(db, item["message_id"], DeliveryState.FAILED, error=reason)
        events.append(
            {
                "type": "delivery",
                "message_id": item["message_id"],
                "state": "failed",
                "conversation_id": item["conversation_id"],
            }
        )
    add_audit(
        db,
        "outbox",
        "delivery_failed",
        conversation_id=item["conversation_id"],
        message_id=item["message_id"],
        reason=reason,
        detail={"attempts": item["attempts"]},
    )
    return events


class OutboxWorker:
    def __init__(
        self,
        store: Store,
        adapters: Mapping[str, ChannelAdapter],
        *,
        max_attempts: int = 8,
        backoff_base: float = 2.0,
        backoff_max: float = 900.0,
        lease: float = 120.0,
        concurrency: int = 16,
        on_events: Callable[[list[Event]], None] | None = None,
        on_result: Callable[[str, str], None] | None = None,
        on_channel: Callable[[str, str | None], None] | None = None,
    ) -> None:
        self.store = store
        self.adapters = adapters
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.lease = lease
        self.concurrency = concurrency
        self.on_events = on_events
        self.on_result = on_result
        # (channel, None) after a delivery, (channel, reason) after a failure
        # that says the channel is not getting through (health.py). A refusal
        # of the message itself (an unknown recipient, a closed 24-hour
        # window) fails that reply, visibly, and says nothing of the channel.
        self.on_channel = on_channel
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run_once(self) -> int:
        items = await self.store.write(_claim, self.concurrency, self.lease, sorted(self.adapters))
        if items:
            await asyncio.gather(*(self._deliver(item) for item in items))
        return len(items)

    async def _deliver(self, item: dict[str, Any]) -> None:
        channel = item["channel"]
        adapter = self.adapters[channel]
        out = outbound_from_payload(item["id"], channel, item["payload"], item["blobs"])
        try:
            result = await adapter.send(out)
        except SendError as exc:
            await self._failed(item, exc.reason, exc.retry, exc.retry_after)
            return
        except Exception as exc:  # an adapter bug or network error: try again later
            log.exception("send_crashed", channel=channel, outbox_id=item["id"])
            await self._failed(item, f"{type(exc).__name__}: {exc}", True, None)
            return
        if self.on_channel:
            self.on_channel(channel, None)
        events = await self.store.write(_record_sent, item, result)
        adapter.touch()
        if self.on_result:
            self.on_result(channel, "sent")
        if self.on_events and events:
            self.on_events(events)

    async def _failed(
        self, item: dict[str, Any], reason: str, retry: bool, retry_after: float | None
    ) -> None:
        if retry and self.on_channel:
            self.on_channel(item["channel"], reason)
        retry_at = None
        if retry and item["attempts"] < self.max_attempts:
            retry_at = now_ts() + backoff(
                item["attempts"], self.backoff_base, self.backoff_max, retry_after
            )
        log.warning(
            "send_failed",
            channel=item["channel"],
            outbox_id=item["id"],
            reason=reason,
            attempt=item["attempts"],
            retry_at=retry_at,
        )
        events = await self.store.write(_record_failure, item, reason, retry_at)
        if self.on_result:
            self.on_result(item["channel"], "retry" if retry_at else "failed")
        if self.on_events and events:
            self.on_events(events)

    async def run(self, idle: float = 1.0) -> None:
        while True:
            try:
                while await self.run_once():
                    pass
                due = await self.store.read(ob.next_due)
            except Exception:
                log.exception("outbox_error")
                due = None
            wait = idle if due is None else min(idle, max(0.0, due - now_ts()))
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a
            # cancel that lands as the event is set, and this loop would never end.
            try:
                async with asyncio.timeout(max(wait, 0.05)):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
