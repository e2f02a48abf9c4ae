"""Importing a contacts file (``omnidesk contacts import``, bench/bench_import.py):
the file read row by row (customers/files.py) and handed to the store in
chunks (store/customers_import.py), one transaction each; a dry run puts
every chunk in one transaction and rolls it back, so its report is exactly
what the real import would say."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..customers.fields import FieldSet
from ..customers.files import read_rows
from ..store import Store
from ..store.audit import add_audit
from ..store.base import Db
from ..store.customers_import import ImportReport, import_rows

CHUNK = 2000


class _Rollback(Exception):
    pass


async def import_file(
    store: Store,
    path: Path,
    fields: FieldSet,
    *,
    dry_run: bool = False,
    overwrite: bool = False,
    actor: str = "cli",
    chunk: int = CHUNK,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import ``path``; ``progress(rows done)`` after each chunk."""
    report = ImportReport()
    rows = read_rows(path, set(fields.fields))
    pending: list[tuple[int, dict[str, Any]]] = []

    def batches() -> Any:
        for item in rows:
            pending.append(item)
            if len(pending) >= chunk:
                yield list(pending)
                pending.clear()
        if pending:
            yield list(pending)

    def one(db: Db, part: list[tuple[int, dict[str, Any]]]) -> None:
        import_rows(db, part, fields, report, actor=actor, overwrite=overwrite)

    if dry_run:

        def everything(db: Db) -> None:
            for part in batches():
                one(db, part)
                if progress is not None:
                    progress(report.rows)
            raise _Rollback

        try:
            await store.write(everything)
        except _Rollback:
            pass
        return report
    for part in batches():
        await store.write(one, part)
        if progress is not None:
            progress(report.rows)
    counts = {k: v for k, v in report.as_dict().items() if isinstance(v, int)}
    await store.write(add_audit, actor, "contacts_import", detail={"file": path.name, **counts})
    return report
