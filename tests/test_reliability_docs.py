"""docs/reliability.md: every test the guarantee table names exists, and every reliability test is named."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "reliability.md").read_text()


def named_tests() -> set[tuple[str, str]]:
    """(file, test) pairs; '`::name`' after a named file means the same file."""
    pairs, current = set(), None
    for file, name in re.findall(r"`(tests/\w+\.py)?::(\w+)`", DOC):
        current = file or current
        pairs.add((current, name))
    return pairs


def test_every_named_test_exists():
    missing = [
        f"{f}::{n}"
        for f, n in sorted(named_tests())
        if not re.search(rf"^def {n}\(", (ROOT / f).read_text(), re.MULTILINE)
    ]
    assert not missing, missing


def test_every_reliability_test_is_in_the_table():
    named = named_tests()
    files = sorted(ROOT.glob("tests/test_reliability_*.py")) + [ROOT / "tests" / "test_fuzz_data.py"]
    unnamed = [
        f"{f.name}::{n}"
        for f in files
        if f.name != "test_reliability_docs.py"
        for n in re.findall(r"^def (test_\w+)\(", f.read_text(), re.MULTILINE)
        if (f"tests/{f.name}", n) not in named
    ]
    assert not unnamed, unnamed
