"""Store maintenance: inspect migrations without applying them, and copy a
whole store from one engine to another (SQLite -> PostgreSQL when a help desk
outgrows one machine, and back).

:func:`copy_store` copies every table row by row with the same ids, in an
order that satisfies the foreign keys, in batches (one transaction each),
then moves PostgreSQL's id sequences past the copied ids. Search indexes are
rebuilt on the way by the target's own triggers and indexes. The target must
be empty, unless ``resume`` is given: then rows already there are kept (an
interrupted copy continues where it stopped, and a second run copies
nothing). Afterwards the row counts of both sides are compared.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .base import Db, Store, migration_files


class CopyError(Exception):
    """The copy cannot start or did not complete; the message says why."""


# -- migrations ----------------------------------------------------------------
async def migration_status(url: str) -> list[tuple[int, str, str]]:
    """(version, name, "applied" | "pending" | "unknown") for every migration
    this version knows, plus any the database has that it does not know
    ("unknown": a newer omnidesk migrated it). Applies nothing."""
    if url.startswith("sqlite:///"):
        dialect, applied = "sqlite", _sqlite_applied(url[len("sqlite:///") :])
    else:
        dialect, applied = "postgres", await _postgres_applied(url)
    known = migration_files(dialect)
    rows = [(v, n, "applied" if v in applied else "pending") for v, n, _ in known]
    names = {v for v, _, _ in known}
    rows += [(v, applied[v], "unknown") for v in sorted(applied) if v not in names]
    return rows


def _sqlite_applied(path: str) -> dict[int, str]:
    if path == ":memory:" or not Path(path).exists():
        return {}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        ).fetchone()
        if not exists:
            return {}
        return {
            int(v): str(n) for v, n in conn.execute("SELECT version, name FROM schema_migrations")
        }
    finally:
        conn.close()


async def _postgres_applied(url: str) -> dict[int, str]:
    import asyncpg

    from .postgres import redact_url

    try:
        conn = await asyncpg.connect(url, timeout=10)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        raise ConnectionError(f"cannot connect to PostgreSQL at {redact_url(url)}: {exc}") from exc
    try:
        if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
            return {}
        return {
            int(r[0]): str(r[1])
            for r in await conn.fetch("SELECT version, name FROM schema_migrations")
        }
    finally:
        await conn.close()


# -- copy ----------------------------------------------------------------------
@dataclass(slots=True)
class Table:
    name: str
    columns: list[str]
    key: list[str]  # primary key columns (keyset pagination)
    parents: set[str] = field(default_factory=set)  # tables its foreign keys point to
    self_refs: list[str] = field(default_factory=list)  # columns referencing this table
    binary: bool = False  # has BLOB/BYTEA columns: smaller batches


@dataclass(slots=True)
class TableReport:
    name: str
    source_rows: int
    copied: int = 0
    target_rows: int = 0
    seconds: float = 0.0


_SKIP = {"schema_migrations"}


def describe(db: Db) -> dict[str, Table]:
    """The store's tables, columns, keys and foreign keys (either engine)."""
    return _describe_sqlite(db) if db.dialect == "sqlite" else _describe_postgres(db)


def _describe_sqlite(db: Db) -> dict[str, Table]:
    rows = db.all("SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name")
    virtual = [r["name"] for r in rows if str(r["sql"] or "").upper().startswith("CREATE VIRTUAL")]
    out: dict[str, Table] = {}
    for r in rows:
        name = r["name"]
        if (
            name in _SKIP
            or name.startswith("sqlite_")
            or name in virtual
            or any(name.startswith(v + "_") for v in virtual)  # FTS shadow tables
        ):
            continue
        info = db.all(f'PRAGMA table_info("{name}")')
        cols = [c["name"] for c in info]
        key = [c["name"] for c in sorted(info, key=lambda c: c["pk"]) if c["pk"]]
        t = Table(name, cols, key or ["rowid"])
        t.binary = any(str(c["type"]).upper() == "BLOB" for c in info)
        for fk in db.all(f'PRAGMA foreign_key_list("{name}")'):
            if fk["table"] == name:
                t.self_refs.append(fk["from"])
            else:
                t.parents.add(fk["table"])
        out[name] = t
    return out


def _describe_postgres(db: Db) -> dict[str, Table]:
    out: dict[str, Table] = {}
    for r in db.all(
        "SELECT c.relname AS name FROM pg_class c"
        " WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'"
        " ORDER BY c.relname"
    ):
        name = r["name"]
        if name in _SKIP:
            continue
        info = db.all(
            "SELECT a.attname AS col, format_type(a.atttypid, a.atttypmod) AS type"
            " FROM pg_attribute a WHERE a.attrelid = ?::regclass AND a.attnum > 0"
            " AND NOT a.attisdropped ORDER BY a.attnum",
            (f'"{name}"',),
        )
        key = [
            k["col"]
            for k in db.all(
                "SELECT a.attname AS col FROM pg_index i"
                " JOIN unnest(i.indkey) WITH ORDINALITY AS u(attnum, n) ON true"
                " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = u.attnum"
                " WHERE i.indrelid = ?::regclass AND i.indisprimary ORDER BY u.n",
                (f'"{name}"',),
            )
        ]
        t = Table(name, [c["col"] for c in info], key or ["ctid"])
        t.binary = any(c["type"] == "bytea" for c in info)
        for fk in db.all(
            "SELECT confrelid::regclass::text AS parent, a.attname AS col FROM pg_constraint k"
            " JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]"
            " WHERE k.conrelid = ?::regclass AND k.contype = 'f'",
            (f'"{name}"',),
        ):
            parent = str(fk["parent"]).strip('"').rsplit(".", 1)[-1].strip('"')
            if parent == name:
                t.self_refs.append(fk["col"])
            else:
                t.parents.add(parent)
        out[name] = t
    return out


def copy_order(tables: dict[str, Table]) -> list[str]:
    """Parents before children (foreign keys), otherwise alphabetical."""
    done: list[str] = []
    left = dict(tables)
    while left:
        ready = sorted(n for n, t in left.items() if not (t.parents & left.keys()))
        if not ready:  # a cycle between tables: none in omnidesk's schema
            raise CopyError(f"circular foreign keys between {sorted(left)}")
        for n in ready:
            done.append(n)
            del left[n]
    return done


def _count(db: Db, table: str) -> int:
    return int(db.val(f'SELECT COUNT(*) FROM "{table}"') or 0)


def _fetch(db: Db, table: Table, after: Sequence[Any] | None, limit: int) -> list[tuple[Any, ...]]:
    cols = ", ".join(f'"{c}"' for c in table.columns)
    keys = ", ".join(f'"{k}"' for k in table.key)
    where = ""
    params: list[Any] = []
    if after is not None:
        marks = ", ".join("?" * len(table.key))
        where = f" WHERE ({keys}) > ({marks})" if len(table.key) > 1 else f" WHERE {keys} > ?"
        params.extend(after)
    rows = db.all(
        f'SELECT {cols} FROM "{table.name}"{where} ORDER BY {keys} LIMIT ?', (*params, limit)
    )
    return [tuple(r[c] for c in table.columns) for r in rows]


def _insert(
    db: Db, table: str, columns: list[str], rows: list[tuple[Any, ...]], resume: bool
) -> None:
    cols = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" * len(columns))
    tail = " ON CONFLICT DO NOTHING" if resume else ""
    db.many(f'INSERT INTO "{table}" ({cols}) VALUES ({marks}){tail}', rows)


def _set_refs(db: Db, table: str, key: str, col: str, pairs: list[tuple[Any, Any]]) -> None:
    db.many(f'UPDATE "{table}" SET "{col}" = ? WHERE "{key}" = ?', [(v, k) for k, v in pairs])


def _fix_sequences(db: Db, tables: Sequence[str]) -> None:
    """PostgreSQL: every serial column's sequence continues after the copied ids."""
    if db.dialect != "postgres":
        return
    for name in tables:
        for r in db.all(
            "SELECT a.attname AS col, pg_get_serial_sequence(?, a.attname) AS seq"
            " FROM pg_attribute a WHERE a.attrelid = ?::regclass AND a.attnum > 0"
            " AND NOT a.attisdropped",
            (f'"{name}"', f'"{name}"'),
        ):
            if r["seq"]:
                db.val(
                    f'SELECT setval(?::regclass, COALESCE(MAX("{r["col"]}"), 1),'
                    f' MAX("{r["col"]}") IS NOT NULL) FROM "{name}"',
                    (r["seq"],),
                )


Progress = Callable[[str, int, int], None]  # (table, rows done, rows total)


async def copy_store(
    source: Store,
    target: Store,
    *,
    resume: bool = False,
    batch: int = 1000,
    progress: Progress | None = None,
) -> list[TableReport]:
    """Copy every row of ``source`` into ``target`` (both open, same schema
    version: opening them applied this version's migrations). Raises
    :class:`CopyError` when the target holds data (without ``resume``), the
    schemas differ, or the row counts do not match afterwards."""
    src_tables = await source.read(describe)
    dst_tables = await target.read(describe)
    missing = sorted(set(src_tables) - set(dst_tables))
    if missing:
        raise CopyError(f"the target has no table {', '.join(missing)}: is it another version?")
    order = [n for n in copy_order(dst_tables) if n in src_tables]
    counts = {n: await source.read(_count, n) for n in order}
    if not resume:
        full = {n: k for n in order if (k := await target.read(_count, n))}
        if full:
            listed = ", ".join(f"{n} ({k} rows)" for n, k in list(full.items())[:5])
            raise CopyError(
                f"the target already holds data: {listed}. Copy into an empty database,"
                " or pass --resume to continue an interrupted copy (rows already there are kept)"
            )
    reports = []
    for name in order:
        s, d = src_tables[name], dst_tables[name]
        cols = [c for c in s.columns if c in d.columns]
        extra = [c for c in s.columns if c not in d.columns]
        if extra:
            raise CopyError(f"{name}: the target has no column {', '.join(extra)}")
        rep = TableReport(name, counts[name])
        t0 = time.perf_counter()
        size = max(1, batch // 10) if s.binary else batch
        refs = [c for c in d.self_refs if c in cols]
        later: dict[str, list[tuple[Any, Any]]] = {c: [] for c in refs}
        key_idx = [cols.index(k) for k in s.key] if all(k in cols for k in s.key) else None
        if key_idx is None:
            raise CopyError(f"{name}: no primary key to copy it by")
        after: tuple[Any, ...] | None = None
        if progress:
            progress(name, 0, rep.source_rows)
        while True:
            rows = await source.read(_fetch, s, after, size)
            if not rows:
                break
            after = tuple(rows[-1][i] for i in key_idx)
            if refs:
                # A row may point at a later row of its own table (a contact
                # merged into a newer one): insert NULL, set it afterwards.
                out = []
                for r in rows:
                    r2 = list(r)
                    for c in refs:
                        i = cols.index(c)
                        if r2[i] is not None:
                            later[c].append((r2[key_idx[0]], r2[i]))
                            r2[i] = None
                    out.append(tuple(r2))
                rows = out
            await target.write(_insert, name, cols, rows, resume)
            rep.copied += len(rows)
            if progress:
                progress(name, rep.copied, rep.source_rows)
        for c, pairs in later.items():
            for i in range(0, len(pairs), batch):
                await target.write(_set_refs, name, s.key[0], c, pairs[i : i + batch])
        rep.seconds = time.perf_counter() - t0
        reports.append(rep)
    await target.write(_fix_sequences, order)
    bad = []
    for rep in reports:
        rep.target_rows = await target.read(_count, rep.name)
        if rep.target_rows != rep.source_rows:
            bad.append(f"{rep.name}: {rep.source_rows} in the source, {rep.target_rows} copied")
    if bad:
        raise CopyError("row counts differ after the copy: " + "; ".join(bad))
    return reports


async def copy_urls(
    src_url: str,
    dst_url: str,
    *,
    resume: bool = False,
    batch: int = 1000,
    progress: Progress | None = None,
) -> list[TableReport]:
    """:func:`copy_store` between two storage URLs (opening both applies this
    version's migrations, as ``omnidesk run`` would)."""
    from . import open_store

    if src_url == dst_url:
        raise CopyError("source and target are the same store")
    src_path = src_url[len("sqlite:///") :] if src_url.startswith("sqlite:///") else None
    if src_path is not None and not await asyncio.to_thread(Path(src_path).exists):
        raise CopyError(f"no SQLite store at {src_path}")
    source = open_store(src_url)
    target = open_store(dst_url)
    await source.open()
    try:
        await target.open()
        try:
            return await copy_store(source, target, resume=resume, batch=batch, progress=progress)
        finally:
            await target.close()
    finally:
        await asyncio.shield(source.close())
