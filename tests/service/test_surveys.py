"""Satisfaction surveys end to end: by e-mail (through the real SMTP listener
and a relay), with a link whose GET records nothing and whose submit records
the rating; a forged or expired link; a Telegram customer answering with a
digit or a button; a web chat visitor answering in the widget; a survey
cancelled by a reopening; and a bad rating reopening the conversation."""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from omnidesk.app import Daemon
from omnidesk.service.surveys import TOKEN_SALT
from omnidesk.store import reports
from tests.conftest import RULES, admin_token, settle, wait_for
from tests.email_channels.conftest import (
    Relay,
    mail,
    relay_options,
    rows,
    send_smtp,
    smtp_channel,
    smtp_port,
)

FAST_OUTBOX = {"backoff_base": 0.05, "backoff_max": 0.2}


def survey_rules(tmp: Path, **replace: str) -> Path:
    """The shipped rules with the survey turned on (and other lines changed)."""
    dst = tmp / "rules"
    shutil.copytree(RULES, dst)
    f = dst / "20-service.toml"
    text = f.read_text().replace("enabled = false", "enabled = true")
    for old, new in replace.items():
        text = text.replace(old, new)
    f.write_text(text)
    return dst


async def api(d: Daemon) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{d.web_port}", headers=await admin_token(d), timeout=10
    )


async def answer_and_resolve(d: Daemon, cid: int, text: str = "Here you go.") -> None:
    async with await api(d) as c:
        r = await c.post(
            f"/api/v1/conversations/{cid}/messages", json={"text": text, "force": True}
        )
        assert r.status_code == 201, r.text
        r = await c.post(f"/api/v1/conversations/{cid}/status", json={"status": "resolved"})
        assert r.status_code == 200, r.text


async def survey_row(d: Daemon, cid: int = 1) -> dict[str, Any]:
    [row] = await rows(d, "SELECT * FROM surveys WHERE conversation_id = ?", (cid,))
    return row


async def csat(d: Daemon) -> dict[tuple[str, str], tuple[int, float]]:
    today = time.gmtime()
    from datetime import date, timedelta

    day = date(today.tm_year, today.tm_mon, today.tm_mday)
    q = reports.Query(day - timedelta(days=2), day + timedelta(days=2))
    metrics = [
        "csat_sent",
        "csat_answered",
        "csat_good",
        "csat_r2_of_5",
        "csat_r4_of_5",
        "nps_answered",
        "nps_promoter",
    ]
    return await d.store.read(reports.totals, q, metrics)


async def test_email_survey_get_records_nothing_and_submit_records(
    tmp_path: Path, store_url: str, daemon_factory: Any, relay: Relay
) -> None:
    from tests.conftest import API_SECRET, make_config

    cfg = make_config(
        tmp_path,
        store_url,
        rules={"dir": str(survey_rules(tmp_path)), "watch": False},
        channels=[
            {"name": "api", "type": "api", "secret": API_SECRET},
            smtp_channel(**relay_options(relay)),
        ],
        outbox=FAST_OUTBOX,
    )
    d: Daemon = await daemon_factory(cfg)
    raw, _ = mail("Where is my order 1234?")
    assert await asyncio.to_thread(send_smtp, smtp_port(d), raw) == {}
    await settle(d)
    await answer_and_resolve(d, 1)
    await d.scheduler.tick()
    sent = await relay.wait(2)
    survey_mail = sent[1].message
    assert survey_mail["Subject"].startswith("Re: How did we do?")
    body = survey_mail.get_body(("plain",)).get_content()
    links = dict(re.findall(r"(\d) - [^:]+: (http\S+)", body))
    assert sorted(links) == ["1", "2", "3", "4", "5"]
    assert links["4"].startswith(d.config.public_url + "/survey/") and links["4"].endswith("?r=4")
    html = survey_mail.get_body(("html",)).get_content()
    assert links["5"].replace("&", "&amp;") in html
    sv = await survey_row(d)
    assert sv["state"] == "sent" and sv["expires_at"] > time.time() + 27 * 86400
    # (public_url names port 0 in the tests' config: the server's real port)
    base = f"http://127.0.0.1:{d.web_port}"
    links = {k: v.replace(d.config.public_url, base) for k, v in links.items()}

    async with httpx.AsyncClient(timeout=10) as web:
        # A link scanner follows every link, twice: nothing is recorded.
        for n in ("1", "2", "3", "4", "5", "4"):
            r = await web.get(links[n])
            assert r.status_code == 200
            assert r.headers["referrer-policy"] == "no-referrer"
            assert "script-src 'self'" in r.headers["content-security-policy"]
        assert re.search(r'value="4"\s+checked', r.text)
        assert (await survey_row(d))["rating"] is None
        assert (await survey_row(d))["state"] == "sent"
        # The customer submits the form: recorded, thanked.
        action = links["4"].split("?")[0]
        r = await web.post(action, data={"rating": "4", "loyalty": "9", "comment": "Quick!"})
        assert r.status_code == 200 and "Thank you for your feedback!" in r.text
        sv = await survey_row(d)
        assert (sv["state"], sv["rating"], sv["loyalty_score"], sv["comment"]) == (
            "answered",
            4,
            9,
            "Quick!",
        )
        assert sv["answered_via"] == "link"
        # Changed within the validity period: one answer, the new one counted.
        r = await web.post(action, data={"rating": "2", "loyalty": "9"})
        assert r.status_code == 200
    sv = await survey_row(d)
    assert sv["rating"] == 2 and sv["changed_at"] is not None and sv["comment"] == "Quick!"
    figures = await csat(d)
    assert figures[("csat_sent", "")][0] == 1
    assert figures[("csat_answered", "")][0] == 1
    assert figures[("csat_r2_of_5", "")][0] == 1
    assert figures.get(("csat_r4_of_5", ""), (0, 0))[0] == 0
    assert figures.get(("csat_good", ""), (0, 0))[0] == 0
    assert figures[("nps_promoter", "")][0] == 1
    # Shown with the conversation and on the contact.
    async with await api(d) as c:
        conv = (await c.get("/api/v1/conversations/1")).json()
        assert conv["surveys"][0]["rating"] == 2
        contact = (await c.get(f"/api/v1/contacts/{conv['contact_id']}")).json()
        assert contact["surveys"][0]["loyalty_score"] == 9
        assert contact["satisfaction"]["score"] is not None
    actions = [a["action"] for a in conv["audit"]]
    assert "survey_sent" in actions and "survey_answered" in actions
    assert "survey_changed" in actions


async def test_forged_and_expired_links_get_a_clear_page_and_record_nothing(
    tmp_path: Path, store_url: str, daemon_factory: Any
) -> None:
    from tests.conftest import make_config, message, post_inbound

    cfg = make_config(
        tmp_path, store_url, rules={"dir": str(survey_rules(tmp_path)), "watch": False}
    )
    d: Daemon = await daemon_factory(cfg)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.web_port}", timeout=10) as c:
        # The API channel's customer is reached by e-mail address: links.
        await post_inbound(c, message("f1", "Can I return a gift?"))
        await settle(d)
        await answer_and_resolve(d, 1)
        await d.scheduler.tick()
        sv = await survey_row(d)
        [text] = await rows(d, "SELECT text FROM messages WHERE id = ?", (sv["message_id"],))
        link = re.search(r"5 - [^:]+: (\S+)", text["text"]).group(1)  # type: ignore[union-attr]
        path = link.removeprefix(d.config.public_url).split("?")[0]
        token = path.rsplit("/", 1)[1]
        forged = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
        for target in (forged, "/survey/not-a-token", "/survey/" + token + "x"):
            r = await c.get(target)
            assert r.status_code == 404 and "This link does not work" in r.text
            r = await c.post(target, data={"rating": "5"})
            assert r.status_code == 404

        # Signed 40 days ago: past the 28 days answers are taken.
        class Old(TimestampSigner):
            def get_timestamp(self) -> int:
                return int(time.time()) - 40 * 86400

        old = URLSafeTimedSerializer(d.scheduler.key or "", salt=TOKEN_SALT, signer=Old).dumps(
            {"s": sv["id"]}
        )
        r = await c.post(f"/survey/{old}", data={"rating": "5"})
        assert r.status_code == 410 and "This survey has closed" in r.text
        # Expired in the database (the token alone is still fresh).
        await d.store.write(
            lambda db: db.run(
                "UPDATE surveys SET expires_at = ? WHERE id = ?", (time.time() - 1, sv["id"])
            )
        )
        r = await c.post(path, data={"rating": "5"})
        assert r.status_code == 410
        r = await c.get(path + "?r=5")
        assert r.status_code == 410
    assert (await survey_row(d))["rating"] is None


async def test_telegram_customer_answers_with_a_digit_and_a_button(
    tmp_path: Path, config_factory: Any, daemon_factory: Any
) -> None:
    from tests.channels.telegram.conftest import channel
    from tests.conftest import API_SECRET
    from tests.standins.telegram_api import TelegramStandIn

    tg = TelegramStandIn()
    await tg.start()
    try:
        cfg = config_factory(
            rules={"dir": str(survey_rules(tmp_path)), "watch": False},
            channels=[{"name": "api", "type": "api", "secret": API_SECRET}, channel(tg)],
            outbox=FAST_OUTBOX,
        )
        d: Daemon = await daemon_factory(cfg)
        await tg.push_message("My card was charged twice")

        async def stored() -> bool:
            return bool(await rows(d, "SELECT id FROM conversations"))

        await wait_for(stored, 30)
        await answer_and_resolve(d, 1, "Refunded, sorry about that.")
        await d.scheduler.tick()

        async def survey_sent() -> bool:
            return any(
                "How would you rate" in c.params.get("text", "") for c in tg.calls_to("sendMessage")
            )

        await wait_for(survey_sent, 15)
        question = next(c for c in tg.calls_to("sendMessage") if "How would" in c.params["text"])
        assert "Reply with a number from 1 to 5." in question.params["text"]
        keyboard = question.params["reply_markup"]
        if isinstance(keyboard, str):
            import json

            keyboard = json.loads(keyboard)
        datas = [b["callback_data"] for row in keyboard["inline_keyboard"] for b in row]
        sid = (await survey_row(d))["id"]
        assert datas == [f"survey:{sid}:{n}" for n in (5, 4, 3, 2, 1)]
        # The customer types 5: the rating, not a new request.
        await tg.push_message("5")

        async def rated() -> bool:
            return (await survey_row(d))["rating"] == 5

        await wait_for(rated, 30)
        convs = await rows(d, "SELECT id, status FROM conversations")
        assert convs == [{"id": 1, "status": "resolved"}]
        [answer] = await rows(
            d, "SELECT kind, auto FROM messages WHERE direction = 'in' AND text = '5'"
        )
        assert answer == {"kind": "auto", "auto": "survey-answer"}

        # Then the loyalty question, answered with its button.
        async def loyalty_asked() -> Any:
            return next(
                (c for c in tg.calls_to("sendMessage") if "recommend" in c.params.get("text", "")),
                None,
            )

        asked = await wait_for(loyalty_asked, 15) or await loyalty_asked()
        assert asked is not None
        msg = tg.message(None, message_id=4242)
        await tg.push(
            "callback_query",
            {
                "id": "cb1",
                "from": tg.user(),
                "message": msg,
                "data": f"survey:{sid}:10",
            },
        )

        async def loyal() -> bool:
            return (await survey_row(d))["loyalty_score"] == 10

        await wait_for(loyal, 30)

        async def thanked() -> bool:
            return any(
                c.params.get("text") == "Thank you for your feedback!"
                for c in tg.calls_to("sendMessage")
            )

        await wait_for(thanked, 15)
        # The press was answered (the button's spinner stops), once.
        answers = tg.calls_to("answerCallbackQuery")
        assert [c.params.get("callback_query_id") for c in answers] == ["cb1"]
        assert tg.callback_queries == {"cb1": True}
        assert len(await rows(d, "SELECT id FROM conversations")) == 1
    finally:
        await tg.stop()


async def test_slack_customer_answers_with_a_button(
    tmp_path: Path, config_factory: Any, daemon_factory: Any
) -> None:
    """On Slack the question goes out with its choices as Block Kit buttons
    (the stand-in refuses blocks Slack would refuse); a press, sent back as a
    signed interactivity form, is the rating, in the same conversation."""
    from tests.channels.slack.conftest import channel, post_event
    from tests.conftest import API_SECRET
    from tests.standins.slack_api import (
        SlackStandIn,
        block_actions,
        event_callback,
        message_event,
        sign,
    )

    sl = SlackStandIn()
    await sl.start()
    try:
        cfg = config_factory(
            rules={
                "dir": str(survey_rules(tmp_path, **{"loyalty = true": "loyalty = false"})),
                "watch": False,
            },
            channels=[{"name": "api", "type": "api", "secret": API_SECRET}, channel(sl)],
            outbox=FAST_OUTBOX,
        )
        d: Daemon = await daemon_factory(cfg)

        async def running() -> bool:
            return d.adapters["sl"].health().state == "running"

        await wait_for(running)
        r = await post_event(d, event_callback(message_event("The invoice total is wrong")))
        assert r.status_code == 200

        async def stored() -> bool:
            return bool(await rows(d, "SELECT id FROM conversations"))

        await wait_for(stored, 30)
        await answer_and_resolve(d, 1, "Corrected, new invoice attached.")
        await d.scheduler.tick()

        async def survey_posted() -> Any:
            return next((m for m in sl.posted if m.get("blocks")), None)

        await wait_for(survey_posted, 15)
        question = await survey_posted()
        sid = (await survey_row(d))["id"]
        [section, actions] = question["blocks"]
        assert "How would you rate" in section["text"]["text"]
        values = [e["value"] for e in actions["elements"]]
        assert values == [f"survey:{sid}:{n}" for n in (5, 4, 3, 2, 1)]
        assert "How would you rate" in question["text"]  # the fallback text stays

        body = block_actions(question, f"survey:{sid}:4")
        headers = {**sign(body), "Content-Type": "application/x-www-form-urlencoded"}
        r = await post_event(d, body, headers=headers)
        assert r.status_code == 200, r.text

        async def rated() -> bool:
            return (await survey_row(d))["rating"] == 4

        await wait_for(rated, 30)
        assert await rows(d, "SELECT id, status FROM conversations") == [
            {"id": 1, "status": "resolved"}
        ]
        [answer] = await rows(
            d, "SELECT kind, auto FROM messages WHERE direction = 'in' AND text = '4'"
        )
        assert answer == {"kind": "auto", "auto": "survey-answer"}
        # A press forged without Slack's signature is refused and records nothing.
        forged = block_actions(question, f"survey:{sid}:1")
        bad = {
            **sign(forged, secret="not-the-secret"),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        assert (await post_event(d, forged, headers=bad)).status_code == 401
        await settle(d)
        assert (await survey_row(d))["rating"] == 4
    finally:
        await sl.stop()


async def test_web_chat_visitor_answers_in_the_widget(
    tmp_path: Path, config_factory: Any, daemon_factory: Any
) -> None:
    from tests.channels.webchat.conftest import Visitor, channels

    cfg = config_factory(
        rules={
            "dir": str(survey_rules(tmp_path, **{"loyalty = true": "loyalty = false"})),
            "watch": False,
        },
        channels=channels(),
    )
    d: Daemon = await daemon_factory(cfg)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.web_port}", timeout=10) as http:
        v = await Visitor(http).start()
        assert (await v.say("Do you ship to Iceland?")).status_code == 202
        await settle(d)
        await answer_and_resolve(d, 1, "Yes, we do!")
        await d.scheduler.tick()

        async def survey_shown() -> Any:
            return next((m for m in await v.history() if m.get("survey")), None)

        shown = await wait_for(survey_shown, 10) or await survey_shown()
        assert [c["value"] for c in shown["survey"]["choices"]] == [1, 2, 3, 4, 5]
        assert shown["survey"]["choices"][4]["label"] == "Excellent"
        # The widget's button sends the number as the visitor's message.
        assert (await v.say("4")).status_code == 202
        await settle(d)
    sv = await survey_row(d)
    assert (sv["rating"], sv["answered_via"]) == (4, "chat")
    status = await rows(d, "SELECT status FROM conversations")
    assert status == [{"status": "resolved"}]


async def test_survey_cancelled_when_reopened_first_and_not_repeated_too_soon(
    tmp_path: Path, config_factory: Any, daemon_factory: Any
) -> None:
    from tests.conftest import message, post_inbound

    cfg = config_factory(
        rules={
            "dir": str(survey_rules(tmp_path, **{'delay = "0h"': 'delay = "2h"'})),
            "watch": False,
        },
    )
    d: Daemon = await daemon_factory(cfg)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.web_port}", timeout=10) as c:
        await post_inbound(c, message("c1", "Where is my parcel?", thread_key="t"))
        await settle(d)
        await answer_and_resolve(d, 1)
        await d.scheduler.tick()
        assert (await survey_row(d))["state"] == "scheduled"
        # The customer writes again before the survey is due: cancelled.
        await post_inbound(c, message("c2", "It still has not come", thread_key="t"))
        await settle(d)
        await d.scheduler.tick()
        assert (await survey_row(d))["state"] == "cancelled"
        # Resolved again: a new survey (the first never went out) ...
        await answer_and_resolve(d, 1, "It arrives tomorrow.")
        await d.scheduler.tick()
        [*_, again] = await rows(d, "SELECT state FROM surveys ORDER BY id")
        assert again["state"] == "scheduled"
        # ... but no second one for the same contact within the quiet days.
        await post_inbound(c, message("c3", "Another question: gift wrapping?"))
        await settle(d)
        await answer_and_resolve(d, 2)
        await d.scheduler.tick()
        [skipped] = await rows(d, "SELECT state, note FROM surveys WHERE conversation_id = 2")
        assert skipped == {"state": "skipped", "note": "the contact had a survey recently"}


async def test_bad_rating_reopens_the_conversation_to_the_team_lead(
    tmp_path: Path, config_factory: Any, daemon_factory: Any
) -> None:
    from omnidesk.service.surveys import record_answer
    from tests.conftest import message, post_inbound

    cfg = config_factory(rules={"dir": str(survey_rules(tmp_path)), "watch": False})
    d: Daemon = await daemon_factory(cfg)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.web_port}", timeout=10) as c:
        await post_inbound(c, message("b1", "Do you sell gift cards?"))
        await settle(d)
    await answer_and_resolve(d, 1)
    await d.scheduler.tick()
    sv = await survey_row(d)
    await d.store.write(
        record_answer,
        sv["id"],
        service=d.rules.current.service,
        rating=1,
        via="link",
        now=time.time(),
    )
    await d.scheduler.tick()
    conv = (await rows(d, "SELECT status, tags, team FROM conversations"))[0]
    assert conv["status"] == "open" and "bad-rating" in conv["tags"]
    lead = d.rules.current.service.lead(conv["team"])
    notes = await rows(d, "SELECT kind, text FROM notifications WHERE username = ?", (lead,))
    assert [n["kind"] for n in notes] == ["rule"]
    assert "bad-rating-reopens" in notes[0]["text"]
