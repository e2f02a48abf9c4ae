"""A website contact form as an omnidesk channel: the worked drop-in example.

This file is loaded at start-up because it sits in the drop-in folder
(``channels/`` next to the config file, or ``channels_dir`` in ``[daemon]``)
and defines a :class:`ChannelAdapter` subclass with ``type = "webform"``. It
uses only the public adapter contract: ``omnidesk.channels.base``,
``omnidesk.model`` and ``omnidesk.identity``. ``channels/README.md`` walks
through it.

**Inbound.** The website's own server (never the visitor's browser, which
cannot keep a secret) forwards each submission::

    POST {public_url}/webhooks/{channel name}
    Content-Type: application/x-www-form-urlencoded     (or application/json)
    X-Webform-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">

keyed with the channel's ``secret``. Fields: ``email`` and ``message``
(required), ``name``, ``subject``, ``phone``, ``page`` and ``submission_id``
(optional; without it the body's hash identifies the submission, so a form
posted twice is stored once). A filled-in honeypot field (``honeypot``,
default ``website``, a field humans never see) marks a bot: the submission is
answered like any other, so the bot learns nothing, and then skipped. The
answer is ``202 {"status": "accepted", "duplicate": false}`` once the
submission is on disk; ``401`` for a bad signature, ``400`` with the reason
for a submission that cannot become a message.

**Replies** go back by e-mail, through an SMTP relay, to the address the
visitor typed. Each reply carries its own ``Message-ID``, registered as a
thread key of the conversation: when the customer answers that e-mail through
one of omnidesk's e-mail channels, the answer joins the same conversation.

Settings (``[[channels]]``)::

    name = "contact"
    type = "webform"
    secret = "env:WEBFORM_SECRET"         # shared with the website's server
    from_address = "support@example.com"  # From of replies (required to reply)
    from_name = "Example Support"
    default_subject = "Contact form"      # when the form has no subject field
    honeypot = "website"                  # "" turns the check off

    [channels.relay]                      # the SMTP relay replies leave through
    host = "smtp.example.com"
    port = 587                            # default: 25, 587 or 465 by tls
    tls = "starttls"                      # none | starttls | tls
    username = "support@example.com"
    password = "env:RELAY_PASSWORD"
    timeout = 30.0
"""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import time
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import parse_qs

from omnidesk.channels.base import ChannelAdapter, ChannelContext
from omnidesk.identity import normalize_identity
from omnidesk.model import (
    Envelope,
    Message,
    Normalized,
    NormalizeError,
    OutboundMessage,
    SendError,
    SendResult,
    Skip,
)

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

SIGNATURE_HEADER = "X-Webform-Signature"
TOLERANCE = 300  # seconds either side of now: a captured request soon goes stale
MAX_BODY = 64 * 1024  # a form, not an upload
MAX_FIELD = 20_000  # characters kept of any one field
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
TLS_MODES = ("none", "starttls", "tls")
DEFAULT_PORTS = {"none": 25, "starttls": 587, "tls": 465}


# -- the wire format (pure functions: easy to test, shared by both sides) --------


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``X-Webform-Signature`` value the website's server sends."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str, body: bytes, header: str | None, now: float | None = None) -> str | None:
    """None when ``header`` signs ``body``, else why not. Checked on the raw
    bytes before anything is parsed."""
    if not header:
        return "missing signature"
    parts = dict(p.strip().partition("=")[::2] for p in header.split(","))
    try:
        t = int(parts["t"])
    except (KeyError, ValueError):
        return "malformed signature header"
    if abs((time.time() if now is None else now) - t) > TOLERANCE:
        return "signature timestamp outside the 5-minute window"
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, parts.get("v1", "")):
        return "signature mismatch"
    return None


class BadSubmission(ValueError):
    """A submission that cannot become a message (the reason says why)."""


def parse_fields(body: bytes, content_type: str) -> dict[str, str]:
    """The submitted fields as strings (the first value of a repeated form
    field), whatever the encoding."""
    media = content_type.split(";")[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadSubmission("body is not UTF-8") from None
    if media == FORM:
        try:
            pairs = parse_qs(text, keep_blank_values=True, max_num_fields=200)
        except ValueError as exc:
            raise BadSubmission(f"unreadable form body: {exc}") from None
        return {k: v[0][:MAX_FIELD] for k, v in pairs.items()}
    if media == JSON:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadSubmission(f"body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise BadSubmission("JSON body must be an object of fields")
        return {
            str(k): (v if isinstance(v, str) else json.dumps(v))[:MAX_FIELD]
            for k, v in data.items()
            if v is not None
        }
    raise BadSubmission(f"content type must be {FORM} or {JSON}, not {media or 'missing'!r}")


def check_fields(fields: dict[str, str]) -> None:
    """Raise BadSubmission unless the fields make a message."""
    email = fields.get("email", "").strip()
    if "@" not in email or len(email) > 254 or any(c.isspace() for c in email):
        raise BadSubmission("'email' must be an e-mail address")
    if not fields.get("message", "").strip():
        raise BadSubmission("'message' must not be empty")


def submission_id(fields: dict[str, str], body: bytes) -> str:
    """The intake key: the form's own id if it sends one, else the body hash
    (a double-click or a retried forward is then stored once)."""
    own = fields.get("submission_id", "").strip()
    if own:
        return "sub:" + own[:200]
    return "sha256:" + hashlib.sha256(body).hexdigest()


# -- the adapter ------------------------------------------------------------------


class WebformChannel(ChannelAdapter):
    """Contact-form submissions in, e-mail replies out."""

    type = "webform"
    # What the inbox may offer for this channel: replies can carry files, and
    # have a subject line.
    capabilities: ClassVar[frozenset[str]] = frozenset({"attachments", "subject", "webhook"})
    # The web server refuses a larger body with 413 before handle_webhook runs.
    max_body: ClassVar[int] = MAX_BODY

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        o = ctx.options  # typed access; every error names the file and the key
        self.secret = o.secret("secret")
        if not self.secret:
            raise o.error("secret", "must not be empty")
        self.from_address: str | None = o.string("from_address", None)
        self.from_name: str | None = o.string("from_name", None)
        self.default_subject: str = o.string("default_subject", "Contact form")
        self.honeypot: str = o.string("honeypot", "website")
        relay = o.table("relay")
        self.relay_host: str | None = relay.string("host", None)
        self.relay_tls: str = relay.string("tls", "starttls", choices=TLS_MODES)
        self.relay_port: int = relay.integer("port", DEFAULT_PORTS[self.relay_tls], min=1)
        self.relay_username: str | None = relay.string("username", None)
        self.relay_password = relay.secret("password", None)
        self.timeout: float = relay.number("timeout", 30.0, min=0.1)
        relay.check_unused()
        if self.relay_host and not self.from_address:
            raise o.error("from_address", "is required to send replies through the relay")
        o.check_unused()  # a misspelt key is an error, not silently ignored

    async def start(self) -> None:
        # A webhook channel has nothing to connect to: it is ready as soon as
        # the web server is. Say whether replies can leave.
        detail = "accepting signed submissions"
        if not self.relay_host:
            detail += "; no relay configured, replies cannot be sent"
        self.set_health(True, "running", detail)

    async def stop(self) -> None:
        self.set_health(True, "stopped")

    # -- inbound: acknowledge only after the submission is on disk --------------
    async def handle_webhook(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        if request.method != "POST":
            return JSONResponse({"error": "POST the form submission"}, status_code=405)
        body = await request.body()  # at most max_body: the server refused more
        problem = verify(self.secret.reveal(), body, request.headers.get(SIGNATURE_HEADER))
        if problem is not None:
            self.log.info("submission_refused", reason=problem)  # never log the secret
            return JSONResponse({"error": problem}, status_code=401)
        content_type = request.headers.get("content-type", "")
        try:
            fields = parse_fields(body, content_type)
            check_fields(fields)
        except BadSubmission as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        new = await self.ctx.intake.accept(
            Envelope(
                channel=self.name,
                external_id=submission_id(fields, body),
                payload=body,  # the raw bytes: normalize parses them again
                content_type=content_type,
            )
        )
        self.touch()
        return JSONResponse({"status": "accepted", "duplicate": not new}, status_code=202)

    # -- normalize: pure, runs inside the pipeline's transaction ------------------
    def normalize(self, envelope: Envelope) -> Normalized:
        try:
            fields = parse_fields(envelope.payload, envelope.content_type)
        except BadSubmission as exc:
            raise NormalizeError(str(exc)) from None
        if self.honeypot and fields.get(self.honeypot, "").strip():
            return Skip(f"honeypot field {self.honeypot!r} filled in: a bot")
        try:
            check_fields(fields)
        except BadSubmission as exc:
            raise NormalizeError(str(exc)) from None
        sender = normalize_identity("email", fields["email"], fields.get("name") or None)
        extra = {
            k: v
            for k, v in fields.items()
            if k not in ("email", "message", "name", "subject") and k != self.honeypot and v
        }
        return Message(
            channel=self.name,
            external_id=envelope.external_id,
            sender=sender,
            text=fields["message"].replace("\r\n", "\n").strip(),
            subject=fields.get("subject", "").strip() or self.default_subject,
            sent_at=envelope.received_at,
            meta={"webform": extra},
        )

    # -- send: an e-mail through the relay ----------------------------------------
    def compose(self, message: OutboundMessage) -> tuple[EmailMessage, str]:
        """The reply as an e-mail, and its Message-ID (without brackets)."""
        assert self.from_address is not None
        domain = self.from_address.rpartition("@")[2] or "localhost"
        msgid = make_msgid(domain=domain)
        mail = EmailMessage()
        mail["From"] = formataddr((self.from_name or "", self.from_address))
        mail["To"] = formataddr((message.recipient.display_name or "", message.recipient.address))
        subject = message.subject or self.default_subject
        mail["Subject"] = subject if subject.lower().startswith("re:") else f"Re: {subject}"
        mail["Date"] = formatdate(localtime=False)
        mail["Message-ID"] = msgid
        if message.automatic:
            mail["Auto-Submitted"] = "auto-replied"  # RFC 3834: no loops with autoresponders
        mail.set_content(message.text)
        if message.html:
            mail.add_alternative(message.html, subtype="html")
        for att in message.attachments:
            if att.data is None:
                raise SendError(f"attachment {att.filename!r} has no data", retry=False)
            maintype, _, subtype = att.content_type.partition("/")
            mail.add_attachment(
                att.data,
                maintype=maintype or "application",
                subtype=subtype or "octet-stream",
                filename=att.filename or "attachment",
            )
        return mail, msgid.strip("<>")

    async def send(self, message: OutboundMessage) -> SendResult:
        import aiosmtplib  # only needed when replies actually go out

        if not self.relay_host:
            raise SendError("this contact form channel has no relay to send replies", retry=False)
        if message.recipient.kind != "email":
            raise SendError(
                f"can only answer an e-mail address, not {message.recipient.kind!r}", retry=False
            )
        mail, msgid = self.compose(message)
        try:
            await aiosmtplib.send(
                mail,
                hostname=self.relay_host,
                port=self.relay_port,
                username=self.relay_username,
                password=self.relay_password.reveal() if self.relay_password else None,
                start_tls=self.relay_tls == "starttls",
                use_tls=self.relay_tls == "tls",
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            # The address the visitor typed does not exist: retrying won't help.
            reasons = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
            raise SendError(f"relay refused the recipient: {reasons}", retry=False) from None
        except aiosmtplib.SMTPResponseException as exc:
            # 4xx is temporary (greylisting, a full queue), 5xx is final.
            raise SendError(
                f"relay answered {exc.code} {exc.message}", retry=exc.code < 500
            ) from None
        except (TimeoutError, OSError, ssl.SSLError, aiosmtplib.SMTPException) as exc:
            raise SendError(f"relay unreachable: {type(exc).__name__}: {exc}", retry=True) from None
        self.touch()
        key = "mid:" + msgid
        # provider_id: what a bounce quotes; keys: the customer's e-mail
        # answer (In-Reply-To: this id) joins the conversation.
        return SendResult(provider_id=key, keys=[key])
