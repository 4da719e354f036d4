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
