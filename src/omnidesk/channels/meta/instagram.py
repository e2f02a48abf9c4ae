"""Instagram messaging: Messenger's Send API and ``messaging`` items, with an
Instagram-scoped user id and no reply metadata."""

from __future__ import annotations

from typing import Any

from .messenger import PageChannel


class InstagramChannel(PageChannel):
    type = "instagram"
    platform = "instagram"
    identity_kind = "instagram"

    def _message_body(self, text: str) -> dict[str, Any]:
        # Instagram's Send API takes no metadata; our echoes are recognised by
        # their mid (the provider id of the reply) instead.
        return {"text": text}
