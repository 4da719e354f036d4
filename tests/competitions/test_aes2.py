"""Automated Essay Scoring 2.0 on a derived fixture (real ELL essays, a holistic score derived as
tests/derived_data.py says): QWK, thresholds fitted on the OOF predictions, an integer score in the submission."""

import json

import numpy as np
import pandas as pd
import pytest

from kaggle_kit.registry import get_competition
from tests.helpers import run_kit

AES2 = get_competition("aes2")


@pytest.mark.e2e
def test_cv_reports_qwk_before_and_after_the_fitted_thresholds(aes2_tiny_run, aes2_small_dir):
    cv = json.loads((aes2_tiny_run / "cv.json").read_text())
    assert cv["metric"] == "QWK" and cv["greater_is_better"]
    post = cv["postprocess"]
    assert post["name"] == "thresholds" and post["file"] == "postprocess.json"
    assert post["score_before"] == cv["score"] and post["score_after"] >= post["score_before"]
    assert post["score_after_crossfit"] is not None
    cuts = json.loads((aes2_tiny_run / "postprocess.json").read_text())["state"]["thresholds"]["score"]
    assert len(cuts) == 5 and cuts == sorted(cuts)
    oof = pd.read_csv(aes2_tiny_run / "oof.csv")
    assert list(oof.columns) == ["essay_id", "score"] and oof["score"].between(1, 6).all()  # before thresholds


@pytest.mark.e2e
def test_predict_applies_the_runs_thresholds_and_writes_integers(aes2_tiny_run, aes2_small_dir, tmp_path, capsys):
    out = tmp_path / "submission.csv"
    code, _, err = run_kit(capsys, "predict", "aes2", "--run", aes2_tiny_run, "--input", aes2_small_dir / "test.csv",
                           "--output", out)
    assert code == 0, err
    sub = pd.read_csv(out)
    assert list(sub.columns) == ["essay_id", "score"] and sub["score"].dtype == np.int64
    assert sub["score"].between(1, 6).all()
    # the state is what decides: cuts below every prediction make every essay a 6
    state_file = aes2_tiny_run / "postprocess.json"
    saved = state_file.read_text()
    state = json.loads(saved)
    state["state"]["thresholds"]["score"] = [-5.0, -4.0, -3.0, -2.0, -1.0]
    try:
        state_file.write_text(json.dumps(state))
        code, _, err = run_kit(capsys, "predict", "aes2", "--run", aes2_tiny_run, "--input",
                               aes2_small_dir / "test.csv", "--output", tmp_path / "all6.csv")
    finally:
        state_file.write_text(saved)
    assert code == 0, err
    assert (pd.read_csv(tmp_path / "all6.csv")["score"] == 6).all()


@pytest.mark.e2e
def test_bundle_and_simulate_offline(aes2_tiny_run, aes2_small_dir, image_packages_of_this_env, tmp_path, capsys):
    code, _, err = run_kit(capsys, "bundle", "aes2", "--run", aes2_tiny_run, "--owner", "kit-tester", "--out",
                           tmp_path / "bundles", "--image-packages", image_packages_of_this_env, "--no-check")
    assert code == 0, err
    bundle = next((tmp_path / "bundles").iterdir())
    manifest = json.loads((bundle / "dataset" / "manifest.json").read_text())
    assert "models/aes2-tiny/postprocess.json" in manifest["files"]
    simulated = tmp_path / "simulated.csv"
    code, _, err = run_kit(capsys, "simulate", "--bundle", bundle, "--data", aes2_small_dir, "--output", simulated)
    assert code == 0, err
    assert "valid submission, 3 rows, equal to `kit predict`" in err
    sim = pd.read_csv(simulated)
    assert list(sim.columns) == ["essay_id", "score"] and sim["score"].dtype == np.int64


@pytest.mark.e2e
def test_an_ensemble_refits_the_thresholds_on_the_blended_oof(aes2_tiny_run, aes2_small_dir, tiny_bert, tmp_path,
                                                               capsys, monkeypatch, image_packages_of_this_env):
    """Two runs: the blend's thresholds are fitted on the blended OOF predictions, not taken from either run;
    a bundle ships that state and the notebook's code applies it."""
    from kaggle_kit.predict import ensemble
    from kaggle_kit.predict.ensemble import blended_postprocess, ensemble_report
    from kaggle_kit.ship.bundle import build_bundle, load_image_packages
    from kaggle_kit.ship.kaggle_runtime import run_submission

    other = tmp_path / "other"
    code, _, err = run_kit(capsys, "train", "aes2", "--data", aes2_small_dir, "--model", tiny_bert, "--folds", "2",
                           "--epochs", "1", "--max-len", "32", "--batch-size", "4", "--seed", "7", "--out", other)
    assert code == 0, err
    report = ensemble_report(AES2, [aes2_tiny_run, other], weights=[0.5, 0.5])
    assert report.postprocess["name"] == "thresholds" and report.blend_score_after >= report.blend_score
    assert report.postprocess == blended_postprocess(AES2, [aes2_tiny_run, other], [1.0, 1.0])

    bundle = build_bundle(AES2, [aes2_tiny_run, other], tmp_path / "bundles", weights=[1.0, 1.0], owner="kit-tester",
                          image=load_image_packages(image_packages_of_this_env), log=lambda _: None)
    manifest = json.loads((bundle.dataset / "manifest.json").read_text())
    assert manifest["ensemble"]["postprocess"] == report.postprocess
    shipped = dict(report.postprocess, state={"thresholds": {"score": [9.0, 9.1, 9.2, 9.3, 9.4]}})  # all 1
    manifest["ensemble"]["postprocess"] = shipped
    (bundle.dataset / "manifest.json").write_text(json.dumps(manifest))
    run_submission(bundle.dataset, aes2_small_dir, tmp_path / "notebook.csv", device="cpu")
    assert (pd.read_csv(tmp_path / "notebook.csv")["score"] == 1).all()
    args = ("predict", "aes2", "--run", aes2_tiny_run, "--run", other, "--input", aes2_small_dir / "test.csv",
            "--output", tmp_path / "blend.csv")
    code, _, err = run_kit(capsys, *args)
    assert code == 0, err
    assert pd.read_csv(tmp_path / "blend.csv")["score"].between(1, 6).all()
    # kit predict of several runs applies the state fitted on their blend (cuts below everything: all 6)
    fitted = {"name": "thresholds", "state": {"thresholds": {"score": [-5.0, -4.0, -3.0, -2.0, -1.0]}}}
    monkeypatch.setattr(ensemble, "blended_postprocess", lambda *args, **kwargs: fitted)
    code, _, err = run_kit(capsys, *args)
    assert code == 0, err
    assert (pd.read_csv(tmp_path / "blend.csv")["score"] == 6).all()
