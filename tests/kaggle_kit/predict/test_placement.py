"""Where a LoRA fold's base goes at inference: one GPU when it fits, split over every GPU when only that fits."""

import logging
from types import SimpleNamespace

import torch

from kaggle_kit.predict.inference import lora_placement, split_over_gpus

GIB = 1024**3
T4 = 15 * GIB


def test_a_9b_fp16_base_is_split_over_two_t4s_and_an_8b_4bit_one_is_not():
    assert split_over_gpus(int(9.24e9 * 2), [T4, T4])
    assert not split_over_gpus(int(8.2e9 * 0.56), [T4, T4])
    assert not split_over_gpus(int(9.24e9 * 2), [T4])  # one GPU: nothing to split over
    assert not split_over_gpus(int(32.8e9 * 2), [T4, T4])  # does not fit both either: the projection says so


def test_on_cpu_a_quantised_run_is_predicted_in_full_precision_with_a_warning(caplog, tmp_path):
    cfg = SimpleNamespace(load_in_4bit=True, load_in_8bit=False, model="gemma-2-9b", base_model={"files": {}})
    with caplog.at_level(logging.WARNING):
        assert lora_placement(cfg, tmp_path, torch.device("cpu"), torch.float32) == (None, None)
    assert "trained on a 4-bit base" in caplog.text


def test_a_4bit_base_too_big_for_one_t4_is_split_and_a_small_one_stays_on_one(monkeypatch, tmp_path):
    import kaggle_kit.models.lora as lora

    monkeypatch.setattr(lora, "quantization_config", lambda *args: "nf4")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: SimpleNamespace(total_memory=T4))

    def placement(parameters):
        cfg = SimpleNamespace(load_in_4bit=True, load_in_8bit=False, model="m",
                              base_model={"files": {"model.safetensors": {"size": int(parameters * 2)}}})
        return lora_placement(cfg, tmp_path, torch.device("cuda", 0), torch.float16)

    assert placement(32.8e9) == ("nf4", "balanced")
    assert placement(8.2e9) == ("nf4", None)
