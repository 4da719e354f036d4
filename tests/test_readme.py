"""The README's promises point at tests: each test it names exists, so a row cannot outlive its proof."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_test_named_in_the_bad_input_table_exists():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = readme.split("<!-- bad-input-table:start -->")[1].split("<!-- bad-input-table:end -->")[0]
    named = set(re.findall(r"`(test_[a-z0-9_]+)`", table))
    assert len(named) >= 30
    defined = set()
    for path in (REPO / "tests").rglob("test_*.py"):
        defined |= set(re.findall(r"^def (test_[a-z0-9_]+)\(", path.read_text(encoding="utf-8"), flags=re.M))
    assert not named - defined, f"README names tests that do not exist: {sorted(named - defined)}"
