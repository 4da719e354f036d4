"""The developer tools stay in step with the code they patch."""

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_mutation_break_still_fits_the_code_exactly_once():
    spec = importlib.util.spec_from_file_location("mutation_check", REPO / "tools" / "mutation_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["mutation_check"] = module  # its dataclass looks its module up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["mutation_check"]
    assert len(module.BREAKS) >= 59
    stale = [f"{n} {b.name}: {(REPO / b.path).read_text().count(b.old)} matches in {b.path}"
             for n, b in enumerate(module.BREAKS, start=1) if (REPO / b.path).read_text().count(b.old) != 1]
    assert not stale, "tools/mutation_check.py breaks that no longer fit (fix the patch text):\n" + "\n".join(stale)
    missing = [t for b in module.BREAKS for t in b.tests if not (REPO / t).exists()]
    assert not missing, f"breaks point at tests that do not exist: {missing}"
