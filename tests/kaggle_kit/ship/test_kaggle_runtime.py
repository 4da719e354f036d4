"""What the notebook runs: the manifest check, the deadline guard, and the submission it always writes."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from kaggle_kit.errors import KitError
from kaggle_kit.predict.inference import predict_runs
from kaggle_kit.registry import get_competition
from kaggle_kit.ship.kaggle_runtime import DeadlineGuard, run_submission, submission_problems, verify_files
from tests.helpers import SteppingClock

pytestmark = pytest.mark.e2e
TARGETS = ["cohesion", "syntax", "vocabulary", "phraseology", "grammar", "conventions"]


@pytest.fixture
def dataset_copy(ell_tiny_bundle, tmp_path):
    copy = tmp_path / "dataset"
    shutil.copytree(ell_tiny_bundle / "dataset", copy)
    return copy


def test_intact_bundle_passes(ell_tiny_bundle, capsys):
    manifest = verify_files(str(ell_tiny_bundle / "dataset"))
    assert manifest["competition"] == "ell"
    assert "files match manifest.json" in capsys.readouterr().out


def test_tampered_weights_are_caught(dataset_copy):
    weights = dataset_copy / "models" / "ell-tiny" / "fold1.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, one flipped byte
    weights.write_bytes(bytes(data))
    with pytest.raises(RuntimeError, match=r"models/ell-tiny/fold1.safetensors does not match manifest.json"):
        verify_files(str(dataset_copy))


def test_missing_file_is_caught(dataset_copy):
    (dataset_copy / "models" / "ell-tiny" / "tokenizer" / "tokenizer.json").unlink()
    with pytest.raises(RuntimeError, match=r"models/ell-tiny/tokenizer/tokenizer.json is missing"):
        verify_files(str(dataset_copy))


def test_every_listed_file_is_checked(dataset_copy):
    """One flipped byte in any file the manifest lists (wheels, weights, tokenizer, code) stops the notebook."""
    import json

    names = sorted(json.loads((dataset_copy / "manifest.json").read_text())["files"])
    assert any(n.endswith(".whl") for n in names) and any(n.endswith(".safetensors") for n in names)
    for name in names:
        path = dataset_copy / name
        original = path.read_bytes()
        path.write_bytes(original[:-1] + bytes([original[-1] ^ 0x01]))
        try:
            with pytest.raises(RuntimeError, match=f"{name} does not match manifest.json"):
                verify_files(str(dataset_copy))
        finally:
            path.write_bytes(original)
    verify_files(str(dataset_copy))


def test_guard_stops_only_when_the_next_fold_would_overrun():
    elapsed = {"now": 0.0}
    lines = []
    guard = DeadlineGuard(budget_seconds=10 * 3600, started_at=0.0, clock=lambda: elapsed["now"], log=lines.append)
    elapsed["now"] = 2.5 * 3600  # 0.5 h of setup, then one 2 h fold
    assert guard(1, 5, 2 * 3600)  # next fold ends at 4.5 h; all five would end at 10.5 h, but that is not a reason
    elapsed["now"] = 8.5 * 3600
    assert not guard(4, 5, 8 * 3600)  # the fifth would end at 10.5 h
    assert guard.stopped
    assert "projected" in lines[0] and "skipping the remaining 1 fold(s)" in lines[-1]


def test_guard_projects_with_the_mean_fold_time_not_the_total():
    clock = {"now": 3.5 * 3600}  # 0.5 h of setup, then three 1 h folds
    guard = DeadlineGuard(budget_seconds=5 * 3600, started_at=0.0, clock=lambda: clock["now"], log=lambda _: None)
    assert guard(3, 5, 3 * 3600)  # the fourth fold ends at 4.5 h: within the budget
    clock["now"] = 4.5 * 3600
    assert not guard(4, 5, 4 * 3600)  # the fifth would end at 5.5 h


def test_guard_counts_the_time_before_the_first_fold():
    """Installing and loading count against Kaggle's limit: the clock runs from the notebook's start."""
    clock = {"now": 3 * 3600}  # 2 h of setup, then one 1 h fold
    guard = DeadlineGuard(budget_seconds=3.5 * 3600, started_at=0.0, clock=lambda: clock["now"], log=lambda _: None)
    assert not guard(1, 3, 1 * 3600)  # the next fold would end at 4 h
    late_start = DeadlineGuard(budget_seconds=3.5 * 3600, started_at=2 * 3600, clock=lambda: clock["now"],
                               log=lambda _: None)
    assert late_start(1, 3, 1 * 3600)  # started 2 h later: 1 h elapsed, the next fold ends at 2 h


def test_deadline_skips_folds_and_still_writes_a_valid_submission(ell_tiny_bundle, ell_small_dir, tmp_path):
    """A clock that runs 1000 s per reading: after the first fold the budget (0.5 h) is spent."""
    out = tmp_path / "working" / "submission.csv"
    report = run_submission(ell_tiny_bundle / "dataset", ell_small_dir, out, budget_hours=0.5, started_at=0.0,
                            clock=SteppingClock(1000.0), device="cpu")
    assert report["deadline_stopped"] is True
    assert report["folds_used"] == ["ell-tiny/fold0"] and report["folds_skipped"] == ["ell-tiny/fold1"]
    sub = pd.read_csv(out)
    sample = pd.read_csv(ell_small_dir / "sample_submission.csv")
    assert submission_problems(sub, sample, "text_id") == []
    comp = get_competition("ell")
    test = pd.read_csv(ell_small_dir / "test.csv")
    fold0_only = predict_runs(comp, test, [ell_tiny_bundle / "dataset" / "models" / "ell-tiny"], device="cpu",
                              folds=[[0]])
    order = [list(test["text_id"]).index(i) for i in sample["text_id"]]
    assert np.allclose(sub[TARGETS].to_numpy(), fold0_only[order], atol=1e-6)
    assert (tmp_path / "working" / "kit_run_report.json").is_file()


def test_submission_problems_name_the_issue():
    sample = pd.DataFrame({"text_id": ["a", "b"], "cohesion": [0.0, 0.0]})
    assert submission_problems(sample.copy(), sample, "text_id") == []
    assert "order differ" in submission_problems(sample.iloc[::-1].reset_index(drop=True), sample, "text_id")[0]
    assert "columns" in submission_problems(sample[["cohesion", "text_id"]], sample, "text_id")[0]
    with_nan = sample.assign(cohesion=[1.0, np.nan])
    assert "'cohesion' has missing values" in submission_problems(with_nan, sample, "text_id")[0]


# ---- input discovery: the notebook's first cell, run from its carried source (standard library only) -----------

SLUG = "feedback-prize-english-language-learning"
TEST_COLUMNS = ["text_id", "full_text"]
SUBMISSION_COLUMNS = ["text_id", *TARGETS]


def carried_find_inputs():
    """find_inputs as the notebook gets it: its source alone, executed in an empty namespace."""
    import inspect

    from kaggle_kit.ship.kaggle_runtime import find_inputs

    namespace = {}
    exec(inspect.getsource(find_inputs), namespace)
    return namespace["find_inputs"]


def competition_files(folder, sample_columns=SUBMISSION_COLUMNS, test_columns=TEST_COLUMNS):
    folder.mkdir(parents=True)
    (folder / "test.csv").write_text(",".join(test_columns) + "\nA,some text\n")
    row = "A" + ",3" * (len(sample_columns) - 1)
    (folder / "sample_submission.csv").write_text(",".join(sample_columns) + "\n" + row + "\n")
    return folder


def bundle_folder(folder, bundle_id):
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"bundle_id": bundle_id, "files": {}}))
    return folder


@pytest.mark.parametrize("layout", ["new", "old", "mixed"])
def test_inputs_are_found_in_every_layout(tmp_path, capsys, layout):
    root = tmp_path / "input"
    competition = competition_files(root / "competitions" / SLUG if layout != "old" else root / SLUG)
    dataset = bundle_folder(root / "datasets" / "kit-tester" / "renamed-by-a-fork" if layout == "new"
                            else root / "renamed-by-a-fork", "ell-1111")
    bundle_folder(root / "datasets" / "kit-tester" / "an-older-bundle", "ell-0000")  # another bundle: not this one
    competition_files(root / "datasets" / "someone" / "other-comp", sample_columns=["id", "score"],
                      test_columns=["id", "anchor"])  # CSVs of another competition
    find_inputs = carried_find_inputs()
    found = find_inputs(str(root), "ell-1111", SLUG, TEST_COLUMNS, SUBMISSION_COLUMNS)
    assert found == (str(dataset), str(competition))
    out = capsys.readouterr().out
    assert f"inputs: bundle ell-1111 at {dataset}" in out and f"inputs: competition files at {competition}" in out


def test_the_competition_folder_named_after_the_slug_wins_a_tie(tmp_path):
    root = tmp_path / "input"
    competition_files(root / "a-copy-of-the-data")  # walked first: "a" sorts before "competitions"
    named = competition_files(root / "competitions" / SLUG)
    bundle_folder(root / "datasets" / "me" / "bundle", "ell-1111")
    assert carried_find_inputs()(str(root), "ell-1111", SLUG, TEST_COLUMNS, SUBMISSION_COLUMNS)[1] == str(named)


def test_nothing_matching_is_one_message_listing_what_it_saw(tmp_path):
    root = tmp_path / "input"
    bundle_folder(root / "datasets" / "me" / "old-bundle", "ell-0000")
    competition_files(root / "competitions" / SLUG)
    with pytest.raises(RuntimeError) as err:
        carried_find_inputs()(str(root), "ell-1111", SLUG, TEST_COLUMNS, SUBMISSION_COLUMNS)
    message = str(err.value)
    assert "\n" not in message and "no manifest.json with bundle_id 'ell-1111'" in message
    assert "old-bundle/manifest.json (bundle_id ell-0000)" in message and f"competitions/{SLUG}" in message


def test_missing_competition_files_name_the_columns(tmp_path):
    root = tmp_path / "input"
    bundle_folder(root / "datasets" / "me" / "bundle", "ell-1111")
    competition_files(root / "competitions" / SLUG, sample_columns=["text_id", "cohesion"])  # wrong columns
    with pytest.raises(RuntimeError, match=r"no folder with test.csv .* and sample_submission.csv \(columns "
                                           r"\['text_id', 'cohesion', 'syntax'"):
        carried_find_inputs()(str(root), "ell-1111", SLUG, TEST_COLUMNS, SUBMISSION_COLUMNS)


def test_given_folders_skip_the_search(tmp_path):
    dataset = bundle_folder(tmp_path / "anywhere", "whatever-id")
    competition = competition_files(tmp_path / "data")
    found = carried_find_inputs()(str(tmp_path / "no-such-input"), "ell-1111", SLUG, TEST_COLUMNS,
                                  SUBMISSION_COLUMNS, str(dataset), str(competition))
    assert found == (str(dataset), str(competition))
    with pytest.raises(RuntimeError, match="does not exist"):
        carried_find_inputs()(str(tmp_path / "no-such-input"), "ell-1111", SLUG, TEST_COLUMNS, SUBMISSION_COLUMNS)


def test_versions_report_warns_on_a_major_difference(tmp_path, capsys):
    import inspect

    from kaggle_kit.ship.kaggle_runtime import report_versions

    namespace = {}
    exec(inspect.getsource(report_versions), namespace)
    manifest = {"assumed_versions": {"numpy": np.__version__, "pandas": "1.0.0", "not-installed-here": "1.0"},
                "image_packages": {"python": "3.12"}}
    warnings = namespace["report_versions"](manifest, str(tmp_path))
    out = capsys.readouterr().out
    assert f"numpy                    {np.__version__}" in out
    assert [w.split()[0] for w in warnings] == ["not-installed-here", "pandas"]
    assert "WARNING: major version differs: pandas" in out
    freeze = (tmp_path / "kaggle_image_freeze.txt").read_text()
    assert freeze.startswith("# python: 3.") and f"numpy=={np.__version__}" in freeze
def test_guard_counts_folds_running_in_parallel():
    """Two GPUs, two folds at a time, 2 h each: 3.5 h in, with 2 of 4 done, the next fold ends at 5.5 h. The wall
    time per fold done (1 h) would say 4.5 h and start a fold that overruns a 5 h budget."""
    elapsed = {"now": 3.5 * 3600}
    lines = []
    guard = DeadlineGuard(budget_seconds=5 * 3600, started_at=0.0, clock=lambda: elapsed["now"], log=lines.append)
    assert not guard(2, 4, 2 * 3600, fold_seconds=2 * 3600, parallel=2)
    assert "projected to end at 5.50 h" in lines[0]
    elapsed["now"] = 2.5 * 3600
    assert guard(2, 4, 2 * 3600, fold_seconds=2 * 3600, parallel=2)


def _fail_inside_prediction(monkeypatch):
    from kaggle_kit.predict import inference

    def boom(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(inference, "predict_runs", boom)


def test_a_failure_inside_prediction_still_writes_the_fallback_submission(ell_tiny_bundle, ell_small_dir, tmp_path,
                                                                         monkeypatch, capsys):
    """The last-resort guard: any exception after the inputs are found gives every row the fallback, says why, and
    the notebook ends normally (a submission of priors still scores; a stopped notebook scores nothing)."""
    _fail_inside_prediction(monkeypatch)
    out = tmp_path / "working" / "submission.csv"
    out.parent.mkdir()
    report = run_submission(ell_tiny_bundle / "dataset", ell_small_dir, out, device="cpu")
    printed = capsys.readouterr().out
    assert "ERROR: prediction failed: RuntimeError: CUDA error: an illegal memory access" in printed
    assert "test_kaggle_runtime.py" in printed and "in boom" in printed  # the traceback's last line
    sub, sample = pd.read_csv(out), pd.read_csv(ell_small_dir / "sample_submission.csv")
    assert submission_problems(sub, sample, "text_id") == []
    fallback = json.loads((ell_tiny_bundle / "dataset" / "models" / "ell-tiny" / "fallback.json").read_text())
    assert np.allclose(sub[TARGETS].to_numpy(), [[fallback["prediction"][t] for t in TARGETS]] * len(sample))
    saved = json.loads((tmp_path / "working" / "kit_run_report.json").read_text())
    assert saved["failure"]["error"].startswith("RuntimeError: CUDA error") and saved == json.loads(json.dumps(report))
    assert saved["fallback_rows"]["count"] == len(sample)


def test_the_guard_stops_the_notebook_only_when_nothing_can_be_written(ell_tiny_bundle, ell_small_dir, tmp_path,
                                                                       monkeypatch, capsys):
    _fail_inside_prediction(monkeypatch)
    competition = tmp_path / "competition"
    competition.mkdir()
    shutil.copy(ell_small_dir / "test.csv", competition / "test.csv")  # no sample_submission.csv
    out = tmp_path / "working" / "submission.csv"
    out.parent.mkdir()
    with pytest.raises(KitError, match="sample_submission.csv: file not found"):  # the notebook's cell fails
        run_submission(ell_tiny_bundle / "dataset", competition, out, device="cpu")
    assert "could not write even the fallback submission" in capsys.readouterr().out
    assert not out.exists()


def test_the_guard_writes_the_fallback_when_torch_itself_cannot_be_imported(ell_tiny_bundle, ell_small_dir, tmp_path):
    """A Kaggle image whose torch is broken (a wheel built for another CUDA): the fallback path needs no torch."""
    out = tmp_path / "working" / "submission.csv"
    out.parent.mkdir()
    script = ("import sys\nsys.modules['torch'] = sys.modules['transformers'] = None  # import raises ImportError\n"
              "from kaggle_kit.ship.kaggle_runtime import run_submission\n"
              f"run_submission({str(ell_tiny_bundle / 'dataset')!r}, {str(ell_small_dir)!r}, {str(out)!r})\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ERROR: prediction failed: ModuleNotFoundError: import of torch halted" in done.stdout, done.stdout
    sub, sample = pd.read_csv(out), pd.read_csv(ell_small_dir / "sample_submission.csv")
    assert submission_problems(sub, sample, "text_id") == [] and len(sub) == len(sample)
    assert json.loads((out.parent / "kit_run_report.json").read_text())["fallback_rows"]["count"] == len(sample)
