"""The ``omnidesk`` command.

Exit codes: 0 success, 1 a check or test failed or the environment is wrong
(a port in use, a database out of reach), 2 bad configuration or usage. A
user's mistake is one line on stderr naming the file, line or value and what
is expected, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from . import __version__
from .cmdline import CliError, rules_error, rules_of, rules_source
from .config import Config, ConfigError, load_config

T = TypeVar("T")

DEFAULT_CONFIG = os.environ.get("OMNIDESK_CONFIG", "config.toml")
CONFIG_HELP = "config file (default: $OMNIDESK_CONFIG or ./config.toml)"


def _read_text(path: str, what: str) -> str:
    """A file the user named, or a CliError saying why it cannot be read."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise CliError(f"{path}:{line}: the {what} must be UTF-8 text") from None


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config)


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-c",
        "--config",
        default=DEFAULT_CONFIG,
        help=CONFIG_HELP,
    )


async def _with_store(config: Config, fn: Callable[[Any], Awaitable[T]]) -> T:
    from .store import open_store

    store = open_store(config.storage_url)
    try:
        await store.open()
    except (ConnectionError, OSError, sqlite3.Error) as exc:
        from .app import store_failure

        await store.close()
        raise CliError(str(store_failure(config.storage_url, exc)), 1) from None
    try:
        return await fn(store)
    finally:
        await store.close()


# -- run -------------------------------------------------------------------
class _Interrupted(BaseException):
    """SIGINT or SIGTERM before the daemon's event loop handles them."""


def _interrupted(signum: int, frame: Any) -> None:
    raise _Interrupted


def cmd_run(args: argparse.Namespace) -> int:
    """Start-up failures are StartupErrors (``main`` prints the one line);
    SIGINT/SIGTERM at any moment end with ``daemon_stopped`` and exit 0 (until
    the daemon's event loop takes them over, ``main``'s handlers raise
    :class:`_Interrupted`: nothing is open yet then)."""
    from . import logging as odlog
    from .app import Daemon

    config = _config(args)
    odlog.configure(config.log_level, personal_data=config.privacy.log_personal_data)
    after = None
    if args.demo:
        from .demo import run_demo

        after = run_demo
    daemon = Daemon(config)
    asyncio.run(daemon.run_forever(after_start=after))
    return 0


# -- rules -----------------------------------------------------------------
def cmd_rules_check(args: argparse.Namespace) -> int:
    from .cmdline import shown_path
    from .rules import Defined, check_rules

    folder, config = rules_source(args)
    defined = None
    if config is not None:
        defined = Defined(
            where=shown_path(config.file) if config.file else "the config",
            teams=frozenset(t.name for t in config.teams),
            agents=frozenset(m for t in config.teams for m in t.members),
            channels=frozenset(c.name for c in config.channels),
        )
    report = check_rules(folder, defined, strict=args.strict)
    print(report.format())
    return 0 if report.ok else 1


def cmd_rules_test(args: argparse.Namespace) -> int:
    from .classify_cli import UsageError, _maybe_config, _model
    from .model import RuleInput
    from .rules import detect_language

    ruleset = rules_of(args)
    try:
        # The trained model installed in the data directory decides too (--model none: not)
        ruleset = ruleset.with_model(_model(args, _maybe_config(args)))
    except UsageError as exc:
        raise CliError(str(exc)) from None
    text = _read_text(args.file, "message file") if args.file else args.text
    contact: dict[str, Any] = {}
    for item in args.attr or []:
        k, eq, v = item.partition("=")
        if not eq or not k:
            raise CliError(f"--attr {item!r}: expected KEY=VALUE, e.g. tier=gold")
        contact[k] = v
    try:
        when = datetime.fromisoformat(args.at) if args.at else datetime.now(UTC)
    except ValueError:
        raise CliError(
            f"--at {args.at!r}: expected an ISO 8601 time, e.g. 2024-05-07T10:00:00+00:00"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    inp = RuleInput(
        channel=args.channel or "api",
        channel_type=args.channel_type or args.channel or "api",
        sender=args.sender or "",
        subject=args.subject or "",
        text=text,
        language=args.language or detect_language(text),
        contact=contact,
        received_at=when,
    )
    decision = ruleset.evaluate(inp)
    print(json.dumps(decision.to_dict(), ensure_ascii=False, indent=2))
    return 0


# -- tokens ----------------------------------------------------------------
def cmd_tokens_create(args: argparse.Namespace) -> int:
    from .cmdline import command
    from .store.tokens import create_token

    config = _config(args)

    from .store.users import ROLE_RANK, get_user

    async def go(store: Any) -> str | None:
        user = await store.read(get_user, args.user) if args.user else None
        if user is not None and ROLE_RANK[args.role] > ROLE_RANK[user["role"]]:
            print(
                f"{args.user} is {user['role']}: a token cannot outrank its user", file=sys.stderr
            )
            return None
        if args.user and user is None:
            add = command("agents", "add", args.user, config=config.file)
            print(
                f"note: no account named {args.user} ({add}); the token acts as"
                f" {args.user} with role {args.role}",
                file=sys.stderr,
            )
        return await store.write(create_token, args.role, name=args.name, username=args.user)

    token = asyncio.run(_with_store(config, go))
    if token is None:
        return 1
    print(
        f"created a {args.role} token" + (f" for {args.user}" if args.user else ""), file=sys.stderr
    )
    print(token)
    return 0


# -- agents ----------------------------------------------------------------
def _read_password(args: argparse.Namespace, username: str) -> str | None:
    """From --password-file, $OMNIDESK_PASSWORD, or a prompt (typed twice);
    never from the command line, where other users could read it."""
    from getpass import getpass

    from .accounts import PasswordError, check_password_rules

    if getattr(args, "no_password", False):
        return None
    if args.password_file:
        text = _read_text(args.password_file, "password file")
        password = text.splitlines()[0] if text.strip() else ""
    elif os.environ.get("OMNIDESK_PASSWORD"):
        password = os.environ["OMNIDESK_PASSWORD"]
    elif sys.stdin.isatty():
        password = getpass(f"password for {username}: ")
        if getpass("again: ") != password:
            raise SystemExit("the passwords differ")
    else:
        raise SystemExit("give the password with --password-file or $OMNIDESK_PASSWORD")
    try:
        check_password_rules(password, username)
    except PasswordError as exc:
        raise SystemExit(str(exc)) from None
    return password


def cmd_agents_add(args: argparse.Namespace) -> int:
    from .accounts import hash_password
    from .store.audit import add_audit
    from .store.users import AccountError, create_user, seed_teams

    config = _config(args)
    password = _read_password(args, args.username)
    pw_hash = hash_password(password) if password is not None else None

    def make(db: Any) -> dict[str, Any]:
        seed_teams(db, config.teams)  # so --team can name a config team before the first run
        u = create_user(
            db,
            args.username,
            role=args.role,
            password_hash=pw_hash,
            display_name=args.name,
            email=args.email,
            teams=args.team or [],
        )
        add_audit(db, "cli", "user_created", detail={"username": u["username"], "role": u["role"]})
        return u

    try:
        u = asyncio.run(_with_store(config, lambda s: s.write(make)))
    except AccountError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    teams = ", ".join(u["teams"]) or "no team"
    print(f"created {u['role']} {u['username']} ({teams})")
    return 0


def cmd_agents_list(args: argparse.Namespace) -> int:
    from .store.users import list_users

    config = _config(args)
    users = asyncio.run(_with_store(config, lambda s: s.read(list_users)))
    if args.json:
        print(json.dumps(users, ensure_ascii=False, default=str))
        return 0
    if not users:
        from .cmdline import command

        add = command("agents", "add", "USERNAME", "--role", "admin", config=config.file)
        print(f"no accounts yet: {add}")
        return 0
    for u in users:
        last = (
            datetime.fromtimestamp(u["last_login_at"], UTC).strftime("%Y-%m-%d %H:%M")
            if u["last_login_at"]
            else "never"
        )
        state = "disabled" if u["disabled"] else "active"
        print(
            f"{u['username']:<20} {u['role']:<10} {state:<8} last login {last:<16}"
            f"  {', '.join(u['teams']) or '-'}  {u['display_name'] or ''}"
        )
    return 0


def _agents_change(args: argparse.Namespace, **fields: Any) -> int:
    from .store.audit import add_audit
    from .store.users import AccountError, update_user

    config = _config(args)

    def change(db: Any) -> dict[str, Any]:
        u = update_user(db, args.username, **fields)
        shown = {k: ("***" if k == "password_hash" else v) for k, v in fields.items()}
        add_audit(db, "cli", "user_updated", detail={"username": args.username, "changed": shown})
        return u

    try:
        asyncio.run(_with_store(config, lambda s: s.write(change)))
    except AccountError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0


def cmd_agents_disable(args: argparse.Namespace) -> int:
    rc = _agents_change(args, disabled=True)
    if rc == 0:
        print(f"disabled {args.username}: sessions ended, API tokens revoked")
    return rc


def cmd_agents_enable(args: argparse.Namespace) -> int:
    rc = _agents_change(args, disabled=False)
    if rc == 0:
        print(f"enabled {args.username}")
    return rc


def cmd_agents_passwd(args: argparse.Namespace) -> int:
    from .accounts import hash_password

    password = _read_password(args, args.username)
    assert password is not None
    rc = _agents_change(args, password_hash=hash_password(password))
    if rc == 0:
        print(f"password changed for {args.username}; their sessions were ended")
    return rc


# -- roles and tokens: the admin's way back in (issue 19) --------------------
def cmd_agents_role(args: argparse.Namespace) -> int:
    """Give an account a role: the way to restore an admin from the shell
    (the last active admin cannot be demoted, from here or the web)."""
    rc = _agents_change(args, role=args.role)
    if rc == 0:
        print(f"{args.username} is now {args.role}")
    return rc


def cmd_tokens_list(args: argparse.Namespace) -> int:
    from .store.tokens import Owner, list_tokens

    config = _config(args)
    owner = Owner.user(args.user) if args.user else Owner.anyone()
    items = asyncio.run(_with_store(config, lambda s: s.read(list_tokens, owner)))
    if args.json:
        print(json.dumps(items, ensure_ascii=False))
        return 0
    for t in items:
        state = "revoked" if t["revoked_at"] else "live"
        made = datetime.fromtimestamp(t["created_at"], UTC).strftime("%Y-%m-%d %H:%M")
        print(
            f"{t['id']}  {t['role']:<10} {state:<7} {made}  {t['username'] or '(no user)':<16}"
            f"  {t['name'] or ''}"
        )
    if not items:
        print("no tokens")
    return 0


def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    from .store.audit import add_audit
    from .store.tokens import Owner, revoke_token

    config = _config(args)

    def drop(db: Any) -> dict[str, Any] | None:
        gone = revoke_token(db, args.id, Owner.anyone())
        if gone is not None:
            add_audit(db, "cli", "token_revoked", detail={"id": args.id, "name": gone["name"]})
        return gone

    if asyncio.run(_with_store(config, lambda s: s.write(drop))) is None:
        print(f"no live token {args.id} (omnidesk tokens list)", file=sys.stderr)
        return 1
    print(f"revoked {args.id}")
    return 0


def _register_role_and_token_commands(asub: Any, tsub: Any) -> None:
    ar = asub.add_parser("role", help="give an account a role (restores an admin)")
    ar.add_argument("username")
    ar.add_argument("role", choices=("agent", "supervisor", "admin"))
    _add_config(ar)
    ar.set_defaults(func=cmd_agents_role)
    tl = tsub.add_parser("list", help="list tokens by public id (never their secret)")
    tl.add_argument("--user", help="only this user's tokens")
    tl.add_argument("--json", action="store_true")
    _add_config(tl)
    tl.set_defaults(func=cmd_tokens_list)
    tr = tsub.add_parser("revoke", help="revoke a token by its public id (tok_...)")
    tr.add_argument("id")
    _add_config(tr)
    tr.set_defaults(func=cmd_tokens_revoke)


# -- quarantine ------------------------------------------------------------
def cmd_quarantine_list(args: argparse.Namespace) -> int:
    from .store.inbound import list_quarantine

    config = _config(args)
    state = None if args.all else "open"
    rows = asyncio.run(
        _with_store(config, lambda s: s.read(list_quarantine, state=state, limit=args.limit))
    )
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, default=str))
        return 0
    if not rows:
        print("quarantine is empty")
        return 0
    for r in rows:
        when = datetime.fromtimestamp(r["created_at"], UTC).strftime("%Y-%m-%d %H:%M:%S")
        print(
            f"#{r['id']:<6} {when}  {r['channel']:<12} {r['state']:<9} {r['size']:>8} B  "
            f"{r['external_id'][:40]:<40}  {r['error'][:100]}"
        )
    return 0


def cmd_quarantine_show(args: argparse.Namespace) -> int:
    from .store.inbound import get_quarantine

    config = _config(args)
    q = asyncio.run(_with_store(config, lambda s: s.read(get_quarantine, args.id)))
    if q is None:
        print(f"no quarantine entry #{args.id}", file=sys.stderr)
        return 1
    raw: bytes = q.pop("payload")
    if args.raw:
        sys.stdout.buffer.write(raw)
        return 0
    for k in ("id", "channel", "external_id", "state", "retries", "content_type", "error"):
        print(f"{k:>12}: {q[k]}")
    print(f"{'size':>12}: {len(raw)} bytes")
    if q.get("detail"):
        print("\n" + q["detail"])
    print("\n--- raw (first 2000 bytes; --raw for all) ---")
    print(raw[:2000].decode("utf-8", "replace"))
    return 0


def cmd_quarantine_retry(args: argparse.Namespace) -> int:
    """Requeue, then run the pipeline here so the outcome is printed now (a
    running daemon would pick the entries up too: claims are transactional)."""
    from .app import build_adapters, pipeline_context
    from .intake import Intake
    from .pipeline import PipelineRunner
    from .rules import RulesError, load_rules
    from .store.inbound import get_quarantine, retry_quarantine
    from .store.users import seed_teams

    config = _config(args)
    if not args.ids and not args.all:
        print("give quarantine ids or --all", file=sys.stderr)
        return 2

    async def go(store: Any) -> int:
        ids = await store.write(retry_quarantine, None if args.all else args.ids)
        if not ids:
            print("nothing to retry (unknown ids, or not in quarantine)", file=sys.stderr)
            return 1
        adapters, acks = build_adapters(config, Intake(store), store)
        await store.write(seed_teams, config.teams)  # as the daemon does at start
        try:
            rules = load_rules(config.rules_dir)
        except RulesError as exc:
            raise rules_error(exc, config) from None
        runner = PipelineRunner(
            store,
            pipeline_context(config, adapters, lambda: rules, acks),
            batch_size=config.pipeline_batch,
        )
        await runner.drain()
        failed = 0
        for qid in ids:
            q = await store.read(get_quarantine, qid)
            if q["state"] == "resolved":
                print(f"#{qid}: processed")
            else:
                failed += 1
                print(f"#{qid}: still in quarantine: {q['error']}")
        return 1 if failed else 0

    return asyncio.run(_with_store(config, go))


# -- migrate ---------------------------------------------------------------
def cmd_migrate(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.status:
        from .store.maintenance import migration_status

        status = asyncio.run(migration_status(config.storage_url))
        for version, name, state in status:
            print(f"{version:04d} {name:<30} {state}")
        # Deploy scripts: 0 up to date, 1 something to apply.
        return 1 if any(state == "pending" for _, _, state in status) else 0

    async def go(store: Any) -> list[tuple[int, str, bool]]:
        return await store.migrations()

    rows = asyncio.run(_with_store(config, go))  # opening applies pending migrations
    for version, name, applied in rows:
        print(f"{version:04d} {name:<30} {'applied' if applied else 'pending'}")
    return 0


# -- store -------------------------------------------------------------------
def _url_arg(value: str) -> str:
    """A storage URL, or ``env:NAME`` to keep a password off the command line."""
    if value.startswith("env:"):
        url = os.environ.get(value[4:], "")
        if not url:
            raise SystemExit(f"environment variable {value[4:]} is not set")
        return url
    if value.startswith("sqlite:///"):
        from .config import normalize_storage_url

        return normalize_storage_url(value, Path.cwd())
    return value


def cmd_store_copy(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.table import Table

    from .store.maintenance import CopyError, copy_urls
    from .store.postgres import redact_url

    src, dst = _url_arg(args.source), _url_arg(args.target)
    console = Console(stderr=True)
    console.print(f"copying {redact_url(src)} -> {redact_url(dst)}")
    with Progress(
        TextColumn("{task.description:<18}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=False,
    ) as bar:
        tasks: dict[str, Any] = {}

        def progress(table: str, done: int, total: int) -> None:
            if table not in tasks:
                tasks[table] = bar.add_task(table, total=max(total, 1))
            bar.update(tasks[table], completed=done if total else 1)

        try:
            reports = asyncio.run(
                copy_urls(src, dst, resume=args.resume, batch=args.batch, progress=progress)
            )
        except (CopyError, ConnectionError) as exc:
            console.print(f"[red]copy failed:[/red] {exc}")
            return 1
    table = Table("table", "rows", "seconds")
    for r in reports:
        table.add_row(r.name, str(r.target_rows), f"{r.seconds:.2f}")
    console.print(table)
    total = sum(r.target_rows for r in reports)
    console.print(f"copied {total} rows in {len(reports)} tables; row counts match")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="omnidesk", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"omnidesk {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon")
    _add_config(run)
    run.add_argument(
        "--demo",
        action="store_true",
        help="feed sample messages through the API channel once started",
    )
    run.set_defaults(func=cmd_run)

    rules = sub.add_parser("rules", help="check and try the rules")
    rsub = rules.add_subparsers(dest="rules_command", required=True)
    check = rsub.add_parser("check", help="validate rules and run their examples")
    check.add_argument("--rules", help="rules folder (default: the config's, else ./rules)")
    check.add_argument("-c", "--config", default=None, help=CONFIG_HELP)
    check.add_argument(
        "--strict",
        action="store_true",
        help="fail when rules name teams, agents or channels the config does not define",
    )
    check.set_defaults(func=cmd_rules_check)
    test = rsub.add_parser("test", help="show the decision for one message as JSON")
    test.add_argument("--rules")
    test.add_argument("-c", "--config", default=None, help=CONFIG_HELP)
    test.add_argument("--channel", help="channel name (default: api)")
    test.add_argument("--channel-type", help="channel type (default: the channel name)")
    test.add_argument("--subject")
    test.add_argument("--from", dest="sender", help="sender address")
    test.add_argument("--language", help="language code (default: detected)")
    test.add_argument(
        "--attr",
        action="append",
        metavar="KEY=VALUE",
        help="contact attribute, e.g. tier=gold (repeatable)",
    )
    test.add_argument("--at", help="received time, ISO 8601 (default: now)")
    test.add_argument("--model", help="a trained model file or folder, or 'none'")
    src = test.add_mutually_exclusive_group(required=True)
    src.add_argument("--text")
    src.add_argument("--file")
    test.set_defaults(func=cmd_rules_test)

    tokens = sub.add_parser("tokens", help="API tokens")
    tsub = tokens.add_subparsers(dest="tokens_command", required=True)
    tc = tsub.add_parser("create", help="create a token (printed last)")
    tc.add_argument("--role", required=True, choices=("admin", "supervisor", "agent"))
    tc.add_argument("--name", help="what the token is for")
    tc.add_argument("--user", help="the agent username the token acts as")
    _add_config(tc)
    tc.set_defaults(func=cmd_tokens_create)

    ag = sub.add_parser("agents", help="accounts: agents, supervisors, admins")
    asub = ag.add_subparsers(dest="agents_command", required=True)
    aa = asub.add_parser(
        "add",
        help="create an account (password from --password-file, $OMNIDESK_PASSWORD or a prompt)",
        allow_abbrev=False,  # "--password x" must not pass for --password-file
    )
    aa.add_argument("username")
    aa.add_argument("--role", default="agent", choices=("agent", "supervisor", "admin"))
    aa.add_argument("--name", help="display name")
    aa.add_argument("--email")
    aa.add_argument("--team", action="append", help="team membership (repeatable)")
    aa.add_argument("--password-file", help="read the password from this file's first line")
    aa.add_argument(
        "--no-password", action="store_true", help="no password login (API tokens only)"
    )
    _add_config(aa)
    aa.set_defaults(func=cmd_agents_add)
    al = asub.add_parser("list", help="list accounts")
    al.add_argument("--json", action="store_true")
    _add_config(al)
    al.set_defaults(func=cmd_agents_list)
    for name, func, text in (
        ("disable", cmd_agents_disable, "disable (ends sessions, revokes tokens)"),
        ("enable", cmd_agents_enable, "enable a disabled account"),
        ("passwd", cmd_agents_passwd, "set a new password"),
    ):
        ap = asub.add_parser(name, help=text, allow_abbrev=False)
        ap.add_argument("username")
        if name == "passwd":
            ap.add_argument("--password-file")
        _add_config(ap)
        ap.set_defaults(func=func)
    _register_role_and_token_commands(asub, tsub)

    q = sub.add_parser("quarantine", help="input that could not be processed")
    qsub = q.add_subparsers(dest="q_command", required=True)
    ql = qsub.add_parser("list")
    ql.add_argument("--json", action="store_true")
    ql.add_argument("--all", action="store_true", help="include resolved entries")
    ql.add_argument("--limit", type=int, default=100)
    _add_config(ql)
    ql.set_defaults(func=cmd_quarantine_list)
    qs = qsub.add_parser("show")
    qs.add_argument("id", type=int)
    qs.add_argument("--raw", action="store_true", help="write the raw bytes to stdout")
    _add_config(qs)
    qs.set_defaults(func=cmd_quarantine_show)
    qr = qsub.add_parser("retry", help="requeue and reprocess")
    qr.add_argument("ids", type=int, nargs="*")
    qr.add_argument("--all", action="store_true")
    _add_config(qr)
    qr.set_defaults(func=cmd_quarantine_retry)

    mig = sub.add_parser("migrate", help="apply pending migrations and list them")
    mig.add_argument(
        "--status",
        action="store_true",
        help="only list them (applies nothing); exit 1 if any is pending",
    )
    _add_config(mig)
    mig.set_defaults(func=cmd_migrate)

    st = sub.add_parser("store", help="store maintenance")
    stsub = st.add_subparsers(dest="store_command", required=True)
    cp = stsub.add_parser(
        "copy",
        help="copy a whole store to another engine (e.g. SQLite -> PostgreSQL)",
        description="Copy every row with its id; the target must be empty (or --resume)."
        " Stop the daemon first. URLs may be given as env:VARIABLE.",
    )
    cp.add_argument("--from", dest="source", required=True, metavar="URL")
    cp.add_argument("--to", dest="target", required=True, metavar="URL")
    cp.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted copy: keep rows already in the target",
    )
    cp.add_argument("--batch", type=int, default=1000, help="rows per transaction")
    cp.set_defaults(func=cmd_store_copy)

    from .channels.imap import register_cli as register_imap

    register_imap(sub, _add_config, _channel_adapters)  # omnidesk imap backfill CHANNEL
    from .classify_cli import register_cli as register_classify

    # omnidesk classify eval|train|retrain|models, omnidesk rules replay
    register_classify(sub, rsub, _add_config)

    # omnidesk rules timed ... ; omnidesk reports rebuild (service/commands.py)
    from .service import commands as service_commands

    service_commands.add_rules_commands(rsub, _add_config)
    service_commands.add_commands(sub, _add_config)
    # omnidesk contacts import|export|erase, omnidesk privacy retention
    from .customers_cli import register as register_customers

    register_customers(sub, _add_config)
    return p


def _channel_adapters(config: Config) -> Any:
    from .app import channel_adapters

    return channel_adapters(config)


def main(argv: Sequence[str] | None = None) -> int:
    from .startup import StartupError

    words = list(sys.argv[1:] if argv is None else argv)
    previous: dict[int, Any] = {}
    if words[:1] == ["run"]:
        # Building the parser, reading the config and the rules take a moment:
        # a signal then ends ``omnidesk run`` cleanly too (see cmd_run).
        previous = {s: signal.signal(s, _interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if words[:1] != ["run"]:
            # What a command logs (a retried message's warnings, say) goes to
            # stderr with personal data masked, as the daemon's does; commands
            # that read a config set it up again from it.
            from . import logging as odlog

            odlog.configure("info")
        return int(args.func(args))
    except _Interrupted:
        import structlog

        from . import logging as odlog

        if not structlog.is_configured():
            odlog.configure()
        structlog.get_logger("omnidesk.daemon").info("daemon_stopped", during="start-up")
        return 0
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except (CliError, StartupError) as exc:
        print(f"omnidesk: {exc}", file=sys.stderr)
        return exc.code
    except ConnectionError as exc:  # a database out of reach (migrate --status, store copy)
        print(f"omnidesk: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
