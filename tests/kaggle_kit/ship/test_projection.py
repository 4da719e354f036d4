"""The notebook-time projection: the arithmetic, and where a model goes on T4 x2."""

import pytest

from kaggle_kit.ship.projection import RunCost, project


def test_a_9b_model_in_fp16_is_split_over_both_t4s_and_in_4_bits_takes_one_fold_per_gpu():
    fp16 = RunCost("gemma", parameters=9.24e9, folds=5, tokens_per_row=450, weights_format="fp16")
    four = RunCost("gemma", parameters=9.24e9, folds=5, tokens_per_row=450, weights_format="4bit")
    split = project([fp16], rows=2700, accelerator="t4x2")
    spread = project([four], rows=2700, accelerator="t4x2")
    assert "split over 2 GPUs" in split.layout["gemma"] and "one fold per GPU" in spread.layout["gemma"]
    flops = 2 * 9.24e9 * 2700 * 450
    load16 = 9.24e9 * 2 / 0.3e9
    assert split.per_run["gemma"] == pytest.approx(5 * (flops / 20e12 + load16))
    load4 = 9.24e9 * 2 / 0.3e9  # read from the 16-bit checkpoint, quantised while loading
    assert spread.per_run["gemma"] == pytest.approx(3 * (flops / 10e12 + load4))  # 5 folds, 2 at a time
    assert spread.seconds == pytest.approx(120 + spread.per_run["gemma"])


def test_a_32b_model_in_fp16_does_not_fit_t4x2_and_says_so():
    big = RunCost("qwen32", parameters=32.8e9, folds=1, tokens_per_row=300, weights_format="fp16")
    assert "DOES NOT FIT" in project([big], rows=1000, accelerator="t4x2").layout["qwen32"]


def test_small_encoders_are_cheap_and_the_assumption_can_be_overridden():
    deberta = RunCost("deberta", parameters=184e6, folds=4, tokens_per_row=420, weights_format="fp16")
    default = project([deberta], rows=2700, accelerator="t4x2")
    slower = project([deberta], rows=2700, accelerator="t4x2", assume_tflops=5)
    assert default.hours < 0.1 and slower.per_run["deberta"] > default.per_run["deberta"]
    assert "not measured on Kaggle" in default.assumptions
    assert project([deberta], rows=2700, accelerator="none").layout["deberta"] == "CPU"


def test_lora_folds_are_projected_one_after_another():
    lora = RunCost("qwen", parameters=8.19e9, folds=4, tokens_per_row=450, weights_format="4bit",
                   parallel_folds=False)
    spread = RunCost("qwen", parameters=8.19e9, folds=4, tokens_per_row=450, weights_format="4bit")
    one, two = project([lora], 2700, "t4x2"), project([spread], 2700, "t4x2")
    assert one.per_run["qwen"] == pytest.approx(2 * two.per_run["qwen"]) and "one fold at a time" in one.layout["qwen"]


def test_the_three_projections_share_one_method():
    """notebook_seconds: fixed time plus a fold's time per round of folds run at once; kit bundle's projection and
    the notebook's deadline guard both come out of it (kit simulate's too, with folds one after another)."""
    from kaggle_kit.ship.kaggle_runtime import DeadlineGuard
    from kaggle_kit.ship.projection import notebook_seconds

    assert notebook_seconds(100.0, 10.0, 5, parallel=2) == 130.0  # 3 rounds: 2 + 2 + 1 folds
    assert notebook_seconds(100.0, 10.0, 5) == 150.0
    cost = RunCost("deberta", parameters=184e6, folds=5, tokens_per_row=420, weights_format="fp16")
    fold = 2 * 184e6 * 2700 * 420 / 20e12 + 184e6 * 2 / 0.3e9
    assert project([cost], 2700, "t4x2").seconds == pytest.approx(notebook_seconds(120.0, fold, 5, parallel=2))
    lines = []
    guard = DeadlineGuard(budget_seconds=8 * 3600, started_at=0.0, clock=lambda: 3600.0, log=lines.append)
    assert guard(done=2, total=5, seconds=1800.0, fold_seconds=900.0, parallel=2)
    assert f"projected to end at {notebook_seconds(3600.0, 900.0, 3, 2) / 3600:.2f} h" in lines[0]  # 1.50 h
