"""The tests' third-party data: everything in tests/corpora is accounted for in its
NOTICE with a licence text beside it, sets kept outside are reached only through the
``corpus`` mark (tests/testdata.py), and a missing set is a clear skip, or a failure
when OMNIDESK_CORPORA names a folder without it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import testdata

TESTS = Path(__file__).parent
NOTICE = testdata.VENDORED / "NOTICE"
LICENSES = testdata.VENDORED / "LICENSES"


def notice_entries() -> dict[str, str]:
    """Each vendored entry of the NOTICE (a path at the start of a line) and
    its block of text, up to the list of sets not copied."""
    copied = NOTICE.read_text(encoding="utf-8").split("Not copied", 1)[0]
    blocks = re.split(r"^(?=[a-z][\w.-]*/\S+$)", copied, flags=re.M)[1:]
    return {b.split("\n", 1)[0]: b for b in blocks}


def test_every_vendored_file_belongs_to_a_set_the_notice_names() -> None:
    entries = notice_entries()
    assert len(entries) >= 10
    for entry in entries:
        assert testdata.vendored(entry).exists(), f"NOTICE names {entry}, which is not there"

    def named(p: Path) -> bool:
        return any(p == testdata.vendored(e) or testdata.vendored(e) in p.parents for e in entries)

    unaccounted = [
        str(p.relative_to(testdata.VENDORED))
        for p in testdata.VENDORED.rglob("*")
        if p.is_file() and p != NOTICE and LICENSES not in p.parents and not named(p)
    ]
    assert not unaccounted, f"files in tests/corpora that NOTICE does not name: {unaccounted}"


def test_each_set_says_source_version_licence_and_changes() -> None:
    referenced: set[str] = set()
    for entry, block in notice_entries().items():
        for field in ("Source:", "Licence:", "Changes:"):
            assert f"  {field}" in block, f"{entry}: no {field}"
        licence = block.split("Licence:", 1)[1].split("Changes:", 1)[0]
        texts = re.findall(r"LICENSES/([\w.-]+)", licence)
        if entry.endswith(".md"):
            continue  # our own listing of facts about the sets
        assert "Version:" in block, f"{entry}: no Version:"
        assert texts, f"{entry}: its licence text is not in LICENSES/"
        for name in texts:
            assert (LICENSES / name).is_file(), f"{entry}: LICENSES/{name} is missing"
        referenced.update(texts)
    assert referenced == {p.name for p in LICENSES.iterdir()}, "a licence text nobody uses"


def test_sets_kept_outside_are_the_ones_the_notice_lists_and_are_not_copied() -> None:
    outside_part = NOTICE.read_text(encoding="utf-8").split("Not copied", 1)[1]
    listed = set(re.findall(r"^([a-z][\w.-]*/\S+)\s", outside_part, flags=re.M))
    assert listed == set(testdata.OUTSIDE_SETS)
    for name in listed:
        assert not testdata.vendored(name).exists(), f"{name} is copied in after all"


def _sources() -> list[Path]:
    own = {Path(testdata.__file__).resolve(), Path(__file__).resolve()}
    files = [*TESTS.rglob("*.py"), *(TESTS.parent / "bench").rglob("*.py")]
    return [p for p in files if p.resolve() not in own and "corpora" not in p.parts]


def test_no_test_reads_data_beside_the_repository() -> None:
    """Outside data comes only through tests/testdata.py: no path to
    ../shared, no reading of OMNIDESK_CORPORA of one's own."""
    patterns = [
        r"""/\s*["']shared["']""",
        r"\.\./shared",
        r"/work/shared",
        r"""(environ|getenv)\W+(get\()?\W*OMNIDESK_CORPORA""",
    ]
    offenders = [
        f"{p.relative_to(TESTS.parent)}: {m.group(0)}"
        for p in _sources()
        for pattern in patterns
        for m in re.finditer(pattern, p.read_text(encoding="utf-8"))
    ]
    assert not offenders, offenders


def test_test_modules_that_read_outside_sets_carry_the_corpus_mark() -> None:
    readers = [
        p
        for p in _sources()
        if p.name.startswith("test_")
        and re.search(r"from tests\.testdata import [^\n]*\boutside\b", p.read_text("utf-8"))
    ]
    assert readers, "no test reads an outside set: the check below proves nothing"
    for p in readers:
        assert "pytest.mark.corpus(" in p.read_text("utf-8"), f"{p.name} reads outside data"


def test_an_absent_set_is_skipped_naming_it_and_the_variable_even_in_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(testdata.ENV, raising=False)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.skip.Exception) as skipped:
        testdata.require("labelled/waimai_10k")
    assert "labelled/waimai_10k" in str(skipped.value)
    assert "OMNIDESK_CORPORA" in str(skipped.value)
    assert "no licence stated" in str(skipped.value)


def test_a_named_folder_without_the_set_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(testdata.ENV, str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="has no labelled/waimai_10k"):
        testdata.require("labelled/waimai_10k")
    (tmp_path / "labelled" / "waimai_10k").mkdir(parents=True)
    testdata.require("labelled/waimai_10k")  # there now: the test runs


def test_an_unknown_set_name_is_an_error() -> None:
    with pytest.raises(KeyError, match="not an outside set"):
        testdata.require("labelled/waimai")


def test_reading_an_outside_set_without_its_mark_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(testdata.ENV, str(tmp_path))
    with pytest.raises(RuntimeError, match=r'pytest\.mark\.corpus\("labelled/waimai_10k"\)'):
        testdata.outside("labelled/waimai_10k")


@pytest.mark.corpus("labelled/waimai_10k")
def test_a_marked_test_reads_its_set() -> None:
    assert (testdata.outside("labelled/waimai_10k") / "waimai_10k.csv").is_file()


def test_corpus_params_stand_in_while_the_set_is_absent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(testdata.ENV, raising=False)
    [stand_in] = testdata.corpus_params("email/hunnysoft-mime-samples", ["a", "b"])
    assert [m.name for m in stand_in.marks] == ["corpus"]
    assert stand_in.values == (None,)
    monkeypatch.setenv(testdata.ENV, str(tmp_path))
    (tmp_path / "email" / "hunnysoft-mime-samples").mkdir(parents=True)
    params = testdata.corpus_params("email/hunnysoft-mime-samples", ["a", "b"])
    assert [p.values for p in params] == [("a",), ("b",)]
    assert all(p.marks[0].args == ("email/hunnysoft-mime-samples",) for p in params)
    # Present but empty: no parameters, which the configuration makes an error.
    assert testdata.corpus_params("email/hunnysoft-mime-samples", []) == []


def test_a_parametrized_test_with_no_cases_fails_at_collection(tmp_path: Path) -> None:
    test = tmp_path / "test_empty.py"
    test.write_text(
        "import pytest\n\n@pytest.mark.parametrize('x', [])\ndef test_nothing(x):\n    pass\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(TESTS.parent / "pyproject.toml"),
         "--rootdir", str(tmp_path), "-p", "no:cacheprovider", str(test)],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode != 0, done.stdout
    assert "Empty parameter set" in done.stdout, done.stdout
