"""The rules a running daemon uses, and their hot reload."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import structlog

from .check import run_examples
from .engine import RuleSet
from .loader import fingerprint, load_rules
from .problems import RulesError

log = structlog.get_logger(__name__)


def _is_rule_file(_change: object, path: str) -> bool:
    name = Path(path).name
    return name.endswith(".toml") and not name.startswith(".")


class RulesHolder:
    """Holds the current :class:`RuleSet` and replaces it when the files change.

    Readers take ``holder.current`` once per message; a reload swaps the reference in one
    assignment, so a message is evaluated entirely by the old rules or entirely by the new.
    Rules that fail validation never replace rules that work: the old set keeps running
    and ``last_error`` says why the new one was refused.
    """

    def __init__(self, directory: str | Path, ruleset: RuleSet | None = None) -> None:
        self.directory = Path(directory)
        # Without rules given, load now: with nothing to fall back on, a RulesError
        # here is the caller's to report (the daemon should not start).
        self._current = ruleset if ruleset is not None else load_rules(self.directory)
        self.last_error: RulesError | None = None
        self.version = 1
        self._lock = threading.Lock()  # a watcher and an admin's reload must not interleave

    @property
    def current(self) -> RuleSet:
        return self._current

    def reload(self) -> bool:
        with self._lock:
            try:
                ruleset = load_rules(self.directory)
            except RulesError as e:
                self.last_error = e
                log.error(
                    "rules.reload_failed",
                    directory=str(self.directory),
                    problems=[str(p) for p in e.problems],
                    keeping_version=self.version,
                )
                return False
            self._current = ruleset
            self.last_error = None
            self.version += 1
        log.info(
            "rules.reloaded",
            directory=str(self.directory),
            version=self.version,
            rules=len(ruleset),
            files=len(ruleset.files),
        )
        failures = run_examples(ruleset)
        if failures:
            # Examples are tests, not validation: the rules are valid and now run, but the
            # admin should hear that they no longer do what their examples say.
            log.warning("rules.examples_failed", failures=[str(f) for f in failures])
        return True

    async def watch(self, stop: asyncio.Event | None = None, *, debounce_ms: int = 300) -> None:
        """Reload whenever a ``*.toml`` file in the directory is added, changed or
        removed; runs until cancelled or ``stop`` is set."""
        from watchfiles import awatch

        # Files edited between the initial load and the start of watching would
        # otherwise go unnoticed until the next edit.
        if await asyncio.to_thread(fingerprint, self.directory) != self._current.fingerprint:
            await asyncio.to_thread(self.reload)
        async for _changes in awatch(
            self.directory,
            watch_filter=_is_rule_file,
            stop_event=stop,
            debounce=debounce_ms,
            recursive=False,
        ):
            await asyncio.to_thread(self.reload)
