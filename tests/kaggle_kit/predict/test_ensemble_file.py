"""`kit ensemble` end to end: an ensemble file with per-target weights that `kit predict --ensemble` applies."""

import json

import numpy as np
import pandas as pd
import pytest

from tests.helpers import assert_one_line_error, run_kit

pytestmark = pytest.mark.e2e
TARGETS = ["cohesion", "syntax", "vocabulary", "phraseology", "grammar", "conventions"]


@pytest.fixture(scope="module")
def second_run(tmp_path_factory, ell_small_dir, tiny_bert):
    from tests.helpers import invoke

    out = tmp_path_factory.mktemp("runs") / "ell-tiny-mean"
    assert invoke("train", "ell", "--data", ell_small_dir, "--model", tiny_bert, "--folds", "2", "--epochs", "1",
                  "--max-len", "64", "--batch-size", "4", "--pooling", "mean", "--seed", "42", "--lr", "1e-3",
                  "--threads", "1", "--out", out) == 0
    return out


def test_ensemble_file_and_predict_with_it(ell_tiny_run, second_run, ell_small_dir, tmp_path, capsys):
    out = tmp_path / "blend.json"
    code, _, err = run_kit(capsys, "ensemble", "ell", "--run", ell_tiny_run, "--run", second_run,
                                "--out", out, "--max-steps", "6")
    assert code == 0, err
    data = json.loads(out.read_text())
    assert set(data["weights"]) == set(TARGETS)  # MCRMSE is a mean of per-target scores: weights per target
    for weights in data["weights"].values():
        assert len(weights) == 2 and sum(weights) == pytest.approx(1.0) and min(weights) >= 0
    assert out.with_suffix(".png").stat().st_size > 10_000 and "blend, held out (the honest estimate)" in err

    # the file's blend equals blending the runs' OOF with its per-target weights
    oofs = [pd.read_csv(r / "oof.csv").set_index("text_id")[TARGETS] for r in (ell_tiny_run, second_run)]
    w = np.array([data["weights"][t] for t in TARGETS]).T
    blend = np.clip(w[0] * oofs[0].to_numpy() + w[1] * oofs[1].to_numpy(), 1, 5)
    truth = pd.read_csv(ell_small_dir / "train.csv").set_index("text_id").loc[oofs[0].index, TARGETS].to_numpy()
    assert data["oof"]["blend"] == pytest.approx(np.sqrt(((blend - truth) ** 2).mean(axis=0)).mean(), abs=1e-9)

    args = ("predict", "ell", "--input", ell_small_dir / "test.csv")
    code, _, err = run_kit(capsys, *args, "--ensemble", out, "--output", tmp_path / "e.csv")
    assert code == 0, err
    singles = []
    for i, run in enumerate((ell_tiny_run, second_run)):
        code, _, err = run_kit(capsys, *args, "--run", run, "--output", tmp_path / f"{i}.csv")
        assert code == 0, err
        singles.append(pd.read_csv(tmp_path / f"{i}.csv")[TARGETS].to_numpy())
    expected = np.clip(w[0] * singles[0] + w[1] * singles[1], 1, 5)
    np.testing.assert_allclose(pd.read_csv(tmp_path / "e.csv")[TARGETS].to_numpy(), expected, atol=1e-5)


def test_ensemble_needs_two_runs_and_refuses_another_competitions_file(ell_tiny_run, ell_small_dir, tmp_path,
                                                                       capsys):
    code, _, err = run_kit(capsys, "ensemble", "ell", "--run", ell_tiny_run, "--out", tmp_path / "x.json")
    assert_one_line_error(code, err, "at least 2 finished runs")
    (tmp_path / "u.json").write_text(json.dumps({"competition": "uspppm", "runs": [{"path": str(ell_tiny_run)}],
                                                 "weights": {"*": [1.0]}}))
    code, _, err = run_kit(capsys, "predict", "ell", "--ensemble", tmp_path / "u.json", "--input",
                           ell_small_dir / "test.csv", "--output", tmp_path / "s.csv")
    assert_one_line_error(code, err, "an ensemble of 'uspppm', not of 'ell'")


def test_a_file_that_is_not_an_ensemble_is_one_line(ell_small_dir, tmp_path, capsys):
    (tmp_path / "x.json").write_text('{"competition": "ell"}')
    code, _, err = run_kit(capsys, "predict", "ell", "--ensemble", tmp_path / "x.json", "--input",
                           ell_small_dir / "test.csv", "--output", tmp_path / "s.csv")
    assert_one_line_error(code, err, "not an ensemble file")


def test_a_bundle_of_an_ensemble_file_predicts_like_kit_predict_ensemble(ell_tiny_run, second_run, ell_small_dir,
                                                                       image_packages_of_this_env, tmp_path, capsys):
    from kaggle_kit.registry import get_competition
    from kaggle_kit.ship.bundle import build_bundle
    from kaggle_kit.ship.image import load_image_packages
    from kaggle_kit.ship.simulate import simulate

    out = tmp_path / "blend.json"
    code, _, err = run_kit(capsys, "ensemble", "ell", "--run", ell_tiny_run, "--run", second_run, "--out", out,
                           "--max-steps", "6")
    assert code == 0, err
    data = json.loads(out.read_text())
    bundle = build_bundle(get_competition("ell"), [], tmp_path / "bundles", owner="kit-tester",
                          image=load_image_packages(image_packages_of_this_env), log=lambda _: None,
                          ensemble_file=out)
    manifest = json.loads((bundle.dataset / "manifest.json").read_text())
    for i, run in enumerate(manifest["runs"]):
        assert run["weight"] == pytest.approx([data["weights"][t][i] for t in TARGETS])
    assert manifest["ensemble"]["blend_oof_score"] == pytest.approx(data["oof"]["blend"])
    code, _, err = run_kit(capsys, "predict", "ell", "--ensemble", out, "--input", ell_small_dir / "test.csv",
                           "--output", tmp_path / "kit.csv")
    assert code == 0, err
    sim = simulate(bundle.path, ell_small_dir, output=tmp_path / "nb.csv", log=lambda _: None,
                   image=load_image_packages(image_packages_of_this_env))
    np.testing.assert_allclose(pd.read_csv(tmp_path / "nb.csv")[TARGETS].to_numpy(),
                               pd.read_csv(tmp_path / "kit.csv")[TARGETS].to_numpy(), atol=1e-4)
    assert sim.max_abs_diff <= 1e-4
