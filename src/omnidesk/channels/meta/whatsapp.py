"""The WhatsApp Cloud API: ``messages``, ``statuses`` and ``message_echoes``
from the webhook, replies through ``/{phone_number_id}/messages`` inside the
24-hour window or as an approved template outside it."""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

from ...identity import normalize_identity, normalize_phone
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
    WHATSAPP_WINDOW_REASON,
    WINDOW_SECONDS,
    ConfigurationProblem,
    MetaChannel,
    _chunks,
    _fit,
    _flat,
    _survey_choice,
    _thread_parts,
)
from .webhook import _DIGITS, _list, _obj, _str_id, _text, _ts

_WA_MEDIA = ("image", "video", "audio", "document", "sticker", "voice")
# What the Cloud API's media upload takes (developers.facebook.com/docs/
# whatsapp/cloud-api/reference/media#supported-media-types), in the order a
# file is matched; stickers (webp) are left out: they are not files an agent sends.
WA_MEDIA_KINDS = (
    MediaKind("image", frozenset({"image/jpeg", "image/png"}), 5 * 1024 * 1024),
    MediaKind("video", frozenset({"video/mp4", "video/3gpp"}), 16 * 1024 * 1024),
    MediaKind(
        "audio",
        frozenset({"audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"}),
        16 * 1024 * 1024,
    ),
    MediaKind(
        "document",
        frozenset(
            {
                "text/plain",
                "application/pdf",
                "application/msword",
                "application/vnd.ms-excel",
                "application/vnd.ms-powerpoint",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            }
        ),
        100 * 1024 * 1024,
    ),
)
_WA_STATUS = {
    "sent": DeliveryState.SENT,
    "delivered": DeliveryState.DELIVERED,
    "read": DeliveryState.READ,
    "played": DeliveryState.READ,
    "failed": DeliveryState.FAILED,
}


@functools.lru_cache(maxsize=4096)  # parsing a number costs ~50 µs; customers write again
def _wa_phone(wa_id: str) -> str | None:
    """A WhatsApp id is the user's phone number in digits: E.164 when it
    parses as one, else the digits with a '+' (WhatsApp vouches for it)."""
    if not re.fullmatch(r"\+?\d{1,20}", wa_id or ""):
        return None
    return normalize_phone(wa_id) or "+" + wa_id.lstrip("+")


def _wa_errors(errors: Any) -> str:
    out = []
    for e in errors if isinstance(errors, list) else ():
        if not isinstance(e, dict):
            continue
        data = e.get("error_data")
        details = _text(data.get("details")) if isinstance(data, dict) else ""
        title = _text(e.get("title")) or _text(e.get("message"))
        code = e.get("code")
        if code == 131047:
            title = WHATSAPP_WINDOW_REASON
        out.append(f"{title}{': ' + details if details else ''} (code {code})")
    return "; ".join(out)


class WhatsAppChannel(MetaChannel):
    type = "whatsapp"
    platform = "whatsapp"
    identity_kind = "phone"
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"webhook", "delivery_receipts", "attachments", "edits"}
    )

    def _read_options(self, o: Any) -> None:
        self.phone_number_id: str = o.string("phone_number_id")
        if not _DIGITS.match(self.phone_number_id or ""):
            raise o.error("phone_number_id", "must be the numeric phone number id from Meta")
        self.quote_replies: bool = o.boolean("quote_replies", True)
        self.window_template: str | None = o.string("window_template", None)
        self.window_template_language: str = o.string("window_template_language", "en_US")
        self.window_template_text: bool = o.boolean("window_template_text", True)

    def _sender_path(self) -> str:
        return self.phone_number_id

    # -- inbound ---------------------------------------------------------------------
    def normalize_item(self, envelope: Envelope, doc: dict[str, Any]) -> Normalized:
        item: dict[str, Any] = doc["item"]
        kind = doc.get("kind")
        number_id = _str_id((doc.get("metadata") or {}).get("phone_number_id")) or (
            self.phone_number_id
        )
        if kind == "status":
            return self._status(item)
        if kind == "error":
            return Skip(f"WhatsApp reported an error: {_wa_errors([item])}")
        if kind == "change":
            field = item.get("field")
            value = item.get("value")
            event = value.get("event") if isinstance(value, dict) else None
            return Skip(f"WhatsApp {field} notice{f' {event}' if event else ''}: not a message")
        if kind == "echo":
            return self._echo(envelope, item, doc, number_id)
        return self._message(envelope, item, doc, number_id)

    def _status(self, st: dict[str, Any]) -> Normalized:
        wamid = _str_id(st.get("id"))
        status = st.get("status")
        if st.get("type") == "call":
            return Skip(f"call status {status}")
        state = _WA_STATUS.get(status if isinstance(status, str) else "")
        if wamid is None or state is None:
            return Skip(f"status {status!r} is not a delivery state we track")
        reason = None
        if state == DeliveryState.FAILED:
            reason = _wa_errors(st.get("errors")) or "WhatsApp reported the message as failed"
        return StatusUpdate(
            channel=self.name,
            provider_id=wamid,
            state=state,
            reason=reason,
            at=_ts(st.get("timestamp")) or time.time(),
        )

    def _customer(self, msg: dict[str, Any], contact: Any) -> Identity:
        contact = contact if isinstance(contact, dict) else {}
        profile = _obj(contact.get("profile"))
        name = _text(profile.get("name")) or None
        data: dict[str, object] = {
            k: v
            for k, v in (
                ("wa_id", msg.get("from") or contact.get("wa_id")),
                ("user_id", msg.get("from_user_id") or contact.get("user_id")),
                ("parent_user_id", msg.get("from_parent_user_id") or contact.get("parent_user_id")),
                ("username", profile.get("username")),
            )
            if isinstance(v, str) and v
        }
        frm = _text(msg.get("from")) or _text(contact.get("wa_id"))
        phone = _wa_phone(frm)
        if phone:
            return Identity(kind="phone", address=phone, display_name=name, data=data)
        # A user who hides their number behind a username: reachable by the
        # business-scoped user id (BSUID) only.
        bsuid = _text(msg.get("from_user_id")) or _text(contact.get("user_id"))
        if not bsuid and re.fullmatch(r"[A-Z]{2}\.[A-Za-z0-9.]+", frm):
            bsuid = frm
        if bsuid:
            return normalize_identity("whatsapp", bsuid, name, data)
        if frm:
            raise NormalizeError(f"sender {frm!r} is neither a phone number nor a WhatsApp user id")
        raise NormalizeError("message without a sender ('from' or 'from_user_id')")

    def _message(
        self, envelope: Envelope, msg: dict[str, Any], doc: dict[str, Any], number_id: str
    ) -> Normalized:
        wamid = _str_id(msg.get("id"))
        if not wamid:
            raise NormalizeError("message without an id")
        mtype = _text(msg.get("type"))
        if mtype == "system":
            system = _obj(msg.get("system"))
            return Skip(f"system notice: {_text(system.get('body')) or system.get('type')}")
        who = self._customer(msg, doc.get("contact"))
        thread_key = f"{number_id}:{who.address}"
        at = _ts(msg.get("timestamp"))
        meta: dict[str, Any] = {"type": mtype}
        for key in ("context", "referral", "group_id"):
            if key in msg:
                meta[key] = msg[key]
        base: dict[str, Any] = {
            "channel": self.name,
            "external_id": wamid,
            "sender": who,
            "thread_key": thread_key,
            "sent_at": at,
            "meta": meta,
        }
        if mtype in ("edit", "revoke"):
            body = _obj(msg.get(mtype))
            original = _str_id(body.get("original_message_id"))
            if not original:
                raise NormalizeError(f"{mtype} without original_message_id")
            atts: list[Attachment] = []
            if mtype == "revoke":
                text = "[the customer deleted this message]"
            else:
                inner = _obj(body.get("message"))
                text, atts, extra = self._content(inner, _text(inner.get("type")))
                meta.update(extra)
            return Message(
                **base, text=text, attachments=atts, kind=MessageKind.EDIT, edit_of=original
            )
        if mtype == "reaction":
            r = _obj(msg.get("reaction"))
            emoji = _text(r.get("emoji"))
            meta["reaction"] = r
            return Message(**base, text=emoji or "[reaction removed]", auto="reaction")
        text, atts, extra = self._content(msg, mtype)
        meta.update(extra)
        if not text and not atts:
            raise NormalizeError(f"{mtype or 'untyped'} message without content")
        return Message(**base, text=text, attachments=atts)

    def _content(
        self, msg: dict[str, Any], mtype: str
    ) -> tuple[str, list[Attachment], dict[str, Any]]:
        """Text, attachments and extra meta of a message body of type ``mtype``."""
        meta: dict[str, Any] = {}
        body = _obj(msg.get(mtype))
        if mtype == "text":
            return _text(body.get("body")), [], meta
        if mtype in _WA_MEDIA:
            media_id = _str_id(body.get("id"))
            url = _text(body.get("url"))
            mime = _text(body.get("mime_type")) or "application/octet-stream"
            caption = _text(body.get("caption"))
            filename = _text(body.get("filename")) or None
            meta["media"] = {
                k: body[k]
                for k in ("id", "mime_type", "sha256", "url", "voice", "animated")
                if k in body
            }
            label = {
                "image": "[image]",
                "video": "[video]",
                "audio": "[voice message]" if body.get("voice") else "[audio]",
                "voice": "[voice message]",
                "document": f"[document: {filename}]" if filename else "[document]",
                "sticker": "[sticker]",
            }[mtype]
            atts = [
                Attachment(
                    filename=filename,
                    content_type=mime.split(";")[0].strip() or mime,
                    ref=f"whatsapp-media:{media_id}" if media_id else (url or None),
                )
            ]
            return caption or label, atts, meta
        if mtype == "location":
            lat, lng = body.get("latitude"), body.get("longitude")
            meta["location"] = body
            place = ", ".join(p for p in (_text(body.get("name")), _text(body.get("address"))) if p)
            text = f"[location: {place + ' - ' if place else ''}{lat}, {lng}]"
            return text, [], meta
        if mtype == "contacts":
            cards = _list(msg.get("contacts"))
            meta["contacts"] = cards
            shown = []
            for c in cards:
                if not isinstance(c, dict):
                    continue
                n = _obj(c.get("name"))
                phones = [
                    _text(p.get("phone")) for p in c.get("phones") or () if isinstance(p, dict)
                ]
                shown.append(" ".join(x for x in (_text(n.get("formatted_name")), *phones) if x))
            return f"[shared contact: {'; '.join(shown) or 'empty card'}]", [], meta
        if mtype == "interactive":
            kind = _text(body.get("type"))
            reply = _obj(body.get(kind))
            meta["interactive"] = body
            if kind in ("button_reply", "list_reply"):
                answer = _survey_choice(_text(reply.get("id")))
                if answer is not None:
                    return answer, [], meta  # a survey's button: its number
                title = _text(reply.get("title"))
                desc = _text(reply.get("description"))
                return (f"{title} ({desc})" if desc else title) or f"[{kind}]", [], meta
            if kind == "nfm_reply":
                raw = reply.get("response_json")
                try:
                    parsed = json.loads(raw) if isinstance(raw, str) else raw
                except ValueError:
                    parsed = raw
                meta["flow_response"] = parsed
                summary = ""
                if isinstance(parsed, dict):
                    summary = ", ".join(f"{k}: {v}" for k, v in parsed.items() if k != "flow_token")
                return f"[form submitted{': ' + summary if summary else ''}]", [], meta
            if kind == "call_permission_reply":
                return f"[call permission: {reply.get('response')}]", [], meta
            errors = _wa_errors(msg.get("errors"))
            return f"[interactive reply{': ' + errors if errors else ''}]", [], meta
        if mtype == "button":
            meta["button"] = body
            return _text(body.get("text")) or _text(body.get("payload")) or "[button]", [], meta
        if mtype == "order":
            meta["order"] = body
            items = [
                f"{i.get('quantity')} x {i.get('product_retailer_id')}"
                for i in body.get("product_items") or ()
                if isinstance(i, dict)
            ]
            note = _text(body.get("text"))
            text = f"[order: {', '.join(items)}]" + (f" {note}" if note else "")
            return text, [], meta
        # unsupported, unknown or future types: the agent should know the
        # customer sent something, even if we cannot show it.
        errors = _wa_errors(msg.get("errors"))
        fallback = _text(body.get("body")) if isinstance(body, dict) else ""
        text = fallback or f"[a {mtype or 'message'} WhatsApp cannot show here"
        if not fallback:
            text += f": {errors}]" if errors else "]"
        return text, [], meta

    def _echo(
        self, envelope: Envelope, echo: dict[str, Any], doc: dict[str, Any], number_id: str
    ) -> Normalized:
        """A message the business sent from the WhatsApp Business app
        (coexistence): recorded in the conversation as an outbound message."""
        mtype = _text(echo.get("type"))
        to = _text(echo.get("to"))
        phone = _wa_phone(to)
        bsuid = _text(echo.get("to_user_id"))
        if phone:
            customer = Identity("phone", phone)
        elif bsuid:
            customer = Identity("whatsapp", bsuid)
        else:
            return Skip(f"echo to {to!r}, which is not a customer we can identify")
        if mtype in ("revoke", "edit"):
            return Skip(f"{mtype} of a message sent from the WhatsApp Business app")
        text, atts, meta = self._content(echo, mtype)
        return Message(
            channel=self.name,
            external_id=envelope.external_id,
            sender=Identity("phone", _text(echo.get("from")) or number_id, "WhatsApp Business app"),
            recipients=[customer],
            text=text,
            attachments=atts,
            thread_key=f"{number_id}:{customer.address}",
            sent_at=_ts(echo.get("timestamp")),
            direction=Direction.OUTBOUND,
            meta={**meta, "sent_outside_omnidesk": True},
        )

    # -- outbound --------------------------------------------------------------------
    async def send(self, message: OutboundMessage) -> SendResult:
        number, _customer = _thread_parts(message.thread_key)
        number = number if number and _DIGITS.match(number) else self.phone_number_id
        target = self._recipient(message.recipient)
        files = media_plan(message, WA_MEDIA_KINDS, "WhatsApp")
        last = await self._customer_last_wrote(message)
        if last is not None and time.time() - last > WINDOW_SECONDS:
            if files:
                raise SendError(
                    f"{WHATSAPP_WINDOW_REASON} (last message {_age(time.time() - last)} ago);"
                    " a template cannot carry this reply's files",
                    retry=False,
                )
            if not self.window_template:
                raise SendError(
                    f"{WHATSAPP_WINDOW_REASON} (last message {_age(time.time() - last)} ago);"
                    " configure window_template to send one automatically",
                    retry=False,
                )
            data = await self._post(f"{number}/messages", {**target, **self._template(message)})
            return SendResult(provider_id=_wamid(data))
        survey = survey_interactive(message.text, message.meta.get("survey"))
        if survey is not None:
            data = await self._post(f"{number}/messages", {**target, **survey})
            return SendResult(provider_id=_wamid(data))
        parts = _chunks(message.text, TEXT_LIMITS["whatsapp"]) if message.text.strip() else []
        if not parts and not files:
            raise SendError("nothing to send: the reply has no text", retry=False)
        steps: list[Callable[[], Awaitable[str | None]]] = []
        for i, part in enumerate(parts):
            body: dict[str, Any] = {
                **target,
                "type": "text",
                "text": {"body": part, "preview_url": False},
            }
            if i == 0 and self.quote_replies and message.reply_to_external_id:
                body["context"] = {"message_id": message.reply_to_external_id}
            steps.append(functools.partial(self._send_body, f"{number}/messages", body))
        for a, kind, ctype in files:
            steps.append(functools.partial(self._send_file, number, target, a, kind, ctype))
        ids = await send_steps(self.ctx.state, message.outbox_id, steps)
        last_id = next((i for i in reversed(ids) if i), None)
        self.set_health(True, "running", "replies are being delivered")
        return SendResult(provider_id=last_id)

    async def _send_body(self, path: str, body: dict[str, Any]) -> str | None:
        return _wamid(await self._post(path, body))

    async def _send_file(
        self, number: str, target: dict[str, Any], a: Attachment, kind: MediaKind, ctype: str
    ) -> str | None:
        """Upload the file, then send a message of its kind naming the media id."""
        assert a.data is not None
        name = upload_name(a, ctype)
        fields = {"messaging_product": "whatsapp", "type": ctype}
        up = await self._upload(f"{number}/media", fields, "file", name, a.data, ctype)
        media_id = _str_id(up.get("id"))
        if not media_id:
            raise SendError("WhatsApp answered the media upload without an id", retry=True)
        media: dict[str, Any] = {"id": media_id}
        if kind.name == "document":
            media["filename"] = name
        return await self._send_body(
            f"{number}/messages", {**target, "type": kind.name, kind.name: media}
        )

    def _recipient(self, who: Identity) -> dict[str, Any]:
        base = {"messaging_product": "whatsapp", "recipient_type": "individual"}
        if who.kind == "phone":
            return {**base, "to": who.address.lstrip("+")}
        if who.kind == "whatsapp":
            return {**base, "recipient": who.address}  # a BSUID
        raise ConfigurationProblem(
            f"cannot send WhatsApp messages to a {who.kind} identity ({who.address})"
        )

    def _template(self, message: OutboundMessage) -> dict[str, Any]:
        template: dict[str, Any] = {
            "name": self.window_template,
            "language": {"code": self.window_template_language},
        }
        if self.window_template_text:
            # Template parameters may not hold newlines, tabs or runs of spaces.
            param = _flat(message.text)[:1024]
            template["components"] = [
                {"type": "body", "parameters": [{"type": "text", "text": param}]}
            ]
        return {"type": "template", "template": template}


def survey_interactive(text: str, survey: Any) -> dict[str, Any] | None:
    """A survey question as an interactive message: up to three choices as
    reply buttons, up to ten as a list; more (the 0-10 loyalty question) or a
    question over WhatsApp's 1,024 characters stays a text the customer
    answers with a number. A choice comes back as ``button_reply`` or
    ``list_reply`` with its id ``survey:{id}:{choice}``."""
    if not isinstance(survey, dict) or not isinstance(survey.get("choices"), list):
        return None
    sid = survey.get("id")
    choices = [c for c in survey["choices"] if isinstance(c, dict) and "value" in c]
    if not choices or len(choices) > 10 or len(text) > 1024:
        return None
    choices.reverse()  # best first
    ids = [f"survey:{sid}:{c['value']}" for c in choices]
    labels = [str(c.get("label") or c["value"]) for c in choices]
    if len(choices) <= 3:
        action: dict[str, Any] = {
            "buttons": [
                {"type": "reply", "reply": {"id": i, "title": _fit(label, 20)}}
                for i, label in zip(ids, labels, strict=True)
            ]
        }
        kind = "button"
    else:
        rows = [
            {"id": i, "title": _fit(f"{c['value']} · {label}", 24)}
            for i, c, label in zip(ids, choices, labels, strict=True)
        ]
        # The list's button says the scale (no words: the survey's language
        # is in its text).
        scale = f"{survey.get('min', '')}–{survey.get('max', '')}".strip("–") or "…"
        action = {"button": _fit(scale, 20), "sections": [{"rows": rows}]}
        kind = "list"
    return {
        "type": "interactive",
        "interactive": {"type": kind, "body": {"text": text}, "action": action},
    }


def _wamid(data: Mapping[str, Any]) -> str | None:
    msgs = data.get("messages")
    if isinstance(msgs, list) and msgs and isinstance(msgs[0], dict):
        return _str_id(msgs[0].get("id"))
    return None


def _age(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:.0f} hours" if hours < 72 else f"{hours / 24:.0f} days"
