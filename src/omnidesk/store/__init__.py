"""Persistence: the :class:`Store` interface, its engines and the data-access
functions (plain synchronous functions over a :class:`Db`)."""

from __future__ import annotations

from .base import Db, Row, Store, row_dict


def open_store(url: str, **options: object) -> Store:
    """A store for ``url`` (not yet opened: call ``await store.open()``)."""
    if url.startswith("sqlite:///"):
        from .sqlite import SQLiteStore

        return SQLiteStore(url)
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from .postgres import PostgresStore  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:  # pragma: no cover - until the engine lands
            raise ValueError(f"PostgreSQL engine unavailable: {exc}") from exc
        return PostgresStore(url, **options)  # type: ignore[no-any-return,unused-ignore]
    raise ValueError(f"unsupported storage url {url!r} (sqlite:/// or postgresql://)")


__all__ = ["Db", "Row", "Store", "open_store", "row_dict"]
