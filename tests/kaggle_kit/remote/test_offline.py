"""The whole `kit remote` path on this machine: push (to an autospec of the real KaggleApi), run the pushed
training notebook offline in kit simulate's stand-in image under the new and the old input layout, serve what it
left as the kernel's output, pull it, and check the pulled run against the same settings trained here; then
bundle and simulate it like a local run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kaggle_kit import config as config_mod
from kaggle_kit.fileio import read_json
from kaggle_kit.registry import get_competition
from kaggle_kit.remote.flow import RECORD_FILE, pull_run, push_training
from kaggle_kit.remote.offline import run_offline
from kaggle_kit.runs.folder import RunDir
from kaggle_kit.ship.image import load_image_packages
from tests.helpers import invoke
from tests.kaggle_kit.remote.conftest import SETTINGS, RemoteKaggle, client_of, waiter

pytestmark = pytest.mark.e2e
ELL = get_competition("ell")


def settings(model) -> dict:
    flags = dict(zip((s[2:].replace("-", "_") for s in SETTINGS[::2]), SETTINGS[1::2], strict=True))
    return {**flags, "model": str(model)}


@pytest.fixture(scope="module")
def pushed(tmp_path_factory, tiny_bert, image_packages_of_this_env):
    root = tmp_path_factory.mktemp("remote")
    cfg = config_mod.resolve("ell", ELL.presets, None, None, settings(tiny_bert))
    fake = RemoteKaggle()

    def refuse(requirements, dest, image):
        raise AssertionError(f"tests must not download wheels ({requirements})")

    result = push_training(ELL, cfg, client_of(fake), "kit-tester", "t4x2", "copy",
                           load_image_packages(image_packages_of_this_env), refuse, waiter(), root / "remote",
                           log=lambda _: None, runs_root=root / "runs")
    return result, root


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, ell_small_dir, tiny_bert):
    out = tmp_path_factory.mktemp("local") / "run"
    assert invoke("train", "ell", "--data", ell_small_dir, "--model", tiny_bert, *SETTINGS, "--out", out) == 0
    return out


@pytest.mark.parametrize("layout", ["new", "old"])
def test_the_training_notebook_runs_offline_pulls_as_the_local_run_and_bundles(pushed, local_run, ell_small_dir,
                                                                      image_packages_of_this_env, tmp_path, layout):
    result, root = pushed
    output = run_offline(result.notebook, result.upload.path, ELL.kaggle_slug, ell_small_dir, tmp_path / "output",
                         layout, image=load_image_packages(image_packages_of_this_env), log=lambda _: None)
    executed = json.dumps(read_json(tmp_path / "output.ipynb"))
    assert "bundle check: all" in executed  # the upload's files were checked before the install
    assert "/kaggle/input/" in read_json(output / "run" / "manifest.json")["model_path"]  # found there, by identity
    fake = RemoteKaggle(output=output)
    record = {**result.record, "run_name": f"{result.record['run_name']}-{layout}"}
    runs = tmp_path / "runs"
    dest = pull_run(record, client_of(fake), waiter(), root / "remote", runs, log=lambda _: None)
    assert dest == runs / "ell" / record["run_name"]
    names = fake.names()
    assert names[0] == "kernels_status" and "kernels_output" in names
    remote = read_json(dest / RECORD_FILE)
    assert remote["trained_on"] == "kaggle" and remote["kernel"] == record["kernel"]
    assert remote["accelerator"] == "t4x2" and remote["machine_shape"] == "NvidiaTeslaT4"
    assert remote["image"]["pinning"] == "original" and remote["image"]["python_seen"]
    pulled, local = RunDir(dest), RunDir(local_run)
    assert pulled.is_complete() and pulled.finished_folds() == [0, 1]
    for name, value in record["settings"].items():
        assert read_json(pulled.config)[name] == value
    # the same settings trained here give the same out-of-fold predictions, within float noise
    ours, theirs = pd.read_csv(pulled.oof), pd.read_csv(local.oof)
    assert list(ours[ELL.schema.id_column]) == list(theirs[ELL.schema.id_column])
    np.testing.assert_allclose(ours[ELL.schema.target_names].to_numpy(), theirs[ELL.schema.target_names].to_numpy(),
                               atol=1e-5)
    assert abs(read_json(pulled.cv)["score"] - read_json(local.cv)["score"]) < 1e-5

    if layout == "new":  # a pulled run bundles and simulates like a local one
        from kaggle_kit.ship.bundle import build_bundle
        from kaggle_kit.ship.simulate import simulate

        image = load_image_packages(image_packages_of_this_env)
        bundle = build_bundle(ELL, [dest], tmp_path / "bundles", owner="kit-tester", image=image, log=lambda _: None)
        sim = simulate(bundle.path, ell_small_dir, image=image, log=lambda _: None)
        assert sim.rows == len(pd.read_csv(ell_small_dir / "test.csv"))
        assert sim.max_abs_diff <= 1e-4


def test_resume_pushes_a_new_version_that_trains_the_missing_folds(pushed, local_run, ell_small_dir,
                                                                    image_packages_of_this_env, tmp_path):
    """A run stopped after fold 0 (as the session limit leaves it) goes back with its finished fold; the new
    notebook version trains fold 1 only, and the pulled run equals the one trained here in one go."""
    import shutil

    result, root = pushed
    image = load_image_packages(image_packages_of_this_env)
    runs = tmp_path / "runs"
    partial = runs / "ell" / result.record["run_name"]
    shutil.copytree(local_run, partial)
    for path in [*partial.glob("fold1*"), *(partial / "folds").glob("fold1*"), partial / "oof.csv",
                 partial / "cv.json"]:
        path.unlink()
    manifest = read_json(partial / "manifest.json")
    (partial / "manifest.json").write_text(json.dumps({**manifest, "status": "partial", "stopped": "test"}))
    fold0 = (partial / "fold0.safetensors").read_bytes()
    fake = RemoteKaggle()
    again = push_training(ELL, None, client_of(fake), "kit-tester", "t4x2", "copy", image, None, waiter(),
                          root / "remote", log=lambda _: None, resume=result.record["run_name"], runs_root=runs)
    assert again.record["kernel"] == result.record["kernel"]  # a new version of the same notebook
    assert again.record["versions"] == [7, 7] and again.record["resume"]
    assert (again.upload.path / "resume" / "fold0.safetensors").read_bytes() == fold0
    assert not (again.upload.path / "resume" / "fold1.safetensors").exists()
    output = run_offline(again.notebook, again.upload.path, ELL.kaggle_slug, ell_small_dir, tmp_path / "output",
                         "new", image=image, log=lambda _: None)
    executed = json.dumps(read_json(tmp_path / "output.ipynb"))
    assert "fold 0: already finished" in executed
    dest = pull_run(again.record, client_of(RemoteKaggle(output=output)), waiter(), root / "remote", runs,
                    log=lambda _: None)
    pulled = RunDir(dest)
    assert pulled.is_complete() and pulled.finished_folds() == [0, 1]
    assert (dest / "fold0.safetensors").read_bytes() == fold0
    np.testing.assert_allclose(pd.read_csv(pulled.oof)[ELL.schema.target_names].to_numpy(),
                               pd.read_csv(RunDir(local_run).oof)[ELL.schema.target_names].to_numpy(), atol=1e-5)
