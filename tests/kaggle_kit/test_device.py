"""Mixed precision by compute capability: fp16 (+ grad scaler) below 8.0, bf16 from 8.0; never trust
`torch.cuda.is_bf16_supported()`, which says True on a T4 because bf16 can be emulated."""

import pytest
import torch

from kaggle_kit.device import amp_dtype
from kaggle_kit.errors import KitError

CUDA = torch.device("cuda")


@pytest.fixture
def gpu(monkeypatch):
    """A fake CUDA device of a given compute capability that claims bf16 support, as recent torch does on a T4."""

    def make(capability, name):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)

    return make


@pytest.mark.parametrize("capability, name, expected", [
    ((6, 0), "Tesla P100-PCIE-16GB", torch.float16),
    ((7, 5), "Tesla T4", torch.float16),
    ((8, 0), "NVIDIA A100-SXM4-40GB", torch.bfloat16),
    ((8, 9), "NVIDIA L4", torch.bfloat16),
    ((9, 0), "NVIDIA H100 80GB HBM3", torch.bfloat16),
])
def test_auto_picks_by_compute_capability(gpu, capability, name, expected):
    gpu(capability, name)
    assert amp_dtype("auto", CUDA) is expected


def test_bf16_on_a_t4_is_refused_with_the_reason(gpu):
    gpu((7, 5), "Tesla T4")
    with pytest.raises(KitError, match=r"--precision bf16: cuda \(Tesla T4\) has compute capability 7.5; bf16 needs"):
        amp_dtype("bf16", CUDA)
    assert amp_dtype("fp16", CUDA) is torch.float16 and amp_dtype("fp32", CUDA) is None


def test_bf16_on_ampere_is_allowed(gpu):
    gpu((8, 0), "NVIDIA A100-SXM4-40GB")
    assert amp_dtype("bf16", CUDA) is torch.bfloat16


def test_cpu_is_fp32_and_refuses_mixed_precision():
    assert amp_dtype("auto", torch.device("cpu")) is None
    with pytest.raises(KitError, match="needs a CUDA GPU"):
        amp_dtype("fp16", torch.device("cpu"))


def test_a_bf16_run_predicts_in_fp16_on_a_t4_and_in_bf16_on_ampere(gpu):
    from kaggle_kit.device import inference_dtype

    gpu((7, 5), "Tesla T4")
    assert inference_dtype("bf16", CUDA) is torch.float16 and inference_dtype("auto", CUDA) is torch.float16
    gpu((8, 0), "NVIDIA A100-SXM4-40GB")
    assert inference_dtype("bf16", CUDA) is torch.bfloat16
