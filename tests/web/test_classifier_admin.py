"""The classifier's admin page: the model in use with its report, the versions, the
retrain history from the audit trail, the corrections since the model was trained, and
a retrain button (admins only, CSRF-checked like every other admin form). Through the
API, and in Chromium with screenshots."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from omnidesk.store import actions
from tests.conftest import message, post_inbound, settle
from tests.rules.synthetic import examples
from tests.web.conftest import Env, Watch, log_in, login, screenshot_path, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")


ROTATE = {"complaint": "feedback", "feedback": "inquiry", "inquiry": "complaint"}


async def _teach(env: Env, prefix: str, per_class: int) -> list[int]:
    """Synthetic messages through the API channel; an agent sets each one's category
    (every third one to another than the phrases chose: a correction) and resolves it."""
    records = examples(per_class=per_class)
    async with env.client() as c:
        for i, r in enumerate(records):
            await post_inbound(c, message(f"{prefix}-{i}", r["text"], f"{prefix}{i}@x.org"))
    await settle(env.daemon)
    by_text = await env.daemon.store.read(
        lambda db: {
            r["text"]: r["conversation_id"]
            for r in db.all("SELECT conversation_id, text FROM messages WHERE direction = 'in'")
        }
    )
    ids = []
    for i, r in enumerate(records):
        cid = by_text[r["text"]]
        label = ROTATE[r["label"]] if i % 3 == 0 else r["label"]
        await env.daemon.store.write(actions.correct, cid, actor="alice", category=label)
        await env.daemon.store.write(actions.set_status, cid, "resolved", actor="alice")
        ids.append(cid)
    return ids


async def _retrained(c: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        state = (await c.get("/api/v1/classifier", headers=headers)).json()
        return None if state["retrain"]["running"] else state

    result: dict[str, Any] = await wait_for(done, timeout=60)
    return result


async def test_only_admins_see_and_retrain_and_a_session_needs_its_csrf_token(env: Env) -> None:
    async with env.client() as c:
        for who in ("alice", "sue"):
            assert (await c.get("/api/v1/classifier", headers=env.tokens[who])).status_code == 403
            r = await c.post("/api/v1/classifier/retrain", json={}, headers=env.tokens[who])
            assert r.status_code == 403
    async with env.client() as c:
        csrf = await login(c, "root")
        # A logged-in admin's browser session without the token (a forged form): refused.
        assert (await c.post("/api/v1/classifier/retrain", json={})).status_code == 403
        state = (await c.get("/api/v1/classifier")).json()
        assert state["model"] is None and state["versions"] == [] and state["history"] == []
        assert state["retrain"]["running"] is False
        assert (await c.post("/api/v1/classifier/retrain", json={}, headers=csrf)).status_code == (
            202
        )
        state = await _retrained(c, csrf)
        # Nothing was taught yet: nothing trained, nothing audited.
        assert "nothing trained" in state["retrain"]["last"]["result"]
        assert state["model"] is None and state["history"] == []


async def test_corrections_retrain_and_the_model_report(env: Env) -> None:
    ids = await _teach(env, "api", per_class=6)
    root = env.tokens["root"]
    async with env.client() as c:
        state = (await c.get("/api/v1/classifier", headers=root)).json()
        assert state["new"]["corrections"] + state["new"]["confirmations"] == len(ids)
        listed = {k["conversation_id"] for k in state["corrections"]}
        assert listed and listed <= set(ids)
        k = state["corrections"][0]
        assert k["actor"] == "alice" and k["new"] in ("inquiry", "feedback", "complaint")
        assert k["text"] and k["old"] != k["new"]
        # Fewer than 50 new: an ordinary retrain trains nothing; forced, it does.
        r = await c.post("/api/v1/classifier/retrain", json={"force": True}, headers=root)
        assert r.status_code == 202 and r.json()["min_new"] == 1
        state = await _retrained(c, root)
    last = state["retrain"]["last"]
    assert last["installed"] is True and last["actor"] == "admin:root", last
    model = state["model"]
    assert model is not None and model["version"] == last["new_version"] == 1
    assert model["examples"] == len(ids) - model["held_out"]["examples"]
    assert set(model["cross_validated"]["per_class"]) == {"inquiry", "feedback", "complaint"}
    assert state["settings"]["origin"] == "chosen in training"
    assert [v["version"] for v in state["versions"]] == [1] and state["versions"][0]["installed"]
    (entry,) = state["history"]
    assert entry["actor"] == "admin:root" and entry["new_version"] == 1 and entry["installed"]
    # The corrections listed are those after the new model's training data: none.
    assert state["corrections"] == [] and state["since"] >= max(k["at"] for k in [k])


async def test_the_classifier_page_in_chromium(env: Env, browser: Any) -> None:
    await _teach(env, "ui", per_class=4)  # corrections after model v1
    context = await browser.new_context(viewport={"width": 1400, "height": 1100})
    page = await context.new_page()
    watch = Watch(page)
    await log_in(page, env, "root")
    await page.goto(env.base + "/admin/classifier")
    await page.wait_for_selector("#classifier-model >> text=Model v1")
    assert "cross-validated" in await page.locator("#classifier-model").inner_text()
    rows = page.locator("#classifier-corrections tr")
    assert await rows.count() >= 2  # a header and the corrections since v1
    assert "alice" in await page.locator("#classifier-corrections").inner_text()
    assert await page.locator("#classifier-history tr").count() == 2  # header + v1
    shot = screenshot_path("classifier-01-model-and-corrections")
    await page.screenshot(path=shot, full_page=True)

    await page.check("#retrain-force")
    await page.click("#retrain")
    # The page follows the retrain by itself and shows its outcome.
    await page.wait_for_selector("#retrain-status >> text=Retraining", timeout=10_000)
    await page.wait_for_selector("#retrain-result >> text=/^model v2/", timeout=60_000)
    await page.wait_for_selector("#classifier-versions >> text=v2")
    assert await page.locator("#classifier-history tr").count() == 3
    await page.screenshot(path=screenshot_path("classifier-02-after-retrain"), full_page=True)
    assert not watch.errors and not watch.console, (watch.errors, watch.console)
    # An agent's settings page has no classifier tab.
    await context.close()
    context = await browser.new_context()
    page = await context.new_page()
    await log_in(page, env, "alice")
    await page.goto(env.base + "/admin")
    await page.wait_for_selector(".tabs button")
    assert await page.locator(".tabs button[data-tab=classifier]").count() == 0
    await context.close()
