"""Error answers as the OpenAPI schema declares them.

FastAPI declares every 422 as a validation error whose ``detail`` is a list
of ``{"loc", "msg", "type"}``; a handler that raised ``HTTPException(422,
"text")`` answered with a string there instead, and a client generated from
the schema could not read it. :func:`http_error` puts such a message into the
declared shape (``loc`` ``["body"]``), so every 422 reads the same."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi.exception_handlers import http_exception_handler
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


def validation_error(msg: str, loc: Sequence[str | int] = ("body",)) -> dict[str, Any]:
    """One item of a 422's ``detail`` list."""
    return {"type": "value_error", "loc": list(loc), "msg": msg, "input": None}


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 422 and isinstance(exc.detail, str):
        return JSONResponse(
            {"detail": [validation_error(exc.detail)]}, status_code=422, headers=exc.headers
        )
    return await http_exception_handler(request, exc)
