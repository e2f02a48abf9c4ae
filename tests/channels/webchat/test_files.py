"""An agent's files reach the web chat visitor: on the live stream and in
the history, each with a link signed for that visitor and that reply; nobody
else can fetch it. A visitor who left gets the file with the e-mail copy."""

from __future__ import annotations

import base64
from typing import Any

import httpx

from omnidesk.app import Daemon
from tests.channels.webchat.conftest import CHAT, Agent, Stream, Visitor, channels, wait_for
from tests.email_channels.conftest import (  # noqa: F401
    Relay,
    relay,
    relay_options,
    smtp_channel,
)

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
PDF = b"%PDF-1.4 the warranty terms"


async def reply_with_files(agent: Agent, conv_id: int, text: str, kind: str = "reply") -> Any:
    r = await agent.http.post(
        f"/api/v1/conversations/{conv_id}/messages",
        json={
            "text": text,
            "kind": kind,
            "attachments": [
                {
                    "filename": "photo.png",
                    "content_type": "image/png",
                    "data": base64.b64encode(PNG).decode(),
                },
                {
                    "filename": "warranty.pdf",
                    "content_type": "application/pdf",
                    "data": base64.b64encode(PDF).decode(),
                },
            ],
        },
        headers=agent.auth,
    )
    assert r.status_code == 201, r.text
    return r.json()


async def test_visitor_gets_the_agents_files_and_nobody_else_can(
    chat: Daemon, http: httpx.AsyncClient, agent: Agent
) -> None:
    v = await Visitor(http).start()
    await v.say("Is the kettle still under warranty?")
    conv = await agent.conversation_of(v.visitor or "")
    stream = Stream(http, v)
    try:
        await stream.ready()
        reply = await reply_with_files(agent, conv["id"], "Yes: here are the terms.")
        got = await wait_for(
            lambda: _async(next((e for e in stream.events if e.get("id") == reply["id"]), None)),
            what="the reply on the stream",
        )
    finally:
        await stream.close()
    await agent.wait_state(conv["id"], reply["id"], "sent")
    files = got["files"]
    assert [(f["name"], f["type"], f["size"], f["image"]) for f in files] == [
        ("photo.png", "image/png", len(PNG), True),
        ("warranty.pdf", "application/pdf", len(PDF), False),
    ]
    # The history carries the same links.
    hist = await v.history()
    assert [f["url"] for f in hist[-1]["files"]] == [f["url"] for f in files]
    # The link works without the visitor's token (an <img> cannot send one).
    img = await http.get(CHAT + files[0]["url"])
    assert img.status_code == 200 and img.content == PNG
    assert img.headers["content-type"] == "image/png"
    assert img.headers["content-disposition"].startswith("inline;")
    assert img.headers["x-content-type-options"] == "nosniff"
    doc = await http.get(CHAT + files[1]["url"])
    assert doc.content == PDF and doc.headers["content-disposition"].startswith("attachment;")
    assert 'filename="warranty.pdf"' in doc.headers["content-disposition"]

    # Another visitor: their own links and tokens open none of it.
    other = await Visitor(http).start()
    await other.say("Do you sell kettle descaler?")
    oconv = await agent.conversation_of(other.visitor or "")
    oreply = await reply_with_files(agent, oconv["id"], "Yes, see the photo.")
    await agent.wait_state(oconv["id"], oreply["id"], "sent")
    [ohist] = [m for m in await other.history() if m["direction"] == "out"]
    their_token = ohist["files"][0]["url"].split("?t=")[1]
    mid, path = reply["id"], f"{CHAT}/files/{reply['id']}/0"
    assert (await http.get(f"{path}?t={their_token}")).status_code == 403
    assert (await http.get(f"{path}?t={other.token}")).status_code == 403
    assert (await http.get(path, headers=other.headers())).status_code == 403
    tampered = files[0]["url"].split("?t=")[1][:-2] + "xx"
    assert (await http.get(f"{path}?t={tampered}")).status_code == 403
    # A link of theirs opens their reply's files only, within its own files.
    own = ohist["files"][0]["url"]
    assert (await http.get(CHAT + own)).content == PNG
    assert (await http.get(CHAT + own.replace("/0?", "/7?"))).status_code == 404
    # A signed link of the first visitor for a note's files: notes are never served.
    note = await reply_with_files(agent, conv["id"], "internal copy", kind="note")
    site = chat.adapters["site"]
    [link] = site.file_links(v.visitor, note["id"], [("photo.png", "image/png", 1)])[:1]
    assert (await http.get(CHAT + link["url"])).status_code == 404
    assert mid not in [m["id"] for m in await other.history()]


async def _async(value: Any) -> Any:
    return value


async def test_a_departed_visitor_gets_the_file_by_email(
    relay: Relay,  # noqa: F811
    config_factory: Any,
    daemon_factory: Any,
) -> None:
    daemon: Daemon = await daemon_factory(
        config_factory(
            channels=[*channels(email_channel="email"), smtp_channel(**relay_options(relay))]
        )
    )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.web_port}", timeout=10) as h:
        v = await Visitor(h).start()
        r = await h.post(
            f"{CHAT}/identify",
            json={"name": "Pia", "email": "pia@example.org"},
            headers=v.headers(),
        )
        assert r.status_code == 200, r.text
        await v.say("Can you send me the manual?")
        agent = await Agent(daemon, h).login()
        conv = await agent.conversation_of(v.visitor or "")
        # No stream open: the reply goes by e-mail too, with its files.
        await reply_with_files(agent, conv["id"], "Here is the manual.")
        [mail] = await relay.wait(1)
    assert mail.rcpt_tos == ["pia@example.org"]
    msg = mail.message
    assert "Here is the manual." in msg.get_body(("plain",)).get_content()
    files = {
        p.get_filename(): (p.get_content_type(), p.get_content()) for p in msg.iter_attachments()
    }
    assert files == {"photo.png": ("image/png", PNG), "warranty.pdf": ("application/pdf", PDF)}
