"""Every Meta webhook body of the corpora (pywa's WhatsApp update variants, in
tests/corpora; courier's Messenger, Instagram and WhatsApp fixtures, AGPL, read from
OMNIDESK_CORPORA under the ``corpus`` mark), POSTed
correctly signed to a channel of the right type: each is answered 200 and each
of its items ends stored, skipped with a reason or quarantined with a reason;
the daemon stays healthy and no item of a delivery is lost.

Each body goes to a channel of its own, as if it were the first thing a fresh
install received: the fixtures reuse the same ids ("external_id",
"wamid.xyzxyz"), which would otherwise be deduplicated before being looked at.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from omnidesk.store.inbound import count_pending
from tests.channels.meta.conftest import ACCESS_TOKEN, APP_SECRET, VERIFY_TOKEN, Meta
from tests.conftest import admin_token
from tests.testdata import outside, vendored

COURIER = "webhooks/meta/courier"
TYPES = {"fba": "messenger", "ig": "instagram", "wac": "whatsapp"}
# Payloads at least, per source.
AT_LEAST = {"pywa": 70, "courier": 60}


def corpus(source: str) -> list[tuple[str, str, bytes]]:
    """(name, channel type, body) for every payload of one source."""
    out: list[tuple[str, str, bytes]] = []
    if source == "courier":
        for folder, ctype in TYPES.items():
            for f in sorted((outside(COURIER) / folder).glob("*.json")):
                out.append((f"courier/{folder}/{f.stem}", ctype, f.read_bytes()))
        return out
    for f in sorted(vendored("webhooks/meta/pywa-whatsapp").glob("*.json")):
        for variant, body in json.loads(f.read_bytes()).items():
            out.append((f"pywa/{f.stem}/{variant}", "whatsapp", json.dumps(body).encode()))
    return out


def item_ids(body: bytes) -> set[str]:
    """The ids Meta gave the items of a delivery (mids, wamids, status ids),
    found independently of the adapter's own splitting."""
    ids: set[str] = set()
    try:
        data = json.loads(body)
    except ValueError:
        return ids
    for entry in data.get("entry") or [] if isinstance(data, dict) else []:
        if not isinstance(entry, dict):
            continue
        for item in entry.get("messaging") or []:
            mid = (item.get("message") or {}).get("mid")
            if mid:
                ids.add(str(mid))
            ids.update(str(m) for m in (item.get("delivery") or {}).get("mids") or [])
        for change in entry.get("changes") or []:
            value = change.get("value") if isinstance(change, dict) else None
            if not isinstance(value, dict):
                continue
            for key in ("messages", "statuses", "message_echoes"):
                ids.update(str(x["id"]) for x in value.get(key) or [] if x.get("id"))
    return ids


# Pinned outcomes for bodies whose meaning is clear: (state, words in note/error, text).
EXPECTED: dict[str, tuple[str, str, str | None]] = {
    "courier/fba/hello_msg": ("done", "new conversation", "Hello World"),
    "courier/fba/echo": ("done", "echo", None),
    "courier/fba/not_page": ("quarantined", "object 'notpage'", None),
    "courier/fba/invalid_urn": ("quarantined", "not a Meta user id", None),
    "courier/fba/dlr": ("done", "status delivered", None),
    "courier/fba/different_page": ("done", "this channel serves page", None),
    "courier/fba/referral": ("done", "referral event", None),
    "courier/fba/thumbs_up": ("done", "new conversation", "\U0001f44d"),
    "courier/ig/story_mention": ("done", "new conversation", "[mentioned you in their story]"),
    "courier/ig/unsent_msg": ("done", "", "[the customer unsent this message]"),
    "courier/wac/location": ("done", "new conversation", None),
    "courier/wac/invalid_from": ("quarantined", "neither a phone number", None),
    "courier/wac/no_from": ("quarantined", "without a sender", None),
    "courier/wac/valid_status": ("done", "status sent", None),
    "courier/wac/button_reply": ("done", "new conversation", "Yes"),
    "pywa/message/text": ("done", "new conversation", "Body Text"),
    "pywa/message/contacts": ("done", "new conversation", None),
    "pywa/message_status/failed": ("done", "status failed", None),
    "pywa/system/phone_number_change": ("done", "system notice", None),
    "pywa/account_update/account_restriction": ("done", "ACCOUNT_RESTRICTION", None),
}


@pytest.mark.parametrize(
    "source", ["pywa", pytest.param("courier", marks=pytest.mark.corpus(COURIER))]
)
async def test_every_corpus_payload_is_accepted_or_rejected_with_a_reason(
    config_factory: Any, daemon_factory: Any, graph: Any, source: str
) -> None:
    payloads = corpus(source)
    assert len(payloads) >= AT_LEAST[source]
    channels: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for i, (name, ctype, _) in enumerate(payloads):
        names[name] = f"m{i}"
        ch: dict[str, Any] = {
            "name": f"m{i}",
            "type": ctype,
            "app_secret": APP_SECRET,
            "verify_token": VERIFY_TOKEN,
            "access_token": ACCESS_TOKEN,
            "api_base_url": graph.base_url,
            "check_token": False,
        }
        if ctype == "messenger":
            ch["page_id"] = "1234567890"
        if ctype == "whatsapp":
            ch["phone_number_id"] = "1234567890"
        channels.append(ch)
    daemon = await daemon_factory(config_factory(channels=channels))

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.web_port}", timeout=10) as c:
        meta = Meta(daemon, c, graph)
        meta.auth = await admin_token(daemon)
        for name, _, body in payloads:
            r = await meta.deliver(names[name], body)
            assert r.status_code == 200, (name, r.status_code, r.text)
            answer = r.json()
            assert answer["stored"] >= 1, (name, answer)
        await meta.settle()
        assert (await c.get("/healthz")).json()["store"]["ok"] is True
        assert await daemon.store.read(count_pending) == 0

        outcomes: dict[str, list[dict[str, Any]]] = {}
        for name, _, body in payloads:
            rows = await meta.inbound(names[name])
            outcomes[name] = rows
            for row in rows:
                assert row["state"] in ("done", "quarantined"), (name, row)
                reason = row["error"] if row["state"] == "quarantined" else row["note"]
                assert reason, f"{name}: {row['external_id']} has no reason"
            stored = " ".join(row["external_id"] for row in rows)
            for item_id in item_ids(body):
                assert item_id in stored, f"{name}: item {item_id} was lost"

        expected = {n: e for n, e in EXPECTED.items() if n.startswith(f"{source}/")}
        assert expected, f"no pinned outcome for {source}"
        for name, (state, words, text) in expected.items():
            rows = outcomes[name]
            assert any(
                row["state"] == state
                and words in ((row["error"] if state == "quarantined" else row["note"]) or "")
                for row in rows
            ), (name, rows)
            if text is not None:
                msgs = await meta.messages(names[name])
                assert text in [m["text"] for m in msgs], (name, msgs)
