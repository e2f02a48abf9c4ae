"""The scheduler: every conversation that changed, or whose next moment came
(a warning, a due time, a time-based rule's threshold, a survey to send), is
evaluated (``evaluate.py``) and what it decided is written in one transaction.

It looks at a conversation when:

- the daemon says it changed (the live events of the pipeline and the inbox,
  from every instance through LISTEN/NOTIFY), at once;
- its ``service_state.check_at`` came: the evaluation works out when each
  time condition will next turn, so a waiting conversation costs nothing
  until then;
- a sweep (every ``sweep`` seconds) finds it changed since the last look
  (``seen`` differs from ``updated_at``), which catches anything an event did
  not tell.

With several instances, one holds the scheduler lock and does the work;
another takes over within its poll when that one dies. Should two ever look
at one conversation together, the state row's version decides: the second
write changes nothing and its actions are dropped with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from ..config import AssignmentConfig
from ..events import Event, EventBus
from ..rules.engine import RuleSet
from ..store import Store, assignment
from ..store import service as svc
from ..store.audit import add_audit
from ..store.base import Db, TransientError
from ..store.channel_state import get_state, set_state
from ..store.reports import Dims, Facts
from . import surveys
from .clock import Clock, SystemClock
from .effects import Effects, apply_fire, mirror_due
from .evaluate import Settings, evaluate, survey_eligible
from .satisfaction import refresh_contact

log = structlog.get_logger(__name__)

LOCK = "service-scheduler"
ORIGIN = "scheduler"  # the events a pass publishes say so: it does not look again because of them
CHUNK = 200  # conversations per transaction
# After the rules changed, every open conversation is looked at again (new
# rules, policies, calendars), this many a tick.
RESWEEP_PAGE = 2000  # after a change of rules: conversations added to each pass
TICK_LIMIT = 4_000  # conversations a pass evaluates at most (about 0.2 ms each)
GATHER = 0.2  # seconds events gather before a pass
DUTY = 4.0  # a pass of t seconds is followed by a pause of at least 4t


@dataclass(slots=True)
class TickResult:
    looked: int = 0
    written: int = 0
    fired: int = 0
    lost: int = 0  # another evaluation wrote first
    again: list[int] = field(default_factory=list)  # a conflict: the next pass retries
    records: int = 0
    surveys_sent: int = 0
    events: list[Event] = field(default_factory=list)
    outbox: int = 0
    notice_mail: int = 0
    seconds: float = 0.0


class Scheduler:
    def __init__(
        self,
        store: Store,
        rules: Callable[[], RuleSet],
        *,
        clock: Clock | None = None,
        settings: Settings | None = None,
        public_url: str = "http://127.0.0.1:8080",
        publish: Callable[[list[Event]], None] | None = None,
        outbox_wake: Callable[[], None] | None = None,
        notice_wake: Callable[[], None] | None = None,
        interval: float = 5.0,
        sweep: float = 60.0,
        assignment: AssignmentConfig | None = None,
    ) -> None:
        self.store = store
        # With it, a time rule that resolves or reassigns frees a place that
        # the team's oldest waiting conversation takes (store/assignment.py).
        self.assignment = assignment
        self.rules = rules
        self.clock = clock or SystemClock()
        self.settings = settings or Settings()
        self.public_url = public_url.rstrip("/")
        self.publish = publish
        self.outbox_wake = outbox_wake
        self.notice_wake = notice_wake
        self.interval = interval
        self.sweep_every = sweep
        self.key: str | None = None  # the survey links' signing key
        self._dirty: set[int] = set()
        self._wake = asyncio.Event()
        # One pass at a time in this process: a pass asked for while another
        # runs (a command, a test, the loop) waits for it, so when it returns
        # everything the earlier pass took has been written.
        self._passing = asyncio.Lock()
        self._last_sweep = 0.0
        self._rules_seen: str | None = None
        self._resweep: int | None = None  # the last id re-evaluated, while going through
        self.ticks = 0
        # Other periodic work given the tick's time (retention: service/privacy.py);
        # each decides itself whether its time has come.
        self.jobs: list[Callable[[float], Awaitable[Any]]] = []

    # -- set-up ---------------------------------------------------------------
    async def prepare(self) -> None:
        """The signing key, and from when the reports count live (what came
        before is the rebuild's: ``omnidesk reports rebuild``)."""
        self.key = await self.store.write(surveys.signing_key)
        since = await self.store.write(_reports_from, self.clock.now())
        # The rules the last run looked with: changed while the daemon was
        # down, every open conversation is looked at again.
        self._rules_seen = await self.store.read(get_state, "service", "rules_fingerprint")
        self.settings = Settings(
            fallback_policy=self.settings.fallback_policy,
            reports_from=since,
            channel_types=self.settings.channel_types,
        )

    @property
    def links(self) -> surveys.Links:
        assert self.key is not None, "prepare() first"
        return surveys.Links(self.public_url, self.key)

    # -- being told ------------------------------------------------------------
    def mark(self, conversation_ids: Any) -> None:
        self._dirty.update(int(i) for i in conversation_ids)
        self._wake.set()

    @property
    def behind(self) -> bool:
        """Whether work is left over for the next pass (more than one pass
        takes, or the look at every conversation after a change of rules)."""
        return bool(self._dirty) or self._resweep is not None or self._last_sweep == 0.0

    def on_events(self, events: list[Event]) -> None:
        ids = [e["conversation_id"] for e in events if isinstance(e.get("conversation_id"), int)]
        if ids:
            self.mark(ids)

    # -- one pass ----------------------------------------------------------------
    async def tick(self, *, sweep: bool | None = None, limit: int = TICK_LIMIT) -> TickResult:
        async with self._passing:
            return await self._tick(sweep, limit)

    async def _tick(self, sweep: bool | None, limit: int) -> TickResult:
        t0 = time.process_time()
        if self.key is None:
            await self.prepare()
        now = self.clock.now()
        res = TickResult()
        ids = set(self._dirty)
        self._dirty.clear()
        ids.update(await self.store.read(svc.due_ids, now, limit))
        fingerprint = self.rules().fingerprint
        if fingerprint != self._rules_seen:
            if self._rules_seen is not None:
                self._resweep = 0
                log.info("scheduler_rules_changed", action="looking at every open conversation")
            self._rules_seen = fingerprint
            await self.store.write(set_state, "service", "rules_fingerprint", fingerprint)
        if self._resweep is not None:
            page = await self.store.read(svc.open_ids, self._resweep, RESWEEP_PAGE)
            ids.update(page)
            self._resweep = page[-1] if len(page) == RESWEEP_PAGE else None
        if sweep or (sweep is None and time.monotonic() - self._last_sweep >= self.sweep_every):
            self._last_sweep = time.monotonic()
            changed = await self.store.read(svc.changed_ids, limit)
            ids.update(changed)
            if len(changed) >= limit:
                # More changed than a pass takes (the first passes after an
                # upgrade): the next pass sweeps again, at once.
                self._last_sweep = 0.0
                self._wake.set()
        ordered = sorted(ids)
        if len(ordered) > limit:
            # A pass stays short (under a second of CPU): the rest is the
            # next pass's, which comes at once.
            self._dirty.update(ordered[limit:])
            self._wake.set()
            ordered = ordered[:limit]
        for i in range(0, len(ordered), CHUNK):
            part = ordered[i : i + CHUNK]
            res_part = await self.store.write(self._chunk, part, now)
            res.looked += res_part.looked
            res.written += res_part.written
            res.fired += res_part.fired
            res.lost += res_part.lost
            res.records += res_part.records
            res.surveys_sent += res_part.surveys_sent
            res.outbox += res_part.outbox
            res.notice_mail += res_part.notice_mail
            res.events += res_part.events
            if res_part.again:
                self._dirty.update(res_part.again)
                self._wake.set()
        for job in self.jobs:
            try:
                await job(now)
            except Exception:
                log.exception("scheduler_job_failed")
        res.seconds = time.process_time() - t0
        self.ticks += 1
        if res.events and self.publish is not None:
            for e in res.events:
                # What this pass changed needs no second look because of its
                # own events (what an action changed is marked by look_again).
                e["origin"] = ORIGIN
            self.publish(res.events)
        if res.outbox and self.outbox_wake is not None:
            self.outbox_wake()
        if res.notice_mail and self.notice_wake is not None:
            self.notice_wake()
        if res.fired or res.lost:
            log.info(
                "scheduler_tick",
                looked=res.looked,
                fired=res.fired,
                lost=res.lost,
                surveys=res.surveys_sent,
                cpu=round(res.seconds, 3),
            )
        return res

    def _chunk(self, db: Db, ids: list[int], now: float) -> TickResult:
        res = TickResult()
        ruleset = self.rules()
        service = ruleset.service
        facts = Facts(service.default_calendar.tz)
        contacts: set[int] = set()
        for conv in svc.load(db, ids):
            res.looked += 1
            prior = conv.pop("_prior")
            try:
                out = evaluate(conv, prior, ruleset, self.settings, now)
            except Exception:
                log.exception("scheduler_evaluation_failed", conversation_id=conv["id"])
                continue
            cid = int(conv["id"])
            try:
                with db.savepoint():
                    version = svc.claim_state(
                        db,
                        cid,
                        None if prior is None else int(prior["version"]),
                        conv["updated_at"],
                        out.state,
                        now,
                    )
                    if version is None:
                        res.lost += 1
                        continue
                    effects = Effects()
                    if out.sla_due_at != conv["sla_due_at"]:
                        mirror_due(db, cid, out.sla_due_at)
                        effects.events.append(
                            {
                                "type": "conversation.updated",
                                "conversation_id": cid,
                                "team": conv["team"],
                                "sla_due_at": out.sla_due_at,
                            }
                        )
                    for action, reason, detail in out.audits:
                        add_audit(
                            db,
                            "sla",
                            action,
                            conversation_id=cid,
                            reason=reason,
                            detail=detail,
                            at=now,
                        )
                    res.records += len(out.records)
                    for fire in out.fires:
                        apply_fire(db, conv, fire, service, now, effects)
                    res.fired += len(out.fires)
                    self._survey(db, conv, out, service, now, res, effects)
                    if effects.changed:
                        # What the actions changed is looked at on the next pass.
                        svc.look_again(db, cid, now)
                    res.written += 1
                    res.events += effects.events
                    res.outbox += effects.outbox
                    res.notice_mail += effects.notice_mail
                # Kept (the savepoint let go): the report's facts count, and
                # a resolution or a new complaint changes the contact's figure.
                dims = Dims.of(conv)
                for r in out.records:
                    facts.add(r.metric, r.at, dims, seconds=r.seconds)
                metrics = {r.metric for r in out.records}
                if "resolved" in metrics or (
                    "created" in metrics and conv["category"] == "complaint"
                ):
                    contacts.add(int(conv["contact_id"]))
            except TransientError as exc:
                # A deadlock or a lock held past the statement timeout (other
                # transactions on PostgreSQL): nothing is wrong with it.
                log.info("scheduler_apply_retried", conversation_id=cid, reason=str(exc)[:200])
                res.again.append(cid)
            except Exception:
                log.exception("scheduler_apply_failed", conversation_id=cid)
        facts.write(db)
        # Once per contact however many of its conversations the pass saw.
        for contact_id in sorted(contacts):
            try:
                with db.savepoint():
                    refresh_contact(db, contact_id, now)
            except Exception:
                log.exception("scheduler_contact_failed", contact_id=contact_id)
        self._drain(db, res)
        return res

    def _drain(self, db: Db, res: TickResult) -> None:
        """Rules' actions that changed a status or an assignee may have freed
        places: the teams involved are drained in the same transaction."""
        if self.assignment is None:
            return
        moved = [
            e
            for e in res.events
            if e.get("type") == "conversation.updated" and ("status" in e or "assignee" in e)
        ]
        if not moved:
            return
        try:
            with db.savepoint():
                res.events += assignment.after_change(db, moved, self.assignment)[len(moved) :]
        except Exception:
            log.exception("scheduler_drain_failed")

    def _survey(
        self,
        db: Db,
        conv: dict[str, Any],
        out: Any,
        service: Any,
        now: float,
        res: TickResult,
        effects: Effects,
    ) -> None:
        if out.survey is None:
            return
        cid = int(conv["id"])
        if out.survey == "cancel":
            surveys.cancel(db, int(conv["survey_id"]), now)
            return
        if out.survey == "schedule":
            settings = service.survey
            skip = survey_eligible(conv, settings, now)
            late = now - (out.survey_send_at or now) > 86400
            if skip is None and late:
                skip = "resolved too long ago when the scheduler got to it"
            sid = surveys.schedule(db, conv, settings, out.survey_send_at or now, skip, now)
            if sid is None or skip or (out.survey_send_at or now) > now:
                return
            conv["survey_id"] = sid
        if self.key is None:
            return
        mid = surveys.send(
            db, int(conv["survey_id"]), service, self.links, self.settings.channel_types, now
        )
        if mid is not None:
            res.surveys_sent += 1
            effects.outbox += 1
            effects.events.append(
                {
                    "type": "message.created",
                    "conversation_id": cid,
                    "message_id": mid,
                    "direction": "out",
                    "kind": "message",
                }
            )

    # -- the loop --------------------------------------------------------------
    async def run(self, events: EventBus | None = None) -> None:
        """Tick whenever told of changes (at most every 0.2 s) and every
        ``interval`` seconds, on the instance that holds the lock."""
        listener = asyncio.ensure_future(self._listen(events)) if events is not None else None
        try:
            owner = False
            while True:
                try:
                    owner = await self.store.try_lock(LOCK)
                except Exception as exc:
                    log.warning("scheduler_lock_check_failed", error=str(exc))
                    owner = False
                took = 0.0
                if owner:
                    t0 = time.monotonic()
                    try:
                        await self.tick()
                    except Exception:
                        log.exception("scheduler_tick_failed")
                    took = time.monotonic() - t0
                else:
                    self._dirty.clear()  # the owner hears the same events
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.interval):
                        await self._wake.wait()
                self._wake.clear()
                # Let a burst of events gather; under load a pass takes longer
                # and the next one waits longer (at most a fifth of the time
                # goes to passes, and never more than `interval`), so intake
                # keeps the machine while what it stored is looked at in
                # bigger, cheaper passes.
                await asyncio.sleep(min(self.interval, max(GATHER, DUTY * took)))
        finally:
            if listener is not None:
                listener.cancel()

    async def _listen(self, events: EventBus) -> None:
        async with events.subscribe() as q:
            while True:
                e = await q.get()
                if e.get("type") == "resync":
                    self._last_sweep = 0.0
                    self._wake.set()
                elif (
                    isinstance(e.get("conversation_id"), int)
                    and e.get("type") != "notification"
                    and e.get("origin") != ORIGIN
                ):
                    self.mark([e["conversation_id"]])


def _reports_from(db: Db, now: float) -> float:
    v = get_state(db, "service", "reports_from")
    if v is None:
        db.run(
            "INSERT INTO channel_state (channel, key, value) VALUES ('service', 'reports_from', ?)"
            " ON CONFLICT (channel, key) DO NOTHING",
            (repr(now),),
        )
        v = get_state(db, "service", "reports_from")
    return float(v or now)


def channel_types(adapters: Mapping[str, Any]) -> dict[str, str]:
    return {name: getattr(a, "type", name) for name, a in adapters.items()}
