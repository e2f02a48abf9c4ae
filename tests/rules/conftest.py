"""Helpers for the rules tests: write rule files into a temporary directory, build
inputs, and find the shipped rules."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from omnidesk.model import Decision, RuleInput
from omnidesk.rules import RuleSet, load_rules

REPO = Path(__file__).resolve().parents[2]
SHIPPED_RULES = REPO / "rules"

# A Tuesday, inside the shipped business hours.
TUESDAY_NOON = datetime(2024, 5, 7, 12, 0, tzinfo=UTC)

# A classifier small enough to reason about in tests.
TINY_CLASSIFIER = """
[classifier]
negators = ["not", "不"]

[[classifier.phrases]]
category = "complaint"
weight = 3
phrases = ["refund", "broken", "退款"]

[[classifier.phrases]]
category = "feedback"
weight = 2
negated = "complaint"
phrases = ["happy", "满意"]
"""


def inp(text: str = "", **kw: Any) -> RuleInput:
    kw.setdefault("channel", "mail")
    kw.setdefault("channel_type", "email")
    kw.setdefault("sender", "alice@example.com")
    kw.setdefault("received_at", TUESDAY_NOON)
    kw.setdefault("language", "en")
    return RuleInput(text=text, **kw)


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        (directory / name).write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    return directory


@pytest.fixture
def rules_dir(tmp_path: Path) -> Callable[..., Path]:
    """rules_dir({"50-x.toml": "..."}) -> a directory holding those files."""

    def make(files: dict[str, str], classifier: bool = True) -> Path:
        if classifier:
            files = {"00-classifier.toml": TINY_CLASSIFIER, **files}
        return write(tmp_path / "rules", files)

    return make


@pytest.fixture
def decide(rules_dir: Callable[..., Path]) -> Callable[..., Decision]:
    """decide(rules_toml, text, **input fields): load one rule file and evaluate."""

    def run(rules: str, text: str = "", **kw: Any) -> Decision:
        return load_rules(rules_dir({"50-test.toml": rules})).evaluate(inp(text, **kw))

    return run


@pytest.fixture(scope="session")
def shipped() -> RuleSet:
    return load_rules(SHIPPED_RULES)
