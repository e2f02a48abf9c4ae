"""The reports API and page, the survey page and the web chat survey, on a
daemon with three weeks of conversations behind it (made through the real
pipeline, replies, resolutions and surveys on a controllable clock).

Real Chromium renders the reports page (charts and all: screenshots in
test-artifacts/screenshots), the survey page a customer reaches from the
e-mail, and the survey buttons in the web chat widget; the CSV downloads
hold the API's figures."""

from __future__ import annotations

import csv
import io
import json
import random
import re
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from omnidesk.app import Daemon
from omnidesk.model import Envelope
from omnidesk.outbox import queue_reply
from omnidesk.service.clock import ManualClock, SystemClock
from omnidesk.service.reports import REPORTS
from omnidesk.service.surveys import make_token, record_answer
from omnidesk.store.actions import set_status
from tests.conftest import API_SECRET, make_config, settle
from tests.service.helpers import control_time
from tests.service.test_surveys import survey_rules
from tests.web.conftest import Watch, add_users, browser, log_in, screenshot_path

__all__ = ["browser"]  # the module-scoped Chromium fixture, used here too

pytestmark = pytest.mark.asyncio(loop_scope="module")

TEXTS = [
    ("Where is my order {n}? It was due yesterday.", "api"),
    ("Do you ship to Norway?", "shop"),
    ("This is unacceptable, the parcel arrived broken. Terrible service.", "api"),
    ("Thanks for the quick help, great service!", "shop"),
    ("Can I change the delivery address for order {n}?", "api"),
    ("I was charged twice for my subscription, I want a refund", "shop"),
]


@dataclass
class Desk:
    daemon: Daemon
    base: str
    tokens: dict[str, dict[str, str]]
    survey_link: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def three_weeks(d: Daemon, clock: ManualClock, end: float) -> None:
    """Conversations every working day for three weeks: answered after a while,
    most resolved, surveys answered by about half the customers."""
    rng = random.Random(21)
    start = end - 21 * 86400
    n = 0
    for day in range(21):
        t0 = start + day * 86400 + 9.5 * 3600
        clock.set(t0)
        opened = []
        for _ in range(rng.randint(4, 9)):
            n += 1
            text, channel = TEXTS[rng.randrange(len(TEXTS))]
            body = {
                "external_id": f"g{n}",
                "sender": {
                    "address": f"c{n % 400}@example.com",
                    "kind": "email",
                    "name": f"Customer {n % 400}",
                },
                "text": text.format(n=1000 + n),
            }
            await d.intake.accept(
                Envelope(channel, f"g{n}", json.dumps(body).encode(), "application/json")
            )
            clock.advance(rng.randint(60, 1800))
        await settle(d)
        await d.scheduler.tick(sweep=True)
        ids = await d.store.read(
            lambda db, t=t0: [
                int(r["id"])
                for r in db.all("SELECT id FROM conversations WHERE created_at >= ?", (t,))
            ]
        )
        opened += ids
        for cid in opened:
            if rng.random() < 0.9:
                clock.advance(rng.randint(5, 240) * 60)
                agent = rng.choice(["agent:alice", "agent:bob", "agent:carol"])
                await d.store.write(queue_reply, cid, text="Thanks, on it.", author=agent)
                d.scheduler.mark([cid])
        await d.scheduler.tick()
        for cid in opened:
            if rng.random() < 0.75:
                clock.advance(rng.randint(10, 600) * 60)
                await d.store.write(set_status, cid, "resolved", actor="agent:alice")
                d.scheduler.mark([cid])
        await d.scheduler.tick()
        surveys = await d.store.read(
            lambda db: [
                dict(r)
                for r in db.all("SELECT id, conversation_id FROM surveys WHERE state = 'sent'")
            ]
        )
        for sv in surveys:
            if day < 20 and rng.random() < 0.5:  # the last day's stay open
                rating = rng.choices([1, 2, 3, 4, 5], weights=[1, 1, 2, 4, 5])[0]
                await d.store.write(
                    record_answer,
                    sv["id"],
                    service=d.rules.current.service,
                    rating=rating,
                    loyalty=rng.choice(range(3, 11)),
                    via="link",
                    now=clock.now(),
                )
    clock.set(end)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def desk(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Desk]:
    from tests.channels.webchat.conftest import webchat_channel

    tmp = tmp_path_factory.mktemp("reports")
    port = free_port()
    cfg = make_config(
        tmp,
        f"sqlite:///{tmp / 'desk.db'}",
        web={"port": port, "public_url": f"http://127.0.0.1:{port}"},
        rules={"dir": str(survey_rules(tmp)), "watch": False},
        channels=[
            {"name": "api", "type": "api", "secret": API_SECRET},
            {"name": "shop", "type": "api", "secret": API_SECRET},
            webchat_channel(allowed_origins=[f"http://127.0.0.1:{port}"]),
        ],
        outbox={"max_attempts": 1},
    )
    d = Daemon(cfg)
    mp = pytest.MonkeyPatch()
    end = time.time()
    clock = ManualClock(end - 22 * 86400)  # the reports count from the daemon's first start
    control_time(mp, clock)
    d.scheduler.clock = clock
    await d.start()
    try:
        tokens = await add_users(d)
        await three_weeks(d, clock, end)
        # One survey still open, for the survey page.
        sid = await d.store.read(
            lambda db: db.val(
                "SELECT id FROM surveys WHERE state = 'sent' ORDER BY id DESC LIMIT 1"
            )
        )
        assert d.scheduler.key is not None and sid is not None
        link = f"/survey/{make_token(d.scheduler.key, int(sid))}?r=4"
        mp.undo()
        d.scheduler.clock = SystemClock()
        yield Desk(d, f"http://127.0.0.1:{d.web_port}", tokens, link)
    finally:
        mp.undo()
        await d.stop()


async def test_csv_downloads_hold_the_api_figures(desk: Desk) -> None:
    sue = desk.tokens["sue"]
    async with httpx.AsyncClient(base_url=desk.base, headers=sue, timeout=30) as c:
        for name in REPORTS:
            for by in ("", "&by=channel"):
                js = await c.get(
                    f"/api/v1/reports/{name}?from=2000-01-01{by}".replace(
                        "2000-01-01",
                        time.strftime("%Y-%m-%d", time.gmtime(time.time() - 40 * 86400)),
                    )
                )
                assert js.status_code == 200, js.text
                report = js.json()
                r = await c.get(js.url.raw_path.decode() + "&format=csv")
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("text/csv")
                assert f"omnidesk-{name}-" in r.headers["content-disposition"]
                rows = list(csv.reader(io.StringIO(r.text)))
                table = report["table"]
                if not table:
                    assert rows in ([[]], [])
                    continue
                cols = rows[0]
                assert [dict(zip(cols, row, strict=True)) for row in rows[1:]] == [
                    {k: "" if t.get(k) is None else str(t[k]) for k in cols} for t in table
                ], name
        overview = (await c.get("/api/v1/reports")).json()
        assert set(overview) == set(REPORTS)
        assert overview["volume"]["summary"]["created"] > 80
        assert overview["csat"]["summary"]["answered"] > 10
        assert overview["sla"]["summary"]["first_response"]["met"] > 0
        assert overview["complaints"]["summary"]["received"] > 5


async def test_reports_are_for_supervisors_and_admins(desk: Desk) -> None:
    async with httpx.AsyncClient(base_url=desk.base, timeout=10) as c:
        r = await c.get("/api/v1/reports/volume", headers=desk.tokens["alice"])
        assert r.status_code == 403
        r = await c.get("/api/v1/reports/volume", headers=desk.tokens["root"])
        assert r.status_code == 200
        bad = await c.get(
            "/api/v1/reports/volume?from=2026-03-05&to=2026-03-01", headers=desk.tokens["sue"]
        )
        assert bad.status_code == 422 and "from is after to" in bad.text
        bad = await c.get("/api/v1/reports/volume?by=colour", headers=desk.tokens["sue"])
        assert bad.status_code == 422
        r = await c.get("/reports", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login")


async def test_reports_page_in_chromium(desk: Desk, browser: Any) -> None:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    watch = Watch(page)
    await log_in(page, desk, "sue")
    await page.click("header.top >> text=Reports")
    await page.wait_for_url("**/reports")
    charts = page.locator("svg.chart")
    assert await charts.count() >= 10
    assert await page.locator("#panel-volume svg.chart rect").count() > 10
    assert await page.locator("#panel-response_times polyline").count() >= 2
    text = await page.locator("#panel-csat").inner_text()
    assert "csat pct" in text.lower()
    await page.screenshot(path=screenshot_path("service-reports"), full_page=True)
    # A filter: complaints only, by the form.
    await page.select_option("select[name=category]", "complaint")
    await page.click("#report-filters button")
    await page.wait_for_url("**category=complaint**")
    await page.locator("#panel-complaints").screenshot(
        path=screenshot_path("service-reports-complaints")
    )
    # The CSV link downloads the panel's table.
    async with page.expect_download() as dl:
        await page.click("#panel-sla a.csv")
    got = Path(await (await dl.value).path()).read_text()
    assert got.splitlines()[0].startswith("team,target,met,breached,attained_pct")
    assert not watch.errors and not watch.console, (watch.errors, watch.console)
    assert all(u.startswith(desk.base) for u in watch.requests), watch.requests
    await context.close()


async def test_survey_page_in_chromium(desk: Desk, browser: Any) -> None:
    context = await browser.new_context(viewport={"width": 720, "height": 860})
    page = await context.new_page()
    watch = Watch(page)
    await page.goto(desk.base + desk.survey_link)
    assert await page.locator("input[name=rating][value='4']").is_checked()
    await page.screenshot(path=screenshot_path("service-survey-preselected"), full_page=True)
    sid = int(
        await desk.daemon.store.read(
            lambda db: db.val(
                "SELECT id FROM surveys WHERE state = 'sent' ORDER BY id DESC LIMIT 1"
            )
        )
    )
    assert (
        await desk.daemon.store.read(
            lambda db: db.val("SELECT rating FROM surveys WHERE id = ?", (sid,))
        )
        is None
    )
    await page.click("text=Excellent")
    await page.click(".loyalty >> text=9")
    await page.fill("textarea[name=comment]", "Sorted out in an hour, thanks!")
    await page.click("#survey-submit")
    await page.wait_for_selector("#survey-thanks")
    await page.screenshot(path=screenshot_path("service-survey-thanks"), full_page=True)
    row = await desk.daemon.store.read(
        lambda db: dict(
            db.one(
                "SELECT rating, loyalty_score, comment, answered_via FROM surveys WHERE id = ?",
                (sid,),
            )
        )
    )
    assert row == {
        "rating": 5,
        "loyalty_score": 9,
        "comment": "Sorted out in an hour, thanks!",
        "answered_via": "link",
    }
    assert not watch.errors and not watch.console, watch.console
    await page.goto(desk.base + re.sub(r"/survey/[^?]+", "/survey/forged.token", desk.survey_link))
    await page.wait_for_selector("#survey-problem")
    await page.screenshot(path=screenshot_path("service-survey-invalid-link"))
    await context.close()


async def test_web_chat_survey_buttons_in_chromium(desk: Desk, browser: Any) -> None:
    d = desk.daemon
    context = await browser.new_context(viewport={"width": 900, "height": 760})
    page = await context.new_page()
    watch = Watch(page)
    await page.goto(desk.base + "/webchat/site/")
    await page.click("#od-launcher")
    await page.fill("#od-input", "Do you have this jacket in blue?")
    await page.keyboard.press("Enter")

    async def conversation() -> int | None:
        v = await d.store.read(
            lambda db: db.val(
                "SELECT id FROM conversations WHERE channel = 'site' ORDER BY id DESC LIMIT 1"
            )
        )
        return None if v is None else int(v)

    deadline = time.monotonic() + 10
    while (cid := await conversation()) is None and time.monotonic() < deadline:
        await settle(d)
    assert cid is not None
    await d.store.write(queue_reply, cid, text="Yes, in all sizes.", author="agent:bob")
    d.outbox.wake()
    await page.locator(".od-out", has_text="Yes, in all sizes.").wait_for(timeout=15_000)
    await d.store.write(set_status, cid, "resolved", actor="agent:bob")
    d.outbox.wake()
    await d.scheduler.tick(sweep=True)
    d.outbox.wake()
    buttons = page.locator(".od-survey button")
    await buttons.first.wait_for(timeout=15_000)
    assert await buttons.count() == 5
    await page.screenshot(path=screenshot_path("service-webchat-survey"))
    await page.click(".od-survey button[data-value='5']")

    async def rated() -> Any:
        return await d.store.read(
            lambda db: db.one(
                "SELECT rating, answered_via FROM surveys WHERE conversation_id = ?", (cid,)
            )
        )

    deadline = time.monotonic() + 10
    while ((row := await rated()) is None or row["rating"] is None) and time.monotonic() < deadline:
        await settle(d)
    assert row is not None and (row["rating"], row["answered_via"]) == (5, "chat")
    await page.locator(".od-out", has_text="How likely").wait_for(timeout=15_000)
    await page.screenshot(path=screenshot_path("service-webchat-survey-loyalty"))
    assert not watch.errors, watch.errors
    await context.close()


async def test_notices_and_sla_clocks_in_the_inbox(desk: Desk, browser: Any) -> None:
    context = await browser.new_context(viewport={"width": 1500, "height": 950})
    page = await context.new_page()
    watch = Watch(page)
    await log_in(page, desk, "alice")
    count = page.locator("#notices-count")
    await count.wait_for(state="visible", timeout=10_000)
    unread = int(await count.inner_text())
    assert unread > 0
    await page.click("#notices")
    first = page.locator("#notices-panel li.unread a").first
    text = await first.inner_text()
    assert text.startswith(("SLA breached", "SLA warning", "Rule "))
    await page.screenshot(path=screenshot_path("service-notices"))
    await first.click()
    await page.wait_for_selector("#service .sla-targets li")
    assert "policy" in (await page.locator("#service").inner_text())
    await page.screenshot(path=screenshot_path("service-inbox-sla"))
    await page.click("#notices")
    await page.click("#notices-read")
    await count.wait_for(state="hidden", timeout=10_000)
    assert not watch.errors, watch.errors
    await context.close()
