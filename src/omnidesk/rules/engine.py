"""The compiled rule set and its evaluation.

Compiling does the work once: every keyword of every rule and of the classifier goes into
one Aho-Corasick automaton, and each rule is indexed under the facts it needs (a keyword
in a field, or a value of a field). Evaluating a message then costs one keyword pass per
field that some rule or the classifier reads, a few dictionary look-ups, and a full test
of only the rules that could match: the "candidates". Rules the index cannot narrow down
(a rule on ``category`` alone, a regex alone, ``not ...``, a time of day) are always
candidates; they are cheap, but a rule set made only of them grows linearly.

Rules run in their evaluation order: ``order`` (default 0), then file name, then position
in the file. Each rule that matches applies its actions on top of what earlier ones did
(category, priority, team and agent are replaced, tags accumulate); a rule with
``stop = true`` ends the evaluation after its actions.
"""

from __future__ import annotations

import copy
import dataclasses
import uuid
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog

from omnidesk.model import Category, Decision, Priority, RuleInput

from .actions import Actions
from .classifier import Classifier, ClassifierConfig
from .conditions import Matches, Node
from .context import Context
from .decide import Guess, decide, phrase_probabilities
from .fields import FIELDS, Field, contact_field
from .keywords import Keyword, KeywordMatcher
from .service import ServiceRules, SlaPolicy, TimedRule
from .timed import next_change
from .trained import TrainedModel

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    file: str
    line: int | None
    order: int
    condition: Node
    actions: Actions
    stop: bool = False
    description: str | None = None

    @property
    def where(self) -> str:
        return self.file if self.line is None else f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class Example:
    """An ``[[example]]``: a message and what the rules should decide for it."""

    file: str
    line: int | None
    name: str | None
    input: RuleInput
    expect: dict[str, Any]
    on: str = "message"  # "time": an example of the time-based rules

    @property
    def where(self) -> str:
        return self.file if self.line is None else f"{self.file}:{self.line}"

    @property
    def title(self) -> str:
        if self.name:
            return self.name
        text = " ".join((self.input.subject + " " + self.input.text).split())
        return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True, slots=True)
class Preview:
    """The part of an evaluation that reads only a message's subject and text (folding,
    the keyword pass, the classifier, regular expressions on the two), done ahead of
    :meth:`RuleSet.evaluate`: a pipeline does it before its write transaction, or in a
    parse process, so the database's write lock is held for less. Plain data, so it
    crosses processes. ``evaluate`` uses it only for the rule set it came from
    (``fingerprint``) and the same subject and text; otherwise it does the work itself."""

    fingerprint: str
    subject: str
    text: str
    folded: dict[str, list[str]]
    hit_ids: dict[str, frozenset[str]]  # the keywords found: all that rules look at
    # ``matches`` conditions on subject and text: (which pattern, the text matched) or
    # None, by the condition's key.
    matched: dict[str, tuple[int, str] | None]
    # The classifier's verdict, and its explanation already written out.
    category: Category
    confidence: float
    because: str
    decided_by: str = "phrases"
    features: tuple[tuple[str, float], ...] = ()

    def __reduce__(self) -> tuple[Any, ...]:
        # pickle restores a dataclass with slots (or an enum) through Python code,
        # which costs a few microseconds a message: a plain tuple instead.
        return (
            _unpack_preview,
            (
                self.fingerprint,
                self.subject,
                self.text,
                self.folded,
                self.hit_ids,
                self.matched,
                self.category.value,
                self.confidence,
                self.because,
                self.decided_by,
                self.features,
            ),
        )


_CATEGORY = {c.value: c for c in Category}
_PREVIEWED_FIELDS = frozenset({"subject", "text", "subject_or_text"})


def _unpack_preview(*packed: Any) -> Preview:
    fp, subject, text, folded, hit_ids, matched, category, confidence, because, by, top = packed
    return Preview(
        fp,
        subject,
        text,
        folded,
        hit_ids,
        matched,
        _CATEGORY[category],
        confidence,
        because,
        by,
        top,
    )


def _field_for(name: str) -> Field:
    return FIELDS[name] if name in FIELDS else contact_field(name.removeprefix("contact."))


class RuleSet:
    """Immutable after construction; ``evaluate`` may be called from any thread."""

    def __init__(
        self,
        rules: Iterable[Rule] = (),
        classifier: ClassifierConfig | None = None,
        *,
        files: Iterable[str] = (),
        examples: Iterable[Example] = (),
        fingerprint: str = "",
        index: bool = True,
        service: ServiceRules | None = None,
    ) -> None:
        """``index=False`` tests every rule for every message: the reference behaviour
        the index must reproduce (the tests compare the two)."""
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.classifier = Classifier(classifier or ClassifierConfig())
        self.files: list[str] = list(files)
        self.examples: tuple[Example, ...] = tuple(examples)
        # A rule set built in code has no files to digest: a token of its own, so that
        # a Preview made by another such set is never taken for one of its own.
        self.fingerprint = fingerprint or f"unsaved-{uuid.uuid4().hex}"
        self.model: TrainedModel | None = None  # see with_model
        # Calendars, SLA policies, time-based rules, the survey (rules/service.py).
        self.service = service or ServiceRules()
        acting = [r.actions for r in self.rules] + [r.actions for r in self.service.timed]
        acting += [a for p in self.service.policies for a in (p.on_warning, p.on_breach)]
        self.teams: set[str] = {a.team for a in acting if a.team}
        self.agents: set[str] = {a.agent for a in acting if a.agent}

        keywords: list[Keyword] = list(self.classifier.keywords())
        always: list[int] = []
        kw_index: dict[str, dict[str, list[int]]] = {}
        eq_index: dict[str, dict[Hashable, list[int]]] = {}
        # What preview can search ahead: regular expressions on subject and text.
        self._previewed: dict[str, Matches] = {}
        for i, rule in enumerate(self.rules):
            for node in rule.condition.walk():
                keywords.extend(node.keywords())
                if isinstance(node, Matches) and node.field.name in _PREVIEWED_FIELDS:
                    self._previewed[node.key] = node
            triggers = rule.condition.triggers() if index else None
            if triggers is None:
                always.append(i)
                continue
            for kind, field, key in triggers:
                if kind == "kw":
                    kw_index.setdefault(field, {}).setdefault(str(key), []).append(i)
                else:
                    eq_index.setdefault(field, {}).setdefault(key, []).append(i)
        self._matcher = KeywordMatcher(keywords)
        self._always = frozenset(always)
        self._kw_index = [
            (_field_for(f), {k: tuple(v) for k, v in t.items()}) for f, t in kw_index.items()
        ]
        self._eq_index = [
            (_field_for(f), {k: tuple(v) for k, v in t.items()}) for f, t in eq_index.items()
        ]

    def __len__(self) -> int:
        return len(self.rules)

    def with_model(self, model: TrainedModel | None, *, threshold: float | None = None) -> RuleSet:
        """The same compiled rules deciding with ``model`` (None: phrases only). The
        fingerprint names the model's version, so a preview made with another model
        is not taken for this one's. ``threshold`` replaces the rules'
        ``model_threshold`` (0: the model always decides; for measuring)."""
        if model is self.model and threshold is None:
            return self
        out = copy.copy(self)
        out.model = model
        if threshold is not None:
            out.classifier = Classifier(
                dataclasses.replace(self.classifier.config, model_threshold=threshold)
            )
        base = self.fingerprint.split("+model-", 1)[0]
        out.fingerprint = base if model is None else f"{base}+model-{model.version}"
        return out

    def guess(self, ctx: Context) -> Guess:
        """The classifier's verdict (phrases, trained model, or both: ``decide.py``)."""
        phrases = self.classifier.classify(ctx)
        return decide(phrases, self.model, self.classifier.config, ctx.inp.subject, ctx.inp.text)

    def phrase_verdict(self, subject: str, text: str) -> tuple[Category, dict[Category, float]]:
        """What the phrases alone say of a message: their category and probabilities
        (what training compares the model with, ``trained.train(phrases=...)``)."""
        inp = RuleInput(channel="", channel_type="", sender="", subject=subject, text=text)
        c = self.classifier.classify(Context(inp, self._matcher))
        return c.category, phrase_probabilities(c)

    def _candidates(self, ctx: Context) -> list[int]:
        found = set(self._always)
        for field, kw_table in self._kw_index:
            for kw in ctx.hit_ids(field.name, field.getter):
                rules = kw_table.get(kw)
                if rules:
                    found.update(rules)
        for field, eq_table in self._eq_index:
            for key in field.keys(ctx):
                rules = eq_table.get(key)
                if rules:
                    found.update(rules)
        return sorted(found)

    def preview(self, subject: str, text: str) -> Preview:
        """What :meth:`evaluate` would work out from ``subject`` and ``text`` alone."""
        inp = RuleInput(channel="", channel_type="", sender="", subject=subject, text=text)
        ctx = Context(inp, self._matcher)
        guess = self.guess(ctx)
        for name in ("subject", "text"):  # what rules on these fields look up
            ctx.hit_ids(name, FIELDS[name].getter)
        for m in self._previewed.values():
            m.test(ctx)
        folded, hit_ids, matched = ctx.scans()
        return Preview(
            self.fingerprint,
            subject,
            text,
            folded,
            hit_ids,
            matched,
            guess.category,
            guess.confidence,
            guess.because,
            guess.decided_by,
            tuple(guess.features),
        )

    def evaluate(self, inp: RuleInput, preview: Preview | None = None) -> Decision:
        """``preview``: from :meth:`preview`, ignored unless it is this rule set's for
        this subject and text."""
        ctx = Context(inp, self._matcher)
        if (
            preview is not None
            and preview.fingerprint == self.fingerprint
            and preview.text == inp.text
            and preview.subject == inp.subject
        ):
            ctx.seed(preview.folded, preview.hit_ids, preview.matched)
            ctx.category, ctx.confidence = preview.category, preview.confidence
            because = preview.because
            decided_by, features = preview.decided_by, list(preview.features)
        else:
            guess = self.guess(ctx)
            ctx.category, ctx.confidence = guess.category, guess.confidence
            because = guess.because
            decided_by, features = guess.decided_by, guess.features
        set_by = "classifier"
        priority = Priority.NORMAL
        team: str | None = None
        agent: str | None = None
        fired: list[str] = []
        explanation = [because]
        for i in self._candidates(ctx):
            rule = self.rules[i]
            try:
                if not rule.condition.test(ctx):
                    continue
                because = "; ".join(rule.condition.explain(ctx))
            except Exception:  # a rule must never take the pipeline down with it
                log.exception("rules.rule_failed", rule=rule.name, where=rule.where)
                continue
            a = rule.actions
            fired.append(rule.name)
            if a.category is not None:
                ctx.category = a.category
                ctx.confidence = 1.0 if a.confidence is None else a.confidence
                set_by = rule.name
                decided_by = "rule"
            priority = a.priority or priority
            team = a.team or team
            agent = a.agent or agent
            if a.tags or a.remove_tags:
                ctx.tags = _merge_tags(ctx.tags, a.tags, a.remove_tags)
            line = f"rule '{rule.name}' set {a.describe()} ({because})"
            if rule.stop:
                line += "; stopped further rules"
            explanation.append(line)
            if rule.stop:
                break
        return Decision(
            category=ctx.category,
            confidence=ctx.confidence,
            priority=priority,
            team=team,
            assignee=agent,
            tags=ctx.tags,
            rule=set_by,
            rules_fired=fired,
            explanation=explanation,
            decided_by=decided_by,
            features=features if decided_by != "rule" else [],
        )

    # -- conversations (time-based rules, SLA policies) ------------------------
    def conversation_context(self, inp: RuleInput, category: str | None) -> Context:
        """An evaluation context for a conversation's facts (``inp.conversation``)."""
        ctx = Context(inp, self._matcher)
        ctx.category = _CATEGORY.get(category or "", Category.INQUIRY)
        ctx.confidence = 1.0
        return ctx

    def sla_policy(self, ctx: Context) -> SlaPolicy | None:
        """The first ``[[sla]]`` policy whose condition holds, if any."""
        for policy in self.service.policies:
            try:
                if policy.condition.test(ctx):
                    return policy
            except Exception:  # a broken condition must not stop the scheduler
                log.exception("rules.sla_policy_failed", policy=policy.name)
        return None

    def timed_matches(
        self, ctx: Context, rules: tuple[TimedRule, ...] | None = None
    ) -> tuple[list[tuple[TimedRule, str]], float | None]:
        """The time-based rules whose condition holds now (with why), and the
        earliest moment any of them may turn (None: only a change of the
        conversation can turn them)."""
        hits: list[tuple[TimedRule, str]] = []
        turn: float | None = None
        for rule in self.service.timed if rules is None else rules:
            try:
                if rule.condition.test(ctx):
                    hits.append((rule, "; ".join(rule.condition.explain(ctx))))
                t = next_change(rule.condition, ctx)
            except Exception:
                log.exception("rules.timed_rule_failed", rule=rule.name, where=rule.where)
                continue
            if t is not None and (turn is None or t < turn):
                turn = t
        return hits, turn

    def describe(self) -> list[str]:
        """The rules in evaluation order, one line each (for ``omnidesk rules list``)."""
        lines = []
        for n, r in enumerate(self.rules, 1):
            stop = " [stop]" if r.stop else ""
            lines.append(
                f"{n:3d}. {r.name} ({r.where}, order {r.order}): "
                f"when {r.condition.describe()} then {r.actions.describe()}{stop}"
            )
        return lines


def _merge_tags(tags: list[str], add: Iterable[str], remove: Iterable[str]) -> list[str]:
    gone = {t.casefold() for t in remove}
    out = [t for t in tags if t.casefold() not in gone]
    have = {t.casefold() for t in out}
    for t in add:
        if t.casefold() not in have:
            out.append(t)
            have.add(t.casefold())
    return out
