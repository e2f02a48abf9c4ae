"""Structured logs: JSON lines when stderr is not a terminal, pretty when it is.

Values that look like secrets are masked whatever the caller passed: a
``Secret`` prints as ``***`` by itself, and keys named like a credential are
masked here as a second line of defence. E-mail addresses, phone numbers and
card numbers in any value are masked too (``customers/redact.py``), unless
``[privacy] log_personal_data = true``; so are those in the lines of
libraries that log through the standard library.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, TextIO, cast

import structlog

from .customers.redact import mask_personal

_SECRET_KEY = re.compile(r"(secret|token|password|passwd|authorization|api_key|signature)", re.I)


def _mask_secrets(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in list(event):
        if key != "event" and _SECRET_KEY.search(key) and event[key] is not None:
            event[key] = "***"
    return event


def _mask_personal(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = mask_personal(value)
        elif value is not None and not isinstance(value, int | float | bool):
            text = str(value)
            masked = mask_personal(text)
            if masked != text:
                event[key] = masked
    return event


class PersonalDataFilter(logging.Filter):
    """Masks personal data in the standard library's log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        masked = mask_personal(text)
        if masked != text:
            record.msg, record.args = masked, ()
        return True


class _Stderr:
    """Whatever ``sys.stderr`` is when a line is written (not when logging
    was set up: a host that swaps the stream, as a test runner does, must not
    leave the logs writing to one it closed)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


STDERR = _Stderr()


def configure(
    level: str = "info", *, json: bool | None = None, personal_data: bool = False
) -> None:
    """``personal_data``: show e-mail addresses, phone numbers and card
    numbers in clear (``[privacy] log_personal_data``)."""
    lvl = getattr(logging, level.upper(), logging.INFO)
    if json is None:
        json = not sys.stderr.isatty()
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _mask_secrets,
        structlog.processors.StackInfoRenderer(),
    ]
    mask = [] if personal_data else [_mask_personal]
    if json:
        # Masked after the traceback became text: an exception's message may
        # quote an address.
        processors += [
            structlog.processors.format_exc_info,
            *mask,
            structlog.processors.JSONRenderer(),
        ]
    else:
        processors += [*mask, structlog.dev.ConsoleRenderer()]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=cast(TextIO, STDERR)),
        cache_logger_on_first_use=False,
    )
    # Libraries that use stdlib logging (uvicorn, aiosmtpd, httpx) go to stderr too.
    logging.basicConfig(
        level=max(lvl, logging.WARNING),
        stream=STDERR,
        format="%(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        for f in [f for f in handler.filters if isinstance(f, PersonalDataFilter)]:
            handler.removeFilter(f)
        if not personal_data:
            handler.addFilter(PersonalDataFilter())
