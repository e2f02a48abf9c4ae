"""Every field and operator a rule's ``when`` can use, and their nesting."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from omnidesk.model import Decision

Decide = Callable[..., Decision]


def tagged(when: str) -> str:
    """A one-rule file that tags the message "hit" when ``when`` (TOML) holds."""
    return f"""
    [[rule]]
    name = "r"
    when = {when}
    then = {{ tags = ["hit"] }}
    """


def hits(decide: Decide, when: str, text: str = "", **kw: object) -> bool:
    return "hit" in decide(tagged(when), text, **kw).tags


# ---------------------------------------------------------------- equals / in


def test_channel_equals_is_case_insensitive(decide: Decide) -> None:
    assert hits(decide, '{ channel = "Mail" }', channel="mail")
    assert not hits(decide, '{ channel = "mail" }', channel="telegram")


def test_channel_type_in_list(decide: Decide) -> None:
    assert hits(decide, '{ channel_type.in = ["telegram", "email"] }', channel_type="email")
    assert hits(decide, '{ channel_type = ["telegram", "email"] }', channel_type="telegram")
    assert not hits(decide, '{ channel_type.in = ["telegram"] }', channel_type="slack")


def test_sender_address_and_domain(decide: Decide) -> None:
    assert hits(decide, '{ sender = "Bob@Example.com" }', sender="bob@example.com")
    assert hits(decide, '{ sender_domain = "example.com" }', sender="bob@EXAMPLE.com")
    # "@example.com" is what admins often write; it means the same domain.
    assert hits(decide, '{ sender_domain.in = ["@example.com"] }', sender="x@example.com")
    assert not hits(decide, '{ sender_domain = "example.com" }', sender="x@example.org")
    # a phone number or chat id has no domain
    assert not hits(decide, '{ sender_domain = "example.com" }', sender="+4915112345678")


def test_sender_name_contains(decide: Decide) -> None:
    assert hits(decide, '{ sender_name.contains = "acme" }', sender_name="Jo at ACME Ltd")
    assert not hits(decide, '{ sender_name.contains = "acme" }', sender_name=None)


def test_contact_attribute_equals_in_and_missing(decide: Decide) -> None:
    assert hits(decide, '{ contact.tier = "gold" }', contact={"tier": "Gold"})
    assert hits(decide, '{ contact.tier.in = ["gold", "vip"] }', contact={"tier": "vip"})
    assert not hits(decide, '{ contact.tier = "gold" }', contact={"tier": "silver"})
    assert not hits(decide, '{ contact.tier = "gold" }', contact={})


def test_contact_numbers_and_booleans_compare_by_value(decide: Decide) -> None:
    assert hits(decide, "{ contact.seats = 5 }", contact={"seats": 5.0})
    assert hits(decide, "{ contact.beta = true }", contact={"beta": True})
    assert hits(decide, "{ contact.beta = true }", contact={"beta": "true"})
    assert not hits(decide, "{ contact.beta = true }", contact={"beta": False})


def test_contact_list_attribute_matches_any_element(decide: Decide) -> None:
    assert hits(decide, '{ contact.groups = "beta" }', contact={"groups": ["press", "beta"]})
    assert not hits(decide, '{ contact.groups = "beta" }', contact={"groups": ["press"]})


@pytest.mark.parametrize(
    ("op", "limit", "value", "expected"),
    [
        ("above", 100, 101, True),
        ("above", 100, 100, False),
        ("at_least", 100, 100, True),
        ("below", 100, 99.5, True),
        ("below", 100, 100, False),
        ("at_most", 100, 100, True),
        ("at_least", 100, "250", True),  # numeric text from a CRM import
        ("at_least", 100, "lots", False),
    ],
)
def test_contact_number_comparisons(
    decide: Decide, op: str, limit: int, value: object, expected: bool
) -> None:
    assert hits(decide, f"{{ contact.spend.{op} = {limit} }}", contact={"spend": value}) is expected


# ---------------------------------------------------------------- contains


def test_contains_matches_whole_words_case_insensitively(decide: Decide) -> None:
    when = '{ text.contains = "refund" }'
    assert hits(decide, when, "I want a REFUND now")
    assert hits(decide, when, "refund.")
    assert not hits(decide, when, "refunds are slow")  # not a whole word
    assert not hits(decide, when, "nonrefundable")


def test_contains_phrase_ignores_extra_spaces_and_line_breaks(decide: Decide) -> None:
    assert hits(decide, '{ text.contains = "still waiting" }', "I am still\n   waiting")


def test_contains_any_of_a_list(decide: Decide) -> None:
    when = '{ text.contains = ["invoice", "receipt"] }'
    assert hits(decide, when, "send me the receipt")
    assert not hits(decide, when, "hello")


def test_contains_wildcard_lifts_the_word_boundary(decide: Decide) -> None:
    assert hits(decide, '{ text.contains = "refund*" }', "they refunded me")
    assert hits(decide, '{ text.contains = "*ware" }', "the firmware")
    assert not hits(decide, '{ text.contains = "refund*" }', "prerefund")


def test_contains_chinese_matches_inside_text_without_spaces(decide: Decide) -> None:
    when = '{ text.contains = "退款" }'
    assert hits(decide, when, "我要退款，谢谢")
    assert hits(decide, when, "申请退款refund")
    # a Latin keyword next to Chinese characters still counts as a whole word
    assert hits(decide, '{ text.contains = "wifi" }', "我的wifi坏了")


def test_contains_is_width_and_apostrophe_insensitive(decide: Decide) -> None:
    assert hits(decide, '{ text.contains = "refund" }', "ＲＥＦＵＮＤ please")
    assert hits(decide, '{ text.contains = "don\'t" }', "I don’t know")


def test_subject_and_subject_or_text(decide: Decide) -> None:
    assert hits(decide, '{ subject.contains = "invoice" }', "", subject="Invoice 42")
    assert not hits(decide, '{ subject.contains = "invoice" }', "invoice", subject="Hi")
    when = '{ subject_or_text.contains = "invoice" }'
    assert hits(decide, when, "", subject="Invoice 42")
    assert hits(decide, when, "the invoice", subject="Hi")


def test_contains_on_tags_sees_tags_added_by_earlier_rules(decide: Decide) -> None:
    rules = """
    [[rule]]
    name = "first"
    when = { text.contains = "refund" }
    then = { tags = ["billing-issue"] }

    [[rule]]
    name = "second"
    when = { tags.contains = "billing*" }
    then = { team = "billing" }
    """
    assert decide(rules, "a refund").team == "billing"
    assert decide(rules, "hello").team is None


def test_tags_equals_sees_the_input_tags(decide: Decide) -> None:
    assert hits(decide, '{ tags = "returning" }', tags=frozenset({"Returning"}))
    assert not hits(decide, '{ tags = "returning" }')


# ---------------------------------------------------------------- matches, affixes


def test_matches_is_a_case_insensitive_search(decide: Decide) -> None:
    when = """{ text.matches = 'order\\s*#?\\d{5}' }"""
    assert hits(decide, when, "About ORDER #12345 please")
    assert not hits(decide, when, "about order 12")


def test_matches_any_of_several_patterns(decide: Decide) -> None:
    when = """{ subject.matches = ['^re:', '^fwd?:'] }"""
    assert hits(decide, when, subject="Fw: hello")
    assert not hits(decide, when, subject="hello re: x")


def test_starts_with_and_ends_with(decide: Decide) -> None:
    assert hits(decide, '{ subject.starts_with = "[urgent]" }', subject="[URGENT] server")
    assert hits(decide, '{ sender.ends_with = ".gov" }', sender="x@agency.GOV")
    assert not hits(decide, '{ sender.ends_with = ".gov" }', sender="x@gov.com")


# ---------------------------------------------------------------- language


def test_language_from_the_channel_with_region_subtag(decide: Decide) -> None:
    assert hits(decide, '{ language = "zh" }', language="zh-CN")
    assert hits(decide, '{ language = "zh-tw" }', language="zh_TW")
    assert not hits(decide, '{ language = "zh-tw" }', language="zh-CN")


def test_language_detected_when_the_channel_gave_none(decide: Decide) -> None:
    assert hits(decide, '{ language = "zh" }', "你好，我的订单还没有到", language=None)
    assert not hits(decide, '{ language = "zh" }', "Where is my parcel?", language=None)


# ---------------------------------------------------------------- category, confidence


def test_category_is_the_classifier_guess(decide: Decide) -> None:
    assert hits(decide, '{ category = "complaint" }', "it arrived broken")
    assert not hits(decide, '{ category = "complaint" }', "hello there")


def test_category_set_by_an_earlier_rule_wins_over_the_guess(decide: Decide) -> None:
    rules = """
    [[rule]]
    name = "survey-replies-are-feedback"
    when = { subject.contains = "survey" }
    then = { category = "feedback" }

    [[rule]]
    name = "complaints"
    when = { category = "complaint" }
    then = { team = "care" }
    """
    assert decide(rules, "broken", subject="Re: survey").team is None
    assert decide(rules, "broken", subject="help").team == "care"


def test_confidence_below(decide: Decide) -> None:
    when = "{ confidence.below = 0.5 }"
    assert hits(decide, when, "nothing to see")  # default guess: confidence 1/3
    assert not hits(decide, when, "refund, broken")


# ---------------------------------------------------------------- time


def test_time_between_in_the_global_timezone(rules_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from omnidesk.rules import load_rules

    from .conftest import inp

    d = rules_dir(
        {
            "10-settings.toml": '[settings]\ntimezone = "Asia/Shanghai"\n',
            "50-x.toml": """
            [[rule]]
            name = "office"
            when = { time.between = ["09:00", "18:00"] }
            then = { tags = ["hit"] }
            """,
        }
    )
    rs = load_rules(d)
    # 02:00 UTC is 10:00 in Shanghai
    assert "hit" in rs.evaluate(inp(received_at=datetime(2024, 5, 7, 2, 0, tzinfo=UTC))).tags
    assert "hit" not in rs.evaluate(inp(received_at=datetime(2024, 5, 7, 12, 0, tzinfo=UTC))).tags


def test_time_between_wraps_past_midnight_and_rule_timezone_overrides(decide: Decide) -> None:
    rules = """
    [[rule]]
    name = "night"
    timezone = "America/New_York"
    when = { time.between = ["22:00", "06:00"] }
    then = { tags = ["hit"] }
    """
    # 03:00 UTC = 23:00 in New York (EDT); 12:00 UTC = 08:00
    assert "hit" in decide(rules, received_at=datetime(2024, 5, 7, 3, 0, tzinfo=UTC)).tags
    assert "hit" not in decide(rules, received_at=datetime(2024, 5, 7, 12, 0, tzinfo=UTC)).tags
    # the end is exclusive
    assert "hit" not in decide(rules, received_at=datetime(2024, 5, 7, 10, 0, tzinfo=UTC)).tags


def test_weekday(decide: Decide) -> None:
    when = '{ weekday = ["sat", "Sunday"] }'
    assert hits(decide, when, received_at=datetime(2024, 5, 4, 12, tzinfo=UTC))  # Saturday
    assert hits(decide, when, received_at=datetime(2024, 5, 5, 12, tzinfo=UTC))  # Sunday
    assert not hits(decide, when, received_at=datetime(2024, 5, 6, 12, tzinfo=UTC))
    assert hits(decide, '{ weekday = "tue" }', received_at=datetime(2024, 5, 7, 12, tzinfo=UTC))


def test_business_hours(rules_dir) -> None:  # type: ignore[no-untyped-def]
    from omnidesk.rules import load_rules

    from .conftest import inp

    d = rules_dir(
        {
            "10-settings.toml": """
            [settings.business_hours]
            days = ["mon", "tue", "wed", "thu", "fri"]
            from = "09:00"
            to = "17:00"
            """,
            "50-x.toml": """
            [[rule]]
            name = "closed"
            when = { business_hours = false }
            then = { tags = ["out-of-hours"] }
            """,
        }
    )
    rs = load_rules(d)

    def tags(when: datetime) -> list[str]:
        return rs.evaluate(inp(received_at=when)).tags

    assert tags(datetime(2024, 5, 7, 10, 0, tzinfo=UTC)) == []  # Tuesday 10:00
    assert tags(datetime(2024, 5, 7, 17, 0, tzinfo=UTC)) == ["out-of-hours"]  # closing time
    assert tags(datetime(2024, 5, 4, 10, 0, tzinfo=UTC)) == ["out-of-hours"]  # Saturday


# ---------------------------------------------------------------- nesting


def test_several_fields_in_one_table_must_all_hold(decide: Decide) -> None:
    when = '{ channel = "mail", text.contains = "refund" }'
    assert hits(decide, when, "refund", channel="mail")
    assert not hits(decide, when, "refund", channel="chat")
    assert not hits(decide, when, "hello", channel="mail")


def test_not(decide: Decide) -> None:
    when = '{ not = { channel = "mail" } }'
    assert hits(decide, when, channel="chat")
    assert not hits(decide, when, channel="mail")
    # a list under not means none of them
    when = '{ not = [{ channel = "mail" }, { channel = "chat" }] }'
    assert hits(decide, when, channel="sms")
    assert not hits(decide, when, channel="chat")
    # Keywords and patterns under not are still looked for.
    when = '{ not = { text.contains = "zebrafish" } }'
    assert hits(decide, when, "where is my order")
    assert not hits(decide, when, "my zebrafish arrived dead")


def test_all_any_not_nest(decide: Decide) -> None:
    when = """{ all = [
        { any = [{ text.contains = "refund" }, { subject.contains = "invoice" }] },
        { not = { contact.tier = "internal" } },
    ] }"""
    assert hits(decide, when, "refund please")
    assert hits(decide, when, "", subject="Invoice")
    assert not hits(decide, when, "refund", contact={"tier": "internal"})
    assert not hits(decide, when, "hello")


def test_rule_without_when_always_matches(decide: Decide) -> None:
    rules = """
    [[rule]]
    name = "everything"
    then = { tags = ["seen"] }
    """
    assert decide(rules, "anything").tags == ["seen"]


def test_explanation_names_the_rule_and_the_words(decide: Decide) -> None:
    rules = """
    [[rule]]
    name = "billing"
    when = { text.contains = ["invoice", "refund"], channel = "mail" }
    then = { team = "billing", priority = "high" }
    """
    d = decide(rules, "where is my refund")
    assert d.rules_fired == ["billing"]
    line = d.explanation[-1]
    assert line.startswith("rule 'billing' set priority=high, team=billing")
    assert "text contains 'refund'" in line and "invoice" not in line
    assert "channel = mail" in line


def test_huge_message_is_read_up_to_max_text(decide: Decide) -> None:
    from omnidesk.rules.text import MAX_TEXT

    filler = "lorem ipsum " * (MAX_TEXT // 12 + 10)
    assert hits(decide, '{ text.contains = "refund" }', "refund " + filler)
    assert not hits(decide, '{ text.contains = "refund" }', filler + " refund")
    assert not hits(decide, "{ text.matches = 'refund' }", filler + " refund")


def test_catastrophic_regex_times_out_as_no_match(decide: Decide) -> None:
    # (a|aa)+$ backtracks exponentially on a run of a's followed by something else
    assert not hits(decide, "{ text.matches = '(a|aa)+$' }", "a" * 40 + "!")
    assert hits(decide, "{ text.matches = '(a|aa)+$' }", "aaaa")
