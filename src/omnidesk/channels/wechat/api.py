"""What the two WeChat channels share: wechatpy's API clients pointed at
``api_base_url``, the access token kept in the channel's state (so every
daemon instance on one PostgreSQL database uses the same one), the callback
checks that are not wechatpy's (age, replays) and the translation of
WeChat's error codes into the outbox's ``SendError``.

wechatpy's clients are synchronous (``requests``): each call runs in a worker
thread (``asyncio.to_thread``), with the token handed in rather than fetched
by the client, because fetching is this module's job:

* the token is read from memory, else from the channel state
  (``access_token``, ``access_token_expires_at``), else fetched
  (``/cgi-bin/token`` for an Official Account, ``/cgi-bin/gettoken`` for
  WeCom) and written to the state for the other instances;
* it is refreshed ``TOKEN_MARGIN`` seconds before it expires; WeChat keeps
  the old token valid for five minutes after a new one is issued, so two
  instances refreshing at once both hold a working token;
* a call refused with 40001, 40014 or 42001 (token invalid or expired: the
  account's secret was reset, or another program fetched a new token) takes
  the token in the state if another instance already replaced it, else
  fetches a new one, and is retried once.
"""

from __future__ import annotations

import asyncio
import binascii
import collections
import hashlib
import time
from collections.abc import Callable
from typing import Any

import requests
from wechatpy.client import WeChatClient
from wechatpy.client.base import BaseWeChatClient
from wechatpy.enterprise.client import WeChatClient as WeComClient
from wechatpy.exceptions import WeChatClientException

from ...config import Options
from ...model import OutboundMessage, SendError
from ..base import ChannelState
from ..media import MediaKind, media_plan

TOKEN_KEY = "access_token"
TOKEN_EXPIRES_KEY = "access_token_expires_at"
TOKEN_MARGIN = 300.0  # refresh this many seconds before the token expires
TOKEN_ERRORS = frozenset({40001, 40014, 42001})
# -1 system busy; 45009 daily quota; 45011 per-minute quota; 45033 per-user
# quota of one API call. WeChat gives no retry hint: the outbox's backoff
# spaces the attempts. 45047 (Official Account) and 95001 (WeCom) are not
# here: they are the customer-service message quota, which only the
# customer writing again restores.
RETRY_CODES = frozenset({-1, 45009, 45011, 45033})
MAX_AGE = 300  # seconds a callback's timestamp may be off from our clock


def aes_crypto(cls: Any, o: Options, token: str, key: str, owner: str) -> Any:
    """wechatpy's crypto for ``key``, or a config error naming the setting."""
    try:
        return cls(token, key, owner)
    except (ValueError, AssertionError, binascii.Error):
        raise o.error(
            "encoding_aes_key", "is not an EncodingAESKey (43 characters of base64)"
        ) from None


class _TimeoutSession(requests.Session):
    """requests has no session-wide timeout; wechatpy's token fetch sets none."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().request(*args, **kwargs)


class OfficialAccountClient(WeChatClient):
    """wechatpy's Official Account client at ``{api_base_url}/cgi-bin/``."""

    def __init__(self, appid: str, secret: str, api_base_url: str, timeout: float) -> None:
        super().__init__(appid, secret, timeout=timeout, auto_retry=False)
        self.API_BASE_URL = f"{api_base_url}/cgi-bin/"
        self._http = _TimeoutSession(timeout)

    def fetch_access_token(self) -> dict[str, Any]:
        result: dict[str, Any] = self._fetch_access_token(
            url=f"{self.API_BASE_URL}token",
            params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret},
        )
        return result


class WeComKfClient(WeComClient):
    """wechatpy's WeCom client at ``{api_base_url}/cgi-bin/`` (the 微信客服
    secret's token); the kf endpoints are called through its ``post``."""

    def __init__(self, corp_id: str, secret: str, api_base_url: str, timeout: float) -> None:
        super().__init__(corp_id, secret, timeout=timeout, auto_retry=False)
        self.API_BASE_URL = f"{api_base_url}/cgi-bin/"
        self._http = _TimeoutSession(timeout)

    def fetch_access_token(self) -> dict[str, Any]:
        result: dict[str, Any] = self._fetch_access_token(
            url=f"{self.API_BASE_URL}gettoken",
            params={"corpid": self.corp_id, "corpsecret": self.secret},
        )
        return result


class WeChatApiError(Exception):
    """A call WeChat refused (``errcode`` set) or that did not reach it."""

    def __init__(self, errcode: int | None, errmsg: str, *, token_fetch: bool = False) -> None:
        super().__init__(f"{errmsg} (errcode {errcode})" if errcode is not None else errmsg)
        self.errcode = errcode
        self.errmsg = errmsg
        self.token_fetch = token_fetch  # refused while getting an access token


def _api_error(exc: Exception, *, token_fetch: bool = False) -> WeChatApiError:
    if isinstance(exc, WeChatClientException):
        code = exc.errcode
        if code is None:
            status = getattr(exc.response, "status_code", None)
            return WeChatApiError(None, f"WeChat answered HTTP {status}", token_fetch=token_fetch)
        return WeChatApiError(int(code), str(exc.errmsg), token_fetch=token_fetch)
    what = f"WeChat unreachable: {type(exc).__name__}"
    return WeChatApiError(None, what, token_fetch=token_fetch)


class WeChatApi:
    """One account's API: the token (shared through ``state``) and calls."""

    def __init__(self, client: BaseWeChatClient, state: ChannelState | None) -> None:
        self.client = client
        self.state = state
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0  # tokens fetched by this instance (health detail, tests)

    async def token(self, *, refused: str | None = None) -> str:
        """A token believed valid; ``refused`` is one WeChat just refused."""
        async with self._lock:
            now = time.time()
            if self._token and self._token != refused and self._expires_at - TOKEN_MARGIN > now:
                return self._token
            if self.state is not None:
                stored = await self.state.items("access_token")
                tok, exp = stored.get(TOKEN_KEY), float(stored.get(TOKEN_EXPIRES_KEY) or 0)
                if tok and tok != refused and exp - TOKEN_MARGIN > now:
                    self._token, self._expires_at = tok, exp
                    return tok
            try:
                result = await asyncio.to_thread(self.client.fetch_access_token)
            except (WeChatClientException, requests.RequestException, ValueError) as exc:
                raise _api_error(exc, token_fetch=True) from None
            tok = str(result["access_token"])
            exp = now + float(result.get("expires_in") or 7200)
            self.fetches += 1
            if self.state is not None:
                await self.state.put({TOKEN_KEY: tok, TOKEN_EXPIRES_KEY: repr(exp)})
            self._token, self._expires_at = tok, exp
            return tok

    async def call(self, fn: Callable[[BaseWeChatClient], Any]) -> Any:
        """Run ``fn(client)`` (a wechatpy call) in a thread with a valid
        token; a refused token is replaced and the call made once more."""
        refused: str | None = None
        for attempt in range(2):
            tok = await self.token(refused=refused)
            try:
                return await asyncio.to_thread(self._run, fn, tok)
            except WeChatClientException as exc:
                if exc.errcode is not None and int(exc.errcode) in TOKEN_ERRORS and attempt == 0:
                    refused = tok
                    continue
                raise _api_error(exc) from None
            except requests.RequestException as exc:
                raise _api_error(exc) from None
        raise AssertionError("unreachable")

    def _run(self, fn: Callable[[BaseWeChatClient], Any], token: str) -> Any:
        # An access token the client takes as given (expires_at None): it
        # never fetches one itself.
        self.client.session.set(self.client.access_token_key, token)
        self.client.expires_at = None
        return fn(self.client)


def send_error(
    err: WeChatApiError, refusals: dict[int, str], *, product: str = "WeChat"
) -> SendError:
    """The outbox's view of a refused send: rate limits, busy servers and
    unreachable APIs are retried; ``refusals`` names the codes that fail for
    good with a reason an agent can act on; any other code fails with
    WeChat's own message."""
    code = err.errcode
    if code is None:
        return SendError(f"{product}: {err.errmsg}", retry=True)
    if err.token_fetch and code not in RETRY_CODES:
        # A wrong app id or secret, or this server's IP not on the account's
        # whitelist (40164): only an admin can fix it.
        return SendError(
            f"{product} refused to give an access token: {err.errmsg} (errcode {code});"
            " check the id and secret in the channel's settings and the account's IP whitelist",
            retry=False,
        )
    if code in RETRY_CODES:
        return SendError(f"{product} rate limit or busy: {err.errmsg} (errcode {code})", retry=True)
    if code in refusals:
        return SendError(f"{refusals[code]} ({err.errmsg}, errcode {code})", retry=False)
    if code in TOKEN_ERRORS:
        return SendError(f"{product} refused a freshly fetched access token: {err}", retry=True)
    return SendError(f"{product} refused the message: {err.errmsg} (errcode {code})", retry=False)


_MB = 1024 * 1024
# Temporary media an Official Account can upload (media/upload: image 10 MB
# PNG/JPEG/GIF, voice 2 MB AMR/MP3, video 10 MB MP4) and send as a
# customer-service message, which has no file type.
OFFICIAL_MEDIA_KINDS = (
    MediaKind("image", frozenset({"image/jpeg", "image/png", "image/gif"}), 10 * _MB),
    MediaKind("voice", frozenset({"audio/amr", "audio/mpeg", "audio/mp3"}), 2 * _MB),
    MediaKind("video", frozenset({"video/mp4"}), 10 * _MB),
)
# WeCom's temporary media (media/upload: image 10 MB JPG/PNG, voice 2 MB AMR,
# video 10 MB MP4, any other file 20 MB), each a kf/send_msg type.
KF_MEDIA_KINDS = (
    MediaKind("image", frozenset({"image/jpeg", "image/png"}), 10 * _MB),
    MediaKind("voice", frozenset({"audio/amr"}), 2 * _MB),
    MediaKind("video", frozenset({"video/mp4"}), 10 * _MB),
    MediaKind("file", frozenset(), 20 * _MB),
)
MIN_MEDIA_BYTES = 6  # WeChat refuses files of 5 bytes or fewer


# Both products: customer-service messages within 48 hours of the customer's
# last one, text of at most 2,048 UTF-8 bytes a message.
WINDOW_SECONDS = 48 * 3600
MAX_TEXT_BYTES = 2048


async def reply_parts(
    queries: Any, message: OutboundMessage, kinds: Any, product: str, window_reason: str
) -> tuple[list[str], list[Any]]:
    """A reply as WeChat takes it: its text in pieces and its files (checked
    before anything is sent). ``queries`` (None: not checked) tells when the
    customer last wrote; past the window the reply fails with the reason."""
    if queries is not None:
        last = await queries.last_inbound_at(message.conversation_id, message.recipient)
        if last is not None and time.time() - last > WINDOW_SECONDS:
            raise SendError(window_reason, retry=False)
    files = check_media(message, kinds, product)
    pieces = utf8_chunks(message.text, MAX_TEXT_BYTES) if message.text.strip() else []
    if not pieces and not files:
        raise SendError("nothing to send: the reply has no text", retry=False)
    return pieces, files


def check_media(message: OutboundMessage, kinds: Any, product: str) -> list[Any]:
    """The reply's files as ``media_plan`` gives them, with WeChat's own
    lower bound on a file's size."""
    plan = media_plan(message, kinds, product)
    for a, _kind, ctype in plan:
        if len(a.data or b"") < MIN_MEDIA_BYTES:
            raise SendError(
                f"{a.filename or ctype} is too small for {product}"
                f" (at least {MIN_MEDIA_BYTES} bytes)",
                retry=False,
            )
    return plan


async def upload_media(api: WeChatApi, kind: str, name: str, data: bytes, ctype: str) -> str:
    """Upload a temporary medium (three days) with wechatpy's ``media.upload``
    (``POST media/upload?type=``, multipart field ``media``); its media_id."""

    def upload(client: Any) -> Any:
        return client.media.upload(kind, (name, data, ctype))

    result = await api.call(upload)
    media_id = result.get("media_id") if isinstance(result, dict) else None
    if not media_id:
        raise WeChatApiError(None, "WeChat answered the media upload without a media_id")
    return str(media_id)


def utf8_chunks(text: str, limit: int) -> list[str]:
    """Pieces of at most ``limit`` UTF-8 bytes (WeChat counts bytes), cut at
    a line break or space when one is in the second half of a piece."""
    text = text.strip() or text
    out: list[str] = []
    while len(text.encode()) > limit:
        cut = len(text.encode()[:limit].decode("utf-8", "ignore"))
        window = text[:cut]
        for sep in ("\n\n", "\n", " "):
            at = window.rfind(sep)
            if at > cut // 2:
                cut = at
                break
        out.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    out.append(text)
    return [p for p in out if p] or [""]


class ReplayGuard:
    """Callbacks seen lately, by (timestamp, nonce): the same pair again with
    the same body is WeChat's retry (answered, deduplicated by the intake);
    with another body it is a replayed signature over forged content (the
    plain-mode signature does not cover the body). Per instance, bounded,
    forgotten after ``MAX_AGE``, when the age check refuses the pair anyway."""

    def __init__(self, size: int = 50_000) -> None:
        self._seen: collections.OrderedDict[tuple[str, str], tuple[float, str]] = (
            collections.OrderedDict()
        )
        self._size = size

    def check(self, timestamp: str, nonce: str, body: bytes) -> bool:
        """False when this pair came before with another body."""
        now = time.monotonic()
        digest = hashlib.sha256(body).hexdigest()
        key = (timestamp, nonce)
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < MAX_AGE * 2:
            return seen[1] == digest
        self._seen[key] = (now, digest)
        self._seen.move_to_end(key)
        while len(self._seen) > self._size:
            self._seen.popitem(last=False)
        return True


def stale(timestamp: str | None, max_age: float, now: float | None = None) -> str | None:
    """Why a callback's timestamp is refused (None: it is fresh)."""
    if not timestamp or not timestamp.isdigit():
        return "missing or malformed timestamp"
    age = (time.time() if now is None else now) - int(timestamp)
    if abs(age) > max_age:
        return f"timestamp is {int(age)} seconds off (more than {int(max_age)})"
    return None
