"""The generated notebook: short readable cells, deterministic bytes, paths as parameters."""

import ast

from kaggle_kit.ship.notebook import PARAMETERS_CELL, build_notebook, inject_parameters, notebook_text

RUNS = [{"name": "deberta-v3", "path": "models/deberta-v3", "folds": [0, 1, 2], "weight": 0.6, "cv_score": 0.4512,
         "metric": "MCRMSE"},
        {"name": "minilm", "path": "models/minilm", "folds": [0], "weight": 0.4, "cv_score": None, "metric": "MCRMSE"}]
WHEELS = ["wheels/kaggle_kit-0.1.0-py3-none-any.whl"]


def make():
    return build_notebook("Feedback Prize - English Language Learning", "feedback-prize-english-language-learning",
                          "ell-kit-test", "ell-0123456789abcdef", ["text_id", "full_text"],
                          ["text_id", "cohesion", "syntax"], WHEELS, RUNS)


def code_of(nb, cell_id):
    return next(c.source for c in nb.cells if c.id == cell_id)


def test_same_inputs_same_bytes_and_no_outputs():
    nb = make()
    assert notebook_text(nb) == notebook_text(make())
    assert [c.id for c in nb.cells] == ["parameters", "intro", "find-intro", "find", "verify-intro", "verify",
                                        "versions-intro", "versions", "install-intro", "install", "predict-intro",
                                        "predict", "show"]
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_cells_are_python_and_paths_are_parameters():
    nb = make()
    for cell in nb.cells:
        if cell.cell_type == "code" and not cell.source.startswith("%"):
            ast.parse(cell.source)
    params = code_of(nb, PARAMETERS_CELL)
    assert "INPUT_ROOT = '/kaggle/input'" in params and "BUNDLE_ID = 'ell-0123456789abcdef'" in params
    assert "DATASET_DIR = None" in params and "COMPETITION_DIR = None" in params
    assert "OUTPUT_PATH = '/kaggle/working/submission.csv'" in params and "BUDGET_HOURS = 8.5" in params
    assert "/kaggle/input/ell-kit-test" not in params  # no folder name is assumed
    assert PARAMETERS_CELL in next(c for c in nb.cells if c.id == PARAMETERS_CELL).metadata["tags"]


def test_installs_only_bundled_wheels_and_imports_the_kit():
    nb = make()
    install = code_of(nb, "install")
    assert install.startswith("%pip install") and "--no-index" in install and "--no-deps" in install
    assert "{DATASET_DIR}/wheels/kaggle_kit-0.1.0-py3-none-any.whl" in install
    assert "from kaggle_kit.ship.kaggle_runtime import run_submission" in code_of(nb, "predict")
    assert "def verify_files(dataset_dir):" in code_of(nb, "verify")
    find = code_of(nb, "find")
    assert find.startswith("def find_inputs(")
    assert "COMPETITION_SLUG = 'feedback-prize-english-language-learning'" in find
    assert "SUBMISSION_COLUMNS = ['text_id', 'cohesion', 'syntax']" in find
    assert "def report_versions(manifest, output_dir):" in code_of(nb, "versions")
    intro = next(c.source for c in nb.cells if c.id == "intro")
    assert "`deberta-v3`: folds 0, 1, 2, CV MCRMSE 0.4512, weight 0.600" in intro and "CV MCRMSE n/a" in intro


def test_injected_parameters_follow_the_parameters_cell():
    nb = inject_parameters(make(), {"DATASET_DIR": "/tmp/x"})
    ids = [c.id for c in nb.cells]
    assert ids[ids.index(PARAMETERS_CELL) + 1] == "injected-parameters"
    assert "DATASET_DIR = '/tmp/x'" in nb.cells[ids.index("injected-parameters")].source
    assert "injected-parameters" not in [c.id for c in make().cells]


def test_the_cells_before_install_use_only_the_standard_library():
    """find, verify and versions run before the wheel is installed: no kaggle_kit, pandas or other third party."""
    import sys

    nb = make()
    for cell_id in ("find", "verify", "versions"):
        tree = ast.parse(code_of(nb, cell_id))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.split(".")[0] in sys.stdlib_module_names, f"{cell_id} imports {name}"
