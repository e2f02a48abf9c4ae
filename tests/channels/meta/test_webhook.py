"""Meta's webhook over real HTTP: the subscription handshake, the signature on
the raw body, batched deliveries split into one envelope per item, duplicates,
and signed bodies that cannot be parsed."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from omnidesk.channels.meta.webhook import SIGNATURE_HEADER, sign, split_delivery, verify_signature
from tests.channels.meta.conftest import (
    APP_SECRET,
    PAGE_ID,
    VERIFY_TOKEN,
    Meta,
    fb_message,
    page_delivery,
    wa_delivery,
    wa_message,
    wa_text,
)


async def test_handshake_echoes_the_challenge(meta: Meta) -> None:
    for channel in ("fb", "ig", "wa"):
        r = await meta.client.get(
            f"/webhooks/{channel}",
            params={
                "hub.mode": "subscribe",
                "hub.verify_token": VERIFY_TOKEN,
                "hub.challenge": "1158201444",
            },
        )
        assert r.status_code == 200
        assert r.text == "1158201444"


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"}, 403),
        (
            {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN[:-1], "hub.challenge": "1"},
            403,
        ),
        ({"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"}, 400),
        ({"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN}, 400),
        ({}, 400),
    ],
)
async def test_handshake_refuses_wrong_token_or_form(
    meta: Meta, params: dict[str, str], status: int
) -> None:
    r = await meta.client.get("/webhooks/wa", params=params)
    assert r.status_code == status
    assert "1" != r.text


@pytest.mark.parametrize(
    "mutate", ["missing", "wrong-secret", "tampered-body", "malformed", "sha1", "empty-digest"]
)
async def test_bad_signature_is_refused_and_nothing_stored(meta: Meta, mutate: str) -> None:
    raw = json.dumps(wa_text("wamid.sig", "15551230000", "hello")).encode()
    headers = {SIGNATURE_HEADER: sign(APP_SECRET, raw), "Content-Type": "application/json"}
    if mutate == "missing":
        del headers[SIGNATURE_HEADER]
    elif mutate == "wrong-secret":
        headers[SIGNATURE_HEADER] = sign("not-the-app-secret", raw)
    elif mutate == "tampered-body":
        raw = raw.replace(b"hello", b"HELLO")
    elif mutate == "malformed":
        headers[SIGNATURE_HEADER] = "deadbeef"
    elif mutate == "sha1":
        headers[SIGNATURE_HEADER] = "sha1=" + hashlib.sha1(raw).hexdigest()
    else:
        headers[SIGNATURE_HEADER] = "sha256="
    r = await meta.client.post("/webhooks/wa", content=raw, headers=headers)
    assert r.status_code == (401 if mutate == "missing" else 403)
    assert r.json()["error"]
    assert await meta.inbound("wa") == []


async def test_signature_from_another_channels_secret_is_refused(meta_factory: Any) -> None:
    m = await meta_factory(wa={"app_secret": "whatsapp-app-has-its-own-secret"})
    r = await m.deliver("wa", wa_text("wamid.x", "15551230000", "hi"))  # signed with APP_SECRET
    assert r.status_code == 403
    r = await m.deliver(
        "wa", wa_text("wamid.x", "15551230000", "hi"), "whatsapp-app-has-its-own-secret"
    )
    assert r.status_code == 200


def test_verify_signature_is_about_the_exact_bytes() -> None:
    body = b'{"object":"page","entry":[]}'
    good = sign("k", body)
    assert verify_signature("k", body, good) is None
    assert verify_signature("k", body, good.upper().replace("SHA256", "sha256")) is None
    assert verify_signature("k", body + b" ", good) == "signature mismatch"
    assert verify_signature("k", body, None) is not None


async def test_batched_delivery_stores_every_item_of_every_entry(meta: Meta) -> None:
    delivery = page_delivery(
        fb_message("m_1", "7001", "First customer, first message"),
        fb_message("m_2", "7002", "Second customer"),
    )
    # A second item inside the first entry, as Meta batches within an entry too.
    delivery["entry"][0]["messaging"].append(fb_message("m_3", "7001", "First customer again"))
    r = await meta.deliver("fb", delivery)
    assert r.status_code == 200
    assert r.json() == {"stored": 3, "duplicates": 0}
    await meta.settle()
    convs = await meta.conversations("fb")
    assert len(convs) == 2
    texts = sorted(m["text"] for m in await meta.messages("fb"))
    assert texts == ["First customer again", "First customer, first message", "Second customer"]


async def test_whatsapp_batch_with_messages_and_statuses_in_several_changes(meta: Meta) -> None:
    a = wa_delivery(
        messages=[
            wa_message("wamid.A1", "15550000001", "text", "one"),
            wa_message("wamid.A2", "15550000001", "text", "two"),
        ],
        contacts=[{"profile": {"name": "Ann"}, "wa_id": "15550000001"}],
    )
    b = wa_delivery(
        messages=[wa_message("wamid.B1", "15550000002", "text", "three")],
        contacts=[{"profile": {"name": "Bob"}, "wa_id": "15550000002"}],
        statuses=[
            {
                "id": "wamid.unknown",
                "status": "delivered",
                "timestamp": "1700000000",
                "recipient_id": "15550000002",
            }
        ],
    )
    a["entry"].append(b["entry"][0])
    a["entry"][0]["changes"].append(b["entry"][0]["changes"][0])
    r = await meta.deliver("wa", a)
    # b's change is in the delivery twice (its own entry and the first one).
    assert r.json() == {"stored": 4, "duplicates": 2}
    await meta.settle()
    rows = {row["external_id"]: row for row in await meta.inbound("wa")}
    assert set(rows) == {"wamid.A1", "wamid.A2", "wamid.B1", "status:wamid.unknown:delivered"}
    assert all(row["state"] == "done" for row in rows.values())
    assert "no matching reply" in rows["status:wamid.unknown:delivered"]["note"]
    assert len(await meta.conversations("wa")) == 2
    assert [m["text"] for m in await meta.messages("wa")] == ["one", "two", "three"]


async def test_redelivery_is_deduplicated(meta: Meta) -> None:
    delivery = wa_text("wamid.dup", "15551112222", "Is my order on its way?")
    first = await meta.deliver("wa", delivery)
    again = await meta.deliver("wa", delivery)
    assert first.json() == {"stored": 1, "duplicates": 0}
    assert again.json() == {"stored": 0, "duplicates": 1}
    # The same mid in two entries of one delivery (Meta's own sample does this).
    both = page_delivery(fb_message("m_twice", "7003", "hi"), fb_message("m_twice", "7003", "hi"))
    assert (await meta.deliver("fb", both)).json() == {"stored": 1, "duplicates": 1}
    await meta.settle()
    [conv] = await meta.conversations("wa")
    assert [m["text"] for m in (await meta.conversation(conv["id"]))["messages"]] == [
        "Is my order on its way?"
    ]
    assert len(await meta.inbound("fb")) == 1


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe garbage", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"object": "page", "entry": "nope"}', "'entry'"),
        (b'{"object": "whatsapp_business_account", "entry": []}', "object"),
    ],
)
async def test_signed_but_unparseable_is_kept_in_quarantine_and_answered_200(
    meta: Meta, body: bytes, fragment: str
) -> None:
    r = await meta.deliver("fb", body)
    assert r.status_code == 200, "Meta retries anything else for days"
    await meta.settle()
    [row] = await meta.inbound("fb")
    assert row["external_id"] == "body:" + hashlib.sha256(body).hexdigest()
    assert row["state"] == "quarantined"
    assert fragment in row["error"]
    assert bytes(row["payload"]) == body, "the raw bytes are kept"


async def test_empty_delivery_is_kept_and_skipped(meta: Meta) -> None:
    r = await meta.deliver("ig", {"object": "instagram", "entry": [{"id": "1", "time": 1}]})
    assert r.json() == {"stored": 1, "duplicates": 0}
    await meta.settle()
    [row] = await meta.inbound("ig")
    assert row["state"] == "done" and "no entries" in row["note"]


def test_split_gives_each_receipt_mid_its_own_id() -> None:
    body = json.dumps(
        page_delivery(
            {
                "sender": {"id": "7001"},
                "recipient": {"id": PAGE_ID},
                "delivery": {"mids": ["m_a", "m_b"], "watermark": 1700000000000},
            },
            {"sender": {"id": "7001"}, "recipient": {"id": PAGE_ID}, "read": {"watermark": 17}},
        )
    ).encode()
    ids = [ext for ext, _ in split_delivery("messenger", body)]
    assert ids == ["delivery:m_a", "delivery:m_b", "read:7001:17"]


async def test_unknown_channel_and_wrong_method(meta: Meta) -> None:
    assert (await meta.deliver("nope", {"object": "page", "entry": []})).status_code == 404
    r = await meta.client.put("/webhooks/fb", content=b"{}")
    assert r.status_code == 405


async def test_oversized_body_is_refused_before_storing(
    meta: Meta, monkeypatch: pytest.MonkeyPatch
) -> None:
    import omnidesk.channels.meta.graph as meta_module

    # The web server enforces the channel's declared cap (web/limits.py).
    monkeypatch.setattr(meta_module.MetaChannel, "max_body", 2000)
    big = wa_text("wamid.big", "15551230000", "x" * 3000)
    r = await meta.deliver("wa", big)
    assert r.status_code == 413
    assert await meta.inbound("wa") == []
    # Without a Content-Length (chunked), the cap holds while reading.
    raw = json.dumps(big).encode()

    async def chunks() -> Any:
        for i in range(0, len(raw), 500):
            yield raw[i : i + 500]

    r = await meta.client.post(
        "/webhooks/wa", content=chunks(), headers={SIGNATURE_HEADER: sign(APP_SECRET, raw)}
    )
    assert r.status_code == 413
    assert await meta.inbound("wa") == []
