"""Every X Account Activity body of the corpus (nyaruka/courier's Twitter
handler fixtures: AGPL-3.0, so read from OMNIDESK_CORPORA under the ``corpus``
mark, never copied in) POSTed correctly signed to an X channel: each is
answered 200 and ends stored, skipped or quarantined with a reason, the
outcome pinned per file. The same cases are covered in the repository by the
hand-written payloads of test_x.py (an escaped entity, a media attachment, a
sender id that is not a number)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.channels.x.conftest import X, x_channel
from tests.standins.x_api import XApiStandIn
from tests.testdata import outside

COURIER = "webhooks/x-twitter/courier"

# name: (state, words in the note or error, text of the stored message)
EXPECTED: dict[str, tuple[str, str, str | None]] = {
    "helloMsg": ("done", "new conversation", "Hello World & good wishes."),
    "attachment": ("done", "new conversation", "Hello"),
    "invalidTwitterID": ("quarantined", "is not an X user id", None),
}


@pytest.mark.corpus(COURIER)
async def test_every_corpus_body_is_accepted_or_refused_with_a_reason(
    x_factory: Any, xapi: XApiStandIn
) -> None:
    files = sorted(outside(COURIER).glob("*.json"))
    assert {f.stem for f in files} == set(EXPECTED), "a corpus file without a pinned outcome"
    # One channel a body: the fixtures share event ids, which would otherwise
    # be deduplicated before being looked at. The account is the fixtures'.
    names = {f.stem: f"x{i}" for i, f in enumerate(files)}
    x: X = await x_factory([x_channel(xapi.base_url, name=n) for n in names.values()])
    for f in files:
        r = await x.deliver(f.read_bytes(), channel=names[f.stem])
        assert r.status_code == 200, (f.name, r.text)
        assert r.json()["stored"] == 1, (f.name, r.json())
    await x.settle()
    for stem, (state, words, text) in EXPECTED.items():
        (row,) = await x.inbound(names[stem])
        reason = row["error"] if state == "quarantined" else row["note"]
        assert row["state"] == state and words in (reason or ""), (stem, row)
        if text is None:
            continue
        convs = await x.conversations(names[stem])
        conv = await x.conversation(convs[0]["id"])
        msg = conv["messages"][0]
        assert msg["text"] == text, (stem, msg)
        if stem == "attachment":
            assert msg["attachments"][0]["content_type"] == "image/jpeg"
            assert conv["contact"]["name"] == "Nicolas Pottier"
