"""Admin pages people enjoy (issue 25 item 6): the rules editor's problems
at their line and its "try a message" box, which gives the same decision as
``omnidesk rules test`` on the edited, unsaved rules (and saves nothing);
the audit log as a filterable table. In
Chromium at 390x844 and 1440x900: the editor highlights TOML, marks a
problem at its line, tries a message; screenshots ``ws-*-rules-*``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RULES, message, post_inbound, settle
from tests.web.conftest import Env, Watch, log_in, screenshot_path, wait_for
from tests.web.test_workday_browser import SIZES, no_horizontal_scroll

pytestmark = [pytest.mark.asyncio(loop_scope="module")]

PARROT = """

# Parrots are VIPs.
[[rule]]
name = "parrots"
[rule.when]
text.contains = ["parrot"]
[rule.then]
team = "vip"
tags = ["parrot"]
"""
CLI = [sys.executable, "-m", "omnidesk.cli"]
MESSAGE = "My parrot chewed the charger, can you send a new one?"


def edited() -> str:
    return (RULES / "50-routing.toml").read_text(encoding="utf-8") + PARROT


def cli_decision(tmp: Path, text: str) -> dict[str, Any]:
    """``omnidesk rules test`` on a copy of the rules with ``text`` in place."""
    folder = tmp / "rules"
    shutil.copytree(RULES, folder)
    (folder / "50-routing.toml").write_text(text, encoding="utf-8")
    out = subprocess.run(
        [*CLI, "rules", "test", "--rules", str(folder), "--model", "none", "--text", MESSAGE],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


async def test_try_box_decides_like_the_cli_and_saves_nothing(env: Env, tmp_path: Path) -> None:
    before = (RULES / "50-routing.toml").read_bytes()
    admin = env.tokens["root"]
    async with env.client() as c:
        r = await c.post(
            "/api/v1/rules/50-routing.toml/try",
            json={"text": edited(), "message": MESSAGE},
            headers=admin,
        )
        assert r.status_code == 200, r.text
        got = r.json()["decision"]
        want = cli_decision(tmp_path, edited())
        for key in ("category", "priority", "team", "tags", "rules_fired", "rule"):
            assert got[key] == want[key], key
        assert got["team"] == "vip" and "parrot" in got["tags"]
        # The running rules do not know parrots: nothing was saved or loaded.
        r = await c.post(
            "/api/v1/rules/50-routing.toml/try",
            json={"text": (RULES / "50-routing.toml").read_text(), "message": MESSAGE},
            headers=admin,
        )
        assert "parrot" not in r.json()["decision"]["tags"]
        # A mistake is reported at its line, by check and by try.
        broken = edited().replace('tags = ["parrot"]', 'priority = "hgh"\ntags = ["parrot"]')
        line = broken.splitlines().index('priority = "hgh"') + 1
        r = await c.post(
            "/api/v1/rules/50-routing.toml/check", json={"text": broken}, headers=admin
        )
        problems = r.json()["problems"]
        assert r.json()["ok"] is False
        assert any(p["line"] == line and p["file"] == "50-routing.toml" for p in problems)
        r = await c.post(
            "/api/v1/rules/50-routing.toml/try",
            json={"text": broken, "message": MESSAGE},
            headers=admin,
        )
        assert r.status_code == 422 and r.json()["problems"][0]["line"] == line
        # Agents may not try rules.
        r = await c.post(
            "/api/v1/rules/50-routing.toml/try",
            json={"text": edited(), "message": MESSAGE},
            headers=env.tokens["alice"],
        )
        assert r.status_code == 403
    assert (RULES / "50-routing.toml").read_bytes() == before


async def test_audit_filters(env: Env) -> None:
    admin = env.tokens["root"]
    async with env.client() as c:
        await post_inbound(c, message("audit-1", "Where is my order?", "au@example.com"))
        await settle(env.daemon)
        items = (await c.get("/api/v1/audit?action=routed&limit=50", headers=admin)).json()["items"]
        assert items and all(a["action"] == "routed" for a in items)
        cid = items[0]["conversation_id"]
        one = (await c.get(f"/api/v1/audit?conversation_id={cid}", headers=admin)).json()["items"]
        assert one and all(a["conversation_id"] == cid for a in one)


@pytest.mark.browser
@pytest.mark.parametrize("size", list(SIZES))
async def test_rules_editor_try_box_in_chromium(env: Env, browser: Any, size: str) -> None:
    w, h = SIZES[size]
    context = await browser.new_context(viewport={"width": w, "height": h})
    page = await context.new_page()
    watch = Watch(page)
    await log_in(page, env, "root")
    await page.goto(env.base + "/admin/rules")
    await page.wait_for_selector("#rules-text")
    await page.select_option("#rules-file", "50-routing.toml")
    # The chosen file is loaded (not the first one, still in the editor).
    await wait_for(
        lambda: page.evaluate("document.querySelector('#rules-text').value.startsWith('# Routing')")
    )
    # Coloured TOML under the text: tables, keys, strings, comments.
    for cls in ("tk-table", "tk-key", "tk-string", "tk-comment"):
        assert await page.locator(f".code-shade .{cls}").count() > 0, cls
    await page.eval_on_selector(
        "#rules-text",
        "(el, extra) => { el.value += extra; el.dispatchEvent(new Event('input')); }",
        PARROT.replace('tags = ["parrot"]', 'priority = "hgh"\ntags = ["parrot"]'),
    )
    # The mistake shows at its line, as typed.
    await page.wait_for_selector(".tl.problem .problem-note")
    bad_line = await page.get_attribute(".tl.problem", "data-line")
    text = await page.input_value("#rules-text")
    assert text.splitlines()[int(bad_line) - 1] == 'priority = "hgh"'
    await page.click("#rules-problems button")  # jump to it
    await page.screenshot(path=screenshot_path(f"ws-{size}-rules-problem-inline"))
    # Fixed: the problem goes; try a message against the unsaved text.
    await page.eval_on_selector(
        "#rules-text",
        "el => { el.value = el.value.replace('priority = \"hgh\"', 'priority = \"high\"');"
        " el.dispatchEvent(new Event('input')); }",
    )
    await wait_for(lambda: page.evaluate("!document.querySelector('.tl.problem')"))
    await page.fill("#try-text", MESSAGE)
    await page.click("#try-run")
    await page.wait_for_selector("#try-decision")
    result = await page.inner_text("#try-decision")
    assert "vip" in result and "parrot" in result and "high" in result
    await page.locator("#try-box").scroll_into_view_if_needed()
    await no_horizontal_scroll(page)
    await page.screenshot(path=screenshot_path(f"ws-{size}-rules-try-box"), full_page=True)
    # The audit log: a readable table, filtered.
    await page.goto(env.base + "/admin/audit")
    await page.wait_for_selector("#audit-all tr[data-action]")
    await page.fill("#audit-action", "routed")
    await page.press("#audit-action", "Enter")
    await wait_for(
        lambda: page.evaluate(
            "[...document.querySelectorAll('#audit-all tr[data-action]')]"
            ".every(r => r.dataset.action === 'routed')"
        )
    )
    assert "{" not in await page.inner_text("#audit-all")  # no raw JSON
    await no_horizontal_scroll(page)
    await page.screenshot(path=screenshot_path(f"ws-{size}-audit-log"))
    assert not watch.errors, watch.errors
    await context.close()
