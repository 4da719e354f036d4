"""Test-time training: the fold models adapt to labelled test-time examples (or their own confident predictions)
before predicting, within a time share, and `kit predict`, the notebook and `kit simulate` agree.

The fixture: ELL essays the run never saw, whose scores are all 1.5 higher than the ELL scores the run learned from
(capped at 5). The shift is the signal only the test carries: half of the test rows come with their scores filled
in (the labelled test-time examples), the other half are scored against theirs."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from kaggle_kit.errors import KitError
from kaggle_kit.predict.inference import PredictionReport, predict_runs
from kaggle_kit.predict.test_time import TestTimeConfig, confident_rows, parse_spec
from kaggle_kit.registry import get_competition
from kaggle_kit.tasks.targets import Target
from tests.derived_data import ELL_TARGETS

pytestmark = pytest.mark.e2e

SHIFT = 1.5
STEPS = TestTimeConfig(steps=40, lr=0.05, batch_size=8)


@pytest.fixture(scope="module")
def shifted_test(ell_dir, tmp_path_factory):
    """test.csv of 48 unseen essays: 24 labelled examples (scores filled), 24 to predict (scores empty); and the
    24 rows' true scores."""
    rows = pd.read_csv(ell_dir / "train.csv", dtype=str).iloc[200:248].reset_index(drop=True)
    truth = np.minimum(rows[ELL_TARGETS].astype(float).to_numpy() + SHIFT, 5.0)
    rows[ELL_TARGETS] = [[f"{v:.1f}" for v in row] for row in truth]
    rows.loc[24:, ELL_TARGETS] = ""
    folder = tmp_path_factory.mktemp("ttt")
    rows.to_csv(folder / "test.csv", index=False)
    rows[["text_id"] + ELL_TARGETS].to_csv(folder / "sample_submission.csv", index=False)
    return folder, truth[24:]


def mcrmse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(np.sqrt(np.mean((pred - truth) ** 2, axis=0))))


def predict(run, folder, test_time=None, **options):
    comp = get_competition("ell")
    test = pd.read_csv(folder / "test.csv", dtype=str, keep_default_na=False)
    report = PredictionReport()
    preds = predict_runs(comp, test, [run], device="cpu", data_dir=folder, test_time=test_time, report=report,
                         **options)
    return preds, report


def test_ttt_on_the_test_time_examples_beats_plain_prediction(ell_tiny_run, shifted_test):
    folder, truth = shifted_test
    plain, _ = predict(ell_tiny_run, folder)
    adapted, report = predict(ell_tiny_run, folder, STEPS)
    plain_score, adapted_score = mcrmse(plain[24:], truth), mcrmse(adapted[24:], truth)
    assert adapted_score < plain_score - 0.5, (plain_score, adapted_score)
    assert report.test_time["seconds"] > 0 and report.test_time["skipped_from"] == []
    again, _ = predict(ell_tiny_run, folder, STEPS)  # fixed seed, eval mode: the same steps every time
    np.testing.assert_allclose(again, adapted, atol=1e-6)
    off, _ = predict(ell_tiny_run, folder, TestTimeConfig(steps=0))
    np.testing.assert_array_equal(off, plain)


def test_ttt_that_would_overrun_its_share_is_skipped_with_a_log_line(ell_tiny_run, shifted_test, caplog):
    folder, _ = shifted_test
    plain, _ = predict(ell_tiny_run, folder)
    with caplog.at_level(logging.WARNING):
        skipped, report = predict(ell_tiny_run, folder, STEPS, test_time_seconds=1e-6)
    assert "test-time training skipped from ell-tiny fold 0 on" in caplog.text
    assert report.test_time["skipped_from"] == ["ell-tiny fold 0"]
    np.testing.assert_array_equal(skipped, plain)  # the first step was undone


def test_no_labelled_examples_predicts_plainly_with_a_warning(ell_tiny_run, ell_small_dir, caplog):
    plain, _ = predict(ell_tiny_run, ell_small_dir)
    with caplog.at_level(logging.WARNING):
        same, _ = predict(ell_tiny_run, ell_small_dir, STEPS)
    assert "holds no labelled test-time examples" in caplog.text
    np.testing.assert_array_equal(same, plain)


def test_pseudo_labels_keep_only_confident_rows():
    targets = [Target("kind", kind="multiclass", classes=("a", "b", "c")), Target("flag", kind="binary")]
    probabilities = np.array([[0.95, 0.03, 0.02, 0.97],   # confident in both
                              [0.95, 0.03, 0.02, 0.60],   # not in the binary one
                              [0.40, 0.50, 0.10, 0.01],   # not in the class
                              [0.01, 0.02, 0.97, 0.02]])  # confident in both
    keep, labels = confident_rows(probabilities, targets, 0.9)
    assert keep.tolist() == [0, 3]
    assert labels[keep].tolist() == [[0, 1], [2, 0]]
    with pytest.raises(KitError, match="target 'score' is a regression target"):
        confident_rows(probabilities[:, :1], [Target("score")], 0.9)


@pytest.mark.parametrize("spec, message", [
    ("steps=ten", "steps: Input should be a valid integer"),
    ("source=teacher", "source: Input should be 'examples' or 'pseudo'"),
    ("speed=2", "unknown key 'speed'"),
    ("steps", "'steps' is not KEY=VALUE"),
    ("share=2", "share: Input should be less than or equal to 1"),
])
def test_bad_ttt_specs_are_one_line_errors(spec, message):
    with pytest.raises(KitError, match=message):
        parse_spec(spec)
    assert parse_spec("steps=5, source=pseudo,lr=1e-3").model_dump()["source"] == "pseudo"


def test_the_notebook_runs_the_bundle_ttt_stage_as_kit_predict_does(ell_tiny_run, shifted_test, tmp_path,
                                                                    image_packages_of_this_env):
    from kaggle_kit.ship.bundle import build_bundle, load_image_packages
    from kaggle_kit.ship.kaggle_runtime import run_submission

    folder, truth = shifted_test
    bundle = build_bundle(get_competition("ell"), [ell_tiny_run], tmp_path / "bundles", owner="kit-tester",
                          image=load_image_packages(image_packages_of_this_env), log=lambda _: None,
                          test_time=STEPS)
    manifest = json.loads((bundle.path / "dataset" / "manifest.json").read_text())
    assert manifest["test_time"]["steps"] == 40
    out = tmp_path / "working" / "submission.csv"
    out.parent.mkdir()
    report = run_submission(bundle.path / "dataset", folder, out, device="cpu")
    assert report["test_time"]["seconds"] > 0
    notebook = pd.read_csv(out)[ELL_TARGETS].to_numpy()
    kit, _ = predict(ell_tiny_run, folder, STEPS)
    np.testing.assert_allclose(notebook, kit, atol=1e-4)
    plain, _ = predict(ell_tiny_run, folder)
    assert mcrmse(notebook[24:], truth) < mcrmse(plain[24:], truth) - 0.5


def test_the_bundle_projection_adds_the_steps_and_a_pseudo_labelling_pass(ell_tiny_run):
    from kaggle_kit.runs.folder import RunDir
    from kaggle_kit.ship.projection import bundle_run_cost, project

    run = RunDir(ell_tiny_run)

    def hours(test_time):
        cost = bundle_run_cost("r", run, 2, "t4x2", test_time=test_time, hidden_rows=2700)
        return project([cost], 2700, "t4x2", setup_seconds=0.0).seconds

    plain = hours(None)
    steps = TestTimeConfig(steps=500, batch_size=16)
    pseudo = hours(steps.model_copy(update={"source": "pseudo"}))
    # each of the 500 x 16 rows a step trains costs a forward and a backward (3 forwards); source=pseudo adds one
    # more forward of the 2,700 hidden rows (reading the weights is the same in all three)
    assert hours(steps) > plain and pseudo > hours(steps)
    assert (hours(steps) - plain) / (pseudo - hours(steps)) == pytest.approx(3 * 500 * 16 / 2700)


def test_a_bad_label_among_the_examples_skips_ttt_naming_its_row(ell_tiny_run, shifted_test, tmp_path, caplog):
    folder, _ = shifted_test
    test = pd.read_csv(folder / "test.csv", dtype=str, keep_default_na=False)
    test.loc[3, "syntax"] = "5.25"
    test.to_csv(tmp_path / "test.csv", index=False)
    plain, _ = predict(ell_tiny_run, tmp_path)
    with caplog.at_level(logging.WARNING):
        same, _ = predict(ell_tiny_run, tmp_path, STEPS)
    assert f"test-time training skipped: {tmp_path / 'test.csv'} row 4 (text_id=" in caplog.text
    assert "column 'syntax'" in caplog.text
    np.testing.assert_array_equal(same, plain)


def test_pseudo_labels_train_each_fold_on_its_own_confident_predictions(fbe_tiny_run, fbe_small_dir, caplog):
    """3-class FBE: steps on a model's own most probable classes sharpen its predictions of those rows."""
    comp = get_competition("fbe")
    test = pd.read_csv(fbe_small_dir / "test.csv", dtype=str, keep_default_na=False)
    plain = predict_runs(comp, test, [fbe_tiny_run], device="cpu", data_dir=fbe_small_dir)
    pseudo = TestTimeConfig(steps=20, lr=0.05, source="pseudo", confidence=0.3)
    with caplog.at_level(logging.INFO):
        adapted = predict_runs(comp, test, [fbe_tiny_run], device="cpu", data_dir=fbe_small_dir, test_time=pseudo)
    assert f"fbe-tiny fold 0: {len(test)} of {len(test)} test rows pseudo-labelled" in caplog.text
    assert adapted.max(1).mean() > plain.max(1).mean() + 0.05
    assert (adapted.argmax(1) == plain.argmax(1)).mean() >= 0.8  # sharpened: near-ties of the fold mean may flip
    nothing = pseudo.model_copy(update={"confidence": 1.0})
    same = predict_runs(comp, test, [fbe_tiny_run], device="cpu", data_dir=fbe_small_dir, test_time=nothing)
    np.testing.assert_array_equal(same, plain)


def test_kit_simulate_runs_the_ttt_stage_and_keeps_its_seconds_apart(ell_tiny_run, shifted_test, tmp_path,
                                                                      image_packages_of_this_env, monkeypatch):
    from kaggle_kit.ship.bundle import build_bundle, load_image_packages
    from kaggle_kit.ship.simulate import simulate

    folder, truth = shifted_test
    image = load_image_packages(image_packages_of_this_env)
    bundle = build_bundle(get_competition("ell"), [ell_tiny_run], tmp_path / "bundles", owner="kit-tester",
                          image=image, log=lambda _: None, test_time=STEPS)
    # the notebook's kernel on one thread as this process: 40 steps at lr 0.05 turn the float differences of
    # another thread count's sums into 7e-4 (measured), past the 1e-4 that simulate allows
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    sim = simulate(bundle.path, folder, output=tmp_path / "nb.csv", log=lambda _: None, image=image)
    assert sim.max_abs_diff <= 1e-4  # against kit predict with the bundle's --ttt
    assert set(sim.test_time_seconds) == {"ell-tiny/fold0", "ell-tiny/fold1"}
    assert sim.phases["test-time training"] == pytest.approx(sum(sim.test_time_seconds.values()))
    notebook = pd.read_csv(tmp_path / "nb.csv")[ELL_TARGETS].to_numpy()
    plain, _ = predict(ell_tiny_run, folder)
    assert mcrmse(notebook[24:], truth) < mcrmse(plain[24:], truth) - 0.5


def test_a_failing_step_costs_only_the_ttt_never_the_fold(ell_tiny_run, shifted_test, caplog, monkeypatch):
    """An out-of-memory error in the steps (likely for a large model on a T4): the fold is put back as loaded and
    predicts plainly, TTT stops for the remaining folds, the notebook goes on."""
    from kaggle_kit import device as device_mod

    folder, _ = shifted_test
    plain, _ = predict(ell_tiny_run, folder)
    calls = []

    def out_of_memory(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(*args, **kwargs)

    original = device_mod.optimizer_step
    monkeypatch.setattr(device_mod, "optimizer_step", out_of_memory)
    with caplog.at_level(logging.WARNING):
        failed, report = predict(ell_tiny_run, folder, STEPS)
    assert ("test-time training skipped from ell-tiny fold 0 on: its steps failed (RuntimeError: CUDA out of memory"
            in caplog.text)
    assert len(calls) == 3 and report.test_time["skipped_from"] == ["ell-tiny fold 0"]
    np.testing.assert_array_equal(failed, plain)


def test_the_steps_never_run_past_the_notebooks_deadline(ell_tiny_run, shifted_test, caplog):
    """A share of the budget is not enough: when loading took most of the 9 h, the time left decides."""
    folder, _ = shifted_test
    plain, _ = predict(ell_tiny_run, folder)
    with caplog.at_level(logging.WARNING):
        late, _ = predict(ell_tiny_run, folder, STEPS, test_time_seconds=3600.0, deadline_left=lambda: 1e-6)
    assert "test-time training skipped from ell-tiny fold 0 on: its 40 steps would take about" in caplog.text
    np.testing.assert_array_equal(late, plain)


def test_ttt_trains_a_lora_fold_adapters_and_head_and_leaves_its_file_unchanged(capsys, ell_small_dir, tiny_llama,
                                                                               shifted_test, tmp_path, monkeypatch):
    """A decoder LoRA fold (the issue's 4B-8B recipe in miniature): its adapters and head take the steps, the
    shifted test's examples lift its scores, and the fold file on disk is the same bytes afterwards."""
    import hashlib

    from kaggle_kit.predict import test_time
    from tests.helpers import train_tiny_lora

    trained = []

    def spy(model):
        params = real(model)
        trained.extend((n, p, p.detach().clone()) for n, p in params)
        return params

    real = test_time.trainable_parameters

    run = train_tiny_lora(capsys, "ell", ell_small_dir, tiny_llama, tmp_path / "lora")
    folder, truth = shifted_test
    files = sorted(p for p in run.rglob("*") if p.is_file() and "fold" in p.name)
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    plain, _ = predict(run, folder)
    monkeypatch.setattr(test_time, "trainable_parameters", spy)
    adapted, report = predict(run, folder, STEPS)
    plain_score, adapted_score = mcrmse(plain[24:], truth), mcrmse(adapted[24:], truth)
    assert adapted_score < plain_score - 0.3, (plain_score, adapted_score)
    assert report.test_time["skipped_from"] == []
    moved = {n for n, p, start in trained if not np.allclose(p.detach().float().numpy(), start.float().numpy())}
    assert any("lora_" in n for n in moved), sorted(moved)
    assert not any(n.startswith("backbone.") and "lora_" not in n for n, _, _ in trained)
    assert files and {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files} == before


def test_ttt_with_int8_is_refused_where_it_is_declared_and_where_it_would_run(ell_tiny_run, shifted_test, tmp_path,
                                                                              image_packages_of_this_env):
    from kaggle_kit.ship.bundle import build_bundle, load_image_packages

    folder, _ = shifted_test
    with pytest.raises(KitError, match="an int8 model cannot take training steps"):
        build_bundle(get_competition("ell"), [ell_tiny_run], tmp_path / "bundles", owner="kit-tester",
                     image=load_image_packages(image_packages_of_this_env), log=lambda _: None, test_time=STEPS,
                     quantize="int8")
    assert not (tmp_path / "bundles").exists() or not any((tmp_path / "bundles").iterdir())
    with pytest.raises(KitError, match="an int8 model cannot take training steps"):
        predict(ell_tiny_run, folder, STEPS, quantize="int8")
    TestTimeConfig(steps=0).check_quantize("int8")  # off: nothing to refuse
