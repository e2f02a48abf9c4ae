"""``omnidesk rules check``: validate a rules directory and run its examples."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omnidesk.model import Decision

from . import timed
from .conditions import Equals
from .engine import Example, RuleSet
from .loader import load_rules
from .problems import Problem, RulesError, did_you_mean


@dataclass(slots=True)
class ExampleFailure:
    example: Example
    expected: dict[str, Any]
    got: dict[str, Any]
    explanation: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        want = ", ".join(f"{k}={_show(v)}" for k, v in self.expected.items())
        got = ", ".join(f"{k}={_show(v)}" for k, v in self.got.items())
        return f"{self.example.where}: example {self.example.title!r}: expected {want}, got {got}"


def _show(value: Any) -> str:
    if value is None or value == "":
        return "(none)"
    if isinstance(value, list):
        return "[" + ", ".join(value) + "]"
    return str(value)


def _actual(decision: Decision, key: str) -> Any:
    return {
        "category": str(decision.category),
        "priority": str(decision.priority),
        "team": decision.team,
        "agent": decision.assignee,
        "tags": list(decision.tags),
        "rule": decision.rule,
    }[key]


def _timed_outcome(ruleset: RuleSet, example: Example) -> tuple[dict[str, Any], list[str]]:
    """What the time-based rules do to an example's conversation at its clock:
    the rules that fire, and the conversation after their actions (in order)."""
    facts = example.input.conversation
    calendar = ruleset.service.calendar_for(facts.get("team"))
    inp = dataclasses.replace(example.input, conversation={**facts, timed.CALENDAR: calendar})
    ctx = ruleset.conversation_context(inp, facts.get("category"))
    hits, _ = ruleset.timed_matches(ctx)
    out: dict[str, Any] = {
        "fired": [r.name for r, _ in hits],
        "status": facts.get("status"),
        "priority": facts.get("priority"),
        "team": facts.get("team"),
        "agent": facts.get("assignee"),
        "tags": sorted(example.input.tags),
    }
    why = []
    for rule, because in hits:
        a = rule.actions
        out["status"] = a.status or out["status"]
        out["priority"] = str(a.priority) if a.priority else out["priority"]
        out["team"] = a.team or out["team"]
        out["agent"] = a.agent or out["agent"]
        gone = {t.casefold() for t in a.remove_tags}
        tags = [t for t in out["tags"] if t.casefold() not in gone]
        out["tags"] = tags + [t for t in a.tags if t.casefold() not in {x.casefold() for x in tags}]
        why.append(f"rule '{rule.name}' fires: {a.describe()} ({because})")
    return out, why or ["no time-based rule fires"]


def _matches(key: str, expected: Any, actual: Any) -> bool:
    if key == "fired":  # exactly these rules fire
        return sorted(expected) == sorted(actual)
    if key == "tags":  # the listed tags must be there; others may be too
        have = {t.casefold() for t in actual}
        return all(t.casefold() in have for t in expected)
    if expected == "":
        return actual is None
    return bool(expected == actual)


def run_examples(ruleset: RuleSet) -> list[ExampleFailure]:
    failures = []
    for example in ruleset.examples:
        if example.on == "time":
            outcome, why = _timed_outcome(ruleset, example)
            wrong = {k: v for k, v in example.expect.items() if not _matches(k, v, outcome[k])}
            if wrong:
                failures.append(ExampleFailure(example, wrong, {k: outcome[k] for k in wrong}, why))
            continue
        decision = ruleset.evaluate(example.input)
        wrong = {
            k: v for k, v in example.expect.items() if not _matches(k, v, _actual(decision, k))
        }
        if wrong:
            failures.append(
                ExampleFailure(
                    example,
                    wrong,
                    {k: _actual(decision, k) for k in wrong},
                    list(decision.explanation),
                )
            )
    return failures


@dataclass(frozen=True, slots=True)
class Defined:
    """The teams, agents (team members) and channels a configuration defines,
    for checking the names rules use; ``where`` names the config file."""

    where: str
    teams: frozenset[str]
    agents: frozenset[str]
    channels: frozenset[str]


def undefined_names(ruleset: RuleSet, defined: Defined) -> list[Problem]:
    """Teams, agents and channels that rules name but the config does not
    define: a conversation routed to such a team waits in a queue nobody
    sees, a rule on such a channel never fires. Usually a typo."""
    found: list[Problem] = []
    seen: set[tuple[str, str]] = set()

    def check(rule: Any, kind: str, name: str, known: frozenset[str], table: str) -> None:
        if name in known or (rule.where, f"{kind}:{name}") in seen:
            return
        seen.add((rule.where, f"{kind}:{name}"))
        hint = did_you_mean(name, known)
        found.append(
            Problem(
                rule.file,
                rule.line,
                f"rule {rule.name!r}: {kind} {name!r} is not defined in {defined.where}"
                f" ({table}){hint}",
            )
        )

    for rule in ruleset.rules:
        if rule.actions.team:
            check(rule, "team", rule.actions.team, defined.teams, "[[teams]]")
        if rule.actions.agent:
            check(rule, "agent", rule.actions.agent, defined.agents, "no team lists it as a member")
        for node in rule.condition.walk():
            if isinstance(node, Equals) and node.field.name == "channel":
                for value in node.shown:
                    check(rule, "channel", str(value), defined.channels, "[[channels]]")
    return found


@dataclass(slots=True)
class CheckReport:
    directory: str
    problems: list[Problem] = field(default_factory=list)
    failures: list[ExampleFailure] = field(default_factory=list)
    examples_run: int = 0
    rules: int = 0
    files: list[str] = field(default_factory=list)
    # Names the rules use that the config does not define (``undefined_names``);
    # they fail the check only when ``strict``.
    warnings: list[Problem] = field(default_factory=list)
    strict: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems and not self.failures and not (self.strict and self.warnings)

    def format(self) -> str:
        lines: list[str] = []
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s) in {self.directory}:")
            lines.extend(f"  {p}" for p in self.problems)
            lines.append("The rules were not loaded; a running daemon keeps its previous rules.")
            return "\n".join(lines)
        for f in self.failures:
            lines.append(f"FAIL {f}")
            lines.extend(f"     {why}" for why in f.explanation)
        label = "ERROR" if self.strict else "WARN"
        lines.extend(f"{label} {w}" for w in self.warnings)
        passed = self.examples_run - len(self.failures)
        names = f"; {len(self.warnings)} undefined name(s)" if self.warnings else ""
        lines.append(
            f"{len(self.files)} file(s), {self.rules} rule(s); "
            f"{self.examples_run} example(s) run: {passed} passed, {len(self.failures)} failed"
            + names
        )
        lines.append("OK" if self.ok else "FAILED")
        return "\n".join(lines)


def check_rules(
    directory: str | Path, defined: Defined | None = None, *, strict: bool = False
) -> CheckReport:
    """Validate every file and run every example; with ``defined``, also report
    the names rules use that the config does not define (errors when
    ``strict``). Never raises for bad rules: the report says what is wrong."""
    report = CheckReport(str(directory), strict=strict)
    try:
        ruleset = load_rules(directory)
    except RulesError as e:
        report.problems = e.problems
        return report
    report.rules = len(ruleset)
    report.files = list(ruleset.files)
    report.failures = run_examples(ruleset)
    report.examples_run = len(ruleset.examples)
    if defined is not None:
        report.warnings = undefined_names(ruleset, defined)
    return report
