"""A LoRA run's bundle references its base model instead of copying it; the notebook finds the base by identity,
and the simulated submission equals `kit predict`."""

import json

import pandas as pd
import pytest

from kaggle_kit.registry import get_competition
from kaggle_kit.ship.bundle import build_bundle
from kaggle_kit.ship.image import load_image_packages
from kaggle_kit.ship.simulate import simulate
from tests.helpers import assert_one_line_error, run_kit

pytest.importorskip("peft")
pytestmark = pytest.mark.e2e
MODEL_SOURCE = "kaggle-model:kit-tester/tiny-llama/transformers/default/1"


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, ell_small_dir, tiny_llama):
    from tests.helpers import invoke

    out = tmp_path_factory.mktemp("runs") / "ell-llama-lora"
    assert invoke("train", "ell", "--data", ell_small_dir, "--model", tiny_llama, "--lora-r", "4", "--folds", "2",
                  "--train-folds", "0", "--epochs", "1", "--max-len", "32", "--lr", "1e-3", "--threads", "1",
                  "--out", out) == 0
    return out


def _bundle(run, tmp_path, image_list, base):
    return build_bundle(get_competition("ell"), [run], tmp_path / "bundles", owner="kit-tester",
                        image=load_image_packages(image_list), log=lambda _: None, base_model=base)


def test_the_bundle_names_the_base_and_never_copies_it(lora_run, tiny_llama, tmp_path, image_packages_of_this_env):
    bundle = _bundle(lora_run, tmp_path, image_packages_of_this_env, MODEL_SOURCE)
    manifest = json.loads((bundle.dataset / "manifest.json").read_text())
    kernel = json.loads((bundle.notebook / "kernel-metadata.json").read_text())
    assert kernel["model_sources"] == ["kit-tester/tiny-llama/transformers/default/1"]
    assert manifest["base_model"]["source"] == {"kind": "kaggle-model", "ref": kernel["model_sources"][0]}
    base_bytes = (tiny_llama / "model.safetensors").stat().st_size
    assert not any(f.endswith("model.safetensors") and v["size"] == base_bytes for f, v in manifest["files"].items())
    dataset = _bundle(lora_run, tmp_path / "d", image_packages_of_this_env, "dataset:kit-tester/tiny-llama-base")
    assert json.loads((dataset.notebook / "kernel-metadata.json").read_text())["dataset_sources"][1] == \
        "kit-tester/tiny-llama-base"


def test_simulate_with_the_base_supplied_separately_equals_kit_predict(lora_run, tiny_llama, ell_small_dir, tmp_path,
                                                                       capsys, image_packages_of_this_env):
    bundle = _bundle(lora_run, tmp_path, image_packages_of_this_env, MODEL_SOURCE)
    sim = simulate(bundle.path, ell_small_dir, output=tmp_path / "nb.csv", log=lambda _: None,
                   image=load_image_packages(image_packages_of_this_env), base_model=tiny_llama)
    code, _, err = run_kit(capsys, "predict", "ell", "--run", lora_run, "--input", ell_small_dir / "test.csv",
                           "--output", tmp_path / "kit.csv")
    assert code == 0, err
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "nb.csv"), pd.read_csv(tmp_path / "kit.csv"),
                                  atol=1e-4, check_exact=False)
    assert sim.max_abs_diff <= 1e-4


def test_a_lora_bundle_needs_a_base_source_and_simulate_needs_the_base(lora_run, tmp_path, capsys, ell_small_dir,
                                                                       image_packages_of_this_env, tiny_qwen2):
    code, _, err = run_kit(capsys, "bundle", "ell", "--run", lora_run, "--owner", "kit-tester", "--out",
                           tmp_path / "b", "--no-check", "--image-packages", image_packages_of_this_env)
    assert_one_line_error(code, err, "hold LoRA adapters", "--base-model kaggle-model:")
    code, _, err = run_kit(capsys, "bundle", "ell", "--run", lora_run, "--owner", "kit-tester", "--out",
                           tmp_path / "b", "--no-check", "--base-model", "kaggle-model:a/b/c", "--image-packages",
                           image_packages_of_this_env)
    assert_one_line_error(code, err, "--base-model 'kaggle-model:a/b/c'")
    bundle = _bundle(lora_run, tmp_path, image_packages_of_this_env, MODEL_SOURCE)
    with pytest.raises(Exception, match="pass --base-model DIR"):
        simulate(bundle.path, ell_small_dir, log=lambda _: None, image=load_image_packages(image_packages_of_this_env))
    with pytest.raises(Exception, match="base model .* not found under"):  # another model is attached
        simulate(bundle.path, ell_small_dir, log=lambda _: None, image=load_image_packages(image_packages_of_this_env),
                 base_model=tiny_qwen2)


def test_a_copied_base_ships_in_the_dataset_and_needs_no_attached_model(lora_run, tiny_llama, ell_small_dir, tmp_path,
                                                                          image_packages_of_this_env):
    bundle = _bundle(lora_run, tmp_path, image_packages_of_this_env, "copy")
    manifest = json.loads((bundle.dataset / "manifest.json").read_text())
    copied = manifest["base_model"]["path"]
    assert manifest["files"][f"{copied}/model.safetensors"]["size"] == (tiny_llama / "model.safetensors").stat().st_size
    assert not json.loads((bundle.notebook / "kernel-metadata.json").read_text()).get("model_sources")
    sim = simulate(bundle.path, ell_small_dir, log=lambda _: None,
                   image=load_image_packages(image_packages_of_this_env))
    assert sim.max_abs_diff <= 1e-4
