"""Small labelled messages made up for the tests (written here, no third-party text):
varied enough that a model learns the three classes and the hash split puts some of
each into a held-out part."""

from __future__ import annotations

import itertools

_THINGS = ["order", "parcel", "phone", "laptop", "invoice", "booking", "card", "router"]
_NAMES = ["Ann", "Bo", "Chen", "Dita", "Emil", "Femi", "Gus", "Hana"]

COMPLAINT = [
    "my {t} arrived broken and late, this is terrible, {n}",
    "still waiting for the {t} after three weeks, awful service {n}",
    "the {t} stopped working again, I am really angry, {n}",
]
FEEDBACK = [
    "thank you {n}, the {t} came quickly, lovely service",
    "great job with my {t}, {n} was so helpful and kind",
    "really happy with the new {t}, well done team {n}",
]
INQUIRY = [
    "what time can I pick up the {t} on friday, {n}?",
    "how do I change the address for my {t}, {n}?",
    "could you tell me the price of a {t}, {n}?",
]


def examples(per_class: int = 24) -> list[dict[str, str]]:
    out = []
    for label, templates in (
        ("complaint", COMPLAINT),
        ("feedback", FEEDBACK),
        ("inquiry", INQUIRY),
    ):
        combos = itertools.islice(itertools.product(templates, _THINGS, _NAMES), 0, None, 5)
        for template, thing, name in itertools.islice(combos, per_class):
            out.append({"text": template.format(t=thing, n=name), "label": label})
    return out
