"""Instagram messaging: Messenger's Send API and ``messaging`` items, with an
Instagram-scoped user id and no reply metadata. Files go through the same
Attachment Upload API with ``platform=instagram``, which takes fewer types."""

from __future__ import annotations

from typing import Any, ClassVar

from ..media import MediaKind
from .messenger import PageChannel

_MB = 1024 * 1024
# developers.facebook.com/documentation/business-messaging/instagram-messaging/
# features/attachment-upload: the formats and sizes Instagram takes.
INSTAGRAM_MEDIA_KINDS = (
    MediaKind("image", frozenset({"image/jpeg", "image/png", "image/gif"}), 8 * _MB),
    MediaKind(
        "audio",
        frozenset({"audio/aac", "audio/mp4", "audio/x-m4a", "audio/wav", "audio/x-wav"}),
        25 * _MB,
    ),
    MediaKind(
        "video",
        frozenset({"video/mp4", "video/ogg", "video/x-msvideo", "video/quicktime", "video/webm"}),
        25 * _MB,
    ),
    MediaKind("file", frozenset({"application/pdf"}), 25 * _MB),
)


class InstagramChannel(PageChannel):
    type = "instagram"
    platform = "instagram"
    identity_kind = "instagram"
    media_kinds: ClassVar[tuple[MediaKind, ...]] = INSTAGRAM_MEDIA_KINDS

    def _mark(self, message: dict[str, Any]) -> dict[str, Any]:
        # Instagram's Send API takes no metadata; our echoes are recognised by
        # their mid (the provider id of the reply) instead.
        return message

    def _upload_fields(self) -> dict[str, str]:
        return {"platform": "instagram"}
