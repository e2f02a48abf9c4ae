"""Messenger: ``messaging`` items from a Page's webhook, replies through the
Send API. Instagram messaging uses the same API (``instagram.py``)."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from ...identity import normalize_identity
from ...model import (
    Attachment,
    DeliveryState,
    Direction,
    Envelope,
    Identity,
    Message,
    MessageKind,
    Normalized,
    NormalizeError,
    OutboundMessage,
    SendError,
    SendResult,
    Skip,
    StatusUpdate,
)
from ..media import MediaKind, media_plan, upload_name
from ..parts import send_steps
from .graph import (
    TEXT_LIMITS,
    ConfigurationProblem,
    MetaChannel,
    _chunks,
    _fit,
    _survey_choice,
    _thread_parts,
)
from .webhook import _DIGITS, _obj, _party, _str_id, _text, _ts

# Set on every message we send through the Send API; Meta echoes it back, so
# our own echoes are recognised without a database lookup (and without the
# race between the echo webhook and the Send API's answer).
ECHO_MARK = "omnidesk"


_ATTACHMENT_LABELS = {
    "image": "[image]",
    "video": "[video]",
    "audio": "[audio]",
    "file": "[file]",
    "sticker": "[sticker]",
    "fallback": "[link]",
    "template": "[template]",
    "location": "[location]",
    "story_mention": "[mentioned you in their story]",
    "story_reply": "[replied to your story]",
    "share": "[shared a post]",
    "ig_reel": "[shared a reel]",
    "reel": "[shared a reel]",
    "ig_post": "[shared a post]",
    "like_heart": "\u2764\ufe0f",
    "product": "[product]",
    "unsupported_type": "[a message type Meta does not pass on]",
}
_ATTACHMENT_TYPES = {
    "image": "image/*",
    "video": "video/*",
    "audio": "audio/*",
    "sticker": "image/*",
}
# What the Attachment Upload API takes for Messenger (developers.facebook.com/
# docs/messenger-platform/send-messages/saving-assets): up to 25 MB of any
# type, sent as image, audio, video or (anything else) file.
MESSENGER_MEDIA_KINDS = (
    MediaKind("image", frozenset({"image/jpeg", "image/png", "image/gif"}), 25 * 1024 * 1024),
    MediaKind("audio", frozenset({"audio/*"}), 25 * 1024 * 1024),
    MediaKind("video", frozenset({"video/*"}), 25 * 1024 * 1024),
    MediaKind("file", frozenset(), 25 * 1024 * 1024),
)
# Messenger's "like" button sends this sticker.
_THUMBS_UP_STICKERS = frozenset({"369239263222822", "369239343222814", "369239383222810"})


class PageChannel(MetaChannel):
    """Messenger and Instagram: the Send API and ``messaging`` items."""

    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"webhook", "delivery_receipts", "attachments", "edits"}
    )

    def _read_options(self, o: Any) -> None:
        self.page_id: str | None = o.string("page_id", None)
        self.human_agent_tag: bool = o.boolean("human_agent_tag", False)

    def _sender_path(self) -> str:
        return self.page_id or "me"

    def normalize_item(self, envelope: Envelope, doc: dict[str, Any]) -> Normalized:
        item: dict[str, Any] = doc["item"]
        entry_id = _str_id((doc.get("entry") or {}).get("id"))
        if doc.get("kind") == "change":
            return Skip(f"{doc.get('object')} change {item.get('field')!r} is not a message")
        sender, recipient = _party(item, "sender"), _party(item, "recipient")
        at = _ts(item.get("timestamp"))
        msg = item.get("message")
        is_echo = isinstance(msg, dict) and bool(msg.get("is_echo"))
        if is_echo:
            # From the page to the customer (Meta's own samples sometimes
            # swap the two: the customer is whichever is not the page).
            customer = recipient if recipient and recipient != entry_id else sender
            page = sender if customer == recipient else recipient
        else:
            customer, page = sender, recipient or entry_id
        if not customer:
            raise NormalizeError("messaging item without a sender id")
        if not _DIGITS.match(customer):
            raise NormalizeError(f"sender id {customer!r} is not a Meta user id")
        if self.page_id and page and page != self.page_id and self.platform == "messenger":
            return Skip(f"for page {page}; this channel serves page {self.page_id}")
        thread_key = f"{page or entry_id}:{customer}"
        who = normalize_identity(self.identity_kind, customer, None, {"page_id": page})
        standby = doc.get("kind") == "standby"

        if "delivery" in item or "read" in item:
            return self._receipt(item, thread_key)
        if isinstance(msg, dict):
            if is_echo:
                return self._echo(envelope, msg, who, page, thread_key, at)
            return self._message(envelope, msg, who, thread_key, at, standby)
        edit = item.get("message_edit")
        if isinstance(edit, dict) and _str_id(edit.get("mid")):
            return Message(
                channel=self.name,
                external_id=envelope.external_id,
                sender=who,
                text=_text(edit.get("text")),
                kind=MessageKind.EDIT,
                edit_of=str(edit["mid"]),
                thread_key=thread_key,
                sent_at=at,
            )
        reaction = item.get("reaction")
        if isinstance(reaction, dict):
            emoji = _text(reaction.get("emoji")) or _text(reaction.get("reaction"))
            removed = reaction.get("action") == "unreact"
            return Message(
                channel=self.name,
                external_id=envelope.external_id,
                sender=who,
                text="[reaction removed]" if removed else (emoji or "[reaction]"),
                auto="reaction",
                thread_key=thread_key,
                sent_at=at,
                meta={"reaction": reaction},
            )
        postback = item.get("postback")
        if isinstance(postback, dict):
            # A button the customer pressed ("Get started", a menu item): what
            # they chose is part of the conversation.
            title = _text(postback.get("title")) or _text(postback.get("payload")) or "[button]"
            return Message(
                channel=self.name,
                external_id=envelope.external_id,
                sender=who,
                text=title,
                thread_key=thread_key,
                sent_at=at,
                meta={"postback": postback, **({"standby": True} if standby else {})},
            )
        for kind in ("referral", "optin", "account_linking", "policy_enforcement"):
            if isinstance(item.get(kind), dict):
                return Skip(f"{kind} event: {json.dumps(item[kind], ensure_ascii=False)[:300]}")
        return Skip(f"unknown messaging item with keys {sorted(item)}")

    def _receipt(self, item: dict[str, Any], thread_key: str) -> Normalized:
        delivery, read = item.get("delivery"), item.get("read")
        state = DeliveryState.DELIVERED if delivery is not None else DeliveryState.READ
        receipt = delivery if isinstance(delivery, dict) else read
        if not isinstance(receipt, dict):
            return Skip("receipt without details")
        mids = receipt.get("mids")
        if isinstance(mids, list) and mids and _str_id(mids[0]):
            return StatusUpdate(channel=self.name, provider_id=str(mids[0]), state=state)
        watermark = _ts(receipt.get("watermark"))
        if watermark is None:
            return Skip(f"{state} receipt without mids or watermark")
        return StatusUpdate(
            channel=self.name,
            provider_id="",
            state=state,
            thread_key=thread_key,
            watermark=watermark,
        )

    def _content(self, msg: dict[str, Any]) -> tuple[str, list[Attachment], dict[str, Any]]:
        text = _text(msg.get("text"))
        labels: list[str] = []
        attachments: list[Attachment] = []
        meta: dict[str, Any] = {}
        for att in msg.get("attachments") or ():
            if not isinstance(att, dict):
                continue
            kind = _text(att.get("type")) or "file"
            payload = _obj(att.get("payload"))
            url = _text(payload.get("url"))
            sticker = _str_id(payload.get("sticker_id"))
            if sticker in _THUMBS_UP_STICKERS:
                labels.append("\U0001f44d")
                continue
            coords = payload.get("coordinates")
            if kind == "location" or isinstance(coords, dict):
                c = coords if isinstance(coords, dict) else {}
                meta["location"] = {"latitude": c.get("lat"), "longitude": c.get("long")}
                labels.append(f"[location: {c.get('lat')}, {c.get('long')}]")
                continue
            label = _ATTACHMENT_LABELS.get(kind, f"[{kind}]")
            title = _text(att.get("title")) or _text(payload.get("title"))
            if title:
                label = f"{label[:-1]}: {title}]" if label.startswith("[") else label
            labels.append(label)
            if url:
                attachments.append(
                    Attachment(
                        filename=title or None,
                        content_type=_ATTACHMENT_TYPES.get(kind, "application/octet-stream"),
                        ref=url,
                    )
                )
            if kind not in _ATTACHMENT_TYPES and kind != "file":
                meta.setdefault("attachments", []).append(att)
        if not text and labels:
            text = " ".join(labels)
        for key in ("quick_reply", "reply_to", "referral", "commands"):
            if key in msg:
                meta[key] = msg[key]
        answer = _survey_choice(_text(_obj(msg.get("quick_reply")).get("payload")))
        if answer is not None:
            text = answer  # a survey's quick reply: its number
        return text, attachments, meta

    def _message(
        self,
        envelope: Envelope,
        msg: dict[str, Any],
        who: Identity,
        thread_key: str,
        at: float | None,
        standby: bool,
    ) -> Normalized:
        mid = _str_id(msg.get("mid"))
        if not mid:
            raise NormalizeError("message without a mid")
        if msg.get("is_deleted"):
            return Message(
                channel=self.name,
                external_id=envelope.external_id,
                sender=who,
                text="[the customer unsent this message]",
                kind=MessageKind.EDIT,
                edit_of=mid,
                thread_key=thread_key,
                sent_at=at,
                meta={"unsent": True},
            )
        text, attachments, meta = self._content(msg)
        if msg.get("is_unsupported"):
            text = text or "[a message type Meta does not pass on]"
        if not text and not attachments:
            return Skip("message without text or attachments")
        if standby:
            meta["standby"] = True  # received while another app had thread control
        return Message(
            channel=self.name,
            external_id=mid,
            sender=who,
            text=text,
            attachments=attachments,
            thread_key=thread_key,
            sent_at=at,
            meta=meta,
        )

    def _echo(
        self,
        envelope: Envelope,
        msg: dict[str, Any],
        customer: Identity,
        page: str | None,
        thread_key: str,
        at: float | None,
    ) -> Normalized:
        if _text(msg.get("metadata")).startswith(ECHO_MARK):
            return Skip("echo of a reply sent by omnidesk")
        text, attachments, meta = self._content(msg)
        if not text and not attachments:
            return Skip("echo of a message without text or attachments")
        app = _str_id(msg.get("app_id"))
        name = "Instagram app" if self.platform == "instagram" else "Page inbox"
        return Message(
            channel=self.name,
            external_id=_str_id(msg.get("mid")) or envelope.external_id,
            sender=Identity(
                kind=self.identity_kind,
                address=page or "page",
                display_name=f"{name} (outside omnidesk)" if not app else f"app {app}",
            ),
            recipients=[customer],
            text=text,
            attachments=attachments,
            thread_key=thread_key,
            sent_at=at,
            direction=Direction.OUTBOUND,
            meta={**meta, "sent_outside_omnidesk": True, **({"app_id": app} if app else {})},
        )

    media_kinds: ClassVar[tuple[MediaKind, ...]] = MESSENGER_MEDIA_KINDS

    async def send(self, message: OutboundMessage) -> SendResult:
        page, customer = _thread_parts(message.thread_key)
        who = message.recipient
        psid = who.address if who.kind == self.identity_kind else customer
        if not psid:
            raise ConfigurationProblem("no recipient id for this conversation")
        files = media_plan(message, self.media_kinds, self.platform.capitalize())
        owner = self.page_id or page or "me"
        path = f"{owner}/messages"
        parts = _chunks(message.text, TEXT_LIMITS[self.platform]) if message.text.strip() else []
        if not parts and not files:
            raise SendError("nothing to send: the reply has no text", retry=False)
        buttons = survey_quick_replies(message.meta.get("survey"))
        steps: list[Callable[[], Awaitable[str | None]]] = []
        for i, part in enumerate(parts):
            body = self._message_body(part)
            if buttons and i == len(parts) - 1:
                body["quick_replies"] = buttons
            steps.append(functools.partial(self._send_one, path, psid, body))
        for a, kind, ctype in files:
            steps.append(functools.partial(self._send_file, owner, psid, a, kind, ctype))
        ids = await send_steps(self.ctx.state, message.outbox_id, steps)
        last_id = next((i for i in reversed(ids) if i), None)
        self.set_health(True, "running", "replies are being delivered")
        return SendResult(provider_id=last_id)

    async def _send_file(
        self, owner: str, psid: str, a: Attachment, kind: MediaKind, ctype: str
    ) -> str | None:
        """The Attachment Upload API, then a message naming the attachment id."""
        assert a.data is not None
        payload = {"attachment": {"type": kind.name, "payload": {"is_reusable": True}}}
        fields = {"message": json.dumps(payload), **self._upload_fields()}
        name = upload_name(a, ctype, ascii=True)
        up = await self._upload(
            f"{owner}/message_attachments", fields, "filedata", name, a.data, ctype
        )
        att_id = _str_id(up.get("attachment_id"))
        if not att_id:
            raise SendError("Meta answered the attachment upload without an id", retry=True)
        attachment = {"type": kind.name, "payload": {"attachment_id": att_id}}
        return await self._send_one(
            f"{owner}/messages", psid, self._mark({"attachment": attachment})
        )

    async def _send_one(self, path: str, psid: str, message: dict[str, Any]) -> str | None:
        body: dict[str, Any] = {
            "recipient": {"id": psid},
            "messaging_type": "RESPONSE",
            "message": message,
        }
        try:
            data = await self._post(path, body)
        except SendError as exc:
            if not (self.human_agent_tag and exc.reason.startswith("outside the 24-hour")):
                raise
            # Meta allows human agents to answer for 7 days with this tag.
            body["messaging_type"] = "MESSAGE_TAG"
            body["tag"] = "HUMAN_AGENT"
            data = await self._post(path, body)
        return _str_id(data.get("message_id"))

    def _message_body(self, text: str) -> dict[str, Any]:
        return self._mark({"text": text})

    def _mark(self, message: dict[str, Any]) -> dict[str, Any]:
        """Our echoes are told apart by this metadata."""
        return {**message, "metadata": ECHO_MARK}

    def _upload_fields(self) -> dict[str, str]:
        return {}


def survey_quick_replies(survey: Any) -> list[dict[str, Any]] | None:
    """A survey's choices as quick replies (Messenger and Instagram: up to 13,
    titles of 20 characters); a tap comes back as the message's
    ``quick_reply.payload`` ``survey:{id}:{choice}``."""
    if not isinstance(survey, dict) or not isinstance(survey.get("choices"), list):
        return None
    sid = survey.get("id")
    choices = [c for c in survey["choices"] if isinstance(c, dict) and "value" in c]
    if not choices or len(choices) > 13:
        return None
    if survey.get("stage") != "loyalty":
        choices.reverse()  # best first
    return [
        {
            "content_type": "text",
            "title": _fit(str(c.get("label") or c["value"]), 20),
            "payload": f"survey:{sid}:{c['value']}",
        }
        for c in choices
    ]


class MessengerChannel(PageChannel):
    type = "messenger"
    platform = "messenger"
    identity_kind = "messenger"
