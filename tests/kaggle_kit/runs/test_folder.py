"""A run cannot lie: the folds a run lists as finished come from its records, and predict, bundle, simulate and
ensemble check each one's weight file (present, size and sha256 as recorded at save) before using it. Fewer folds
are a choice (`--folds`), and then the CV printed and bundled is the one of those folds' OOF rows."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from kaggle_kit.errors import KitError
from kaggle_kit.fileio import sha256_file
from kaggle_kit.runs.folder import RunDir
from tests.helpers import assert_one_line_error, run_kit

pytestmark = pytest.mark.e2e
TARGETS = ["cohesion", "syntax", "vocabulary", "phraseology", "grammar", "conventions"]


def damage(path, how: str) -> None:
    """Delete the file, or flip one byte in the middle of its tensor data (it still loads, with other weights)."""
    if how == "deleted":
        path.unlink()
        return
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def damaged_copy(run, tmp_path, how: str, fold: int = 1, name: str = "run"):
    copy = tmp_path / name
    shutil.copytree(run, copy)
    damage(RunDir(copy).weights(fold), how)
    return copy


def expected_error(copy, how: str, fold: int = 1, intact: str = "0") -> tuple[str, str]:
    problem = ("its weight file is missing" if how == "deleted"
               else "its weight file changed since training (sha256 differs from the one recorded at save")
    return (f"{RunDir(copy).weights(fold)}: fold {fold} is listed as finished but {problem}",
            f"predict without it: --folds {intact}")


def test_fold_results_record_the_weight_files_sha256(ell_tiny_run):
    run = RunDir(ell_tiny_run)
    for fold in run.finished_folds():
        recorded = json.loads(run.fold_result(fold).read_text())["weights"]
        assert recorded == {"sha256": sha256_file(run.weights(fold)), "size": run.weights(fold).stat().st_size}


@pytest.mark.parametrize("how", ["deleted", "altered"])
def test_finished_folds_come_from_the_records_and_each_weight_file_is_checked(ell_tiny_run, tmp_path, how):
    copy = RunDir(damaged_copy(ell_tiny_run, tmp_path, how))
    assert copy.finished_folds() == [0, 1]  # a lost weight file does not make its fold disappear
    with pytest.raises(KitError) as raised:
        copy.select_folds()
    for fragment in expected_error(copy.path, how):
        assert fragment in str(raised.value)
    assert copy.select_folds([0]) == [0]


def test_runs_made_before_the_sha256_was_recorded_are_checked_for_presence_only(ell_tiny_run, tmp_path):
    copy = RunDir(damaged_copy(ell_tiny_run, tmp_path, "altered"))
    for fold in (0, 1):
        record = json.loads(copy.fold_result(fold).read_text())
        del record["weights"]
        copy.fold_result(fold).write_text(json.dumps(record))
    assert copy.select_folds() == [0, 1]
    copy.weights(1).unlink()
    with pytest.raises(KitError, match="fold 1 is listed as finished but its weight file is missing"):
        copy.select_folds()


@pytest.mark.parametrize("how", ["deleted", "altered"])
def test_predict_refuses_a_damaged_fold_file(ell_tiny_run, ell_small_dir, tmp_path, capsys, how):
    copy = damaged_copy(ell_tiny_run, tmp_path, how)
    output = tmp_path / "submission.csv"
    code, _, err = run_kit(capsys, "predict", "ell", "--run", copy, "--input", ell_small_dir / "test.csv",
                           "--output", output, "--device", "cpu")
    assert_one_line_error(code, err, *expected_error(copy, how))
    assert not output.exists()


@pytest.mark.parametrize("how", ["deleted", "altered"])
def test_bundle_refuses_a_damaged_fold_file(ell_tiny_run, image_packages_of_this_env, tmp_path, capsys, how):
    copy = damaged_copy(ell_tiny_run, tmp_path, how)
    out = tmp_path / "bundles"
    code, _, err = run_kit(capsys, "bundle", "ell", "--run", copy, "--owner", "kit-tester", "--out", out,
                           "--no-check", "--image-packages", image_packages_of_this_env)
    assert_one_line_error(code, err, *expected_error(copy, how))
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("how", ["deleted", "altered"])
def test_simulate_refuses_a_damaged_fold_file_before_running_the_notebook(ell_tiny_bundle, ell_small_dir, tmp_path,
                                                                          capsys, how):
    bundle = tmp_path / ell_tiny_bundle.name
    shutil.copytree(ell_tiny_bundle, bundle)
    weights = bundle / "dataset" / "models" / "ell-tiny" / "fold1.safetensors"
    damage(weights, how)
    code, _, err = run_kit(capsys, "simulate", "--bundle", bundle, "--data", ell_small_dir)
    problem = "is missing" if how == "deleted" else "changed since bundling (sha256 differs"
    assert_one_line_error(code, err, f"{weights}: fold 1 of ell-tiny is listed in the bundle's manifest but its "
                                     f"weight file {problem}")
    assert "simulate: running" not in err


@pytest.mark.parametrize("how", ["deleted", "altered"])
def test_ensemble_refuses_a_damaged_fold_file(ell_tiny_run, tmp_path, capsys, how):
    copy = damaged_copy(ell_tiny_run, tmp_path, how)
    out = tmp_path / "ensemble.json"
    code, _, err = run_kit(capsys, "ensemble", "ell", "--run", ell_tiny_run, "--run", copy, "--out", out)
    assert_one_line_error(code, err, *expected_error(copy, how))
    assert not out.exists()


@pytest.mark.parametrize("how", ["deleted", "altered"])
def test_an_ensemble_file_whose_run_lost_a_fold_file_is_refused(ell_tiny_run, ell_small_dir,
                                                                image_packages_of_this_env, tmp_path, capsys, how):
    member = tmp_path / "member"
    shutil.copytree(ell_tiny_run, member)
    ensemble = tmp_path / "ensemble.json"
    code, _, err = run_kit(capsys, "ensemble", "ell", "--run", ell_tiny_run, "--run", member, "--out", ensemble)
    assert code == 0, err
    damage(RunDir(member).weights(1), how)
    code, _, err = run_kit(capsys, "predict", "ell", "--ensemble", ensemble, "--input", ell_small_dir / "test.csv",
                           "--output", tmp_path / "submission.csv", "--device", "cpu")
    assert_one_line_error(code, err, *expected_error(member, how))
    code, _, err = run_kit(capsys, "bundle", "ell", "--ensemble", ensemble, "--owner", "kit-tester", "--out",
                           tmp_path / "bundles", "--no-check", "--image-packages", image_packages_of_this_env)
    assert_one_line_error(code, err, *expected_error(member, how))


def fold_cv(run, data_dir, fold: int) -> float:
    """ELL's MCRMSE on the OOF rows of one fold, from oof.csv, folds.csv and train.csv (not the kit's scorer)."""
    oof = pd.read_csv(run / "oof.csv", dtype={"text_id": str}).set_index("text_id")
    folds = pd.read_csv(run / "folds.csv", dtype={"text_id": str}).set_index("text_id")["fold"]
    truth = pd.read_csv(data_dir / "train.csv", dtype={"text_id": str}).set_index("text_id")
    ids = [i for i in oof.index if folds[i] == fold]
    errors = oof.loc[ids, TARGETS].to_numpy(float) - truth.loc[ids, TARGETS].to_numpy(float)
    return float(np.mean(np.sqrt(np.mean(errors ** 2, axis=0))))


def test_folds_predicts_and_bundles_the_named_folds_with_their_own_cv(ell_tiny_run, ell_small_dir,
                                                                       image_packages_of_this_env, tmp_path, capsys):
    from kaggle_kit.predict.inference import predict_runs
    from kaggle_kit.registry import get_competition

    copy = damaged_copy(ell_tiny_run, tmp_path, "deleted")
    expected = fold_cv(ell_tiny_run, ell_small_dir, 0)
    assert abs(expected - json.loads((ell_tiny_run / "cv.json").read_text())["score"]) > 1e-6  # a different number
    output = tmp_path / "submission.csv"
    code, _, err = run_kit(capsys, "predict", "ell", "--run", copy, "--folds", "0", "--input",
                           ell_small_dir / "test.csv", "--output", output, "--device", "cpu")
    assert code == 0, err
    assert f"CV on folds 0: MCRMSE {expected:.4f}" in err
    test = pd.read_csv(ell_small_dir / "test.csv")
    fold0 = predict_runs(get_competition("ell"), test, [ell_tiny_run], folds=[[0]], device="cpu")
    assert np.allclose(pd.read_csv(output)[TARGETS].to_numpy(), fold0, atol=1e-5)

    code, _, err = run_kit(capsys, "bundle", "ell", "--run", copy, "--folds", "0", "--owner", "kit-tester", "--out",
                           tmp_path / "bundles", "--no-check", "--image-packages", image_packages_of_this_env)
    assert code == 0, err
    (bundle,) = (tmp_path / "bundles").iterdir()
    manifest = json.loads((bundle / "dataset" / "manifest.json").read_text())
    (bundled,) = manifest["runs"]
    assert bundled["folds"] == [0] and bundled["cv_folds"] == [0]
    assert bundled["cv_score"] == pytest.approx(expected, abs=1e-9)
    assert not (bundle / "dataset" / bundled["path"] / "fold1.safetensors").exists()
    assert f"CV MCRMSE {expected:.4f}" in (bundle / "notebook" / "inference.ipynb").read_text()


@pytest.mark.parametrize("folds, fragment", [
    ("2", "--folds 2: fold 2 is not a finished fold of"),
    ("0,x", "--folds '0,x': expected comma-separated fold numbers"),
    ("0,0", "--folds 0,0: a fold is named twice"),
])
def test_bad_folds_are_one_line_errors(ell_tiny_run, ell_small_dir, tmp_path, capsys, folds, fragment):
    output = tmp_path / "submission.csv"
    code, _, err = run_kit(capsys, "predict", "ell", "--run", ell_tiny_run, "--folds", folds, "--input",
                           ell_small_dir / "test.csv", "--output", output, "--device", "cpu")
    assert_one_line_error(code, err, fragment)
    assert not output.exists()


def test_a_run_of_another_competition_is_named_before_its_damaged_folds(uspppm_tiny_run, ell_small_dir, tmp_path,
                                                                         capsys):
    copy = tmp_path / "uspppm-run"
    shutil.copytree(uspppm_tiny_run, copy)
    for fold in (0, 1):
        RunDir(copy).weights(fold).unlink()
    for extra in ((), ("--folds", "0")):
        code, _, err = run_kit(capsys, "predict", "ell", "--run", copy, *extra, "--input", ell_small_dir / "test.csv",
                               "--output", tmp_path / "submission.csv", "--device", "cpu")
        assert_one_line_error(code, err, "a run of 'uspppm', not of 'ell'")
