"""The web chat's HTTP surface: the script, CORS and the Origin check, visitor
tokens, and what happens to bad, oversized or too frequent requests."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from omnidesk.app import Daemon
from omnidesk.store.inbound import count_pending
from tests.channels.webchat.conftest import CHAT, SITE, Stream, Visitor, channels


async def inbound_count(daemon: Daemon) -> int:
    def q(db: Any) -> int:
        return int(db.val("SELECT COUNT(*) FROM inbound WHERE channel = 'site'"))

    return await daemon.store.read(q)


async def test_widget_script_is_served(http: httpx.AsyncClient) -> None:
    r = await http.get(f"{CHAT}/widget.js")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/javascript")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "attachShadow" in r.text and "textContent" in r.text
    code = re.sub(r"/\*.*?\*/", "", r.text, flags=re.S)
    # Nothing is loaded from anywhere but the desk that served the script
    # (the SVG namespace is a name, not a download).
    assert re.findall(r"https?://[^\s\"']*", code) == ["http://www.w3.org/2000/svg"]
    # Text goes in with textContent, never parsed as HTML.
    assert "innerHTML" not in code and "insertAdjacentHTML" not in code


async def test_demo_page_embeds_the_widget(http: httpx.AsyncClient) -> None:
    r = await http.get(f"{CHAT}/")
    assert r.status_code == 200
    assert '<script src="/webchat/site/widget.js" async></script>' in r.text
    assert "Shop help" in r.text


async def test_config_tells_the_widget_what_to_show(http: httpx.AsyncClient) -> None:
    r = await http.get(f"{CHAT}/config", headers={"Origin": SITE})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == SITE
    assert "origin" in r.headers["vary"].lower()
    body = r.json()
    assert body["title"] == "Shop help"
    assert body["greeting"] == "Hello! Ask us anything."
    assert body["max_message_chars"] == 4000


async def test_preflight_allows_the_site_only(http: httpx.AsyncClient) -> None:
    r = await http.options(
        f"{CHAT}/messages",
        headers={
            "Origin": SITE,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == SITE
    assert "authorization" in r.headers["access-control-allow-headers"].lower()
    r = await http.options(
        f"{CHAT}/messages",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert r.status_code == 403
    assert "access-control-allow-origin" not in r.headers


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "null", "http://shop.example.test:8081"]
)
async def test_other_origins_are_refused_and_nothing_is_stored(
    chat: Daemon, http: httpx.AsyncClient, origin: str
) -> None:
    v = await Visitor(http).start()
    v.origin = origin
    r = await v.say("hello from elsewhere")
    assert r.status_code == 403
    assert "allowed_origins" in r.json()["error"]
    r = await http.post(f"{CHAT}/session", json={}, headers={"Origin": origin})
    assert r.status_code == 403
    assert await inbound_count(chat) == 0


async def test_requests_without_origin_are_not_browsers_and_pass(
    chat: Daemon, http: httpx.AsyncClient
) -> None:
    v = await Visitor(http, origin=None).start()
    assert (await v.say("from a script")).status_code == 202


async def test_origin_match_ignores_case_and_default_port(http: httpx.AsyncClient) -> None:
    r = await http.get(f"{CHAT}/config", headers={"Origin": "HTTP://Shop.Example.Test:80"})
    assert r.status_code == 200


@pytest.mark.parametrize(
    "token",
    ["x", "garbage", "eyJhbGciOi.forged.sig"],
)
async def test_bad_tokens_are_refused(http: httpx.AsyncClient, token: str) -> None:
    headers = {"Origin": SITE, "Authorization": f"Bearer {token}"}
    r = await http.post(
        f"{CHAT}/messages", json={"client_id": "abcdefgh", "text": "hi"}, headers=headers
    )
    assert r.status_code == 401
    assert r.headers["access-control-allow-origin"] == SITE  # the widget can read why
    r = await http.get(f"{CHAT}/messages", headers=headers)
    assert r.status_code == 401


async def test_tampered_and_foreign_tokens_are_refused(
    config_factory: Any, daemon_factory: Any
) -> None:
    from omnidesk.channels.webchat import WebchatChannel

    cfg = config_factory(
        channels=[*channels(), {**channels()[1], "name": "other", "allowed_origins": [SITE]}]
    )
    d = await daemon_factory(cfg)
    site, other = d.adapters["site"], d.adapters["other"]
    assert isinstance(site, WebchatChannel) and isinstance(other, WebchatChannel)
    token, vid = other.issue_token()
    # Same secret, another channel: the salt differs.
    assert site.visitor_of(token) is None
    assert other.visitor_of(token) == vid
    mine, vid = site.issue_token()
    forged = mine[:-2] + ("AA" if not mine.endswith("AA") else "BB")
    assert site.visitor_of(forged) is None


async def test_session_refreshes_a_valid_token_for_the_same_visitor(
    http: httpx.AsyncClient,
) -> None:
    v = await Visitor(http).start()
    r = await http.post(f"{CHAT}/session", json={"token": v.token}, headers={"Origin": SITE})
    assert r.json()["visitor"] == v.visitor
    r = await http.post(f"{CHAT}/session", json={"token": "junk"}, headers={"Origin": SITE})
    assert r.json()["visitor"] != v.visitor


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"client_id": "abcdefgh", "text": "   \n\t "}, 400, "empty"),
        ({"client_id": "abcdefgh"}, 400, "'text'"),
        ({"client_id": "abcdefgh", "text": 5}, 400, "'text'"),
        ({"client_id": "short", "text": "hi"}, 400, "client_id"),
        ({"client_id": "bad id with spaces", "text": "hi"}, 400, "client_id"),
        ({"client_id": "abcdefgh", "text": "x" * 4001}, 413, "longer than 4000"),
    ],
)
async def test_bad_messages_get_a_clear_error(
    chat: Daemon, http: httpx.AsyncClient, body: dict[str, Any], status: int, fragment: str
) -> None:
    v = await Visitor(http).start()
    r = await http.post(f"{CHAT}/messages", json=body, headers=v.headers())
    assert r.status_code == status
    assert fragment in r.json()["error"]
    assert await inbound_count(chat) == 0


@pytest.mark.parametrize(
    ("raw", "status"),
    [(b"not json", 400), (b"[1, 2]", 400), (b"{" + b" " * 70_000 + b"}", 413)],
)
async def test_malformed_or_huge_bodies_are_refused(
    chat: Daemon, http: httpx.AsyncClient, raw: bytes, status: int
) -> None:
    v = await Visitor(http).start()
    r = await http.post(
        f"{CHAT}/messages",
        content=raw,
        headers=v.headers(**{"Content-Type": "application/json"}),
    )
    assert r.status_code == status
    assert await inbound_count(chat) == 0


async def test_control_characters_are_removed(chat: Daemon, http: httpx.AsyncClient) -> None:
    v = await Visitor(http).start()
    assert (await v.say("a\x00b\x1bc\r\nd")).status_code == 202

    def payload(db: Any) -> bytes:
        return bytes(db.val("SELECT payload FROM inbound WHERE channel = 'site'"))

    assert json.loads(await chat.store.read(payload))["text"] == "abc\nd"


async def test_visitor_rate_limit(config_factory: Any, daemon_factory: Any) -> None:
    d = await daemon_factory(config_factory(channels=channels(rate_limit=3)))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.web_port}") as c:
        v = await Visitor(c).start()
        codes = [(await v.say(f"message {i}")).status_code for i in range(4)]
        assert codes == [202, 202, 202, 429]
        r = await v.say("one more")
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1
        assert r.headers["access-control-expose-headers"] == "Retry-After"
        # Another visitor is not held back by the first one.
        w = await Visitor(c).start()
        assert (await w.say("hello")).status_code == 202


async def test_ip_rate_limit_covers_new_sessions(config_factory: Any, daemon_factory: Any) -> None:
    d = await daemon_factory(config_factory(channels=channels(ip_rate_limit=5)))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.web_port}") as c:
        codes = [
            (await c.post(f"{CHAT}/session", json={}, headers={"Origin": SITE})).status_code
            for _ in range(6)
        ]
        assert codes == [200] * 5 + [429]


async def test_streams_per_visitor_are_capped(chat: Daemon, http: httpx.AsyncClient) -> None:
    from omnidesk.channels.webchat import STREAMS_PER_VISITOR

    v = await Visitor(http).start()
    streams = [Stream(http, v) for _ in range(STREAMS_PER_VISITOR)]
    try:
        for s in streams:
            await s.ready()
            assert s.status == 200
        extra = Stream(http, v)
        await extra.ready()
        assert extra.status == 429
        await extra.close()
    finally:
        for s in streams:
            await s.close()


async def test_stream_needs_a_valid_token(http: httpx.AsyncClient) -> None:
    r = await http.get(f"{CHAT}/events", params={"token": "nope"}, headers={"Origin": SITE})
    assert r.status_code == 401


async def test_identify_validates_its_input(http: httpx.AsyncClient) -> None:
    v = await Visitor(http).start()
    for body, fragment in [
        ({}, "give a 'name' or an 'email'"),
        ({"email": "not-an-address"}, "e-mail address"),
        ({"email": "a@b.c" + "x" * 300}, "e-mail address"),
        ({"name": 5}, "'name'"),
    ]:
        r = await http.post(f"{CHAT}/identify", json=body, headers=v.headers())
        assert r.status_code == 400 and fragment in r.json()["error"], (body, r.text)


async def test_broken_envelope_goes_to_quarantine(chat: Daemon) -> None:
    from omnidesk.model import Envelope
    from omnidesk.store.inbound import list_quarantine

    await chat.intake.accept(Envelope(channel="site", external_id="x", payload=b"\xff\xfe"))

    async def quarantined() -> list[Any]:
        return await chat.store.read(list_quarantine)

    from tests.channels.webchat.conftest import wait_for

    rows = await wait_for(quarantined, what="quarantine")
    assert "not JSON" in rows[0]["error"]
    assert await chat.store.read(count_pending) == 0
