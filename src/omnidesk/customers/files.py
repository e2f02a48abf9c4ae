"""Reading contact import files: CSV (a header row, UTF-8, comma or
semicolon) or JSON Lines (one object a line). Each row comes out as
(line number, {column: value}) with empty cells left out; a line that cannot
be read is a row with ``_error``, reported like any other bad row."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Columns that are no field: who the contact is, how to find them, where they work.
IDENTITY_COLUMNS = ("email", "phone", "handle", "handles")
SPECIAL_COLUMNS = ("name", "company", *IDENTITY_COLUMNS)


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (one line saying why)."""


def file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".txt", ".tsv"):
        return "csv"
    raise ImportFileError(f"{path}: give a .csv or .jsonl file")


def read_rows(path: Path, fields: set[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """The rows of ``path``; a CSV header naming a column that is neither
    special nor one of ``fields`` stops the import before any row."""
    fmt = file_format(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ImportFileError(f"{path}:{line}: the file must be UTF-8 text") from None
    if fmt == "jsonl":
        yield from _jsonl(text)
    else:
        yield from _csv(path, text, fields)


def _jsonl(text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            yield n, {"_error": f"not JSON: {exc.msg}"}
            continue
        if not isinstance(obj, dict):
            yield n, {"_error": "not a JSON object"}
            continue
        yield n, {k: v for k, v in obj.items() if v is not None and v != ""}


def _csv(path: Path, text: str, fields: set[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    if path.suffix.lower() == ".tsv":
        delimiter = "\t"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise ImportFileError(f"{path}: the file is empty") from None
    columns = [h.strip().lower() for h in header]
    if len(set(columns)) != len(columns):
        raise ImportFileError(f"{path}:1: a column is named twice")
    try:
        check_columns(set(columns), fields)
    except ImportFileError as exc:
        raise ImportFileError(f"{path}:1: {exc}") from None
    for row in reader:
        n = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(columns):
            yield n, {"_error": f"{len(row)} cells where the header has {len(columns)}"}
            continue
        yield n, {c: cell.strip() for c, cell in zip(columns, row, strict=True) if cell.strip()}


def check_columns(columns: set[str], fields: set[str]) -> None:
    """Every column must be a special column or a defined field: a typo
    would otherwise become a stray attribute on 100,000 contacts."""
    unknown = sorted(c for c in columns if c not in SPECIAL_COLUMNS and c not in fields)
    if unknown:
        known = ", ".join([*SPECIAL_COLUMNS, *sorted(fields)])
        raise ImportFileError(
            f"unknown column {unknown[0]!r} (columns are {known}; define fields in [customers])"
        )
