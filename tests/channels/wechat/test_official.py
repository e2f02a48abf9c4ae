"""WeChat Official Account end to end: the server URL check, pushes in safe
and plain mode (valid, forged, stale, replayed), every message type, replies
through the customer-service API and its 48-hour window, the access token
fetched once, kept in the channel state and refreshed when WeChat refuses
it, and a restart that loses and duplicates nothing."""

from __future__ import annotations

import time
from typing import Any

import pytest

from omnidesk.channels.base import ChannelContext
from omnidesk.channels.wechat.official import WINDOW_REASON, WeChatOfficialChannel
from omnidesk.config import parse_config
from omnidesk.model import Message, Skip
from tests.channels.wechat.conftest import (
    AES_KEY,
    APP_ID,
    CUSTOMER,
    OA_TOKEN,
    WeChat,
    oa_xml,
    sign,
)
from tests.conftest import wait_for

# -- unit: every message type ----------------------------------------------------------


def adapter(**opts: Any) -> WeChatOfficialChannel:
    cfg = parse_config(
        {
            "channels": [
                {
                    "name": "wx",
                    "type": "wechat",
                    "app_id": APP_ID,
                    "app_secret": "s",
                    "token": OA_TOKEN,
                    "encoding_aes_key": AES_KEY,
                    **opts,
                }
            ]
        }
    )
    return WeChatOfficialChannel(ChannelContext(name="wx", config=cfg.channels[0], intake=None))  # type: ignore[arg-type]


def normalized(xml: str) -> Any:
    a = adapter()
    return a.normalize(a.envelope(xml.encode()))


def test_text_is_the_customers_words_with_their_openid() -> None:
    m = normalized(oa_xml("text", msg_id=1001, Content="你好，退货怎么办理？"))
    assert isinstance(m, Message)
    assert m.text == "你好，退货怎么办理？"
    assert (m.sender.kind, m.sender.address) == ("wechat", CUSTOMER)
    assert m.thread_key == CUSTOMER
    assert m.external_id == "msg:1001"


def test_image_keeps_the_picture_url_as_reference() -> None:
    m = normalized(
        oa_xml("image", msg_id=1002, PicUrl="http://mmbiz.qpic.cn/x.jpg", MediaId="media-img")
    )
    assert m.text == "[image]"
    [att] = m.attachments
    assert att.ref == "http://mmbiz.qpic.cn/x.jpg"
    assert att.content_type == "image/jpeg"
    assert m.meta["wechat"]["media_id"] == "media-img"


def test_voice_uses_wechats_recognition_when_present() -> None:
    heard = normalized(
        oa_xml("voice", msg_id=1003, MediaId="v1", Format="amr", Recognition="我要退款")
    )
    assert heard.text == "我要退款"
    assert heard.meta["wechat"]["recognition"] == "我要退款"
    assert heard.attachments[0].ref == "wechat-media:v1"
    assert heard.attachments[0].content_type == "audio/amr"
    silent = normalized(oa_xml("voice", msg_id=1004, MediaId="v2", Format="speex"))
    assert silent.text == "[voice message]"
    assert silent.attachments[0].content_type == "audio/speex"


def test_video_location_and_link() -> None:
    video = normalized(oa_xml("shortvideo", msg_id=1005, MediaId="vid", ThumbMediaId="t"))
    assert video.text == "[video]" and video.attachments[0].ref == "wechat-media:vid"
    loc = normalized(
        oa_xml(
            "location",
            msg_id=1006,
            Location_X="23.134521",
            Location_Y="113.358803",
            Scale="20",
            Label="广州市天河区",
        )
    )
    assert loc.text == "[location: 广州市天河区 - 23.134521, 113.358803]"
    assert loc.meta["wechat"]["location"]["latitude"] == "23.134521"
    link = normalized(
        oa_xml(
            "link",
            msg_id=1007,
            Title="订单详情",
            Description="订单 42",
            Url="https://example.com/o/42",
        )
    )
    assert link.text == "[link] 订单详情\n订单 42\nhttps://example.com/o/42"


def test_events_subscribe_unsubscribe_menu_click_and_others() -> None:
    click = normalized(oa_xml("event", Event="CLICK", EventKey="HUMAN_AGENT"))
    assert isinstance(click, Message) and click.auto is None
    assert click.text == "[menu: HUMAN_AGENT]"
    assert click.external_id.startswith(f"event:{CUSTOMER}:")
    sub = normalized(oa_xml("event", Event="subscribe"))
    assert sub.auto == "wechat-subscribe" and sub.text == "[followed the account]"
    scan = normalized(oa_xml("event", Event="subscribe", EventKey="qrscene_store42", Ticket="t"))
    assert scan.auto == "wechat-subscribe" and scan.meta["wechat"]["scene"] == "store42"
    unsub = normalized(oa_xml("event", Event="unsubscribe"))
    assert unsub.auto == "wechat-unsubscribe" and "unfollowed" in unsub.text
    view = normalized(oa_xml("event", Event="VIEW", EventKey="https://example.com"))
    assert isinstance(view, Skip) and "view" in view.reason


def test_two_events_of_one_second_from_one_customer_are_two_envelopes() -> None:
    a = adapter()
    t = int(time.time())
    one = a.envelope(oa_xml("event", Event="subscribe", CreateTime=t).encode())
    two = a.envelope(oa_xml("event", Event="CLICK", EventKey="K", CreateTime=t).encode())
    assert one.external_id != two.external_id


def test_safe_mode_needs_a_real_aes_key() -> None:
    from omnidesk.config import ConfigError

    with pytest.raises(ConfigError, match="encoding_aes_key"):
        adapter(encoding_aes_key="short")
    # 43 characters, but not base64 of 32 bytes: one line naming the key.
    with pytest.raises(ConfigError, match="encoding_aes_key: is not an EncodingAESKey"):
        adapter(encoding_aes_key="!" * 43)
    with pytest.raises(ConfigError, match="mode"):
        adapter(mode="encrypted")


# -- the webhook ---------------------------------------------------------------------------


async def test_url_check_echoes_echostr_only_with_a_good_signature(wechat: WeChat) -> None:
    ts, nonce = str(int(time.time())), "n0nce"
    good = {"signature": sign(OA_TOKEN, ts, nonce), "timestamp": ts, "nonce": nonce}
    r = await wechat.client.get("/webhooks/wx", params={**good, "echostr": "8231712"})
    assert (r.status_code, r.text) == (200, "8231712")
    bad = {**good, "signature": sign("other", ts, nonce), "echostr": "1"}
    assert (await wechat.client.get("/webhooks/wx", params=bad)).status_code == 403
    assert (await wechat.client.get("/webhooks/wx", params={"echostr": "1"})).status_code == 400


async def test_safe_mode_push_is_stored_then_answered_success(wechat: WeChat) -> None:
    r = await wechat.push_safe(oa_xml("text", msg_id=5001, Content="快递到哪了？"))
    assert (r.status_code, r.text) == (200, "success")
    await wechat.settle()
    [conv] = await wechat.conversations("wx")
    assert conv["thread_key"] == CUSTOMER
    [msg] = (await wechat.conversation(conv["id"]))["messages"]
    assert msg["text"] == "快递到哪了？"
    assert (msg["sender_kind"], msg["sender_address"]) == ("wechat", CUSTOMER)


async def test_forged_and_misaddressed_pushes_are_refused_and_nothing_stored(
    wechat: WeChat,
) -> None:
    xml = oa_xml("text", msg_id=5002, Content="hi")
    assert (await wechat.push_safe(xml, token="not-our-token")).status_code == 403
    assert (await wechat.push_safe(xml, tamper=True)).status_code == 403
    # Encrypted with our key and token but for another account's app id.
    assert (await wechat.push_safe(xml, app_id="wx0000000000000000")).status_code == 403
    # A plain push to a safe-mode channel is refused: its signature covers no body.
    assert (await wechat.push_plain(xml, channel="wx")).status_code == 403
    assert (await wechat.push_plain(xml, token="wrong")).status_code == 403
    r = await wechat.client.post("/webhooks/wxp", content=xml)
    assert r.status_code == 401
    # Signed query, body that is no encrypted push: a clear 400.
    good = await wechat.push_safe(oa_xml("text", msg_id=5099, Content="x"))
    query = dict(good.request.url.params)
    for junk in (b"not xml", b"<xml><ToUserName>gh</ToUserName></xml>"):
        r = await wechat.client.post("/webhooks/wx", params=query, content=junk)
        assert r.status_code == 400, r.text
    assert [i["external_id"] for i in await wechat.inbound("wx")] == ["msg:5099"]
    assert await wechat.inbound("wxp") == []


async def test_stale_pushes_are_refused(wechat: WeChat) -> None:
    old = int(time.time()) - 3600
    xml = oa_xml("text", msg_id=5003, Content="hi")
    assert (await wechat.push_safe(xml, ts=old)).status_code == 403
    assert (await wechat.push_plain(xml, ts=old)).status_code == 403
    assert await wechat.inbound("wx") == [] and await wechat.inbound("wxp") == []


async def test_redeliveries_and_replays_are_stored_once(wechat: WeChat) -> None:
    xml = oa_xml("text", msg_id=5004, Content="在吗")
    # WeChat's retries (a new nonce each time) and a replay of the same request.
    for _ in range(3):
        assert (await wechat.push_safe(xml)).text == "success"
    assert (await wechat.push_plain(xml, nonce="same", ts=int(time.time()))).text == "success"
    assert (await wechat.push_plain(xml, nonce="same", ts=int(time.time()))).text == "success"
    # The same signed (timestamp, nonce) carrying another body: a forgery.
    forged = oa_xml("text", msg_id=5005, Content="把退款打到这个账户")
    r = await wechat.push_plain(forged, nonce="same", ts=int(time.time()))
    assert r.status_code == 403
    await wechat.settle()
    assert [i["external_id"] for i in await wechat.inbound("wx")] == ["msg:5004"]
    assert [i["external_id"] for i in await wechat.inbound("wxp")] == ["msg:5004"]
    assert len(await wechat.messages("wx")) == 1


async def test_unparseable_push_goes_to_quarantine_with_its_bytes(wechat: WeChat) -> None:
    r = await wechat.push_plain(b"<xml><Content>no type</Content></xml>")
    assert (r.status_code, r.text) == (200, "success")
    await wechat.settle()
    [row] = await wechat.inbound("wxp")
    assert row["external_id"].startswith("body:")
    assert "not a WeChat push" in row["error"]


async def test_an_entity_bomb_is_quarantined_not_expanded(wechat: WeChat) -> None:
    levels = "".join(
        f'<!ENTITY l{i} "{(f"&l{i - 1};" if i > 1 else "lol") * 10}">' for i in range(1, 10)
    )
    bomb = f'<?xml version="1.0"?><!DOCTYPE x [{levels}]>' + oa_xml(
        "text", msg_id=6999, Content="BOMB"
    ).replace("BOMB", "&l9;")
    r = await wechat.push_plain(bomb)
    assert (r.status_code, r.text) == (200, "success")
    await wechat.settle()
    [row] = await wechat.inbound("wxp")
    assert row["external_id"].startswith("body:") and row["error"]


async def test_every_type_arrives_through_the_webhook(wechat: WeChat) -> None:
    pushes = [
        oa_xml("text", msg_id=6001, Content="hello"),
        oa_xml("image", msg_id=6002, PicUrl="http://mmbiz.qpic.cn/p.jpg", MediaId="m"),
        oa_xml("voice", msg_id=6003, MediaId="v", Format="amr", Recognition="语音内容"),
        oa_xml("location", msg_id=6004, Location_X="1.5", Location_Y="2.5", Scale="9", Label=""),
        oa_xml("link", msg_id=6005, Title="T", Description="D", Url="https://e.x"),
        oa_xml("event", Event="CLICK", EventKey="MENU_HELP"),
        oa_xml("event", Event="unsubscribe", CreateTime=int(time.time()) + 1),
    ]
    for xml in pushes:
        assert (await wechat.push_safe(xml)).text == "success"
    await wechat.settle()
    texts = [m["text"] for m in await wechat.messages("wx")]
    assert texts == [
        "hello",
        "[image]",
        "语音内容",
        "[location: 1.5, 2.5]",
        "[link] T\nD\nhttps://e.x",
        "[menu: MENU_HELP]",
        "[unfollowed the account: replies can no longer reach them]",
    ]


# -- replies -------------------------------------------------------------------------------


async def customer_writes(wechat: WeChat, msg_id: int, text: str = "你好", **kw: Any) -> int:
    assert (await wechat.push_safe(oa_xml("text", msg_id=msg_id, Content=text, **kw))).text == (
        "success"
    )
    await wechat.settle()
    [conv] = await wechat.conversations("wx")
    return int(conv["id"])


async def test_reply_goes_out_with_a_token_fetched_once_and_shared(wechat: WeChat) -> None:
    conv_id = await customer_writes(wechat, 7001)
    for text in ("您好，请稍等。", "已为您查询。"):
        reply = await wechat.reply(conv_id, text)
        await wechat.delivery_state(conv_id, reply["id"], "sent")
    sends = wechat.api.of("message/custom/send")
    assert [c.body for c in sends] == [
        {"touser": CUSTOMER, "msgtype": "text", "text": {"content": "您好，请稍等。"}},
        {"touser": CUSTOMER, "msgtype": "text", "text": {"content": "已为您查询。"}},
    ]
    assert len(wechat.api.of("token")) == 1
    assert wechat.api.of("token")[0].query["appid"] == APP_ID
    state = await wechat.state("wx")
    assert state["access_token"] == sends[0].query["access_token"]
    assert float(state["access_token_expires_at"]) > time.time() + 7000


async def test_long_reply_is_split_at_2048_bytes(wechat: WeChat) -> None:
    conv_id = await customer_writes(wechat, 7002)
    text = "请" * 1000  # 3,000 bytes of UTF-8
    reply = await wechat.reply(conv_id, text)
    await wechat.delivery_state(conv_id, reply["id"], "sent")
    parts = [c.body["text"]["content"] for c in wechat.api.of("message/custom/send")]
    assert "".join(parts) == text and all(len(p.encode()) <= 2048 for p in parts)


async def test_expired_token_is_refetched_and_the_reply_retried(wechat: WeChat) -> None:
    conv_id = await customer_writes(wechat, 7003)
    first = await wechat.reply(conv_id, "one")
    await wechat.delivery_state(conv_id, first["id"], "sent")
    wechat.api.expire_tokens()  # 42001 for the token we hold
    second = await wechat.reply(conv_id, "two")
    await wechat.delivery_state(conv_id, second["id"], "sent")
    answers = [c.answer["errcode"] for c in wechat.api.of("message/custom/send")]
    assert answers == [0, 42001, 0]
    assert len(wechat.api.of("token")) == 2
    assert (await wechat.state("wx"))["access_token"] == (
        wechat.api.of("message/custom/send")[-1].query["access_token"]
    )


async def test_outside_the_48_hour_window_the_reply_fails_without_a_call(wechat: WeChat) -> None:
    conv_id = await customer_writes(wechat, 7004, CreateTime=int(time.time()) - 49 * 3600)
    reply = await wechat.reply(conv_id, "Sorry for the wait")
    m = await wechat.delivery_state(conv_id, reply["id"], "failed")
    assert m["delivery_error"] == WINDOW_REASON
    assert wechat.api.of("message/custom/send") == []


async def test_wechats_own_window_refusal_fails_with_the_reason_once(wechat: WeChat) -> None:
    conv_id = await customer_writes(wechat, 7005)
    wechat.api.window_closed.add(CUSTOMER)
    reply = await wechat.reply(conv_id, "hello")
    m = await wechat.delivery_state(conv_id, reply["id"], "failed")
    assert m["delivery_error"].startswith("outside WeChat's 48-hour window")
    assert "45015" in m["delivery_error"]
    assert len(wechat.api.of("message/custom/send")) == 1, "not retried"


async def test_rate_limits_and_busy_answers_are_retried(wechat: WeChat) -> None:
    conv_id = await customer_writes(wechat, 7006)
    wechat.api.fail_next(45011, "api minute-quota reach limit mustslower retry next minute")
    wechat.api.fail_next(-1, "system error")
    reply = await wechat.reply(conv_id, "retry me")
    await wechat.delivery_state(conv_id, reply["id"], "sent")
    answers = [c.answer["errcode"] for c in wechat.api.of("message/custom/send")]
    assert answers == [45011, -1, 0]


async def test_a_wrong_secret_fails_the_reply_and_the_channel_health(wechat_factory: Any) -> None:
    wechat: WeChat = await wechat_factory(wx={"app_secret": "not-the-secret"})
    adapter = wechat.daemon.adapters["wx"]

    async def failing() -> bool:
        return not adapter.health().ok

    await wait_for(failing)  # found at start, before any reply
    assert "40125" in adapter.health().detail
    conv_id = await customer_writes(wechat, 7007)
    reply = await wechat.reply(conv_id, "hello")
    m = await wechat.delivery_state(conv_id, reply["id"], "failed")
    assert "40125" in m["delivery_error"] and "IP whitelist" in m["delivery_error"]
    assert not wechat.daemon.adapters["wx"].health().ok
    assert wechat.api.of("message/custom/send") == []


# -- restart -----------------------------------------------------------------------------------


async def test_restart_loses_and_duplicates_nothing(wechat_factory: Any) -> None:
    first: WeChat = await wechat_factory()
    xml = [oa_xml("text", msg_id=8000 + i, Content=f"m{i}") for i in range(5)]
    for x in xml[:3]:
        assert (await first.push_safe(x)).text == "success"
    conv_id = await customer_writes(first, 8100, "before")
    reply = await first.reply(conv_id, "reply before restart")
    await first.delivery_state(conv_id, reply["id"], "sent")
    await first.daemon.stop()

    second: WeChat = await wechat_factory()
    # WeChat redelivers what it was not sure of, and sends what is new.
    for x in xml:
        assert (await second.push_safe(x)).text == "success"
    await second.settle()
    texts = [m["text"] for m in await second.messages("wx") if m["direction"] == "in"]
    assert sorted(texts) == sorted(["before", "m0", "m1", "m2", "m3", "m4"])
    # The token from before the restart is still used: no new fetch.
    again = await second.reply(conv_id, "after restart")
    await second.delivery_state(conv_id, again["id"], "sent")
    assert len(second.api.of("token")) == 1
    assert len(second.api.of("message/custom/send")) == 2


# -- one contact across channels (issue 24 item 6) -------------------------------------------


async def test_an_agent_merges_the_wechat_and_email_contacts_and_replies_stay_on_wechat(
    wechat: WeChat,
) -> None:
    from tests.conftest import message, post_inbound

    wx_conv = await customer_writes(wechat, 9001, "我的快递丢了")
    r = await post_inbound(
        wechat.client, message("mail-1", "About my lost parcel", address="li.wei@example.com")
    )
    assert r.status_code == 202, r.text
    await wechat.settle()
    [mail_conv] = await wechat.conversations("api")
    wx_contact = (await wechat.conversation(wx_conv))["contact_id"]
    mail_contact = (await wechat.conversation(mail_conv["id"]))["contact_id"]
    assert wx_contact != mail_contact
    r = await wechat.client.post(
        f"/api/v1/contacts/{mail_contact}/merge",
        json={"source_id": wx_contact, "reason": "same person, confirmed by phone"},
        headers=wechat.auth,
    )
    assert r.status_code == 200, r.text
    r = await wechat.client.get(f"/api/v1/contacts/{mail_contact}", headers=wechat.auth)
    contact = r.json()
    kinds = {(i["kind"], i["address"]) for i in contact["identities"]}
    assert {("wechat", CUSTOMER), ("email", "li.wei@example.com")} <= kinds
    assert {c["channel"] for c in contact["conversations"]} == {"wx", "api"}
    # The customer writes on WeChat again: the same, merged contact.
    await wechat.push_safe(oa_xml("text", msg_id=9002, Content="还在吗"))
    await wechat.settle()
    assert (await wechat.conversation(wx_conv))["contact_id"] == mail_contact
    reply = await wechat.reply(wx_conv, "在的，正在为您查询。")
    await wechat.delivery_state(wx_conv, reply["id"], "sent")
    [send] = wechat.api.of("message/custom/send")
    assert send.body["touser"] == CUSTOMER


async def test_a_reply_with_a_file_fails_with_the_reason_rather_than_lose_it() -> None:
    from omnidesk.model import Attachment, Identity, OutboundMessage, SendError

    out = OutboundMessage(
        outbox_id=1,
        channel="wx",
        conversation_id=1,
        message_id=1,
        recipient=Identity("wechat", CUSTOMER),
        text="Your invoice",
        attachments=[Attachment("invoice.pdf", "application/pdf", data=b"%PDF-1.4")],
        thread_key=CUSTOMER,
    )
    with pytest.raises(SendError) as err:
        await adapter().send(out)
    assert not err.value.retry and "invoice.pdf" in err.value.reason


@pytest.mark.postgres
async def test_instances_on_postgresql_share_one_access_token(
    pg_url: str, tmp_path: Any, daemon_factory: Any, wxapi: Any
) -> None:
    from tests.channels.wechat.conftest import two_instances

    daemons = await two_instances(
        pg_url, tmp_path, daemon_factory, wxapi.base_url, wx={"check_token": False}
    )
    a, b = (d.adapters["wx"] for d in daemons)

    def send(text: str) -> Any:
        return lambda client: client.message.send_text(CUSTOMER, text)

    await a.api.call(send("from a"))
    await b.api.call(send("from b"))
    assert len(wxapi.of("token")) == 1, "b took a's token from the database"
    # WeChat expires it: b refreshes; a, refused, takes b's new token from the
    # database instead of fetching a third (which would expire b's again).
    wxapi.expire_tokens()
    await b.api.call(send("b again"))
    await a.api.call(send("a again"))
    assert len(wxapi.of("token")) == 2
    tokens = [c.query["access_token"] for c in wxapi.of("message/custom/send")]
    answers = [c.answer["errcode"] for c in wxapi.of("message/custom/send")]
    assert answers == [0, 0, 42001, 0, 42001, 0]
    assert tokens[3] == tokens[5] != tokens[0]


async def test_the_token_is_refreshed_before_it_expires(
    wxapi: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from omnidesk.channels.base import ChannelState
    from omnidesk.channels.wechat import api as wxapi_mod

    class State(ChannelState):
        def __init__(self) -> None:
            self.values: dict[str, str] = {}

        async def get(self, key: str) -> str | None:
            return self.values.get(key)

        async def items(self, prefix: str = "") -> dict[str, str]:
            return {k: v for k, v in self.values.items() if k.startswith(prefix)}

        async def put(self, values: Any) -> None:
            self.values.update(values)

    state = State()
    api = wxapi_mod.WeChatApi(
        wxapi_mod.OfficialAccountClient(APP_ID, "oa-app-secret-0123456789", wxapi.base_url, 5.0),
        state,
    )
    first = await api.token()
    assert await api.token() == first and len(wxapi.of("token")) == 1
    now = time.time()
    # 7,200 s tokens are refreshed in their last five minutes, not at expiry.
    monkeypatch.setattr(wxapi_mod.time, "time", lambda: now + 7200 - 299)
    second = await api.token()
    assert second != first and len(wxapi.of("token")) == 2
    assert state.values["access_token"] == second
