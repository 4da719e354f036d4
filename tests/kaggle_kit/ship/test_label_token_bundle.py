"""A label-token LoRA run ships adapters and label rows, never the base; the notebook under `kit simulate` equals
`kit predict`, the run's OOF calibration included."""

import json

import pandas as pd
import pytest

from kaggle_kit.registry import get_competition
from kaggle_kit.ship.bundle import build_bundle
from kaggle_kit.ship.image import load_image_packages
from kaggle_kit.ship.simulate import simulate
from tests.helpers import run_kit

pytest.importorskip("peft")
pytestmark = pytest.mark.e2e


def test_label_token_bundle_simulates_as_kit_predict(tmp_path, ell_small_dir, tiny_llama, capsys,
                                                      image_packages_of_this_env):
    from tests.helpers import invoke

    run = tmp_path / "ell-llama-label-tokens"
    assert invoke("train", "ell", "--data", ell_small_dir, "--model", tiny_llama, "--lora-r", "4", "--head",
                  "label-tokens", "--folds", "2", "--train-folds", "0", "--epochs", "1", "--max-len", "32",
                  "--lr", "1e-3", "--threads", "1", "--out", run) == 0
    # an OOF calibration of the expected value (what finalize adopts where it gains): the notebook applies it too
    line = {"name": "calibration", "state": {"calibration": {"cohesion": [0.0, 3.5]}}, "n_rows": 24}
    (run / "postprocess.json").write_text(json.dumps(line))
    bundle = build_bundle(get_competition("ell"), [run], tmp_path / "bundles", owner="kit-tester",
                          image=load_image_packages(image_packages_of_this_env), log=lambda _: None,
                          base_model="kaggle-model:kit-tester/tiny-llama/transformers/default/1")
    manifest = json.loads((bundle.dataset / "manifest.json").read_text())
    base_bytes = (tiny_llama / "model.safetensors").stat().st_size
    assert not any(f.endswith("model.safetensors") and v["size"] == base_bytes for f, v in manifest["files"].items())
    sim = simulate(bundle.path, ell_small_dir, output=tmp_path / "nb.csv", log=lambda _: None,
                   image=load_image_packages(image_packages_of_this_env), base_model=tiny_llama)
    code, _, err = run_kit(capsys, "predict", "ell", "--run", run, "--input", ell_small_dir / "test.csv",
                           "--output", tmp_path / "kit.csv", "--device", "cpu")
    assert code == 0, err
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "nb.csv"), pd.read_csv(tmp_path / "kit.csv"),
                                  atol=1e-4, check_exact=False)
    assert sim.max_abs_diff <= 1e-4
    notebook = pd.read_csv(tmp_path / "nb.csv")
    assert (notebook["cohesion"] == 3.5).all() and (notebook["syntax"] != 3.5).any()
