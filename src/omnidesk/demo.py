"""``omnidesk run --demo``: feed a few sample customer messages through the
first API channel (signed HTTP, the real path) so a newcomer sees them stored,
classified and routed, then print what happened and how to look further."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from .channels.api import SIGNATURE_HEADER, sign
from .cmdline import command
from .store import Db, Store
from .store.inbox import ConversationFilter, list_conversations
from .store.tokens import create_token

if TYPE_CHECKING:
    from .channels.base import ChannelAdapter
    from .config import AssignmentConfig, Config
    from .pipeline_proc import PipelineProcesses


class Running(Protocol):
    """The running daemon as the demo uses it (``omnidesk run --demo``)."""

    @property
    def config(self) -> Config: ...
    @property
    def store(self) -> Store: ...
    @property
    def adapters(self) -> Mapping[str, ChannelAdapter]: ...
    @property
    def pipeline_processes(self) -> PipelineProcesses | None: ...
    @property
    def web_port(self) -> int: ...


SAMPLES: list[dict[str, Any]] = [
    {
        "sender": {"address": "ann@example.com", "kind": "email", "name": "Ann Lee"},
        "subject": "Where is my order?",
        "text": "Hi, could you tell me when order 1042 will be shipped? Thanks.",
    },
    {
        "sender": {"address": "bob@example.com", "kind": "email", "name": "Bob Stone"},
        "subject": "Still no refund",
        "text": "This is unacceptable. I returned the blender three weeks ago and I am still "
        "waiting for my refund. Terrible service, I want my money back.",
    },
    {
        "sender": {"address": "carol@example.com", "kind": "email", "name": "Carol"},
        "subject": "Love the new app",
        "text": "Just wanted to say the new checkout is great, much faster than before. "
        "Maybe add dark mode?",
    },
    {
        "sender": {"address": "+8613800138000", "kind": "phone", "name": "王芳"},
        "text": "你好，请问这款手机支持国际保修吗？什么时候有货？",
    },
    {
        "sender": {"address": "+8613900139000", "kind": "phone", "name": "李雷"},
        "text": "送餐太慢了，等了两个小时，饭菜都凉了，服务态度也很差，我要投诉！",
    },
    {
        "sender": {"address": "+8613700137000", "kind": "phone", "name": "张伟"},
        "text": "非常满意，包装很好，配送很快，建议以后多一些优惠活动。",
    },
]


def _demo_admin(db: Db) -> str:
    """The demo's admin account ``demo`` with a fresh random password."""
    from .accounts import hash_password, random_password
    from .store.users import create_user, get_user, update_user

    password = random_password()
    if get_user(db, "demo") is None:
        create_user(
            db,
            "demo",
            role="admin",
            password_hash=hash_password(password),
            display_name="Demo admin",
            teams=[t["name"] for t in db.all("SELECT name FROM teams")],
        )
    else:
        update_user(db, "demo", password_hash=hash_password(password), disabled=False)
    return password


def _demo_agents(db: Db, policy: AssignmentConfig) -> list[str]:
    """Every team member gets an account (role agent, no password: an admin
    sets one with ``omnidesk agents passwd``), listed on the users page, and
    is online for the demo's conversations (as an API client would be)."""
    from .store.assignment import set_status
    from .store.users import create_user, get_user, user_teams

    names = []
    for r in db.all("SELECT DISTINCT username FROM team_members ORDER BY username"):
        name = r["username"]
        if get_user(db, name) is None:
            create_user(
                db,
                name,
                role="agent",
                password_hash=None,
                display_name=name.capitalize(),
                teams=user_teams(db, name),
            )
        set_status(db, name, "online", policy, actor="demo", via="token", reason="demo agent")
        names.append(name)
    return names


async def run_demo(daemon: Running) -> None:
    api = next((a for a in daemon.adapters.values() if a.type == "api"), None)
    if api is None:
        print('--demo needs an API channel ([[channels]] type = "api")', file=sys.stderr)
        return
    secret = api.secret.reveal()  # type: ignore[attr-defined]
    if daemon.pipeline_processes is not None:  # processes = "auto" on two cores or more
        await daemon.pipeline_processes.wait_ready()
    base = f"http://{daemon.config.web_host}:{daemon.web_port}"
    agents = await daemon.store.write(_demo_agents, daemon.config.assignment)
    run_id = int(time.time())
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        for i, sample in enumerate(SAMPLES):
            body = json.dumps(
                {"external_id": f"demo-{run_id}-{i}", **sample}, ensure_ascii=False
            ).encode()
            r = await client.post(
                f"/api/v1/inbound/{api.name}",
                content=body,
                headers={SIGNATURE_HEADER: sign(secret, body), "Content-Type": "application/json"},
            )
            r.raise_for_status()
    # Wait for the pipeline to catch up.
    for _ in range(100):
        from .store.inbound import count_pending

        if await daemon.store.read(count_pending) == 0:
            break
        await asyncio.sleep(0.05)
    rows = await daemon.store.read(list_conversations, ConversationFilter(), limit=len(SAMPLES))
    out = ["", "omnidesk demo: what the rules decided", ""]
    for c in reversed(rows):
        d = c["decision"] or {}
        out.append(
            f"#{c['id']} {c['contact_name']}: {c['category']} ({c['confidence'] or 0:.2f}),"
            f" priority {c['priority']}, team {c['team'] or '-'}, assigned to"
            f" {c['assignee'] or 'nobody (team queue)'}"
        )
        out.append(f"   message: {(c['last_preview'] or '')[:100]}")
        for why in d.get("explanation", []):
            out.append(f"   why: {why}")
        out.append("")
    token = await daemon.store.write(create_token, "admin", name="demo")
    password = await daemon.store.write(_demo_admin)
    passwd = command("agents", "passwd", "demo", config=daemon.config.file)
    out += [
        f"Web inbox: {base}/login   user: demo   password: {password}",
        f"  agents (online for the demo, no password yet): {', '.join(agents) or 'none'}",
        "  (an admin account for this demo; the password is shown only now:"
        f" change it with `{passwd}`)",
        f"The daemon keeps running on {base}. Try:",
        f"  curl -s -H 'Authorization: Bearer {token}' {base}/api/v1/conversations",
        f"  curl -s {base}/healthz",
        f"API docs: {base}/docs    Stop with Ctrl-C.",
        "",
    ]
    # Plain print, not the log: this is the demo's report to the person at the terminal.
    print("\n".join(out), file=sys.stderr, flush=True)
