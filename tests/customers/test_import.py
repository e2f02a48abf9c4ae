"""``omnidesk contacts import``: rows matched by e-mail, E.164 phone or
handle; an exact report of created, updated, unchanged, conflicting and
invalid rows; a conflict changes nothing; a dry run reports the same and
writes nothing; importing the same file again creates no duplicate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from omnidesk.config import parse_config
from omnidesk.service.imports import import_file
from omnidesk.store import Store
from omnidesk.store.base import Db
from tests.customers.helpers import FIELDS

FIELDSET = parse_config({"customers": FIELDS}).customer_fields.contact

CSV = """name,email,phone,handle,company,lifetime_value,segment,customer_since,newsletter
Ann Lee,ann@example.com,+1 555 010 9999,,Acme,1200,retail,2021-03-04,yes
Bob Stone,BOB@example.com,,telegram:4242,Acme,,wholesale,,no
Cleo Park,,+44 20 7946 0958,,,99.5,,,
Dup Ann,ann@example.com,,,,,,,
Bad Date,bad@example.com,,,,,,2021-13-01,
No Identity,,,,,,,,
Bad Phone,,not a phone,,,,,,
"""


async def counts(store: Store) -> tuple[int, int]:
    def q(db: Db) -> tuple[int, int]:
        return (
            int(db.val("SELECT COUNT(*) FROM contacts")),
            int(db.val("SELECT COUNT(*) FROM identities")),
        )

    return await store.read(q)


async def test_import_report_is_exact_and_reimport_adds_nothing(
    store: Store, tmp_path: Path
) -> None:
    f = tmp_path / "contacts.csv"
    f.write_text(CSV)
    seen: list[int] = []
    dry = await import_file(store, f, FIELDSET, dry_run=True, progress=seen.append)
    assert await counts(store) == (0, 0)  # the dry run wrote nothing
    assert seen and seen[-1] == 7
    real = await import_file(store, f, FIELDSET)
    # The same report (a contact the dry run created has no id to keep: on
    # PostgreSQL a rolled-back sequence still moved on).
    assert {**real.as_dict(), "conflicts": [row for row, _ in real.conflicts]} == {
        **dry.as_dict(),
        "conflicts": [row for row, _ in dry.conflicts],
    }
    r = real.as_dict()
    # Ann, Bob, Cleo created; "Dup Ann" matches Ann by address and would rename her.
    assert (r["created"], r["updated"], r["unchanged"], r["conflicting"], r["invalid"]) == (
        3,
        0,
        0,
        1,
        3,
    )
    assert r["conflicts"][0]["row"] == 5 and "name is 'Ann Lee' here" in r["conflicts"][0]["reason"]
    assert {e["row"] for e in r["errors"]} == {6, 7, 8}
    assert any("customer_since" in e["reason"] for e in r["errors"])
    assert await counts(store) == (3, 5)

    def ann(db: Db) -> dict[str, Any]:
        row = db.one(
            "SELECT k.name, k.attributes, m.name AS company FROM identities i"
            " JOIN contacts k ON k.id = i.contact_id LEFT JOIN companies m ON m.id = k.company_id"
            " WHERE i.address = 'ann@example.com'"
        )
        assert row is not None
        return {"name": row["name"], "attrs": json.loads(row["attributes"]), "co": row["company"]}

    a = await store.read(ann)
    assert a["name"] == "Ann Lee" and a["co"] == "Acme"
    assert a["attrs"] == {
        "lifetime_value": 1200,
        "segment": "retail",
        "customer_since": "2021-03-04",
        "newsletter": True,
    }
    # The same file again: nothing new, nothing duplicated.
    again = (await import_file(store, f, FIELDSET)).as_dict()
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 3)
    assert await counts(store) == (3, 5)

    # A new phone for Ann and a value she lacks: updated; a differing value: conflict.
    g = tmp_path / "more.jsonl"
    g.write_text(
        "\n".join(
            json.dumps(x)
            for x in [
                {"email": "ann@example.com", "phone": "+15550109999", "notes": "VIP"},
                {"email": "bob@example.com", "lifetime_value": 5},
                {"email": "cleo@example.com", "phone": "+442079460958", "lifetime_value": 7},
                {"email": "ann@example.com", "handle": "telegram:4242"},
            ]
        )
    )
    more = (await import_file(store, g, FIELDSET)).as_dict()
    assert (more["created"], more["updated"], more["conflicting"]) == (0, 2, 2)
    reasons = [c["reason"] for c in more["conflicts"]]
    assert "lifetime_value is 99.5 here, 7 in the file" in reasons[0]
    assert "matches contacts" in reasons[1]
    a = await store.read(ann)
    assert a["attrs"]["notes"] == "VIP"
    # --overwrite replaces the differing value, and says so in the audit.
    over = (await import_file(store, g, FIELDSET, overwrite=True)).as_dict()
    assert over["conflicting"] == 1  # still two contacts for one row


def omnidesk(*args: str) -> subprocess.CompletedProcess[str]:
    # In a child: the command sets up logging for its process.
    return subprocess.run(
        [sys.executable, "-m", "omnidesk.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_import_prints_the_report_and_refuses_unknown_columns(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    lines = [f'[storage]\nurl = "sqlite:///{tmp_path}/db.sqlite"\n']
    for table, fields in FIELDS.items():
        for name, spec in fields.items():
            lines.append(f"[customers.{table}.{name}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in spec.items()]
    cfg.write_text("\n".join(lines) + "\n")
    f = tmp_path / "c.csv"
    f.write_text(CSV)
    report = tmp_path / "report.json"
    dry = omnidesk("contacts", "import", str(f), "-c", str(cfg), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "(dry run: nothing written)" in dry.stdout
    r = omnidesk("contacts", "import", str(f), "-c", str(cfg), "--report", str(report))
    assert r.returncode == 0, r.stderr
    assert "7 rows: 3 created, 0 updated, 0 unchanged, 1 conflicting, 3 invalid" in r.stdout
    assert f"{f}:5: conflict: contact #1" in r.stdout
    assert "7/7" in r.stderr  # the progress bar's last state
    assert json.loads(report.read_text())["created"] == 3
    bad = tmp_path / "bad.csv"
    bad.write_text("email,lifetime_valu\nx@example.com,3\n")
    r = omnidesk("contacts", "import", str(bad), "-c", str(cfg))
    assert r.returncode == 2
    assert "bad.csv:1: unknown column 'lifetime_valu'" in r.stderr
    assert "Traceback" not in r.stderr
