"""Hot reload: valid edits take effect without a restart; invalid ones never replace
rules that work."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

import pytest

from omnidesk.rules import RulesError, RulesHolder

from .conftest import inp

RULE = """
[[rule]]
name = "route"
then = {{ team = "{team}" }}
"""


def rule(team: str) -> str:
    return RULE.format(team=team)


async def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest.fixture
def directory(rules_dir: Callable[..., Path]) -> Path:
    return rules_dir({"50-route.toml": rule("first")})


def team(holder: RulesHolder) -> str | None:
    return holder.current.evaluate(inp("hello")).team


def test_holder_loads_rules_when_given_none(directory: Path) -> None:
    holder = RulesHolder(directory)
    assert team(holder) == "first"
    assert holder.version == 1 and holder.last_error is None


def test_holder_refuses_to_start_on_invalid_rules(directory: Path) -> None:
    (directory / "50-route.toml").write_text("[[rule]]\nname = 1\n")
    with pytest.raises(RulesError):
        RulesHolder(directory)


def test_reload_swaps_in_valid_rules(directory: Path) -> None:
    holder = RulesHolder(directory)
    before = holder.current
    (directory / "50-route.toml").write_text(rule("second"))
    assert holder.reload() is True
    assert team(holder) == "second"
    assert holder.version == 2
    assert before.evaluate(inp("x")).team == "first"  # a held RuleSet never changes


def test_invalid_reload_keeps_previous_rules_and_reports(directory: Path) -> None:
    holder = RulesHolder(directory)
    (directory / "50-route.toml").write_text('[[rule]]\nname = "route"\nthen = { team = 7 }\n')
    assert holder.reload() is False
    assert team(holder) == "first"
    assert holder.version == 1
    assert holder.last_error is not None
    [problem] = holder.last_error.problems
    assert problem.file.endswith("50-route.toml") and problem.line == 3
    # fixing the file clears the error
    (directory / "50-route.toml").write_text(rule("fixed"))
    assert holder.reload() is True
    assert holder.last_error is None and team(holder) == "fixed"


@contextlib.asynccontextmanager
async def watching(holder: RulesHolder):  # type: ignore[no-untyped-def]
    stop = asyncio.Event()
    task = asyncio.create_task(holder.watch(stop, debounce_ms=50))
    await asyncio.sleep(0.5)  # let the watcher start before editing
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_valid_edit_takes_effect_without_restart(directory: Path) -> None:
    holder = RulesHolder(directory)
    async with watching(holder):
        (directory / "50-route.toml").write_text(rule("edited"))
        await wait_for(lambda: team(holder) == "edited")
        assert holder.version == 2
        # a new file is picked up too
        (directory / "60-more.toml").write_text(
            '[[rule]]\nname = "more"\nthen = { tags = ["more"] }\n'
        )
        await wait_for(lambda: "more" in holder.current.evaluate(inp("x")).tags)


async def test_invalid_edit_keeps_previous_rules(directory: Path) -> None:
    holder = RulesHolder(directory)
    async with watching(holder):
        (directory / "50-route.toml").write_text("[[rule]\nname = broken")
        await wait_for(lambda: holder.last_error is not None)
        assert team(holder) == "first"
        assert holder.version == 1
        assert holder.last_error.problems[0].line == 1
        (directory / "50-route.toml").write_text(rule("repaired"))
        await wait_for(lambda: team(holder) == "repaired")
        assert holder.last_error is None


async def test_edits_made_before_watching_are_not_missed(directory: Path) -> None:
    holder = RulesHolder(directory)
    (directory / "50-route.toml").write_text(rule("early"))
    stop = asyncio.Event()
    task = asyncio.create_task(holder.watch(stop, debounce_ms=50))
    await wait_for(lambda: team(holder) == "early")
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_watch_ignores_files_that_are_not_rules(directory: Path) -> None:
    holder = RulesHolder(directory)
    async with watching(holder):
        (directory / "notes.txt").write_text("not a rule")
        (directory / ".50-route.toml.swp").write_text("editor state")
        await asyncio.sleep(0.5)
        assert holder.version == 1


async def test_watch_stops_when_cancelled(directory: Path) -> None:
    holder = RulesHolder(directory)
    task = asyncio.create_task(holder.watch(debounce_ms=50))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
