"""Privacy work over the store: erasing a contact, its export archive, and
the retention policies the scheduler runs (store/privacy.py holds the SQL;
docs/customers.md says how to use them)."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable
from typing import Any

import structlog

from ..customers.settings import PrivacySettings, RetentionPolicy
from ..store import Store
from ..store import privacy as priv
from ..store.audit import add_audit
from ..store.channel_state import get_state, set_state

log = structlog.get_logger(__name__)

PAGE = 500  # conversations per retention transaction


async def erase(store: Store, contact_id: int, *, actor: str, mode: str) -> dict[str, Any]:
    """Erase the contact, then leave nothing of it in the search indexes'
    old segments or the engine's log (``Store.scrub``)."""
    out = await store.write(priv.erase_contact, contact_id, actor=actor, mode=mode)
    await store.write(priv.compact_search)
    await store.scrub()
    log.info("contact_erased", contact_id=contact_id, actor=actor, mode=mode)
    return out


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80] or "file"


async def export_archive(store: Store, contact_id: int, *, actor: str) -> bytes | None:
    """Everything held about the contact as one ZIP archive: ``contact.json``
    (profile, identities, company, events, conversations with every message,
    surveys, audit entries) and each attachment's bytes under
    ``attachments/``. The export itself is audited."""
    data = await store.read(priv.contact_export, contact_id)
    if data is None:
        return None
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for att in data["attachments"]:
            blob = await store.read(priv.export_blob, att["sha256"]) if att["sha256"] else None
            path = f"attachments/{att['message_id']}-{att['id']}-{_safe(att['filename'] or '')}"
            att["path"] = path if blob is not None else None
            if blob is not None:
                z.writestr(path, blob)
        z.writestr("contact.json", json.dumps(data, ensure_ascii=False, indent=2, default=_plain))
        z.writestr(
            "README.txt",
            "Everything omnidesk holds about this contact: contact.json (profile, identities,"
            " company, events, every conversation and message, surveys, audit entries) and"
            " the attachments' files under attachments/.\n",
        )
    await store.write(
        add_audit,
        actor,
        "contact_exported",
        contact_id=contact_id,
        detail={
            "conversations": len(data["conversations"]),
            "attachments": len(data["attachments"]),
        },
    )
    return buf.getvalue()


def _plain(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


# -- retention -------------------------------------------------------------------------------
async def run_retention(
    store: Store,
    policy: RetentionPolicy,
    now: float,
    *,
    dry_run: bool,
    actor: str,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """One policy: list (dry run) or delete/redact (real run) every
    conversation it covers, a page at a time, recorded in
    ``retention_runs`` with the exact ids. ``progress(done, messages)``."""
    cutoff = now - policy.days * 86400
    run_id = await store.write(
        priv.start_run,
        policy.name,
        dry_run=dry_run,
        action=policy.action,
        cutoff=cutoff,
        actor=actor,
    )
    after = 0
    done = 0
    while True:
        page = await store.read(
            priv.retention_candidates,
            cutoff,
            policy.channels,
            policy.categories,
            after_id=after,
            limit=PAGE,
        )
        if not page:
            break
        ids = [i for i, _ in page]
        messages = sum(n for _, n in page)
        if dry_run:
            await store.write(priv.note_run, run_id, ids, messages)
        else:
            await store.write(priv.apply_retention, run_id, ids, messages, action=policy.action)
        after = ids[-1]
        done += len(ids)
        if progress is not None:
            progress(done, messages)
    run = await store.write(priv.finish_run, run_id)
    if not dry_run and run["conversations"]:
        await store.write(priv.compact_search)
        await store.scrub()
    log.info(
        "retention_run",
        policy=policy.name,
        dry_run=dry_run,
        conversations=run["conversations"],
        messages=run["messages"],
    )
    return run


class RetentionJob:
    """The scheduler's retention: every policy, every ``retention_every``
    seconds (the time of the last run kept in the store, so a restart does
    not run it again early)."""

    def __init__(self, settings: PrivacySettings) -> None:
        self.settings = settings
        self.last: float | None = None

    async def maybe_run(self, store: Store, now: float) -> list[dict[str, Any]]:
        if not self.settings.retention:
            return []
        if self.last is None:
            raw = await store.read(get_state, "privacy", "retention_last_run")
            self.last = float(raw) if raw else 0.0
        if now - self.last < self.settings.retention_every:
            return []
        self.last = now
        await store.write(set_state, "privacy", "retention_last_run", repr(now))
        return [
            await run_retention(store, p, now, dry_run=False, actor="scheduler")
            for p in self.settings.retention
        ]
