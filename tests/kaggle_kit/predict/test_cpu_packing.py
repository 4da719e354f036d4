"""fp32 CPU inference on oneDNN's packed linear kernels: every backbone linear is swapped (GELU fused into each
feed-forward), the predictions stay those of torch's nn.Linear within 1e-6, and a backend that computes something
else leaves the model untouched."""

from __future__ import annotations

import copy
import json
import logging

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional

from kaggle_kit.config import TrainConfig
from kaggle_kit.models.model import build_model, load_backbone_config
from kaggle_kit.predict import cpu_packing
from kaggle_kit.predict.cpu_packing import PackedLinear, pack_for_cpu
from kaggle_kit.predict.inference import infer, load_fold_model
from kaggle_kit.runs.folder import RunDir

pytestmark = pytest.mark.skipif(not cpu_packing.available(), reason="not an x86 CPU, or this torch has no oneDNN")

CPU = torch.device("cpu")


def _model(path, **config_changes):
    config = load_backbone_config(path, 0.0)
    for key, value in config_changes.items():
        setattr(config, key, value)
    return build_model(config, 6, "mean", 2, weights_from=path).eval()


def _ragged_ids(n: int = 13, seed: int = 0) -> list[list[int]]:
    """Rows of 1 to 90 tokens: batches with padding (and a mask), of several sizes, and one row on its own."""
    rng = np.random.default_rng(seed)
    return [[101, *rng.integers(1000, 20000, size=int(length)).tolist(), 102] for length in rng.integers(0, 89, n)]


def _linears(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if type(m) is nn.Linear]


@pytest.mark.parametrize("arch", ["tiny_bert", "tiny_deberta"])
def test_a_packed_encoder_predicts_what_nn_linear_predicted(arch, request):
    plain = _model(request.getfixturevalue(arch))
    packed = copy.deepcopy(plain)
    linears = len(_linears(plain.backbone))

    assert pack_for_cpu(packed) == linears > 0
    assert _linears(packed.backbone) == []
    fused = [m for m in packed.backbone.modules() if isinstance(m, PackedLinear) and m.gelu == "none"]
    assert len(fused) == plain.backbone.config.num_hidden_layers  # each feed-forward's GELU moved into its matmul
    assert all(type(m.intermediate_act_fn) is nn.Identity for m in packed.backbone.modules()
               if hasattr(m, "intermediate_act_fn"))
    ids = _ragged_ids()
    for batch_size in (1, 4, 32):
        expected = infer(plain, ids, 0, batch_size, CPU, None)
        got = infer(packed, ids, 0, batch_size, CPU, None)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert np.ptp(expected, axis=0).min() > 1e-3  # the rows differ: the comparison is not of constants


@pytest.mark.parametrize("in_features,out_features,rows", [(384, 1536, 2048), (1536, 384, 7), (768, 2304, 1)])
def test_packed_linear_at_real_sizes_equals_nn_linear_then_gelu(in_features, out_features, rows):
    torch.manual_seed(0)
    linear = nn.Linear(in_features, out_features)
    x = torch.randn(2, rows, in_features)
    with torch.no_grad():
        np.testing.assert_allclose(PackedLinear(linear)(x), linear(x), rtol=0, atol=2e-5)
        np.testing.assert_allclose(PackedLinear(linear, "none")(x), functional.gelu(linear(x)), rtol=0, atol=2e-5)
        np.testing.assert_allclose(PackedLinear(linear, "tanh")(x), functional.gelu(linear(x), approximate="tanh"),
                                   rtol=0, atol=2e-5)
        transposed = torch.randn(2, in_features, rows).transpose(1, 2)  # a strided input, as after a transpose
        np.testing.assert_allclose(PackedLinear(linear)(transposed), linear(transposed), rtol=0, atol=2e-5)


@pytest.mark.parametrize("hidden_act", ["gelu_new", "gelu_python", "gelu_python_tanh"])
def test_an_activation_that_is_not_torchs_gelu_stays_a_module_of_its_own(tiny_bert, hidden_act):
    plain = _model(tiny_bert, hidden_act=hidden_act)  # GELU's formulas written out in Python: not torch's kernel
    packed = copy.deepcopy(plain)

    assert pack_for_cpu(packed) == len(_linears(plain.backbone))
    assert not any(isinstance(m, PackedLinear) and m.gelu for m in packed.backbone.modules())
    ids = _ragged_ids(seed=1)
    np.testing.assert_allclose(infer(packed, ids, 0, 4, CPU, None), infer(plain, ids, 0, 4, CPU, None), rtol=0,
                               atol=1e-6)


def test_a_backend_that_disagrees_leaves_the_model_untouched(tiny_bert, monkeypatch, caplog):
    model = _model(tiny_bert)
    before = infer(model, _ragged_ids(), 0, 4, CPU, None)
    real_forward = PackedLinear.forward
    monkeypatch.setattr(PackedLinear, "forward", lambda self, x: real_forward(self, x) * 1.01)

    with caplog.at_level(logging.WARNING):
        assert pack_for_cpu(model) == 0
    assert "disagrees" in caplog.text
    assert not any(isinstance(m, PackedLinear) for m in model.modules())
    np.testing.assert_array_equal(infer(model, _ragged_ids(), 0, 4, CPU, None), before)


def test_a_layer_that_disagrees_mid_way_leaves_it_and_the_rest_unpacked_and_the_model_right(tiny_bert, monkeypatch,
                                                                                              caplog):
    plain = _model(tiny_bert)
    model = copy.deepcopy(plain)
    real_agrees, checked = cpu_packing.agrees, []

    def third_disagrees(swap):
        checked.append(swap)
        return len(checked) != 3 and real_agrees(swap)

    monkeypatch.setattr(cpu_packing, "agrees", third_disagrees)
    with caplog.at_level(logging.WARNING):
        assert pack_for_cpu(model) == 2
    assert "disagrees" in caplog.text and "the 2 layer(s) packed before it stay packed" in caplog.text
    assert len(checked) == 3  # packing stopped at the layer that disagreed
    assert sum(isinstance(m, PackedLinear) for m in model.modules()) == 2
    assert len(_linears(model.backbone)) == len(_linears(plain.backbone)) - 2
    ids = _ragged_ids(seed=3)
    np.testing.assert_allclose(infer(model, ids, 0, 4, CPU, None), infer(plain, ids, 0, 4, CPU, None), rtol=0,
                               atol=1e-6)


def test_layers_are_swapped_one_at_a_time_so_loading_holds_one_extra_copy(tiny_bert, monkeypatch):
    """When each packed copy is made, every layer before it is already swapped (its nn.Linear weight released):
    building all copies first held a second copy of every linear weight while a fold loaded."""
    model = _model(tiny_bert)
    real_init, already_swapped = PackedLinear.__init__, []

    def counting_init(self, linear, gelu=None):
        already_swapped.append(sum(isinstance(m, PackedLinear) for m in model.modules()))
        real_init(self, linear, gelu)

    monkeypatch.setattr(PackedLinear, "__init__", counting_init)
    layers = pack_for_cpu(model)
    assert layers > 2 and already_swapped == list(range(layers))


@pytest.mark.parametrize("where", ["__init__", "forward"])
@pytest.mark.parametrize("error", [TypeError, ValueError, AttributeError])
def test_a_kernel_that_fails_in_any_way_leaves_the_model_untouched(tiny_bert, monkeypatch, caplog, where, error):
    """A torch whose private oneDNN ops are missing or take other arguments: the fold still predicts, unpacked."""
    model = _model(tiny_bert)
    before = infer(model, _ragged_ids(), 0, 4, CPU, None)

    def fail(*args, **kwargs):
        raise error("the kernel's arguments changed")

    monkeypatch.setattr(PackedLinear, where, fail)
    with caplog.at_level(logging.INFO, logger=cpu_packing.__name__):
        assert pack_for_cpu(model) == 0
    assert f"{error.__name__}: the kernel's arguments changed" in caplog.text
    assert not any(isinstance(m, PackedLinear) for m in model.modules())
    np.testing.assert_array_equal(infer(model, _ragged_ids(), 0, 4, CPU, None), before)


def test_a_packed_backbone_is_frozen_and_refuses_to_backpropagate_instead_of_dropping_the_gradient(tiny_bert):
    """oneDNN's op has no autograd formula: torch would return no gradient through it without an error, so a
    backbone layer below it (here the embeddings) would train on a wrong gradient."""
    model = _model(tiny_bert)
    ids = torch.tensor([[101, 2000, 3000, 102]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        expected = model(ids, mask)
    pack_for_cpu(model)

    assert not any(p.requires_grad for p in model.backbone.parameters())  # what is left of the backbone is frozen
    model(ids, mask).sum().backward()  # so a forward in grad mode runs, and the head above it trains (as in TTT)
    assert model.fc.weight.grad.abs().sum() > 0
    torch.testing.assert_close(model(ids, mask), expected, rtol=0, atol=1e-6)
    model.backbone.get_input_embeddings().weight.requires_grad_(True)  # asked to train below a packed layer
    with pytest.raises(RuntimeError, match="has no backward"):
        model(ids, mask)


def test_a_torch_without_the_kernel_keeps_nn_linear(tiny_bert, monkeypatch):
    model = _model(tiny_bert)
    monkeypatch.setattr(cpu_packing, "available", lambda: False)
    assert pack_for_cpu(model) == 0
    assert len(_linears(model.backbone)) > 0


def test_onednn_switched_off_in_torch_keeps_nn_linear(tiny_bert):
    model = _model(tiny_bert)
    with torch.backends.mkldnn.flags(enabled=False):
        assert pack_for_cpu(model) == 0
    assert len(_linears(model.backbone)) > 0 and not any(isinstance(m, PackedLinear) for m in model.modules())


def test_an_arm_cpu_keeps_nn_linear(tiny_bert, monkeypatch):
    model = _model(tiny_bert)
    monkeypatch.setattr(cpu_packing.platform, "machine", lambda: "arm64")
    assert pack_for_cpu(model) == 0
    assert not any(isinstance(m, PackedLinear) for m in model.modules())


def test_a_cpu_fold_loads_packed_and_predicts_as_before_within_1e_6(ell_tiny_run, monkeypatch):
    run = RunDir(ell_tiny_run)
    cfg = TrainConfig.model_validate(json.loads((ell_tiny_run / "run_config.json").read_text()))
    ids = _ragged_ids(n=17, seed=2)

    packed = load_fold_model(run, cfg, 6, 0, CPU)
    quantized = load_fold_model(run, cfg, 6, 0, CPU, quantize="int8")
    monkeypatch.setattr(cpu_packing, "pack_for_cpu", lambda model: 0)
    plain = load_fold_model(run, cfg, 6, 0, CPU)

    assert any(isinstance(m, PackedLinear) for m in packed.modules())
    assert not any(isinstance(m, PackedLinear) for m in quantized.modules()) and _linears(plain.backbone)
    np.testing.assert_allclose(infer(packed, ids, 0, 8, CPU, None), infer(plain, ids, 0, 8, CPU, None), rtol=0,
                               atol=1e-6)


def test_a_merged_lora_fold_is_packed_and_an_unmerged_one_is_not(ell_lora_run, tiny_llama, monkeypatch):
    """`--merge` leaves plain fp32 nn.Linear layers (W + BA), which pack like a fully fine-tuned decoder's (within
    the 1.9e-6 measured on tiny decoders); unmerged, peft's LoRA layers keep their own forward."""
    run = RunDir(ell_lora_run)
    cfg = run.load_config()
    ids = _ragged_ids(n=9, seed=3)

    merged = load_fold_model(run, cfg, 6, 0, CPU, base_model=tiny_llama, merge=True)
    unmerged = load_fold_model(run, cfg, 6, 0, CPU, base_model=tiny_llama)
    monkeypatch.setattr(cpu_packing, "pack_for_cpu", lambda model: 0)
    merged_plain = load_fold_model(run, cfg, 6, 0, CPU, base_model=tiny_llama, merge=True)

    assert any(isinstance(m, PackedLinear) for m in merged.modules())
    assert not any(isinstance(m, PackedLinear) for m in unmerged.modules())
    assert not any(isinstance(m, PackedLinear) for m in merged_plain.modules())
    np.testing.assert_allclose(infer(merged, ids, 0, 8, CPU, None), infer(merged_plain, ids, 0, 8, CPU, None),
                               rtol=0, atol=5e-6)
