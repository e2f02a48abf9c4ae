"""Meta's webhook: the signature on the raw body and the split of one delivery
into one envelope per item (Messenger, Instagram and WhatsApp alike), with the
small helpers that read Meta's JSON."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

SIGNATURE_HEADER = "X-Hub-Signature-256"
MAX_BODY = 16 * 1024 * 1024  # a channel's declared cap (web/limits.py enforces it)

_DIGITS = re.compile(r"^\d{1,32}$")


# -- signatures ----------------------------------------------------------------


def sign(app_secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends with ``body``."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(app_secret: str, body: bytes, header: str | None) -> str | None:
    """None when ``header`` signs ``body``, else the reason it does not."""
    if not header:
        return "missing X-Hub-Signature-256 header"
    algo, _, digest = header.strip().partition("=")
    if algo.lower() != "sha256" or not digest:
        return "malformed X-Hub-Signature-256 header (expected sha256=<hex>)"
    expected = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, digest.strip().lower()):
        return "signature mismatch"
    return None


# -- splitting a delivery into envelopes ----------------------------------------


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _str_id(value: Any) -> str | None:
    """Meta sends ids as strings, sometimes as numbers."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _party(item: Mapping[str, Any], key: str) -> str | None:
    v = item.get(key)
    return _str_id(v.get("id")) if isinstance(v, dict) else None


class Unparseable(ValueError):
    """A signed delivery that is not a Meta webhook body we understand."""


_OBJECTS = {
    "messenger": ("page",),
    "instagram": ("instagram", "page"),
    "whatsapp": ("whatsapp_business_account",),
}


def split_delivery(platform: str, body: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(external id, envelope document) for every item of a delivery, in order,
    duplicates included. Raises :class:`Unparseable` with the reason."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Unparseable(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise Unparseable("body is not a JSON object")
    obj = data.get("object")
    if obj not in _OBJECTS[platform]:
        raise Unparseable(
            f"object {obj!r} is not what a {platform} channel receives"
            f" ({' or '.join(repr(o) for o in _OBJECTS[platform])}): is the webhook pointed"
            " at the right channel?"
        )
    entries = data.get("entry")
    if not isinstance(entries, list):
        raise Unparseable("'entry' is missing or not a list")
    out: list[tuple[str, dict[str, Any]]] = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        head = {"id": _str_id(entry.get("id")), "time": entry.get("time")}
        if platform == "whatsapp":
            out.extend(_split_whatsapp_entry(obj, head, entry))
        else:
            out.extend(_split_page_entry(platform, obj, head, entry))
    return out


def _doc(platform: str, obj: str, entry: dict[str, Any], kind: str, item: Any) -> dict[str, Any]:
    return {"platform": platform, "object": obj, "entry": entry, "kind": kind, "item": item}


def _split_page_entry(
    platform: str, obj: str, head: dict[str, Any], entry: Mapping[str, Any]
) -> Iterator[tuple[str, dict[str, Any]]]:
    for source in ("messaging", "standby"):
        items = entry.get(source)
        if not isinstance(items, list):
            continue
        for item in items:
            if not isinstance(item, dict):
                continue
            kind = source
            delivery = _obj(item.get("delivery"))
            mids = delivery.get("mids")
            if isinstance(mids, list) and len(mids) > 1:
                # One receipt per mid, so each is its own idempotent status update.
                for mid in mids:
                    one = {**item, "delivery": {**delivery, "mids": [mid]}}
                    yield f"delivery:{mid}", _doc(platform, obj, head, kind, one)
                continue
            yield _page_item_id(item), _doc(platform, obj, head, kind, item)
    changes = entry.get("changes")
    if isinstance(changes, list):
        for change in changes:
            yield f"change:{_sha(_dumps(change))}", _doc(platform, obj, head, "change", change)


def _page_item_id(item: Mapping[str, Any]) -> str:
    sender = _party(item, "sender") or "-"
    ts = item.get("timestamp")
    msg = item.get("message")
    if isinstance(msg, dict):
        mid = _str_id(msg.get("mid"))
        if mid:
            if msg.get("is_deleted"):
                return f"unsent:{mid}"
            return mid
    edit = item.get("message_edit")
    if isinstance(edit, dict) and _str_id(edit.get("mid")):
        return f"edit:{edit['mid']}:{edit.get('num_edit', 0)}"
    delivery = item.get("delivery")
    if isinstance(delivery, dict):
        mids = delivery.get("mids")
        if isinstance(mids, list) and len(mids) == 1 and _str_id(mids[0]):
            return f"delivery:{mids[0]}"
        return f"delivery:{sender}:{delivery.get('watermark')}"
    read = item.get("read")
    if isinstance(read, dict):
        return f"read:{sender}:{read.get('watermark')}"
    reaction = item.get("reaction")
    if isinstance(reaction, dict):
        return f"reaction:{reaction.get('mid')}:{sender}:{reaction.get('action')}:{ts}"
    postback = item.get("postback")
    if isinstance(postback, dict) and _str_id(postback.get("mid")):
        return f"postback:{postback['mid']}"
    for kind in ("postback", "referral", "optin", "account_linking", "policy_enforcement"):
        if kind in item:
            return f"{kind}:{sender}:{ts}"
    return f"item:{_sha(_dumps(item))}"


def _split_whatsapp_entry(
    obj: str, head: dict[str, Any], entry: Mapping[str, Any]
) -> Iterator[tuple[str, dict[str, Any]]]:
    changes = entry.get("changes")
    if not isinstance(changes, list):
        return
    for change in changes:
        if not isinstance(change, dict):
            continue
        value = change.get("value")
        field = change.get("field")
        value = _obj(value)
        if not any(isinstance(value.get(k), list) for k, _ in _WA_KINDS):
            # Account, template, call and preference notices: one envelope each.
            doc = _doc("whatsapp", obj, head, "change", change)
            yield f"change:{_sha(_dumps(change))}", doc
            continue
        extra = set(value) - _WA_VALUE_KEYS
        if extra:
            # Parts we do not split (calls, preferences...): kept as one envelope.
            doc = _doc("whatsapp", obj, head, "change", change)
            yield f"change:{_sha(_dumps(change))}", doc
        ctx = {"field": field, "metadata": value.get("metadata")}
        contacts = _list(value.get("contacts"))
        for key, kind in _WA_KINDS:
            for part in _list(value.get(key)):
                if not isinstance(part, dict):
                    continue
                d = _doc("whatsapp", obj, head, kind, part)
                d.update(ctx)
                if kind == "message":
                    d["contact"] = _wa_contact(contacts, part)
                elif kind == "echo":
                    d["contact"] = contacts[0] if len(contacts) == 1 else None
                yield _wa_item_id(kind, part, head), d


def _wa_item_id(kind: str, part: dict[str, Any], head: dict[str, Any]) -> str:
    wamid = _str_id(part.get("id"))
    if kind == "message":
        return wamid or f"item:{_sha(_dumps(part))}"
    if kind == "status":
        return f"status:{wamid}:{part.get('status')}"
    if kind == "echo":
        return f"echo:{wamid or _sha(_dumps(part))}"
    return f"error:{_sha(_dumps([head, part]))}"


_WA_KINDS = (
    ("messages", "message"),
    ("statuses", "status"),
    ("message_echoes", "echo"),
    ("errors", "error"),
)
_WA_VALUE_KEYS = frozenset({"messaging_product", "metadata", "contacts", *dict(_WA_KINDS)})


def _wa_contact(contacts: list[Any], msg: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``contacts`` record of the message's sender (profile name, BSUID)."""
    frm, uid = msg.get("from"), msg.get("from_user_id")
    for c in contacts:
        if isinstance(c, dict) and (
            (frm and c.get("wa_id") == frm) or (uid and c.get("user_id") == uid)
        ):
            return c
    return contacts[0] if len(contacts) == 1 and isinstance(contacts[0], dict) else None


# -- small parsing helpers -------------------------------------------------------


def _ts(value: Any) -> float | None:
    """Meta timestamps: Messenger in milliseconds, WhatsApp in seconds (as a
    string). A value that is not a plausible time gives None, not an error:
    the message itself is still good."""
    try:
        t = float(value)
    except (TypeError, ValueError):
        return None
    if t > 1e11:  # milliseconds
        t /= 1000.0
    return t if 1e8 < t < 1e10 else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
