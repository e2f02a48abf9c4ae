"""Satisfaction (CSAT) and loyalty surveys after a conversation is resolved.

The scheduler plans one survey per resolution (``schedule``: at once or after
``[survey] delay``; cancelled if the conversation reopens first; skipped, with
the reason kept, for spam, auto-replies, merged contacts, conversations no
person answered, or a contact surveyed within ``quiet_days``) and sends it on
the conversation's channel (``send``):

- to an e-mail address: one link per point of the scale. A link opens a page
  (``web/surveys.py``) with that point chosen; only the page's submit records
  it, so a mail scanner that follows every link records nothing. The link
  carries a signed token (itsdangerous) that expires with the survey.
- on a chat channel: the question and the scale as a message; the customer's
  answer (a digit, or a button where the channel has them: the web chat's
  widget, Telegram's inline keyboard) is taken as the rating by the pipeline
  (``capture_chat_answer``) instead of reopening the conversation. With the
  loyalty question on, it follows the rating.

One answer per survey, changeable until the survey expires; the reports count
the change, not both answers.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from ..outbox import ReplyError
from ..rules.service import ServiceRules, SurveySettings, SurveyTexts, good_rating
from ..store import jsoncol
from ..store import service as svc
from ..store.audit import add_audit
from ..store.base import Db, row_dict
from ..store.channel_state import get_state
from ..store.reports import Dims, add_fact
from .effects import queue_automatic
from .satisfaction import refresh_contact

LINK_CHANNEL_TYPES = frozenset({"smtp", "imap"})
TOKEN_SALT = "omnidesk-survey"
LOYALTY_MAX = 10

_SURVEY_COLUMNS = (
    "id, conversation_id, contact_id, channel, resolved_at, state, note, scale, ask_loyalty,"
    " language, send_at, sent_at, expires_at, message_id, rating, loyalty_score, comment,"
    " answered_at, changed_at, answered_via, team, agent, category, created_at"
)


# -- the signing key and tokens ------------------------------------------------------


def signing_key(db: Db) -> str:
    """The key survey links are signed with: made once, shared by every
    instance through the database."""
    key = get_state(db, "service", "survey_key")
    if key is None:
        db.run(
            "INSERT INTO channel_state (channel, key, value) VALUES ('service', 'survey_key', ?)"
            " ON CONFLICT (channel, key) DO NOTHING",
            (secrets.token_urlsafe(32),),
        )
        key = get_state(db, "service", "survey_key")
    assert key is not None
    return key


def make_token(key: str, survey_id: int) -> str:
    return URLSafeTimedSerializer(key, salt=TOKEN_SALT).dumps({"s": survey_id})


class TokenError(Exception):
    def __init__(self, kind: str) -> None:  # "invalid" | "expired"
        super().__init__(kind)
        self.kind = kind


def read_token(key: str, token: str, max_age: float) -> int:
    try:
        data = URLSafeTimedSerializer(key, salt=TOKEN_SALT).loads(token, max_age=int(max_age))
    except SignatureExpired:
        raise TokenError("expired") from None
    except BadSignature:
        raise TokenError("invalid") from None
    sid = data.get("s") if isinstance(data, dict) else None
    if not isinstance(sid, int) or isinstance(sid, bool):
        raise TokenError("invalid")
    return sid


# -- texts --------------------------------------------------------------------------


def scale_lines(texts: SurveyTexts, scale: int) -> list[tuple[int, str]]:
    labels = texts.labels.get(scale) or tuple(str(i) for i in range(1, scale + 1))
    return [(i + 1, label) for i, label in enumerate(labels)]


def chat_question(texts: SurveyTexts, scale: int) -> str:
    choices = "  ".join(f"{n} = {label}" for n, label in scale_lines(texts, scale))
    hint = texts.reply_hint.format(min=1, max=scale)
    return f"{texts.question}\n{choices}\n{hint}"


def loyalty_question(texts: SurveyTexts) -> str:
    hint = texts.reply_hint.format(min=0, max=LOYALTY_MAX)
    return f"{texts.loyalty_question}\n{hint}"


def email_question(texts: SurveyTexts, scale: int, link: Callable[[int], str]) -> tuple[str, str]:
    """(plain text, HTML) with one link per point."""
    lines = [texts.question, ""]
    for n, label in reversed(scale_lines(texts, scale)):
        lines.append(f"{n} - {label}: {link(n)}")
    text = "\n".join(lines)
    buttons = "".join(
        f'<a href="{_attr(link(n))}" style="display:inline-block;margin:4px;padding:8px 14px;'
        f'border:1px solid #3557c5;border-radius:6px;color:#3557c5;text-decoration:none">'
        f"{n} &middot; {_html(label)}</a>"
        for n, label in reversed(scale_lines(texts, scale))
    )
    html = f"<p>{_html(texts.question)}</p><p>{buttons}</p>"
    return text, html


def _html(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attr(s: str) -> str:
    return _html(s).replace('"', "&quot;")


_KEYCAPS = {f"{d}\ufe0f\u20e3": d for d in "0123456789"} | {"🔟": "10"}
_ANSWER = re.compile(r"^\s*(\d{1,2})\s*(?:/\s*\d{1,2})?\s*[.!)]?\s*(?:[-:,]\s*)?(.*)$", re.S)


def parse_answer(text: str, low: int, high: int) -> tuple[int, str | None] | None:
    """A chat answer: "4", "4/5", "4 - quick, thanks", "⭐⭐⭐⭐", "4️⃣".
    The number must be in [low, high]; what follows is the comment."""
    t = text.strip()
    for cap, digit in _KEYCAPS.items():
        t = t.replace(cap, digit)
    stars = len(t) - len(t.lstrip("⭐★"))
    if stars and not t[stars:].strip():
        return (stars, None) if low <= stars <= high else None
    m = _ANSWER.match(t)
    if not m:
        return None
    value = int(m.group(1))
    if not low <= value <= high:
        return None
    rest = m.group(2).strip()
    return value, (rest[:2000] or None)


# -- the survey's life -----------------------------------------------------------


def get_survey(db: Db, survey_id: int) -> dict[str, Any] | None:
    return row_dict(db.one(f"SELECT {_SURVEY_COLUMNS} FROM surveys WHERE id = ?", (survey_id,)))


def surveys_of(
    db: Db, *, conversation_id: int | None = None, contact_id: int | None = None
) -> list[dict[str, Any]]:
    col, value = (
        ("conversation_id", conversation_id)
        if conversation_id is not None
        else ("contact_id", contact_id)
    )
    return [
        d
        for d in (
            row_dict(r)
            for r in db.all(
                f"SELECT {_SURVEY_COLUMNS} FROM surveys WHERE {col} = ? ORDER BY id DESC LIMIT 100",
                (value,),
            )
        )
        if d is not None
    ]


def schedule(
    db: Db,
    conv: Mapping[str, Any],
    survey: SurveySettings,
    send_at: float,
    skip: str | None,
    now: float,
) -> int | None:
    """Plan the survey for this resolution (a row even when skipped, with why)."""
    language = _language(db, int(conv["id"]), conv.get("contact") or {})
    sid = db.val(
        "INSERT INTO surveys (conversation_id, contact_id, channel, resolved_at, state, note,"
        " scale, ask_loyalty, language, send_at, team, agent, category, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (conversation_id, resolved_at) DO NOTHING RETURNING id",
        (
            conv["id"],
            conv["contact_id"],
            conv["channel"],
            conv["resolved_at"],
            "skipped" if skip else "scheduled",
            skip,
            survey.scale,
            1 if survey.loyalty else 0,
            language,
            send_at,
            conv.get("team"),
            conv.get("assignee"),
            conv.get("category"),
            now,
        ),
    )
    if sid is not None and skip:
        add_audit(
            db, "survey", "survey_skipped", conversation_id=int(conv["id"]), reason=skip, at=now
        )
    return None if sid is None else int(sid)


def cancel(db: Db, survey_id: int, now: float) -> None:
    n = db.run(
        "UPDATE surveys SET state = 'cancelled', note = 'reopened before it was sent'"
        " WHERE id = ? AND state = 'scheduled'",
        (survey_id,),
    )
    if n:
        cid = db.val("SELECT conversation_id FROM surveys WHERE id = ?", (survey_id,))
        add_audit(
            db,
            "survey",
            "survey_cancelled",
            conversation_id=int(cid),
            reason="the conversation reopened before the survey went out",
            at=now,
        )


@dataclass(frozen=True, slots=True)
class Links:
    """How e-mailed surveys link to their page."""

    public_url: str
    key: str

    def url(self, survey_id: int, rating: int) -> str:
        return f"{self.public_url}/survey/{make_token(self.key, survey_id)}?r={rating}"


def send(
    db: Db,
    survey_id: int,
    service: ServiceRules,
    links: Links,
    channel_types: Mapping[str, str],
    now: float,
) -> int | None:
    """Queue the survey message; returns its message id (None: not sent)."""
    sv = get_survey(db, survey_id)
    if sv is None or sv["state"] != "scheduled":
        return None
    settings = service.survey
    texts = settings.texts_for(sv["language"])
    kind = db.val(
        "SELECT sender_kind FROM messages WHERE conversation_id = ? AND direction = 'in'"
        " AND kind != 'auto' ORDER BY id DESC LIMIT 1",
        (sv["conversation_id"],),
    )
    by_link = kind == "email" or channel_types.get(sv["channel"]) in LINK_CHANNEL_TYPES
    meta: dict[str, Any] = {}
    html = None
    if by_link:
        text, html = email_question(texts, sv["scale"], lambda n: links.url(survey_id, n))
    else:
        text = chat_question(texts, sv["scale"])
        meta = {"survey": _chat_meta(survey_id, "rating", 1, sv["scale"], texts, sv["scale"])}
    try:
        mid = queue_automatic(
            db,
            int(sv["conversation_id"]),
            text,
            auto="survey",
            html=html,
            subject=texts.subject if by_link else None,
            meta=meta,
        )
    except ReplyError as exc:
        db.run("UPDATE surveys SET state = 'skipped', note = ? WHERE id = ?", (str(exc), survey_id))
        return None
    db.run(
        "UPDATE surveys SET state = 'sent', sent_at = ?, expires_at = ?, message_id = ?"
        " WHERE id = ?",
        (now, now + settings.valid_for, mid, survey_id),
    )
    add_fact(db, service.default_calendar.tz, "csat_sent", now, Dims.of(sv))
    add_audit(
        db,
        "survey",
        "survey_sent",
        conversation_id=int(sv["conversation_id"]),
        message_id=mid,
        reason="by e-mail, with links" if by_link else "as a chat message",
        at=now,
    )
    return mid


def _chat_meta(
    survey_id: int, stage: str, low: int, high: int, texts: SurveyTexts, scale: int
) -> dict[str, Any]:
    if stage == "rating":
        choices = [{"value": n, "label": label} for n, label in scale_lines(texts, scale)]
        question = texts.question
    else:
        choices = [{"value": n, "label": str(n)} for n in range(low, high + 1)]
        question = texts.loyalty_question
    return {
        "id": survey_id,
        "stage": stage,
        "question": question,  # for channels that show the choices as buttons
        "min": low,
        "max": high,
        "choices": choices,
    }


@dataclass(frozen=True, slots=True)
class Answer:
    status: str  # recorded | changed | expired | closed | invalid | unknown
    survey: dict[str, Any] | None = None


def record_answer(
    db: Db,
    survey_id: int,
    *,
    service: ServiceRules,
    rating: int | None = None,
    loyalty: int | None = None,
    comment: str | None = None,
    via: str,
    now: float,
) -> Answer:
    sv = get_survey(db, survey_id)
    if sv is None:
        return Answer("unknown")
    if sv["state"] not in ("sent", "answered"):
        return Answer("closed", sv)
    if sv["expires_at"] is not None and now > sv["expires_at"]:
        return Answer("expired", sv)
    if rating is not None and not 1 <= rating <= sv["scale"]:
        return Answer("invalid", sv)
    if loyalty is not None and not (sv["ask_loyalty"] and 0 <= loyalty <= LOYALTY_MAX):
        return Answer("invalid", sv)
    if rating is None and loyalty is None and comment is None:
        return Answer("invalid", sv)
    old_r, old_l = sv["rating"], sv["loyalty_score"]
    first = sv["answered_at"] is None
    new_r = rating if rating is not None else old_r
    new_l = loyalty if loyalty is not None else old_l
    new_c = comment if comment is not None else sv["comment"]
    db.run(
        "UPDATE surveys SET state = 'answered', rating = ?, loyalty_score = ?, comment = ?,"
        " answered_at = COALESCE(answered_at, ?), changed_at = ?, answered_via = ? WHERE id = ?",
        (new_r, new_l, new_c, now, None if first else now, via, survey_id),
    )
    tz = service.default_calendar.tz
    day = sv["answered_at"] or now  # a changed answer stays on the day first given
    dims = Dims.of(sv)
    if new_r != old_r:
        if old_r is not None:
            _count_rating(db, tz, day, dims, old_r, sv["scale"], -1)
        else:
            add_fact(db, tz, "csat_answered", day, dims)
        if new_r is not None:
            _count_rating(db, tz, day, dims, new_r, sv["scale"], 1)
    if new_l != old_l:
        if old_l is not None:
            _count_loyalty(db, tz, day, dims, old_l, -1)
        if new_l is not None:
            _count_loyalty(db, tz, day, dims, new_l, 1)
    cid = int(sv["conversation_id"])
    add_audit(
        db,
        "customer",
        "survey_answered" if first else "survey_changed",
        conversation_id=cid,
        reason=f"rating {new_r}/{sv['scale']}"
        + (f", loyalty {new_l}/10" if new_l is not None else ""),
        detail={"rating": new_r, "loyalty": new_l, "comment": bool(new_c), "via": via},
        at=now,
    )
    refresh_contact(db, int(sv["contact_id"]), now)
    # Rules may react (a bad rating reopens the conversation): look at it now.
    svc.look_again(db, cid, now)
    return Answer("recorded" if first else "changed", get_survey(db, survey_id))


def _count_rating(
    db: Db, tz: Any, at: float, dims: Dims, rating: int, scale: int, delta: int
) -> None:
    add_fact(db, tz, f"csat_r{rating}_of_{scale}", at, dims, delta=delta)
    if good_rating(rating, scale):
        add_fact(db, tz, "csat_good", at, dims, delta=delta)


def _count_loyalty(db: Db, tz: Any, at: float, dims: Dims, score: int, delta: int) -> None:
    add_fact(db, tz, f"nps_s{score}", at, dims, delta=delta)
    group = "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"
    add_fact(db, tz, f"nps_{group}", at, dims, delta=delta)
    add_fact(db, tz, "nps_answered", at, dims, delta=delta)


def capture_chat_answer(
    db: Db, conv: Mapping[str, Any], text: str, now: float, service: ServiceRules
) -> Answer | None:
    """A chat message on a conversation with a survey waiting for its answer:
    if it is one (a number on the scale), record it and ask the next question
    or thank the customer. None: an ordinary message."""
    row = db.one(
        f"SELECT {_SURVEY_COLUMNS} FROM surveys WHERE conversation_id = ?"
        " AND state IN ('sent', 'answered') ORDER BY id DESC LIMIT 1",
        (conv["id"],),
    )
    sv = row_dict(row)
    if sv is None or (sv["expires_at"] is not None and now > sv["expires_at"]):
        return None
    if sv["rating"] is None:
        field, low, high = "rating", 1, sv["scale"]
    elif sv["ask_loyalty"] and sv["loyalty_score"] is None:
        field, low, high = "loyalty", 0, LOYALTY_MAX
    else:
        return None
    parsed = parse_answer(text, low, high)
    if parsed is None:
        return None
    res = record_answer(
        db,
        int(sv["id"]),
        service=service,
        via="chat",
        now=now,
        comment=parsed[1] or sv["comment"],
        **{field: parsed[0]},
    )
    if res.status not in ("recorded", "changed") or res.survey is None:
        return res
    texts = service.survey.texts_for(sv["language"])
    done = res.survey
    try:
        if done["ask_loyalty"] and done["loyalty_score"] is None:
            queue_automatic(
                db,
                int(conv["id"]),
                loyalty_question(texts),
                auto="survey",
                meta={
                    "survey": _chat_meta(
                        int(sv["id"]), "loyalty", 0, LOYALTY_MAX, texts, done["scale"]
                    )
                },
            )
        else:
            queue_automatic(db, int(conv["id"]), texts.thanks, auto="survey")
    except ReplyError:
        pass  # the answer is kept; the thanks cannot go anywhere
    return res


def _language(db: Db, conversation_id: int, contact: Mapping[str, Any]) -> str | None:
    meta = db.val(
        "SELECT meta FROM messages WHERE conversation_id = ? AND direction = 'in'"
        " ORDER BY id DESC LIMIT 1",
        (conversation_id,),
    )
    lang = jsoncol.loads(meta, {}).get("language") if meta else None
    if not lang and isinstance(contact.get("language"), str):
        lang = contact["language"]
    return lang if isinstance(lang, str) else None
