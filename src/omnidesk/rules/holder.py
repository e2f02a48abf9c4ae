"""The rules a running daemon uses, and their hot reload."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import structlog

from .check import run_examples
from .engine import RuleSet
from .loader import fingerprint, load_rules
from .problems import RulesError
from .trained import ModelStore, TrainedModel

# The trained models' folder inside the data directory.
MODEL_FOLDER = "classifier"
# How often ``current`` looks whether another model was installed (one stat call).
MODEL_CHECK_SECONDS = 1.0

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

    With ``model_dir``, the trained model installed there (``ModelStore``) decides with
    the rules, and a newly installed one replaces it within ``MODEL_CHECK_SECONDS``:
    every process that holds rules (the daemon, each pipeline process, each instance
    sharing the data directory) follows ``CURRENT`` by itself, without a restart. A
    model file that cannot be read is logged and the model in use stays.
    """

    def __init__(
        self,
        directory: str | Path,
        ruleset: RuleSet | None = None,
        *,
        model_dir: str | Path | None = None,
    ) -> None:
        self.directory = Path(directory)
        # Without rules given, load now: with nothing to fall back on, a RulesError
        # here is the caller's to report (the daemon should not start).
        self._current = ruleset if ruleset is not None else load_rules(self.directory)
        self.last_error: RulesError | None = None
        self.version = 1
        self._lock = threading.Lock()  # a watcher and an admin's reload must not interleave
        self.models = ModelStore(Path(model_dir)) if model_dir is not None else None
        self.model: TrainedModel | None = None
        self._model_stamp: tuple[int, int] | None = None
        self._model_checked = 0.0
        if self.models is not None:
            self.check_model()

    @property
    def current(self) -> RuleSet:
        if self.models is not None and time.monotonic() - self._model_checked >= (
            MODEL_CHECK_SECONDS
        ):
            self.check_model()
        return self._current

    def check_model(self) -> bool:
        """Load the installed model if it is not the one in use; True if it changed."""
        assert self.models is not None
        self._model_checked = time.monotonic()
        try:
            st = os.stat(self.models.directory / "CURRENT")
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp == self._model_stamp:
            return False
        with self._lock:
            self._model_stamp = stamp
            version = self.models.current_version()
            if version == (self.model.version if self.model is not None else None):
                return False
            try:
                model = self.models.load(version) if version is not None else None
            except (OSError, ValueError, KeyError) as e:
                log.error("classifier.model_unloadable", version=version, error=str(e)[:300])
                return False
            self.model = model
            self._current = self._current.with_model(model)
        log.info("classifier.model_loaded", version=version)
        return True

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
            self._current = ruleset.with_model(self.model)
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
