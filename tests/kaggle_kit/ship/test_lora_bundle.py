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


def _bundle(run, tmp_path, image_list, base):
    return build_bundle(get_competition("ell"), [run], tmp_path / "bundles", owner="kit-tester",
                        image=load_image_packages(image_list), log=lambda _: None, base_model=base)


def test_the_bundle_names_the_base_and_never_copies_it(ell_lora_run, tiny_llama, tmp_path, image_packages_of_this_env):
    bundle = _bundle(ell_lora_run, tmp_path, image_packages_of_this_env, MODEL_SOURCE)
    manifest = json.loads((bundle.dataset / "manifest.json").read_text())
    kernel = json.loads((bundle.notebook / "kernel-metadata.json").read_text())
    assert kernel["model_sources"] == ["kit-tester/tiny-llama/transformers/default/1"]
    assert manifest["base_model"]["source"] == {"kind": "kaggle-model", "ref": kernel["model_sources"][0]}
    base_bytes = (tiny_llama / "model.safetensors").stat().st_size
    assert not any(f.endswith("model.safetensors") and v["size"] == base_bytes for f, v in manifest["files"].items())
    dataset = _bundle(ell_lora_run, tmp_path / "d", image_packages_of_this_env, "dataset:kit-tester/tiny-llama-base")
    assert json.loads((dataset.notebook / "kernel-metadata.json").read_text())["dataset_sources"][1] == \
        "kit-tester/tiny-llama-base"


def test_simulate_with_the_base_supplied_separately_equals_kit_predict(ell_lora_run, tiny_llama, ell_small_dir,
                                                                       tmp_path, capsys, image_packages_of_this_env):
    bundle = _bundle(ell_lora_run, tmp_path, image_packages_of_this_env, MODEL_SOURCE)
    sim = simulate(bundle.path, ell_small_dir, output=tmp_path / "nb.csv", log=lambda _: None,
                   image=load_image_packages(image_packages_of_this_env), base_model=tiny_llama)
    code, _, err = run_kit(capsys, "predict", "ell", "--run", ell_lora_run, "--input", ell_small_dir / "test.csv",
                           "--output", tmp_path / "kit.csv", "--device", "cpu")  # the simulated notebook's device
    assert code == 0, err
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "nb.csv"), pd.read_csv(tmp_path / "kit.csv"),
                                  atol=1e-4, check_exact=False)
    assert sim.max_abs_diff <= 1e-4


def test_a_lora_bundle_needs_a_base_source_and_simulate_needs_the_base(ell_lora_run, tmp_path, capsys, ell_small_dir,
                                                                       image_packages_of_this_env, tiny_qwen2):
    code, _, err = run_kit(capsys, "bundle", "ell", "--run", ell_lora_run, "--owner", "kit-tester", "--out",
                           tmp_path / "b", "--no-check", "--image-packages", image_packages_of_this_env)
    assert_one_line_error(code, err, "hold LoRA adapters", "--base-model kaggle-model:")
    code, _, err = run_kit(capsys, "bundle", "ell", "--run", ell_lora_run, "--owner", "kit-tester", "--out",
                           tmp_path / "b", "--no-check", "--base-model", "kaggle-model:a/b/c", "--image-packages",
                           image_packages_of_this_env)
    assert_one_line_error(code, err, "--base-model 'kaggle-model:a/b/c'")
    bundle = _bundle(ell_lora_run, tmp_path, image_packages_of_this_env, MODEL_SOURCE)
    with pytest.raises(Exception, match="pass --base-model DIR"):
        simulate(bundle.path, ell_small_dir, log=lambda _: None, image=load_image_packages(image_packages_of_this_env))
    with pytest.raises(Exception, match="base model .* not found under"):  # another model is attached
        simulate(bundle.path, ell_small_dir, log=lambda _: None, image=load_image_packages(image_packages_of_this_env),
                 base_model=tiny_qwen2)


def test_a_copied_base_ships_in_the_dataset_and_needs_no_attached_model(ell_lora_run, tiny_llama, ell_small_dir,
                                                                          tmp_path, image_packages_of_this_env):
    bundle = _bundle(ell_lora_run, tmp_path, image_packages_of_this_env, "copy")
    manifest = json.loads((bundle.dataset / "manifest.json").read_text())
    copied = manifest["base_model"]["path"]
    assert manifest["files"][f"{copied}/model.safetensors"]["size"] == (tiny_llama / "model.safetensors").stat().st_size
    assert not json.loads((bundle.notebook / "kernel-metadata.json").read_text()).get("model_sources")
    sim = simulate(bundle.path, ell_small_dir, log=lambda _: None,
                   image=load_image_packages(image_packages_of_this_env))
    assert sim.max_abs_diff <= 1e-4


def test_the_projection_counts_the_base_and_refuses_a_notebook_past_the_limit(ell_lora_run, tiny_llama, tmp_path,
                                                                              image_packages_of_this_env):
    from transformers import AutoModel

    from kaggle_kit.errors import KitError
    from kaggle_kit.runs.folder import RunDir
    from kaggle_kit.ship.projection import bundle_run_cost

    base_parameters = sum(p.numel() for p in AutoModel.from_pretrained(tiny_llama).parameters())
    tokens = RunDir(ell_lora_run).load_manifest()["tokens_per_row"]
    assert 5 < tokens <= 32  # measured at training on the real essays, capped at max_len
    cost = bundle_run_cost("r", RunDir(ell_lora_run), 1, "t4x2")
    assert cost.parameters == pytest.approx(base_parameters, rel=1e-9)
    assert (cost.tokens_per_row, cost.weights_format) == (tokens, "fp16")
    lines = []
    with pytest.raises(KitError, match="projected to run .* past the 8.5 h budget"):
        build_bundle(get_competition("ell"), [ell_lora_run], tmp_path / "bundles", owner="kit-tester", log=lines.append,
                     image=load_image_packages(image_packages_of_this_env), base_model=MODEL_SOURCE,
                     assume_tflops=1e-9)
    assert not list((tmp_path / "bundles").glob("*")) and any("projection:" in line for line in lines)
    forced = build_bundle(get_competition("ell"), [ell_lora_run], tmp_path / "bundles", owner="kit-tester",
                          log=lambda _: None, image=load_image_packages(image_packages_of_this_env),
                          base_model=MODEL_SOURCE, assume_tflops=1e-9, force=True)
    projection = json.loads((forced.dataset / "manifest.json").read_text())["projection"]
    assert projection["forced"] and projection["hours"] > 9 and projection["rows"] == 2700


def test_a_merged_bundle_merges_every_fold_and_predicts_as_the_unmerged_run(ell_lora_run, tiny_llama, ell_small_dir,
                                                                           tmp_path, capsys, monkeypatch,
                                                                           image_packages_of_this_env):
    import kaggle_kit.predict.inference as inference
    from kaggle_kit.ship.kaggle_runtime import run_submission

    bundle = build_bundle(get_competition("ell"), [ell_lora_run], tmp_path / "bundles", owner="kit-tester",
                          image=load_image_packages(image_packages_of_this_env), log=lambda _: None,
                          base_model=MODEL_SOURCE, merge=True)
    merged_folds = []
    real_merge = inference.merge_adapters
    monkeypatch.setattr(inference, "merge_adapters", lambda model: merged_folds.append(model) or real_merge(model))
    run_submission(bundle.dataset, ell_small_dir, tmp_path / "merged.csv", device="cpu",
                   input_root=tiny_llama.parent)
    assert len(merged_folds) == 1
    assert not any("lora_" in name for name, _ in merged_folds[0].named_parameters())
    code, _, err = run_kit(capsys, "predict", "ell", "--run", ell_lora_run, "--input", ell_small_dir / "test.csv",
                           "--output", tmp_path / "unmerged.csv", "--device", "cpu")
    assert code == 0, err
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "merged.csv"), pd.read_csv(tmp_path / "unmerged.csv"),
                                  atol=1e-4, check_exact=False)


def test_uspppm_lora_bundle_simulates_with_its_base_attached_as_a_dataset(tiny_qwen2, uspppm_small_dir, tmp_path,
                                                                           image_packages_of_this_env):
    from tests.helpers import invoke

    run = tmp_path / "uspppm-qwen2-lora"
    assert invoke("train", "uspppm", "--data", uspppm_small_dir, "--model", tiny_qwen2, "--lora-r", "4", "--folds",
                  "2", "--train-folds", "0", "--epochs", "1", "--max-len", "32", "--threads", "1", "--out", run) == 0
    bundle = build_bundle(get_competition("uspppm"), [run], tmp_path / "bundles", owner="kit-tester",
                          image=load_image_packages(image_packages_of_this_env), log=lambda _: None,
                          base_model="dataset:kit-tester/tiny-qwen2-base")
    assert not (bundle.dataset / "base").exists()
    sim = simulate(bundle.path, uspppm_small_dir, log=lambda _: None,
                   image=load_image_packages(image_packages_of_this_env), base_model=tiny_qwen2)
    assert sim.max_abs_diff <= 1e-4


def test_lora_bundles_rely_on_the_images_peft_and_ship_bitsandbytes_for_a_quantised_run(ell_lora_run, tmp_path,
                                                                                         image_packages_of_this_env):
    import shutil

    bundle = _bundle(ell_lora_run, tmp_path, image_packages_of_this_env, MODEL_SOURCE)
    assert "peft" in json.loads((bundle.dataset / "manifest.json").read_text())["assumed_versions"]
    quantised = tmp_path / "qlora-run"
    shutil.copytree(ell_lora_run, quantised)
    config = json.loads((quantised / "run_config.json").read_text())
    (quantised / "run_config.json").write_text(json.dumps({**config, "load_in_4bit": True}))
    downloaded = []
    build_bundle(get_competition("ell"), [quantised], tmp_path / "q", owner="kit-tester", log=lambda _: None,
                 image=load_image_packages(image_packages_of_this_env), base_model=MODEL_SOURCE,
                 downloader=lambda reqs, dest, image: downloaded.extend(r.name for r in reqs))
    assert "bitsandbytes" in downloaded


def test_the_download_platforms_take_a_wheel_tagged_only_manylinux_2_24():
    from packaging.utils import parse_wheel_filename

    from kaggle_kit.ship.bundle import WHEEL_PLATFORMS

    *_, tags = parse_wheel_filename("bitsandbytes-0.50.2-py3-none-manylinux_2_24_x86_64.whl")
    assert {t.platform for t in tags} <= set(WHEEL_PLATFORMS)


@pytest.mark.parametrize("bits", ["load_in_4bit", "load_in_8bit"])
def test_merge_is_refused_for_a_4_or_8_bit_base_before_anything_is_written(ell_lora_run, tmp_path, bits,
                                                                          image_packages_of_this_env):
    import shutil

    from kaggle_kit.errors import KitError

    quantised = tmp_path / "qlora-run"
    shutil.copytree(ell_lora_run, quantised)
    config = json.loads((quantised / "run_config.json").read_text())
    (quantised / "run_config.json").write_text(json.dumps({**config, bits: True}))
    with pytest.raises(KitError, match=r"--merge: qlora-run hold their base in 4/8 bits; merging re-quantises"):
        build_bundle(get_competition("ell"), [quantised], tmp_path / "bundles", owner="kit-tester",
                     log=lambda _: None, image=load_image_packages(image_packages_of_this_env),
                     base_model=MODEL_SOURCE, merge=True)
    assert not (tmp_path / "bundles").exists() or not any((tmp_path / "bundles").iterdir())


def test_merge_is_refused_without_a_lora_run(ell_tiny_run, tmp_path, image_packages_of_this_env):
    from kaggle_kit.errors import KitError

    with pytest.raises(KitError, match="--merge: no run in this bundle holds LoRA adapters"):
        build_bundle(get_competition("ell"), [ell_tiny_run], tmp_path / "bundles", owner="kit-tester",
                     log=lambda _: None, image=load_image_packages(image_packages_of_this_env), merge=True)
