"""Full-text search over messages and contacts: the same answers on both
engines, in English and Chinese, with the inbox's visibility rules."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from omnidesk.app import Daemon
from omnidesk.model import Direction, Identity, MessageKind
from omnidesk.store import Db, Store
from omnidesk.store import conversations as convs
from omnidesk.store.contacts import resolve_contact
from omnidesk.store.search import SearchError, parse_query, search_contacts, search_messages
from omnidesk.store.tokens import create_token
from tests.conftest import admin_token, message, post_inbound, settle


def _conv(db: Db, contact_id: int, team: str, assignee: str | None, subject: str) -> int:
    return convs.create_conversation(
        db,
        contact_id=contact_id,
        channel="api",
        thread_key=None,
        subject=subject,
        category="inquiry",
        confidence=0.5,
        priority="normal",
        priority_rank=1,
        team=team,
        assignee=assignee,
        tags=[],
        decision=None,
    )


def _msg(db: Db, conv_id: int, text: str, *, subject: str | None = None, ext: str = "") -> int:
    return convs.insert_message(
        db,
        convs.NewMessage(
            conversation_id=conv_id,
            direction=Direction.INBOUND,
            kind=MessageKind.MESSAGE,
            channel="api",
            text=text,
            subject=subject,
            external_id=ext or None,
        ),
    )


def seed(db: Db) -> dict[str, Any]:
    ann, _ = resolve_contact(db, Identity("email", "ann@example.com", "Ann Lee"))
    wang, _ = resolve_contact(db, Identity("phone", "+8613800138000", "王小明"))
    bob, _ = resolve_contact(db, Identity("email", "bob@shop.example", "Bob"))
    c_ann = _conv(db, ann, "support", "alice", "Broken blender")
    c_wang = _conv(db, wang, "china", "wang", "退款")
    c_bob = _conv(db, bob, "billing", None, "Invoice 50% off_code")
    ids = {
        "blender": _msg(db, c_ann, "My BLENDER arrived broken, I want a refund.", ext="a1"),
        "parcel": _msg(db, c_ann, "Where is my parcel? Order 4711.", ext="a2"),
        "refund_zh": _msg(db, c_wang, "我想申请退款，订单还没到。", ext="w1"),
        "delivery_zh": _msg(db, c_wang, "请问什么时候发货？", ext="w2"),
        "invoice": _msg(db, c_bob, "The invoice says 50% off_code but I paid full price", ext="b1"),
    }
    return {"contacts": {"ann": ann, "wang": wang, "bob": bob}, "msgs": ids,
            "convs": {"ann": c_ann, "wang": c_wang, "bob": c_bob}}  # fmt: skip


async def hits(store: Store, q: str, **kw: Any) -> list[int]:
    return [h["id"] for h in await store.read(search_messages, q, **kw)]


async def test_substring_any_case_and_every_term(store: Store) -> None:
    s = await store.write(seed)
    m = s["msgs"]
    assert await hits(store, "blender") == [m["blender"]]
    assert await hits(store, "BlEnDeR") == [m["blender"]]
    assert await hits(store, "lend") == [m["blender"]]  # substring, not whole words
    assert await hits(store, "refund broken") == [m["blender"]]
    assert await hits(store, "refund parcel") == []  # every term must occur in one message
    assert await hits(store, '"I want a refund"') == [m["blender"]]
    assert await hits(store, '"want refund"') == []  # a phrase is matched as written
    assert await hits(store, "my") == [m["parcel"], m["blender"]]  # newest first


async def test_chinese_long_and_two_character_terms(store: Store) -> None:
    s = await store.write(seed)
    m = s["msgs"]
    assert await hits(store, "申请退款") == [m["refund_zh"]]
    # Two characters: below the trigram index, still found.
    assert await hits(store, "退款") == [m["refund_zh"]]
    assert await hits(store, "发货") == [m["delivery_zh"]]
    assert await hits(store, "订") == [m["refund_zh"]]
    assert await hits(store, "退款 订单") == [m["refund_zh"]]
    # The conversation subject is not a message field; message subject is.
    assert await hits(store, "退款 发货") == []


async def test_like_wildcards_are_literal(store: Store) -> None:
    s = await store.write(seed)
    assert await hits(store, "50%") == [s["msgs"]["invoice"]]
    assert await hits(store, "off_code") == [s["msgs"]["invoice"]]
    assert await hits(store, "f_c") == [s["msgs"]["invoice"]]
    assert await hits(store, "5_%") == []
    assert await hits(store, "%") == [s["msgs"]["invoice"]]


async def test_subject_is_searched_and_snippet_marks_terms(store: Store) -> None:
    def add(db: Db) -> int:
        cid, _ = resolve_contact(db, Identity("email", "zoe@example.com", "Zoe"))
        conv = _conv(db, cid, "support", None, "x")
        long = "Lorem ipsum dolor sit amet. " * 20 + "The warranty card is missing." + " tail" * 50
        _msg(db, conv, long, subject="Warranty question")
        return _msg(db, conv, "no match in body", subject="Quarterly warranty review")

    last = await store.write(add)
    found = await store.read(search_messages, "warranty")
    assert [h["id"] for h in found][:1] == [last]
    first, second = found
    assert first["snippet"] == "Quarterly warranty review"  # text had no match: the subject
    assert second["snippet"].startswith("…") and second["snippet"].endswith("…")
    assert len(second["snippet"]) < 200
    for a, b in second["highlights"]:
        assert second["snippet"][a:b].lower() == "warranty"
    assert first["conversation_subject"] == "x" and first["contact_name"] == "Zoe"


async def test_index_follows_edits_and_deletes(store: Store) -> None:
    s = await store.write(seed)
    mid = s["msgs"]["parcel"]

    def edit(db: Db) -> None:
        db.run("UPDATE messages SET text = ? WHERE id = ?", ("Where is my package?", mid))

    await store.write(edit)
    assert await hits(store, "parcel") == []
    assert await hits(store, "package") == [mid]

    def delete(db: Db) -> None:
        db.run("DELETE FROM messages WHERE id = ?", (mid,))

    await store.write(delete)
    assert await hits(store, "package") == []


async def test_index_is_right_when_a_message_changes_in_its_own_transaction(
    store: Store,
) -> None:
    """SQLite indexes a transaction's messages at commit: a message edited,
    or deleted, in the transaction that added it - inside savepoints, some
    rolled back, as the pipeline does - is found by its last text only."""
    s = await store.write(seed)
    conv = s["convs"]["bob"]

    def busy(db: Db) -> dict[str, int]:
        edited = _msg(db, conv, "first draft about a kettle", ext="x-edited")
        db.run("UPDATE messages SET text = ? WHERE id = ?", ("final words on a toaster", edited))
        gone = _msg(db, conv, "a fleeting mention of a juicer", ext="x-gone")
        db.run("DELETE FROM messages WHERE id = ?", (gone,))
        kept = 0
        with db.savepoint():
            kept = _msg(db, conv, "a lasting note on a percolator", ext="x-kept")
        try:
            with db.savepoint():
                _msg(db, conv, "rolled back talk of a waffle iron", ext="x-rolled")
                raise RuntimeError("roll this one back")
        except RuntimeError:
            pass
        contact, _ = resolve_contact(db, Identity("email", "quinn@fjord.example", "Quinn"))
        db.run("UPDATE contacts SET name = ? WHERE id = ?", ("Quintessa", contact))
        with db.savepoint():
            resolve_contact(db, Identity("email", "quinn.other@fjord.example", "Q"))
            db.run(
                "UPDATE identities SET contact_id = ? WHERE address = ?",
                (contact, "quinn.other@fjord.example"),
            )
        return {"edited": edited, "kept": kept, "contact": contact}

    ids = await store.write(busy)
    assert [c["id"] for c in await store.read(search_contacts, "quintessa")] == [ids["contact"]]
    found = await store.read(search_contacts, "quinn.other")
    assert [c["id"] for c in found] == [ids["contact"]]
    assert await hits(store, "kettle") == []
    assert await hits(store, "toaster") == [ids["edited"]]
    assert await hits(store, "juicer") == []
    assert await hits(store, "percolator") == [ids["kept"]]
    assert await hits(store, "waffle") == []
    if store.dialect == "sqlite":

        def check(db: Db) -> int:
            db.run("INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)")
            db.run("INSERT INTO contacts_fts (contacts_fts) VALUES ('integrity-check')")
            return int(
                db.val(
                    "SELECT (SELECT COUNT(*) FROM messages_fts_pending)"
                    " + (SELECT COUNT(*) FROM contacts_fts_pending)"
                )
            )

        assert await store.write(check) == 0


async def test_agent_visibility_and_filters(store: Store) -> None:
    s = await store.write(seed)
    m, c = s["msgs"], s["convs"]
    # wang is in team china; alice is assigned Ann's conversation (team support).
    assert await hits(store, "订单", visible_teams=["china"], visible_user="wang") == [
        m["refund_zh"]
    ]
    assert await hits(store, "refund", visible_teams=["china"], visible_user="wang") == []
    assert await hits(store, "refund", visible_teams=[], visible_user="alice") == [m["blender"]]
    assert await hits(store, "invoice", visible_teams=[], visible_user="alice") == []
    assert await hits(store, "my", conversation_id=c["ann"], limit=1) == [m["parcel"]]
    assert await hits(store, "my", before=m["parcel"]) == [m["blender"]]
    assert await hits(store, "my", channel="email") == []


async def test_contacts_by_name_address_phone_and_chinese(store: Store) -> None:
    s = await store.write(seed)
    k = s["contacts"]

    async def ids(q: str, **kw: Any) -> list[int]:
        return [c["id"] for c in await store.read(search_contacts, q, **kw)]

    assert await ids("ann lee") == [k["ann"]]
    assert await ids("EXAMPLE.COM") == [k["ann"]]
    assert await ids("shop.example") == [k["bob"]]
    assert await ids("13800138") == [k["wang"]]  # digits inside an E.164 number
    assert await ids("小明") == [k["wang"]]
    assert await ids("王小明") == [k["wang"]]
    assert await ids("example") == [k["bob"], k["ann"]]  # most recent first
    found = (await store.read(search_contacts, "bob"))[0]
    assert found["identities"] == [
        {"kind": "email", "address": "bob@shop.example", "display_name": "Bob"}
    ]
    assert await ids("ann", visible_teams=["china"], visible_user="wang") == []
    assert await ids("ann", visible_teams=["support"], visible_user="x") == [k["ann"]]


async def test_exact_contact_match_ranks_first(store: Store) -> None:
    def add(db: Db) -> tuple[int, int]:
        exact, _ = resolve_contact(db, Identity("email", "jo@example.com", "Jo"))
        longer, _ = resolve_contact(db, Identity("email", "mojo@example.com", "Mojo Jojo"))
        return exact, longer

    exact, longer = await store.write(add)
    assert [c["id"] for c in await store.read(search_contacts, "jo@example.com")] == [
        exact,
        longer,
    ]
    assert (await store.read(search_contacts, "jo"))[0]["id"] == exact


async def test_contact_index_follows_identities_and_merges(store: Store) -> None:
    s = await store.write(seed)
    k = s["contacts"]

    def move(db: Db) -> None:
        db.run("UPDATE identities SET contact_id = ? WHERE contact_id = ?", (k["ann"], k["bob"]))
        db.run("UPDATE contacts SET merged_into = ?, name = ? WHERE id = ?",
               (k["ann"], "Robert", k["bob"]))  # fmt: skip

    await store.write(move)
    assert [c["id"] for c in await store.read(search_contacts, "shop.example")] == [k["ann"]]
    assert await store.read(search_contacts, "Robert") == []  # merged away

    def rename(db: Db) -> None:
        db.run("UPDATE contacts SET name = ? WHERE id = ?", ("Annabel", k["ann"]))

    await store.write(rename)
    assert [c["id"] for c in await store.read(search_contacts, "annabel")] == [k["ann"]]


def test_query_parsing() -> None:
    assert parse_query(' refund  "order 47"  Refund ') == ["refund", "order 47"]
    assert parse_query("a b c d e f g h i j") == list("abcdefgh")
    for empty in ("", "   ", '""', '" "'):
        with pytest.raises(SearchError):
            parse_query(empty)


async def agent(daemon: Daemon, user: str) -> dict[str, str]:
    t = await daemon.store.write(create_token, "agent", username=user)
    return {"Authorization": f"Bearer {t}"}


async def test_search_api(daemon: Daemon, client: httpx.AsyncClient) -> None:
    await post_inbound(client, message("s1", "My parcel never arrived, I want a refund"))
    await post_inbound(
        client,
        {
            "external_id": "s2",
            "text": "我想申请退款，包裹还没到",
            "sender": {"kind": "phone", "address": "+86 138 0013 8000", "name": "王小明"},
        },
    )
    await settle(daemon)
    assert (await client.get("/api/v1/search?q=refund")).status_code == 401
    auth = await admin_token(daemon)
    r = await client.get("/api/v1/search", params={"q": "退款"}, headers=auth)
    assert r.status_code == 200
    [hit] = r.json()["items"]
    assert "退款" in hit["snippet"] and hit["channel"] == "api"
    r = await client.get("/api/v1/search", params={"q": "小明", "kind": "contacts"}, headers=auth)
    [contact] = r.json()["items"]
    assert contact["identities"][0]["address"] == "+8613800138000"
    assert (await client.get("/api/v1/search?q=%20", headers=auth)).status_code == 400
    assert (await client.get("/api/v1/search?q=x&kind=files", headers=auth)).status_code == 422
    # An agent of no team, assigned nothing, finds nothing.
    nobody = await agent(daemon, "nobody")
    r = await client.get("/api/v1/search", params={"q": "refund"}, headers=nobody)
    assert r.status_code == 200 and r.json()["items"] == []
    page = await client.get("/api/v1/search", params={"q": "a", "limit": 1}, headers=auth)
    assert page.json()["next_before"] == page.json()["items"][0]["id"]
