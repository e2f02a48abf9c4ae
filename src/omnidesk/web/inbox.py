"""The inbox API: conversations, messages, actions on them, attachments.

The web UI uses exactly these endpoints; so can any integration, with a
bearer token and the same permissions.
"""

from __future__ import annotations

import base64
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from ..channels.base import INLINE_IMAGES, content_disposition
from ..events import Event
from ..htmltext import sanitize_html
from ..model import Attachment as ModelAttachment
from ..model import Category, Priority, Status, now_ts
from ..outbox import ReplyError, queue_reply
from ..store import actions, assignment, jsoncol
from ..store.base import Db, row_dict
from ..store.canned import get_canned, placeholder_values, render
from ..store.contacts import get_contact
from ..store.conversations import get_blob
from ..store.inbox import (
    ConversationFilter,
    conversation_access,
    encode_cursor,
    get_conversation_full,
    list_conversations,
)
from .auth import Principal, current_principal
from .deps import DB_INT_MAX, Id, can_see, check_conversation, get_services, visibility
from .live import presence_tracker
from .service_api import business_left, conversation_extras, live_sla

if TYPE_CHECKING:
    from ..config import Config
    from .services import WebServices

router = APIRouter(prefix="/api/v1")

_CTYPE = re.compile(r"[\w.+-]+/[\w.+-]+")


# -- models (OpenAPI) ----------------------------------------------------------


class Attachment(BaseModel):
    id: int
    sha256: str | None
    filename: str | None
    content_type: str
    size: int
    inline: bool


class MessageOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int
    direction: Literal["in", "out"]
    kind: str
    channel: str
    text: str
    author: str | None = None
    sender_name: str | None = None
    sender_address: str | None = None
    subject: str | None = None
    html: str | None = None
    created_at: float
    delivery_state: str | None = Field(
        None, description="outbound replies: queued | sent | delivered | read | failed"
    )
    delivery_error: str | None = None
    attachments: list[Attachment] = []


class ConversationSummary(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int
    contact_id: int
    contact_name: str | None
    channel: str
    subject: str | None
    status: str
    category: str | None
    confidence: float | None
    priority: str
    team: str | None
    assignee: str | None
    tags: list[str]
    sla_due_at: float | None
    sla_breached: bool
    sla_business_seconds_left: float | None = Field(
        None, description="business seconds to sla_due_at in the team's calendar (< 0: late)"
    )
    created_at: float
    last_message_at: float | None
    last_preview: str | None = Field(None, description="the customer's latest words")
    title: str = Field(description="the subject, else the first words of the first message")
    contact_label: str = Field(description="the contact's name, else an alias and the channel")
    new: bool | None = Field(None, description="never opened by the caller (users only)")
    unread: bool | None = Field(None, description="the customer wrote since the caller looked")


class ConversationPage(BaseModel):
    items: list[ConversationSummary]
    next_before: int | None = Field(None, description="sort=newest: pass as `before`")
    next_cursor: str | None = Field(None, description="sort=urgency: pass as `cursor`")


class ReplyFile(BaseModel):
    filename: str = Field(
        min_length=1,
        max_length=1000,
        description="the file's name; folders, control characters and leading dots are "
        "removed, at most 200 characters are kept",
    )
    content_type: str = Field(
        "application/octet-stream",
        max_length=200,
        description="its media type (`image/png`); anything not of the form type/subtype "
        "is sent as application/octet-stream",
    )
    data: str = Field(
        description="the file's bytes, base64 (standard alphabet, padded); each file at "
        "most `[inbox] max_reply_attachment_kb` KB (default 10240) once decoded"
    )


class ReplyIn(BaseModel):
    text: str = Field(min_length=1, max_length=100_000)
    kind: Literal["reply", "note"] = "reply"
    html: str | None = None
    attachments: list[ReplyFile] = Field(
        [],
        description="files sent with the reply (or kept with the note): at most "
        "`[inbox] max_reply_attachments` files (default 10), each at most "
        "`max_reply_attachment_kb` KB and together at most "
        "`max_reply_attachments_total_kb` KB (default twice the per-file limit); over a "
        "limit the reply is refused with 413 naming the limit and the file. A channel that "
        "cannot carry a file (SMS, X and QQ carry none; WhatsApp, Instagram and WeChat only "
        "some types and sizes) fails such a reply with the reason.",
    )
    last_seen_message_id: int | None = Field(
        None,
        ge=0,
        le=DB_INT_MAX,
        description="the newest message id the agent saw; a reply is refused with 409 when "
        "the customer or another agent wrote since, unless `force` is true",
    )
    force: bool = False


class StatusIn(BaseModel):
    status: Status
    snoozed_until: datetime | None = Field(None, description="required with status=snoozed")
    reason: str | None = Field(None, max_length=1000)


class AssignIn(BaseModel):
    assignee: str | None = Field(None, description="username, or null to unassign")
    team: str | None = Field(
        None, description="move to this team (supervisors and admins); omit to keep the team"
    )
    reason: str | None = Field(None, max_length=1000)


class ClassificationIn(BaseModel):
    category: Category | None = None
    priority: Priority | None = None
    reason: str | None = Field(None, max_length=1000)


class TagsIn(BaseModel):
    add: list[str] = []
    remove: list[str] = []


# -- list and read -------------------------------------------------------------


def _summary(services: WebServices, c: dict[str, Any], now: float) -> dict[str, Any]:
    c["sla_breached"] = c["sla_due_at"] is not None and c["sla_due_at"] < now
    c["sla_business_seconds_left"] = business_left(services, c["team"], c["sla_due_at"], now)
    c.pop("decision", None)
    return c


@router.get("/conversations", tags=["inbox"], response_model=ConversationPage)
async def conversations(
    scope: Literal["all", "mine", "teams", "unassigned"] = Query(
        "all", description="mine: assigned to me; teams: my teams'; unassigned: nobody's yet"
    ),
    status: Status | None = None,
    category: Category | None = None,
    priority: Priority | None = None,
    team: str | None = None,
    assignee: str | None = Query(None, description="username, or 'none' for unassigned"),
    channel: str | None = None,
    tag: str | None = None,
    breached: bool | None = Query(None, description="first-response due time passed"),
    sort: Literal["newest", "urgency"] = Query(
        "newest", description="urgency: priority, then SLA due time, then age"
    ),
    limit: int = Query(50, ge=1, le=500),
    before: int | None = Query(
        None, ge=1, le=DB_INT_MAX, description="sort=newest: `next_before` of the last page"
    ),
    cursor: str | None = Query(None, description="sort=urgency: `next_cursor` of the last page"),
    p: Principal = Depends(current_principal),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    vis_teams, user = visibility(p)
    flt = ConversationFilter(
        status=None if status is None else str(status),
        category=None if category is None else str(category),
        priority=None if priority is None else str(priority),
        team=team,
        assignee=assignee,
        channel=channel,
        tag=tag,
        breached=breached,
        visible_teams=vis_teams,
        visible_user=user,
    )
    if scope == "mine":
        flt.assignee = p.username or "none"
    elif scope == "teams":
        flt.teams = list(p.teams)
    elif scope == "unassigned":
        flt.assignee = "none"
    try:
        items = await services.store.read(
            list_conversations,
            flt,
            limit=limit,
            before=before,
            sort=sort,
            cursor=cursor,
            reader=p.username,
        )
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    now = now_ts()
    full = len(items) == limit
    return {
        "items": [_summary(services, c, now) for c in items],
        "next_before": items[-1]["id"] if full and sort == "newest" else None,
        "next_cursor": encode_cursor(items[-1]) if full and sort == "urgency" else None,
    }


def _full(db: Db, conversation_id: int) -> dict[str, Any] | None:
    conv = get_conversation_full(db, conversation_id)
    if conv is None:
        return None
    conv["corrections"] = actions.corrections_for(db, conversation_id)
    conv["contact"] = get_contact(db, conv["contact_id"])
    return conv


async def visible_conversation(
    services: WebServices, p: Principal, conversation_id: int
) -> dict[str, Any]:
    conv = await services.store.read(_full, conversation_id)
    if conv is None:
        raise HTTPException(404, "no such conversation")
    if not can_see(p, conv):
        raise HTTPException(403, "not your team's conversation")
    contact = conv["contact"]
    if contact is not None and not p.sees_all():
        contact["conversations"] = [x for x in contact["conversations"] if can_see(p, x)]
    return conv


def _permissions(p: Principal, conv: dict[str, Any]) -> dict[str, bool]:
    mine = p.username is not None and conv["assignee"] == p.username
    return {
        "reply": True,
        "reassign": p.sees_all(),
        "change_team": p.sees_all(),
        "take": conv["assignee"] is None and (p.sees_all() or conv["team"] in p.teams),
        "release": mine or p.sees_all(),
        "undo_merge": p.role == "admin",
    }


@router.get("/conversations/{conversation_id}", tags=["inbox"])
async def conversation(
    conversation_id: Id,
    p: Principal = Depends(current_principal),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """The thread (messages in order, with attachments and delivery states),
    the rules' decision and why, corrections, the audit trail, the contact
    (identities, attributes, every conversation on any channel), who else is
    here, and what the caller may do."""
    conv = await visible_conversation(services, p, conversation_id)
    conv["sla_breached"] = conv["sla_due_at"] is not None and conv["sla_due_at"] < now_ts()
    # SLA clocks in business hours, and the satisfaction surveys (web/service_api.py).
    conv["sla"] = live_sla(services, conv)
    extras = await services.store.read(conversation_extras, conversation_id, conv["contact_id"])
    conv["surveys"] = extras["surveys"]
    if conv.get("contact"):
        conv["contact"]["satisfaction"] = extras["contact_satisfaction"]
    conv["presence"] = presence_tracker(services).snapshot(conversation_id)
    conv["can"] = _permissions(p, conv)
    return conv


# -- actions -------------------------------------------------------------------


def safe_filename(raw: str) -> str:
    """A file name an agent's browser sent, as stored and sent on: its last
    path segment, without control characters or leading dots (no hidden
    files, no ``..``), at most 200 characters."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch >= " " and ch != "\x7f" and ch not in '<>:"|?*')
    name = name.strip().lstrip(".").strip()
    if len(name) > 200:
        stem, dot, ext = name.rpartition(".")
        name = f"{stem[: 199 - len(ext)]}.{ext}" if dot and len(ext) <= 20 else name[:200]
    return name or "attachment"


def reply_files(body: ReplyIn, config: Config) -> list[ModelAttachment]:
    """The reply's files decoded and checked against the ``[inbox]`` limits;
    a refusal is an HTTP error naming the limit and the file."""
    if len(body.attachments) > config.reply_attachments_max_count:
        raise HTTPException(
            413,
            f"at most {config.reply_attachments_max_count} files per reply"
            " ([inbox] max_reply_attachments)",
        )
    files: list[ModelAttachment] = []
    total = 0
    for f in body.attachments:
        name = safe_filename(f.filename)
        too_big = HTTPException(
            413,
            f"{name} is larger than {config.reply_attachment_max // 1024} KB"
            " ([inbox] max_reply_attachment_kb)",
        )
        if len(f.data) > (config.reply_attachment_max + 2) // 3 * 4:
            raise too_big  # known from the base64's length: not worth decoding
        try:
            data = base64.b64decode(f.data, validate=True)
        except ValueError:
            raise HTTPException(422, f"{name}: data is not base64") from None
        if len(data) > config.reply_attachment_max:
            raise too_big
        total += len(data)
        if total > config.reply_attachments_total_max:
            raise HTTPException(
                413,
                f"with {name} the files pass {config.reply_attachments_total_max // 1024} KB"
                " together ([inbox] max_reply_attachments_total_kb)",
            )
        ctype = f.content_type.lower().split(";")[0].strip()
        if not _CTYPE.fullmatch(ctype):
            ctype = "application/octet-stream"
        files.append(ModelAttachment(filename=name, content_type=ctype, data=data))
    return files


def _reply(
    db: Db,
    conversation_id: int,
    body: ReplyIn,
    author: str,
    username: str | None,
    files: list[ModelAttachment],
) -> dict[str, Any]:
    if body.kind == "reply" and body.last_seen_message_id is not None and not body.force:
        newer = actions.newer_than(db, conversation_id, body.last_seen_message_id, author=author)
        if newer:
            return {"conflict": newer}
    msg = queue_reply(
        db,
        conversation_id,
        text=body.text,
        author=author,
        kind=body.kind,
        html=body.html,
        attachments=files,
    )
    return {"message": msg, "events": []}


@router.post(
    "/conversations/{conversation_id}/messages",
    tags=["inbox"],
    status_code=201,
    response_model=MessageOut,
    responses={
        409: {"description": "newer messages arrived since `last_seen_message_id`"},
        413: {"description": "the files pass an `[inbox]` limit (named, with the file)"},
    },
)
async def post_message(
    conversation_id: Id,
    body: ReplyIn,
    p: Principal = Depends(current_principal),
    services: WebServices = Depends(get_services),
) -> Any:
    """A reply (delivered through the conversation's channel via the outbox;
    its ``delivery_state`` starts ``queued`` and moves on live) or a private
    note, either with files (``attachments``, base64; see the ``[inbox]``
    limits)."""
    await check_conversation(services, p, conversation_id)
    files = reply_files(body, services.config)
    try:
        out = await services.store.write(_reply, conversation_id, body, p.actor, p.username, files)
    except ReplyError as exc:
        raise HTTPException(409, str(exc)) from None
    if "conflict" in out:
        return JSONResponse(
            {
                "detail": "new messages arrived since you loaded this conversation: read them, "
                "then send again (or send with force=true)",
                "new_messages": out["conflict"],
            },
            status_code=409,
        )
    msg = out["message"]
    if body.kind == "reply":
        services.wake_outbox()
    services.publish(
        [
            {
                "type": "message.created",
                "conversation_id": conversation_id,
                "message_id": msg["id"],
                "direction": "out",
                "kind": msg["kind"],
            },
            *out["events"],
        ]
    )
    return msg


async def _run_action(services: WebServices, fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Run a store action; a change of status, team or assignee may free a
    place, so the teams involved are drained in the same transaction."""
    policy = services.config.assignment

    def act(db: Db) -> list[Event]:
        return assignment.after_change(db, fn(db, *args, **kwargs), policy)

    try:
        events = await services.store.write(act)
    except actions.ActionError as exc:
        raise HTTPException(422, str(exc)) from None
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    services.publish(events)
    return {"changed": bool(events)}


@router.post("/conversations/{conversation_id}/status", tags=["inbox"])
async def change_status(
    conversation_id: Id,
    body: StatusIn,
    p: Principal = Depends(current_principal),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """open, pending, snoozed (until ``snoozed_until``: it wakes up open) or resolved."""
    await check_conversation(services, p, conversation_id)
    until = body.snoozed_until.timestamp() if body.snoozed_until is not None else None
    return await _run_action(
        services,
        actions.set_status,
        conversation_id,
        str(body.status),
        actor=p.actor,
        snoozed_until=until,
        reason=body.reason,
    )


@router.post("/conversations/{conversation_id}/assign", tags=["inbox"])
async def assign(
    conversation_id: Id,
    body: AssignIn,
    p: Principal = Depends(current_principal),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """Assign or reassign to an agent and/or team. Supervisors and admins may
    do anything; an agent may take an unassigned conversation of their team,
    or give back their own."""
    conv = await check_conversation(services, p, conversation_id)
    change_team = "team" in body.model_fields_set
    if not p.sees_all():
        taking = (
            body.assignee == p.username and conv["assignee"] is None and conv["team"] in p.teams
        )
        releasing = body.assignee is None and conv["assignee"] == p.username
        if change_team or not (taking or releasing):
            raise HTTPException(
                403,
                "agents may take unassigned conversations of their teams or release their own;"
                " ask a supervisor to reassign",
            )
    return await _run_action(
        services,
        actions.assign,
        conversation_id,
        actor=p.actor,
        assignee=body.assignee,
        team=body.team,
        change_team=change_team,
        reason=body.reason,
    )


@router.post("/conversations/{conversation_id}/classification", tags=["inbox"])
async def classification(
    conversation_id: Id,
    body: ClassificationIn,
    p: Principal = Depends(current_principal),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """Correct the category and/or priority the rules chose (recorded as a
    correction, with who and when, for teaching the classifier)."""
    await check_conversation(services, p, conversation_id)
    return await _run_action(
        services,
        actions.correct,
        conversation_id,
        actor=p.actor,
        category=None if body.category is None else str(body.category),
        priority=None if body.priority is None else str(body.priority),
        reason=body.reason,
    )


@router.post("/conversations/{conversation_id}/tags", tags=["inbox"])
async def tags(
    conversation_id: Id,
    body: TagsIn,
    p: Principal = Depends(current_principal),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    await check_conversation(services, p, conversation_id)
    return await _run_action(
        services, actions.set_tags, conversation_id, actor=p.actor, add=body.add, remove=body.remove
    )


@router.get("/conversations/{conversation_id}/canned/{canned_id}", tags=["canned"])
async def canned_for(
    conversation_id: Id,
    canned_id: Id,
    p: Principal = Depends(current_principal),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """A canned reply with its placeholders filled in for this conversation."""
    await check_conversation(services, p, conversation_id)

    def load(db: Db) -> tuple[dict[str, Any] | None, dict[str, str]]:
        return get_canned(db, canned_id), placeholder_values(
            db, conversation_id, p.username, p.display_name
        )

    canned, values = await services.store.read(load)
    if canned is None or (
        not p.sees_all() and canned["team"] is not None and canned["team"] not in p.teams
    ):
        raise HTTPException(404, "no such canned reply")
    return {"id": canned_id, "text": render(canned["body"], values)}


# -- messages and attachments --------------------------------------------------


def _message_access(db: Db, message_id: int) -> dict[str, Any] | None:
    r = row_dict(
        db.one("SELECT id, conversation_id, html FROM messages WHERE id = ?", (message_id,))
    )
    if r is None:
        return None
    r["conversation"] = conversation_access(db, int(r["conversation_id"]))
    r["inline_images"] = {
        a["content_id"].strip("<>"): (a["content_type"], a["sha256"])
        for a in db.all(
            "SELECT content_id, content_type, sha256 FROM attachments WHERE message_id = ?"
            " AND content_id IS NOT NULL AND sha256 IS NOT NULL AND size <= 2000000",
            (message_id,),
        )
        if a["content_type"] in INLINE_IMAGES
    }
    return r


async def _visible_message(services: WebServices, p: Principal, message_id: int) -> dict[str, Any]:
    m = await services.store.read(_message_access, message_id)
    if m is None or m["conversation"] is None:
        raise HTTPException(404, "no such message")
    if not can_see(p, m["conversation"]):
        raise HTTPException(403, "not your team's conversation")
    return m


@router.post("/messages/{message_id}/retry", tags=["inbox"])
async def retry(
    message_id: Id,
    p: Principal = Depends(current_principal),
    services: WebServices = Depends(get_services),
) -> dict[str, Any]:
    """Send a failed reply again."""
    await _visible_message(services, p, message_id)
    try:
        out = await services.store.write(actions.retry_reply, message_id, actor=p.actor)
    except actions.ActionError as exc:
        raise HTTPException(409, str(exc)) from None
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    services.wake_outbox()
    services.publish([{"type": "delivery", "state": "queued", **out}])
    return {"delivery_state": "queued", **out}


def frame_csp(remote_images: bool) -> str:
    img = "data: http: https:" if remote_images else "data:"
    return (
        f"default-src 'none'; style-src 'unsafe-inline'; img-src {img}; font-src data:;"
        " base-uri 'none'; form-action 'none'; frame-ancestors 'self'; sandbox"
    )


@router.get("/messages/{message_id}/html", tags=["inbox"], response_class=Response)
async def message_html(
    message_id: Id,
    remote_images: bool = Query(False, description="let remote images (tracking pixels) load"),
    p: Principal = Depends(current_principal),
    services: WebServices = Depends(get_services),
) -> Response:
    """A message's HTML as a document for a sandboxed frame: sanitized again
    at display time, no script can run (CSP ``sandbox``, no script source),
    remote images blocked unless asked for, inline (cid:) images embedded."""
    m = await _visible_message(services, p, message_id)
    html = sanitize_html(m["html"] or "")
    images = m["inline_images"]
    if images:
        blobs = await services.store.read(
            lambda db: {sha: get_blob(db, sha) for _, sha in images.values()}
        )

        def inline(match: re.Match[str]) -> str:
            ct, sha = images.get(match.group(2), (None, None))
            data = blobs.get(sha) if sha else None
            if ct is None or data is None:
                return match.group(0)
            return f'{match.group(1)}"data:{ct};base64,{base64.b64encode(data).decode()}"'

        html = re.sub(r'(src=)"cid:([^"]+)"', inline, html)
    doc = (
        '<!doctype html><html><head><meta charset="utf-8"><base target="_blank">'
        "<style>body{font:14px/1.45 system-ui,sans-serif;margin:8px;color:#1d2330;"
        "overflow-wrap:anywhere}img{max-width:100%;height:auto}</style></head><body>"
        f"{html}</body></html>"
    )
    return Response(
        doc,
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": frame_csp(remote_images),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store",
            "Referrer-Policy": "no-referrer",
        },
    )


def _whole_text(db: Db, message_id: int) -> bytes:
    """A message's whole text: the body as stored, or for a text folded at
    intake (omnidesk/textcap.py) the attachment that keeps it whole."""
    r = db.one("SELECT text, full_text, meta FROM messages WHERE id = ?", (message_id,))
    assert r is not None
    whole: bytes = (r["full_text"] or r["text"] or "").encode()
    folded = jsoncol.loads(r["meta"], {}).get("text_folded")
    if isinstance(folded, dict):
        sha = db.val(
            "SELECT sha256 FROM attachments WHERE message_id = ? AND filename = ?"
            " AND sha256 IS NOT NULL ORDER BY id LIMIT 1",
            (message_id, folded.get("attachment")),
        )
        whole = (get_blob(db, sha) if sha else None) or whole
    return whole


@router.get("/messages/{message_id}/text", tags=["inbox"], response_class=Response)
async def message_text(
    message_id: Id,
    p: Principal = Depends(current_principal),
    services: WebServices = Depends(get_services),
) -> Response:
    """A message's whole text as a plain-text download, however long (the
    inbox folds long text and links here)."""
    await _visible_message(services, p, message_id)
    whole = await services.store.read(_whole_text, message_id)
    return Response(
        whole,
        media_type="text/plain; charset=utf-8",
        headers={
            "Content-Disposition": content_disposition("attachment", f"message-{message_id}.txt"),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "private, no-store",
        },
    )


def _attachment(db: Db, attachment_id: int) -> dict[str, Any] | None:
    r = row_dict(
        db.one(
            "SELECT a.id, a.sha256, a.filename, a.content_type, a.size, m.conversation_id"
            " FROM attachments a JOIN messages m ON m.id = a.message_id WHERE a.id = ?",
            (attachment_id,),
        )
    )
    if r is None:
        return None
    r["conversation"] = conversation_access(db, int(r["conversation_id"]))
    return r


@router.get("/attachments/{attachment_id}", tags=["inbox"], response_class=Response)
async def attachment(
    attachment_id: Id,
    p: Principal = Depends(current_principal),
    services: WebServices = Depends(get_services),
) -> Response:
    """Download an attachment. Common image types are shown inline; anything
    else is a download (``Content-Disposition: attachment``), never rendered
    on this origin."""
    a = await services.store.read(_attachment, attachment_id)
    if a is None or a["conversation"] is None:
        raise HTTPException(404, "no such attachment")
    if not can_see(p, a["conversation"]):
        raise HTTPException(403, "not your team's conversation")
    if a["sha256"] is None:
        raise HTTPException(404, "only a provider reference is stored for this attachment")
    data = await services.store.read(get_blob, a["sha256"])
    if data is None:
        raise HTTPException(404, "attachment content is missing")
    ctype = (a["content_type"] or "").lower().split(";")[0].strip()
    if not _CTYPE.fullmatch(ctype):
        ctype = "application/octet-stream"
    kind = "inline" if ctype in INLINE_IMAGES else "attachment"
    return Response(
        data,
        media_type=ctype,
        headers={
            "Content-Disposition": content_disposition(kind, a["filename"]),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "private, max-age=3600",
        },
    )
