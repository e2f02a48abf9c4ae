"""WeChat customer service (微信客服) end to end: the callback URL check and
decryption (valid, forged, stale, replayed), pulling with sync_msg from the
cursor kept in the channel state, every message type, replies through
kf/send_msg after the session is taken (service_state 0 -> 1), refusals
(a servicer's session, the 48-hour window), rate limits retried, the token
refreshed, a restart that loses and duplicates nothing, and one poller
across two instances on PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from omnidesk.channels.base import ChannelContext
from omnidesk.channels.wechat.kf import WINDOW_REASON, WeChatKfChannel
from omnidesk.config import parse_config
from omnidesk.model import DeliveryState, Direction, Message, Skip, StatusUpdate
from tests.channels.wechat.conftest import (
    CORP_ID,
    KF_AES_KEY,
    KF_TOKEN,
    OPEN_KFID,
    WeChat,
    sign,
    two_instances,
)
from tests.conftest import admin_token, wait_for
from tests.standins.wechat_api import WeChatApiStandIn

USER = "wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAw"


def kf_msg(msgid: str, msgtype: str = "text", part: Any = None, **extra: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "msgid": msgid,
        "open_kfid": OPEN_KFID,
        "external_userid": USER,
        "send_time": int(extra.pop("send_time", time.time())),
        "origin": extra.pop("origin", 3),
        "msgtype": msgtype,
        **extra,
    }
    if part is not None:
        m[msgtype] = part
    return m


def text(msgid: str, content: str, **extra: Any) -> dict[str, Any]:
    return kf_msg(msgid, "text", {"content": content}, **extra)


# -- unit: every message type ------------------------------------------------------------


def adapter() -> WeChatKfChannel:
    cfg = parse_config(
        {
            "channels": [
                {
                    "name": "kf",
                    "type": "wechat_kf",
                    "corp_id": CORP_ID,
                    "secret": "s",
                    "token": KF_TOKEN,
                    "encoding_aes_key": KF_AES_KEY,
                    "open_kfids": [OPEN_KFID],
                }
            ]
        }
    )
    return WeChatKfChannel(ChannelContext(name="kf", config=cfg.channels[0], intake=None))  # type: ignore[arg-type]


def normalized(msg: dict[str, Any]) -> Any:
    a = adapter()
    [env] = a.envelopes([msg])
    return a.normalize(env)


def test_customer_text_is_a_message_in_the_accounts_thread() -> None:
    m = normalized(text("m1", "我的订单还没到", send_time=1700000000))
    assert isinstance(m, Message)
    assert (m.sender.kind, m.sender.address) == ("wechat_kf", USER)
    assert m.thread_key == f"{OPEN_KFID}:{USER}"
    assert m.text == "我的订单还没到" and m.external_id == "m1" and m.sent_at == 1700000000


@pytest.mark.parametrize(
    ("mtype", "part", "expected", "ref"),
    [
        ("image", {"media_id": "IMG"}, "[image]", "wechat-kf-media:IMG"),
        ("voice", {"media_id": "VOI"}, "[voice message]", "wechat-kf-media:VOI"),
        ("video", {"media_id": "VID"}, "[video]", "wechat-kf-media:VID"),
        ("file", {"media_id": "FIL", "file_name": "发票.pdf"}, "[file: 发票.pdf]", None),
        (
            "location",
            {"latitude": 23.1, "longitude": 113.3, "name": "门店", "address": "天河路 1 号"},
            "[location: 门店 天河路 1 号 - 23.1, 113.3]",
            None,
        ),
        (
            "link",
            {"title": "订单", "desc": "订单 42", "url": "https://e.x/42", "pic_url": "p"},
            "[link] 订单\n订单 42\nhttps://e.x/42",
            None,
        ),
        ("business_card", {"userid": "zhangsan"}, "[business card: zhangsan]", None),
        (
            "miniprogram",
            {"title": "商城", "appid": "wx1", "pagepath": "p"},
            "[mini program: 商城]",
            None,
        ),
    ],
)
def test_every_customer_message_type(mtype: str, part: Any, expected: str, ref: str | None) -> None:
    m = normalized(kf_msg(f"m-{mtype}", mtype, part))
    assert isinstance(m, Message) and m.text == expected
    if ref is not None:
        assert m.attachments[0].ref == ref


def test_events_servicer_messages_and_failures() -> None:
    enter = normalized(
        kf_msg(
            "e1",
            "event",
            {"event_type": "enter_session", "open_kfid": OPEN_KFID, "external_userid": USER},
            origin=4,
        )
    )
    assert isinstance(enter, Message) and enter.auto == "wechat-kf-enter-session"
    failed = normalized(
        kf_msg(
            "e2",
            "event",
            {"event_type": "msg_send_fail", "fail_msgid": "od7x0", "fail_type": 4},
            origin=4,
        )
    )
    assert isinstance(failed, StatusUpdate)
    assert (failed.provider_id, failed.state) == ("od7x0", DeliveryState.FAILED)
    change = normalized(
        kf_msg("e3", "event", {"event_type": "session_status_change", "change_type": 3}, origin=4)
    )
    assert isinstance(change, Skip)
    servicer = normalized(text("s1", "我来处理", origin=5, servicer_userid="zhangsan"))
    assert isinstance(servicer, Message) and servicer.direction == Direction.OUTBOUND
    assert servicer.recipients[0].address == USER


# -- the callback ----------------------------------------------------------------------------


async def test_url_check_answers_the_decrypted_echostr(wechat: WeChat) -> None:
    from wechatpy.enterprise.crypto import PrpCrypto

    ts, nonce = str(int(time.time())), "n1"
    echostr = PrpCrypto(wechat.daemon.adapters["kf"].crypto.key).encrypt("echo-4242", CORP_ID)  # type: ignore[attr-defined]
    echostr = echostr.decode() if isinstance(echostr, bytes) else echostr
    good = {"msg_signature": sign(KF_TOKEN, ts, nonce, echostr), "timestamp": ts, "nonce": nonce}
    r = await wechat.client.get("/webhooks/kf", params={**good, "echostr": echostr})
    assert (r.status_code, r.text) == (200, "echo-4242")
    bad = {**good, "msg_signature": sign("other", ts, nonce, echostr), "echostr": echostr}
    assert (await wechat.client.get("/webhooks/kf", params=bad)).status_code == 403


async def test_notice_pulls_messages_from_the_cursor(wechat: WeChat) -> None:
    wechat.api.kf_push(OPEN_KFID, text("m1", "你好"), text("m2", "在吗"))
    r = await wechat.kf_notice(sync_token="SYNC-TOKEN-1")
    assert (r.status_code, r.text) == (200, "success")
    await wait_for(lambda: _stored(wechat, 2))

    async def used_the_token() -> bool:
        return any(c.body.get("token") == "SYNC-TOKEN-1" for c in wechat.api.of("kf/sync_msg"))

    await wait_for(used_the_token)
    assert (await wechat.state("kf"))[f"cursor:{OPEN_KFID}"] == "c2"
    await wechat.settle()
    [conv] = await wechat.conversations("kf")
    assert conv["thread_key"] == f"{OPEN_KFID}:{USER}"
    assert [m["text"] for m in (await wechat.conversation(conv["id"]))["messages"]] == [
        "你好",
        "在吗",
    ]


async def test_servicer_messages_and_send_failures_reach_the_conversation(wechat: WeChat) -> None:
    conv_id = await customer_writes(wechat, "c1", "发票开错了")
    reply = await wechat.reply(conv_id, "我们重新开。")
    await wechat.delivery_state(conv_id, reply["id"], "sent")
    [sent] = wechat.api.of("kf/send_msg")
    wechat.api.kf_push(
        OPEN_KFID,
        text("c2", "已经重新开好了", origin=5, servicer_userid="zhangsan"),
        kf_msg(
            "c3",
            "event",
            {"event_type": "msg_send_fail", "fail_msgid": sent.body["msgid"], "fail_type": 10},
            origin=4,
        ),
    )
    await wechat.kf_notice()
    await wait_for(lambda: _has(wechat, "c3"))
    await wechat.settle()
    msgs = (await wechat.conversation(conv_id))["messages"]
    out = [m for m in msgs if m["direction"] == "out"]
    assert [m["text"] for m in out] == ["我们重新开。", "已经重新开好了"]
    m = await wechat.delivery_state(conv_id, reply["id"], "failed")
    assert "fail_type 10" in m["delivery_error"]


async def _stored(wechat: WeChat, n: int) -> bool:
    return len(await wechat.inbound("kf")) >= n


async def test_forged_stale_and_replayed_notices(wechat: WeChat) -> None:
    assert (await wechat.kf_notice(token="not-our-token")).status_code == 403
    assert (await wechat.kf_notice(corp_id="ww_other_corp")).status_code == 403
    assert (await wechat.kf_notice(ts=int(time.time()) - 3600)).status_code == 403
    assert (await wechat.client.post("/webhooks/kf", content=b"<xml/>")).status_code == 401
    assert "notice:" + OPEN_KFID not in await wechat.state("kf")
    wechat.api.kf_push(OPEN_KFID, text("m1", "一次"))
    for _ in range(3):  # WeChat's retries and a replay: one message
        assert (await wechat.kf_notice()).text == "success"
    await wait_for(lambda: _stored(wechat, 1))
    await wechat.kf_notice()
    await wechat.settle()
    assert [i["external_id"] for i in await wechat.inbound("kf")] == ["m1"]


async def test_a_large_backlog_is_pulled_in_pages(wechat_factory: Any) -> None:
    wechat: WeChat = await wechat_factory()
    wechat.api.kf_push(OPEN_KFID, *[text(f"b{i}", f"#{i}") for i in range(1500)])
    await wechat.kf_notice()
    await wait_for(lambda: _cursor_is(wechat, "c1500"), timeout=60)
    assert len(await wechat.inbound("kf")) == 1500
    limits = {c.body["limit"] for c in wechat.api.of("kf/sync_msg")}
    assert limits == {1000}, "pages of 1000: sync_msg's largest"


# -- replies -------------------------------------------------------------------------------


async def customer_writes(wechat: WeChat, msgid: str, content: str = "你好", **kw: Any) -> int:
    wechat.api.kf_push(OPEN_KFID, text(msgid, content, **kw))
    await wechat.kf_notice()
    await wait_for(lambda: _has(wechat, msgid))
    await wechat.settle()
    [conv] = await wechat.conversations("kf")
    return int(conv["id"])


async def _has(wechat: WeChat, msgid: str) -> bool:
    return msgid in {i["external_id"] for i in await wechat.inbound("kf")}


async def test_reply_takes_the_session_then_sends(wechat: WeChat) -> None:
    conv_id = await customer_writes(wechat, "r1")
    first = await wechat.reply(conv_id, "您好，我是客服小王。")
    await wechat.delivery_state(conv_id, first["id"], "sent")
    [trans] = wechat.api.of("kf/service_state/trans")
    assert trans.body == {"open_kfid": OPEN_KFID, "external_userid": USER, "service_state": 1}
    assert wechat.api.service_state[(OPEN_KFID, USER)][0] == 1
    second = await wechat.reply(conv_id, "请提供订单号。")
    await wechat.delivery_state(conv_id, second["id"], "sent")
    assert len(wechat.api.of("kf/service_state/trans")) == 1, "already ours"
    sends = wechat.api.of("kf/send_msg")
    assert [c.body["text"]["content"] for c in sends] == ["您好，我是客服小王。", "请提供订单号。"]
    assert all(c.body["touser"] == USER and c.body["open_kfid"] == OPEN_KFID for c in sends)
    assert len(wechat.api.of("gettoken")) == 1


async def test_a_session_a_servicer_holds_is_not_taken(wechat: WeChat) -> None:
    conv_id = await customer_writes(wechat, "r2")
    wechat.api.service_state[(OPEN_KFID, USER)] = (3, "zhangsan")
    reply = await wechat.reply(conv_id, "hello")
    m = await wechat.delivery_state(conv_id, reply["id"], "failed")
    assert "servicer in the WeCom app (zhangsan)" in m["delivery_error"]
    assert wechat.api.of("kf/send_msg") == []


async def test_outside_the_window_and_quota_fail_with_the_reason(wechat: WeChat) -> None:
    conv_id = await customer_writes(wechat, "r3", send_time=time.time() - 50 * 3600)
    reply = await wechat.reply(conv_id, "late")
    m = await wechat.delivery_state(conv_id, reply["id"], "failed")
    assert m["delivery_error"] == WINDOW_REASON
    await customer_writes(wechat, "r3b")
    wechat.api.fail_next(95001, "send msg count limit")
    again = await wechat.reply(conv_id, "quota")
    m = await wechat.delivery_state(conv_id, again["id"], "failed")
    assert "quota" in m["delivery_error"] and "95001" in m["delivery_error"]
    assert len(wechat.api.of("kf/send_msg")) == 1, "not retried"


async def test_rate_limit_retried_and_expired_token_refetched(wechat: WeChat) -> None:
    conv_id = await customer_writes(wechat, "r4")
    wechat.api.fail_next(45033, "api freq out of limit")
    reply = await wechat.reply(conv_id, "one")
    await wechat.delivery_state(conv_id, reply["id"], "sent")
    assert [c.answer["errcode"] for c in wechat.api.of("kf/send_msg")] == [45033, 0]
    wechat.api.expire_tokens()
    again = await wechat.reply(conv_id, "two")
    await wechat.delivery_state(conv_id, again["id"], "sent")
    assert len(wechat.api.of("gettoken")) == 2
    assert (await wechat.state("kf"))["access_token"] == wechat.api.of("kf/send_msg")[-1].query[
        "access_token"
    ]


# -- restarts and instances -------------------------------------------------------------------


async def test_restart_loses_and_duplicates_nothing(wechat_factory: Any) -> None:
    first: WeChat = await wechat_factory()
    first.api.kf_push(OPEN_KFID, *[text(f"k{i}", f"#{i}") for i in range(3)])
    await first.kf_notice()
    await wait_for(lambda: _cursor_is(first, "c3"))
    await first.daemon.stop()
    # Messages arrive while the daemon is down; the callback is missed.
    first.api.kf_push(OPEN_KFID, *[text(f"k{i}", f"#{i}") for i in range(3, 5)])

    before = len(first.api.of("kf/sync_msg"))
    second: WeChat = await wechat_factory()
    # The regular sync finds them from the kept cursor, without a callback.
    await wait_for(lambda: _stored(second, 5))
    assert second.api.of("kf/sync_msg")[before].body["cursor"] == "c3"
    # A crash between storing and moving the cursor: the same page again.
    await second.daemon.store.write(
        lambda db: db.run(
            "UPDATE channel_state SET value = 'c1' WHERE channel = 'kf' AND key = ?",
            (f"cursor:{OPEN_KFID}",),
        )
    )
    await second.kf_notice()
    await wait_for(lambda: _cursor_is(second, "c5"))
    await second.settle()
    got = [i["external_id"] for i in await second.inbound("kf")]
    assert sorted(got) == [f"k{i}" for i in range(5)]
    assert len(await second.messages("kf")) == 5


async def _cursor_is(wechat: WeChat, value: str) -> bool:
    return (await wechat.state("kf")).get(f"cursor:{OPEN_KFID}") == value


@pytest.mark.postgres
async def test_one_poller_across_instances(
    pg_url: str, tmp_path: Path, daemon_factory: Any, wxapi: WeChatApiStandIn
) -> None:
    daemons = await two_instances(pg_url, tmp_path, daemon_factory, wxapi.base_url)
    states = {d.adapters["kf"].health().state for d in daemons}

    async def one_owner() -> bool:
        return sorted(d.adapters["kf"].health().state for d in daemons) == ["running", "standby"]

    await wait_for(one_owner)
    standby = next(d for d in daemons if d.adapters["kf"].health().state == "standby")
    wxapi.kf_push(OPEN_KFID, text("p1", "from instance b's callback"))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{standby.web_port}") as c:
        w = WeChat(standby, c, wxapi)
        w.auth = await admin_token(standby)
        assert (await w.kf_notice()).text == "success"
        await wait_for(lambda: _stored(w, 1))
    pulls = {c.query["access_token"] for c in wxapi.of("kf/sync_msg")}
    assert len(wxapi.of("gettoken")) == 1, f"one token for both instances ({states})"
    assert len(pulls) == 1


async def test_a_refused_secret_shows_in_the_channels_health(wechat_factory: Any) -> None:
    wechat: WeChat = await wechat_factory(kf={"secret": "not-the-secret"})
    adapter = wechat.daemon.adapters["kf"]

    async def failing() -> bool:
        return not adapter.health().ok

    await wait_for(failing)
    assert "40001" in adapter.health().detail and "access token" in adapter.health().detail
    assert wechat.api.of("kf/sync_msg") == []
