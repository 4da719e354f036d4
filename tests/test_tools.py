"""The developer tools stay in step with the code they patch."""

import importlib.util
import subprocess
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


def _layers_tool():
    spec = importlib.util.spec_from_file_location("layers", REPO / "tools" / "layers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["layers"] = module  # its dataclass looks its module up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["layers"]
    return module


def test_the_house_has_at_most_three_imports_that_climb_up_a_layer():
    result = subprocess.run([sys.executable, str(REPO / "tools" / "layers.py"), "--max", "3"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_layers_tool_catches_an_upward_import_also_inside_a_function(tmp_path):
    layers = _layers_tool()
    (tmp_path / "pkg" / "high").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "high" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "low.py").write_text("import json\n\n\ndef f():\n    from pkg.high import view\n")
    (tmp_path / "pkg" / "high" / "view.py").write_text("from pkg import low\nfrom .. import low as again\n")
    order = [("low", ("pkg",)), ("high", ("pkg.high",))]
    found = layers.upward_imports(tmp_path, ("pkg",), order)
    assert [(u.path, u.line, u.imported, u.to_layer) for u in found] == [("pkg/low.py", 5, "pkg.high.view", "high")]
    (tmp_path / "pkg" / "low.py").write_text("import json\n")
    assert layers.upward_imports(tmp_path, ("pkg",), order) == []
