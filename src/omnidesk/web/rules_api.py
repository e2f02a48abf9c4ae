"""Admins read and edit the rule files over HTTP.

A new text is validated before it is saved: the whole rules folder is copied
to a temporary folder with the new text in place and loaded there
(``load_rules``), so a file that breaks another file's references is refused
too. A valid text is written atomically (temporary file + rename), recorded
in the audit trail with its author, reason and a unified diff, and the
running rules are reloaded at once.
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import os
import re
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ..model import RuleInput
from ..rules import RulesError, detect_language, load_rules
from ..rules.engine import RuleSet
from ..rules.problems import Problem
from ..store.audit import add_audit
from .auth import Principal, require_admin
from .deps import get_services
from .errors import validation_error

if TYPE_CHECKING:
    from .services import WebServices

router = APIRouter(prefix="/api/v1", tags=["rules"])

FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,80}\.toml")
MAX_SIZE = 1_000_000


class RulesFileIn(BaseModel):
    text: str = Field(max_length=MAX_SIZE)
    base_sha256: str | None = Field(
        None,
        description="sha256 of the text you edited (from GET); if the file changed since, "
        "the save is refused with 409 instead of overwriting someone else's edit",
    )
    reason: str | None = Field(None, max_length=1000)


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def _list(folder: Path) -> list[dict[str, Any]]:
    files = sorted(p for p in folder.glob("*.toml") if not p.name.startswith("."))
    return [{"name": p.name, "size": p.stat().st_size} for p in files]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _path(services: WebServices, name: str) -> Path:
    if not FILE_NAME.fullmatch(name) or name.startswith("."):
        raise HTTPException(404, "a rules file is a name like 50-routing.toml")
    return services.rules.directory / name


@router.get("/rules")
async def rules_files(
    _: Principal = Depends(require_admin), services: WebServices = Depends(get_services)
) -> dict[str, Any]:
    """The rule files, and the running rules' version and last reload error."""
    err = services.rules.last_error
    return {
        "files": await asyncio.to_thread(_list, services.rules.directory),
        "version": services.rules.version,
        "error": None if err is None else [str(x) for x in err.problems],
    }


@router.get("/rules/{name}")
async def rules_file(
    name: str, _: Principal = Depends(require_admin), services: WebServices = Depends(get_services)
) -> dict[str, Any]:
    text = await asyncio.to_thread(_read, _path(services, name))
    if text is None:
        raise HTTPException(404, "no such rules file")
    return {"name": name, "text": text, "sha256": _sha(text)}


def _validate(folder: Path, name: str, text: str) -> list[str] | None:
    """Problems with the folder as it would be, or None when it loads."""
    problems, _rules = _trial(folder, name, text)
    return None if problems is None else [str(p) for p in problems]


def _trial(folder: Path, name: str, text: str) -> tuple[list[Problem] | None, RuleSet | None]:
    """The folder as it would be with ``text`` as ``name``: its problems
    (file names relative to the folder), or the rules it loads to."""
    with tempfile.TemporaryDirectory(prefix="omnidesk-rules-") as tmp:
        trial = Path(tmp) / "rules"
        shutil.copytree(folder, trial, ignore=shutil.ignore_patterns(".*"))
        (trial / name).write_text(text, encoding="utf-8")
        try:
            return None, load_rules(trial)
        except RulesError as exc:
            return [
                Problem(str(p.file).replace(str(trial) + os.sep, ""), p.line, p.reason)
                for p in exc.problems
            ], None


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@router.put("/rules/{name}", responses={422: {"description": "the rules do not validate"}})
async def save_rules_file(
    name: str,
    body: RulesFileIn,
    p: Principal = Depends(require_admin),
    services: WebServices = Depends(get_services),
) -> Any:
    """Validate, save atomically, record (author, reason, diff) and hot-reload.
    Invalid rules are refused with every problem listed; the running rules
    stay as they were."""
    path = _path(services, name)
    # Two admins saving at once must not interleave check and write.
    async with services.rules_save_lock:
        return await _save(services, p, path, name, body)


async def _save(
    services: WebServices, p: Principal, path: Path, name: str, body: RulesFileIn
) -> Any:
    old = await asyncio.to_thread(_read, path) or ""
    if body.base_sha256 is not None and body.base_sha256 != _sha(old):
        raise HTTPException(409, "the file changed since you loaded it: reload and edit again")
    problems = await asyncio.to_thread(_validate, services.rules.directory, name, body.text)
    if problems is not None:
        why = "the rules do not validate: "
        detail = [validation_error(why + x, ("body", "text")) for x in problems]
        return JSONResponse({"detail": detail, "problems": problems}, 422)
    if body.text == old:
        return {"name": name, "changed": False, "version": services.rules.version}
    diff = "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            body.text.splitlines(keepends=True),
            fromfile=f"a/{name}",
            tofile=f"b/{name}",
        )
    )
    await asyncio.to_thread(_write_atomically, path, body.text)
    await services.store.write(
        add_audit,
        p.actor,
        "rules_edited",
        reason=body.reason,
        detail={
            "file": name,
            "diff": diff[:200_000],
            "sha256_before": _sha(old),
            "sha256_after": _sha(body.text),
        },
    )
    reloaded = await asyncio.to_thread(services.rules.reload)
    if reloaded:
        services.rules_reloaded()
    err = services.rules.last_error
    return {
        "name": name,
        "changed": True,
        "sha256": _sha(body.text),
        "reloaded": reloaded,
        "version": services.rules.version,
        "error": None if err is None else str(err),
        "diff": diff,
    }


# -- trying unsaved rules ---------------------------------------------------------


class RulesCheckIn(BaseModel):
    text: str = Field(max_length=MAX_SIZE)


class RulesTryIn(RulesCheckIn):
    message: str = Field(min_length=1, max_length=100_000)
    subject: str = Field("", max_length=1000)
    channel: str = Field("api", max_length=100)
    channel_type: str | None = Field(None, max_length=100)
    sender: str = Field("", max_length=320)
    attributes: dict[str, str] = Field(default_factory=dict, max_length=50)


def _problem_list(problems: list[Problem]) -> list[dict[str, Any]]:
    return [{"file": p.file, "line": p.line, "reason": p.reason} for p in problems]


@router.post("/rules/{name}/check")
async def check_rules_text(
    name: str,
    body: RulesCheckIn,
    _: Principal = Depends(require_admin),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """Problems the folder would have with this (unsaved) text as ``name``,
    each with its file and line: nothing is saved."""
    _path(services, name)
    problems, _rules = await asyncio.to_thread(_trial, services.rules.directory, name, body.text)
    return {"ok": problems is None, "problems": _problem_list(problems or [])}


@router.post("/rules/{name}/try", responses={422: {"description": "the rules do not validate"}})
async def try_rules_text(
    name: str,
    body: RulesTryIn,
    _: Principal = Depends(require_admin),
    services: WebServices = Depends(get_services),
) -> Any:
    """The decision for one message under the folder as it would be with
    this (unsaved) text as ``name``: the same evaluation as ``omnidesk rules
    test`` (with the trained model in use), nothing saved or recorded."""
    _path(services, name)
    problems, ruleset = await asyncio.to_thread(_trial, services.rules.directory, name, body.text)
    if ruleset is None:
        return JSONResponse(
            {"detail": "the rules do not validate", "problems": _problem_list(problems or [])},
            status_code=422,
        )
    ruleset = ruleset.with_model(services.rules.model)
    inp = RuleInput(
        channel=body.channel,
        channel_type=body.channel_type or _channel_type(services, body.channel),
        sender=body.sender,
        subject=body.subject,
        text=body.message,
        language=detect_language(body.message),
        contact=dict(body.attributes),
        received_at=datetime.now(UTC),
    )
    decision = await asyncio.to_thread(ruleset.evaluate, inp)
    return {"decision": decision.to_dict()}


def _channel_type(services: WebServices, channel: str) -> str:
    adapter = services.adapters.get(channel)
    return adapter.type if adapter is not None else channel
