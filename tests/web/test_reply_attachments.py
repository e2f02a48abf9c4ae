"""Agents attach files to replies and notes: stored with the message,
delivered through the channel, refused over the ``[inbox]`` limits with the
limit and the file named."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from omnidesk.web.inbox import safe_filename
from omnidesk.web.limits import reply_cap
from tests.web.conftest import Env, wait_for
from tests.web.test_inbox_api import PNG, get, new_conversation

pytestmark = pytest.mark.asyncio(loop_scope="module")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def small_limits(env: Env) -> Iterator[None]:
    """[inbox] limits of a few KB for one test (the web layer reads the
    daemon's config on each request)."""
    cfg = env.daemon.config
    saved = (
        cfg.reply_attachment_max,
        cfg.reply_attachments_total_max,
        cfg.reply_attachments_max_count,
    )
    cfg.reply_attachment_max, cfg.reply_attachments_total_max = 4 * 1024, 6 * 1024
    cfg.reply_attachments_max_count = 3
    try:
        yield
    finally:
        (
            cfg.reply_attachment_max,
            cfg.reply_attachments_total_max,
            cfg.reply_attachments_max_count,
        ) = saved


async def test_filenames_are_sanitized() -> None:
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("C:\\Users\\me\\report.pdf") == "report.pdf"
    assert safe_filename(".htaccess") == "htaccess"
    assert safe_filename("a\x00b\nc.txt") == "abc.txt"
    assert safe_filename("..") == "attachment"
    assert safe_filename('x<y>"z".png') == "xyz.png"
    long = safe_filename("n" * 500 + ".pdf")
    assert len(long) == 200 and long.endswith(".pdf")


async def test_reply_with_files_reaches_the_channel_and_the_thread(env: Env) -> None:
    conv = await new_conversation(
        env, "rfile-1", "Please send me the invoice as a file", "rfile@example.com"
    )
    root = env.tokens["root"]
    pdf = b"%PDF-1.4 the invoice"
    async with env.client() as c:
        before = len(env.callback.received)
        r = await c.post(
            f"/api/v1/conversations/{conv['id']}/messages",
            json={
                "text": "Here it is.",
                "attachments": [
                    {
                        "filename": "../invoice 42.pdf",
                        "content_type": "application/pdf",
                        "data": b64(pdf),
                    },
                    {"filename": "chart.png", "content_type": "IMAGE/PNG; x=y", "data": b64(PNG)},
                ],
            },
            headers=root,
        )
        assert r.status_code == 201, r.text
        msg = r.json()
        assert [(a["filename"], a["content_type"], a["size"]) for a in msg["attachments"]] == [
            ("invoice 42.pdf", "application/pdf", len(pdf)),
            ("chart.png", "image/png", len(PNG)),
        ]

        async def delivered() -> Any:
            return len(env.callback.received) > before and env.callback.received[-1]

        sent = await wait_for(delivered)
        assert sent["text"] == "Here it is."
        assert [(a["filename"], base64.b64decode(a["data"])) for a in sent["attachments"]] == [
            ("invoice 42.pdf", pdf),
            ("chart.png", PNG),
        ]
        # The agent's copy downloads from the thread like a customer's file.
        full = await get(c, env, conv["id"])
        stored = next(m for m in full["messages"] if m["id"] == msg["id"])
        r = await c.get(f"/api/v1/attachments/{stored['attachments'][0]['id']}", headers=root)
        assert r.content == pdf
        assert "invoice%2042.pdf" in r.headers["content-disposition"]
        # Without files, a reply is as before.
        r = await c.post(
            f"/api/v1/conversations/{conv['id']}/messages",
            json={"text": "Anything else?"},
            headers=root,
        )
        assert r.status_code == 201 and r.json()["attachments"] == []


async def test_note_keeps_its_file_and_never_reaches_the_channel(env: Env) -> None:
    conv = await new_conversation(
        env, "rfile-2", "My parcel arrived broken, see attached", "rnote@example.com"
    )
    async with env.client() as c:
        before = len(env.callback.received)
        r = await c.post(
            f"/api/v1/conversations/{conv['id']}/messages",
            json={
                "text": "courier's damage report",
                "kind": "note",
                "attachments": [
                    {
                        "filename": "report.txt",
                        "content_type": "text/plain",
                        "data": b64(b"box crushed"),
                    }
                ],
            },
            headers=env.tokens["root"],
        )
        assert r.status_code == 201, r.text
        note = r.json()
        outsider = "carol" if conv["team"] == "support" else "alice"
        assert note["kind"] == "note" and note["attachments"][0]["filename"] == "report.txt"
        r = await c.get(
            f"/api/v1/attachments/{note['attachments'][0]['id']}", headers=env.tokens["sue"]
        )
        assert r.content == b"box crushed"
        # Another team's agent may not fetch it.
        r = await c.get(
            f"/api/v1/attachments/{note['attachments'][0]['id']}", headers=env.tokens[outsider]
        )
        assert r.status_code == 403
        assert len(env.callback.received) == before


async def test_files_over_the_limits_are_refused_naming_limit_and_file(
    env: Env, small_limits: None
) -> None:
    conv = await new_conversation(
        env, "rfile-3", "Can you send the manual please", "rlimit@example.com"
    )
    url = f"/api/v1/conversations/{conv['id']}/messages"
    root = env.tokens["root"]

    def f(name: str, size: int) -> dict[str, str]:
        return {"filename": name, "content_type": "application/pdf", "data": b64(b"x" * size)}

    async with env.client() as c:
        r = await c.post(
            url, json={"text": "t", "attachments": [f("big.pdf", 4 * 1024 + 1)]}, headers=root
        )
        assert r.status_code == 413
        assert "big.pdf" in r.json()["detail"] and "max_reply_attachment_kb" in r.json()["detail"]
        r = await c.post(
            url,
            json={"text": "t", "attachments": [f("a.pdf", 4000), f("b.pdf", 4000)]},
            headers=root,
        )
        assert r.status_code == 413
        detail = r.json()["detail"]
        assert "b.pdf" in detail and "max_reply_attachments_total_kb" in detail
        r = await c.post(
            url,
            json={"text": "t", "attachments": [f(f"{i}.pdf", 10) for i in range(4)]},
            headers=root,
        )
        assert r.status_code == 413 and "max_reply_attachments" in r.json()["detail"]
        r = await c.post(
            url,
            json={"text": "t", "attachments": [{"filename": "x.bin", "data": "not base64!"}]},
            headers=root,
        )
        assert r.status_code == 422 and "x.bin: data is not base64" in r.text
        # Exactly at the limit passes; nothing refused above was stored.
        r = await c.post(url, json={"text": "t", "attachments": [f("ok.pdf", 4096)]}, headers=root)
        assert r.status_code == 201, r.text
        full = await get(c, env, conv["id"])
        out = [m for m in full["messages"] if m["direction"] == "out"]
        assert [[a["filename"] for a in m["attachments"]] for m in out] == [["ok.pdf"]]


async def test_a_body_past_the_reply_cap_is_refused_before_it_is_read(env: Env) -> None:
    conv = await new_conversation(env, "rfile-4", "Hello there, a question", "rcap@example.com")
    cap = reply_cap(env.daemon.config.reply_attachments_total_max)
    async with env.client() as c:
        r = await c.post(
            f"/api/v1/conversations/{conv['id']}/messages",
            content=b"{" + b" " * cap + b"}",
            headers={**env.tokens["root"], "Content-Type": "application/json"},
        )
        assert r.status_code == 413


async def test_openapi_describes_reply_files(env: Env) -> None:
    async with env.client() as c:
        spec = (await c.get("/openapi.json")).json()
    reply = spec["components"]["schemas"]["ReplyIn"]["properties"]["attachments"]
    assert "max_reply_attachment_kb" in reply["description"]
    files = spec["components"]["schemas"]["ReplyFile"]["properties"]
    assert "base64" in files["data"]["description"]
    assert "folders" in files["filename"]["description"]
