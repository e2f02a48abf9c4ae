"""The customers' survey page, reached from the links in a survey e-mail.

``GET /survey/{token}?r=4`` shows the question with 4 chosen and records
nothing: mail scanners and link previews follow every link in a message, and
none of them may count as a rating. ``POST`` (the page's submit) records the
answer; the page then thanks the customer and lets them change it until the
survey expires. The token is signed and expires (``service/surveys.py``); a
forged, broken or expired one gets a page that says so, and nothing is
recorded. The page runs no script and loads nothing from elsewhere.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ..model import now_ts
from ..service.surveys import TokenError, get_survey, read_token, record_answer, scale_lines
from .deps import get_services
from .ui import page, templates

if TYPE_CHECKING:
    from .services import WebServices

router = APIRouter(include_in_schema=False)

# The page's own words; the survey's texts come from the rules ([survey.text.*]).
UI = {
    "en": {
        "title": "Your feedback",
        "submit": "Send",
        "change": "Change my answer",
        "change_until": "You can change your answer until {date}.",
        "unlikely": "0 = not at all likely",
        "likely": "10 = extremely likely",
        "invalid_title": "This link does not work",
        "invalid": "The link is incomplete or was changed. Please use the link from the e-mail.",
        "expired_title": "This survey has closed",
        "expired": "Answers to this survey are no longer taken. Thank you all the same!",
        "bad_answer": "Please choose one of the answers.",
    },
    "zh": {
        "title": "您的反馈",
        "submit": "提交",
        "change": "修改我的回答",
        "change_until": "您可以在 {date} 之前修改回答。",
        "unlikely": "0 = 完全不可能",
        "likely": "10 = 非常可能",
        "invalid_title": "此链接无效",
        "invalid": "链接不完整或已被修改，请使用邮件中的链接。",
        "expired_title": "此调查已结束",
        "expired": "此调查已不再接受回答，仍然感谢您！",
        "bad_answer": "请选择一个答案。",
    },
}


def _ui(language: str | None) -> dict[str, str]:
    lang = (language or "en").lower().split("-")[0]
    return UI.get(lang, UI["en"])


def _headers(resp: Response) -> Response:
    # The token is in the URL: never send it on as a referrer, never cache.
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["X-Robots-Tag"] = "noindex, nofollow"
    return resp


def _problem(kind: str, language: str | None = None) -> Response:
    ui = _ui(language)
    html = templates.get_template("survey.html").render(
        lang=(language or "en"),
        title=ui[f"{kind}_title"],
        problem={"title": ui[f"{kind}_title"], "text": ui[kind]},
    )
    return _headers(page(html, 404 if kind == "invalid" else 410))


async def _survey(
    services: WebServices, token: str
) -> tuple[dict[str, Any] | None, Response | None]:
    settings = services.rules.current.service.survey
    key = services.scheduler.key
    if key is None:
        return None, _problem("invalid")
    try:
        sid = read_token(key, token, settings.valid_for)
    except TokenError as exc:
        return None, _problem(exc.kind)
    sv = await services.store.read(get_survey, sid)
    if sv is None or sv["state"] not in ("sent", "answered"):
        return None, _problem("invalid" if sv is None else "expired")
    if sv["expires_at"] is not None and now_ts() > sv["expires_at"]:
        return None, _problem("expired", sv["language"])
    return sv, None


def _form(
    services: WebServices,
    token: str,
    sv: dict[str, Any],
    *,
    selected: int | None,
    done: bool = False,
    status: int = 200,
) -> Response:
    texts = services.rules.current.service.survey.texts_for(sv["language"])
    ui = _ui(sv["language"])
    tz = services.rules.current.service.default_calendar.tz
    until = None
    if sv["expires_at"] is not None:
        until = datetime.fromtimestamp(sv["expires_at"], UTC).astimezone(tz).strftime("%Y-%m-%d")
    html = templates.get_template("survey.html").render(
        lang=sv["language"] or "en",
        title=ui["title"],
        problem=None,
        texts=texts,
        ui=ui,
        action=f"/survey/{token}",
        scale=sv["scale"],
        choices=list(reversed(scale_lines(texts, sv["scale"]))),
        selected=selected,
        loyalty=bool(sv["ask_loyalty"]),
        loyalty_selected=sv["loyalty_score"],
        comment=sv["comment"],
        done=done,
        until=until,
    )
    return _headers(page(html, status))


@router.get("/survey/{token}")
async def survey_page(
    token: str, r: str | None = None, services: WebServices = Depends(get_services)
) -> Response:
    """The question with the clicked point chosen. Records nothing."""
    sv, problem = await _survey(services, token)
    if problem is not None or sv is None:
        return problem or _problem("invalid")
    chosen = int(r) if r is not None and r.isdigit() and 1 <= int(r) <= sv["scale"] else None
    return _form(services, token, sv, selected=chosen if chosen is not None else sv["rating"])


def _int(form: dict[str, list[str]], name: str) -> int | None:
    v = (form.get(name) or [""])[0].strip()
    return int(v) if v.isdigit() else None


@router.post("/survey/{token}")
async def survey_submit(
    token: str, request: Request, services: WebServices = Depends(get_services)
) -> Response:
    """Record (or change) the answer."""
    sv, problem = await _survey(services, token)
    if problem is not None or sv is None:
        return problem or _problem("invalid")
    form = parse_qs((await request.body()).decode("utf-8", "replace")[:20_000])
    rating = _int(form, "rating")
    loyalty = _int(form, "loyalty")
    comment = (form.get("comment") or [""])[0].strip()[:2000] or None
    if rating is None:
        return _form(services, token, sv, selected=None, status=422)
    res = await services.store.write(
        record_answer,
        int(sv["id"]),
        service=services.rules.current.service,
        rating=rating,
        loyalty=loyalty,
        comment=comment,
        via="link",
        now=now_ts(),
    )
    if res.status in ("expired", "closed"):
        return _problem("expired", sv["language"])
    if (res.status != "recorded" and res.status != "changed") or res.survey is None:
        return _form(services, token, sv, selected=rating, status=422)
    services.publish(
        [
            {
                "type": "survey.answered",
                "conversation_id": int(sv["conversation_id"]),
                "survey_id": int(sv["id"]),
                "rating": rating,
            }
        ]
    )
    return _form(services, token, res.survey, selected=res.survey["rating"], done=True)
