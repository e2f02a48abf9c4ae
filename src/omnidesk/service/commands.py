"""The service's commands (registered by ``omnidesk.cli``):

``omnidesk rules timed --conversation ID --later 3d``
    what the scheduler would do to a stored conversation at another moment:
    the SLA policy and clocks, the time-based rules that would fire and why,
    and when it would look again. Nothing is written.

``omnidesk reports rebuild``
    recount the report figures from the conversations (service/rebuild.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Any

from ..config import ConfigError, load_config
from ..model import now_ts
from ..rules import RulesError, load_rules
from ..rules.service import SlaPolicy, parse_duration
from ..store import open_store
from ..store import service as svc
from .evaluate import Settings, evaluate


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def _moment(args: argparse.Namespace) -> float | None:
    if args.at:
        when = datetime.fromisoformat(args.at)
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    secs = parse_duration(args.later or "0h", days=True)
    if secs is None:
        return None
    return now_ts() + secs


def cmd_rules_timed(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        ruleset = load_rules(args.rules or config.rules_dir)
    except (ConfigError, RulesError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    at = _moment(args)
    if at is None:
        print(f'--later needs a duration like "3d" or "4h", got {args.later!r}', file=sys.stderr)
        return 2

    async def go() -> dict[str, Any] | None:
        store = open_store(config.storage_url)
        await store.open()
        try:
            rows = await store.read(svc.load, [args.conversation])
        finally:
            await store.close()
        if not rows:
            return None
        conv = rows[0]
        prior = conv.pop("_prior")
        out = evaluate(
            conv,
            prior,
            ruleset,
            Settings(fallback_policy=SlaPolicy.from_minutes(config.sla_minutes)),
            at,
        )
        view = out.sla
        return {
            "conversation": args.conversation,
            "as_of": _iso(at),
            "sla": None if view is None else view.to_dict(at),
            "would_fire": [
                {"what": f.kind, "by": f.actor, "why": f.reason, "actions": f.actions.describe()}
                for f in out.fires
            ],
            "survey": out.survey,
            "next_look": _iso(out.check_at),
        }

    result = asyncio.run(go())
    if result is None:
        print(f"no conversation {args.conversation}", file=sys.stderr)
        return 1
    print(json.dumps(result, ensure_ascii=False, indent=2, default=str))
    return 0


def cmd_reports_rebuild(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from .rebuild import rebuild
    from .scheduler import channel_types

    try:
        config = load_config(args.config)
        ruleset = load_rules(config.rules_dir)
    except (ConfigError, RulesError) as exc:
        print(str(exc), file=sys.stderr)
        return 2

    async def go() -> Any:
        store = open_store(config.storage_url)
        await store.open()
        try:
            total = await store.read(lambda db: int(db.val("SELECT COUNT(*) FROM conversations")))
            with Progress(transient=True) as progress:
                task = progress.add_task("recounting conversations", total=total)
                loop = asyncio.get_running_loop()

                def advance(_what: str, n: int) -> None:
                    loop.call_soon_threadsafe(progress.advance, task, n)

                return await store.write(
                    rebuild,
                    ruleset,
                    now_ts(),
                    fallback=SlaPolicy.from_minutes(config.sla_minutes),
                    channel_types=channel_types({c.name: c for c in config.channels}),
                    progress=advance,
                )
        finally:
            await store.close()

    tally = asyncio.run(go())
    print(
        f"recounted {tally.conversations} conversations, {tally.messages} messages and"
        f" {tally.surveys} surveys into {len(tally.rows)} report rows"
    )
    return 0


def add_rules_commands(rsub: Any, add_config: Any) -> None:
    timed = rsub.add_parser(
        "timed",
        help="what the SLA and time-based rules would do to a conversation at another time",
    )
    timed.add_argument("--conversation", type=int, required=True, help="conversation id")
    when = timed.add_mutually_exclusive_group()
    when.add_argument("--later", help='as if this much later: "3d", "4h", "1h30m"')
    when.add_argument("--at", help="as if at this moment, ISO 8601 (UTC unless given)")
    timed.add_argument("--rules", help="rules folder (default: the config's)")
    add_config(timed)
    timed.set_defaults(func=cmd_rules_timed)


def add_commands(sub: Any, add_config: Any) -> None:
    reports = sub.add_parser("reports", help="report figures")
    rsub = reports.add_subparsers(dest="reports_command", required=True)
    rb = rsub.add_parser(
        "rebuild", help="recount every report figure from the conversations (one transaction)"
    )
    add_config(rb)
    rb.set_defaults(func=cmd_reports_rebuild)
