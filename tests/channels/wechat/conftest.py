"""Fixtures for the WeChat channels: the API stand-in, a daemon with an
Official Account in safe mode (``wx``), one in plain mode (``wxp``) and a
WeChat customer-service channel (``kf``), and pushes signed and encrypted
with wechatpy's own crypto, as WeChat's servers send them."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import httpx
import pytest
import xmltodict
from wechatpy.crypto import WeChatCrypto
from wechatpy.enterprise.crypto import WeChatCrypto as WeComCrypto
from wechatpy.utils import WeChatSigner

from omnidesk.app import Daemon
from tests.channels.meta.conftest import Meta
from tests.conftest import API_SECRET, admin_token, make_config, settle, wait_for
from tests.standins.wechat_api import WeChatApiStandIn

APP_ID = "wx1234567890abcdef"
APP_SECRET = "oa-app-secret-0123456789"
OA_TOKEN = "oatoken123"
AES_KEY = base64.b64encode(b"omnidesk-wechat-test-aes-key-32b").decode().rstrip("=")
ACCOUNT = "gh_0123456789ab"  # the account's original id (ToUserName)
CORP_ID = "ww0123456789abcdef"
KF_SECRET = "kf-secret-0123456789"
KF_TOKEN = "kftoken456"
KF_AES_KEY = base64.b64encode(b"omnidesk-wecom-kf-aes-key-32byte").decode().rstrip("=")
OPEN_KFID = "wkAJ2GCAAAZSfhHCt7IFSvLKtMPxyJTw"
CUSTOMER = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"


@pytest.fixture
async def wxapi() -> AsyncIterator[WeChatApiStandIn]:
    s = WeChatApiStandIn(appid=APP_ID, secret=APP_SECRET, corp_id=CORP_ID, corp_secret=KF_SECRET)
    await s.start()
    yield s
    await s.stop()


def wechat_channels(base_url: str, **extra: dict[str, Any]) -> list[dict[str, Any]]:
    oa = {
        "type": "wechat",
        "app_id": APP_ID,
        "app_secret": APP_SECRET,
        "token": OA_TOKEN,
        "api_base_url": base_url,
    }
    return [
        {"name": "api", "type": "api", "secret": API_SECRET},
        {"name": "wx", **oa, "encoding_aes_key": AES_KEY, **extra.get("wx", {})},
        {"name": "wxp", **oa, "mode": "plain", "check_token": False, **extra.get("wxp", {})},
        {
            "name": "kf",
            "type": "wechat_kf",
            "corp_id": CORP_ID,
            "secret": KF_SECRET,
            "token": KF_TOKEN,
            "encoding_aes_key": KF_AES_KEY,
            "open_kfids": [OPEN_KFID],
            "api_base_url": base_url,
            "poll_interval": 0.3,
            "notice_poll": 0.05,
            **extra.get("kf", {}),
        },
    ]


async def two_instances(
    pg_url: str, tmp_path: Path, daemon_factory: Any, base_url: str, **extra: dict[str, Any]
) -> list[Daemon]:
    """Two daemon instances with the WeChat channels on one PostgreSQL schema."""
    daemons = []
    for n in ("a", "b"):
        cfg = make_config(
            tmp_path / n,
            pg_url,
            channels=wechat_channels(base_url, **extra),
            daemon={"data_dir": str(tmp_path / n / "data"), "instance_name": n},
        )
        daemons.append(await daemon_factory(cfg))
    return daemons


def sign(*parts: str) -> str:
    signer = WeChatSigner()
    signer.add_data(*parts)
    return str(signer.signature)


def oa_xml(
    msgtype: str, openid: str = CUSTOMER, *, msg_id: int | None = None, **fields: Any
) -> str:
    """A push as WeChat documents it (CDATA omitted: the parser does not care)."""
    created = fields.pop("CreateTime", int(time.time()))
    body = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in fields.items())
    mid = f"<MsgId>{msg_id}</MsgId>" if msg_id is not None else ""
    return (
        f"<xml><ToUserName>{ACCOUNT}</ToUserName><FromUserName>{openid}</FromUserName>"
        f"<CreateTime>{created}</CreateTime>"
        f"<MsgType>{msgtype}</MsgType>{body}{mid}</xml>"
    )


class WeChat(Meta):
    """A running daemon with the WeChat channels, its HTTP client and the stand-in."""

    def __init__(self, daemon: Daemon, client: httpx.AsyncClient, api: WeChatApiStandIn):
        super().__init__(daemon, client, graph=None)  # type: ignore[arg-type]
        self.api = api

    # -- Official Account pushes -------------------------------------------------------
    async def push_safe(
        self,
        xml: str,
        *,
        channel: str = "wx",
        ts: int | None = None,
        nonce: str | None = None,
        app_id: str = APP_ID,
        token: str = OA_TOKEN,
        tamper: bool = False,
    ) -> httpx.Response:
        ts_s = str(ts if ts is not None else int(time.time()))
        nonce = nonce or uuid.uuid4().hex[:10]
        crypto = WeChatCrypto(token, AES_KEY, app_id)
        packed = xmltodict.parse(crypto.encrypt_message(xml, nonce, ts_s))["xml"]
        encrypted = packed["Encrypt"]
        if tamper:
            encrypted = encrypted[:-8] + ("A" * 8 if encrypted[-8:] != "A" * 8 else "B" * 8)
        body = f"<xml><ToUserName>{ACCOUNT}</ToUserName><Encrypt>{encrypted}</Encrypt></xml>"
        params = {
            "signature": sign(OA_TOKEN, ts_s, nonce),
            "timestamp": ts_s,
            "nonce": nonce,
            "openid": CUSTOMER,
            "encrypt_type": "aes",
            "msg_signature": packed["MsgSignature"],
        }
        return await self.client.post(f"/webhooks/{channel}", params=params, content=body)

    async def push_plain(
        self,
        xml: str | bytes,
        *,
        channel: str = "wxp",
        ts: int | None = None,
        nonce: str | None = None,
        token: str = OA_TOKEN,
    ) -> httpx.Response:
        ts_s = str(ts if ts is not None else int(time.time()))
        nonce = nonce or uuid.uuid4().hex[:10]
        params = {"signature": sign(token, ts_s, nonce), "timestamp": ts_s, "nonce": nonce}
        content = xml.encode() if isinstance(xml, str) else xml
        return await self.client.post(f"/webhooks/{channel}", params=params, content=content)

    # -- WeChat customer service callbacks ---------------------------------------------
    async def kf_notice(
        self,
        *,
        ts: int | None = None,
        token: str = KF_TOKEN,
        corp_id: str = CORP_ID,
        open_kfid: str = OPEN_KFID,
        sync_token: str = "ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMzxhFmHVGcra996NR",
    ) -> httpx.Response:
        ts_s = str(ts if ts is not None else int(time.time()))
        nonce = uuid.uuid4().hex[:10]
        xml = (
            f"<xml><ToUserName>{corp_id}</ToUserName><CreateTime>{ts_s}</CreateTime>"
            "<MsgType>event</MsgType><Event>kf_msg_or_event</Event>"
            f"<Token>{sync_token}</Token><OpenKfId>{open_kfid}</OpenKfId></xml>"
        )
        crypto = WeComCrypto(token, KF_AES_KEY, corp_id)
        packed = xmltodict.parse(crypto.encrypt_message(xml, nonce, ts_s))["xml"]
        body = (
            f"<xml><ToUserName>{corp_id}</ToUserName><Encrypt>{packed['Encrypt']}</Encrypt>"
            "<AgentID></AgentID></xml>"
        )
        params = {"msg_signature": packed["MsgSignature"], "timestamp": ts_s, "nonce": nonce}
        return await self.client.post("/webhooks/kf", params=params, content=body)

    # -- the inbox (conversations, messages, reply...: Meta's helpers) ---------------
    async def settle(self) -> None:
        await settle(self.daemon)

    async def delivery_state(self, conv_id: int, message_id: int, state: str) -> dict[str, Any]:
        async def reached() -> bool:
            return (await self.message(conv_id, message_id))["delivery_state"] == state

        await wait_for(reached)
        return await self.message(conv_id, message_id)

    async def state(self, channel: str) -> dict[str, str]:
        from omnidesk.store.channel_state import get_states

        found: dict[str, str] = await self.daemon.store.read(get_states, channel, "")
        return found


@pytest.fixture
async def wechat_factory(
    config_factory: Callable[..., Any], daemon_factory: Any, wxapi: WeChatApiStandIn
) -> AsyncIterator[Callable[..., Any]]:
    clients: list[httpx.AsyncClient] = []

    async def start(**extra: Any) -> WeChat:
        outbox = extra.pop("outbox", {"backoff_base": 0.02, "backoff_max": 0.1, "max_attempts": 6})
        cfg = config_factory(channels=wechat_channels(wxapi.base_url, **extra), outbox=outbox)
        d = await daemon_factory(cfg)
        c = httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.web_port}", timeout=10)
        clients.append(c)
        w = WeChat(d, c, wxapi)
        w.auth = await admin_token(d)
        return w

    yield start
    for c in clients:
        await c.aclose()


@pytest.fixture
async def wechat(wechat_factory: Callable[..., Any]) -> WeChat:
    w: WeChat = await wechat_factory()
    return w
