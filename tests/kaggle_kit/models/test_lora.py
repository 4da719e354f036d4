"""LoRA: only adapters and the head train, folds hold only them, merged equals unmerged, a changed base is refused."""

import json
import shutil

import pytest
import torch

from kaggle_kit.errors import KitError
from kaggle_kit.models.identity import check_base_model, model_identity
from kaggle_kit.models.lora import AdapterSpec, merge_adapters, trainable_state
from kaggle_kit.models.model import build_model, load_backbone_config

pytest.importorskip("peft")
SPEC = AdapterSpec(r=4, alpha=8.0, dropout=0.0, targets="all-linear")


def _model(folder, spec=SPEC):
    return build_model(load_backbone_config(folder, 0.0), 3, "last-token", weights_from=folder, adapters=spec)


def _batch():
    ids = torch.tensor([[101, 2023, 2003, 1037, 102, 0], [101, 7592, 2088, 2003, 2307, 102]])
    return ids, (ids != 0).long()


def test_training_changes_only_adapters_and_head_and_the_base_stays_bit_identical(tiny_llama):
    from kaggle_kit.config import TrainConfig
    from kaggle_kit.train.trainer import make_optimizer

    torch.manual_seed(0)
    model = _model(tiny_llama)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = make_optimizer(model, TrainConfig(lr=1e-2, head_lr=1e-2))
    for _ in range(3):
        loss = model(*_batch()).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("lora_" in k or not k.startswith("backbone.") for k in changed)
    assert any("lora_B" in k for k in changed) and "fc.weight" in changed
    frozen = [k for k in before if k.startswith("backbone.") and "lora_" not in k]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)


def test_merged_equals_unmerged(tiny_qwen2):
    torch.manual_seed(0)
    model = _model(tiny_qwen2).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.1)  # B starts at zero: make the adapters matter
        unmerged = model(*_batch())
        merged = merge_adapters(model)(*_batch())
    assert not any("lora_" in n for n, _ in model.named_parameters())
    torch.testing.assert_close(merged, unmerged, atol=1e-4, rtol=1e-4)


def test_trainable_state_is_adapters_and_head_only(tiny_gemma2):
    state = trainable_state(_model(tiny_gemma2))
    assert set(state) == {k for k in state if "lora_" in k} | {"fc.weight", "fc.bias"}
    assert sum(v.numel() for v in state.values()) < 0.2 * sum(
        p.numel() for p in _model(tiny_gemma2).backbone.parameters())


def test_a_changed_base_is_refused_naming_the_file(tiny_llama, tmp_path):
    identity = model_identity(tiny_llama)
    check_base_model(tiny_llama, identity, full=True)
    other = tmp_path / "other"
    shutil.copytree(tiny_llama, other)
    weights = other / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # a different last weight: same size and header
    weights.write_bytes(bytes(data))
    with pytest.raises(KitError, match="model.safetensors differs from the run's base model"):
        check_base_model(other, identity)
    config = json.loads((other / "config.json").read_text())
    config["rms_norm_eps"] = 1e-3
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(KitError, match="config.json differs"):
        check_base_model(other, identity)


def test_quantised_loading_needs_a_gpu(tmp_path, capsys, ell_small_dir, tiny_llama):
    from tests.helpers import assert_one_line_error, run_kit

    code, _, err = run_kit(capsys, "train", "ell", "--data", ell_small_dir, "--model", tiny_llama, "--lora-r", "8",
                           "--load-in-4bit", "--device", "cpu", "--out", tmp_path / "r")
    assert_one_line_error(code, err, "--load-in-4bit: bitsandbytes quantisation needs a CUDA GPU")
    assert not (tmp_path / "r").exists()
    code, _, err = run_kit(capsys, "train", "ell", "--data", ell_small_dir, "--model", tiny_llama,
                           "--load-in-4bit", "--out", tmp_path / "r")
    assert_one_line_error(code, err, "quantised weights cannot be trained directly; add adapters with --lora-r")
    code, _, err = run_kit(capsys, "train", "ell", "--data", ell_small_dir, "--model", tiny_llama, "--lora-r", "8",
                           "--fgm-eps", "1", "--out", tmp_path / "r")
    assert_one_line_error(code, err, "--fgm-eps", "embeddings are frozen")


def test_a_fine_tune_with_the_same_config_sizes_and_header_is_refused(tmp_path):
    """Only the tensor bytes tell a fine-tune from its base: one of nine tensors changed in a file far bigger than
    the 16 MiB the check reads must still be caught."""
    from safetensors.torch import save_file

    from kaggle_kit.models.identity import SPREAD_CHUNK_BYTES, SPREAD_CHUNKS

    tensors = {f"layers.{i}.weight": torch.randn(1024, 1024, generator=torch.Generator().manual_seed(i))
               for i in range(9)}
    base, tuned = tmp_path / "base", tmp_path / "tuned"
    for folder in (base, tuned):
        folder.mkdir()
        (folder / "config.json").write_text('{"model_type": "llama"}')
    save_file(tensors, str(base / "model.safetensors"))
    assert (base / "model.safetensors").stat().st_size > 2 * SPREAD_CHUNKS * SPREAD_CHUNK_BYTES
    save_file({**tensors, "layers.4.weight": tensors["layers.4.weight"] + 1e-3}, str(tuned / "model.safetensors"))
    assert (tuned / "model.safetensors").stat().st_size == (base / "model.safetensors").stat().st_size
    with pytest.raises(KitError, match="model.safetensors differs from the run's base model"):
        check_base_model(tuned, model_identity(base, full=False))


def test_the_identity_covers_the_files_transformers_loads_not_extra_copies(tiny_llama, tmp_path):
    with_copy = tmp_path / "with-copy"
    shutil.copytree(tiny_llama, with_copy)
    shutil.copyfile(with_copy / "model.safetensors", with_copy / "consolidated.safetensors")
    identity = model_identity(with_copy)
    assert list(identity["files"]) == ["model.safetensors"]
    check_base_model(tiny_llama, identity)  # a Kaggle copy without the extra file is the same base
