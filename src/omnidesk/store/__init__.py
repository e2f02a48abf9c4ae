"""Persistence: the :class:`Store` interface, its engines and the data-access
functions (plain synchronous functions over a :class:`Db`)."""

from __future__ import annotations

from typing import Any

from .base import Db, Row, Store, row_dict


def open_store(url: str, **options: Any) -> Store:
    """A store for ``url`` (not yet opened: call ``await store.open()``)."""
    if url.startswith("sqlite:///"):
        from .sqlite import SQLiteStore

        return SQLiteStore(url)
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(url, **options)
    raise ValueError(f"unsupported storage url {url!r} (sqlite:/// or postgresql://)")


__all__ = ["Db", "Row", "Store", "open_store", "row_dict"]
