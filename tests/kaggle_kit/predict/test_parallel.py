"""Inference on several devices (CPU processes here), fold models without random initialisation, int8 on CPU."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from kaggle_kit.models.model import KitModel
from kaggle_kit.predict import cpu_packing
from kaggle_kit.predict.inference import PredictionReport, load_fold_model, predict_runs
from kaggle_kit.predict.quantize import oof_effect
from kaggle_kit.registry import get_competition
from kaggle_kit.runs.folder import RunDir
from kaggle_kit.ship.kaggle_runtime import run_submission
from tests.helpers import run_kit

TARGETS = ["cohesion", "syntax", "vocabulary", "phraseology", "grammar", "conventions"]


@pytest.fixture(scope="module")
def test_rows(ell_small_dir):
    return pd.read_csv(ell_small_dir / "test.csv")


def test_folds_spread_over_devices_give_the_single_device_predictions(ell_tiny_run, ell_small_dir, tmp_path, capsys):
    """`kit predict --workers 2`: each fold in one of two processes (GPUs on a GPU machine, CPU workers here)."""
    outputs = {}
    for workers in ("1", "2"):
        out = tmp_path / f"sub{workers}.csv"
        code, _, err = run_kit(capsys, "predict", "ell", "--run", ell_tiny_run, "--input", ell_small_dir / "test.csv",
                               "--output", out, "--device", "cpu", "--workers", workers)
        assert code == 0, err
        outputs[workers] = pd.read_csv(out)
    assert np.abs(outputs["1"][TARGETS].to_numpy() - outputs["2"][TARGETS].to_numpy()).max() < 1e-4
    assert list(outputs["1"]["text_id"]) == list(outputs["2"]["text_id"])


def test_fold_models_get_their_weights_without_random_initialisation(ell_tiny_run, monkeypatch):
    run = RunDir(ell_tiny_run)
    seen = []
    original = KitModel.load_state_dict

    def spy(self, state, *args, **kwargs):
        seen.append(all(p.is_meta for p in self.parameters()))
        return original(self, state, *args, **kwargs)

    monkeypatch.setattr(KitModel, "load_state_dict", spy)
    monkeypatch.setattr(cpu_packing, "pack_for_cpu", lambda model: 0)  # its own test: the state dict as loaded
    model = load_fold_model(run, run.load_config(), 6, 0, torch.device("cpu"))
    assert seen == [True], "parameters must be empty (meta) until the fold's weights are assigned"
    assert not any(p.is_meta for p in model.parameters()) and not any(b.is_meta for b in model.buffers())
    from safetensors.torch import load_file

    stored = load_file(str(run.weights(0)))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in stored.items())


def test_int8_quantisation_on_cpu(ell_tiny_run, ell_small_dir, test_rows):
    comp = get_competition("ell")
    model = load_fold_model(RunDir(ell_tiny_run), RunDir(ell_tiny_run).load_config(), 6, 0, torch.device("cpu"),
                            quantize="int8")
    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

    assert not any(type(m) is torch.nn.Linear for m in model.backbone.modules())
    assert sum(isinstance(m, DynamicInt8Linear) for m in model.backbone.modules()) == 2 * 6 + 1  # + the pooler
    assert isinstance(model.fc, torch.nn.Linear)  # the head stays fp32
    fp32 = predict_runs(comp, test_rows, [ell_tiny_run], device="cpu")
    int8 = predict_runs(comp, test_rows, [ell_tiny_run], device="cpu", quantize="int8")
    assert 0 < np.abs(fp32 - int8).max() < 0.05

    effect = oof_effect(comp, ell_tiny_run, log_line=lambda _: None)
    assert effect.rows == 48 and 0 < effect.max_abs_diff < 0.05
    cv = json.loads((ell_tiny_run / "cv.json").read_text())
    assert effect.score_fp32 == pytest.approx(cv["score"], abs=1e-5)  # fp32 reproduces the run's own OOF score
    assert effect.score_quantized == pytest.approx(effect.score_fp32, abs=0.01)


def test_a_bundle_that_asks_for_int8_gets_it_on_cpu(ell_tiny_bundle, ell_small_dir, test_rows, tmp_path):
    dataset = tmp_path / "dataset"
    shutil.copytree(ell_tiny_bundle / "dataset", dataset)
    manifest = json.loads((dataset / "manifest.json").read_text())
    manifest["quantize"] = {"mode": "int8", "applies_to": "cpu"}
    (dataset / "manifest.json").write_text(json.dumps(manifest))
    report = run_submission(dataset, ell_small_dir, tmp_path / "submission.csv", device="cpu")
    assert report["rows"] == len(test_rows)
    sub = pd.read_csv(tmp_path / "submission.csv").set_index("text_id").loc[test_rows["text_id"]]
    expected = predict_runs(get_competition("ell"), test_rows, [dataset / "models" / "ell-tiny"], device="cpu",
                            folds=[[0, 1]], quantize="int8")
    assert np.abs(sub[TARGETS].to_numpy() - expected).max() < 1e-6


def test_devices_are_checked(ell_tiny_run, test_rows):
    from kaggle_kit.errors import KitError

    with pytest.raises(KitError, match="--devices 0: names GPUs, but prediction runs on cpu"):
        predict_runs(get_competition("ell"), test_rows, [ell_tiny_run], device="cpu", devices=[0])
    report = PredictionReport()
    predict_runs(get_competition("ell"), test_rows, [ell_tiny_run], device="cpu", report=report)
    assert [fold for _, fold in report.folds_used] == [0, 1]


@pytest.mark.parametrize(("given", "said"), [("a,1", "--devices: 'a' is not a whole number"),
                                             ("-1", "--devices: must be at least 0 (got -1)")])
def test_kit_predict_reads_devices_as_kit_train_does(ell_tiny_run, ell_small_dir, tmp_path, capsys, given, said):
    from tests.helpers import assert_one_line_error

    code, _, err = run_kit(capsys, "predict", "ell", "--run", ell_tiny_run, "--input", ell_small_dir / "test.csv",
                           "--output", tmp_path / "sub.csv", f"--devices={given}")
    assert_one_line_error(code, err, said)
    assert not (tmp_path / "sub.csv").exists()


def test_a_cpu_machine_predicts_in_this_process_unless_asked_for_workers():
    """No worker process (its start-up is seconds of a CPU prediction) when one slot does: the default on a CPU."""
    from kaggle_kit.predict.parallel import Slot, inference_slots

    cpu = torch.device("cpu")
    assert inference_slots(cpu) == [Slot(cpu, torch.get_num_threads())]
    assert len(inference_slots(cpu, workers=2)) == 2
