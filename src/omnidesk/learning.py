"""Retraining the classifier on what agents taught the store, by one path whoever asks:
``omnidesk classify retrain``, the admin page's button, or the daemon's schedule
(``[classifier] retrain_every``).

A retrain trains only when at least ``min_new`` corrections and confirmations came
after the installed model's training. A quarter of those new examples (by a hash of the
text) is held out: the new model is trained on everything else, the installed one and
the new one are scored on the held-out part, and the new one is installed only if it
scores better; otherwise it is saved but not used. Either way the outcome goes into the
audit trail (``model_retrained``) and the log.

Training is CPU work of seconds: it runs in a worker thread, one at a time per process
(``Retrainer``), and says which step it is at so the admin page can show it.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog

from .rules import load_rules
from .rules.trained import Example, ModelStore, evaluate, train
from .store.audit import add_audit
from .store.base import Store
from .store.training import training_examples

log = structlog.get_logger(__name__)

MIN_NEW_EXAMPLES = 50
HELD_OUT_SHARE = 25  # percent of the new examples that score old against new


def held_out(example: dict[str, Any]) -> bool:
    digest = hashlib.sha256(example["text"].encode()).hexdigest()
    return int(digest[:8], 16) % 100 < HELD_OUT_SHARE


def as_examples(records: Sequence[dict[str, Any]]) -> list[Example]:
    return [
        Example(
            text=r["text"],
            label=r["label"],
            subject=str(r.get("subject") or ""),
            weight=float(r.get("weight", 1.0)),
        )
        for r in records
    ]


def train_with_phrases(rules: Any, examples: Sequence[Example], **kw: Any) -> Any:
    """Train on ``examples``; their cross-validated predictions and what ``rules``'
    phrases say of them choose how model and phrases are combined."""
    verdicts = [rules.phrase_verdict(e.subject, e.text) for e in examples]
    return train(examples, phrases=verdicts, **kw)


def retrain_on(
    stored: Sequence[dict[str, Any]],
    rules_dir: Path,
    model_dir: Path,
    *,
    min_new: int = MIN_NEW_EXAMPLES,
    extra: Sequence[dict[str, Any]] = (),
    say: Callable[[str], None] = lambda _s: None,
) -> dict[str, Any]:
    """The CPU part of a retrain, over the store's examples (``training_examples``):
    what happened, as audited."""
    store = ModelStore(model_dir)
    old = store.load()
    since = float(old.report.get("store_until") or 0.0) if old is not None else 0.0
    new = [e for e in stored if e["at"] > since]
    outcome: dict[str, Any] = {"new_examples": len(new), "old_version": old and old.version}
    if len(new) < min_new:
        outcome["result"] = f"{len(new)} new examples, fewer than {min_new}: nothing trained"
        return outcome
    held = [e for e in new if held_out(e)] or new[: max(1, len(new) // 4)]
    held_ids = {id(e) for e in held}
    training = [e for e in stored if id(e) not in held_ids] + list(extra)
    candidate = train_with_phrases(
        load_rules(rules_dir),
        as_examples(training),
        sources=[f"store: {len(training) - len(extra)}", *(["files"] if extra else [])],
        progress=say,
    )
    candidate.report["store_until"] = max(e["at"] for e in stored)
    new_score = evaluate(candidate, as_examples(held))
    old_score = evaluate(old, as_examples(held)) if old is not None else None
    candidate.report["held_out"] = {
        "examples": len(held),
        "new_macro_f1": new_score["macro_f1"],
        "old_macro_f1": old_score["macro_f1"] if old_score else None,
    }
    better = old_score is None or new_score["macro_f1"] > old_score["macro_f1"]
    version = store.save(candidate, install=better)
    if better:
        result = f"model v{version} installed: held-out macro-F1 {new_score['macro_f1']:.3f}"
        if old is not None and old_score is not None:
            result += f" against v{old.version}'s {old_score['macro_f1']:.3f}"
    else:
        assert old is not None and old_score is not None
        result = (
            f"model v{version} kept aside: held-out macro-F1 {new_score['macro_f1']:.3f}"
            f" is not better than v{old.version}'s {old_score['macro_f1']:.3f};"
            f" v{old.version} stays"
        )
    outcome.update(
        new_version=version, installed=better, held_out=candidate.report["held_out"], result=result
    )
    return outcome


class Retrainer:
    """One retrain at a time in this process, and what it is doing now."""

    def __init__(self, store: Store, rules_dir: Path, model_dir: Path) -> None:
        self.store = store
        self.rules_dir = Path(rules_dir)
        self.model_dir = Path(model_dir)
        self._lock = asyncio.Lock()
        self._queued = False  # started, not yet running
        self.started_at: float | None = None  # set while a retrain runs
        self.step = ""
        self.last: dict[str, Any] | None = None  # the last outcome, with when and who

    @property
    def running(self) -> bool:
        return self._queued or self._lock.locked()

    @property
    def model_store(self) -> ModelStore:
        return ModelStore(self.model_dir)

    def start(self, spawn: Callable[[Any, str], Any], **kw: Any) -> bool:
        """Run a retrain in the background (``spawn(coroutine, name)``) unless one is
        already under way; False then."""
        if self.running:
            return False
        self._queued = True
        spawn(self.run(**kw), "classifier-retrain")
        return True

    def status(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "started_at": self.started_at,
            "step": self.step if self.running else "",
            "last": self.last,
        }

    async def run(
        self,
        *,
        actor: str = "classifier",
        min_new: int = MIN_NEW_EXAMPLES,
        extra: Sequence[dict[str, Any]] = (),
        say: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        async with self._lock:
            self._queued = False
            self.started_at, self.step = time.time(), "reading corrections and confirmations"

            def step(text: str) -> None:
                self.step = text
                if say is not None:
                    say(text)

            try:
                stored = await self.store.read(training_examples)
                outcome = await asyncio.to_thread(
                    retrain_on,
                    stored,
                    self.rules_dir,
                    self.model_dir,
                    min_new=min_new,
                    extra=extra,
                    say=step,
                )
                if "new_version" in outcome:
                    detail = dict(outcome)
                    await self.store.write(
                        lambda db: add_audit(db, actor, "model_retrained", detail=detail)
                    )
                    log.info(
                        "classifier.retrained",
                        actor=actor,
                        **{k: v for k, v in outcome.items() if k != "result"},
                    )
            finally:
                started = self.started_at
                self.started_at, self.step = None, ""
            self.last = {**outcome, "at": time.time(), "started_at": started, "actor": actor}
            return outcome

    async def every(
        self, seconds: float, owns: Callable[[], Any], *, min_new: int = MIN_NEW_EXAMPLES
    ) -> None:
        """Retrain every ``seconds`` (the daemon's schedule) where ``owns()`` says this
        instance holds the schedule's lock; a failed run is logged and the next one
        comes as usual."""
        while True:
            await asyncio.sleep(seconds)
            if not await owns():
                continue
            try:
                outcome = await self.run(actor="schedule", min_new=min_new)
                log.info("classifier.scheduled_retrain", result=outcome["result"])
            except Exception:
                log.exception("classifier.scheduled_retrain_failed")
