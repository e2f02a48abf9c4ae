"""Fixtures for the SMS channel: the Twilio stand-in, a daemon with an SMS
channel (and a WhatsApp one, to meet the same person) pointed at it, and
webhook requests signed as Twilio signs them (the twilio package's
``RequestValidator.compute_signature`` over the public URL and the form)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from twilio.request_validator import RequestValidator

from omnidesk.app import Daemon
from omnidesk.channels.sms import SIGNATURE_HEADER
from tests.channels import desk
from tests.channels.desk import Desk, StartDesk
from tests.standins.twilio_api import TwilioStandIn

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "twilio-auth-token-0123"
OUR_NUMBER = "+15005550006"
CUSTOMER = "+14155550123"
PUBLIC_URL = "https://desk.example.com"

_sids = itertools.count(1)

start_desk = desk.start_desk  # the fixture, for this folder's tests


def new_sid(prefix: str = "SM") -> str:
    return f"{prefix}{next(_sids):032x}"


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioStandIn]:
    t = TwilioStandIn(ACCOUNT_SID, AUTH_TOKEN)
    await t.start()
    yield t
    await t.stop()


def sms_channel(base_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "sms",
        "type": "sms",
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "from_number": OUR_NUMBER,
        "api_base_url": base_url,
        **extra,
    }


def inbound_params(
    body: str, *, sid: str | None = None, frm: str = CUSTOMER, **more: str
) -> dict[str, str]:
    """An incoming SMS as Twilio posts it."""
    sid = sid or new_sid()
    return {
        "ToCountry": "US",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "SmsSid": sid,
        "SmsStatus": "received",
        "Body": body,
        "FromCountry": "US",
        "To": OUR_NUMBER,
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": frm,
        "ApiVersion": "2010-04-01",
        **more,
    }


def status_params(sid: str, status: str, error: int | None = None) -> dict[str, str]:
    p = {
        "SmsSid": sid,
        "SmsStatus": status,
        "MessageStatus": status,
        "To": CUSTOMER,
        "MessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": OUR_NUMBER,
        "ApiVersion": "2010-04-01",
    }
    if error is not None:
        p["ErrorCode"] = str(error)
    return p


class Sms(Desk):
    def __init__(self, daemon: Daemon, client: httpx.AsyncClient, twilio: TwilioStandIn) -> None:
        super().__init__(daemon, client)
        self.twilio = twilio

    @property
    def adapter(self) -> Any:
        return self.daemon.adapters["sms"]

    async def post(
        self,
        params: dict[str, str],
        *,
        token: str = AUTH_TOKEN,
        query: str = "",
        signature: str | None = None,
    ) -> httpx.Response:
        url = self.adapter.webhook_url + (f"?{query}" if query else "")
        sig = RequestValidator(token).compute_signature(url, params)
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if signature != "":
            headers[SIGNATURE_HEADER] = signature if signature is not None else sig
        path = "/webhooks/sms" + (f"?{query}" if query else "")
        return await self.client.post(path, content=urlencode(params), headers=headers)

    async def text(self, body: str, **kw: Any) -> httpx.Response:
        r = await self.post(inbound_params(body, **kw))
        assert r.status_code == 200, r.text
        return r


SmsFactory = Callable[..., Any]


@pytest.fixture
async def sms_factory(start_desk: StartDesk, twilio: TwilioStandIn) -> SmsFactory:
    async def start(
        *, extra_channels: list[dict[str, Any]] | None = None, outbox: Any = None, **extra: Any
    ) -> Sms:
        channels = [sms_channel(twilio.base_url, **extra), *(extra_channels or [])]
        d, c = await start_desk(channels, outbox, web={"public_url": PUBLIC_URL})
        return Sms(d, c, twilio)

    return start


@pytest.fixture
async def sms(sms_factory: SmsFactory) -> Sms:
    s: Sms = await sms_factory()
    return s
