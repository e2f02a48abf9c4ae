"""The trigger index is an optimisation only: with it, every message gets exactly the
decision it gets when every rule is tested one by one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomlkit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnidesk.rules import RuleSet, load_rules

from .conftest import TINY_CLASSIFIER, inp, write

WORDS = ["alpha", "beta", "gamma", "delta", "refund", "退款", "满意", "happy"]
TAGS = ["red", "blue"]

leaf = st.one_of(
    st.builds(
        lambda w: {"text": {"contains": w}},
        st.lists(st.sampled_from(WORDS), min_size=1, max_size=3),
    ),
    st.builds(
        lambda w: {"subject_or_text": {"contains": w}},
        st.lists(st.sampled_from(WORDS), min_size=1, max_size=2),
    ),
    st.builds(lambda w: {"subject": {"contains": w}}, st.sampled_from(WORDS)),
    st.builds(lambda c: {"channel": c}, st.sampled_from(["mail", "chat"])),
    st.builds(
        lambda t: {"contact": {"tier": {"in": t}}},
        st.lists(st.sampled_from(["gold", "silver"]), min_size=1),
    ),
    st.builds(lambda c: {"category": c}, st.sampled_from(["inquiry", "feedback", "complaint"])),
    st.builds(lambda t: {"tags": {"contains": t}}, st.sampled_from(TAGS)),
    st.builds(lambda lang: {"language": lang}, st.sampled_from(["en", "zh"])),
    st.builds(lambda p: {"text": {"matches": p}}, st.sampled_from(["al.ha", "^beta", "\\d+"])),
)
condition = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.builds(lambda xs: {"all": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"any": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, inner),
    ),
    max_leaves=5,
)
actions = st.fixed_dictionaries(
    {},
    optional={
        "team": st.sampled_from(["t1", "t2"]),
        "tags": st.lists(st.sampled_from(TAGS), min_size=1, max_size=2),
        "category": st.sampled_from(["inquiry", "feedback", "complaint"]),
        "priority": st.sampled_from(["low", "high"]),
    },
).filter(bool)
rule = st.fixed_dictionaries(
    {"when": condition, "then": actions},
    optional={"stop": st.booleans(), "order": st.integers(-2, 2)},
)
message = st.fixed_dictionaries(
    {
        "text": st.lists(st.sampled_from([*WORDS, "x", "42", "?"]), max_size=6).map(" ".join),
        "subject": st.lists(st.sampled_from(WORDS), max_size=2).map(" ".join),
        "channel": st.sampled_from(["mail", "chat"]),
        "contact": st.sampled_from([{}, {"tier": "gold"}, {"tier": "silver"}]),
        "tags": st.sets(st.sampled_from(TAGS)).map(frozenset),
        "language": st.sampled_from(["en", "zh"]),
    }
)


def load(tmp: Path, rules: list[dict[str, Any]]) -> RuleSet:
    doc = {"rule": [{"name": f"r{i}", **r} for i, r in enumerate(rules)]}
    d = write(tmp, {"00-classifier.toml": TINY_CLASSIFIER, "50-gen.toml": tomlkit.dumps(doc)})
    return load_rules(d)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rules=st.lists(rule, min_size=1, max_size=8), messages=st.lists(message, min_size=1, max_size=5)
)
def test_indexed_evaluation_equals_testing_every_rule(
    tmp_path_factory: Any, rules: list[dict[str, Any]], messages: list[dict[str, Any]]
) -> None:
    indexed = load(tmp_path_factory.mktemp("rules"), rules)
    plain = RuleSet(indexed.rules, indexed.classifier.config, index=False)
    for m in messages:
        assert indexed.evaluate(inp(**m)).to_dict() == plain.evaluate(inp(**m)).to_dict()


def test_index_skips_rules_whose_keywords_are_absent(tmp_path: Path) -> None:
    rules = [
        {"when": {"text": {"contains": [f"word{i}"]}}, "then": {"tags": [f"t{i}"]}}
        for i in range(50)
    ]
    rs = load(tmp_path, rules)
    from omnidesk.rules.context import Context

    ctx = Context(inp("about word7 and word42"), rs._matcher)
    assert rs._candidates(ctx) == [7, 42]
    assert rs.evaluate(inp("about word7 and word42")).tags == ["t7", "t42"]
