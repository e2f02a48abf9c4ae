"""The service part of a rules folder: business-hours calendars, the teams'
calendars and leads, SLA policies, time-based rules and the satisfaction
survey. Read from the same TOML files as the rules (see docs/service.md):

```toml
[[calendar]]            # when a team works; the one named "default" is everyone's
[teams.<name>]          # a team's calendar and lead
[[sla]]                 # SLA policies: first match wins
[survey]                # the CSAT / loyalty survey sent after a conversation is resolved
[[rule]] on = "time"    # time-based rules (parsed with the other rules)
```

Everything here is plain data checked at load time; the service computations
(``omnidesk.service``) and the scheduler use it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from omnidesk.model import Priority

from .actions import Actions, parse_actions
from .calendar import WEEKDAYS, Calendar, Range, around_the_clock, parse_ranges
from .conditions import Always, BusinessHours, Node
from .problems import describe, did_you_mean
from .schema import ParseEnv, Report, parse_condition
from .source import Collector, FileDoc
from .timed import TIME_NODES

CALENDAR_KEYS = ("name", "timezone", "hours", "days", "from", "to", "holidays", "teams")
TEAM_KEYS = ("calendar", "lead")
SLA_KEYS = (
    "name",
    "description",
    "when",
    "calendar",
    "first_response",
    "next_response",
    "resolution",
    "warn_before",
    "on_warning",
    "on_breach",
)
TARGETS = ("first_response", "next_response", "resolution")
SURVEY_KEYS = (
    "enabled",
    "scale",
    "loyalty",
    "delay",
    "valid_for",
    "quiet_days",
    "channels",
    "exclude_tags",
    "require_reply",
    "default_language",
    "text",
)
TEXT_KEYS = ("question", "labels", "loyalty_question", "comment", "thanks", "reply_hint", "subject")
SCALES = (2, 3, 5)

_DURATION = re.compile(
    r"^\s*(?:(\d+(?:\.\d+)?)\s*d)?\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+)\s*m)?\s*$"
)


def parse_duration(value: Any, *, days: bool = False) -> float | None:
    """Seconds of "30m", "4h", "1h30m" (a number alone: hours); with
    ``days``, "28d" too. None when malformed."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) * 3600 if value >= 0 else None
    if not isinstance(value, str):
        return None
    m = _DURATION.match(value.lower())
    if not m or not any(m.groups()) or (m.group(1) and not days):
        return None
    d, h, mins = (float(g) if g else 0.0 for g in m.groups())
    return d * 86400 + h * 3600 + mins * 60


# -- survey texts -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SurveyTexts:
    question: str
    labels: Mapping[int, tuple[str, ...]]  # scale -> one label per point, worst first
    loyalty_question: str
    comment: str
    thanks: str
    reply_hint: str  # chat channels: how to answer ("{min}", "{max}")
    subject: str  # e-mail subject


DEFAULT_TEXTS: dict[str, SurveyTexts] = {
    "en": SurveyTexts(
        question="How would you rate the help you received?",
        labels={
            2: ("Bad", "Good"),
            3: ("Unhappy", "Neutral", "Happy"),
            5: ("Very poor", "Poor", "Okay", "Good", "Excellent"),
        },
        loyalty_question="How likely is it that you would recommend us to a friend or colleague?",
        comment="Anything you would like to tell us? (optional)",
        thanks="Thank you for your feedback!",
        reply_hint="Reply with a number from {min} to {max}.",
        subject="How did we do?",
    ),
    "zh": SurveyTexts(
        question="您对本次服务满意吗？",
        labels={
            2: ("不满意", "满意"),
            3: ("不满意", "一般", "满意"),
            5: ("非常不满意", "不满意", "一般", "满意", "非常满意"),
        },
        loyalty_question="您有多大可能向朋友或同事推荐我们？",
        comment="还有什么想告诉我们的吗？（可选）",
        thanks="感谢您的反馈！",
        reply_hint="请回复 {min} 到 {max} 之间的数字。",
        subject="请评价我们的服务",
    ),
}


@dataclass(frozen=True, slots=True)
class SurveySettings:
    enabled: bool = False
    scale: int = 5
    loyalty: bool = False  # also ask the 0-10 loyalty question
    delay: float = 0.0  # seconds after the resolution
    valid_for: float = 28 * 86400  # how long an answer is taken (and may be changed)
    quiet: float = 30 * 86400  # at most one survey per contact in this time
    channels: frozenset[str] | None = None  # None: every channel
    exclude_tags: frozenset[str] = frozenset({"spam", "auto-reply"})
    require_reply: bool = True  # only conversations an agent answered
    default_language: str = "en"
    texts: Mapping[str, SurveyTexts] = field(default_factory=lambda: dict(DEFAULT_TEXTS))

    def texts_for(self, language: str | None) -> SurveyTexts:
        if language:
            lang = language.lower().replace("_", "-")
            for key in (lang, lang.split("-", 1)[0]):
                if key in self.texts:
                    return self.texts[key]
        return self.texts.get(self.default_language) or DEFAULT_TEXTS["en"]

    def good(self, rating: int) -> bool:
        return good_rating(rating, self.scale)


def good_rating(rating: int, scale: int) -> bool:
    """A "good" rating for the CSAT share: the top two points of five, the
    top point of two or three."""
    return rating >= (4 if scale == 5 else scale)


# -- SLA policies ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SlaPolicy:
    name: str
    condition: Node
    # target -> priority -> business seconds; a priority missing has no target
    targets: Mapping[str, Mapping[str, float]]
    warn_before: float | None = None  # business seconds before a due time
    calendar: str | None = None  # None: the team's calendar, else the default
    on_warning: Actions = field(default_factory=lambda: Actions(notify=("assignee",)))
    on_breach: Actions = field(default_factory=lambda: Actions(notify=("assignee", "team_lead")))
    file: str = ""
    line: int | None = None
    description: str | None = None

    def target(self, name: str, priority: str) -> float | None:
        return self.targets.get(name, {}).get(priority)

    @classmethod
    def from_minutes(cls, minutes: Mapping[str, float], name: str = "default") -> SlaPolicy:
        """First-response targets only (the config's ``[sla]`` minutes)."""
        return cls(
            name,
            Always(),
            {"first_response": {p: m * 60 for p, m in minutes.items() if m > 0}},
            file="config [sla]",
        )


@dataclass(frozen=True, slots=True)
class TeamService:
    calendar: str | None = None
    lead: str | None = None


@dataclass(frozen=True, slots=True)
class TimedRule:
    """A rule with ``on = "time"``: looked at on conversations by the scheduler,
    its actions fire once each time its condition starts to hold."""

    name: str
    file: str
    line: int | None
    order: int
    condition: Node
    actions: Actions
    description: str | None = None

    @property
    def where(self) -> str:
        return self.file if self.line is None else f"{self.file}:{self.line}"

    @property
    def uses_time(self) -> bool:
        return any(isinstance(n, TIME_NODES) for n in self.condition.walk())


@dataclass(frozen=True, slots=True)
class ServiceRules:
    calendars: Mapping[str, Calendar] = field(default_factory=dict)
    default_calendar: Calendar = field(default_factory=around_the_clock)
    teams: Mapping[str, TeamService] = field(default_factory=dict)
    policies: tuple[SlaPolicy, ...] = ()
    timed: tuple[TimedRule, ...] = ()
    survey: SurveySettings = field(default_factory=SurveySettings)

    def calendar_for(self, team: str | None, policy: SlaPolicy | None = None) -> Calendar:
        if policy is not None and policy.calendar:
            return self.calendars.get(policy.calendar, self.default_calendar)
        ts = self.teams.get(team or "")
        if ts is not None and ts.calendar:
            return self.calendars.get(ts.calendar, self.default_calendar)
        return self.default_calendar

    def lead(self, team: str | None) -> str | None:
        ts = self.teams.get(team or "")
        return None if ts is None else ts.lead


# -- parsing ---------------------------------------------------------------------


def _tz(value: Any, report: Report) -> tuple[tzinfo, str] | None:
    if isinstance(value, str) and value.strip():
        try:
            return ZoneInfo(value.strip()), value.strip()
        except (ValueError, KeyError, OSError):
            pass
    report(f'unknown time zone {value!r} (use a name like "Europe/Berlin" or "UTC")', "timezone")
    return None


def calendar_from_settings(tz: tzinfo, tz_name: str, hours: BusinessHours | None) -> Calendar:
    """The default calendar when no ``[[calendar]]`` is named "default":
    ``[settings.business_hours]`` in the settings' time zone, else around
    the clock."""
    if hours is None:
        return around_the_clock("default", tz, tz_name)
    week: list[list[Range]] = [
        [(hours.start, hours.end)] if d in hours.days else [] for d in range(7)
    ]
    return Calendar("default", tz, tz_name, week)


class ServiceParser:
    """Collects the service sections of every file for the rules loader."""

    def __init__(self, loader: Collector) -> None:
        self.loader = loader
        self.calendars: dict[str, Calendar] = {}
        self.calendar_teams: dict[str, str] = {}  # team -> calendar named in [[calendar]] teams
        self.calendar_where: dict[str, str] = {}
        self.teams: dict[str, TeamService] = {}
        self.team_where: dict[str, str] = {}
        self.policies: list[tuple[tuple[int, int], SlaPolicy, FileDoc, tuple[int, int] | None]] = []
        self.survey: SurveySettings | None = None
        self.survey_where: str | None = None

    # -- calendars ----------------------------------------------------------
    def parse_calendars(self, doc: FileDoc) -> None:
        raws = doc.data.get("calendar")
        if not isinstance(raws, list):
            return
        for i, raw in enumerate(raws):
            span = doc.locator.span("calendar", i)
            name = raw.get("name") if isinstance(raw, dict) else None
            label = f"calendar '{name}': " if isinstance(name, str) else f"calendar #{i + 1}: "
            report = self.loader.reporter(doc, span, label)
            if not isinstance(raw, dict):
                report("must be a table")
                continue
            self.loader._unknown_keys(raw, CALENDAR_KEYS, "a [[calendar]]", report)
            cal = self._calendar(raw, report)
            if cal is None:
                continue
            if cal.name in self.calendars:
                report(f"the name '{cal.name}' is already used at {self.calendar_where[cal.name]}")
                continue
            self.calendars[cal.name] = cal
            self.calendar_where[cal.name] = f"{doc.path}:{span[0]}" if span else doc.path
            teams = raw.get("teams", [])
            if not isinstance(teams, list) or not all(isinstance(t, str) for t in teams):
                report("teams needs a list of team names", "teams")
                continue
            for t in teams:
                if t in self.calendar_teams:
                    report(f"team '{t}' already has calendar '{self.calendar_teams[t]}'", t)
                self.calendar_teams[t] = cal.name

    def _calendar(self, raw: dict[str, Any], report: Report) -> Calendar | None:
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            report('needs a name, e.g. name = "default"')
            return None
        tz = _tz(raw.get("timezone", "UTC"), report)
        if tz is None:
            return None
        week: list[list[Range]] = [[] for _ in range(7)]
        if "hours" in raw:
            if any(k in raw for k in ("days", "from", "to")):
                report("give either hours = {...} or days/from/to, not both", "hours")
                return None
            hours = raw["hours"]
            if not isinstance(hours, dict):
                report('hours needs a table like { mon = "09:00-17:30", sat = "10:00-14:00" }')
                return None
            for day, text in hours.items():
                if day not in WEEKDAYS:
                    report(f"hours: unknown day '{day}'{did_you_mean(day, WEEKDAYS)}", day)
                    return None
                ranges = parse_ranges(text) if isinstance(text, str) else None
                if ranges is None:
                    report(
                        f'hours.{day}: needs ranges like "09:00-12:00, 13:00-17:30", got {text!r}',
                        day,
                    )
                    return None
                week[WEEKDAYS.index(day)] = ranges
        else:
            days = raw.get("days", list(WEEKDAYS[:5]))
            span_text = f"{raw.get('from', '00:00')}-{raw.get('to', '24:00')}"
            ranges = parse_ranges(span_text)
            if not isinstance(days, list) or not all(d in WEEKDAYS for d in days):
                report(f'days needs day names like ["mon", "tue"], got {days!r}', "days")
                return None
            if ranges is None:
                report('from and to need times like "09:00" and "17:30", from before to', "from")
                return None
            for d in days:
                week[WEEKDAYS.index(d)] = ranges
        if not any(week):
            report("has no working hours at all")
            return None
        holidays: list[date] = []
        raw_h = raw.get("holidays", [])
        if not isinstance(raw_h, list):
            report("holidays needs a list of dates like [2026-12-25, 2027-01-01]", "holidays")
            return None
        for h in raw_h:
            if isinstance(h, str):
                try:
                    h = date.fromisoformat(h)
                except ValueError:
                    pass
            if not isinstance(h, date) or hasattr(h, "hour"):
                report(f"holidays: {h!r} is not a date like 2026-12-25", "holidays")
                return None
            holidays.append(h)
        return Calendar(name.strip(), tz[0], tz[1], week, holidays)

    # -- teams ----------------------------------------------------------------
    def parse_teams(self, doc: FileDoc) -> None:
        raw = doc.data.get("teams")
        if not isinstance(raw, dict):
            return
        for team, spec in raw.items():
            span = doc.locator.span(f"teams.{team}") or doc.locator.span("teams")
            report = self.loader.reporter(doc, span, f"teams.{team}: ")
            if not isinstance(spec, dict):
                report('needs a table like { calendar = "china", lead = "wang" }')
                continue
            self.loader._unknown_keys(spec, TEAM_KEYS, f"[teams.{team}]", report)
            if team in self.teams:
                report(f"already set in {self.team_where[team]}")
                continue
            values: dict[str, str | None] = {}
            for key in TEAM_KEYS:
                v = spec.get(key)
                if v is not None and not (isinstance(v, str) and v.strip()):
                    report(f"{key} needs a name, got {describe(v)}", key)
                    v = None
                values[key] = v.strip() if isinstance(v, str) else None
            self.teams[team] = TeamService(values["calendar"], values["lead"])
            self.team_where[team] = doc.path

    # -- SLA policies -------------------------------------------------------
    def parse_policies(self, doc: FileDoc, file_index: int, env_for: Any) -> None:
        raws = doc.data.get("sla")
        if not isinstance(raws, list):
            return
        names = {p.name for _, p, _, _ in self.policies}
        for i, raw in enumerate(raws):
            span = doc.locator.span("sla", i)
            name = raw.get("name") if isinstance(raw, dict) else None
            label = f"sla '{name}': " if isinstance(name, str) else f"sla #{i + 1}: "
            report = self.loader.reporter(doc, span, label)
            if not isinstance(raw, dict):
                report("must be a table")
                continue
            count = len(self.loader.problems)
            self.loader._unknown_keys(raw, SLA_KEYS, "an [[sla]] policy", report)
            if not isinstance(name, str) or not name.strip():
                report('needs a name, e.g. name = "vip"')
                continue
            if name in names:
                report(f"the name '{name}' is already used by another policy")
                continue
            names.add(name)
            env: ParseEnv = env_for(report)
            condition = parse_condition(raw["when"], env) if "when" in raw else Always()
            targets: dict[str, dict[str, float]] = {}
            for t in TARGETS:
                if t in raw:
                    parsed = self._targets(t, raw[t], report)
                    if parsed is not None:
                        targets[t] = parsed
            if not any(t in raw for t in TARGETS):
                report("needs at least one of first_response, next_response, resolution")
            warn = None
            if "warn_before" in raw:
                warn = parse_duration(raw["warn_before"])
                if warn is None:
                    report(f'warn_before needs a duration like "30m", got {raw["warn_before"]!r}')
            calendar = raw.get("calendar")
            if calendar is not None and not isinstance(calendar, str):
                report("calendar needs a calendar's name", "calendar")
            actions: dict[str, Actions] = {}
            for key in ("on_warning", "on_breach"):
                if key in raw:
                    a = parse_actions(raw[key], report, scope="conversation", what=key)
                    if a is not None:
                        actions[key] = a
            if len(self.loader.problems) > count or condition is None:
                continue
            policy = SlaPolicy(
                name=name,
                condition=condition,
                targets=targets,
                warn_before=warn,
                calendar=calendar,
                file=doc.path,
                line=span[0] if span else None,
                description=raw.get("description"),
                **actions,
            )
            self.policies.append(((file_index, i), policy, doc, span))

    def _targets(self, key: str, value: Any, report: Report) -> dict[str, float] | None:
        priorities = [p.value for p in Priority]
        if isinstance(value, dict):
            out: dict[str, float] = {}
            for p, v in value.items():
                if p not in priorities:
                    report(
                        f"{key}: unknown priority '{p}'{did_you_mean(p, priorities)}; "
                        f"use one of: {', '.join(priorities)}",
                        p,
                    )
                    return None
                secs = parse_duration(v)
                if secs is None or secs <= 0:
                    report(f'{key}.{p} needs a duration like "4h" or "30m", got {v!r}', p)
                    return None
                out[p] = secs
            return out
        secs = parse_duration(value)
        if secs is None or secs <= 0:
            report(
                f'{key} needs a duration like "8h" (business hours) or a table per priority,'
                f" got {value!r}",
                key,
            )
            return None
        return dict.fromkeys(priorities, secs)

    # -- survey ---------------------------------------------------------------
    def parse_survey(self, doc: FileDoc) -> None:
        raw = doc.data.get("survey")
        if not isinstance(raw, dict):
            return
        report = self.loader.reporter(doc, doc.locator.span("survey"), "survey: ")
        if self.survey_where is not None:
            report(f"[survey] is already set in {self.survey_where}")
            return
        self.survey_where = doc.path
        self.loader._unknown_keys(raw, SURVEY_KEYS, "[survey]", report)
        count = len(self.loader.problems)
        kw: dict[str, Any] = {}
        for key in ("enabled", "loyalty", "require_reply"):
            if key in raw:
                if isinstance(raw[key], bool):
                    kw[key] = raw[key]
                else:
                    report(f"{key} needs true or false", key)
        if "scale" in raw:
            if raw["scale"] in SCALES and not isinstance(raw["scale"], bool):
                kw["scale"] = raw["scale"]
            else:
                report(f"scale needs 2, 3 or 5 (points), got {raw['scale']!r}", "scale")
        for key, days in (("delay", True), ("valid_for", True)):
            if key in raw:
                secs = parse_duration(raw[key], days=days)
                if secs is None:
                    report(f'{key} needs a duration like "24h" or "28d", got {raw[key]!r}', key)
                else:
                    kw[key] = secs
        if "quiet_days" in raw:
            q = raw["quiet_days"]
            if isinstance(q, int | float) and not isinstance(q, bool) and q >= 0:
                kw["quiet"] = float(q) * 86400
            else:
                report("quiet_days needs a number of days (0: no limit)", "quiet_days")
        for key in ("channels", "exclude_tags"):
            if key in raw:
                v = raw[key]
                if isinstance(v, list) and all(isinstance(x, str) for x in v):
                    kw[key] = frozenset(v)
                else:
                    report(f"{key} needs a list of names", key)
        if "default_language" in raw:
            if isinstance(raw["default_language"], str):
                kw["default_language"] = raw["default_language"].lower()
            else:
                report('default_language needs a language code like "en"', "default_language")
        scale = kw.get("scale", 5)
        texts = dict(DEFAULT_TEXTS)
        raw_texts = raw.get("text", {})
        if not isinstance(raw_texts, dict):
            report('text needs a table per language: [survey.text.en] question = "..."', "text")
            raw_texts = {}
        for lang, t in raw_texts.items():
            parsed = self._texts(lang, t, scale, report)
            if parsed is not None:
                texts[lang.lower()] = parsed
        kw["texts"] = texts
        if kw.get("default_language", "en") not in texts:
            report(f"default_language {kw['default_language']!r} has no [survey.text.*] table")
        if len(self.loader.problems) == count:
            self.survey = SurveySettings(**kw)

    def _texts(self, lang: str, raw: Any, scale: int, report: Report) -> SurveyTexts | None:
        if not isinstance(raw, dict):
            report(f"text.{lang} needs a table", lang)
            return None
        self.loader._unknown_keys(raw, TEXT_KEYS, f"[survey.text.{lang}]", report)
        base = DEFAULT_TEXTS.get(lang.lower().split("-")[0], DEFAULT_TEXTS["en"])
        values: dict[str, Any] = {}
        for key in TEXT_KEYS:
            if key == "labels" or key not in raw:
                continue
            if isinstance(raw[key], str) and raw[key].strip():
                values[key] = raw[key].strip()
            else:
                report(f"text.{lang}.{key} needs text", key)
                return None
        labels = dict(base.labels)
        if "labels" in raw:
            got = raw["labels"]
            if (
                not isinstance(got, list)
                or len(got) != scale
                or not all(isinstance(x, str) and x.strip() for x in got)
            ):
                report(
                    f"text.{lang}.labels needs {scale} labels (one per point, worst first)",
                    "labels",
                )
                return None
            labels[scale] = tuple(x.strip() for x in got)
        return SurveyTexts(
            question=values.get("question", base.question),
            labels=labels,
            loyalty_question=values.get("loyalty_question", base.loyalty_question),
            comment=values.get("comment", base.comment),
            thanks=values.get("thanks", base.thanks),
            reply_hint=values.get("reply_hint", base.reply_hint),
            subject=values.get("subject", base.subject),
        )

    # -- result ---------------------------------------------------------------
    def result(
        self, settings_calendar: Calendar, timed: list[tuple[tuple[int, int, int], TimedRule]]
    ) -> ServiceRules:
        default = self.calendars.get("default", settings_calendar)
        calendars = {"default": default, **self.calendars}
        teams = dict(self.teams)
        for team, cal in self.calendar_teams.items():
            current = teams.get(team, TeamService())
            teams[team] = TeamService(current.calendar or cal, current.lead)
        for team, spec in teams.items():
            if spec.calendar and spec.calendar not in calendars:
                self._late_problem(f"teams.{team}: no [[calendar]] named '{spec.calendar}'")
        for _, policy, doc, span in self.policies:
            if policy.calendar and policy.calendar not in calendars:
                report = self.loader.reporter(doc, span, f"sla '{policy.name}': ")
                report(f"no [[calendar]] named '{policy.calendar}'", "calendar")
        return ServiceRules(
            calendars=calendars,
            default_calendar=default,
            teams=teams,
            policies=tuple(p for _, p, _, _ in sorted(self.policies, key=lambda x: x[0])),
            timed=tuple(r for _, r in sorted(timed, key=lambda x: x[0])),
            survey=self.survey or SurveySettings(),
        )

    def _late_problem(self, reason: str) -> None:
        from .problems import Problem

        where = next(iter(self.team_where.values()), "rules")
        self.loader.problems.append(Problem(where, None, reason))
