"""Forged, stale and replayed deliveries on every channel that takes HTTP.

One battery, run against each channel's own scheme:

* **forged**: no signature or secret, a signature made with another key, a
  body changed after it was signed: refused with 401/403, nothing stored;
* **stale** (schemes that sign a timestamp: the API channel, Slack, WeChat and
  QQ): a correctly signed delivery from six minutes ago is refused;
* **replayed**: the same genuine delivery sent again is acknowledged (the
  provider would retry otherwise) and stored once.

The channels' own test folders go deeper into each scheme; this file is the
one place that shows every channel holds against the same attacks.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import xmltodict

from omnidesk.app import Daemon
from omnidesk.channels.api import sign as api_sign
from tests.channels.qq import conftest as qq
from tests.channels.sms import conftest as sms
from tests.channels.wechat import conftest as wx
from tests.channels.x import conftest as xdm
from tests.security.daemon_proc import CHANNELS, NOWHERE, SECRETS
from tests.standins.slack_api import event_callback, message_event
from tests.standins.slack_api import sign as slack_sign

STALE = 6 * 60  # seconds: past every five-minute window


@dataclass
class Delivery:
    path: str
    body: bytes
    headers: dict[str, str]


def meta_headers(body: bytes, secret: str) -> dict[str, str]:
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={mac}", "Content-Type": "application/json"}


def api_delivery(key: str = SECRETS["api"], age: int = 0) -> Delivery:
    body = json.dumps(
        {
            "external_id": uuid.uuid4().hex,
            "sender": {"address": "forger@example.com"},
            "text": "hello",
        }
    ).encode()
    sig = api_sign(key, body, int(time.time()) - age)
    return Delivery(
        "/api/v1/inbound/api",
        body,
        {"X-Omnidesk-Signature": sig, "Content-Type": "application/json"},
    )


def slack_delivery(key: str = SECRETS["slack_signing"], age: int = 0) -> Delivery:
    body = json.dumps(event_callback(message_event("hello", user="U0FORGE"))).encode()
    return Delivery("/webhooks/sl", body, slack_sign(body, secret=key, ts=int(time.time()) - age))


def meta_delivery(key: str = SECRETS["meta_app"], age: int = 0) -> Delivery:
    now = int(time.time() * 1000)
    item = {
        "sender": {"id": "7001"},
        "recipient": {"id": "1000"},
        "timestamp": now,
        "message": {"mid": "m_" + uuid.uuid4().hex, "text": "hello"},
    }
    body = json.dumps(
        {"object": "page", "entry": [{"id": "1000", "time": now, "messaging": [item]}]}
    ).encode()
    return Delivery("/webhooks/fb", body, meta_headers(body, key))


_update_ids = iter(range(10_000, 1_000_000))


def telegram_delivery(key: str = SECRETS["tg_secret"], age: int = 0) -> Delivery:
    n = next(_update_ids)
    user = {"id": 5001, "is_bot": False, "first_name": "Fay"}
    update = {
        "update_id": n,
        "message": {
            "message_id": n,
            "from": user,
            "chat": {"id": 5001, "type": "private", "first_name": "Fay"},
            "date": int(time.time()) - age,
            "text": "hello",
        },
    }
    return Delivery(
        "/webhooks/tg",
        json.dumps(update).encode(),
        {"X-Telegram-Bot-Api-Secret-Token": key, "Content-Type": "application/json"},
    )


def wechat_delivery(key: str = wx.OA_TOKEN, age: int = 0) -> Delivery:
    """An Official Account push in safe mode: the body encrypted, its
    msg_signature (over token, time, nonce and the ciphertext) in the query."""
    from wechatpy.crypto import WeChatCrypto

    ts, nonce = str(int(time.time()) - age), uuid.uuid4().hex[:10]
    xml = wx.oa_xml("text", Content="hello", msg_id=next(_update_ids))
    packed = xmltodict.parse(
        WeChatCrypto(key, wx.AES_KEY, wx.APP_ID).encrypt_message(xml, nonce, ts)
    )
    query = urlencode(
        {
            "signature": wx.sign(key, ts, nonce),
            "timestamp": ts,
            "nonce": nonce,
            "openid": wx.CUSTOMER,
            "encrypt_type": "aes",
            "msg_signature": packed["xml"]["MsgSignature"],
        }
    )
    encrypted = packed["xml"]["Encrypt"]
    body = f"<xml><ToUserName>{wx.ACCOUNT}</ToUserName><Encrypt>{encrypted}</Encrypt></xml>"
    return Delivery(f"/webhooks/wx?{query}", body.encode(), {"Content-Type": "text/xml"})


def x_delivery(key: str = xdm.CONSUMER_SECRET, age: int = 0) -> Delivery:
    body = json.dumps(xdm.delivery(xdm.dm("hello"))).encode()
    return Delivery(
        "/webhooks/x",
        body,
        {xdm.SIGNATURE_HEADER: xdm.sign(key, body), "Content-Type": "application/json"},
    )


SMS_URL = "https://desk.example/webhooks/sms"  # the public URL Twilio signs


def sms_delivery(key: str = sms.AUTH_TOKEN, age: int = 0) -> Delivery:
    from twilio.request_validator import RequestValidator

    params = sms.inbound_params("hello", frm="+14155550123")
    return Delivery(
        "/webhooks/sms",
        urlencode(params).encode(),
        {
            sms.SIGNATURE_HEADER: RequestValidator(key).compute_signature(SMS_URL, params),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )


def qq_delivery(key: str = qq.SECRET, age: int = 0) -> Delivery:
    body = json.dumps(qq.c2c("hello")).encode()
    stamp = str(int(time.time()) - age)
    return Delivery(
        "/webhooks/qq",
        body,
        {
            qq.SIGNATURE_HEADER: qq.signing_key(key).sign(stamp.encode() + body).hex(),
            qq.TIMESTAMP_HEADER: stamp,
            "Content-Type": "application/json",
        },
    )


Maker = Callable[..., Delivery]
CHANNEL_MAKERS: dict[str, tuple[Maker, bool]] = {
    # name: (a genuine delivery with a given key and age, whether the scheme signs a time)
    "api": (api_delivery, True),
    "sl": (slack_delivery, True),
    "fb": (meta_delivery, False),
    "tg": (telegram_delivery, False),
    "wx": (wechat_delivery, True),
    "x": (x_delivery, False),
    "sms": (sms_delivery, False),
    "qq": (qq_delivery, True),
}
# The channels only this file sends to (daemon_proc.CHANNELS is shared with the
# schemathesis and memory tests): their providers' APIs at a closed port.
MORE_CHANNELS = [
    {
        "name": "wx",
        "type": "wechat",
        "app_id": wx.APP_ID,
        "app_secret": wx.APP_SECRET,
        "token": wx.OA_TOKEN,
        "encoding_aes_key": wx.AES_KEY,
        "mode": "safe",
        "api_base_url": NOWHERE,
        "check_token": False,
    },
    {
        "name": "x",
        "type": "x",
        "user_id": xdm.OUR_ID,
        "consumer_key": xdm.CONSUMER_KEY,
        "consumer_secret": xdm.CONSUMER_SECRET,
        "access_token": xdm.ACCESS_TOKEN,
        "access_token_secret": xdm.ACCESS_SECRET,
        "api_base_url": NOWHERE,
        "check_credentials": False,
    },
    {
        "name": "sms",
        "type": "sms",
        "account_sid": sms.ACCOUNT_SID,
        "auth_token": sms.AUTH_TOKEN,
        "from_number": sms.OUR_NUMBER,
        "webhook_url": SMS_URL,
        "api_base_url": NOWHERE,
        "check_credentials": False,
    },
    {
        "name": "qq",
        "type": "qq",
        "app_id": qq.APP_ID,
        "app_secret": qq.SECRET,
        "api_base_url": NOWHERE,
        "token_url": f"{NOWHERE}/app/getAppAccessToken",
        "max_clock_skew": STALE - 60,
        "check_credentials": False,
    },
]


@pytest.fixture
async def all_channels(config_factory: Any, daemon_factory: Any) -> Daemon:
    d: Daemon = await daemon_factory(config_factory(channels=[*CHANNELS, *MORE_CHANNELS]))
    return d


async def stored(d: Daemon, channel: str) -> int:
    await d.intake.drain()
    return int(
        await d.store.read(
            lambda db: db.val("SELECT COUNT(*) FROM inbound WHERE channel = ?", (channel,))
        )
    )


def forgeries(make: Maker) -> dict[str, Delivery]:
    genuine = make()
    unsigned = Delivery(
        genuine.path.partition("?")[0],  # WeChat signs in the query
        genuine.body,
        {
            k: v
            for k, v in genuine.headers.items()
            if k.lower() == "content-type" or k.lower() == "x-slack-request-timestamp"
        },
    )
    other_key = make("another-key-entirely-0123456789")
    if b"<Encrypt>" in genuine.body:  # WeChat's safe mode: change the ciphertext
        head, _, rest = genuine.body.partition(b"<Encrypt>")
        changed = head + b"<Encrypt>" + (b"B" if rest[:1] == b"A" else b"A") + rest[1:]
    else:
        changed = genuine.body.replace(b"hello", b"HELLO")
    assert changed != genuine.body
    tampered = Delivery(genuine.path, changed, genuine.headers)
    return {"unsigned": unsigned, "other key": other_key, "tampered": tampered}


@pytest.mark.parametrize("channel", sorted(CHANNEL_MAKERS))
async def test_forged_stale_and_replayed_deliveries(all_channels: Daemon, channel: str) -> None:
    make, timed = CHANNEL_MAKERS[channel]
    d = all_channels
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.web_port}", timeout=10) as c:
        for what, forged in forgeries(make).items():
            r = await c.post(forged.path, content=forged.body, headers=forged.headers)
            if channel == "tg" and what == "tampered":
                # Telegram signs nothing: the secret header is the whole proof,
                # so a changed body with the right secret is Telegram's word.
                assert r.status_code == 200
                continue
            assert r.status_code in (401, 403), (channel, what, r.status_code, r.text)
        expected = 1 if channel == "tg" else 0
        assert await stored(d, channel) == expected
        if timed:
            old = make(age=STALE)
            r = await c.post(old.path, content=old.body, headers=old.headers)
            assert r.status_code in (401, 403), (channel, "stale", r.status_code, r.text)
            assert await stored(d, channel) == expected
        genuine = make()
        for _ in range(3):  # the delivery and two replays of it
            r = await c.post(genuine.path, content=genuine.body, headers=genuine.headers)
            assert r.is_success, (channel, r.status_code, r.text)
        assert await stored(d, channel) == expected + 1


async def test_webchat_tokens_cannot_be_forged_and_messages_are_stored_once(
    all_channels: Daemon,
) -> None:
    base = f"http://127.0.0.1:{all_channels.web_port}/webchat/chat"
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        token = (await c.post("/session", json={})).json()["token"]
        body, _, sig = token.rpartition(".")
        forged = {
            # The signature's first letter: its last may carry only padding
            # bits, and a change there can decode to the same bytes.
            "tampered": f"{body}.{'A' if sig[0] != 'A' else 'B'}{sig[1:]}",
            "unsigned": body + ".",
            "garbage": "x" * 40,
        }
        for what, t in [("none", None), *forged.items()]:
            r = await c.post(
                "/messages",
                json={"client_id": uuid.uuid4().hex, "text": "hi"},
                headers={"Authorization": f"Bearer {t}"} if t else {},
            )
            assert r.status_code == 401, (what, r.status_code, r.text)
        assert await stored(all_channels, "chat") == 0
        msg = {"client_id": uuid.uuid4().hex, "text": "hello once"}
        for _ in range(3):
            r = await c.post("/messages", json=msg, headers={"Authorization": f"Bearer {token}"})
            assert r.is_success, r.text
        assert await stored(all_channels, "chat") == 1


async def test_odd_values_on_channel_endpoints_are_4xx(all_channels: Daemon) -> None:
    """Digits that are not ASCII ("²".isdigit() is true in Python) and
    numbers past 2^63 used to reach int() and the database: a 500."""
    base = f"http://127.0.0.1:{all_channels.web_port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        # A body Bolt cannot read goes to omnidesk's own signature check.
        r = await c.post(
            "/webhooks/sl",
            content=b"not json",
            headers=[
                ("X-Slack-Request-Timestamp", "\xb2".encode("latin-1")),  # type: ignore[list-item]
                ("X-Slack-Signature", b"v0=00"),
            ],
        )
        assert r.status_code == 401, r.text
        token = (await c.post("/webchat/chat/session", json={})).json()["token"]
        for after in ("\u00b2", str(2**64), "-1"):
            async with c.stream(
                "GET", "/webchat/chat/events", params={"token": token, "after": after}
            ) as r:
                assert r.status_code == 200, (after, r.status_code)
        # The API channel refuses NUL with a clear 400 (a signed API: no cleaning).
        raw = (
            b'{"external_id": "nul-1", "sender": {"address": "nul@example.com"},'
            b' "text": "a\\u0000b"}'
        )
        sig = api_sign(SECRETS["api"], raw, int(time.time()))
        r = await c.post(
            "/api/v1/inbound/api",
            content=raw,
            headers={"X-Omnidesk-Signature": sig, "Content-Type": "application/json"},
        )
        assert r.status_code == 400 and "NUL" in r.text
