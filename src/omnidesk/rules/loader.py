"""Reading and validating the ``*.toml`` files of a rules directory.

Files are read in name order (``00-classifier.toml`` before ``50-routing.toml``). Every
problem found in any file is collected, with file and line, before anything is compiled:
a directory with one mistake yields one :class:`RulesError` that lists all of them, and
no :class:`RuleSet` at all (so a bad edit can never half-apply).
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from omnidesk.model import Category, Priority, RuleInput

from . import timed
from .actions import Actions, parse_actions
from .classifier import ClassifierConfig, Phrase
from .conditions import Always, BusinessHours
from .engine import Example, Rule, RuleSet
from .keywords import Keyword, parse_keyword
from .problems import Problem, RulesError, describe, did_you_mean
from .schema import ParseEnv, Report, parse_clock, parse_condition, parse_weekday
from .service import ServiceParser, TimedRule, calendar_from_settings, parse_duration
from .source import FileDoc, Locator

TOP_KEYS = ("settings", "classifier", "rule", "example", "calendar", "teams", "sla", "survey")
SETTINGS_KEYS = ("timezone", "business_hours")
HOURS_KEYS = ("days", "from", "to")
RULE_KEYS = ("name", "description", "order", "enabled", "timezone", "when", "then", "stop", "on")
CLASSIFIER_KEYS = (
    "default",
    "chinese_statement",
    "min_score",
    "negation_window",
    "negators",
    "contrast",
    "contrast_weight",
    "model_threshold",
    "model_weight",
    "phrases",
)
PHRASE_KEYS = ("category", "weight", "phrases", "negated")
EXAMPLE_TEXT_KEYS = (
    "name",
    "text",
    "subject",
    "channel",
    "channel_type",
    "sender",
    "sender_name",
    "language",
)


def flat_contact(contact: Any, prefix: str = "") -> dict[str, Any]:
    """An example's contact as rules see a stored one: nested tables
    (``company = { plan = "enterprise" }``, ``orders = { open = 1 }``) as
    dotted names (``company.plan``, ``orders.open``)."""
    out: dict[str, Any] = {}
    if not isinstance(contact, dict):
        return out
    for k, v in contact.items():
        if isinstance(v, dict):
            out.update(flat_contact(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


EXAMPLE_KEYS = (*EXAMPLE_TEXT_KEYS, "contact", "tags", "received_at", "expect")
EXPECT_KEYS = ("category", "priority", "team", "agent", "tags", "rule")
# An example of time-based rules: a conversation's facts and a clock.
TIMED_EXAMPLE_KEYS = ("name", "on", "conversation", "contact", "at", "later", "expect")
TIMED_EXPECT_KEYS = ("fired", "status", "priority", "team", "agent", "tags")
# conversation = { ... } in such an example: facts, and the times (TOML date-times).
CONVERSATION_EXAMPLE_KEYS = {
    "status": "status",
    "priority": "priority",
    "category": "category",
    "channel": "channel",
    "team": "team",
    "assignee": "assignee",
    "tags": "tags",
    "rating": "rating",
    "loyalty": "loyalty",
    "created": timed.CREATED,
    "last_customer_message": timed.LAST_CUSTOMER,
    "last_agent_reply": timed.LAST_AGENT,
    "status_changed": timed.STATUS_CHANGED,
    "sla_due": timed.SLA_DUE,
}

_TOML_POS = re.compile(r"\s*\(at line (\d+), column \d+\)$")


@dataclass
class _Settings:
    timezone: tzinfo = UTC
    timezone_name: str = "UTC"
    business_hours: BusinessHours | None = None
    defined: dict[str, str] = field(default_factory=dict)  # setting -> file that set it


class _Loader:
    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.settings = _Settings()
        self.rules: list[tuple[tuple[int, int, int], Rule]] = []
        self.timed: list[tuple[tuple[int, int, int], TimedRule]] = []
        self.service = ServiceParser(self)
        self.rule_names: dict[str, str] = {}  # name -> where first defined
        self.examples: list[Example] = []
        self.classifier: dict[str, Any] = {}
        self.classifier_defined: dict[str, str] = {}
        self.negators: list[Keyword] = []
        self.contrast: list[Keyword] = []
        self.phrases: dict[str, tuple[Phrase, str]] = {}  # pattern -> (phrase, where)

    # -- reporting ------------------------------------------------------------------

    def reporter(self, doc: FileDoc, span: tuple[int, int] | None, prefix: str = "") -> Report:
        def report(reason: str, *needles: str) -> None:
            line = doc.locator.find(span, needles) if needles else None
            if line is None and span is not None:
                line = span[0]
            self.problems.append(Problem(doc.path, line, prefix + reason))

        return report

    def _unknown_keys(
        self, raw: dict[str, Any], known: tuple[str, ...], what: str, report: Report
    ) -> None:
        for key in raw:
            if key not in known:
                report(
                    f"unknown key '{key}' in {what}{did_you_mean(key, known)}; "
                    f"allowed: {', '.join(known)}",
                    f"{key} ",
                    f"{key}=",
                    key,
                )

    # -- files ----------------------------------------------------------------------

    def read(self, path: Path) -> FileDoc | None:
        name = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            self.problems.append(Problem(name, None, f"not UTF-8 text: {e}"))
            return None
        except OSError as e:
            self.problems.append(Problem(name, None, f"cannot read: {e.strerror or e}"))
            return None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            msg = str(e)
            m = _TOML_POS.search(msg)
            line = int(m.group(1)) if m else None
            if "end of document" in msg:
                line = max(1, len(text.splitlines()))
            reason = _TOML_POS.sub("", msg).replace(" (at end of document)", "")
            self.problems.append(Problem(name, line, f"TOML syntax error: {reason}"))
            return None
        return FileDoc(name, text, data, Locator(text))

    def top_level(self, doc: FileDoc) -> None:
        report = self.reporter(doc, None)
        for key, value in doc.data.items():
            if key not in TOP_KEYS:
                report(
                    f"unknown section '{key}'{did_you_mean(key, TOP_KEYS)}; "
                    f"a rules file holds: [settings], [classifier], [[rule]], [[example]],"
                    f" [[calendar]], [teams.NAME], [[sla]], [survey]",
                    f"[{key}",
                    f"{key} ",
                    key,
                )
            elif key in ("rule", "example", "calendar", "sla") and not isinstance(value, list):
                report(f"write [[{key}]] (two brackets) for each {key}", f"[{key}")
            elif key in ("settings", "classifier", "teams", "survey") and not isinstance(
                value, dict
            ):
                report(f"[{key}] must be a table", key)

    # -- settings -------------------------------------------------------------------

    def parse_settings(self, doc: FileDoc) -> None:
        raw = doc.data.get("settings")
        if not isinstance(raw, dict):
            return
        report = self.reporter(doc, doc.locator.span("settings"), "settings: ")
        self._unknown_keys(raw, SETTINGS_KEYS, "[settings]", report)
        for key in SETTINGS_KEYS:
            if key not in raw:
                continue
            if key in self.settings.defined:
                report(f"{key} is already set in {self.settings.defined[key]}", key)
                continue
            self.settings.defined[key] = doc.path
            if key == "timezone":
                tz = self.timezone(raw[key], report)
                if tz is not None:
                    self.settings.timezone, self.settings.timezone_name = tz, raw[key]
            else:
                self.settings.business_hours = self.business_hours(doc, raw[key])

    def timezone(self, value: Any, report: Report) -> tzinfo | None:
        if isinstance(value, str) and value.strip():
            try:
                return ZoneInfo(value.strip())
            except (ValueError, KeyError, OSError):
                pass
        report(
            f'unknown time zone {value!r} (use a name like "Europe/Berlin" or "UTC")', "timezone"
        )
        return None

    def business_hours(self, doc: FileDoc, raw: Any) -> BusinessHours | None:
        span = doc.locator.span("settings.business_hours") or doc.locator.span("settings")
        report = self.reporter(doc, span, "settings.business_hours: ")
        if not isinstance(raw, dict):
            report(
                'needs a table: { days = ["mon", ...], from = "09:00", to = "17:00" }',
                "business_hours",
            )
            return None
        self._unknown_keys(raw, HOURS_KEYS, "business_hours", report)
        days = (
            [parse_weekday(d) for d in raw.get("days", [])]
            if isinstance(raw.get("days"), list)
            else []
        )
        start, end = parse_clock(raw.get("from")), parse_clock(raw.get("to"))
        if not days or any(d is None for d in days):
            report(f'days needs day names like ["mon", "tue"], got {raw.get("days")!r}', "days")
            return None
        if start is None or end is None or start >= end:
            report('from and to need times like "09:00" and "17:30", from before to', "from")
            return None
        return BusinessHours(frozenset(d for d in days if d is not None), start, end)

    # -- rules ----------------------------------------------------------------------

    def parse_rules(self, doc: FileDoc, file_index: int) -> None:
        raws = doc.data.get("rule")
        if not isinstance(raws, list):
            return
        for position, raw in enumerate(raws):
            span = doc.locator.span("rule", position)
            if span is None and isinstance(raw, dict) and isinstance(raw.get("name"), str):
                line = doc.locator.find(None, (f'"{raw["name"]}"',))
                span = (line, line) if line else None
            self.parse_rule(doc, file_index, position, raw, span)

    def parse_rule(
        self,
        doc: FileDoc,
        file_index: int,
        position: int,
        raw: Any,
        span: tuple[int, int] | None,
    ) -> None:
        name = raw.get("name") if isinstance(raw, dict) else None
        label = f"rule '{name}': " if isinstance(name, str) and name else f"rule #{position + 1}: "
        report = self.reporter(doc, span, label)
        if not isinstance(raw, dict):
            report("must be a table")
            return
        count = len(self.problems)
        self._unknown_keys(raw, RULE_KEYS, "a rule", report)
        if not isinstance(name, str) or not name.strip():
            report('needs a name, e.g. name = "billing-to-finance"')
            name = f"#{position + 1}"
        elif name in self.rule_names:
            report(f"the name '{name}' is already used at {self.rule_names[name]}", "name")
        else:
            self.rule_names[name] = f"{doc.path}:{span[0]}" if span else doc.path
        order = raw.get("order", 0)
        if isinstance(order, bool) or not isinstance(order, int):
            report(f"order needs a whole number, got {describe(order)}", "order")
        for flag in ("enabled", "stop"):
            if flag in raw and not isinstance(raw[flag], bool):
                report(f"{flag} needs true or false, got {describe(raw[flag])}", flag)
        if "description" in raw and not isinstance(raw["description"], str):
            report("description needs text", "description")
        tz, tz_name = self.settings.timezone, self.settings.timezone_name
        if "timezone" in raw:
            found = self.timezone(raw["timezone"], report)
            if found is not None:
                tz, tz_name = found, str(raw["timezone"]).strip()
        on = raw.get("on", "message")
        if on not in ("message", "time"):
            report(f'on needs "message" (the default) or "time", got {on!r}', "on")
            return
        scope = "conversation" if on == "time" else "message"
        env = ParseEnv(report, tz, tz_name, self.settings.business_hours, scope)
        condition = parse_condition(raw["when"], env) if "when" in raw else Always()
        actions = parse_actions(raw["then"], report, scope=scope) if "then" in raw else None
        stop = raw.get("stop") is True
        if on == "time":
            if "stop" in raw:
                report("stop has no meaning in a time-based rule (each one fires on its own)")
            if "then" not in raw:
                report("does nothing: give it a [rule.then] table")
            if "when" not in raw:
                report(
                    "needs a [rule.when]: a time-based rule without one would fire on"
                    " every conversation"
                )
        elif "then" not in raw and not stop:
            report("does nothing: give it a [rule.then] table or stop = true")
        if len(self.problems) > count or condition is None:
            return
        if raw.get("enabled", True) is False:
            return  # validated, but not run
        if on == "time":
            self.timed.append(
                (
                    (order, file_index, position),
                    TimedRule(
                        name=name,
                        file=doc.path,
                        line=span[0] if span else None,
                        order=order,
                        condition=condition,
                        actions=actions or Actions(),
                        description=raw.get("description"),
                    ),
                )
            )
            return
        rule = Rule(
            name=name,
            file=doc.path,
            line=span[0] if span else None,
            order=order,
            condition=condition,
            actions=actions or Actions(),
            stop=stop,
            description=raw.get("description"),
        )
        self.rules.append(((order, file_index, position), rule))

    # -- classifier -----------------------------------------------------------------

    def parse_classifier(self, doc: FileDoc) -> None:
        raw = doc.data.get("classifier")
        if not isinstance(raw, dict):
            return
        report = self.reporter(doc, doc.locator.span("classifier"), "classifier: ")
        self._unknown_keys(raw, CLASSIFIER_KEYS, "[classifier]", report)
        for key in (
            "default",
            "chinese_statement",
            "min_score",
            "negation_window",
            "contrast_weight",
            "model_threshold",
            "model_weight",
        ):
            if key not in raw:
                continue
            if key in self.classifier_defined:
                report(f"{key} is already set in {self.classifier_defined[key]}", key)
                continue
            self.classifier_defined[key] = doc.path
            value = raw[key]
            if key in ("default", "chinese_statement"):
                if isinstance(value, str) and value in {c.value for c in Category}:
                    self.classifier[key] = Category(value)
                else:
                    report(f"unknown category {value!r} for {key}", key)
            elif key == "min_score":
                self.classifier[key] = self.min_score(value, report)
            elif key == "contrast_weight":
                if isinstance(value, int | float) and not isinstance(value, bool):
                    self.classifier[key] = float(value)
                else:
                    report(f"{key} needs a number, got {describe(value)}", key)
            elif key in ("model_threshold", "model_weight"):
                number = isinstance(value, int | float) and not isinstance(value, bool)
                if number and 0 <= value <= 1:
                    self.classifier[key] = float(value)
                else:
                    report(f"{key} needs a number from 0 to 1, got {describe(value)}", key)
            elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                self.classifier[key] = value
            else:
                report(f"negation_window needs a whole number >= 0, got {describe(value)}", key)
        for key, found in (("negators", self.negators), ("contrast", self.contrast)):
            if key not in raw:
                continue
            words = raw[key]
            if not isinstance(words, list) or not all(isinstance(n, str) for n in words):
                report(f"{key} needs a list of words", key)
                continue
            for n in words:
                try:
                    found.append(parse_keyword(n))
                except ValueError as e:
                    report(f"{key}: {e}", key)
        groups = raw.get("phrases", [])
        if not isinstance(groups, list):
            report("write [[classifier.phrases]] (two brackets) for each group", "phrases")
            return
        for i, group in enumerate(groups):
            span = doc.locator.span("classifier.phrases", i)
            self.parse_phrase_group(doc, group, span, i)

    def min_score(self, value: Any, report: Report) -> dict[Category, float]:
        """``min_score = 1.5`` (every category) or ``{ complaint = 1.5 }``."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            return dict.fromkeys(Category, float(value))
        result: dict[Category, float] = {}
        if not isinstance(value, dict):
            report(
                f"min_score needs a number or a table per category, got {describe(value)}",
                "min_score",
            )
            return result
        for cat, n in value.items():
            if cat not in {c.value for c in Category}:
                report(f"min_score: unknown category {cat!r}", "min_score")
            elif isinstance(n, bool) or not isinstance(n, int | float):
                report(f"min_score.{cat} needs a number, got {describe(n)}", "min_score")
            else:
                result[Category(cat)] = float(n)
        return result

    def parse_phrase_group(
        self, doc: FileDoc, group: Any, span: tuple[int, int] | None, index: int
    ) -> None:
        report = self.reporter(doc, span, f"classifier.phrases #{index + 1}: ")
        if not isinstance(group, dict):
            report("must be a table")
            return
        self._unknown_keys(group, PHRASE_KEYS, "[[classifier.phrases]]", report)
        cats = {c.value for c in Category}
        category = group.get("category")
        if category not in cats:
            report(f"category needs one of {', '.join(sorted(cats))}, got {category!r}", "category")
            return
        negated = group.get("negated")
        if negated is not None and negated not in cats:
            report(f"negated needs one of {', '.join(sorted(cats))}, got {negated!r}", "negated")
            return
        weight = group.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            report(f"weight needs a number, got {describe(weight)}", "weight")
            return
        phrases = group.get("phrases")
        if not isinstance(phrases, list) or not phrases:
            report("phrases needs a non-empty list of words or phrases", "phrases")
            return
        for p in phrases:
            if not isinstance(p, str):
                report(f"phrases: {describe(p)} is not text", "phrases")
                continue
            try:
                kw = parse_keyword(p)
            except ValueError as e:
                report(str(e), f'"{p}"')
                continue
            quoted = f'"{p}"'
            line = doc.locator.find(span, (quoted,)) or (span[0] if span else None)
            where = doc.path if line is None else f"{doc.path}:{line}"
            if kw.pattern in self.phrases:
                report(
                    f"phrase '{kw.pattern}' is already listed at {self.phrases[kw.pattern][1]}",
                    f'"{p}"',
                )
                continue
            phrase = Phrase(
                kw, Category(category), float(weight), Category(negated) if negated else None
            )
            self.phrases[kw.pattern] = (phrase, where)

    # -- examples -------------------------------------------------------------------

    def parse_examples(self, doc: FileDoc) -> None:
        raws = doc.data.get("example")
        if not isinstance(raws, list):
            return
        for i, raw in enumerate(raws):
            span = doc.locator.span("example", i)
            report = self.reporter(doc, span, f"example #{i + 1}: ")
            example = self.parse_example(doc, raw, span, report)
            if example is not None:
                self.examples.append(example)

    def parse_example(
        self, doc: FileDoc, raw: Any, span: tuple[int, int] | None, report: Report
    ) -> Example | None:
        if not isinstance(raw, dict):
            report("must be a table")
            return None
        if raw.get("on") == "time":
            return self.parse_timed_example(doc, raw, span, report)
        count = len(self.problems)
        self._unknown_keys(raw, EXAMPLE_KEYS, "an example", report)
        for key in EXAMPLE_TEXT_KEYS:
            if key in raw and not isinstance(raw[key], str):
                report(f"{key} needs text, got {describe(raw[key])}", key)
        if not raw.get("text") and not raw.get("subject"):
            report("needs text (or subject) to classify")
        contact = raw.get("contact", {})
        if not isinstance(contact, dict):
            report('contact needs a table like { tier = "gold" }', "contact")
        tags = raw.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            report("tags needs a list of tags", "tags")
        received = self.example_time(raw.get("received_at"), report)
        expect = raw.get("expect")
        if not isinstance(expect, dict) or not expect:
            report('needs expect = { category = "...", team = "...", ... }', "expect")
            return None
        self._unknown_keys(expect, EXPECT_KEYS, "expect", report)
        for key, enum in (("category", Category), ("priority", Priority)):
            if key in expect and expect[key] not in {e.value for e in enum}:
                report(f"expect.{key}: unknown {key} {expect[key]!r}", str(expect[key]))
        for key in ("team", "agent", "rule"):
            if key in expect and not isinstance(expect[key], str):
                report(f'expect.{key} needs text ("" for none)', key)
        if "tags" in expect and not (
            isinstance(expect["tags"], list) and all(isinstance(t, str) for t in expect["tags"])
        ):
            report("expect.tags needs a list of tags", "tags")
        if len(self.problems) > count or received is None:
            return None
        channel = str(raw.get("channel", "example"))
        inp = RuleInput(
            channel=channel,
            channel_type=str(raw.get("channel_type", channel)),
            sender=raw.get("sender", ""),
            sender_name=raw.get("sender_name"),
            subject=raw.get("subject", ""),
            text=raw.get("text", ""),
            language=raw.get("language"),
            contact=flat_contact(contact),
            received_at=received,
            tags=frozenset(tags),
        )
        return Example(doc.path, span[0] if span else None, raw.get("name"), inp, dict(expect))

    def parse_timed_example(
        self, doc: FileDoc, raw: dict[str, Any], span: tuple[int, int] | None, report: Report
    ) -> Example | None:
        """``on = "time"``: a conversation's facts, a clock (``at``, or ``later``
        than the latest time given), and what the time-based rules should do."""
        count = len(self.problems)
        self._unknown_keys(raw, TIMED_EXAMPLE_KEYS, "a time-based example", report)
        conv = raw.get("conversation", {})
        if not isinstance(conv, dict):
            report('conversation needs a table like { status = "pending", ... }', "conversation")
            return None
        facts: dict[str, Any] = {}
        times: list[float] = []
        for key, value in conv.items():
            target = CONVERSATION_EXAMPLE_KEYS.get(key)
            if target is None:
                known = tuple(CONVERSATION_EXAMPLE_KEYS)
                report(
                    f"conversation: unknown key '{key}'{did_you_mean(key, known)};"
                    f" allowed: {', '.join(known)}",
                    key,
                )
                continue
            if target.endswith("_at") or target == timed.SLA_DUE:
                when = self.example_time(value, report)
                if when is not None:
                    facts[target] = when.timestamp()
                    times.append(when.timestamp())
            else:
                facts[target] = value
        contact = raw.get("contact", {})
        if not isinstance(contact, dict):
            report('contact needs a table like { tier = "gold" }', "contact")
        if "at" in raw and "later" in raw:
            report("give either at or later, not both", "later")
        now: datetime | None
        if "later" in raw:
            secs = parse_duration(raw["later"], days=True)
            if secs is None or not times:
                report('later needs a duration like "3d" and the conversation\'s times', "later")
                now = None
            else:
                now = datetime.fromtimestamp(max(times) + secs, UTC)
        else:
            now = self.example_time(raw.get("at"), report)
        expect = raw.get("expect")
        if not isinstance(expect, dict) or not expect:
            report('needs expect = { fired = ["rule-name"], status = "..." }', "expect")
            return None
        self._unknown_keys(expect, TIMED_EXPECT_KEYS, "expect", report)
        if "fired" in expect and not (
            isinstance(expect["fired"], list) and all(isinstance(x, str) for x in expect["fired"])
        ):
            report("expect.fired needs a list of rule names ([] for none)", "fired")
        if len(self.problems) > count or now is None:
            return None
        inp = RuleInput(
            channel=str(facts.get("channel", "example")),
            channel_type=str(facts.get("channel", "example")),
            sender="",
            contact=flat_contact(contact),
            received_at=now,
            tags=frozenset(facts.get("tags", [])),
            conversation=facts,
        )
        return Example(
            doc.path, span[0] if span else None, raw.get("name"), inp, dict(expect), on="time"
        )

    def example_time(self, value: Any, report: Report) -> datetime | None:
        if value is None:
            return datetime.now(UTC)
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                report(f"received_at: not a date and time: {value!r}", "received_at")
                return None
        if isinstance(value, datetime):
            if value.tzinfo is None:  # a local time: in the configured time zone
                value = value.replace(tzinfo=self.settings.timezone)
            return value
        if isinstance(value, date | time):
            report("received_at needs a date and a time, e.g. 2024-05-04T22:30:00", "received_at")
        else:
            report(f"received_at needs a date and time, got {describe(value)}", "received_at")
        return None

    # -- result ---------------------------------------------------------------------

    def classifier_config(self) -> ClassifierConfig:
        return ClassifierConfig(
            default=self.classifier.get("default", Category.INQUIRY),
            chinese_statement=self.classifier.get("chinese_statement"),
            min_score=self.classifier.get("min_score", {}),
            negation_window=self.classifier.get("negation_window", 3),
            negators=tuple(self.negators),
            contrast=tuple(self.contrast),
            contrast_weight=self.classifier.get("contrast_weight", 1.0),
            model_threshold=self.classifier.get("model_threshold"),
            model_weight=self.classifier.get("model_weight"),
            phrases=tuple(p for p, _ in self.phrases.values()),
        )


def load_rules(directory: str | Path) -> RuleSet:
    """Load, validate and compile every ``*.toml`` file in ``directory``.

    Raises :class:`RulesError` listing every problem (file, line, reason).
    """
    root = Path(directory)
    if not root.is_dir():
        raise RulesError([Problem(str(root), None, "rules directory does not exist")])
    # Names starting with "." are editors' lock and swap files.
    paths = sorted(
        (p for p in root.glob("*.toml") if p.is_file() and not p.name.startswith(".")),
        key=lambda p: p.name,
    )
    if not paths:
        raise RulesError([Problem(str(root), None, "no *.toml rule files in the directory")])
    loader = _Loader()
    digest = hashlib.sha256()
    docs: list[FileDoc] = []
    for path in paths:
        doc = loader.read(path)
        digest.update(path.name.encode() + b"\0")
        if doc is not None:
            digest.update(doc.text.encode())
            docs.append(doc)
    for doc in docs:
        loader.top_level(doc)
        loader.parse_settings(doc)
        loader.service.parse_calendars(doc)
        loader.service.parse_teams(doc)
        loader.service.parse_survey(doc)
    settings = loader.settings

    def sla_env(report: Report) -> ParseEnv:
        return ParseEnv(
            report,
            settings.timezone,
            settings.timezone_name,
            settings.business_hours,
            scope="conversation",
        )

    for index, doc in enumerate(docs):
        loader.parse_classifier(doc)
        loader.parse_rules(doc, index)
        loader.service.parse_policies(doc, index, sla_env)
        loader.parse_examples(doc)
    service = loader.service.result(
        calendar_from_settings(settings.timezone, settings.timezone_name, settings.business_hours),
        loader.timed,
    )
    if loader.problems:
        raise RulesError(loader.problems)
    rules = [rule for _, rule in sorted(loader.rules, key=lambda item: item[0])]
    return RuleSet(
        rules,
        loader.classifier_config(),
        files=[str(p) for p in paths],
        examples=loader.examples,
        fingerprint=digest.hexdigest(),
        service=service,
    )


def fingerprint(directory: str | Path) -> str:
    """What :func:`load_rules` would record as ``RuleSet.fingerprint``, without parsing:
    lets a watcher tell whether the files changed since the rules were loaded."""
    digest = hashlib.sha256()
    root = Path(directory)
    for path in sorted(
        (p for p in root.glob("*.toml") if p.is_file() and not p.name.startswith(".")),
        key=lambda p: p.name,
    ):
        digest.update(path.name.encode() + b"\0")
        try:
            digest.update(path.read_text(encoding="utf-8").encode())
        except (OSError, UnicodeDecodeError):
            pass
    return digest.hexdigest()
