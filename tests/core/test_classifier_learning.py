"""Learning from agents and replaying history, on both engines: a correction in the
inbox becomes training data, a worse retrained model is not installed, and a replay
changes nothing without --apply and exactly what it printed with it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from omnidesk.app import Daemon, model_dir
from omnidesk.classify_cli import replay, retrain
from omnidesk.config import Config
from omnidesk.learning import held_out as _held_out
from omnidesk.rules import load_rules
from omnidesk.rules.trained import Example, ModelStore, train
from omnidesk.store import actions
from omnidesk.store.training import CORRECTION_WEIGHT, training_examples
from tests.conftest import admin_token, message, post_inbound, settle
from tests.rules.synthetic import examples


async def _conversations(daemon: Daemon) -> dict[str, dict[str, Any]]:
    rows = await daemon.store.read(
        lambda db: [
            dict(r)
            for r in db.all(
                "SELECT c.id, c.category, c.priority, c.team, c.assignee, m.text FROM"
                " conversations c JOIN messages m ON m.conversation_id = c.id ORDER BY c.id"
            )
        ]
    )
    return {r["text"]: r for r in rows}


async def test_a_correction_in_the_inbox_is_training_data(
    daemon: Daemon, client: httpx.AsyncClient
) -> None:
    await post_inbound(client, message("learn-1", "The app is nice but the font is tiny"))
    await post_inbound(client, message("learn-2", "Where do I find my invoice?", "bo@x.org"))
    await settle(daemon)
    convs = await _conversations(daemon)
    font = convs["The app is nice but the font is tiny"]
    invoice = convs["Where do I find my invoice?"]
    root = await admin_token(daemon)
    r = await client.post(
        f"/api/v1/conversations/{font['id']}/classification",
        json={"category": "complaint" if font["category"] != "complaint" else "feedback"},
        headers=root,
    )
    assert r.status_code == 200 and r.json()["changed"], r.text
    r = await client.post(
        f"/api/v1/conversations/{invoice['id']}/status", json={"status": "resolved"}, headers=root
    )
    assert r.status_code == 200, r.text
    got = {e["conversation_id"]: e for e in await daemon.store.read(training_examples)}
    corrected = got[font["id"]]
    assert corrected["source"] == "correction" and corrected["weight"] == CORRECTION_WEIGHT
    assert corrected["label"] != font["category"]
    assert corrected["text"] == "The app is nice but the font is tiny"
    confirmed = got[invoice["id"]]
    assert (confirmed["source"], confirmed["label"], confirmed["weight"]) == (
        "confirmation",
        invoice["category"],
        1.0,
    )


async def _taught(daemon: Daemon, client: httpx.AsyncClient, wrong_outside_held_out: bool) -> None:
    """Every synthetic example as a conversation an agent labelled and resolved: with
    the true label, or (outside the held-out part) a wrong one."""
    rotate = {"complaint": "feedback", "feedback": "inquiry", "inquiry": "complaint"}
    records = examples(per_class=12)
    for i, r in enumerate(records):
        await post_inbound(client, message(f"t-{i}", r["text"], f"u{i}@x.org"))
    await settle(daemon)
    convs = await _conversations(daemon)
    for r in records:
        label = r["label"]
        if wrong_outside_held_out and not _held_out({"text": r["text"]}):
            label = rotate[label]
        cid = convs[r["text"]]["id"]
        # Through the agents' path (audit, corrections row), as the inbox does it: a
        # correction where the pipeline decided otherwise, else a confirmation.
        await daemon.store.write(actions.correct, cid, actor="root", category=label)
        await daemon.store.write(actions.set_status, cid, "resolved", actor="root")


def _installed_good_model(config: Config) -> int:
    good = train([Example(text=r["text"], label=r["label"]) for r in examples()], folds=0)
    good.report["store_until"] = 0.0
    return ModelStore(model_dir(config)).save(good, install=True)


async def test_a_worse_retrained_model_is_not_installed(
    config_factory: Callable[..., Config], daemon_factory: Any
) -> None:
    config = config_factory()
    daemon = await daemon_factory(config)
    old = _installed_good_model(config)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.web_port}") as client:
        await _taught(daemon, client, wrong_outside_held_out=True)
    outcome = await asyncio.to_thread(retrain, config, model_dir(config), min_new=10)
    assert outcome["installed"] is False, outcome
    held = outcome["held_out"]
    assert held["new_macro_f1"] <= held["old_macro_f1"]
    store = ModelStore(model_dir(config))
    assert store.current_version() == old  # the old model stays
    assert outcome["new_version"] in store.versions()  # the new one is kept aside
    audit = await daemon.store.read(
        lambda db: [
            r["detail"]
            for r in db.all("SELECT detail FROM audit WHERE action = ?", ("model_retrained",))
        ]
    )
    assert audit and '"installed":false' in audit[-1].replace(" ", "")


async def test_a_better_retrained_model_is_installed_and_fewer_examples_train_nothing(
    config_factory: Callable[..., Config], daemon_factory: Any
) -> None:
    config = config_factory()
    daemon = await daemon_factory(config)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.web_port}") as client:
        await _taught(daemon, client, wrong_outside_held_out=False)
    few = await asyncio.to_thread(retrain, config, model_dir(config), min_new=10_000)
    assert "nothing trained" in few["result"] and ModelStore(model_dir(config)).versions() == []
    outcome = await asyncio.to_thread(retrain, config, model_dir(config), min_new=10)
    assert outcome["installed"] is True, outcome
    assert ModelStore(model_dir(config)).current_version() == outcome["new_version"]
    # The daemon's rules follow the installed model without a restart.
    daemon.rules.check_model()
    assert daemon.rules.current.model is not None
    assert daemon.rules.current.model.version == outcome["new_version"]


async def test_replay_shows_without_applying_and_applies_exactly_what_it_showed(
    config_factory: Callable[..., Config],
    daemon_factory: Any,
    rules_copy: Path,
) -> None:
    config = config_factory(rules={"dir": str(rules_copy), "watch": False})
    daemon = await daemon_factory(config)
    texts = [
        "My parcel arrived broken, unacceptable",
        "Where is the parcel I ordered?",
        "Thank you, lovely service",
        "How do I reset my password?",
    ]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.web_port}") as client:
        for i, t in enumerate(texts):
            await post_inbound(client, message(f"r-{i}", t, f"r{i}@x.org"))
        await settle(daemon)
    before = await _conversations(daemon)
    # Today's rules: anything about a parcel goes to escalations, as a complaint.
    (rules_copy / "60-replay.toml").write_text(
        '[[rule]]\nname = "parcels"\norder = 200\nwhen = { text.contains = "parcel" }\n'
        'then = { category = "complaint", team = "escalations", priority = "urgent" }\n',
        encoding="utf-8",
    )
    rules = load_rules(rules_copy)
    since = time.time() - 3600
    shown = await replay(config, rules, since, show_progress=False)
    assert shown.examined == len(texts)
    assert await _conversations(daemon) == before  # nothing changed
    changed_ids = {c.conversation_id for c in shown.changes}
    parcels = {before[t]["id"] for t in texts if "parcel" in t}
    assert changed_ids == parcels
    text = shown.format()
    assert "priority: normal -> urgent" in text or "-> urgent" in text
    applied = await replay(config, rules, since, apply=True, show_progress=False)
    assert [c.to_dict() for c in applied.changes] == [c.to_dict() for c in shown.changes]
    after = await _conversations(daemon)
    for t in texts:
        row, old = after[t], before[t]
        change = next((c for c in shown.changes if c.conversation_id == old["id"]), None)
        expected = {**old, **(change.after if change else {})}
        assert {k: row[k] for k in ("category", "priority", "team", "assignee")} == {
            k: expected[k] for k in ("category", "priority", "team", "assignee")
        }, t
    audit = await daemon.store.read(
        lambda db: db.val("SELECT COUNT(*) FROM audit WHERE action = 'rules_replayed'")
    )
    assert audit == len(shown.changes)
    again = await replay(config, rules, since, show_progress=False)
    assert again.changes == []


async def test_the_daemon_retrains_on_its_schedule(
    config_factory: Callable[..., Config], daemon_factory: Any
) -> None:
    config = config_factory(classifier={"retrain_every": "0.2s", "retrain_min_new": 10})
    daemon = await daemon_factory(config)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.web_port}") as client:
        await _taught(daemon, client, wrong_outside_held_out=False)

    async def audited() -> list[tuple[str, str]]:
        return await daemon.store.read(
            lambda db: [
                (r["actor"], r["detail"])
                for r in db.all("SELECT actor, detail FROM audit WHERE action = 'model_retrained'")
            ]
        )

    deadline = time.monotonic() + 60
    while not await audited():
        assert time.monotonic() < deadline, "no scheduled retrain in 60 s"
        await asyncio.sleep(0.1)
    (actor, detail), *_ = await audited()
    assert actor == "schedule" and '"installed":true' in detail.replace(" ", "")
    assert ModelStore(model_dir(config)).current_version() == 1
    # Once nothing is new, the runs train nothing and audit nothing.
    while not (
        daemon.retrainer.last is not None and "nothing trained" in daemon.retrainer.last["result"]
    ):
        assert time.monotonic() < deadline, daemon.retrainer.last
        await asyncio.sleep(0.1)
    n = len(await audited())
    await asyncio.sleep(0.6)
    assert len(await audited()) == n
