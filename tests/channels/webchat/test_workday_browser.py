"""The web chat on an agent's working day (issue 25 item 5), in Chromium:
with no agent online the widget is an offline form whose message becomes a
conversation with the visitor's e-mail; an agent's reply shows their name
and an avatar of their initials; files within the limits go through and
others are refused; typing shows both ways; a transcript goes by e-mail on
request; a reply to a visitor who left goes by e-mail and their e-mail
answer joins the conversation; a known e-mail is linked after a code sent
to it comes back."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx

from omnidesk.accounts import hash_password
from omnidesk.app import Daemon
from omnidesk.store.contacts import get_contact
from omnidesk.store.tokens import create_token
from omnidesk.store.users import create_user
from tests.channels.webchat.conftest import Agent, channels, wait_for
from tests.channels.webchat.test_browser import SHOTS, browser, shop  # noqa: F401
from tests.email_channels.conftest import (  # noqa: F401
    SUPPORT,
    Relay,
    relay,
    relay_options,
    send_smtp,
    smtp_channel,
)

OPEN_WIDGET = "#od-launcher"


async def open_widget(browser: Any, shop: dict[str, Any]) -> Any:  # noqa: F811
    context = await browser.new_context(viewport={"width": 390, "height": 844})
    page = await context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    await page.goto(shop["origin"] + "/")
    await page.locator(OPEN_WIDGET).click()
    await page.locator("#od-panel").wait_for(state="visible")
    return page


async def test_offline_form_when_no_agent_is_online(
    shop: dict[str, Any],  # noqa: F811
    browser: Any,  # noqa: F811
    config_factory: Any,
    daemon_factory: Any,
) -> None:
    daemon: Daemon = await daemon_factory(
        config_factory(
            channels=channels(allowed_origins=[shop["origin"]]),
            assignment={"only_online": True},
        )
    )
    shop["desk"] = f"http://127.0.0.1:{daemon.web_port}"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = await open_widget(browser, shop)
    # Nobody is signed in: the panel is an offline form.
    assert await page.locator("#od-panel.od-offline").count() == 1
    assert "offline" in (await page.locator("#od-profile").inner_text()).lower()
    # A message without an e-mail is not sent: the e-mail comes first.
    await page.fill("#od-input", "Is the green tent waterproof?")
    await page.keyboard.press("Enter")
    assert "e-mail" in await page.locator("#od-notice").inner_text()
    assert await page.locator(".od-in").count() == 0
    await page.fill("#od-name", "Ola Hiker")
    await page.fill("#od-email", "ola@example.org")
    await page.click("#od-send")
    await page.locator(".od-in", has_text="green tent").wait_for()
    await page.locator("#od-notice", has_text="by e-mail to ola@example.org").wait_for()
    await page.screenshot(path=str(SHOTS / "webchat-offline-form.png"))
    token = await page.evaluate(
        "() => { for (const k of Object.keys(localStorage))"
        " if (k.endsWith(':token')) return localStorage.getItem(k); return null; }"
    )
    async with httpx.AsyncClient(base_url=shop["desk"], timeout=10) as http:
        agent = await Agent(daemon, http).login()
        conv = await agent.conversation_of(daemon.adapters["site"].visitor_of(token) or "")
        contact = await daemon.store.read(get_contact, conv["contact_id"])
        assert ("email", "ola@example.org") in {
            (i["kind"], i["address"]) for i in contact["identities"]
        }
        first = (await agent.messages(conv["id"]))[0]
        assert first["meta"]["webchat"]["offline_form"] is True
    assert not page.errors, page.errors


async def test_replies_show_the_agent_name_and_avatar(
    shop: dict[str, Any],  # noqa: F811
    browser: Any,  # noqa: F811
    config_factory: Any,
    daemon_factory: Any,
) -> None:
    daemon: Daemon = await daemon_factory(
        config_factory(channels=channels(allowed_origins=[shop["origin"]]))
    )
    shop["desk"] = f"http://127.0.0.1:{daemon.web_port}"
    await daemon.store.write(
        create_user,
        "nora",
        role="agent",
        password_hash=hash_password("nora-password-123"),
        display_name="Nora Lind",
        teams=["support"],
    )
    token = await daemon.store.write(create_token, "agent", username="nora")
    page = await open_widget(browser, shop)
    # Agents count as online here (only_online is off in the tests' config).
    assert await page.locator("#od-panel.od-offline").count() == 0
    await page.fill("#od-input", "Hello, do you ship to Iceland?")
    await page.keyboard.press("Enter")
    await page.locator(".od-in", has_text="Iceland").wait_for()
    visitor_token = await page.evaluate(
        "() => { for (const k of Object.keys(localStorage))"
        " if (k.endsWith(':token')) return localStorage.getItem(k); return null; }"
    )
    async with httpx.AsyncClient(base_url=shop["desk"], timeout=10) as http:
        agent = Agent(daemon, http)
        agent.auth = {"Authorization": f"Bearer {token}"}
        conv = await agent.conversation_of(daemon.adapters["site"].visitor_of(visitor_token) or "")
        await agent.reply(conv["id"], "Yes, we ship to Iceland.")
    answer = page.locator(".od-out", has_text="ship to Iceland")
    await answer.wait_for(timeout=10_000)
    assert await answer.locator(".od-agent-name").inner_text() == "Nora Lind"
    assert await answer.locator(".od-avatar").inner_text() == "NL"
    await page.screenshot(path=str(SHOTS / "webchat-agent-name.png"))
    assert not page.errors, page.errors


PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
)


async def test_attachments_within_limits_and_refused_beyond(
    shop: dict[str, Any],  # noqa: F811
    browser: Any,  # noqa: F811
    config_factory: Any,
    daemon_factory: Any,
    tmp_path: Any,
) -> None:
    daemon: Daemon = await daemon_factory(
        config_factory(
            channels=channels(allowed_origins=[shop["origin"]], max_attachment_kb=20),
        )
    )
    shop["desk"] = f"http://127.0.0.1:{daemon.web_port}"
    small = tmp_path / "receipt.png"
    small.write_bytes(PNG)
    big = tmp_path / "scan.png"
    big.write_bytes(PNG + b"\0" * 30_000)
    page = await open_widget(browser, shop)
    # Too big: refused in the page, nothing sent.
    await page.set_input_files("#od-file", str(big))
    await page.locator("#od-notice", has_text="too big").wait_for()
    assert await page.locator(".od-in").count() == 0
    # Within the limits: sent, and stored with the conversation.
    await page.set_input_files("#od-file", str(small))
    await page.locator(".od-in", has_text="receipt.png").wait_for()
    await page.screenshot(path=str(SHOTS / "webchat-attachment.png"))
    token = await page.evaluate(
        "() => { for (const k of Object.keys(localStorage))"
        " if (k.endsWith(':token')) return localStorage.getItem(k); return null; }"
    )
    async with httpx.AsyncClient(base_url=shop["desk"], timeout=10) as http:
        agent = await Agent(daemon, http).login()
        conv = await agent.conversation_of(daemon.adapters["site"].visitor_of(token) or "")

        async def stored() -> list[Any]:
            msgs = await agent.messages(conv["id"])
            return [a for m in msgs for a in m["attachments"]]

        atts = await stored()
        assert [(a["filename"], a["content_type"], a["size"]) for a in atts] == [
            ("receipt.png", "image/png", len(PNG))
        ]
        r = await http.get(f"/api/v1/attachments/{atts[0]['id']}", headers=agent.auth)
        assert r.content == PNG
        # The desk refuses what the page would not send: too big, a type not
        # allowed, a file whose bytes are not its declared type.
        auth = {"Authorization": f"Bearer {token}", "Origin": shop["origin"]}
        url = "/webchat/site/attachments?client_id=abcdefgh123&filename=x"
        png = {**auth, "Content-Type": "image/png"}
        r = await http.post(url, content=big.read_bytes(), headers=png)
        assert r.status_code == 413
        r = await http.post(
            url, content=b"MZ\x90\x00", headers={**auth, "Content-Type": "application/x-msdownload"}
        )
        assert r.status_code == 415 and "not accepted" in r.json()["error"]
        r = await http.post(url, content=b"MZ\x90\x00", headers=png)
        assert r.status_code == 415 and "not a image/png" in r.json()["error"]
        assert len(await stored()) == 1
    assert not page.errors, page.errors


async def test_typing_shows_both_ways(
    shop: dict[str, Any],  # noqa: F811
    browser: Any,  # noqa: F811
    config_factory: Any,
    daemon_factory: Any,
) -> None:
    daemon: Daemon = await daemon_factory(
        config_factory(channels=channels(allowed_origins=[shop["origin"]]))
    )
    shop["desk"] = f"http://127.0.0.1:{daemon.web_port}"
    await daemon.store.write(
        create_user,
        "nora",
        role="agent",
        password_hash=None,
        display_name="Nora Lind",
        teams=["support"],
    )
    token = await daemon.store.write(create_token, "agent", username="nora")
    nora = {"Authorization": f"Bearer {token}"}
    page = await open_widget(browser, shop)
    await page.fill("#od-input", "Hi, is the shop open on Sunday?")
    await page.keyboard.press("Enter")
    await page.locator(".od-in", has_text="Sunday").wait_for()
    visitor_token = await page.evaluate(
        "() => { for (const k of Object.keys(localStorage))"
        " if (k.endsWith(':token')) return localStorage.getItem(k); return null; }"
    )
    async with httpx.AsyncClient(base_url=shop["desk"], timeout=10) as http:
        agent = Agent(daemon, http)
        agent.auth = nora
        conv = await agent.conversation_of(daemon.adapters["site"].visitor_of(visitor_token) or "")
        cid = conv["id"]
        # The agent opens it (the inbox follows presence from now on).
        r = await http.get(f"/api/v1/conversations/{cid}", headers=nora)
        assert r.status_code == 200
        # The visitor types: the inbox shows it.
        await page.type("#od-input", "and on holid")

        async def visitor_typing() -> bool:
            c = (await http.get(f"/api/v1/conversations/{cid}", headers=nora)).json()
            return any(p["state"] == "typing" and p["name"] == "The visitor" for p in c["presence"])

        await wait_for(visitor_typing, timeout=10, what="the visitor typing in the inbox")
        # The agent types: the widget shows it with their name.
        r = await http.post(
            f"/api/v1/conversations/{cid}/presence", json={"state": "typing"}, headers=nora
        )
        assert r.status_code == 200
        await page.locator("#od-typing", has_text="Nora Lind is typing").wait_for()
        await page.screenshot(path=str(SHOTS / "webchat-agent-typing.png"))
        # Their reply replaces the indicator.
        await agent.reply(cid, "Yes, 10 to 4 on Sundays.")
        await page.locator(".od-out", has_text="10 to 4").wait_for()
        assert await page.locator("#od-typing").is_hidden()
    assert not page.errors, page.errors


async def test_transcript_by_email_on_request(
    shop: dict[str, Any],  # noqa: F811
    browser: Any,  # noqa: F811
    relay: Relay,  # noqa: F811
    config_factory: Any,
    daemon_factory: Any,
) -> None:
    """The visitor asks for the conversation by e-mail: it leaves through
    the e-mail channel's relay with every message the widget shows."""
    daemon: Daemon = await daemon_factory(
        config_factory(
            channels=[
                *channels(allowed_origins=[shop["origin"]], email_channel="email"),
                smtp_channel(**relay_options(relay)),
            ]
        )
    )
    shop["desk"] = f"http://127.0.0.1:{daemon.web_port}"
    page = await open_widget(browser, shop)
    await page.fill("#od-name", "Tove Visitor")
    await page.fill("#od-email", "tove@example.org")
    await page.click("#od-profile-save")
    await page.fill("#od-input", "Can I return shoes after 30 days?")
    await page.keyboard.press("Enter")
    await page.locator(".od-in", has_text="30 days").wait_for()
    visitor_token = await page.evaluate(
        "() => { for (const k of Object.keys(localStorage))"
        " if (k.endsWith(':token')) return localStorage.getItem(k); return null; }"
    )
    async with httpx.AsyncClient(base_url=shop["desk"], timeout=10) as http:
        agent = await Agent(daemon, http).login()
        conv = await agent.conversation_of(daemon.adapters["site"].visitor_of(visitor_token) or "")
        await agent.reply(conv["id"], "Yes, within 60 days with the receipt.")
        await agent.reply(conv["id"], "A private remark", kind="note")
    await page.locator(".od-out", has_text="60 days").wait_for()
    await page.click("#od-transcript")
    await page.locator("#od-notice", has_text="sent to tove@example.org").wait_for()
    await page.screenshot(path=str(SHOTS / "webchat-transcript.png"))
    [mail] = await relay.wait(1)
    assert mail.rcpt_tos == ["tove@example.org"]
    body = mail.message.get_body(("plain",)).get_content()
    assert "Can I return shoes after 30 days?" in body
    assert "Yes, within 60 days with the receipt." in body
    assert "private remark" not in body
    assert mail.message["Auto-Submitted"] == "auto-generated"
    assert not page.errors, page.errors


async def test_reply_to_a_departed_visitor_goes_by_email_and_their_answer_joins(
    shop: dict[str, Any],  # noqa: F811
    browser: Any,  # noqa: F811
    relay: Relay,  # noqa: F811
    config_factory: Any,
    daemon_factory: Any,
) -> None:
    daemon: Daemon = await daemon_factory(
        config_factory(
            channels=[
                *channels(allowed_origins=[shop["origin"]], email_channel="email"),
                smtp_channel(**relay_options(relay)),
            ]
        )
    )
    shop["desk"] = f"http://127.0.0.1:{daemon.web_port}"
    page = await open_widget(browser, shop)
    await page.fill("#od-name", "Pia Visitor")
    await page.fill("#od-email", "pia@example.org")
    await page.click("#od-profile-save")
    await page.fill("#od-input", "Do you repair zippers?")
    await page.keyboard.press("Enter")
    await page.locator(".od-in", has_text="zippers").wait_for()
    visitor_token = await page.evaluate(
        "() => { for (const k of Object.keys(localStorage))"
        " if (k.endsWith(':token')) return localStorage.getItem(k); return null; }"
    )
    assert not page.errors, page.errors
    # The visitor leaves: the page closes, the live stream with it.
    await page.context.close()
    site = daemon.adapters["site"]
    await wait_for(lambda: _gone(site), what="the visitor's stream to close")
    async with httpx.AsyncClient(base_url=shop["desk"], timeout=10) as http:
        agent = await Agent(daemon, http).login()
        conv = await agent.conversation_of(site.visitor_of(visitor_token) or "")
        await agent.reply(conv["id"], "Yes, zippers take about a week.")
        [mail] = await relay.wait(1)
        assert mail.rcpt_tos == ["pia@example.org"]
        sent = mail.message
        assert "zippers take about a week" in sent.get_body(("plain",)).get_content()

        async def recorded() -> bool:
            # The relay has the mail a moment before the outbox records it as
            # sent with its Message-ID, which her answer's In-Reply-To names.
            msgs = await agent.messages(conv["id"])
            return any(
                "zippers take" in m["text"] and m.get("delivery_state") == "sent" for m in msgs
            )

        await wait_for(recorded, what="the reply recorded as sent")
        # Her answer by e-mail joins the same conversation.
        answer = (
            "From: Pia Visitor <pia@example.org>\r\nTo: " + SUPPORT + "\r\n"
            f"Subject: Re: {sent['Subject']}\r\nMessage-ID: <pia-1@example.org>\r\n"
            f"In-Reply-To: {sent['Message-ID']}\r\nReferences: {sent['Message-ID']}\r\n"
            "\r\nGreat, I will bring the jacket on Monday.\r\n"
        ).encode()
        port = daemon.adapters["email"].bound_port
        await asyncio.to_thread(send_smtp, port, answer, mail_from="pia@example.org")

        async def joined() -> bool:
            msgs = await agent.messages(conv["id"])
            return any("bring the jacket" in m["text"] for m in msgs)

        await wait_for(joined, timeout=15, what="her e-mail in the chat conversation")
        # The next reply goes to her by e-mail.
        await agent.reply(conv["id"], "See you Monday!")
        mails = await relay.wait(2)
        assert mails[1].rcpt_tos == ["pia@example.org"]
        assert "See you Monday!" in mails[1].message.get_body(("plain",)).get_content()


async def _gone(site: Any) -> bool:
    return site.connected == 0


async def test_a_known_email_is_linked_after_the_code_sent_there(
    shop: dict[str, Any],  # noqa: F811
    browser: Any,  # noqa: F811
    relay: Relay,  # noqa: F811
    config_factory: Any,
    daemon_factory: Any,
) -> None:
    """A returning customer types an address another contact holds: a code
    goes to it; a wrong code links nothing, the right one merges the chat's
    contact into theirs (recorded as a merge an admin can undo)."""
    from tests.conftest import message, post_inbound

    daemon: Daemon = await daemon_factory(
        config_factory(
            channels=[
                *channels(allowed_origins=[shop["origin"]], email_channel="email"),
                smtp_channel(**relay_options(relay)),
            ]
        )
    )
    shop["desk"] = f"http://127.0.0.1:{daemon.web_port}"
    async with httpx.AsyncClient(base_url=shop["desk"], timeout=10) as http:
        # Rut wrote by e-mail weeks ago: a contact with that address.
        await post_inbound(http, message("old-1", "My order 77 is late", address="rut@example.org"))
        agent = await Agent(daemon, http).login()
        old = await wait_for(
            lambda: _contact_of(daemon, "rut@example.org"), what="the e-mail contact"
        )
        page = await open_widget(browser, shop)
        await page.fill("#od-input", "Hi again, about order 77")
        await page.keyboard.press("Enter")
        await page.locator(".od-in", has_text="order 77").wait_for()
        await page.fill("#od-name", "Rut")
        await page.fill("#od-email", "rut@example.org")
        await page.click("#od-profile-save")
        await page.locator("#od-code").wait_for(state="visible")
        [mail] = await relay.wait(1)
        assert mail.rcpt_tos == ["rut@example.org"]
        code = re.search(r"\b(\d{6})\b", mail.message.get_body(("plain",)).get_content())[1]
        visitor = daemon.adapters["site"].visitor_of(
            await page.evaluate(
                "() => { for (const k of Object.keys(localStorage))"
                " if (k.endsWith(':token')) return localStorage.getItem(k); return null; }"
            )
        )
        conv = await agent.conversation_of(visitor or "")
        assert conv["contact_id"] != old
        wrong = "000000" if code != "000000" else "111111"
        await page.fill("#od-code-input", wrong)
        await page.click("#od-code-send")
        await page.locator("#od-notice", has_text="wrong code").wait_for()
        await page.screenshot(path=str(SHOTS / "webchat-confirm-code.png"))
        await page.fill("#od-code-input", code)
        await page.click("#od-code-send")
        await page.locator("#od-notice", has_text="confirmed").wait_for()
        contact = await daemon.store.read(get_contact, old)
        kinds = {(i["kind"], i["address"]) for i in contact["identities"]}
        assert ("webchat", visitor) in kinds and ("email", "rut@example.org") in kinds
        merges = (await http.get("/api/v1/contact-merges", headers=agent.auth)).json()["items"]
        assert merges[0]["target_id"] == old and merges[0]["source_id"] == conv["contact_id"]
    assert not page.errors, page.errors


async def _contact_of(daemon: Daemon, address: str) -> int | None:
    return await daemon.store.read(
        lambda db: db.val(
            "SELECT contact_id FROM identities WHERE kind = 'email' AND address = ?", (address,)
        )
    )
