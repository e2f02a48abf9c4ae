"""How the cost of evaluating rules grows with the number of rules.

Synthetic rule sets of 10, 100 and 1,000 rules (keyword ``contains`` on the text, on
subject-or-text, combined with a channel or a contact attribute, ``any`` of two fields)
are compiled by the real loader and evaluated on the same messages. Each message holds
two of the rule set's keywords among ordinary words, so every size fires about the same
number of rules and only the rules that do *not* match grow in number.

The baseline, measured in the same run, is the obvious implementation: a Python loop
over the same rules testing each condition in turn (one precompiled word-boundary regex
per keyword). Both must agree on which rules fire.

Run: python bench/bench_rules.py  (about 20 s)
"""

from __future__ import annotations

import random
import re
import string
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomlkit
from benchrows import record

from omnidesk.model import RuleInput
from omnidesk.rules import RuleSet, load_rules

SIZES = (10, 100, 1000)
MESSAGES = 300
TARGET_RATIO = 2.0
FILLER = (
    "hello my order the delivery was not what i expected please could you check "
    "thanks for the help yesterday and today we tried again but nothing changed "
    "account login password app website phone email store card parcel"
).split()

rng = random.Random(20240507)


def word() -> str:
    if rng.random() < 0.15:  # some Chinese keywords: matched inside text without spaces
        return "".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(2))
    return "".join(rng.choices(string.ascii_lowercase, k=rng.randint(5, 9)))


def make_rules(n: int) -> list[dict[str, Any]]:
    rules = []
    for i in range(n):
        kws = [word() for _ in range(3)]
        kind = i % 10
        if kind < 7:
            when: dict[str, Any] = {"text": {"contains": kws}}
        elif kind == 7:
            when = {"all": [{"channel": "mail"}, {"subject_or_text": {"contains": kws}}]}
        elif kind == 8:
            when = {"contact": {"tier": {"in": ["gold", "silver"]}}, "text": {"contains": kws}}
        else:
            when = {"any": [{"text": {"contains": kws[:2]}}, {"subject": {"contains": kws[2:]}}]}
        rules.append({"name": f"r{i}", "when": when, "then": {"tags": [f"t{i}"]}})
    return rules


def keywords_of(cond: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for key, value in cond.items():
        if key in ("all", "any"):
            for c in value:
                found += keywords_of(c)
        elif isinstance(value, dict) and "contains" in value:
            found += value["contains"]
    return found


def make_messages(rules: list[dict[str, Any]]) -> list[RuleInput]:
    pool = [k for r in rules for k in keywords_of(r["when"])]
    messages = []
    for _ in range(MESSAGES):
        words = rng.choices(FILLER, k=rng.randint(8, 30))
        for kw in rng.sample(pool, 2):
            words.insert(rng.randrange(len(words) + 1), kw)
        messages.append(
            RuleInput(
                channel=rng.choice(["mail", "chat"]),
                channel_type="email",
                sender="someone@example.com",
                subject=" ".join(rng.choices(FILLER, k=4)),
                text=" ".join(words),
                language="en",  # detection is measured elsewhere; keep it out of this
                contact={"tier": rng.choice(["gold", "bronze"])},
            )
        )
    return messages


# ------------------------------------------------------------------ the naive baseline


def naive_condition(cond: dict[str, Any]) -> Callable[[RuleInput], bool]:
    tests: list[Callable[[RuleInput], bool]] = []
    for key, value in cond.items():
        if key in ("all", "any"):
            parts = [naive_condition(c) for c in value]
            combine = all if key == "all" else any
            tests.append(lambda m, parts=parts, combine=combine: combine(p(m) for p in parts))
        elif key == "channel":
            tests.append(lambda m, v=value: m.channel.lower() == v)
        elif key == "contact":
            allowed = value["tier"]["in"]
            tests.append(lambda m, allowed=allowed: str(m.contact.get("tier", "")) in allowed)
        else:  # text / subject / subject_or_text contains
            patterns = [
                re.compile(re.escape(k) if not k.isascii() else rf"\b{re.escape(k)}\b", re.I)
                for k in value["contains"]
            ]
            if key == "text":
                get: Callable[[RuleInput], list[str]] = lambda m: [m.text]  # noqa: E731
            elif key == "subject":
                get = lambda m: [m.subject]  # noqa: E731
            else:
                get = lambda m: [m.subject, m.text]  # noqa: E731
            tests.append(
                lambda m, get=get, patterns=patterns: any(
                    p.search(s) for s in get(m) for p in patterns
                )
            )
    return lambda m: all(t(m) for t in tests)


def naive_evaluate(rules: list[tuple[str, Callable[[RuleInput], bool]]], m: RuleInput) -> list[str]:
    return [name for name, test in rules if test(m)]


# ------------------------------------------------------------------------- measuring


def per_message(fn: Callable[[RuleInput], object], messages: list[RuleInput]) -> float:
    """Best of three timed passes, in seconds per message."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for m in messages:
            fn(m)
        best = min(best, (time.perf_counter() - start) / len(messages))
    return best


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in SIZES:
            rules = make_rules(n)
            messages = make_messages(rules)
            directory = Path(tmp) / str(n)
            directory.mkdir()
            (directory / "50-bench.toml").write_text(tomlkit.dumps({"rule": rules}), "utf-8")
            start = time.perf_counter()
            ruleset: RuleSet = load_rules(directory)
            compile_s = time.perf_counter() - start
            naive = [(r["name"], naive_condition(r["when"])) for r in rules]
            for m in messages:  # same answers, or the comparison means nothing
                assert ruleset.evaluate(m).rules_fired == naive_evaluate(naive, m)
            fast = per_message(ruleset.evaluate, messages)
            slow = per_message(lambda m, naive=naive: naive_evaluate(naive, m), messages)
            fired = sum(len(ruleset.evaluate(m).rules_fired) for m in messages) / len(messages)
            rows.append((n, compile_s, fast, slow, fired))

    print(f"{MESSAGES} messages per size, best of 3 passes; rules fired per message shown\n")
    print(
        f"{'rules':>6} {'compile':>9} {'compiled':>13} {'µs/msg':>8} "
        f"{'naive loop':>13} {'µs/msg':>8} {'speed-up':>9} {'fired':>6}"
    )
    for n, compile_s, fast, slow, fired in rows:
        print(
            f"{n:>6} {compile_s * 1000:>7.0f}ms {1 / fast:>9,.0f} m/s {fast * 1e6:>8.1f} "
            f"{1 / slow:>9,.0f} m/s {slow * 1e6:>8.1f} {slow / fast:>8.1f}x {fired:>6.1f}"
        )
    first, last = rows[0], rows[-1]
    for n, _, fast, slow, _ in rows:
        record(
            "rules",
            f"{n:,} compiled rules, per message",
            fast * 1e6,
            "µs/msg",
            baseline=f"the same {n:,} rules as a plain loop",
            baseline_value=slow * 1e6,
            ratio=slow / fast,
            ratio_means="speed-up over the plain loop",
        )
    ratio = last[2] / first[2]
    naive_ratio = last[3] / first[3]
    verdict = "within" if ratio <= TARGET_RATIO else "OVER"
    record(
        "rules",
        f"cost of {last[0]:,} rules vs {first[0]} rules",
        last[2] * 1e6,
        "µs/msg",
        baseline=f"{first[0]} rules",
        baseline_value=first[2] * 1e6,
        ratio=ratio,
        ratio_means=f"cost ratio, target at most {TARGET_RATIO:g}x",
    )
    print(
        f"\ncost of {last[0]:,} rules / cost of {first[0]} rules: compiled {ratio:.2f}x "
        f"({verdict} the {TARGET_RATIO:g}x target), naive loop {naive_ratio:.0f}x"
    )


if __name__ == "__main__":
    main()
