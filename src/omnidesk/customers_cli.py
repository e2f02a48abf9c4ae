"""``omnidesk contacts import|export|erase`` and ``omnidesk privacy retention``
(docs/customers.md)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .cmdline import CliError
from .config import Config, load_config


def _config(args: argparse.Namespace) -> Config:
    """The config, and logging set up as the daemon's (personal data masked)."""
    from . import logging as odlog

    config = load_config(args.config)
    odlog.configure(config.log_level, personal_data=config.privacy.log_personal_data)
    return config


def _store_run(config: Config, fn: Callable[[Any], Any]) -> Any:
    from .store import open_store

    async def go() -> Any:
        store = open_store(config.storage_url)
        try:
            await store.open()
        except (ConnectionError, OSError) as exc:
            await store.close()
            raise CliError(f"cannot open the store: {exc}", 1) from None
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(go())


def cmd_import(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .customers.files import ImportFileError, read_rows
    from .service.imports import import_file

    config = _config(args)
    path = Path(args.file)
    fields = config.customer_fields.contact
    try:
        total = sum(1 for _ in read_rows(path, set(fields.fields)))
    except ImportFileError as exc:
        raise CliError(str(exc), 2) from None
    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("dry run" if args.dry_run else "importing", total=max(total, 1))

        async def go(store: Any) -> Any:
            return await import_file(
                store,
                path,
                fields,
                dry_run=args.dry_run,
                overwrite=args.overwrite,
                actor="cli",
                progress=lambda n: bar.update(task, completed=n),
            )

        report = _store_run(config, go)
    out = report.as_dict()
    if args.report:
        Path(args.report).write_text(json.dumps(out, indent=2, ensure_ascii=False))
    print(
        f"{out['rows']} rows: {out['created']} created, {out['updated']} updated,"
        f" {out['unchanged']} unchanged, {out['conflicting']} conflicting,"
        f" {out['invalid']} invalid" + (" (dry run: nothing written)" if args.dry_run else "")
    )
    for c in out["conflicts"][: args.show]:
        print(f"{path}:{c['row']}: conflict: {c['reason']}")
    for e in out["errors"][: args.show]:
        print(f"{path}:{e['row']}: invalid: {e['reason']}")
    hidden = len(out["conflicts"]) + len(out["errors"]) - 2 * args.show
    if hidden > 0 and not args.report:
        print("... more rows listed with --report FILE.json", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .service.privacy import export_archive

    config = _config(args)

    async def go(store: Any) -> bytes | None:
        return await export_archive(store, args.contact_id, actor="cli")

    data = _store_run(config, go)
    if data is None:
        raise CliError(f"no contact {args.contact_id}", 1)
    out = Path(args.output or f"contact-{args.contact_id}.zip")
    out.write_bytes(data)
    print(f"wrote {out} ({len(data)} bytes)")
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    from .service.privacy import erase
    from .store.privacy import PrivacyError

    config = _config(args)
    if args.confirm != args.contact_id:
        raise CliError(f"erasing cannot be undone: repeat the id, --confirm {args.contact_id}", 2)

    async def go(store: Any) -> dict[str, Any]:
        return await erase(
            store,
            args.contact_id,
            actor="cli",
            mode=args.mode or config.privacy.erase_messages,
        )

    try:
        out = _store_run(config, go)
    except LookupError:
        raise CliError(f"no contact {args.contact_id}", 1) from None
    except PrivacyError as exc:
        raise CliError(str(exc), 1) from None
    print(
        f"contact {args.contact_id} erased: {out['conversations']} conversations,"
        f" {out['messages']} messages ({out['mode']}), {out['identities']} identities"
    )
    return 0


def cmd_retention(args: argparse.Namespace) -> int:
    import time

    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from .service.privacy import run_retention

    config = _config(args)
    policies = config.privacy.retention
    if args.policy:
        policies = tuple(p for p in policies if p.name == args.policy)
        if not policies:
            raise CliError(f"no retention policy {args.policy!r} in [privacy.retention]", 2)
    if not policies:
        print("no retention policy: see [privacy.retention] in docs/customers.md")
        return 0
    now = time.time()
    runs = []
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), console=Console(stderr=True)
    ) as bar:
        for p in policies:
            task = bar.add_task(f"{p.name}: 0 conversations")

            def tick(done: int, _messages: int, task: Any = task, name: str = p.name) -> None:
                bar.update(task, description=f"{name}: {done} conversations")

            async def go(store: Any, p: Any = p, tick: Any = tick) -> dict[str, Any]:
                return await run_retention(
                    store, p, now, dry_run=args.dry_run, actor="cli", progress=tick
                )

            runs.append(_store_run(config, go))
    for r in runs:
        done = {"delete": "deleted", "redact": "redacted"}[r["action"]]
        what = "would " + r["action"] if r["dry_run"] else done
        print(
            f"{r['policy']}: {what} {r['conversations']} conversations,"
            f" {r['messages']} messages (run {r['id']})"
        )
        if args.list:
            print("  " + " ".join(str(i) for i in r["ids"]))
    return 0


def register(sub: Any, add_config: Callable[[argparse.ArgumentParser], None]) -> None:
    c = sub.add_parser("contacts", help="import, export and erase contacts")
    csub = c.add_subparsers(dest="contacts_command", required=True)
    imp = csub.add_parser(
        "import",
        help="import contacts from CSV or JSON Lines",
        description="Rows are matched by email, phone (E.164) or handle (KIND:ADDRESS);"
        " a row whose values differ from the contact's is reported as conflicting and"
        " changes nothing (unless --overwrite).",
    )
    imp.add_argument("file")
    imp.add_argument("--dry-run", action="store_true", help="report only; write nothing")
    imp.add_argument("--overwrite", action="store_true", help="replace values that differ")
    imp.add_argument("--report", metavar="FILE", help="write the full report as JSON")
    imp.add_argument("--show", type=int, default=20, help="conflicts and errors to print")
    add_config(imp)
    imp.set_defaults(func=cmd_import)
    ex = csub.add_parser("export", help="everything held about a contact, as a ZIP archive")
    ex.add_argument("contact_id", type=int)
    ex.add_argument("-o", "--output", help="the archive (default: contact-ID.zip)")
    add_config(ex)
    ex.set_defaults(func=cmd_export)
    er = csub.add_parser("erase", help="erase a contact (cannot be undone)")
    er.add_argument("contact_id", type=int)
    er.add_argument("--confirm", type=int, required=True, help="the contact's id again")
    er.add_argument("--mode", choices=("redact", "remove"), help="its messages (default: config)")
    add_config(er)
    er.set_defaults(func=cmd_erase)
    pr = sub.add_parser("privacy", help="retention of old conversations")
    psub = pr.add_subparsers(dest="privacy_command", required=True)
    rt = psub.add_parser("retention", help="run the [privacy.retention] policies now")
    rt.add_argument("--policy", help="only this policy")
    rt.add_argument("--dry-run", action="store_true", help="list what would go; change nothing")
    rt.add_argument("--list", action="store_true", help="print the conversation ids")
    add_config(rt)
    rt.set_defaults(func=cmd_retention)
