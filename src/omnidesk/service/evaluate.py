"""One look at one conversation: what is due, what fires, what the reports
count. Pure: the scheduler loads the facts, calls :func:`evaluate`, and
writes what it returns in one transaction (``service/scheduler.py``).

Once per episode: an SLA warning or breach fires once for each start of its
clock (``fired["sla:first_response:breach"] = "<start>"``); a time-based rule
fires when its condition starts to hold and not again until it has stopped
holding (its key is dropped then). Report facts are counted once: a
conversation's creation by the state row's existence, its first response
and each resolution by markers on that row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..model import RuleInput
from ..rules import timed as facts_keys
from ..rules.actions import Actions
from ..rules.calendar import Calendar
from ..rules.engine import RuleSet
from ..rules.service import SlaPolicy, SurveySettings
from .sla import LABELS, SlaView, clocks


@dataclass(slots=True)
class Fire:
    """Actions to run once, now."""

    key: str
    episode: str
    actions: Actions
    actor: str  # "sla:<policy>" or "rule:<name>"
    kind: str  # sla_warning | sla_breach | rule
    reason: str


@dataclass(slots=True)
class Record:
    """A fact for the reports (``store/reports.py`` adds it to its day)."""

    metric: str
    at: float
    seconds: float | None = None


@dataclass(slots=True)
class Outcome:
    state: dict[str, Any]
    sla: SlaView | None
    fires: list[Fire] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    audits: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    survey: str | None = None  # schedule | send | cancel
    survey_send_at: float | None = None
    check_at: float | None = None

    @property
    def sla_due_at(self) -> float | None:
        return None if self.sla is None else self.sla.nearest_due()


@dataclass(frozen=True, slots=True)
class Settings:
    """What the evaluation needs besides the rules."""

    fallback_policy: SlaPolicy | None = None  # the config's [sla] when rules have none
    reports_from: float = 0.0  # facts before this are the rebuild's to count
    channel_types: Mapping[str, str] = field(default_factory=dict)


def policy_for(ruleset: RuleSet, ctx: Any, fallback: SlaPolicy | None) -> SlaPolicy | None:
    if ruleset.service.policies:
        return ruleset.sla_policy(ctx)
    return fallback


def conversation_input(
    conv: Mapping[str, Any], now_dt: datetime, calendar: Calendar, channel_types: Mapping[str, str]
) -> RuleInput:
    facts = {
        facts_keys.STATUS: conv["status"],
        facts_keys.PRIORITY: conv["priority"],
        facts_keys.TEAM: conv["team"],
        facts_keys.ASSIGNEE: conv["assignee"],
        facts_keys.CREATED: conv["created_at"],
        facts_keys.LAST_CUSTOMER: conv.get("last_customer_at"),
        facts_keys.LAST_AGENT: conv.get("last_reply_at"),
        facts_keys.STATUS_CHANGED: conv.get("status_at") or conv["created_at"],
        facts_keys.RATING: conv.get("rating"),
        facts_keys.LOYALTY: conv.get("loyalty"),
        facts_keys.CALENDAR: calendar,
    }
    channel = conv["channel"]
    return RuleInput(
        channel=channel,
        channel_type=channel_types.get(channel, channel),
        sender="",
        subject=conv.get("subject") or "",
        text=conv.get("last_preview") or "",
        contact=conv.get("contact") or {},
        received_at=now_dt,
        tags=frozenset(conv.get("tags") or ()),
        conversation=facts,
    )


def evaluate(
    conv: Mapping[str, Any],
    prior: Mapping[str, Any] | None,
    ruleset: RuleSet,
    settings: Settings,
    now: float,
) -> Outcome:
    service = ruleset.service
    now_dt = datetime.fromtimestamp(now, UTC)
    # The policy is chosen on the conversation's facts before any SLA is known.
    team_cal = service.calendar_for(conv["team"])
    inp = conversation_input(conv, now_dt, team_cal, settings.channel_types)
    ctx = ruleset.conversation_context(inp, conv["category"])
    policy = policy_for(ruleset, ctx, settings.fallback_policy)
    calendar = service.calendar_for(conv["team"], policy)
    view = clocks(policy, calendar, conv) if policy is not None else None
    fired: dict[str, str] = dict(prior["fired"]) if prior else {}
    out = Outcome(state={}, sla=view)
    turns: list[float] = []

    # -- SLA: warnings and breaches, once per clock start ---------------------
    # A due time (or warning) that passed before the service counted at all
    # (an upgrade finding old conversations overdue) is noted, not acted on:
    # no storm of notices about the past.
    past = settings.reports_from
    if view is not None and policy is not None:
        for t in view.targets:
            if not t.owed:
                continue
            episode = repr(t.start)
            label = LABELS[t.name]
            if t.warn_at is not None and now < t.due:
                key = f"sla:{t.name}:warn"
                if now >= t.warn_at:
                    if fired.get(key) != episode and t.warn_at < past:
                        fired[key] = episode
                    elif fired.get(key) != episode:
                        fired[key] = episode
                        left = calendar.between(now, t.due) / 60
                        out.fires.append(
                            Fire(
                                key,
                                episode,
                                policy.on_warning,
                                f"sla:{policy.name}",
                                "sla_warning",
                                f"{label} due in {left:.0f} business min (policy {policy.name})",
                            )
                        )
                else:
                    turns.append(t.warn_at)
            key = f"sla:{t.name}:breach"
            if now > t.due:
                if fired.get(key) != episode and t.due < past:
                    fired[key] = episode
                elif fired.get(key) != episode:
                    fired[key] = episode
                    late = calendar.between(t.due, now) / 60
                    out.fires.append(
                        Fire(
                            key,
                            episode,
                            policy.on_breach,
                            f"sla:{policy.name}",
                            "sla_breach",
                            f"{label} target missed by {late:.0f} business min"
                            f" (policy {policy.name})",
                        )
                    )
            else:
                turns.append(t.due + 1.0)

    # -- what the reports count, once ----------------------------------------
    since = settings.reports_from
    if prior is None and conv["created_at"] >= since:
        out.records.append(Record("created", conv["created_at"]))
    first = conv.get("first_response_at")
    reported_first = bool(prior and prior["reported_first"])
    if first is not None and not reported_first:
        reported_first = True
        if first >= since:
            out.records.append(
                Record("first_response", first, calendar.between(conv["created_at"], first))
            )
            _met(out, view, "first_response", first, conv["created_at"], calendar)
    next_start = conv.get("awaiting_since") if first is not None else None
    if prior and prior["next_start"] is not None and prior["next_start"] != next_start:
        reply = conv.get("last_reply_at")
        if reply is not None and reply >= prior["next_start"] and reply >= since:
            out.records.append(
                Record("next_response", reply, calendar.between(prior["next_start"], reply))
            )
            if prior["next_due"] is not None:
                _count_sla(out, "next_response", reply, reply > prior["next_due"])
    reported_resolved = prior["reported_resolved"] if prior else None
    if conv["status"] == "resolved" and conv.get("resolved_at") is not None:
        resolved = conv["resolved_at"]
        if reported_resolved != resolved:
            reported_resolved = resolved
            if resolved >= since:
                out.records.append(Record("resolved", resolved))
                out.records.append(
                    Record("resolution", resolved, calendar.between(conv["created_at"], resolved))
                )
                _met(out, view, "resolution", resolved, conv["created_at"], calendar)

    # -- time-based rules: fire when the condition starts to hold ---------------
    if service.timed:
        inp.conversation = {**inp.conversation, facts_keys.SLA_DUE: out.sla_due_at}
        inp.conversation[facts_keys.CALENDAR] = calendar
        hits, turn = ruleset.timed_matches(ctx)
        if turn is not None:
            turns.append(turn)
        holding = set()
        for rule, because in hits:
            key = f"rule:{rule.name}"
            holding.add(key)
            if key not in fired:
                fired[key] = ""
                out.fires.append(Fire(key, "", rule.actions, f"rule:{rule.name}", "rule", because))
        for key in [k for k in fired if k.startswith("rule:") and k not in holding]:
            del fired[key]  # the episode is over

    # -- the survey after a resolution ------------------------------------------
    _survey(out, conv, service.survey, now, turns)

    check_at = min(turns) if turns else None
    out.check_at = check_at
    out.state = {
        "status": conv["status"],
        "policy": policy.name if policy is not None else None,
        "calendar": calendar.name,
        "first_due": _due(view, "first_response"),
        "next_start": next_start,
        "next_due": _due(view, "next_response") if next_start is not None else None,
        "resolution_due": _due(view, "resolution"),
        "fired": fired,
        "reported_first": 1 if reported_first else 0,
        "reported_resolved": reported_resolved,
        "check_at": check_at,
    }
    return out


def _due(view: SlaView | None, name: str) -> float | None:
    t = None if view is None else view.target(name)
    return None if t is None else t.due


def _met(
    out: Outcome,
    view: SlaView | None,
    name: str,
    at: float,
    start: float,
    calendar: Calendar,
) -> None:
    t = None if view is None else view.target(name)
    if t is None:
        return
    late = at > t.due
    _count_sla(out, name, at, late)
    took = calendar.between(start, at) / 60
    out.audits.append(
        (
            "sla_breached" if late else "sla_met",
            f"{LABELS[name]} after {took:.0f} business min" + (" (late)" if late else " (in time)"),
            {
                "target": name,
                "due_at": t.due,
                "at": at,
                "policy": view.policy.name if view else None,
            },
        )
    )


def _count_sla(out: Outcome, name: str, at: float, late: bool) -> None:
    out.records.append(Record(f"sla_{name}_{'breached' if late else 'met'}", at))


def survey_eligible(conv: Mapping[str, Any], survey: SurveySettings, now: float) -> str | None:
    """Why no survey goes out for this resolved conversation, or None."""
    if not survey.enabled:
        return "surveys are off"
    if survey.channels is not None and conv["channel"] not in survey.channels:
        return f"no surveys on channel {conv['channel']}"
    tags = {t.casefold() for t in conv.get("tags") or ()}
    excluded = sorted(tags & {t.casefold() for t in survey.exclude_tags})
    if excluded:
        return f"tagged {', '.join(excluded)}"
    if conv.get("contact_merged"):
        return "the contact was merged into another"
    if survey.require_reply and conv.get("first_response_at") is None:
        return "nobody replied to the customer"
    last = conv.get("contact_last_survey_at")
    if last is not None and survey.quiet and now - last < survey.quiet:
        return "the contact had a survey recently"
    return None


def _survey(
    out: Outcome,
    conv: Mapping[str, Any],
    survey: SurveySettings,
    now: float,
    turns: list[float],
) -> None:
    state = conv.get("survey_state")
    if state == "scheduled":
        if conv["status"] != "resolved" or conv.get("survey_resolved_at") != conv.get(
            "resolved_at"
        ):
            out.survey = "cancel"  # reopened before it went out
        elif conv["survey_send_at"] <= now:
            out.survey = "send"
        else:
            turns.append(conv["survey_send_at"])
        return
    if (
        conv["status"] == "resolved"
        and conv.get("resolved_at") is not None
        and conv.get("survey_resolved_at") != conv["resolved_at"]
        and survey.enabled
    ):
        out.survey = "schedule"
        out.survey_send_at = conv["resolved_at"] + survey.delay
        if out.survey_send_at > now:
            turns.append(out.survey_send_at)
