"""The web chat's pure parts: normalize, send's refusals, the rate limiter,
origins and text cleaning, settings; and the store's link_identity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from omnidesk.channels.base import ChannelContext
from omnidesk.channels.webchat import RateLimiter, WebchatChannel, clean_text, origin_of
from omnidesk.config import ChannelConfig, ConfigError, Options
from omnidesk.identity import normalize_identity
from omnidesk.model import (
    Attachment,
    DeliveryState,
    Envelope,
    Identity,
    Message,
    NormalizeError,
    OutboundMessage,
    SendError,
    Skip,
    StatusUpdate,
)
from omnidesk.store import Store
from omnidesk.store.contacts import get_contact, link_identity, resolve_contact
from tests.channels.webchat.conftest import WEBCHAT_SECRET

VISITOR = "0123456789abcdef0123456789abcdef"


class NoIntake:
    async def accept(self, envelope: Envelope) -> bool:
        raise AssertionError("not used")

    async def accept_many(self, envelopes: Any) -> list[bool]:
        raise AssertionError("not used")


def adapter(**options: Any) -> WebchatChannel:
    data = {"secret": WEBCHAT_SECRET, **options}
    opts = Options(data, file=None, prefix="channels[0]", base_dir=Path("."))
    ctx = ChannelContext(
        name="site",
        config=ChannelConfig(name="site", type="webchat", options=opts),
        intake=NoIntake(),  # type: ignore[arg-type]
        public_url="https://desk.example.com",
    )
    return WebchatChannel(ctx)


def envelope(payload: dict[str, Any] | bytes, ext: str = "e1") -> Envelope:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Envelope(channel="site", external_id=ext, payload=raw, received_at=1700000000.0)


def test_normalize_message() -> None:
    m = adapter().normalize(
        envelope(
            {
                "visitor": VISITOR,
                "client_id": "abc12345",
                "text": " Hello\r\nthere ",
                "name": "Ann",
                "page": "https://shop.example/cart",
            }
        )
    )
    assert isinstance(m, Message)
    assert m.external_id == f"{VISITOR}:abc12345"
    assert m.sender == Identity("webchat", VISITOR, "Ann")
    assert m.text == "Hello\nthere"
    assert m.thread_key == VISITOR
    assert m.sent_at == 1700000000.0
    assert m.meta == {"webchat": {"page": "https://shop.example/cart"}}


def test_normalize_receipt() -> None:
    u = adapter().normalize(envelope({"visitor": VISITOR, "receipt": "read", "message_id": 7}))
    assert isinstance(u, StatusUpdate)
    assert (u.provider_id, u.state) == (f"{VISITOR}:7", DeliveryState.READ)


def test_normalize_empty_text_is_skipped() -> None:
    item = adapter().normalize(envelope({"visitor": VISITOR, "client_id": "c1", "text": "\x00 "}))
    assert isinstance(item, Skip)


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"\xff", "not JSON"),
        (b"[]", "JSON object"),
        ({"client_id": "c", "text": "x"}, "visitor id"),
        ({"visitor": "../../etc", "client_id": "c", "text": "x"}, "visitor id"),
        ({"visitor": VISITOR, "text": "x"}, "client_id"),
        ({"visitor": VISITOR, "client_id": "c"}, "no text"),
        ({"visitor": VISITOR, "receipt": "eaten", "message_id": 1}, "receipt"),
        ({"visitor": VISITOR, "receipt": "read", "message_id": True}, "receipt"),
    ],
)
def test_normalize_refuses_what_it_cannot_read(
    payload: dict[str, Any] | bytes, fragment: str
) -> None:
    with pytest.raises(NormalizeError) as info:
        adapter().normalize(envelope(payload))
    assert fragment in str(info.value)


def outbound(**kw: Any) -> OutboundMessage:
    base: dict[str, Any] = {
        "outbox_id": 1,
        "channel": "site",
        "conversation_id": 1,
        "message_id": 9,
        "recipient": Identity("webchat", VISITOR),
        "text": "hello",
    }
    return OutboundMessage(**{**base, **kw})


async def test_send_without_a_listener_is_kept_for_pickup() -> None:
    r = await adapter().send(outbound())
    assert r.provider_id == f"{VISITOR}:9" and r.state == DeliveryState.SENT


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"recipient": Identity("email", "a@b.c")}, "only answer web chat visitors"),
        (
            {"message_id": None, "attachments": [Attachment("a.pdf", "application/pdf", b"%PDF")]},
            "files of stored replies only",
        ),
    ],
)
async def test_send_refuses_what_it_cannot_deliver(kw: dict[str, Any], fragment: str) -> None:
    with pytest.raises(SendError) as info:
        await adapter().send(outbound(**kw))
    assert fragment in info.value.reason and info.value.retry is False


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"secret": "short"}, "secret"),
        ({"allowed_origins": ["https://shop.example/path"]}, "allowed_origins"),
        ({"allowed_origins": ["shop.example"]}, "allowed_origins"),
        ({"color": "red; background: url(x)"}, "color"),
        ({"rate_limit": 0}, "rate_limit"),
        ({"colour": "#ffffff"}, "colour"),
    ],
)
def test_bad_settings_name_the_key(options: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        adapter(**options)
    assert info.value.key == f"channels[0].{key}"


def test_default_origin_is_the_desk_itself() -> None:
    a = adapter()
    assert a.origin_allowed("https://desk.example.com")
    assert not a.origin_allowed("https://shop.example.com")
    assert adapter(allowed_origins="*").origin_allowed("https://anything.example")


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://Shop.Example.com/", "https://shop.example.com"),
        ("https://shop.example.com:443", "https://shop.example.com"),
        ("http://shop.example.com:8080/x?y", "http://shop.example.com:8080"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("ftp://shop.example.com", None),
        ("null", None),
        ("http://host:99999", None),
    ],
)
def test_origin_of(url: str, origin: str | None) -> None:
    assert origin_of(url) == origin


def test_clean_text_keeps_newlines_and_tabs_only() -> None:
    assert clean_text("\x00a\tb\u200bc\x07\r\n") == "a\tb\u200bc"
    assert clean_text("  \n ") == ""


def test_rate_limiter_refills_evenly() -> None:
    rl = RateLimiter(per_minute=2)
    assert rl.hit("k", now=0.0) is None
    assert rl.hit("k", now=0.0) is None
    wait = rl.hit("k", now=0.0)
    assert wait == pytest.approx(30.0)
    assert rl.hit("k", now=31.0) is None
    assert rl.hit("other", now=0.0) is None


def test_rate_limiter_forgets_the_least_recent_keys() -> None:
    rl = RateLimiter(per_minute=1, max_keys=2)
    rl.hit("a", now=0.0)
    rl.hit("b", now=0.0)
    rl.hit("c", now=0.0)  # "a" is forgotten: allowed again, never wrongly refused
    assert rl.hit("a", now=0.0) is None
    assert rl.hit("c", now=0.0) is not None


# -- link_identity (store) ------------------------------------------------------


async def test_link_identity_adds_a_new_address(store: Store) -> None:
    owner = normalize_identity("webchat", VISITOR, "Ann")
    email = normalize_identity("email", "Ann@Example.com", "Ann")
    cid, outcome = await store.write(link_identity, owner, email)
    assert outcome == "added"
    again = await store.write(link_identity, owner, email)
    assert again == (cid, "already")
    contact = await store.read(get_contact, cid)
    assert contact is not None and contact["name"] == "Ann"
    assert {(i["kind"], i["address"]) for i in contact["identities"]} == {
        ("webchat", VISITOR),
        ("email", "ann@example.com"),
    }
    # Mail from that address now resolves to the same contact.
    assert await store.write(resolve_contact, email) == (cid, False)


async def test_link_identity_leaves_another_contacts_address_alone(store: Store) -> None:
    bob, _ = await store.write(resolve_contact, normalize_identity("email", "bob@example.com"))
    cid, outcome = await store.write(
        link_identity,
        normalize_identity("webchat", VISITOR),
        normalize_identity("email", "bob@example.com"),
    )
    assert outcome == "other" and cid != bob
    assert await store.write(resolve_contact, normalize_identity("email", "bob@example.com")) == (
        bob,
        False,
    )


async def test_link_identity_names_a_contact_still_named_after_its_address(
    store: Store,
) -> None:
    owner = normalize_identity("webchat", VISITOR)
    cid, _ = await store.write(resolve_contact, owner)
    assert (await store.read(get_contact, cid) or {})["name"] == VISITOR
    assert await store.write(
        link_identity, normalize_identity("webchat", VISITOR, "Ann"), None
    ) == (
        cid,
        "none",
    )
    assert (await store.read(get_contact, cid) or {})["name"] == "Ann"
    # A name an agent or an earlier identity gave is not overwritten.
    await store.write(link_identity, normalize_identity("webchat", VISITOR, "Anonymous"), None)
    assert (await store.read(get_contact, cid) or {})["name"] == "Ann"
