"""Reports from the daily figures the scheduler and the surveys keep: volume,
response times in business hours, SLA attainment, backlog, CSAT, loyalty,
complaints and agents, checked against what was done to the conversations;
and the duration histograms' medians against the exact ones."""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from omnidesk.service import charts
from omnidesk.service.clock import ManualClock
from omnidesk.service.rebuild import rebuild
from omnidesk.service.reports import Params, build, csv_rows
from omnidesk.service.surveys import record_answer
from omnidesk.store import Store, histogram
from tests.service.helpers import berlin, make_desk, rules_with

RULES = """
[[calendar]]
name = "default"
timezone = "Europe/Berlin"
days = ["mon", "tue", "wed", "thu", "fri"]
from = "09:00"
to = "17:00"

[[rule]]
name = "complaints"
when = { category = "complaint" }
then = { team = "complaints", priority = "high" }

[[sla]]
name = "all"
first_response = { normal = "2h", high = "1h" }
resolution = "8h"

[survey]
enabled = true
require_reply = false
loyalty = true
quiet_days = 0
"""


def test_histogram_percentiles_are_within_a_bucket_of_the_exact_ones() -> None:
    rng = random.Random(3)
    for shape in (lambda: rng.expovariate(1 / 3600), lambda: rng.lognormvariate(9, 1.2)):
        values = [shape() for _ in range(5000)]
        h = histogram.from_values(values)
        assert histogram.total(h) == 5000
        assert histogram.loads(histogram.dumps(h)) == h
        for q in (0.5, 0.9):
            exact = statistics.quantiles(values, n=100)[int(q * 100) - 1]
            got = histogram.percentile(h, q)
            assert got is not None and abs(got - exact) / exact < histogram.RATIO - 1


@pytest.fixture
def clock(clock_at: Callable[[float], ManualClock]) -> ManualClock:
    return clock_at(berlin(2026, 3, 2, 9, 0))  # Monday


async def test_reports_add_up_what_happened(
    store: Store, tmp_path: Path, clock: ManualClock
) -> None:
    desk = await make_desk(store, rules_with(tmp_path, RULES, keep=False), clock)
    svc = desk.rules.service
    # Monday 09:00: three questions and a complaint.
    for i, text in enumerate(
        [
            "Do you sell gift cards?",
            "Where is my invoice?",
            "Can I pay by card?",
            "This is unacceptable, my parcel is broken",
        ]
    ):
        await desk.message(text, address=f"c{i}@example.com")
    await desk.tick()
    # Answers after 30 min, 90 min, 3 h (late) and 20 min (the complaint).
    for cid, minutes in ((1, 30), (2, 90), (3, 180), (4, 20)):
        clock.set(berlin(2026, 3, 2, 9, 0) + minutes * 60)
        await desk.reply("Answer", cid=cid, author="agent:alice")
        await desk.tick()
    # Resolved: 1 and 4 on Monday at 11:00, 2 on Tuesday at 10:00 (9 business h: late).
    clock.set(berlin(2026, 3, 2, 11, 0))
    for cid in (1, 4):
        await desk.set_status("resolved", cid=cid)
    await desk.tick()
    clock.set(berlin(2026, 3, 3, 10, 0))
    await desk.set_status("resolved", cid=2)
    await desk.tick()
    # Surveys went out at once; two ratings and a loyalty answer come back.
    for cid, rating, loyal in ((1, 5, 10), (4, 2, 3)):
        sid = await store.read(
            lambda db, c=cid: db.val("SELECT id FROM surveys WHERE conversation_id = ?", (c,))
        )
        await store.write(
            record_answer,
            sid,
            service=svc,
            rating=rating,
            loyalty=loyal,
            via="link",
            now=clock.now(),
        )
    await desk.tick()
    p = Params(date(2026, 3, 1), date(2026, 3, 31))
    now = clock.now()

    async def report(name: str, **kw: str) -> dict:
        return await store.read(build, name, Params(p.start, p.end, **kw), now)

    vol = await report("volume")
    assert vol["summary"] == {"created": 4, "resolved": 3}
    assert vol["series"]["created"][1] == 4  # 2026-03-02
    assert vol["series"]["resolved"][1:3] == [2, 1]
    times = await report("response_times")
    first = times["summary"]["first_response"]
    assert first["count"] == 4
    # The middle of 20, 30, 90, 180 min: between the two middle values
    # (a histogram gives the lower one, within its bucket).
    assert 0.5 <= first["median_hours"] <= 1.5
    res = times["summary"]["resolution"]
    assert res["count"] == 3 and res["p90_hours"] == pytest.approx(9.0, rel=0.2)
    sla = await report("sla")
    assert sla["summary"]["first_response"] == {"met": 3, "breached": 1, "attained_pct": 75.0}
    assert sla["summary"]["resolution"] == {"met": 2, "breached": 1, "attained_pct": 66.7}
    backlog = await report("backlog")
    assert backlog["summary"]["open"] == 1
    assert backlog["series"]["open"] == [0, 0, 0, 1, 0, 0]  # conversation 3: 25 h, "1-3 days"
    csat = await report("csat")
    assert csat["summary"]["sent"] == 3 and csat["summary"]["answered"] == 2
    assert csat["summary"]["csat_pct"] == 50.0 and csat["summary"]["response_rate_pct"] == 66.7
    assert csat["summary"]["distribution"] == {"r5_of_5": 1, "r2_of_5": 1}
    loyalty = await report("loyalty")
    assert loyalty["summary"]["nps"] == 0.0  # one promoter, one detractor
    complaints = await report("complaints")
    assert complaints["summary"]["received"] == 1 and complaints["summary"]["resolved"] == 1
    assert complaints["summary"]["resolution_median_hours"] == pytest.approx(2.0, rel=0.2)
    by_team = await report("volume", by="team")
    assert {r["team"] for r in by_team["table"]} == {"complaints", "support"}
    only = await report("csat", team="complaints")
    assert only["summary"]["answered"] == 1 and only["summary"]["csat_pct"] == 0.0
    agents = await report("agents")
    assert sum(r["resolved"] for r in agents["table"]) == 3
    cols, rows = csv_rows(sla)
    assert cols == ["team", "target", "met", "breached", "attained_pct"]
    assert len(rows) == len(sla["table"])
    # Recounted from the conversations, the figures are the same.
    names = ("volume", "response_times", "sla", "csat", "loyalty", "complaints", "agents")
    live = {name: await report(name) for name in names}
    tally = await store.write(rebuild, desk.rules, now)
    assert tally.conversations == 4 and tally.surveys == 3
    assert {name: await report(name) for name in names} == live
    # The contact who rated 2 after a complaint is at risk.
    score = await store.read(
        lambda db: db.one("SELECT score, at_risk FROM contact_scores WHERE contact_id = 4")
    )
    assert score["at_risk"] == 1
    contacts = await report("contacts")
    assert contacts["summary"]["at_risk"] >= 1
    assert 4 in [r["contact_id"] for r in contacts["table"]]
    assert sum(contacts["series"]["contacts"]) == contacts["summary"]["contacts_scored"]


def test_charts_are_self_contained_svg() -> None:
    svg = charts.line_chart(
        "Median <hours>",
        ["2026-03-01", "2026-03-02", "2026-03-03"],
        [("first", [1.0, None, 3.0]), ("next", [0.5, 0.7, 0.2])],
    )
    assert svg.startswith("<svg") and "Median &lt;hours&gt;" in svg
    assert "script" not in svg and "http" not in svg.replace("http://www.w3.org/2000/svg", "")
    assert svg.count("<polyline") == 1  # the first series is broken by its gap
    bars = charts.bar_chart("Open", ["< 1 h", "> 7 days"], [("open", [3, 0])])
    assert bars.count("<rect") == 1
    assert "no data" in charts.bar_chart("Open", ["a"], [("open", [0])])
