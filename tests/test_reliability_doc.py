"""docs/reliability.md names, for each promise, the test that proves it: every name must be a real test."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import ROOT

DOC = ROOT / "docs" / "reliability.md"
# `tests/<file>.py::<name>`, a parametrized id `[...]` allowed, a trailing `*` meaning "every test with this prefix".
NODE_ID = re.compile(r"`(tests/[\w/]+\.py)::(\w+)(\*?)(?:\[[^\]`]*\])?`")
TEST_DEF = re.compile(r"^\s*(?:async\s+)?def\s+(test_\w+)\s*\(", re.M)


def named_tests(text: str) -> list[tuple[str, str, bool]]:
    return [(m[1], m[2], m[3] == "*") for m in NODE_ID.finditer(text)]


def missing(root: Path, text: str) -> list[str]:
    gone = []
    for file, name, prefix in named_tests(text):
        path = root / file
        defined = TEST_DEF.findall(path.read_text(encoding="utf-8")) if path.is_file() else []
        if not any(d.startswith(name) if prefix else d == name for d in defined):
            gone.append(f"{file}::{name}{'*' if prefix else ''}")
    return gone


def test_every_test_the_reliability_doc_names_exists():
    text = DOC.read_text(encoding="utf-8")
    assert len(named_tests(text)) >= 100, "docs/reliability.md names its tests as `tests/<file>.py::<test>`"
    assert missing(ROOT, text) == [], "docs/reliability.md names tests that do not exist; fix the doc"


def test_every_test_reference_in_the_doc_is_a_full_node_id():
    # A shorthand (`::name`, `module::name`) would escape the check above.
    text = DOC.read_text(encoding="utf-8")
    loose = [s for s in re.findall(r"`([\w/.]*::[\w\[\]*]+)`", text) if not NODE_ID.fullmatch(f"`{s}`")]
    assert loose == []


def test_a_renamed_or_removed_test_is_caught(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests/test_x.py").write_text("def test_kept():\n    pass\n\nasync def test_no_range_a(x):\n    pass\n")
    doc = ("`tests/test_x.py::test_kept`, `tests/test_x.py::test_kept[p]`, `tests/test_x.py::test_no_range_*`, "
           "`tests/test_x.py::test_gone`, `tests/test_y.py::test_kept`, `tests/test_x.py::test_other_*`")
    assert missing(tmp_path, doc) == ["tests/test_x.py::test_gone", "tests/test_y.py::test_kept",
                                      "tests/test_x.py::test_other_*"]
