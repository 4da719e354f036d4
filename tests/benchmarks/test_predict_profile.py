"""benchmarks/predict_profile.py on a tiny run: every variant's process runs, the kit predicts what the seed loop
predicts, and the fixed-cost floor is measured (a floor of nothing, or a missing part, fails)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "predict_profile.py"


@pytest.fixture(scope="module")
def one_fold_run(tmp_path_factory, ell_small_dir, tiny_bert) -> Path:
    """The profile's kind of run: one trained fold, the one the seed loop loads (kit predict averages them all)."""
    from tests.conftest import _tiny_run

    return _tiny_run(tmp_path_factory, "ell", ell_small_dir, tiny_bert, "--train-folds", "0", "--max-len", "64",
                     "--batch-size", "4", "--pooling", "attention")


@pytest.mark.e2e
def test_profile_prints_ratios_phases_and_the_import_floor(one_fold_run, ell_dir):
    result = subprocess.run([sys.executable, str(SCRIPT), "--run", str(one_fold_run), "--data", str(ell_dir),
                             "--essays", "8", "--repeats", "1", "--threads", "1"],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    summary = re.search(r"whole process vs the seed loop: kit ([\d.]+)x .*max \|kit - seed\| prediction (\S+)", out)
    assert summary, out
    assert float(summary[1]) > 0
    assert float(summary[2]) < 1e-5  # the same fold, the same essays: the kit predicts what the loop predicts
    for phase in ("start-up", "tokenisation", "model load", "batches", "writing, exit"):
        assert re.search(rf"^{phase}\s+[\d.]+\s+\d+%\s+[\d.]+\s+\d+%$", out, re.M), (phase, out)
    floor = re.search(r"only imports takes ([\d.]+) s \(torch, pandas ([\d.]+) s, transformers' tokenizer ([\d.]+) s, "
                      r"model code ([\d.]+) s\).*?: ([\d.]+)x the seed loop", out)
    assert floor, out
    total, *parts, reach = map(float, floor.groups())
    assert all(part > 0 for part in parts) and reach > 0  # each import is timed (torch alone takes most of a second)
    assert sum(parts) <= total + 0.15  # spans inside the child's whole life (each printed to 0.1 s)
